"""A real learning run: InvertedPendulumBulletEnv-v0 to its registered threshold."""

import pytest

from .helpers import only_run_dir, read_log, train


@pytest.mark.slow
def test_inverted_pendulum_reaches_threshold(tmp_path):
    train(
        "--env", "InvertedPendulumBulletEnv-v0", "--seed", "0", "--max-timesteps", "400000",
        "--population-size", "20", "--timesteps-per-gen", "2000", "--eval-prob", "0.2",
        "--noise-table-size", "10000000", "--num-workers", "2", "--snapshot-freq", "0",
        cwd=tmp_path, timeout=600,
    )  # fmt: skip
    rows = read_log(only_run_dir(tmp_path))
    evals = [float(r["EvalGenRewardMean"]) for r in rows if int(r["EvalGenCount"]) > 0]
    assert evals, "no evaluation episodes ran"
    assert max(evals) >= 950.0, f"best noiseless evaluation {max(evals):.1f} < 950"
    # and it learned: the first generation was far below the threshold
    assert float(rows[0]["GenRewMean"]) < 200
