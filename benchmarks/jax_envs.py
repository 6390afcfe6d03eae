"""JAX-native envs (``brax/NAME``) against pybullet: live env steps/s of whole generations
on the same cores with the same population and policy, back to back in one process; and
one JAX-native learning curve to a stated budget.

``python benchmarks/jax_envs.py`` measures, writes benchmarks/results/jax_envs.json and
replaces its section of BENCHMARKS.md; ``make bench`` runs it with the others.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## JAX-native envs against pybullet"
# The comparison: both train OpenAI-ES on the same population and policy size; a
# generation is exactly the population (no minimum of steps, no evaluations). Both run
# whole 1,000-step episodes: pybullet's Ant falls in 20 steps with zero actions, so its
# side starts from a walking policy (WALKER), Brax's ant stands from the initial policy.
SPEED = dict(population_size=64, hidden_dims=(50,), noise_stdev=0.02, learning_rate=0.01,
             timesteps_per_gen=1, eval_every=0, eval_prob=0.0, seed=0)  # fmt: skip
# θ and observation statistics of a pybullet Ant that walks (experiments/results/pybullet/
# probes.md: Ant_nolfi_nojoints seed 0, generation 380, 7.36M steps).
WALKER = ROOT / "benchmarks" / "data" / "ant_bullet_walker.npz"
PAIRS = [("AntBulletEnv-v0", "brax/ant")]
CURVE = ("brax/ant", 3_000_000)  # env, training steps: the learning curve's budget


def generation_speed(env_id: str, generations: int, table: int, workers: int = 2) -> dict:
    """Live training steps/s of ``generations`` generations (after one that compiles and
    warms up), the trainer in this process."""
    from esjax.config import Config
    from esjax.trainer import Trainer

    cfg = Config(env=env_id, num_workers=workers, noise_table_size=table, snapshot_freq=0,
                 **SPEED)  # fmt: skip
    trainer = Trainer.from_config(cfg, log=lambda s: None)
    if env_id == "AntBulletEnv-v0":
        import numpy as np

        from esjax.core.obstat import ObStat

        w = np.load(WALKER)
        s = trainer.state
        obstat = ObStat(w["ob_sum"], w["ob_sumsq"], float(w["ob_count"]))
        trainer.state = s._replace(es=s.es._replace(theta=w["theta"]), obstat=obstat)
    trainer.start()
    try:
        trainer.step()  # compiles the update (and warms the workers' caches)
        t0, steps, lengths = time.perf_counter(), 0, []
        for _ in range(generations):
            row = trainer.step()
            steps += int(row["TimestepsThisGen"])
            lengths.append(row["GenLenMean"])
        seconds = time.perf_counter() - t0
    finally:
        trainer.close()
    return {
        "env": env_id,
        "workers": 1 if env_id.startswith("brax/") else workers,
        "chunk": trainer.cfg.envs_per_worker if env_id.startswith("brax/") else None,
        "start": "walking policy" if env_id == "AntBulletEnv-v0" else "initial policy",
        "generations": generations,
        "live_steps": steps,
        "seconds": seconds,
        "live_steps_per_s": steps / seconds,
        "mean_episode_length": sum(lengths) / len(lengths),
    }


def learning_curve(env_id: str, budget: int, table: int, target: float | None = None,
                   extra: tuple[str, ...] = ()) -> dict:  # fmt: skip
    """A whole ``python -m esjax.train`` run of ``env_id`` (OpenAI-ES, ``SPEED``'s policy
    and population, evaluations every 5 generations) to ``budget`` training steps (or
    ``target``, the mean return of an evaluation); ``extra``: more flags."""
    import subprocess
    import tempfile

    from esjax.run.metrics import read_log

    with tempfile.TemporaryDirectory() as tmp:
        args = [sys.executable, "-m", "esjax.train", "--env", env_id, "--preset", "none",
                "--run-dir", tmp, "--max-timesteps", str(budget), "--noise-table-size",
                str(table), "--population-size", str(SPEED["population_size"]),
                "--hidden-dims", ",".join(map(str, SPEED["hidden_dims"])),
                "--noise-stdev", str(SPEED["noise_stdev"]), "--learning-rate",
                str(SPEED["learning_rate"]), "--timesteps-per-gen", "1", "--eval-every", "5",
                "--eval-episodes", "5", "--snapshot-freq", "0", "--seed", "0"]  # fmt: skip
        if target is not None:
            args += ["--target-return", str(target)]
        args += extra
        t0 = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        log = read_log(next(Path(tmp).iterdir()))  # columns
    evals = [(int(t), ret, sec) for t, ret, sec, n in zip(
        log["TimestepsSoFar"], log["PeriodicEvalRewMean"], log["TimeElapsed"],
        log["PeriodicEvalCount"]) if n]  # fmt: skip
    return {"env": env_id, "budget": budget, "wall_s": wall, "train_s": log["TimeElapsed"][-1],
            "evaluations": evals, "best": max(e[1] for e in evals)}  # fmt: skip


def bench_jax_envs(table: int = 250_000_000, generations: int = 8) -> dict:
    """Each pair's generation speeds, side by side, and the learning curve."""
    pairs = []
    for bullet, jax_id in PAIRS:
        print(f"jax envs: {bullet} then {jax_id}, {generations} generations each ...", flush=True)
        a = generation_speed(bullet, generations, table)
        b = generation_speed(jax_id, generations, table)
        pairs.append({"pybullet": a, "jax": b, "ratio": b["live_steps_per_s"]
                      / a["live_steps_per_s"], "goal": 3.0})  # fmt: skip
    print(f"jax envs: learning curve of {CURVE[0]} to {CURVE[1]:,} steps ...", flush=True)
    curve = learning_curve(*CURVE, table=table)
    return {"settings": {k: list(v) if isinstance(v, tuple) else v for k, v in SPEED.items()},
            "pairs": pairs, "curve": curve}  # fmt: skip


