"""``python -m esjax.train``: train a policy with ES and write a run directory."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import get_type_hints

from esjax.config import Config, ConfigError


def build_parser() -> argparse.ArgumentParser:
    """One flag per Config field, help text and default taken from the field."""
    p = argparse.ArgumentParser(
        prog="python -m esjax.train",
        description="Train a policy with OpenAI-style Evolution Strategies.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    hints = get_type_hints(Config)
    for f in dataclasses.fields(Config):
        flag = "--" + f.name.replace("_", "-")
        kw = dict(default=f.default, help=f.metadata["help"], dest=f.name)
        typ = hints[f.name]
        if typ is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif f.name == "hidden_dims":
            kw.update(type=int, nargs="+", metavar="N")
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = Config(**vars(args))
    except ConfigError as e:
        parser.error(str(e))  # one line, exit code 2

    # Heavy imports only after the arguments are known to be valid.
    from esjax.metrics import ProgressDisplay
    from esjax.pool import NonFiniteError, WorkerError
    from esjax.trainer import Trainer

    try:
        from esjax.envs import check_env_id

        check_env_id(cfg.env)
        trainer = Trainer(cfg)
        run_dir = create_run_dir(Path(cfg.run_dir), cfg.env)
    except ConfigError as e:
        parser.error(str(e))
    (run_dir / "config.json").write_text(cfg.to_json() + "\n")
    print(f"run directory: {run_dir}", flush=True)

    if cfg.max_timesteps:
        display = ProgressDisplay(cfg.max_timesteps, "steps")
    else:
        display = ProgressDisplay(cfg.max_generations, "gen")
    code = 0
    try:
        trainer.start()
        trainer.train(run_dir, on_generation=display)
    except KeyboardInterrupt:
        print(f"\ninterrupted; log and snapshots so far are in {run_dir}", file=sys.stderr)
        code = 130
    except (NonFiniteError, WorkerError) as e:
        print(f"esjax: error: {e}", file=sys.stderr)
        code = 1
    finally:
        display.close()
        trainer.close()
    if code == 0:
        t = trainer.totals
        print(
            f"done: {t.generation} generations, {t.timesteps:,} timesteps in "
            f"{t.time_elapsed:.0f} s; best eval return {t.best_eval:.1f}\nrun directory: {run_dir}"
        )
    return code


if __name__ == "__main__":
    sys.exit(main())
