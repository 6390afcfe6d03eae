"""`make bench` in its BENCH_QUICK smoke-test mode (the figures are not checked).

A ray-tier test: the benchmark starts a private Ray instance and a 2-node cluster, and the
ray tier runs its tests one at a time, never two Ray instances at once."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parent.parent


def _committed_results() -> dict[str, bytes]:
    files = [ROOT / "BENCHMARKS.md", *sorted((ROOT / "benchmarks" / "results").glob("*"))]
    return {str(f): f.read_bytes() for f in files if f.is_file()}


def test_bench_quick_writes_results_and_table_to_scratch_not_over_the_committed_ones():
    before = _committed_results()
    env = {k: v for k, v in os.environ.items() if k not in ("BENCH_OUT", "BENCH_MD")}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py")],
                          env={**env, "BENCH_QUICK": "1"}, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _committed_results() == before
    tmp_path = ROOT / "benchmarks" / "quick"
    for name in ("throughput", "update_step", "startup", "policy_step", "ray_backend"):
        data = json.loads((tmp_path / f"{name}.json").read_text())
        assert data["machine"] and data["date"] and "make bench" in data["command"]
    tp = json.loads((tmp_path / "throughput.json").read_text())["results"]
    assert {r["env"] for r in tp} == {"InvertedPendulumBulletEnv-v0"}
    for r in tp:
        assert r["timesteps"] >= 20_000 and r["settings"].startswith("settings: preset")
        assert r["train_steps_per_s"] > 0 and r["replay_steps_per_s"] > 0
        assert r["random_steps_per_s"] > 0 and r["ratio"] > 0
        assert r["simulated_steps"] == r["used_steps"] + r["thrown_away_steps"]
        for part in [r, *r["phases"]]:  # the shares of the workers' time add up
            b = part["breakdown"]
            assert sum(b.values()) == pytest.approx(1.0)
            assert all(0 <= b[k] <= 1 for k in b if k != "other")
        assert sum(p["used_steps"] for p in r["phases"]) == r["used_steps"]
    policy = json.loads((tmp_path / "policy_step.json").read_text())["results"]
    assert {r["backend"] for r in policy} == {"jax", "numpy"}
    assert all(r["inference_us_per_step"] > 0 for r in policy)
    md = (tmp_path / "BENCHMARKS.md").read_text()
    assert "| env | strategy, policy | K | timesteps |" in md and "| env | part |" in md
    assert "Plain array copy bandwidth" in md and "EvoTorch" not in md  # no peer when quick
    assert "| backend | K | inference" in md
    # no JAX-native section when quick (tests/test_learning.py runs its learning curve)
    assert "JAX-native" not in md
    rb = json.loads((tmp_path / "ray_backend.json").read_text())
    assert all(rb["throughput"][b]["steps_per_s"][0] > 0 for b in ("local", "ray"))
    assert rb["node_loss"]["gen_s_with_loss"] > 0 and "| backend | training steps/s" in md
