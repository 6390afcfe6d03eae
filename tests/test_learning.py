"""Real learning runs: InvertedPendulumBulletEnv-v0 to its registered threshold, with
the env's preset (ARS V2-t, a linear policy: median 4.5e4 steps to 950 on seeds 0-2);
a JAX-native pendulum (Brax) through the JAX benchmark's learning curve."""

import subprocess
import sys
from pathlib import Path

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
def test_a_jax_native_env_learns(tmp_path):
    """brax/inverted_pendulum (Brax on MJX physics) in 200-step episodes through
    benchmarks/jax_envs.py's learning curve (OpenAI-ES, its settings): 200, the episode
    limit, at 9.4e4 steps on seed 0; and the curve's table."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from jax_envs import SPEED, learning_curve, render_jax

    curve = learning_curve("brax/inverted_pendulum", 300_000, 2_000_000, target=190,
                           extra=("--env-kwarg", "episode_length=200"))  # fmt: skip
    assert curve["best"] >= 190.0, f"best evaluation (mean of 5 episodes) {curve['best']:.1f}"
    assert curve["evaluations"][0][1] < 50  # it learned: the first evaluation was far below
    md = render_jax({"settings": {**SPEED, "hidden_dims": [50]}, "pairs": [], "curve": curve})
    assert "| training steps | evaluation return | seconds |" in md
