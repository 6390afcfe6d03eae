"""``make bench``: run every benchmark, write benchmarks/results/*.json and BENCHMARKS.md.

BENCH_QUICK=1 runs a smoke-test version in under a minute (small envs, sizes and times);
its figures say nothing about performance.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from policy_step import BACKENDS, bench_policy_step  # noqa: E402
from startup import bench_startup  # noqa: E402
from throughput import raw_ceiling, training_rate  # noqa: E402
from update_step import bench_update, copy_bandwidth_gbs  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, {platform.platform()}"


def main() -> None:
    quick = os.environ.get("BENCH_QUICK") == "1"
    out_dir = Path(os.environ.get("BENCH_OUT", ROOT / "benchmarks" / "results"))
    md_path = Path(os.environ.get("BENCH_MD", ROOT / "BENCHMARKS.md"))
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "command": ("BENCH_QUICK=1 " if quick else "") + "make bench",
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),  # fmt: skip
        "quick": quick,
    }

    # (1) throughput: raw env ceiling vs training, same env and process count
    envs = ["InvertedPendulumBulletEnv-v0"] if quick else ["AntBulletEnv-v0", "HopperBulletEnv-v0"]
    seconds = 4.0 if quick else 60.0
    table = 2_000_000 if quick else 250_000_000
    throughput = []
    for env_id in envs:
        for workers in (1, 2):
            print(f"throughput {env_id} x{workers} ...", flush=True)
            raw = raw_ceiling(env_id, workers, seconds / 2)
            raw_random = raw_ceiling(env_id, workers, seconds / 2, "random")
            train = training_rate(env_id, workers, seconds, {"noise_table_size": table})
            throughput.append({"env": env_id, "workers": workers, "raw_steps_per_s": raw,
                               "raw_random_steps_per_s": raw_random, **train,
                               "ratio": train["steps_per_s"] / raw,
                               "ratio_random": train["steps_per_s"] / raw_random})  # fmt: skip
    _write(out_dir / "throughput.json", {**meta, "results": throughput})

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

    md_path.write_text(render_markdown(meta, throughput, update, bandwidth, start, policy))
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
        "raw = the same number of processes stepping the env with no policy and resets: with a",
        "fixed zero action (raw 0), and with a fixed pre-drawn sequence of uniform random actions",
        "(raw rnd, closer to a policy's contacts). training = timesteps of all used episodes",
        "per second of generation time (warm-up generation excluded). env frac = EnvTimeFrac,",
        "the share of the workers' time spent inside the simulator for used episodes.",
        "TimePredict = policy inference per env step.",
        "",
        "| env | workers | raw 0 steps/s | raw rnd steps/s | training steps/s | ratio (raw 0) | "
        "ratio (raw rnd) | env frac | skipped frac | TimePredict µs/step | generations |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in throughput:
        lines.append(
            f"| {r['env']} | {r['workers']} | {r['raw_steps_per_s']:,.0f} | "
            f"{r['raw_random_steps_per_s']:,.0f} | {r['steps_per_s']:,.0f} | "
            f"{r['ratio']:.2f} | {r['ratio_random']:.2f} | {r['env_time_frac_mean']:.2f} | "
            f"{r['skipped_frac_mean']:.3f} | {r['time_predict_mean_us']:.1f} | "
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


if __name__ == "__main__":
    main()
