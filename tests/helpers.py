"""Shared helpers for tests that run the real CLI in a subprocess."""

import csv
import subprocess
import sys
from pathlib import Path

# Small but real: the pool, the shared noise table and the jitted core all run.
TINY = [
    "--env", "InvertedPendulumBulletEnv-v0", "--noise-table-size", "2000000",
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
