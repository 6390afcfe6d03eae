"""esjax as an installed package: a wheel holds the presets, and a run from it, outside
the checkout, gives the checkout's settings line, config.json and first generation."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from esjax.cli import main as esjax_main
from tests.helpers import run_module

ROOT = Path(__file__).resolve().parent.parent
FLAGS = ["--env", "InvertedPendulumBulletEnv-v0", "--max-generations", "1", "--num-workers",
         "1", "--envs-per-worker", "2", "--noise-table-size", "2000000", "--seed", "3"]  # fmt: skip
SAME = ["GenRewMean", "GenRewStd", "GenLenMean", "TimestepsSoFar", "GradNorm", "UpdateRatio"]


def _train(cwd: Path, env: dict) -> tuple[str, dict, dict]:
    proc = subprocess.run([sys.executable, "-m", "esjax.train", *FLAGS], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run,) = (cwd / "runs").iterdir()
    with open(run / "log.csv", newline="") as f:
        row = next(csv.DictReader(f))
    return proc.stdout.splitlines()[0], json.loads((run / "config.json").read_text()), row


@pytest.mark.slow
def test_a_wheel_installed_outside_the_checkout_trains_as_the_checkout(tmp_path):
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                            str(tmp_path / "dist"), str(ROOT)], capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("esjax-*.whl")
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(site), str(wheel)], check=True, capture_output=True)  # fmt: skip
    from esjax.provenance import git_commit

    assert (site / "esjax" / "BUILD_COMMIT").read_text().strip() == git_commit().split("+")[0]
    assert sorted(p.name for p in (site / "esjax" / "presets").glob("*.toml")) == sorted(
        p.name for p in (ROOT / "esjax" / "presets").glob("*.toml")
    )
    installed_env = {**os.environ, "PYTHONPATH": str(site)}  # before the editable checkout
    empty = tmp_path / "empty"
    empty.mkdir()
    where = subprocess.run([sys.executable, "-c", "import esjax; print(esjax.__file__)"],
                           cwd=empty, env=installed_env, capture_output=True,
                           text=True)  # fmt: skip
    assert where.stdout.startswith(str(site))
    from_wheel = _train(empty, installed_env)
    clone = tmp_path / "clone"
    clone.mkdir()
    from_checkout = _train(clone, {**os.environ, "PYTHONPATH": str(ROOT)})
    assert from_wheel[0] == from_checkout[0]  # the settings line, preset included
    assert "preset InvertedPendulumBulletEnv-v0" in from_wheel[0]
    assert from_wheel[1] == from_checkout[1]
    assert [from_wheel[2][c] for c in SAME] == [from_checkout[2][c] for c in SAME]


def test_the_esjax_command_runs_each_module(capsys):
    assert esjax_main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("esjax 0.1.0 (commit ")
    assert esjax_main(["frob"]) == 2
    assert "unknown command 'frob'" in capsys.readouterr().err
    proc = run_module("esjax.cli", "train", "--population-size", "x")
    assert proc.returncode == 2
    assert proc.stderr.startswith("esjax train: error: argument --population-size")
    proc = run_module("esjax.cli", "plot", "--help")
    assert proc.returncode == 0 and proc.stdout.startswith("usage: esjax plot")
