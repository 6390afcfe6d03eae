"""Experiment trackers beside ``log.csv`` (which stays the source of truth):
``--logger tensorboard`` and ``--logger wandb`` (the ``esjax[tracking]`` extra).

Each generation, every numeric log column is logged under its CSV name, at step
TimestepsSoFar (the training timesteps; W&B: the x axis of every chart); cells that are
not finite (NaN: no evaluation that generation) are left out. At the start: the config as
hyperparameters and the run directory.
"""

from __future__ import annotations

import math
import os
import secrets
import time
from pathlib import Path
from typing import Any

from esjax.config import Config
from esjax.errors import ConfigError

_NEEDS = {"tensorboard": "tensorboardX", "wandb": "wandb"}
STEP = "TimestepsSoFar"


def check_trackers(names: tuple[str, ...]) -> None:
    """ConfigError (one line naming the install) if a tracker's package is missing."""
    import importlib

    for name in names:
        try:
            importlib.import_module(_NEEDS[name])
        except ImportError:
            raise ConfigError(
                f"--logger {name} needs the {_NEEDS[name]} package: pip install "
                "'esjax[tracking]' (make setup installs it)"
            ) from None


def numeric_columns(row: dict[str, Any]) -> dict[str, float]:
    """The row's finite numbers, as floats (NaN: no evaluation that generation; -inf: no
    best evaluation yet)."""
    return {
        k: float(v)
        for k, v in row.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


def _hparams(cfg: Config, run_dir: Path) -> dict[str, Any]:
    """The config as flat scalars and strings (what TensorBoard's hparams take), and the
    run directory."""
    out: dict[str, Any] = {}
    for k, v in cfg.to_dict().items():
        ok = isinstance(v, bool | str) or (isinstance(v, int | float) and math.isfinite(v))
        out[k] = v if ok else str(v)
    return {**out, "run_directory": str(run_dir)}  # run_dir is the parent folder


class TensorBoardTracker:
    """Event files in ``RUN_DIR/tensorboard`` (``tensorboard --logdir runs`` lists each run).
    A resumed run purges the steps after its checkpoint, as log.csv drops its rows."""

    def __init__(self, run_dir: Path, cfg: Config, resumed_at: int | None):
        from tensorboardX import SummaryWriter
        from tensorboardX.summary import hparams

        self.logdir = Path(run_dir) / "tensorboard"
        purge = None if resumed_at is None else resumed_at + 1
        # The file name carries only whole seconds: a resume within the same second would
        # reopen (and truncate) the first file. Nanoseconds keep names unique and in order.
        self.writer = SummaryWriter(
            logdir=str(self.logdir),
            purge_step=purge,
            flush_secs=30,
            filename_suffix=f".{time.time_ns()}",
        )
        if resumed_at is None:
            config = _hparams(cfg, run_dir)
            for summary in hparams(config, {"EvalBestSoFar": 0.0, "GenRewMean": 0.0}):
                self.writer._get_file_writer().add_summary(summary)
            self.writer.add_text("config", "```\n" + cfg.to_json() + "\n```", 0)
            self.writer.add_text("run_dir", str(run_dir), 0)
        self.writer.flush()

    def log(self, row: dict[str, Any]) -> None:
        step = int(row[STEP])
        for name, value in numeric_columns(row).items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def _wandb_mode() -> str | None:
    """offline when W&B has no key to go online with (and WANDB_MODE is unset): a run
    never waits on a login prompt; ``wandb sync`` uploads it later."""
    if os.environ.get("WANDB_MODE") or os.environ.get("WANDB_API_KEY"):
        return None
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return None if "api.wandb.ai" in netrc.read_text() else "offline"
    except OSError:
        return "offline"


class WandbTracker:
    """A W&B run in ``RUN_DIR/wandb``, its id kept in ``RUN_DIR/wandb_run_id`` so that
    ``--resume`` continues the same run (W&B keeps what an interrupted run logged after
    its last checkpoint; the CSV does not)."""

    def __init__(self, run_dir: Path, cfg: Config, resumed_at: int | None):
        import wandb

        id_file = Path(run_dir) / "wandb_run_id"
        if id_file.exists():
            run_id = id_file.read_text().strip()
        else:
            run_id = secrets.token_hex(4)
            id_file.write_text(run_id + "\n")
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "esjax"), dir=str(run_dir), id=run_id,
            name=Path(run_dir).name, resume="allow", config=_hparams(cfg, run_dir),
            mode=_wandb_mode(), settings=wandb.Settings(console="off", silent=True),
        )  # fmt: skip
        self.run.define_metric(STEP)
        self.run.define_metric("*", step_metric=STEP)
        self.mode = self.run.settings.mode
        self.where = Path(self.run.dir).parent

    def log(self, row: dict[str, Any]) -> None:
        self.run.log(numeric_columns(row))

    def close(self) -> None:
        self.run.finish()


class Trackers:
    """The run's trackers: ``log(row)`` each generation, ``close()`` at the end."""

    def __init__(self, names: tuple[str, ...], run_dir: Path, cfg: Config,
                 resumed_at: int | None, say=print):  # fmt: skip
        self.trackers = []
        try:
            for name in names:
                if name == "tensorboard":
                    t = TensorBoardTracker(run_dir, cfg, resumed_at)
                    view = f"tensorboard --logdir {t.logdir.parent.parent}"
                    say(f"tensorboard: {t.logdir} (view: {view})")
                else:
                    t = WandbTracker(run_dir, cfg, resumed_at)
                    sync = f"; upload: wandb sync {t.where}" if t.mode == "offline" else ""
                    say(f"wandb: run {t.run.id} ({t.mode}) in {t.where}{sync}")
                self.trackers.append(t)
        except BaseException:
            self.close()
            raise

    def log(self, row: dict[str, Any]) -> None:
        for t in self.trackers:
            t.log(row)

    def close(self) -> None:
        for t in self.trackers:
            t.close()
        self.trackers = []
