"""Training throughput over a whole run against a fair ceiling: the same episodes, replayed.

A run from a fresh start, as ``python -m esjax.train --env ENV`` makes it (the env's
preset), records the actions of every episode it used (training, --eval-prob and
periodic evaluation episodes). The replay then resets the bare simulator (the Gymnasium
env's ``unwrapped``: no wrappers, none of esjax's) with each episode's seed and steps it
with those actions, open-loop, in as many processes as the run had workers, on the same
cores: the simulator's own time for exactly that work, resets included.

    python benchmarks/replay.py --env AntBulletEnv-v0 --timesteps 1000000

ratio = training steps/s ÷ replay steps/s, whole run and per phase (quarters of the
run's simulated steps). Training steps/s = steps of the used episodes ÷ the seconds of
``Trainer.train`` (log.csv and checkpoints written as in a run; start-up apart). Where
the workers' time went, as shares of workers x those seconds: env, inference, glue (the
worker's other per-step time) of the used training episodes; evaluation (all of the
evaluation episodes' time); thrown away (episodes run but not used, at the used
episodes' cost per step); boundary (between a generation's last result and the next
one's broadcast: the update; the workers wait. log.csv and checkpoints are written while
the next generation's first episodes run); other (messages,
workers idle within a generation).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PHASES = 4  # quarters of the run's simulated steps


def recorded_run(env_id: str, workers: int, timesteps: int, flags: tuple[str, ...] = ()) -> dict:
    """Train ``env_id`` from a fresh start for ``timesteps`` training timesteps with the
    settings ``python -m esjax.train --env ENV FLAGS`` uses, actions recorded: its log
    rows, and per used episode its generation, seed, whether it was an evaluation, its
    actions and the seconds it cost the worker (env, inference, glue)."""
    from esjax.rollout.local import LocalPool
    from esjax.run.resolve import worker_config
    from esjax.train import parse
    from esjax.trainer import Trainer

    argv = ["--env", env_id, "--num-workers", str(workers), "--max-timesteps", str(timesteps),
            "--snapshot-freq", "0", *flags]  # fmt: skip
    cfg, _, settings = parse(argv)
    cfg = dataclasses.replace(cfg, target_return=float("inf"))  # the whole budget

    def recording_pool(cfg, spec, log):
        wcfg = worker_config(cfg, spec)._replace(record_actions=True)
        return LocalPool(wcfg, num_workers=cfg.workers, seed=cfg.seed, log=log)

    episodes: list[dict] = []

    def keep(gen) -> None:
        for r in gen.used:
            episodes.append({"gen": r.episode.gen, "seed": r.episode.env_seed,
                             "eval": r.episode.sign == 0, "actions": r.actions,
                             "env_s": r.time_env, "infer_s": r.time_predict[0],
                             "glue_s": r.time_glue})  # fmt: skip

    trainer = Trainer.from_config(cfg, pool_factory=recording_pool, log=lambda s: None)
    cfg = trainer.cfg
    spans: list[list[float]] = []  # each generation's collection [start, end]
    trainer.events.subscribe("collecting", lambda g: spans.append([time.perf_counter()]))
    trainer.events.subscribe("collected", lambda gen: spans[-1].append(time.perf_counter()))
    trainer.events.subscribe("collected", keep)
    trainer.start()
    rows: list[dict] = []
    cpu0, t0 = time.process_time(), time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as run_dir:  # log.csv and checkpoints, as a run
            trainer.train(Path(run_dir), on_generation=rows.append)
    finally:
        cpu = time.process_time() - cpu0  # the trainer process's own (all its threads)
        end = time.perf_counter()
        trainer.close()
    starts = [a for a, _ in spans] + [end]
    # generation i's wall time: from its collection's start to the next one's; the part
    # after its collection (the update, the next broadcast) is the boundary
    walls = np.diff(starts)
    boundary = np.array(starts[1:]) - np.array([b for _, b in spans])
    return {"settings": settings, "cfg": cfg, "startup_s": trainer.startup_s, "rows": rows,
            "episodes": episodes, "trainer_cpu_s": cpu, "walls": walls, "boundary": boundary,
            "wall_s": end - t0}  # fmt: skip


def _replay_worker(env_id: str, path: str, out) -> None:
    """Replay the episodes in ``path`` (seeds, lengths, actions) on the bare simulator;
    put (path, seconds per episode) on ``out``."""
    from esjax.rollout.envs import make_env

    data = np.load(path)
    seeds, lengths, actions = data["seeds"], data["lengths"], data["actions"]
    env = make_env(env_id).unwrapped
    ends = np.cumsum(lengths)
    seconds = np.empty(len(seeds))
    clock = time.perf_counter
    for i, (seed, end, n) in enumerate(zip(seeds.tolist(), ends.tolist(), lengths.tolist())):
        t0 = clock()
        env.reset(seed=seed)
        for a in actions[end - n : end]:
            env.step(a)
        seconds[i] = clock() - t0
    env.close()
    out.put((path, seconds))


def replay_seconds(env_id: str, episodes: list[dict], workers: int) -> np.ndarray:
    """Seconds each episode took to replay: ``workers`` processes at once, episodes dealt
    to the least loaded (by steps) in run order."""
    load = [0] * workers
    shares: list[list[int]] = [[] for _ in range(workers)]
    for i, ep in enumerate(episodes):
        w = load.index(min(load))
        shares[w].append(i)
        load[w] += len(ep["actions"])
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    seconds = np.empty(len(episodes))
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for w, share in enumerate(shares):
            paths.append(str(Path(tmp) / f"share{w}.npz"))
            np.savez(paths[-1], seeds=np.array([episodes[i]["seed"] for i in share], np.int64),
                     lengths=np.array([len(episodes[i]["actions"]) for i in share], np.int64),
                     actions=np.concatenate([episodes[i]["actions"] for i in share]))  # fmt: skip
        procs = [ctx.Process(target=_replay_worker, args=(env_id, p, q)) for p in paths]
        for p in procs:
            p.start()
        for _ in procs:
            path, secs = q.get()
            seconds[shares[paths.index(path)]] = secs
        for p in procs:
            p.join()
    return seconds


def _phase_stats(rows: list[dict], walls: np.ndarray, boundary: np.ndarray, eps: list[dict],
                 replay_s: np.ndarray, workers: int) -> dict:  # fmt: skip
    """Throughput, replay ceiling and breakdown of the generations ``rows`` (their wall
    and boundary seconds) whose used episodes are ``eps`` (their replay seconds)."""
    wall = float(np.sum(walls))
    worker_s = workers * wall
    used = sum(len(e["actions"]) for e in eps)
    evals = [e for e in eps if e["eval"]]
    train = [e for e in eps if not e["eval"]]
    eval_steps = sum(len(e["actions"]) for e in evals)
    simulated = sum(r["EnvStepsThisGen"] for r in rows)
    thrown = simulated - used
    cost = sum(e["env_s"] + e["infer_s"] + e["glue_s"] for e in eps) / max(1, used)
    shares = {
        "env": sum(e["env_s"] for e in train) / worker_s,
        "inference": sum(e["infer_s"] for e in train) / worker_s,
        "glue": sum(e["glue_s"] for e in train) / worker_s,
        "evaluation": sum(e["env_s"] + e["infer_s"] + e["glue_s"] for e in evals) / worker_s,
        "thrown_away": thrown * cost / worker_s,
        "boundary": float(np.sum(boundary)) / wall,  # workers wait on the update
    }
    shares["other"] = 1.0 - sum(shares.values())
    train_rate = used / wall
    replay_rate = used * workers / replay_s.sum()
    return {
        "generations": len(rows),
        "seconds": wall,
        "used_steps": used,
        "simulated_steps": simulated,
        "eval_steps": eval_steps,
        "thrown_away_steps": thrown,
        "thrown_away_frac": thrown / simulated,
        "mean_train_episode": (used - eval_steps) / max(1, len(train)),
        "train_steps_per_s": train_rate,
        "replay_steps_per_s": replay_rate,
        "ratio": train_rate / replay_rate,
        "env_over_replay": sum(e["env_s"] for e in eps) / replay_s.sum(),
        "breakdown": shares,
    }


def replay_benchmark(env_id: str, workers: int, timesteps: int, flags: tuple[str, ...] = (),
                     random_seconds: float = 20.0) -> dict:  # fmt: skip
    """A recorded run of ``env_id``, its replay and the random-action ceiling, back to
    back; whole-run and per-phase figures."""
    from throughput import raw_ceiling

    run = recorded_run(env_id, workers, timesteps, flags)
    eps = run["episodes"]
    replay_s = replay_seconds(env_id, eps, workers)
    random_rate = raw_ceiling(env_id, workers, random_seconds, "random")
    rows = run["rows"]
    by_gen: dict[int, list[int]] = {}
    for i, e in enumerate(eps):
        by_gen.setdefault(e["gen"], []).append(i)
    cum = np.cumsum([r["EnvStepsThisGen"] for r in rows])
    phase_of = np.minimum(PHASES - 1, (PHASES * (cum - 1)) // cum[-1]).astype(int)
    phases = []
    for p in range(PHASES):
        gens = [g for g in range(len(rows)) if phase_of[g] == p]
        if not gens:
            continue
        idx = [i for g in gens for i in by_gen.get(g, [])]
        stats = _phase_stats([rows[g] for g in gens], run["walls"][gens], run["boundary"][gens],
                             [eps[i] for i in idx], replay_s[idx], workers)  # fmt: skip
        phases.append({"phase": p + 1, **stats})
    whole = _phase_stats(rows, run["walls"], run["boundary"], eps, replay_s, workers)
    cfg = run["cfg"]
    return {
        "env": env_id,
        "workers": workers,
        "settings": run["settings"],
        "envs_per_worker": cfg.envs_per_worker,
        "hidden_dims": list(cfg.hidden_dims),
        "algo": cfg.algo,
        "timesteps": rows[-1]["TimestepsSoFar"],
        "startup_s": run["startup_s"],
        "random_steps_per_s": random_rate,
        "ratio_random": whole["train_steps_per_s"] / random_rate,
        "best_eval": max((r["EvalBestSoFar"] for r in rows), default=float("nan")),
        # the trainer's CPU seconds as a share of workers x generation seconds: what it
        # takes from the workers when there are no more cores than workers
        "trainer_cpu_share": run["trainer_cpu_s"] / (workers * whole["seconds"]),
        **whole,
        "phases": phases,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="AntBulletEnv-v0")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--timesteps", type=int, default=1_000_000)
    p.add_argument("--out", default=None, help="write the result as JSON here")
    args, flags = p.parse_known_args()
    sys.path.insert(0, str(Path(__file__).parent))
    result = replay_benchmark(args.env, args.workers, args.timesteps, tuple(flags))
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
