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
    TRACKERS,
    Config,
)
from esjax.errors import ConfigError
from esjax.parsing import (
    DefaultsFormatter,
    OneLineParser,
    envs_per_worker_arg,
    hidden_dims_arg,
)
from esjax.run.rundir import (
    RunLock,
    check_free_space,
    create_run_dir,
    load_run_config,
    record_machine,
    truncate_log,
    write_config,
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


def count_arg(text: str) -> int:
    """An integer option: digits, or integral scientific notation as budgets are written
    (1e6, 3.16e7, 1_000_000)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid count: {text!r}") from None
    if not math.isfinite(value) or value != int(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    return int(value)


def _value_type(typ):
    """``X`` of an option typed ``X | None`` (None: the strategy's default), else ``typ``."""
    if isinstance(typ, types.UnionType):
        return next(t for t in get_args(typ) if t is not type(None))
    return typ


def build_parser(suppress_defaults: bool = False) -> argparse.ArgumentParser:
    """One flag per Config field, help text and default taken from the field, plus
    ``--resume``. With ``suppress_defaults`` the namespace holds only flags given."""
    p = OneLineParser(
        prog="python -m esjax.train",
        description="Train a policy with OpenAI-style Evolution Strategies.",
        formatter_class=DefaultsFormatter,
    )
    p.add_argument(
        "--preset",
        metavar="NAME",
        default=argparse.SUPPRESS if suppress_defaults else None,
        help="Start from a preset's options (esjax/presets/NAME.toml, env included; "
        "or a path to a .toml file); flags given here override them. Default: the env's "
        "own preset when one is shipped; none: esjax's bare defaults.",
    )
    p.add_argument(
        "--resume", metavar="RUN_DIR", default=argparse.SUPPRESS if suppress_defaults else None,
        help="Continue that run in place from its latest checkpoint (budget, workers and "
        "checkpointing options may change; nothing else may).",
    )  # fmt: skip
    hints = get_type_hints(Config)
    for f in dataclasses.fields(Config):
        if f.name == "preset":  # the --preset above, recorded in the Config
            continue
        flag = "--" + f.name.replace("_", "-")
        default = argparse.SUPPRESS if suppress_defaults else f.default
        kw = dict(default=default, help=f.metadata["help"], dest=f.name)
        typ = _value_type(hints[f.name])
        if typ is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif f.name == "hidden_dims":
            kw.update(type=_hidden_dims, nargs="+", metavar="{N,linear}")
        elif f.name == "logger":
            kw.update(nargs="+", choices=(*TRACKERS, "none"))
        elif f.name == "env_kwargs":  # repeatable: --env-kwarg KEY=VALUE
            flag = "--env-kwarg"
            kw.update(action="append", metavar="KEY=VALUE")
            if not suppress_defaults:
                kw["default"] = []  # argparse appends to a copy
        elif f.name == "envs_per_worker":
            kw.update(type=_envs_per_worker, metavar="{auto,N}")
            if not suppress_defaults:
                kw["default"] = "auto"  # argparse converts a string default with ``type``
        else:
            kw["type"] = count_arg if typ is int else typ
            if "choices" in f.metadata:
                kw["choices"] = f.metadata["choices"]
        p.add_argument(flag, **kw)
    return p


def resume_config(run_dir: Path, given: dict) -> Config:
    """The saved run's Config with the allowed overrides in ``given`` applied."""
    saved = load_run_config(run_dir)
    same = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}
    changed = {k: given[k] for k, v in same.items() if getattr(saved, k) != v}
    refused = sorted(set(changed) - set(RESUMABLE_OVERRIDES))
    if refused:
        flag = "--env-kwarg" if refused[0] == "env_kwargs" else "--" + refused[0].replace("_", "-")
        has = getattr(saved, refused[0])
        if refused[0] == "hidden_dims":  # as the flag is spelled
            has = " ".join(map(str, has)) or "linear"
        raise ConfigError(
            f"cannot change {flag} when resuming (the run has {has!r}): "
            f"only {', '.join('--' + k.replace('_', '-') for k in RESUMABLE_OVERRIDES)} may change"
        )
    return dataclasses.replace(saved, **changed)


def parse(argv: list[str] | None) -> tuple[Config, Path | None, str]:
    """(the run's Config, the run directory to resume or None, the line saying where the
    options come from) from the command line: flags over a preset (``--preset``, else the
    env's own), or over a resumed run's config.json. ConfigError (one line)."""
    from esjax.presets import NO_PRESET, settings_line, start_values

    build_parser().parse_args(argv)  # --help, and argparse's own errors, with defaults shown
    given = vars(build_parser(suppress_defaults=True).parse_args(argv))
    resume = given.pop("resume", None)
    preset = given.pop("preset", None)
    if resume and preset:
        raise ConfigError("--preset cannot be combined with --resume: the run's "
                          "config.json already holds its options")  # fmt: skip
    if resume:
        cfg = resume_config(Path(resume), given)
        origin = "esjax defaults" if cfg.preset == NO_PRESET else f"preset {cfg.preset}"
        settings = (f"settings: {Path(resume) / 'config.json'} (the run started from "
                    f"{origin}); flags change only its budget and layout")  # fmt: skip
        return cfg, Path(resume), settings
    start = start_values(given.get("env", Config.env), preset, given.get("algo"))
    cfg = Config(**{**start, **given})
    return cfg, None, settings_line(cfg, preset)


def main(argv: list[str] | None = None) -> int:
    """``python -m esjax.train``: exit code 0 when the budget is spent, 2 for bad input
    (one line), 1 for a failure while training, 128 + signal when stopped."""
    parser = build_parser()
    try:
        cfg, resume, settings = parse(argv)
    except ConfigError as e:
        parser.fail(str(e))  # one line, exit code 2
    return run(cfg, resume, on_bad_input=parser.fail, settings=settings)


def run(cfg: Config, resume: Path | None, on_bad_input=None, settings: str | None = None) -> int:
    """Train ``cfg`` (continuing the run in ``resume``, if given) with a progress display
    and signal handling; the exit code. ``on_bad_input(message)`` is called (and must
    raise) for a ConfigError found while starting: nothing is written then. ``settings``:
    the first line printed (where the options come from; by default from ``cfg``)."""
    from esjax.errors import WorkerError
    from esjax.presets import settings_line

    def bad_input(message: str) -> int:
        if on_bad_input is None:
            print(f"esjax: error: {message}", file=sys.stderr)
            return 2
        on_bad_input(message)
        return 2

    try:
        print(settings or settings_line(cfg), flush=True)
        trainer, run_dir, lock = _start(cfg, resume)
    except ConfigError as e:
        return bad_input(str(e))
    except KeyboardInterrupt:
        print("interrupted before training started; nothing was written", file=sys.stderr)
        return 128 + signal.SIGINT
    except WorkerError as e:  # workers that could not start
        print(f"esjax: error: {e}", file=sys.stderr)
        return 1
    try:
        if resume:
            if not (run_dir / "log.csv").exists() and trainer.state.generation:
                print(f"warning: {run_dir / 'log.csv'} is missing: the log starts again at "
                      f"generation {trainer.state.generation} (the rows before it are lost; "
                      "the checkpoints hold the training state)", flush=True)  # fmt: skip
            truncate_log(run_dir / "log.csv", trainer.state.generation)
            print(f"resuming {run_dir} from generation {trainer.state.generation}", flush=True)
        else:
            print(f"run directory: {run_dir}", flush=True)
        code = _train(trainer, run_dir, resumed=resume is not None)
        if code == 0:
            _print_summary(trainer, run_dir)
        return code
    finally:
        lock.release()


def _start(cfg: Config, resume: Path | None):
    """(a started Trainer, its run directory, the run's RunLock): lock a resumed run,
    resolve the config, check the budget and the disk, start the workers, then create
    the run directory (locked, with its config.json). Whatever fails leaves nothing
    behind: no directory, no processes, no lock held."""
    from esjax.rollout.envs import check_env_id
    from esjax.rollout.jax_envs import enable_compilation_cache, is_jax_env

    check_env_id(cfg.env)
    if is_jax_env(cfg.env):
        enable_compilation_cache()  # its rollout compiles for tens of seconds on CPU
    lock = RunLock(resume) if resume else None  # before anything reads or writes the run
    try:
        trainer, run_dir, lock = _start_locked(cfg, resume, lock)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return trainer, run_dir, lock


def _start_locked(cfg: Config, resume: Path | None, lock: RunLock | None):
    """``_start`` once a resumed run is locked (``lock``); a new run is locked here."""
    from esjax.run.checkpoint import checkpoint_bytes
    from esjax.run.state import load_run
    from esjax.run.trackers import check_trackers
    from esjax.trainer import Trainer

    trainer = Trainer.from_config(cfg, log=lambda line: print(line, flush=True))
    cfg, info, spec = trainer.cfg, trainer.info, trainer.spec
    try:
        if resume:
            trainer.restore(load_run(resume, "latest", cfg, info))
            if not trainer.budget_left():
                raise ConfigError(
                    f"the run's budget is already spent at generation "
                    f"{trainer.state.generation}: raise --max-timesteps, --max-generations "
                    "or --target-return to continue it"
                )
        # The newest --keep-checkpoints, the best, and one being written, plus the log.
        need = checkpoint_bytes(spec.num_params, info.ob_dim) * (cfg.keep_checkpoints + 2)
        check_free_space(resume or Path(cfg.run_dir), need + (1 << 20))
        check_trackers(cfg.logger)
        # Workers first: a backend that cannot start (no cluster, a bad env on a worker)
        # fails here, before a run directory exists.
        trainer.start()
        run_dir = resume or create_run_dir(Path(cfg.run_dir), cfg.env)
        try:
            lock = lock or RunLock(run_dir)
            write_config(run_dir, cfg)
            machine_line = record_machine(run_dir, trainer.state.generation)
            if machine_line:
                print(machine_line, flush=True)
        except ConfigError:
            if not resume:
                if lock is not None:
                    lock.release()
                shutil.rmtree(run_dir, ignore_errors=True)  # ours, just made, still empty
            raise
    except BaseException:
        trainer.close()
        raise
    return trainer, run_dir, lock


REPEAT_GRACE_S = 1.0  # signals this soon after the first are the same stop request


def quits_at_once(signum: int, since_first_s: float) -> bool:
    """Whether a signal received ``since_first_s`` seconds after the one that began an
    orderly stop ends the process at once: only a Ctrl-C (SIGINT) after REPEAT_GRACE_S.
    A signal to the whole process group, or forwarded by make or a shell, arrives within
    milliseconds of the first; Slurm and systemd repeat SIGTERM: those keep stopping."""
    return signum == signal.SIGINT and since_first_s > REPEAT_GRACE_S


def _train(trainer, run_dir: Path, resumed: bool = False) -> int:
    """The training loop under a progress display, logging to the trackers of --logger;
    Ctrl-C / SIGTERM stop it after a checkpoint (repeats within REPEAT_GRACE_S, and any
    SIGTERM after the first, are the same request; a later Ctrl-C quits at once). The
    exit code."""
    from esjax.errors import CheckpointWriteError, NonFiniteError, StopRequested, WorkerError
    from esjax.run.metrics import ProgressDisplay
    from esjax.run.trackers import Trackers

    cfg, state = trainer.cfg, trainer.state
    if cfg.max_timesteps:
        display = ProgressDisplay(cfg.max_timesteps, "steps", state.timesteps)
    else:
        display = ProgressDisplay(cfg.max_generations, "gen", state.generation)
    received: list[int] = []
    first_at: list[float] = []

    def on_signal(signum, frame):
        if received:
            # The same request again (a signal to the whole process group reaches us from
            # make or a shell as well, Slurm and systemd repeat SIGTERM): keep stopping.
            # Only a deliberate second Ctrl-C quits at once (checkpoints and log stay
            # consistent).
            if quits_at_once(signum, time.monotonic() - first_at[0]):
                trainer.pool.kill_now()
                os._exit(128 + signum)
            return
        received.append(signum)
        first_at.append(time.monotonic())
        trainer.stop_requested = True
        print(f"\n{signal.Signals(signum).name}: stopping after saving a checkpoint "
              "(press Ctrl-C again to quit at once)", file=sys.stderr, flush=True)  # fmt: skip

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    trackers = None

    def on_generation(row: dict) -> None:
        display(row)
        trackers.log(row)

    try:
        resumed_at = state.timesteps if resumed else None
        trackers = Trackers(cfg.logger, run_dir, cfg, resumed_at, say=display.bar.write)
        trainer.train(run_dir, on_generation=on_generation)
        return 0
    except (StopRequested, KeyboardInterrupt):
        print(f"stopped at generation {trainer.state.generation}; checkpoint saved. Resume "
              f"with:\n  python -m esjax.train --resume {run_dir}", file=sys.stderr)  # fmt: skip
        return 128 + (received[0] if received else signal.SIGINT)
    except (NonFiniteError, WorkerError) as e:
        print(f"esjax: error: {e}", file=sys.stderr)
        return 1
    except CheckpointWriteError as e:
        saved = trainer.recorder.saved_step
        after = (
            f"then resume from generation {saved} with: python -m esjax.train --resume {run_dir}"
            if saved is not None
            else "then start the run again"
        )
        print(f"esjax: error: {e}: free some space or fix the folder's permissions, {after}",
              file=sys.stderr)  # fmt: skip
        return 1
    finally:
        display.close()
        if trackers is not None:
            trackers.close()
        trainer.close()


def _print_summary(trainer, run_dir: Path) -> None:
    t = trainer.state
    best = "none yet" if t.best_eval == -math.inf else f"{t.best_eval:.1f}"
    best_step = trainer.recorder.best_step
    best_ckpt = run_dir / "checkpoints" / str(best_step) if best_step is not None else None
    which = "best" if best_ckpt else "latest"
    video = f" --video {run_dir}/{which}.mp4"
    print(
        f"done: {t.generation} generations, {t.timesteps:,} training timesteps "
        f"({t.env_steps:,} env steps in all) in {t.time_elapsed:.0f} s; best evaluation "
        f"return {best}\n"
        f"run directory:   {run_dir}\n"
        f"best checkpoint: {best_ckpt or 'none (no evaluation episode ran)'}\n"
        f"watch it:        python -m esjax.evaluate {run_dir} --checkpoint {which}{video}\n"
        f"plot it:         python -m esjax.plot {run_dir} --out {run_dir}/curves.png\n"
        f"continue it:     python -m esjax.train --resume {run_dir} --max-timesteps N"
    )


if __name__ == "__main__":
    sys.exit(main())
