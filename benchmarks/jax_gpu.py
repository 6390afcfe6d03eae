"""JAX-native envs on an accelerator: live env steps/s of brax/ant generations at
populations of 256 to 4,096 (one chunk per generation), and the wall time of a run to a
stated return. Writes ``$OUT/jax_gpu.json`` (or benchmarks/results/) with the device named.

Run through ``benchmarks/jax_gpu.sh`` on a GPU machine; on a CPU it runs too (slowly: pass
``--populations 64 --budget 200000`` to try it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def speed(population: int, generations: int, table: int) -> dict:
    """Live training steps/s of ``generations`` generations of brax/ant, the population
    as one chunk (after one generation that compiles)."""
    from jax_envs import SPEED

    from esjax.config import Config
    from esjax.trainer import Trainer

    settings = {**SPEED, "population_size": population}
    cfg = Config(env="brax/ant", envs_per_worker=population, num_workers=1,
                 noise_table_size=table, snapshot_freq=0, **settings)  # fmt: skip
    trainer = Trainer.from_config(cfg, log=lambda s: None)
    trainer.start()
    try:
        trainer.step()
        t0, steps = time.perf_counter(), 0
        for _ in range(generations):
            steps += int(trainer.step()["TimestepsThisGen"])
        seconds = time.perf_counter() - t0
    finally:
        trainer.close()
    return {"population": population, "chunk": population, "generations": generations,
            "live_steps": steps, "seconds": seconds,
            "live_steps_per_s": steps / seconds}  # fmt: skip


def to_return(target: float, population: int, budget: int, limit_s: int, table: int) -> dict:
    """``python -m esjax.train --env brax/ant`` (OpenAI-ES, the population as one chunk)
    until ``target`` or ``budget`` steps or ``limit_s`` seconds: its wall time and curve."""
    from esjax.run.metrics import read_log

    with tempfile.TemporaryDirectory() as tmp:
        args = [sys.executable, "-m", "esjax.train", "--env", "brax/ant", "--preset", "none",
                "--run-dir", tmp, "--population-size", str(population), "--envs-per-worker",
                str(population), "--num-workers", "1", "--hidden-dims", "32,32",
                "--noise-stdev", "0.02", "--learning-rate", "0.01", "--timesteps-per-gen", "1",
                "--eval-every", "5", "--eval-episodes", "16", "--target-return", str(target),
                "--max-timesteps", str(budget), "--noise-table-size", str(table),
                "--snapshot-freq", "0", "--seed", "0"]  # fmt: skip
        t0 = time.perf_counter()
        try:
            subprocess.run(args, timeout=limit_s, capture_output=True, text=True, check=True)
            stopped = "target or budget"
        except subprocess.TimeoutExpired:
            stopped = f"time limit {limit_s} s"
        wall = time.perf_counter() - t0
        log = read_log(next(Path(tmp).iterdir()))
    columns = ("TimestepsSoFar", "PeriodicEvalRewMean", "TimeElapsed", "PeriodicEvalCount")
    evals = [(int(t), r, s) for t, r, s, n in zip(*(log[c] for c in columns)) if n]
    return {"target": target, "population": population, "wall_s": wall, "stopped": stopped,
            "best": max((e[1] for e in evals), default=float("nan")),
            "evaluations": evals}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--populations", type=int, nargs="+", default=[256, 1024, 4096])
    p.add_argument("--generations", type=int, default=5)
    p.add_argument("--budget", type=int, default=200_000_000, help="steps of the return run")
    p.add_argument("--limit-s", type=int, default=480, help="wall seconds of the return run")
    p.add_argument("--target", type=float, default=3000.0)
    p.add_argument("--table", type=int, default=100_000_000)
    args = p.parse_args()
    import jax

    from esjax.provenance import git_commit, machine

    device = jax.devices()[0]
    result = {"machine": machine(), "device": f"{device.platform}: {device.device_kind}",
              "date": time.strftime("%Y-%m-%d %H:%M %Z"), "commit": git_commit(ROOT),
              "command": "benchmarks/jax_gpu.sh", "speed": [], "to_return": None}  # fmt: skip
    out = Path(os.environ.get("OUT") or ROOT / "benchmarks" / "results") / "jax_gpu.json"
    for pop in args.populations:
        result["speed"].append(speed(pop, args.generations, args.table))
        print(result["speed"][-1], flush=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    result["to_return"] = to_return(args.target, max(args.populations), args.budget,
                                    args.limit_s, args.table)  # fmt: skip
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}: {result['to_return']['best']:.0f} best, {result['device']}")


if __name__ == "__main__":
    main()
