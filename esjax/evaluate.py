"""``python -m esjax.evaluate RUN_DIR``: noiseless episodes of a saved policy, optional video."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from esjax.config import ConfigError, load_run_config

VIDEO_SUFFIXES = (".mp4", ".gif")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m esjax.evaluate",
        description="Run noiseless episodes of a saved policy (with its observation "
        "normalization) and optionally render them to a video.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("run_dir", type=Path, help="a run directory written by esjax.train")
    p.add_argument("--checkpoint", default="latest", help="latest, best or a generation number")
    p.add_argument("--episodes", type=int, default=5, help="number of episodes")
    p.add_argument("--video", type=Path, default=None, help="write the episodes to FILE.mp4/.gif")
    p.add_argument("--seed", type=int, default=0, help="episode i resets with seed S + i")
    return p


def load_policy(run_dir: Path, which: str):
    """(PolicySpec, θ, ob_mean, ob_std, step) of checkpoint ``which``: for 'best', the
    policy that generation's evaluation measured; otherwise the checkpoint's current θ."""
    from esjax.checkpoint import CheckpointStore
    from esjax.core.obstat import ObStat, obstat_mean_std
    from esjax.trainer import Trainer

    cfg = load_run_config(run_dir)
    trainer = Trainer(cfg, log=lambda s: None)
    store = CheckpointStore(run_dir, read_only=True)
    try:
        step = store.resolve(which)
        trainer.check_meta(store.load_meta(step))
        tree, _ = store.load(step, trainer.state_tree())
    finally:
        store.close()
    if which == "best":
        p = tree["gen_policy"]
        return trainer.spec, p["theta"], p["ob_mean"], p["ob_std"], step
    o = tree["obstat"]
    mean, std = obstat_mean_std(ObStat(o["sum"], o["sumsq"], float(o["count"])))
    return trainer.spec, tree["theta"], mean, std, step


def run_episodes(env, spec, theta, ob_mean, ob_std, episodes: int, seed: int, frames=None):
    """Returns and lengths of noiseless episodes; appends rendered frames to ``frames``."""
    from tqdm import tqdm

    from esjax.policy import policy_apply_np, unravel

    # The workers' NumPy forward pass, so returns match what training measured.
    params = unravel(spec, np.asarray(theta, np.float32))
    ob_mean, ob_std = np.asarray(ob_mean, np.float32), np.asarray(ob_std, np.float32)
    low, high = np.asarray(spec.ac_low), np.asarray(spec.ac_high)
    returns, lengths = [], []
    limit = env.spec.max_episode_steps if env.spec else None
    bar = tqdm(total=episodes * (limit or 1000), unit="step", disable=frames is None, leave=False)
    for i in range(episodes):
        ob, _ = env.reset(seed=seed + i)
        if frames is not None:
            frames.append(env.render())
        ret, length, done = 0.0, 0, False
        while not done:
            ob = np.asarray(ob, np.float32).ravel()
            a = np.clip(policy_apply_np(spec, params, ob, ob_mean, ob_std), low, high)
            ob, r, terminated, truncated, _ = env.step(a.reshape(env.action_space.shape))
            ret += float(r)
            length += 1
            done = terminated or truncated
            if frames is not None:
                frames.append(env.render())
            bar.update()
        returns.append(ret)
        lengths.append(length)
    bar.close()
    return np.array(returns), np.array(lengths)


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
        parser.error(f"--episodes must be >= 1 (got {args.episodes})")
    if args.video is not None:
        if args.video.suffix not in VIDEO_SUFFIXES:
            parser.error(f"--video {args.video}: use a .mp4 or .gif file name")
        if not args.video.absolute().parent.is_dir():
            parser.error(f"--video {args.video}: folder {args.video.parent} does not exist")
    try:
        spec, theta, mean, std, step = load_policy(args.run_dir, args.checkpoint)
    except ConfigError as e:
        parser.error(str(e))

    import gymnasium as gym

    from esjax.envs import register_envs, silenced_stdout

    cfg = load_run_config(args.run_dir)
    register_envs()
    with silenced_stdout():
        env = gym.make(cfg.env, render_mode="rgb_array" if args.video else None,
                       disable_env_checker=True)  # fmt: skip
        env.reset(seed=args.seed)
    frames: list[np.ndarray] | None = [] if args.video else None
    rets, lens = run_episodes(env, spec, theta, mean, std, args.episodes, args.seed, frames)
    env.close()
    print(
        f"{cfg.env} checkpoint {step} ({args.checkpoint}): {args.episodes} episodes, "
        f"return {rets.mean():.1f} ± {rets.std():.1f}, length {lens.mean():.1f} ± {lens.std():.1f}"
    )
    if frames is not None:
        fps = int(env.metadata.get("render_fps", 30))
        write_video(args.video, frames, fps)
        print(f"video: {args.video} ({len(frames)} frames at {fps} fps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
