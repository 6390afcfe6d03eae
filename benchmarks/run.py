"""``make bench``: run every benchmark, write benchmarks/results/*.json and BENCHMARKS.md.

BENCH_QUICK=1 runs a smoke-test version in under a minute (small envs, sizes and times);
its figures say nothing about performance, and it writes them to benchmarks/quick/
(git-ignored), never over the committed results.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from jax_envs import bench_jax_envs, render_jax  # noqa: E402
from peer import side_by_side  # noqa: E402
from policy_step import BACKENDS, bench_policy_step  # noqa: E402
from ray_backend import node_loss, ray_vs_local  # noqa: E402
from replay import replay_benchmark  # noqa: E402
from startup import bench_startup  # noqa: E402
from update_step import bench_update, copy_bandwidth_gbs  # noqa: E402

from esjax.provenance import git_commit, machine  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

# (env, goal for training / replay). Whole runs from a fresh start, the env's preset (what
# `python -m esjax.train --env ENV` runs), 2 workers: benchmarks/replay.py.
CASES = [
    ("AntBulletEnv-v0", 0.95),
    ("HalfCheetah-v5", 0.95),
    ("InvertedPendulumBulletEnv-v0", 0.85),
]
QUICK_CASES = [("InvertedPendulumBulletEnv-v0", None)]  # a smoke test: one env
RUN_TIMESTEPS = 1_000_000
THROWN_AWAY_GOAL = 0.03  # of the simulated steps, over a whole run
PEER = ("AntBulletEnv-v0", 300_000, 1.5)  # env, timesteps after the first generation, goal


def main() -> None:
    quick = os.environ.get("BENCH_QUICK") == "1"
    # A smoke test never touches the committed results: it writes under a scratch folder.
    default_out = ROOT / "benchmarks" / ("quick" if quick else "results")
    out_dir = Path(os.environ.get("BENCH_OUT", default_out))
    md_path = Path(os.environ.get("BENCH_MD", default_out / "BENCHMARKS.md" if quick
                                  else ROOT / "BENCHMARKS.md"))  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "command": ("BENCH_QUICK=1 " if quick else "") + "make bench",
        "commit": git_commit(ROOT),
        "quick": quick,
    }

    # (1) throughput over whole runs against the replay of their episodes
    cases = QUICK_CASES if quick else CASES
    seconds = 2.0 if quick else 60.0
    table = 2_000_000 if quick else 250_000_000
    throughput = []
    for env_id, goal in cases:
        print(f"throughput {env_id}: a run, its replay, random actions ...", flush=True)
        flags = ("--noise-table-size", str(table))
        r = replay_benchmark(env_id, 2, 20_000 if quick else RUN_TIMESTEPS, flags,
                             random_seconds=1.0 if quick else 20.0)  # fmt: skip
        met = goal is not None and bool(r["ratio"] >= goal)
        throughput.append(
            {**r, "goal": goal, "goal_met": met, "thrown_away_goal": THROWN_AWAY_GOAL}
        )
    _write(out_dir / "throughput.json", {**meta, "results": throughput})
    envs = [cases[0][0]]

    # (1b) side by side with a peer: EvoTorch's PGPE in its own virtual environment
    peer = None if quick else side_by_side(*PEER, table)
    if peer is not None:
        _write(out_dir / "peer.json", {**meta, **peer})

    # (2) update step over population x parameter count, with the bandwidth reference
    print("update step ...", flush=True)
    grid = [(100, 10_000)] if quick else [(100, 10_000), (1000, 10_000), (100, 100_000),
                                           (1000, 100_000), (1000, 1_000_000)]  # fmt: skip
    from esjax.core.noise import fill_noise_table

    noise = fill_noise_table(np.empty(1_000_000 if quick else 50_000_000, np.float32), seed=0)
    bandwidth = copy_bandwidth_gbs(40_000_000 if quick else 400_000_000)
    update = [bench_update(noise, pop, dim, repeats=2 if quick else 5) for pop, dim in grid]
    _write(out_dir / "update_step.json", {**meta, "copy_bandwidth_gbs": bandwidth,
                                          "results": update})  # fmt: skip

    # (3) start-up time and memory
    print("start-up ...", flush=True)
    start = bench_startup(envs[0], 2, table)
    _write(out_dir / "startup.json", {**meta, "results": start})

    # (4) policy inference per env step beside a running simulator: JAX jit vs NumPy
    print("policy step ...", flush=True)
    policy = [
        bench_policy_step(envs[0], backend, k, 2, 1.5 if quick else 20.0)
        for backend in BACKENDS
        for k in ((1,) if quick else (1, 8))
    ]
    _write(out_dir / "policy_step.json", {**meta, "results": policy})

    # (5) the Ray backend against the local pool, and the cost of losing a node
    print("ray backend ...", flush=True)
    rb_env, rb_net = (
        ("InvertedPendulumBulletEnv-v0", (16,)) if quick else ("HalfCheetah-v5", (64, 64))
    )
    rb = {
        "throughput": ray_vs_local(rb_env, rb_net, seconds / 2, table, repeats=1 if quick else 2),
        "node_loss": node_loss(
            rb_env, rb_net, 2000 if quick else 10_000, min(table, 25_000_000), fast_health=quick
        ),
    }
    _write(out_dir / "ray_backend.json", {**meta, **rb})

    # (6) JAX-native envs (brax/NAME) against pybullet, and a JAX-native learning curve
    # (not when quick: tests/test_learning.py runs benchmarks/jax_envs.py's learning curve)
    jx = None if quick else bench_jax_envs(table)
    if jx is not None:
        _write(out_dir / "jax_envs.json", {**meta, **jx})

    md = render_markdown(meta, throughput, peer, update, bandwidth, start, policy)
    md_path.write_text(md + render_ray(rb) + ("\n" + render_jax(jx) if jx else ""))
    print(f"wrote {md_path} and {out_dir}/*.json")


def _write(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, default=_plain) + "\n")


def _plain(value):
    """NumPy scalars and arrays as JSON's numbers and lists."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def render_markdown(meta, throughput, peer, update, bandwidth, start, policy) -> str:
    lines = [
        "# esjax benchmarks",
        "",
        f"- machine: {meta['machine']}",
        f"- date: {meta['date']}, commit {meta['commit']}",
        f"- command: `{meta['command']}`"
        + (" (smoke test: figures are not meaningful)" if meta["quick"] else ""),  # fmt: skip
        "",
        *render_throughput(throughput),
        *render_peer(peer),
    ]
    lines += [
        "## Update step (gather noise rows + weighted sum + Adam)",
        "",
        f"Plain array copy bandwidth: {bandwidth:.1f} GB/s (read + write). numpy = the notebook's",
        "method (stack rows, `np.dot` in batches of 500, then its Adam); esjax = jitted `tell`.",
        "",
        "| population | params | esjax ms | numpy ms | speedup | esjax noise read GB/s |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in update:
        lines.append(
            f"| {r['population']:,} | {r['params']:,} | {r['esjax_ms']:.2f} | "
            f"{r['numpy_ms']:.2f} | {r['speedup']:.1f}x | {r['esjax_noise_read_gbs']:.1f} |"
        )
    s = start
    lines += [
        "",
        "## Start-up and memory",
        "",
        f"{s['env']}, {s['workers']} workers, {s['noise_table_gb']:.2f} GB noise table:",
        f"workers ready after {s['workers_ready_s']:.1f} s, first generation done after "
        f"{s['first_generation_done_s']:.1f} s.",
        f"Memory over trainer + workers: RSS {s['rss_total_mb']:,.0f} MB, "
        f"PSS {s['pss_total_mb']:,.0f} MB",
        "(PSS counts the shared table once; RSS counts it in every process that touched it).",
        "",
        "## Policy inference per env step, beside a running simulator",
        "",
        f"Env: {policy[0]['env']}. 2 processes, each stepping K envs with one batched call",
        "per step (256x256 tanh MLP, its own weights per env). jax = `jit(vmap(policy_apply))`",
        "(the workers before), numpy = `policy_apply_np` on the worker's own thread (the",
        "workers now).",
        "",
        "| backend | K | inference µs/step | env µs/step | steps/s (2 processes) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in policy:
        lines.append(
            f"| {r['backend']} | {r['envs_per_call']} | {r['inference_us_per_step']:.1f} | "
            f"{r['env_us_per_step']:.1f} | {r['steps_per_s']:,.0f} |"
        )
    lines += [""]
    return "\n".join(lines)


def _mark(met: bool | None) -> str:
    return "-" if met is None else ("yes" if met else "**no**")


def render_throughput(throughput: list[dict]) -> list[str]:
    """The whole-run table and the per-phase breakdown (benchmarks/replay.py)."""
    lines = [
        "## Training throughput over whole runs, against the replay of their episodes",
        "",
        "Each env trains from a fresh start with the settings `python -m esjax.train --env",
        "ENV` uses (its preset), 2 workers, `--envs-per-worker auto`, log.csv and",
        "checkpoints written as in a run. Every episode it used (training and evaluation) is",
        "then replayed open-loop on the bare simulator (the env's `unwrapped`: its reset",
        "seed, its recorded actions) in 2 processes on the same cores: the simulator's own",
        "time for exactly that work (replay). Random actions: 2 processes stepping the",
        "wrapped env with pre-drawn uniform random actions, the old ceiling. training =",
        "steps of the used episodes ÷ the seconds of the run (start-up apart). thrown away",
        "= steps simulated but not used (episodes of an older θ or past a generation's",
        "prefix), as a share of all simulated steps.",
        "",
        "| env | strategy, policy | K | timesteps | training steps/s | replay steps/s | "
        "ratio | goal | met | random-action steps/s | ratio (random) | thrown away | "
        "goal | met | trainer CPU |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | "
        "---: | --- | ---: |",
    ]
    for r in throughput:
        net = "x".join(map(str, r["hidden_dims"])) or "linear"
        goal = f"{r['goal']:.2f}" if r["goal"] else "-"
        thrown_met = r["thrown_away_frac"] <= r["thrown_away_goal"]
        lines.append(
            f"| {r['env']} | {r['algo']}, {net} | {r['envs_per_worker']} | "
            f"{r['timesteps']:,} | {r['train_steps_per_s']:,.0f} | "
            f"{r['replay_steps_per_s']:,.0f} | {r['ratio']:.2f} | {goal} | "
            f"{_mark(r['goal_met'] if r['goal'] else None)} | {r['random_steps_per_s']:,.0f} | "
            f"{r['ratio_random']:.2f} | {100 * r['thrown_away_frac']:.1f} % | "
            f"{100 * r['thrown_away_goal']:.0f} % | {_mark(thrown_met)} | "
            f"{r['trainer_cpu_share']:.3f} |"
        )
    lines += [
        "",
        "Where the workers' time went, whole run (all) and by quarter of its simulated",
        "steps (shares of 2 workers x wall seconds): env, inference, glue (the worker's",
        "other per-step time) of the used training episodes; evaluation = all the time of",
        "evaluation episodes; thrown away, at the used episodes' cost per step; boundary =",
        "workers waiting between generations (the update and the next broadcast; log.csv",
        "and checkpoints are written while the next generation runs); other = the rest",
        "(messages, slots idle within a generation). env /",
        "replay = the simulator's time inside training over its time in the replay, same",
        "episodes (resets, K envs stepped in turn, the policy code between steps, and the",
        "machine's drift between the run and its replay). trainer",
        "CPU = the trainer process's CPU seconds over 2 x wall seconds.",
        "",
        "| env | part | mean episode | ratio | env | inference | glue | evaluation | "
        "thrown away | boundary | other | env / replay |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in throughput:
        for part in [{**r, "phase": "all"}, *r["phases"]]:
            b = part["breakdown"]
            name = "all" if part["phase"] == "all" else f"Q{part['phase']}"
            lines.append(
                f"| {r['env']} | {name} | {part['mean_train_episode']:,.0f} | "
                f"{part['ratio']:.2f} | {b['env']:.2f} | {b['inference']:.2f} | "
                f"{b['glue']:.2f} | {b['evaluation']:.2f} | {b['thrown_away']:.2f} | "
                f"{b['boundary']:.2f} | {b['other']:.2f} | {part['env_over_replay']:.2f} |"
            )
    return [*lines, ""]


def render_peer(peer: dict | None) -> list[str]:
    """esjax ÷ EvoTorch steps/s (benchmarks/peer.py); nothing in the quick mode."""
    if peer is None:
        return []
    ours, theirs = peer["esjax"], peer["evotorch"]
    net = "x".join(map(str, ours["hidden_dims"])) or "linear"
    return [
        "## Side by side with EvoTorch",
        "",
        f"{peer['env']}: esjax (its preset: OpenAI-ES, {net} tanh, {ours['population_size']} "
        f"episodes and {ours['timesteps_per_gen']:,} timesteps per generation, no periodic",
        f"evaluation) and EvoTorch {theirs['evotorch']}'s PGPE + ClipUp (torch "
        f"{theirs['torch']}, `GymNE`, the same network, popsize {theirs['popsize']} growing",
        f"to {theirs['interactions']:,} interactions per generation, observation",
        "normalization), each with 2 worker processes (EvoTorch: Ray actors), back to back;",
        "steps/s = simulated steps after the first generation over their seconds.",
        "EvoTorch runs in its own virtual environment (benchmarks/peer.py).",
        "",
        "| | steps | seconds | steps/s |",
        "| --- | ---: | ---: | ---: |",
        f"| esjax | {ours['steps']:,} | {ours['seconds']:.1f} | {ours['steps_per_s']:,.0f} |",
        f"| EvoTorch | {theirs['steps']:,} | {theirs['seconds']:.1f} | "
        f"{theirs['steps_per_s']:,.0f} |",
        "",
        f"esjax ÷ EvoTorch: **{peer['ratio']:.2f}** (goal {peer['goal']:.1f}: "
        f"{_mark(peer['goal_met'])}).",
        "",
    ]


def render_ray(rb) -> str:
    t, n = rb["throughput"], rb["node_loss"]
    steps = {b: " / ".join(f"{x:,.0f}" for x in t[b]["steps_per_s"]) for b in ("local", "ray")}
    start = {b: " / ".join(f"{x:.1f}" for x in t[b]["startup_s"]) for b in ("local", "ray")}
    notices = "; ".join(f"{s:.1f} s: {m}" for s, m in n["notices_s_after_removal"]) or "none"
    lines = [
        "## The Ray backend against the local pool",
        "",
        f"{t['env']} ({'x'.join(map(str, t['hidden_dims']))} policy), 2 workers, the same",
        "options; local processes and a private Ray instance (2 actors) run back to back,",
        "alternated (local, ray, local, ray). Ratios are to the same raw ceiling (2",
        f"processes stepping the env with random actions: {t['raw_random_steps_per_s']:,.0f} "
        "steps/s). start-up: `Trainer.start()` until the workers are ready (Ray: private",
        "instance, per-node tables, actors).",
        "",
        "| backend | training steps/s (runs) | ratio (raw rnd) | start-up s (runs) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for b in ("local", "ray"):
        lines.append(f"| {b} | {steps[b]} | {t[b]['ratio_random']:.2f} | {start[b]} |")
    lines += [
        "",
        f"ray / local steps/s: {t['ray_over_local']:.2f}.",
        "",
        f"Node loss: {n['env']}, {n['timesteps_per_gen']:,} timesteps per generation, a",
        "2-node `ray.cluster_utils.Cluster` (1 CPU each, Ray's default health checks); the",
        "worker node is removed 50 ms into a generation. Generation seconds with 2 nodes: "
        + ", ".join(f"{x:.2f}" for x in n["gen_s_two_nodes"])
        + "; with the loss: "
        f"{n['gen_s_with_loss']:.2f}; after, on 1 node: "
        + ", ".join(f"{x:.2f}" for x in n["gen_s_one_node"])
        + ".",
        f"The loss cost {n['cost_s']:.2f} s over a 1-node generation. esjax's notices after "
        f"the removal: {notices}. NodesLost counted it "
        + (
            f"{n['nodes_lost_logged_s_after_removal']:.1f} s after the removal"
            if n["nodes_lost_logged_s_after_removal"] is not None
            else "not within 60 s"
        )
        + " (when Ray declared the node dead).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
