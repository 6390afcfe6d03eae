"""`make bench` in its BENCH_QUICK smoke-test mode (the figures are not checked)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def test_bench_quick_writes_results_and_table(tmp_path):
    env = {**os.environ, "BENCH_QUICK": "1", "BENCH_OUT": str(tmp_path),
           "BENCH_MD": str(tmp_path / "BENCHMARKS.md")}  # fmt: skip
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py")], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("throughput", "update_step", "startup", "policy_step", "ray_backend"):
        data = json.loads((tmp_path / f"{name}.json").read_text())
        assert data["machine"] and data["date"] and "make bench" in data["command"]
    tp = json.loads((tmp_path / "throughput.json").read_text())["results"]
    assert {r["env"] for r in tp} == {"InvertedPendulumBulletEnv-v0"}
    assert all(r["raw_steps_per_s"] > 0 and r["steps_per_s"] > 0 for r in tp)
    assert all(r["raw_random_steps_per_s"] > 0 and 0 < r["env_time_frac_mean"] <= 1 for r in tp)
    for r in tp:  # the shares of the workers' time add up, each within [0, 1]
        b = r["breakdown"]
        assert sum(b.values()) == pytest.approx(1.0)
        assert all(0 <= b[k] <= 1 for k in ("env", "inference", "glue", "skipped"))
        assert r["envs_per_worker"] >= 1 and r["ratio_random"] > 0
    policy = json.loads((tmp_path / "policy_step.json").read_text())["results"]
    assert {r["backend"] for r in policy} == {"jax", "numpy"}
    assert all(r["inference_us_per_step"] > 0 for r in policy)
    md = (tmp_path / "BENCHMARKS.md").read_text()
    assert "| env | policy | K | raw 0 steps/s" in md and "Plain array copy bandwidth" in md
    assert "| backend | K | inference" in md
    rb = json.loads((tmp_path / "ray_backend.json").read_text())
    assert all(rb["throughput"][b]["steps_per_s"][0] > 0 for b in ("local", "ray"))
    assert rb["node_loss"]["gen_s_with_loss"] > 0 and "| backend | training steps/s" in md