def render_jax(r: dict) -> str:
    s = r["settings"]
    net = "x".join(map(str, s["hidden_dims"]))
    lines = [
        SECTION,
        "",
        f"OpenAI-ES, population {s['population_size']}, {net} tanh policy, a generation = the",
        "population (no step minimum, no evaluations); live training steps (every step of an",
        "episode before it ended; masked and padding members not counted) per second of",
        "whole generations after a first one that compiles. Both run whole episodes:",
        "pybullet's Ant from a walking policy (its ant falls in 20 steps with zero actions,",
        "and resets would dominate), Brax's from the initial one (it stands). pybullet: 2",
        "worker processes; JAX-native: the trainer's process, chunks of members as one jitted",
        "call, one chunk at a time per core (a thread each). Measured back to back in one",
        "process.",
        "",
        "| pybullet env | steps/s | mean episode | JAX-native env | chunk | steps/s | "
        "mean episode | ratio | goal | met |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for p in r["pairs"]:
        a, b = p["pybullet"], p["jax"]
        lines.append(
            f"| {a['env']} | {a['live_steps_per_s']:,.0f} | {a['mean_episode_length']:.0f} | "
            f"{b['env']} | {b['chunk']} | {b['live_steps_per_s']:,.0f} | "
            f"{b['mean_episode_length']:.0f} | {p['ratio']:.2f} | {p['goal']:.0f} | "
            f"{'yes' if p['ratio'] >= p['goal'] else '**no**'} |"
        )
    c = r.get("curve")
    if c:
        lines += [
            "",
            f"Learning curve: {c['env']}, the same settings, evaluations (mean of 5 noiseless",
            f"episodes, the env's own reward) every 5 generations, to {c['budget']:,} training",
            f"steps in {c['train_s']:.0f} s of training ({c['wall_s']:.0f} s with start-up and",
            f"compilation); best {c['best']:.0f}. Brax's ant (MJX physics, dt 0.05 s) is not",
            "pybullet's: returns are not comparable across the two.",
            "",
            "| training steps | evaluation return | seconds |",
            "| ---: | ---: | ---: |",
        ]
        lines += [f"| {t:,} | {ret:.1f} | {sec:.0f} |" for t, ret, sec in c["evaluations"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from esjax.provenance import git_commit, machine

    out = ROOT / "benchmarks" / "results"
    meta = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M %Z"),
            "command": "python benchmarks/jax_envs.py", "commit": git_commit(ROOT)}  # fmt: skip
    result = {**meta, **bench_jax_envs()}
    (out / "jax_envs.json").write_text(json.dumps(result, indent=2) + "\n")
    md = ROOT / "BENCHMARKS.md"
    head = md.read_text().split(SECTION)[0].rstrip("\n")
    stamp = f"({meta['machine']}; {meta['date']}, commit {meta['commit']}; `{meta['command']}`)"
    md.write_text(head + "\n\n" + render_jax(result).replace("\n\n", f"\n\n{stamp}\n\n", 1))
    print(f"wrote {out / 'jax_envs.json'} and {md}")


if __name__ == "__main__":
    main()
