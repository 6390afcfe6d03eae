"""Full training state: exact resume, SIGKILL recovery, checkpoints kept, bad input.

Runs go through ``esjax.train.main`` in this process with ``--backend inline``, except
where a process must die (SIGKILL) or a video must be encoded (esjax.evaluate).
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from esjax.run.checkpoint import CheckpointStore
from tests.helpers import TINY, only_run_dir, read_log, run_module
from tests.helpers import main_inline as train

RESULT_COLUMNS = [
    "GenRewMean", "GenRewStd", "GenLenMean", "EvalGenRewardMean", "EvalGenCount",
    "EpisodesThisGen", "TimestepsThisGen", "TimestepsSoFar", "ObCount", "GenRewMax",
]  # fmt: skip
DET = [*TINY, "--eval-prob", "0.2", "--snapshot-freq", "1"]


def results(run: Path) -> list[list[str]]:
    return [[r[c] for c in RESULT_COLUMNS] for r in read_log(run)]


def final_theta(run: Path) -> np.ndarray:
    from esjax.run.state import load_run

    return np.asarray(load_run(run).state.theta)


def tree_digest(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*")) if p.is_file()
    }  # fmt: skip


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """Six generations, uninterrupted: the reference."""
    cwd = tmp_path_factory.mktemp("straight")
    train(*DET, "--max-generations", "6", cwd=cwd)
    return only_run_dir(cwd)


def test_resume_is_identical_to_uninterrupted(tmp_path, straight_run):
    train(*DET, "--max-generations", "3", cwd=tmp_path)
    run = only_run_dir(tmp_path)
    proc = train("--resume", str(run), "--max-generations", "6", cwd=tmp_path)
    assert "resuming" in proc.stdout
    assert results(run) == results(straight_run)
    np.testing.assert_array_equal(final_theta(run), final_theta(straight_run))
    # appended in place, one row per generation
    assert [int(r["Generation"]) for r in read_log(run)] == list(range(6))


def test_another_seed_gives_other_results(tmp_path, straight_run):
    """(The same seed gives the same bits on any layout: tests/test_golden.py,
    tests/test_determinism.py.)"""
    train(*DET, "--max-generations", "6", "--seed", "1", cwd=tmp_path)
    assert results(only_run_dir(tmp_path)) != results(straight_run)


@pytest.mark.integration
def test_sigkill_then_resume_continues_from_last_checkpoint(tmp_path, straight_run):
    """A run killed mid-way (its budget far from spent) and resumed to 6 generations on
    worker processes (the reference ran inline), ends exactly as the uninterrupted run."""
    cmd = [sys.executable, "-m", "esjax.train", "--run-dir", str(tmp_path / "runs"), *DET,
           "--max-generations", "1000", "--backend", "inline"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            ck = list((tmp_path / "runs").glob("*/checkpoints/*"))
            if len([c for c in ck if c.name.isdigit()]) >= 2:
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    run = only_run_dir(tmp_path)
    store = CheckpointStore(run, read_only=True)
    try:
        steps = store.steps()
    finally:
        store.close()
    assert 2 <= steps[-1] < 6, steps  # killed part-way, with a checkpoint to resume from
    train("--resume", str(run), "--max-generations", "6", "--backend", "local",
          "--num-workers", "1", "--envs-per-worker", "3", cwd=tmp_path)  # fmt: skip
    assert results(run) == results(straight_run)
    np.testing.assert_array_equal(final_theta(run), final_theta(straight_run))


@pytest.mark.parametrize(
    "flags, column, count",
    [
        (("--eval-every", "0", "--eval-prob", "0.5"), "EvalGenRewardMean", "EvalGenCount"),
        (("--eval-every", "2", "--eval-episodes", "3"), "PeriodicEvalRewMean", "PeriodicEvalCount"),
    ],
    ids=["eval-prob", "eval-every"],
)
def test_checkpoints_keep_newest_plus_best(tmp_path, flags, column, count):
    train(*DET, "--max-generations", "8", "--keep-checkpoints", "2", *flags, cwd=tmp_path)
    run = only_run_dir(tmp_path)
    store = CheckpointStore(run, read_only=True)
    steps = store.steps()
    best = store.resolve("best")
    meta = store.load_meta(best)
    store.close()
    assert steps[-2:] == [7, 8] and set(steps) <= {7, 8, best}
    rows = read_log(run)
    evals = {int(r["Generation"]) + 1: float(r[column]) for r in rows if int(r[count])}
    if column == "PeriodicEvalRewMean":
        assert sorted(evals) == [1, 3, 5, 7]  # generations 0, 2, 4, 6
        assert {int(r[count]) for r in rows} == {0, 3}
    assert meta["eval_return"] == pytest.approx(max(evals.values()))
    assert evals[best] == max(evals.values())


@pytest.mark.integration
def test_evaluate_video_and_plot(tmp_path, straight_run):
    import imageio.v2 as imageio
    from PIL import Image

    video = tmp_path / "ep.mp4"
    proc = subprocess.run(
        [sys.executable, "-m", "esjax.evaluate", str(straight_run), "--episodes", "2",
         "--video", str(video), "--seed", "3"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "\r" not in proc.stderr + proc.stdout  # no progress bar redraws in a file
    line = [ln for ln in proc.stdout.splitlines() if "episodes, return" in ln][0]
    length = float(line.split("length ")[1].split(" ")[0])
    reader = imageio.get_reader(video)
    frames = [f for f in reader]
    reader.close()
    assert len(frames) == round(2 * length) + 2  # a frame per step plus one per reset
    assert frames[len(frames) // 2].std() > 5  # not blank

    gif = tmp_path / "ep.gif"
    proc = subprocess.run(
        [sys.executable, "-m", "esjax.evaluate", str(straight_run), "--episodes", "1",
         "--video", str(gif)], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0
    with Image.open(gif) as im:
        assert im.n_frames > 1 and np.asarray(im.convert("RGB")).std() > 5

    png = tmp_path / "curves.png"
    proc = run_module("esjax.plot", str(straight_run), str(straight_run), "--out", str(png),
                      "--x", "generation")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with Image.open(png) as im:
        assert im.size == (1000, 600)


_cli = run_module


def _one_line_error(proc, fragment):
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert fragment in last and "Traceback" not in proc.stderr


@pytest.fixture
def run_copy(tmp_path, straight_run):
    import shutil

    dst = tmp_path / straight_run.name
    shutil.copytree(straight_run, dst)
    return dst


@pytest.mark.parametrize(
    "module, args, fragment",
    [
        ("esjax.evaluate", ["{missing}"], "no such run directory"),
        ("esjax.evaluate", ["{notrun}"], "no config.json"),
        ("esjax.evaluate", ["{run}", "--checkpoint", "99"], "no checkpoint for generation 99"),
        ("esjax.evaluate", ["{run}", "--checkpoint", "nope"], "not 'latest', 'best'"),
        ("esjax.train", ["--resume", "{missing}"], "no such run directory"),
        ("esjax.train", ["--resume", "{notrun}"], "has no config.json"),
        ("esjax.train", ["--resume", "{run}", "--env", "Pendulum-v1"], "cannot change --env"),
        ("esjax.train", ["--resume", "{run}", "--hidden-dims", "8"], "cannot change --hidden-dims"),
        ("esjax.train", ["--resume", "{run}"], "budget is already spent"),
        ("esjax.plot", ["{notrun}"], "has no log.csv"),
    ],
)
def test_bad_run_input_is_one_line_exit_2_nothing_modified(
    tmp_path, run_copy, module, args, fragment
):
    notrun = tmp_path / "notrun"
    notrun.mkdir()
    subs = {"missing": tmp_path / "absent", "notrun": notrun, "run": run_copy}
    before = tree_digest(run_copy)
    _one_line_error(_cli(module, *[a.format(**subs) for a in args]), fragment)
    assert tree_digest(run_copy) == before


def test_corrupted_checkpoint_and_edited_config(run_copy):
    before = tree_digest(run_copy)
    latest = max(int(p.name) for p in (run_copy / "checkpoints").iterdir() if p.name.isdigit())
    for f in (run_copy / "checkpoints" / str(latest) / "state").rglob("*"):
        if f.is_file():
            f.write_bytes(b"garbage")
    corrupted = tree_digest(run_copy)
    assert corrupted != before
    _one_line_error(_cli("esjax.evaluate", str(run_copy)), "unreadable")
    _one_line_error(_cli("esjax.train", "--resume", str(run_copy), "--max-generations", "9"),
                    "unreadable")  # fmt: skip
    # and the way forward: the previous checkpoint
    _one_line_error(_cli("esjax.train", "--resume", str(run_copy), "--max-generations", "9"),
                    f"{latest} aside to resume from checkpoint")  # fmt: skip
    assert tree_digest(run_copy) == corrupted

    cfg_path = run_copy / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg_path.write_text(json.dumps({**cfg, "hidden_dims": [32]}))
    _one_line_error(_cli("esjax.evaluate", str(run_copy), "--checkpoint", "5"),
                    "hidden_dims")  # fmt: skip
    cfg_path.write_text("{not json")
    _one_line_error(_cli("esjax.train", "--resume", str(run_copy)), "not valid JSON")
    assert cfg_path.read_text() == "{not json"
    assert os.path.exists(run_copy / "log.csv")
