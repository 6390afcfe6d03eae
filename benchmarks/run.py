"""``make bench``: run every benchmark, write benchmarks/results/*.json and BENCHMARKS.md.

BENCH_QUICK=1 runs a smoke-test version in under a minute (small envs, sizes and times);
its figures say nothing about performance.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from policy_step import BACKENDS, bench_policy_step  # noqa: E402
from ray_backend import node_loss, ray_vs_local  # noqa: E402
from startup import bench_startup  # noqa: E402
from throughput import raw_ceiling, training_rate  # noqa: E402
from update_step import bench_update, copy_bandwidth_gbs  # noqa: E402

from esjax.provenance import git_commit, machine  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

# (env, hidden dims, goal for the ratio to raw random). 256x256 was the default policy
# when BENCHMARKS.md was measured, and is the ES paper's Humanoid network;
# the default is now 64x64, which spends less on inference per step.
CASES = [
    ("AntBulletEnv-v0", (256, 256), 0.95),
    ("HalfCheetah-v5", (64, 64), 0.90),  # the ES paper's network
    ("InvertedPendulumBulletEnv-v0", (256, 256), 0.80),
    ("HopperBulletEnv-v0", (256, 256), None),
]
QUICK_CASES = [("InvertedPendulumBulletEnv-v0", (16,), None)]  # a smoke test: one env


def main() -> None:
    quick = os.environ.get("BENCH_QUICK") == "1"
    out_dir = Path(os.environ.get("BENCH_OUT", ROOT / "benchmarks" / "results"))
    md_path = Path(os.environ.get("BENCH_MD", ROOT / "BENCHMARKS.md"))
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "command": ("BENCH_QUICK=1 " if quick else "") + "make bench",
        "commit": git_commit(ROOT),
        "quick": quick,
    }

    # (1) throughput: raw env ceiling vs training, same env and process count (2 workers)
    cases = QUICK_CASES if quick else CASES
    seconds = 2.0 if quick else 60.0
    table = 2_000_000 if quick else 250_000_000
    throughput = []
    for env_id, hidden, goal in cases:
        workers = 2
        print(f"throughput {env_id} {hidden} x{workers} ...", flush=True)
        raw = raw_ceiling(env_id, workers, seconds / 2)
        raw_random = raw_ceiling(env_id, workers, seconds / 2, "random")
        extra = {"noise_table_size": table, **({"hidden_dims": hidden} if hidden else {})}
        train = training_rate(env_id, workers, seconds, extra)
        ratio = train["steps_per_s"] / raw_random
        met = goal is not None and ratio >= goal
        throughput.append({"env": env_id, "hidden_dims": hidden or "default",
                           "workers": workers, "raw_steps_per_s": raw,
                           "raw_random_steps_per_s": raw_random, **train,
                           "ratio": train["steps_per_s"] / raw, "ratio_random": ratio,
                           "goal": goal, "goal_met": met})  # fmt: skip
    _write(out_dir / "throughput.json", {**meta, "results": throughput})
    envs = [cases[0][0]]

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

    md = render_markdown(meta, throughput, update, bandwidth, start, policy)
    md_path.write_text(md + render_ray(rb))
    print(f"wrote {md_path} and {out_dir}/*.json")


def _write(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")


def render_markdown(meta, throughput, update, bandwidth, start, policy) -> str:
    lines = [
        "# esjax benchmarks",
        "",
        f"- machine: {meta['machine']}",
        f"- date: {meta['date']}, commit {meta['commit']}",
        f"- command: `{meta['command']}`"
        + (" (smoke test: figures are not meaningful)" if meta["quick"] else ""),  # fmt: skip
        "",
        "## Training throughput vs the raw environment ceiling",
        "",
        "2 worker processes against 2 processes stepping the same env with no policy, resets",
        "included: with a fixed pre-drawn sequence of uniform random actions (raw rnd: the",
        "ceiling the ratio and the goals use) and with zero actions (raw 0). training =",
        "timesteps of all used episodes per second of generation time, after a warm-up",
        "generation, `--envs-per-worker auto`. Where the workers' time went (shares of",
        "workers x generation time): env = inside reset/step for the used episodes; infer =",
        "policy inference for them; glue = the worker's other time in their steps (noise,",
        "statistics, bookkeeping); skipped = episodes thrown away (older θ, past the prefix),",
        "at the used episodes' cost per step; other = the rest (messaging, idle at generation",
        "boundaries, the update). env µs/step is the simulator's time per step inside",
        "training, against raw rnd's 1e6 / (raw rnd / 2).",
        "",
        "| env | policy | K | raw 0 steps/s | raw rnd steps/s | training steps/s | ratio "
        "(raw rnd) | goal | met | env µs/step (training / raw rnd) | env | infer | glue | "
        "skipped | other | skipped frac | generations |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | "
        "---: | ---: | ---: | ---: | ---: |",
    ]
    for r in throughput:
        b, hidden = r["breakdown"], r["hidden_dims"]
        net = "x".join(map(str, hidden)) if hidden != "default" else "256x256"
        raw_us = 1e6 * r["workers"] / r["raw_random_steps_per_s"]
        goal = f"{r['goal']:.2f}" if r["goal"] else "-"
        met = ("yes" if r["goal_met"] else "**no**") if r["goal"] else "-"
        lines.append(
            f"| {r['env']} | {net} | {r['envs_per_worker']} | {r['raw_steps_per_s']:,.0f} | "
            f"{r['raw_random_steps_per_s']:,.0f} | {r['steps_per_s']:,.0f} | "
            f"{r['ratio_random']:.2f} | {goal} | {met} | {r['env_us_per_step']:.1f} / "
            f"{raw_us:.1f} | {b['env']:.2f} | {b['inference']:.2f} | {b['glue']:.2f} | "
            f"{b['skipped']:.2f} | {b['other']:.2f} | {r['skipped_frac_mean']:.3f} | "
            f"{r['generations']} |"
        )
    lines += [
        "",
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
