"""``python -m esjax.train``: train a policy with ES and write a run directory."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import shutil
import signal
import sys
import time
import types
from pathlib import Path
from typing import get_args, get_type_hints

from esjax.config import (
    RESUMABLE_OVERRIDES,
    Config,
    ConfigError,
    envs_per_worker_arg,
    hidden_dims_arg,
    load_run_config,
)


def _envs_per_worker(text: str) -> int:
    try:
        return envs_per_worker_arg(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _hidden_dims(text: str) -> int | str:
    try:
        return hidden_dims_arg(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _value_type(typ):
    """``X`` of an option typed ``X | None`` (None: the strategy's default), else ``typ``."""
    if isinstance(typ, types.UnionType):
        return next(t for t in get_args(typ) if t is not type(None))
    return typ


def build_parser(suppress_defaults: bool = False) -> argparse.ArgumentParser:
    """One flag per Config field, help text and default taken from the field, plus
    ``--resume``. With ``suppress_defaults`` the namespace holds only flags given."""
    p = argparse.ArgumentParser(
        prog="python -m esjax.train",
        description="Train a policy with OpenAI-style Evolution Strategies.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--preset",
        metavar="NAME",
        default=argparse.SUPPRESS if suppress_defaults else None,
        help="Start from a preset's options (experiments/presets/NAME.toml, env included; "
        "or a path to a .toml file); flags given here override them.",
    )
    p.add_argument(
        "--resume", metavar="RUN_DIR", default=argparse.SUPPRESS if suppress_defaults else None,
        help="Continue that run in place from its latest checkpoint (budget, workers and "
        "checkpointing options may change; nothing else may).",
    )  # fmt: skip
    hints = get_type_hints(Config)
    for f in dataclasses.fields(Config):
        flag = "--" + f.name.replace("_", "-")
        default = argparse.SUPPRESS if suppress_defaults else f.default
        kw = dict(default=default, help=f.metadata["help"], dest=f.name)
        typ = _value_type(hints[f.name])
        if typ is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif f.name == "hidden_dims":
            kw.update(type=_hidden_dims, nargs="+", metavar="{N,linear}")
        elif f.name == "envs_per_worker":
            kw.update(type=_envs_per_worker, metavar="{auto,N}")
            if not suppress_defaults:
                kw["default"] = "auto"  # argparse converts a string default with ``type``
        else:
            kw["type"] = typ
            if "choices" in f.metadata:
                kw["choices"] = f.metadata["choices"]
        p.add_argument(flag, **kw)
    return p


def create_run_dir(parent: Path, env_id: str) -> Path:
    """A new, empty ``parent/<timestamp>_<env>`` folder (never an existing one)."""
    if parent.exists() and not parent.is_dir():
        raise ConfigError(f"--run-dir {parent} is a file: give a folder path")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        path = parent / (f"{stamp}_{env_id}" + (f"_{i}" if i else ""))
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
        except OSError as e:
            raise ConfigError(f"cannot create run directory under {parent}: {e.strerror}") from e
    raise ConfigError(f"could not find a free run directory name under {parent}")


def resume_config(run_dir: Path, given: dict) -> Config:
    """The saved run's Config with the allowed overrides in ``given`` applied."""
    saved = load_run_config(run_dir)
    changed = {k: v for k, v in given.items() if getattr(saved, k) != v}
    refused = sorted(set(changed) - set(RESUMABLE_OVERRIDES))
    if refused:
        flag = "--" + refused[0].replace("_", "-")
        raise ConfigError(
            f"cannot change {flag} when resuming (the run has {getattr(saved, refused[0])!r}): "
            f"only {', '.join('--' + k.replace('_', '-') for k in RESUMABLE_OVERRIDES)} may change"
        )
    return dataclasses.replace(saved, **changed)


def truncate_log(path: Path, generations: int) -> None:
    """Drop log rows of generations >= ``generations`` (written after the checkpoint we
    resume from), atomically, so the log matches an uninterrupted run."""
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    width = lines[0].count(",") if lines else 0

    def complete_and_before(line: str) -> bool:  # a row cut short by a hard kill is dropped
        first = line.split(",", 1)[0]
        return (
            line.endswith("\n")
            and line.count(",") == width
            and first.isdigit()
            and (int(first) < generations)
        )

    keep = lines[:1] + [ln for ln in lines[1:] if complete_and_before(ln)]
    if len(keep) != len(lines):
        tmp = path.with_suffix(".csv.tmp")
        tmp.write_text("".join(keep))
        os.replace(tmp, path)


def write_config(run_dir: Path, cfg: Config) -> None:
    """Atomically (re)write ``run_dir/config.json``; ConfigError if the folder is unwritable."""
    tmp = run_dir / "config.json.tmp"
    try:
        tmp.write_text(cfg.to_json() + "\n")
        os.replace(tmp, run_dir / "config.json")
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ConfigError(
            f"cannot write {run_dir / 'config.json'} ({e.strerror}): make the run directory "
            "writable or pass --run-dir elsewhere"
        ) from e


def check_free_space(path: Path, need: int) -> None:
    """ConfigError unless the disk holding ``path`` (or its nearest existing parent) has
    ``need`` bytes free."""
    existing = path.absolute()
    while not existing.exists():
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if free < need:
        raise ConfigError(
            f"only {free / 1e6:.1f} MB free on the disk holding {path}, and this run's "
            f"checkpoints need about {need / 1e6:.1f} MB: free some space or pass --run-dir "
            "on another disk"
        )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    given = vars(build_parser(suppress_defaults=True).parse_args(argv))
    resume = given.pop("resume", None)
    preset = given.pop("preset", None)
    try:
        if resume and preset:
            raise ConfigError("--preset cannot be combined with --resume: the run's "
                              "config.json already holds its options")  # fmt: skip
        if resume:
            cfg = resume_config(Path(resume), given)
        elif preset:
            from esjax.presets import load_preset

            cfg = Config(**{**load_preset(preset), **given})
        else:
            del args.resume, args.preset
            cfg = Config(**vars(args))
    except ConfigError as e:
        parser.error(str(e))  # one line, exit code 2

    # Heavy imports only after the arguments are known to be valid.
    from esjax.checkpoint import CheckpointWriteError, checkpoint_bytes
    from esjax.dispatch import NonFiniteError, StopRequested, WorkerError
    from esjax.envs import check_env_id
    from esjax.metrics import ProgressDisplay
    from esjax.state import load_run
    from esjax.trainer import Trainer

    trainer = None
    try:
        check_env_id(cfg.env)
        trainer = Trainer(cfg)
        if resume:
            run_dir = Path(resume)
            trainer.restore(load_run(run_dir, "latest", trainer.cfg, trainer.info))
            if not trainer.budget_left():
                raise ConfigError(
                    f"the run's budget is already spent at generation "
                    f"{trainer.state.generation}: raise "
                    "--max-timesteps, --max-generations or --target-return to continue it"
                )
        # The newest --keep-checkpoints, the best, and one being written, plus the log.
        need = checkpoint_bytes(trainer.num_params, trainer.info.ob_dim) * (
            cfg.keep_checkpoints + 2
        ) + (1 << 20)
        check_free_space(Path(resume) if resume else Path(cfg.run_dir), need)
        cfg = trainer.cfg  # with --envs-per-worker auto resolved, as config.json records it
        # Workers first: a backend that cannot start (no cluster, a bad env on a worker)
        # fails here, before a run directory exists.
        trainer.start()
        if not resume:
            run_dir = create_run_dir(Path(cfg.run_dir), cfg.env)
        try:
            write_config(run_dir, cfg)
        except ConfigError:
            if not resume:
                shutil.rmtree(run_dir, ignore_errors=True)  # ours, just made, still empty
            raise
    except ConfigError as e:
        if trainer is not None:
            trainer.close()
        parser.error(str(e))
    except KeyboardInterrupt:
        if trainer is not None:
            trainer.close()
        print("interrupted before training started; nothing was written", file=sys.stderr)
        return 128 + signal.SIGINT
    except WorkerError as e:  # workers that could not start
        trainer.close()
        print(f"esjax: error: {e}", file=sys.stderr)
        return 1
    if resume:
        truncate_log(run_dir / "log.csv", trainer.state.generation)
        print(f"resuming {run_dir} from generation {trainer.state.generation}", flush=True)
    else:
        print(f"run directory: {run_dir}", flush=True)

    if cfg.max_timesteps:
        display = ProgressDisplay(cfg.max_timesteps, "steps", trainer.state.timesteps)
    else:
        display = ProgressDisplay(cfg.max_generations, "gen", trainer.state.generation)
    code = 0
    received: list[int] = []

    def on_signal(signum, frame):
        if received:  # a second Ctrl-C: leave now; checkpoints and log stay consistent
            kill_now = getattr(trainer.pool, "kill_now", None)  # Ray's processes, if ours
            if kill_now is not None:
                kill_now()
            os._exit(128 + signum)
        received.append(signum)
        trainer.stop_requested = True
        print(f"\n{signal.Signals(signum).name}: stopping after saving a checkpoint "
              "(press Ctrl-C again to quit at once)", file=sys.stderr, flush=True)  # fmt: skip

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        trainer.train(run_dir, on_generation=display)
    except (StopRequested, KeyboardInterrupt):
        signum = received[0] if received else signal.SIGINT
        print(
            f"stopped at generation {trainer.state.generation}; checkpoint saved. Resume with:\n"
            f"  python -m esjax.train --resume {run_dir}",
            file=sys.stderr,
        )
        code = 128 + signum
    except (NonFiniteError, WorkerError) as e:
        print(f"esjax: error: {e}", file=sys.stderr)
        code = 1
    except CheckpointWriteError as e:
        saved = trainer.saved_step
        after = (
            f"then resume from generation {saved} with: python -m esjax.train --resume {run_dir}"
            if saved is not None
            else "then start the run again"
        )
        print(f"esjax: error: {e}: free some space or fix the folder's permissions, {after}",
              file=sys.stderr)  # fmt: skip
        code = 1
    finally:
        display.close()
        trainer.close()
    if code == 0:
        t = trainer.state
        best = "none yet" if t.best_eval == -math.inf else f"{t.best_eval:.1f}"
        ckpt = run_dir / "checkpoints"
        best_ckpt = ckpt / str(trainer.best_step) if trainer.best_step is not None else None
        print(
            f"done: {t.generation} generations, {t.timesteps:,} training timesteps "
            f"({t.env_steps:,} env steps in all) in {t.time_elapsed:.0f} s; best evaluation "
            f"return {best}\n"
            f"run directory:   {run_dir}\n"
            f"best checkpoint: {best_ckpt or 'none (no evaluation episode ran)'}\n"
            f"watch it:        python -m esjax.evaluate {run_dir} --checkpoint best "
            f"--video {run_dir}/best.mp4\n"
            f"plot it:         python -m esjax.plot {run_dir} --out {run_dir}/curves.png\n"
            f"continue it:     python -m esjax.train --resume {run_dir} --max-timesteps N"
        )
    return code


if __name__ == "__main__":
    sys.exit(main())
