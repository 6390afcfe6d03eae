"""esjax and EvoTorch's PGPE side by side: steps/s at equal settings, back to back.

EvoTorch runs in its own virtual environment, ``benchmarks/.evotorch`` (built here on
first use; not a dependency of esjax), from ``benchmarks/evotorch_peer.py``. Both train
the env's esjax preset network (tanh MLP), population and timesteps per generation, with
observation normalization and 2 worker processes (EvoTorch: 2 Ray actors); esjax without
its periodic evaluations (EvoTorch runs none). steps/s: simulated steps of the
generations after the first, over their seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = HERE / ".evotorch"
# torch 2.13.0: a CPU build of it lies on this project's machines (other builds are
# several GB of CUDA libraries); gymnasium and pybullet as esjax uses them.
REQUIREMENTS = ["torch==2.13.0", "evotorch==0.6.1", "gymnasium>=1.0", "pybullet",
                "pybullet_envs_gymnasium"]  # fmt: skip


def evotorch_python() -> Path:
    """The peer venv's python, built (once) with pip."""
    py = VENV / "bin" / "python"
    stamp = VENV / "installed.json"
    if not (py.exists() and stamp.exists() and json.loads(stamp.read_text()) == REQUIREMENTS):
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *REQUIREMENTS], check=True)
        stamp.write_text(json.dumps(REQUIREMENTS))
    return py


def esjax_rate(env_id: str, timesteps: int, table: int) -> dict:
    """esjax's steps/s with the settings ``python -m esjax.train --env ENV`` uses (the
    env's preset), no periodic evaluation, after the first generation, over about
    ``timesteps`` steps."""
    from esjax.train import parse
    from esjax.trainer import Trainer

    cfg, _, _ = parse(["--env", env_id, "--num-workers", "2", "--eval-every", "0",
                       "--noise-table-size", str(table), "--snapshot-freq", "0"])  # fmt: skip
    trainer = Trainer.from_config(cfg, log=lambda s: None)
    trainer.start()
    try:
        trainer.step()  # the first generation: compiles, fills the pipeline
        t0, steps, generations = time.perf_counter(), 0, 0
        while steps < timesteps:
            steps += trainer.step()["EnvStepsThisGen"]
            generations += 1
        seconds = time.perf_counter() - t0
    finally:
        trainer.close()
    return {"steps": steps, "seconds": seconds, "steps_per_s": steps / seconds,
            "generations": generations, "hidden_dims": list(cfg.hidden_dims),
            "population_size": cfg.population_size, "timesteps_per_gen": cfg.timesteps_per_gen,
            "envs_per_worker": trainer.cfg.envs_per_worker}  # fmt: skip


def evotorch_rate(env_id: str, timesteps: int, hidden, popsize: int, interactions: int) -> dict:
    proc = subprocess.run(
        [str(evotorch_python()), str(HERE / "evotorch_peer.py"), "--env", env_id,
         "--hidden", *map(str, hidden), "--popsize", str(popsize),
         "--interactions", str(interactions), "--actors", "2", "--timesteps", str(timesteps)],
        capture_output=True, text=True, check=False, timeout=3600,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"EvoTorch's run failed: {proc.stderr[-2000:]}")
    # Ray's actors print to the same stdout: the result is the line that is our JSON
    line = next(ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith('{"evotorch"'))
    return json.loads(line)


def side_by_side(env_id: str, timesteps: int, goal: float, table: int) -> dict:
    """esjax then EvoTorch on ``env_id`` at esjax's preset settings; their steps/s ratio."""
    print(f"peer: esjax then EvoTorch's PGPE on {env_id} ...", flush=True)
    ours = esjax_rate(env_id, timesteps, table)
    theirs = evotorch_rate(env_id, timesteps, ours["hidden_dims"], ours["population_size"],
                           ours["timesteps_per_gen"])  # fmt: skip
    ratio = ours["steps_per_s"] / theirs["steps_per_s"]
    return {"env": env_id, "esjax": ours, "evotorch": theirs, "ratio": ratio, "goal": goal,
            "goal_met": bool(ratio >= goal)}  # fmt: skip
