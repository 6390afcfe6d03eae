"""Shared helpers for tests that run the real CLI in a subprocess."""

import csv
import subprocess
import sys
from pathlib import Path

# Small but real: the pool, the shared noise table and the jitted core all run.
TINY = [
    "--env", "InvertedPendulumBulletEnv-v0", "--preset", "none", "--noise-table-size", "2000000",
    "--hidden-dims", "16", "--num-workers", "2", "--envs-per-worker", "2",
    "--population-size", "8", "--timesteps-per-gen", "200",
]  # fmt: skip


def train(*args, cwd, timeout=300, check=True):
    proc = subprocess.run(
        [sys.executable, "-m", "esjax.train", "--run-dir", str(Path(cwd) / "runs"), *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def only_run_dir(cwd) -> Path:
    runs = list((Path(cwd) / "runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def read_log(run_dir: Path) -> list[dict]:
    with open(run_dir / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def run_module(module: str, *args: str) -> subprocess.CompletedProcess:
    """``python -m MODULE ARGS`` (esjax.train, esjax.evaluate, esjax.plot) run in this
    process through its ``main(argv)``, as a CompletedProcess: its exit code (2 for bad
    input) and what it printed. Signal handlers it installs are restored."""
    import contextlib
    import importlib
    import io
    import signal

    main = importlib.import_module(module).main
    out, err = io.StringIO(), io.StringIO()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    except SystemExit as e:
        code = e.code
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
    return subprocess.CompletedProcess([module, *args], code, out.getvalue(), err.getvalue())


def main_inline(*args, cwd, backend="inline", check=True) -> subprocess.CompletedProcess:
    """``python -m esjax.train --run-dir CWD/runs ARGS`` in this process (``--backend
    inline`` unless resuming or ``backend`` is None: episodes in this process too);
    ``check``: assert it exited 0."""
    argv = ["--run-dir", str(Path(cwd) / "runs"), *args]
    if backend and "--resume" not in args:
        argv += ["--backend", backend]
    proc = run_module("esjax.train", *argv)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def trainer_rows(cfg, generations: int, resume_after: int | None = None, cols=()):
    """(log rows' ``cols`` as an array (generations, len(cols)), final θ) of ``cfg``
    trained in this process with ``esjax.trainer.Trainer``; with ``resume_after``, the
    trainer is checkpointed, closed and a new one restored before that generation."""
    import tempfile

    import numpy as np

    from esjax.run.checkpoint import CheckpointStore
    from esjax.run.state import load_run
    from esjax.trainer import Trainer

    def started():
        t = Trainer.from_config(cfg, log=lambda s: None)
        t.start()
        return t

    trainer, rows = started(), []
    try:
        for g in range(generations):
            if g == resume_after:
                with tempfile.TemporaryDirectory() as run_dir:
                    store = CheckpointStore(run_dir, keep=1)
                    trainer.save(store)
                    store.close()
                    trainer.close()
                    trainer = started()
                    trainer.restore(load_run(Path(run_dir), "latest", trainer.cfg, trainer.info))
            rows.append(trainer.step())
    finally:
        trainer.close()
    return np.array([[r[c] for c in cols] for r in rows]), np.asarray(trainer.state.theta)
