"""Gymnasium's MuJoCo v5 envs through the real CLI: train, resume, layouts, evaluate."""

import os
import subprocess
import sys

import numpy as np
import pytest

from esjax.run.state import load_run
from tests.rollout.test_envs import zero_action_episode

from .helpers import only_run_dir, read_log, train

pytestmark = pytest.mark.integration

pytest.importorskip("mujoco", reason="make setup installs the mujoco extra")

# Hopper-v5: episodes of varied length (it falls), ~9k steps/s per core.
HOPPER = ["--env", "Hopper-v5", "--preset", "none", "--noise-table-size", "2000000",
          "--hidden-dims", "16",
          "--population-size", "8", "--timesteps-per-gen", "400", "--eval-prob", "0.2",
          "--snapshot-freq", "1"]  # fmt: skip
COLUMNS = ["GenRewMean", "GenRewStd", "GenLenMean", "EvalGenRewardMean", "EpisodesThisGen",
           "TimestepsThisGen", "ObCount"]  # fmt: skip


def columns(run):
    return [[r[c] for c in COLUMNS] for r in read_log(run)]


@pytest.fixture(scope="module")
def hopper_run(tmp_path_factory):
    """Four generations, 2 workers x 2 envs, straight through: the reference."""
    cwd = tmp_path_factory.mktemp("hopper")
    train(*HOPPER, "--max-generations", "4", "--num-workers", "2", "--envs-per-worker", "2",
          cwd=cwd)  # fmt: skip
    return only_run_dir(cwd)


# Resume on another layout, on MuJoCo: tests/test_golden.py (mujoco_pgpe_resume, in this
# process) and tests/test_strategies.py (worker processes, three layouts).


def test_mujoco_trains_through_the_cli(hopper_run):
    rows = read_log(hopper_run)
    assert [int(r["Generation"]) for r in rows] == [0, 1, 2, 3]
    assert all(int(r["TimestepsThisGen"]) >= 400 for r in rows)
    assert len({r["GenLenMean"] for r in rows}) > 1 and int(rows[-1]["ObCount"]) >= 0
    assert np.isfinite(np.asarray(load_run(hopper_run).state.theta)).all()


def test_mujoco_episode_does_not_depend_on_what_the_env_ran_before():
    from esjax.rollout.envs import make_env

    used = make_env("Hopper-v5")
    for seed in range(10):
        zero_action_episode(used, seed)
        again = zero_action_episode(used, seed)
        np.testing.assert_array_equal(again, zero_action_episode(make_env("Hopper-v5"), seed))


def test_mujoco_evaluate_and_headless_video(tmp_path, hopper_run):
    import imageio.v2 as imageio

    video = tmp_path / "hopper.mp4"
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    env.pop("DISPLAY", None)
    proc = subprocess.run(
        [sys.executable, "-m", "esjax.evaluate", str(hopper_run), "--episodes", "1",
         "--video", str(video)], capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    if proc.returncode == 2:  # no EGL on this machine: one line naming what to install
        last = proc.stderr.strip().splitlines()[-1]
        assert "apt install libegl1" in last and "Traceback" not in proc.stderr
        pytest.skip(f"no headless OpenGL here: {last}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = [ln for ln in proc.stdout.splitlines() if "episodes, return" in ln][0]
    length = float(line.split("length ")[1].split(" ")[0])
    assert np.isfinite(float(line.split("torso x ")[1].split(" ")[0]))  # metres moved
    reader = imageio.get_reader(video)
    try:
        count = reader.count_frames()
        middle = reader.get_data(count // 2)
    finally:
        reader.close()
    assert count == round(length) + 1 and middle.std() > 5  # a frame per step and reset


def test_mujoco_video_without_opengl_fails_in_one_line(tmp_path, hopper_run):
    proc = subprocess.run(
        [sys.executable, "-m", "esjax.evaluate", str(hopper_run), "--video",
         str(tmp_path / "x.mp4")], capture_output=True, text=True, timeout=300,
        env={**os.environ, "MUJOCO_GL": "osmesa"},
    )  # fmt: skip
    if proc.returncode == 0:
        pytest.skip("OSMesa is installed here, so this renders")
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert "cannot render Hopper-v5 headless with MUJOCO_GL=osmesa" in last
    assert "apt install" in last and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.mp4").exists()
