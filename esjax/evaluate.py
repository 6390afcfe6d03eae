"""``python -m esjax.evaluate RUN_DIR``: noiseless episodes of a saved policy, optional video."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from esjax.errors import ConfigError
from esjax.parsing import DefaultsFormatter, OneLineParser

VIDEO_SUFFIXES = (".mp4", ".gif")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m esjax.evaluate",
        description="Run noiseless episodes of a saved policy (with its observation "
        "normalization) and optionally render them to a video.",
        formatter_class=DefaultsFormatter,
    )
    p.add_argument("run_dir", type=Path, help="a run directory written by esjax.train")
    p.add_argument("--checkpoint", default="latest", help="latest, best or a generation number")
    p.add_argument("--episodes", type=int, default=5, help="number of episodes")
    p.add_argument("--video", type=Path, default=None, help="write the episodes to FILE.mp4/.gif")
    p.add_argument("--seed", type=int, default=0, help="episode i resets with seed S + i")
    return p


def run_episodes(env, spec, theta, ob_mean, ob_std, episodes: int, seed: int, frames=None):
    """(returns, lengths, forward distances in m or None) of noiseless episodes; appends
    rendered frames to ``frames``. A distance is the root body's x at the episode's end
    minus at its reset (``torso_x``), None for an env without a body position."""
    from tqdm import tqdm

    from esjax.core.policy import unravel
    from esjax.rollout.envs import torso_x
    from esjax.rollout.worker import act

    # The workers' own observation -> action path, so returns match what training measured.
    params = unravel(spec, np.asarray(theta, np.float32))
    ob_mean, ob_std = np.asarray(ob_mean, np.float32), np.asarray(ob_std, np.float32)
    returns, lengths, distances = [], [], []
    limit = env.spec.max_episode_steps if env.spec else None
    # A bar while recording, on a terminal only (disable=None): in a log file it would be
    # a redraw per frame.
    bar = tqdm(total=episodes * (limit or 1000), unit="step", leave=False, file=sys.stderr,
               disable=True if frames is None else None)  # fmt: skip
    for i in range(episodes):
        ob, info = env.reset(seed=seed + i)
        x0 = torso_x(env, info)
        if frames is not None:
            frames.append(env.render())
        ret, length, done = 0.0, 0, False
        while not done:
            a = act(spec, params, np.asarray(ob, np.float32).ravel(), ob_mean, ob_std)
            ob, r, terminated, truncated, info = env.step(a.reshape(env.action_space.shape))
            ret += float(r)
            length += 1
            done = terminated or truncated
            if frames is not None:
                frames.append(env.render())
            bar.update()
        returns.append(ret)
        lengths.append(length)
        x1 = torso_x(env, info)
        distances.append(None if x0 is None or x1 is None else x1 - x0)
    bar.close()
    forward = None if None in distances else np.array(distances)
    return np.array(returns), np.array(lengths), forward


def write_video(path: Path, frames: list[np.ndarray], fps: int) -> None:
    import warnings

    import imageio.v2 as imageio

    # imageio-ffmpeg starts ffmpeg with fork+exec; Python warns because JAX has threads,
    # but nothing runs between fork and exec, so there is no deadlock to fear.
    warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)
    if path.suffix == ".gif":
        imageio.mimsave(path, frames, duration=1000 / fps, loop=0)
    else:
        imageio.mimsave(path, frames, fps=fps, macro_block_size=1)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.fail(f"--episodes must be >= 1 (got {args.episodes})")
    if args.video is not None:
        if args.video.suffix not in VIDEO_SUFFIXES:
            parser.fail(f"--video {args.video}: use a .mp4 or .gif file name")
        if not args.video.absolute().parent.is_dir():
            parser.fail(f"--video {args.video}: folder {args.video.parent} does not exist")
        if args.video.is_dir():
            parser.fail(f"--video {args.video} is a folder: give a .mp4 or .gif file name")
        try:  # before any episode runs: a video that cannot be written fails now
            with tempfile.NamedTemporaryFile(dir=args.video.absolute().parent):
                pass
        except OSError as e:
            parser.fail(f"--video {args.video}: cannot write in {args.video.parent} "
                        f"({e.strerror}): choose another location")  # fmt: skip
    if args.video is not None:  # before MuJoCo is imported (Brax imports it): it picks
        os.environ.setdefault("MUJOCO_GL", "egl")  # its GL then; no display here: EGL
        os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
    try:
        from esjax.rollout.envs import make_env
        from esjax.rollout.jax_envs import is_jax_env
        from esjax.run.state import load_run

        run = load_run(args.run_dir, args.checkpoint)
        if is_jax_env(run.cfg.env):
            return _evaluate_jax(args, run, parser)
        env = make_env(run.cfg.env, render_mode="rgb_array" if args.video else None,
                       kwargs=run.cfg.env_kwargs)  # fmt: skip
    except ConfigError as e:
        parser.fail(str(e))
    cfg, step = run.cfg, run.step
    theta, mean, std = run.policy(args.checkpoint)
    frames: list[np.ndarray] | None = [] if args.video else None
    rets, lens, forward = run_episodes(env, run.spec, theta, mean, std, args.episodes,
                                       args.seed, frames)  # fmt: skip
    env.close()
    moved = "" if forward is None else (
        f", torso x {forward.mean():+.2f} ± {forward.std():.2f} m "
        f"(from {forward.min():+.2f} to {forward.max():+.2f})")  # fmt: skip
    print(
        f"{cfg.env} checkpoint {step} ({args.checkpoint}): {args.episodes} episodes, "
        f"return {rets.mean():.1f} ± {rets.std():.1f}, length {lens.mean():.1f} ± {lens.std():.1f}"
        + moved
    )
    if frames is not None:
        fps = int(env.metadata.get("render_fps", 30))
        write_video(args.video, frames, fps)
        print(f"video: {args.video} ({len(frames)} frames at {fps} fps)")
    return 0


def _evaluate_jax(args, run, parser) -> int:
    """``main`` for a JAX-native env: the returns from the episodes as one jitted call (as
    training ran them); the video from the same episodes stepped one at a time."""
    from esjax.rollout.jax_envs import enable_compilation_cache, make_jax_env
    from esjax.rollout.jax_pool import render_noiseless, run_noiseless
    from esjax.run.resolve import worker_config

    if args.video is not None and not hasattr(make_jax_env(run.cfg.env, run.cfg.env_kwargs).env,
                                              "render"):  # fmt: skip
        parser.fail(f"--video: {run.cfg.env} has no render(trajectory): drop --video")
    enable_compilation_cache()
    theta, mean, std = run.policy(args.checkpoint)
    seeds = [args.seed + i for i in range(args.episodes)]
    wcfg = worker_config(run.cfg, run.spec)
    rets, lens = run_noiseless(wcfg, theta, mean, std, seeds)
    print(
        f"{run.cfg.env} checkpoint {run.step} ({args.checkpoint}): {args.episodes} episodes, "
        f"return {rets.mean():.1f} ± {rets.std():.1f}, length {lens.mean():.1f} ± {lens.std():.1f}"
    )
    if args.video is not None:
        try:
            frames, fps = render_noiseless(wcfg, theta, mean, std, seeds)
        except ConfigError as e:
            parser.fail(str(e))
        except Exception as e:  # no EGL, a GL that does not work: one line
            parser.fail(f"--video: cannot render {run.cfg.env} headless "
                        f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}): "
                        "install EGL (apt install libegl1) or set MUJOCO_GL=osmesa")  # fmt: skip
        write_video(args.video, frames, fps)
        print(f"video: {args.video} ({len(frames)} frames at {fps} fps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
