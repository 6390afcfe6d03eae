"""A/B of the OpenAI-ES defaults the pybullet evidence names (issue 29, item 2), on one
locomotor preset: each variant changes one thing and trains the same seeds.

    python -m experiments.defaults_ab --preset HopperBulletEnv-v0 --timesteps 1500000 \\
        --out experiments/results/pybullet/defaults_ab --runs runs/defaults_ab --parallel 2
    python -m experiments.defaults_ab --quick --out /tmp/ab --runs /tmp/ab/runs

Variants: the preset as it is; observations normalized with a std floor of 0.001 instead
of the reference's 0.1; the output layer initialized like the hidden ones (column norm 1,
not 0.01: initial actions far from 0); a 10,000-step minimum per generation (the
MuJoCo-paper default) instead of 20 episodes; 40 episodes per generation (Nolfi's group).
The committed report ran at commit 58bffff, where the first two were not yet options (the
script set them inside the training process; its output layer, 100 x the default draw,
differs from ``--output-init-std 1``'s in the last bits). Each run lives in
``RUNS/VARIANT/seed_N``, is not rerun once it reached the budget and is resumed from its
last checkpoint if it was stopped before (SIGTERM the script's process group: every
trainer saves and exits);
``--reuse DIR`` takes the preset's own runs (e.g. its seeds' result) for the first
variant where their config.json matches. Curves: θ's periodic stock-reward evaluations
against training env steps (``esjax.seeds``'s protocol). Writes ``OUT/ENV.md`` and
``OUT/ENV.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from esjax.run.metrics import read_log
from experiments.harness import (
    QUICK_FLAGS,
    REPO,
    eval_curve,
    git_commit,
    machine,
    median_reach,
    pyplot,
    save_figure,
    train_flags,
)

# name: the esjax.train flags that make the variant
VARIANTS = {
    "preset as shipped": [],
    "observation std floor 0.001 (not 0.1)": ["--obs-std-floor", "0.001"],
    "output layer initialized at norm 1 (not 0.01)": ["--output-init-std", "1"],
    "10,000-step minimum per generation": ["--timesteps-per-gen", "10000"],
    "40 episodes per generation": ["--population-size", "40"],
}
# Config fields that may differ between a reused run and this script's own (budget,
# layout, checkpoints, where the preset and the run live): they do not change what is
# trained.
LAYOUT_FIELDS = {"max_timesteps", "max_generations", "num_workers", "envs_per_worker",
                 "snapshot_freq", "keep_checkpoints", "backend", "ray_address", "logger",
                 "target_return", "preset", "run_dir"}  # fmt: skip


def variants_that_change(flags: list[str]) -> list[str]:
    """The variants whose flags change the config ``flags`` make (the first, the preset
    itself, always): one that the preset already has would rerun the preset."""
    from esjax.train import parse

    base, _, _ = parse(flags)
    names = list(VARIANTS)
    return names[:1] + [n for n in names[1:] if parse([*flags, *VARIANTS[n]])[0] != base]


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")[:40]


def finished(run_dir: Path, budget: int) -> bool:
    log = read_log(run_dir)
    return bool(log["TimestepsSoFar"]) and log["TimestepsSoFar"][-1] >= budget


def train_command(name: str, flags: list[str], seed: int, folder: Path) -> list[str]:
    """The command that trains (variant ``name``, ``seed``) into ``folder``: it resumes the
    newest run there that has a checkpoint (an interrupted one: resume is exact), else
    starts one."""
    started = [
        log.parent
        for log in sorted(folder.glob("*/log.csv"))
        if any(c.name.isdigit() for c in (log.parent / "checkpoints").glob("*"))
    ]
    head = [sys.executable, "-m", "esjax.train"]
    if started:
        return [*head, "--resume", str(started[-1])]
    return [*head, *flags, *VARIANTS[name], "--seed", str(seed), "--run-dir", str(folder)]


def train_one(name: str, flags: list[str], seed: int, runs: Path) -> Path:
    """Train one (variant, seed) in its own process unless a run of it already reached
    the budget; its run directory."""
    folder = runs / slug(name) / f"seed_{seed}"
    budget = int(flags[flags.index("--max-timesteps") + 1])
    done = [d for d in sorted(folder.glob("*/log.csv")) if finished(d.parent, budget)]
    if done:
        return done[-1].parent
    folder.mkdir(parents=True, exist_ok=True)
    (folder.parent / "variant.json").write_text(json.dumps({"variant": name,
                                                            "flags": VARIANTS[name]}))  # fmt: skip
    cmd = train_command(name, flags, seed, folder)
    with open(folder / "train.log", "a") as out:
        rc = subprocess.run(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT).returncode
    runs_made = sorted(folder.glob("*/log.csv"))
    if rc != 0 or not runs_made:
        raise RuntimeError(f"{name}, seed {seed}: exit {rc} (see {folder / 'train.log'})")
    return runs_made[-1].parent


def reusable(run_dir: Path, flags: list[str], seed: int) -> bool:
    """Whether ``run_dir`` trained what ``flags --seed seed`` would (apart from layout)."""
    from esjax.run.rundir import load_run_config
    from esjax.train import parse

    want, _, _ = parse([*flags, "--seed", str(seed)])
    have = load_run_config(run_dir)
    return all(getattr(want, f.name) == getattr(have, f.name)
               for f in dataclasses.fields(want) if f.name not in LAYOUT_FIELDS)  # fmt: skip


def curve_within(run_dir: Path, budget: int) -> dict:
    """The run's evaluation curve up to ``budget`` training steps."""
    c = eval_curve(run_dir)
    keep = [i for i, s in enumerate(c["steps"]) if s <= budget]
    return {"steps": [c["steps"][i] for i in keep],
            "eval_mean": [c["eval_mean"][i] for i in keep]}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m experiments.defaults_ab",
                                description=__doc__.split("\n\n")[0])  # fmt: skip
    p.add_argument("--preset", default="HopperBulletEnv-v0")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--timesteps", type=int, default=1_500_000, help="training budget per run")
    p.add_argument("--target", type=float, default=1000.0, help="return reported as reached")
    p.add_argument("--runs", type=Path, default=Path("runs/defaults_ab"))
    p.add_argument("--out", type=Path, default=Path("experiments/results/pybullet/defaults_ab"))
    p.add_argument("--reuse", type=Path, nargs="*", default=[],
                   help="folders searched for the preset's own runs (first variant)")  # fmt: skip
    p.add_argument("--parallel", type=int, default=1, help="runs side by side (1 worker each)")
    p.add_argument("--quick", action="store_true", help="tiny runs (a smoke test)")
    args = p.parse_args(argv)
    flags = train_flags(args.preset, args.timesteps, ["--num-workers", "1"])
    if args.quick:
        flags += QUICK_FLAGS
    reused = {}
    names = variants_that_change(flags)
    for name in [n for n in VARIANTS if n not in names]:
        print(f"{name}: the preset {args.preset} already has it; skipped", flush=True)
    first = names[0]
    candidates = sorted(log.parent for folder in args.reuse for log in folder.rglob("log.csv"))
    for seed in args.seeds:
        for run_dir in candidates:
            if reusable(run_dir, flags, seed):
                reused[seed] = run_dir
    jobs = [(n, s) for n in names for s in args.seeds if not (n == first and s in reused)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
        dirs = dict(zip(jobs, pool.map(lambda j: train_one(j[0], flags, j[1], args.runs), jobs)))
    dirs.update({(first, s): d for s, d in reused.items()})
    results = {n: [curve_within(dirs[n, s], args.timesteps) for s in args.seeds]
               for n in names}  # fmt: skip
    env = json.loads((dirs[first, args.seeds[0]] / "config.json").read_text())["env"]
    write_report(args, env, results, dirs, time.perf_counter() - t0)
    return 0


def write_report(args, env: str, results: dict, dirs: dict, wall_s: float) -> None:
    plt = pyplot()
    lines = [
        f"# {env}: the OpenAI-ES defaults the pybullet evidence names, A/B",
        "",
        f"Preset `{args.preset}`, one change per variant (`experiments/defaults_ab.py`); "
        f"seeds {args.seeds}; {args.timesteps:,} training timesteps per run, 1 worker each, "
        f"{args.parallel} run(s) side by side; θ scored on the stock reward by its periodic "
        "noiseless evaluations, against the training env steps before it. "
        f"Machine: {machine()}; commit `{git_commit()}`; "
        f"command: `python -m experiments.defaults_ab {' '.join(sys.argv[1:])}`.",
        "",
        f"| variant | best evaluation: median (per seed) | env steps to {args.target:g}: "
        "median (per seed) |",
        "| --- | ---: | ---: |",
    ]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=90)
    for i, (name, curves) in enumerate(results.items()):
        bests = [max(c["eval_mean"], default=math.nan) for c in curves]
        med, reached = median_reach(curves, args.target)
        per_seed = ", ".join("never" if x is None else f"{x:,}" for x in reached)
        lines.append(f"| {name} | {statistics.median(bests):.1f} "
                     f"({', '.join(f'{b:.0f}' for b in bests)}) | "
                     f"{'never' if med is None else f'{med:,.0f}'} ({per_seed}) |")  # fmt: skip
        for j, c in enumerate(curves):
            ax.plot(c["steps"], c["eval_mean"], color=f"C{i}", lw=1,
                    label=name if j == 0 else None)  # fmt: skip
    lines += ["", "Runs: " + "; ".join(f"{n} seed {s}: `{d}`" for (n, s), d in dirs.items())]
    ax.axhline(args.target, color="k", ls="--", lw=1)
    ax.set_xlabel("training env steps")
    ax.set_ylabel("stock-reward evaluation of θ")
    ax.set_title(f"{env}: {len(args.seeds)} seed(s) per variant")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    args.out.mkdir(parents=True, exist_ok=True)
    save_figure(fig, args.out / f"{env}.png")
    (args.out / f"{env}.md").write_text("\n".join(lines) + f"\n\n![curves]({env}.png)\n")
    print(f"wrote {args.out / f'{env}.md'} ({wall_s:.0f} s)")


if __name__ == "__main__":
    sys.exit(main())
