"""Training throughput vs the raw environment ceiling (same env, same process count).

raw: N spawned processes each step the env with no policy, resetting on episode end:
with a fixed zero action (the ceiling the issue names), and with a fixed, pre-drawn
sequence of uniformly random actions (closer to a policy's contacts, so its physics cost
per step is closer to training's). training: esjax's trainer, timesteps of all episodes it
used (training + evaluation) per second of generation time, after a warm-up generation.

    python benchmarks/throughput.py --env AntBulletEnv-v0 --workers 2 --seconds 60
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import time

RAW_ACTIONS = ("zero", "random")


def _raw_worker(env_id: str, seconds: float, actions: str, out) -> None:
    import numpy as np

    from esjax.rollout.envs import make_env

    env = make_env(env_id)
    space = env.action_space
    if actions == "zero":
        table = np.zeros((1, *space.shape), space.dtype)
    else:
        rng = np.random.default_rng(0)
        table = rng.uniform(space.low, space.high, (4096, *space.shape)).astype(space.dtype)
    env.reset(seed=0)
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        _, _, term, trunc, _ = env.step(table[steps % len(table)])
        steps += 1
        if term or trunc:
            env.reset()
    out.put(steps / (time.perf_counter() - t0))


def raw_ceiling(env_id: str, workers: int, seconds: float, actions: str = "zero") -> float:
    """Summed steps/s of ``workers`` processes stepping the env with no policy, with
    ``actions`` "zero" or "random" (a fixed pre-drawn sequence)."""
    return sum(run_concurrently(_raw_worker, (env_id, seconds, actions), workers))


def run_concurrently(target, args: tuple, n: int) -> list:
    """Start ``n`` spawned processes of ``target(*args, out_queue)`` at once; each puts
    one result on the queue. Returns the ``n`` results."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, q)) for _ in range(n)]
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    for p in procs:
        p.join()
    return results


def training_rate(env_id: str, workers: int, seconds: float, extra: dict) -> dict:
    """Steps/s of esjax training over generations run for about ``seconds``."""
    from esjax.config import Config
    from esjax.trainer import Trainer

    cfg = Config(env=env_id, num_workers=workers, snapshot_freq=0, max_generations=10**6, **extra)
    trainer = Trainer.from_config(cfg, log=lambda s: None)
    t_start = time.perf_counter()
    trainer.start()
    startup = time.perf_counter() - t_start
    rows = []
    try:
        trainer.step()  # warm-up: compiles tell, fills the pipeline
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            rows.append(trainer.step())
    finally:
        trainer.close()
    steps = sum(r["StepsPerSec"] * r["TimeElapsedThisGen"] for r in rows)
    elapsed = sum(r["TimeElapsedThisGen"] for r in rows)
    worker_s = workers * elapsed
    used = sum(r["TimePredictCount"] for r in rows)  # steps of the used episodes
    env_s = sum(r["EnvTimeFrac"] * workers * r["TimeElapsedThisGen"] for r in rows)
    infer_s = sum(r["TimePredictMean"] * r["TimePredictCount"] for r in rows)
    glue_s = sum(r["GlueTimeFrac"] * workers * r["TimeElapsedThisGen"] for r in rows)
    thrown = sum(r["EnvStepsThisGen"] for r in rows) - used
    # where the workers' time went, as shares of workers x generation time
    env, infer, glue = env_s / worker_s, infer_s / worker_s, glue_s / worker_s
    skipped = thrown * (env_s + infer_s + glue_s) / used / worker_s  # at the used cost
    return {
        "steps_per_s": steps / elapsed,
        "generations": len(rows),
        "envs_per_worker": trainer.cfg.envs_per_worker,
        "skipped_frac_mean": sum(r["ResultsSkippedFrac"] for r in rows) / len(rows),
        "time_predict_mean_us": 1e6 * infer_s / used,
        "env_us_per_step": 1e6 * env_s / used,
        "env_time_frac_mean": env,
        "breakdown": {
            "env": env,
            "inference": infer,
            "glue": glue,
            "skipped": skipped,
            "other": 1.0 - env - infer - glue - skipped,
        },  # fmt: skip
        "startup_s": startup,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="AntBulletEnv-v0")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--envs-per-worker", type=int, default=0, help="0: the trainer default")
    p.add_argument("--hidden-dims", type=int, nargs="+", default=None, help="policy layers")
    p.add_argument("--out", default=None, help="write the result as JSON here")
    args = p.parse_args()
    raw = raw_ceiling(args.env, args.workers, args.seconds / 2)
    raw_random = raw_ceiling(args.env, args.workers, args.seconds / 2, "random")
    extra = {"envs_per_worker": args.envs_per_worker} if args.envs_per_worker else {}
    if args.hidden_dims:
        extra["hidden_dims"] = tuple(args.hidden_dims)
    train = training_rate(args.env, args.workers, args.seconds, extra)
    result = {
        "env": args.env,
        "workers": args.workers,
        "raw_steps_per_s": raw,
        "raw_random_steps_per_s": raw_random,
        "train": train,
        "ratio": train["steps_per_s"] / raw,
        "ratio_random": train["steps_per_s"] / raw_random,
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.platform()}",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "command": " ".join([sys.executable.split("/")[-1], *sys.argv]),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
