"""A real learning run: InvertedPendulumBulletEnv-v0 to its registered threshold, with
the env's preset (ARS V2-t, a linear policy: median 4.5e4 steps to 950 on seeds 0-2)."""

import subprocess
import sys

import pytest

from .helpers import only_run_dir, read_log, train


@pytest.mark.slow
def test_inverted_pendulum_reaches_threshold(tmp_path):
    train(
        "--env", "InvertedPendulumBulletEnv-v0", "--seed", "0", "--max-timesteps", "150000",
        "--noise-table-size", "10000000", "--num-workers", "2", "--snapshot-freq", "1",
        cwd=tmp_path, timeout=600,
    )  # fmt: skip
    run = only_run_dir(tmp_path)
    rows = read_log(run)
    evals = [float(r["PeriodicEvalRewMean"]) for r in rows if int(r["PeriodicEvalCount"]) > 0]
    assert evals, "no evaluation episodes ran"
    assert max(evals) >= 950.0, f"best evaluation (mean of 5 episodes) {max(evals):.1f} < 950"
    # and it learned: the first generation was far below the threshold
    assert float(rows[0]["GenRewMean"]) < 200

    # the best checkpoint, evaluated afresh on other seeds, holds the pole too
    proc = subprocess.run(
        [sys.executable, "-m", "esjax.evaluate", str(run), "--checkpoint", "best",
         "--episodes", "3", "--seed", "123"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    mean_return = float(proc.stdout.split("return ")[1].split(" ")[0])
    assert mean_return >= 950.0, proc.stdout


@pytest.mark.slow
def test_a_jax_native_env_learns_and_its_best_checkpoint_holds(tmp_path):
    """brax/inverted_pendulum (Brax on MJX physics), OpenAI-ES with benchmarks/jax_envs.py's
    settings (the same compiled rollout): 1,000 (the episode limit) at 2.6e5 steps on seed 0."""
    train(
        "--env", "brax/inverted_pendulum", "--preset", "none", "--seed", "0",
        "--population-size", "64", "--hidden-dims", "50", "--noise-stdev", "0.02",
        "--learning-rate", "0.01", "--timesteps-per-gen", "1", "--eval-every", "2",
        "--eval-episodes", "5", "--max-timesteps", "400000", "--target-return", "950",
        "--noise-table-size", "2000000", cwd=tmp_path, timeout=600,
    )  # fmt: skip
    run = only_run_dir(tmp_path)
    rows = read_log(run)
    evals = [float(r["PeriodicEvalRewMean"]) for r in rows if int(r["PeriodicEvalCount"]) > 0]
    assert max(evals) >= 950.0, f"best evaluation (mean of 5 episodes) {max(evals):.1f} < 950"
    assert float(rows[0]["GenRewMean"]) < 200
    proc = subprocess.run(
        [sys.executable, "-m", "esjax.evaluate", str(run), "--checkpoint", "best",
         "--episodes", "3", "--seed", "123"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout.split("return ")[1].split(" ")[0]) >= 950.0, proc.stdout
