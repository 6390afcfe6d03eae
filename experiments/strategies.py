"""Strategies side by side: OpenAI-ES, ARS and PGPE per env, under one protocol.

    python -m experiments.strategies run --probe Hopper-v5/ars --seeds 0 --max-steps 5e6
    python -m experiments.strategies report
    python -m experiments.strategies run --probe Hopper-v5/ars --quick --out /tmp/s

A probe is a full option set, ``experiments/strategies/ENV/ALGO.toml`` (a preset file;
its comment says where its values come from). ``run`` trains it for each seed, stopping
early at the env's target, and adds the runs to ``OUT/strategies_runs.json`` (a later run
of the same probe and seed replaces it); ``report`` rewrites ``OUT/strategies.md`` and a
curve PNG per env from all of them. Protocol: ``experiments.harness`` (θ scored by its
periodic noiseless evaluations; every training env step counted, evaluations apart).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from experiments.harness import (
    QUICK_FLAGS,
    REPO,
    git_commit,
    machine,
    median_reach,
    pyplot,
    run_seed,
    save_figure,
    write_markdown,
)

PROBES = REPO / "experiments" / "strategies"
OUT = REPO / "experiments" / "results"

# Per env: (target, budget of env steps the goal allows, where the target comes from).
TARGETS = {
    "Hopper-v5": (3403.46, 5e6, "TRPO's score at 5M (the ES paper's Table 3)"),
    "Walker2d-v5": (3830.03, 1e7, "TRPO's score at 5M (the ES paper's Table 3)"),
    "HalfCheetah-v5": (2385.79, 1.44e6, "TRPO's score; budget 0.5x the paper's ES steps"),
    "Swimmer-v5": (128.25, 6.95e5, "TRPO's score; budget 0.5x the paper's ES steps"),
    "InvertedPendulum-v5": (1000.0, 2.28e5, "TRPO's score; budget 0.5x the paper's ES steps"),
    "InvertedDoublePendulum-v5": (9104.07, 2.7e6, "TRPO's score; 0.5x the paper's ES steps"),
    "AntBulletEnv-v0": (1500.0, 5e6, "walking, not standing (issue 16's goal)"),
    "InvertedPendulumBulletEnv-v0": (950.0, 4e5, "the registered threshold; the learning test"),
}


def probe_file(probe: str) -> Path:
    """``ENV/ALGO`` -> its TOML file; ValueError naming the probes if there is none."""
    path = PROBES / f"{probe}.toml"
    if not path.is_file():
        known = ", ".join(sorted(str(p.relative_to(PROBES))[:-5] for p in PROBES.glob("*/*.toml")))
        raise ValueError(f"no probe {probe!r}: choose one of {known}")
    return path


def merge(old: list[dict], new: list[dict]) -> list[dict]:
    """``old`` with the (probe, seed) runs in ``new`` replaced, sorted."""
    done = {(r["probe"], r["seed"]) for r in new}
    keep = [r for r in old if (r["probe"], r["seed"]) not in done]
    return sorted(keep + new, key=lambda r: (r["env"], r["probe"], r["seed"]))


def run(probe: str, seeds: list[int], max_steps: float, out: Path, quick: bool) -> list[dict]:
    """Train ``probe`` for each seed; the runs as dicts (RunResult + probe, target...)."""
    path = probe_file(probe)
    env, algo = probe.split("/")
    target, goal_steps, _ = TARGETS[env]
    budget = int(max_steps or goal_steps)
    # Quick: QUICK_FLAGS but the probe's population (ARS's --top-directions must fit in it).
    i = QUICK_FLAGS.index("--population-size")
    quick_flags = QUICK_FLAGS[:i] + QUICK_FLAGS[i + 2 :]
    extra = quick_flags if quick else ["--target-return", str(target)]
    runs_dir = (out if quick else REPO) / "runs" / "strategies"
    results = []
    for seed in seeds:
        r = run_seed(env, str(path), seed, budget, runs_dir, extra).to_dict()
        r.update(probe=probe, algo=algo, budget=budget, commit=git_commit(),
                 finished=time.strftime("%Y-%m-%d %H:%M"))  # fmt: skip
        r["command"] = [c.replace(str(REPO) + "/", "") for c in r["command"]]
        results.append(r)
        print(f"{probe} seed {seed}: best {max(r['eval_mean'], default=math.nan):.1f} in "
              f"{r['total_env_steps']:,} env steps, {r['wall_s']:.0f} s", flush=True)  # fmt: skip
    return results


def earlier_openai_es_runs(out: Path) -> list[dict]:
    """The OpenAI-ES runs made before this script (issue 10, same protocol): the Table 3
    runs (``table3_runs.json``) and the AntBulletEnv-v0 preset check
    (``presets_runs.json``), as ``ENV/openai-es`` runs."""
    found = []
    table3, presets = out / "table3_runs.json", out / "presets_runs.json"
    if table3.exists():
        data = json.loads(table3.read_text())
        commit = data.get("meta", {}).get("commit", "?")
        found += [{**r, "commit": commit, "finished": "table3"} for r in data["runs"]]
    if presets.exists():
        for check in json.loads(presets.read_text()).values():
            found += [{**r, "commit": check["commit"], "finished": "preset check"}
                      for r in check["runs"]]  # fmt: skip
    return [{**r, "probe": f"{r['env']}/openai-es", "algo": "openai-es"} for r in found
            if r["env"] in TARGETS]  # fmt: skip


def _steps(x) -> str:
    return "not reached" if x is None else f"{x:.2e}"


def report(out: Path, runs: list[dict], notes: str = "") -> Path:
    """``out/strategies.md`` and ``out/strategies_ENV.png`` from ``runs``."""
    envs = [e for e in TARGETS if any(r["env"] == e for r in runs)]
    lines = [
        "# Strategies side by side: OpenAI-ES, ARS, PGPE",
        "",
        "Made by `python -m experiments.strategies report` from `strategies_runs.json`.",
        "",
        "**Protocol** (`experiments/harness.py`): the policy scored is θ itself, the mean "
        "return of its periodic noiseless evaluation episodes (the env's own reward: "
        "`--reward-shift` changes only what training ranks), run by the workers outside "
        "the training budget. Timesteps are every env step the training simulated before "
        "that θ existed (evaluation episodes excluded). A run stops at the env's target or "
        "its budget; *steps run* is the last evaluated θ's count (probes ran shorter "
        "budgets than the goal's where the table says so). "
        "Medians are over seeds; a seed that never reached the target counts as "
        "infinitely late. The `openai-es` rows marked `table3` / `preset check` in the runs "
        "table are the earlier runs of `experiments.paper_table3` and "
        "`experiments.preset_check` (same protocol; their budgets: 8M for Hopper and "
        "Walker2d, 3M for AntBulletEnv-v0).",
        "",
        f"- Machine: {machine()}",
        "",
        "| env | target (goal's budget) | probe | steps run (largest) | seeds reached | steps to "
        "target: median (per seed) | best evaluation: median (per seed) | wall time per seed |",
        "| --- | --- | --- | ---: | --- | --- | --- | --- |",
    ]
    for env in envs:
        target, goal_steps, why = TARGETS[env]
        for probe in sorted({r["probe"] for r in runs if r["env"] == env}):
            pr = [r for r in runs if r["probe"] == probe]
            med, reached = median_reach(pr, target)
            best = [max(r["eval_mean"], default=math.nan) for r in pr]
            n_ok = sum(x is not None for x in reached)
            ran = max((r["steps"][-1] for r in pr if r["steps"]), default=0)
            lines.append(
                f"| {env} | {target:g} ({goal_steps:.1e}) | `{probe}` | {ran:.2e} | "
                f"{n_ok}/{len(pr)} | "
                f"{_steps(med)} ({', '.join(_steps(x) for x in reached)}) | "
                f"{sorted(best)[len(best) // 2]:.0f} ({', '.join(f'{b:.0f}' for b in best)}) | "
                f"{', '.join(f'{w:.0f} s' for w in (r['wall_s'] for r in pr))} |"
            )
    lines += ["", "## Runs", "", "| probe | seed | env steps in all (evaluation) | commit | "
              "finished | command |", "| --- | ---: | ---: | --- | --- | --- |"]  # fmt: skip
    for r in runs:
        lines.append(f"| `{r['probe']}` | {r['seed']} | {r['total_env_steps']:,} "
                     f"({r['eval_env_steps']:,}) | `{r['commit']}` | {r['finished']} | "
                     f"`{' '.join(r['command'])}` |")  # fmt: skip
    lines += ["", "## Curves", ""] + [f"![{e}](strategies_{e}.png)" for e in envs]
    path = write_markdown(out / "strategies.md", lines, notes)
    plot(out, runs, envs)
    return path


def plot(out: Path, runs: list[dict], envs: list[str]) -> None:
    plt = pyplot()

    for env in envs:
        fig, ax = plt.subplots(figsize=(6.5, 4), dpi=90)
        probes = sorted({r["probe"] for r in runs if r["env"] == env})
        for i, probe in enumerate(probes):
            for j, r in enumerate(r for r in runs if r["probe"] == probe):
                ax.plot(r["steps"], r["eval_mean"], color=f"C{i}", lw=1.1, alpha=0.85,
                        label=probe.split("/")[1] if j == 0 else None)  # fmt: skip
        ax.axhline(TARGETS[env][0], color="k", ls="--", lw=1, label="target")
        ax.set_title(env, fontsize=10)
        ax.set_xlabel("training env steps")
        ax.set_ylabel("evaluation return of θ")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
        save_figure(fig, out / f"strategies_{env}.png")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.strategies",
                                description=__doc__.split("\n\n")[0])  # fmt: skip
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train probes and add them to the results")
    r.add_argument("--probe", required=True, help="ENV/ALGO (experiments/strategies/ENV/ALGO.toml)")
    r.add_argument("--seeds", nargs="+", type=int, default=[0])
    r.add_argument("--max-steps", type=float, default=0, help="env steps (default: the goal's)")
    r.add_argument("--quick", action="store_true", help="2 tiny generations: a smoke test")
    for q in (r, sub.add_parser("report", help="rewrite strategies.md from the results")):
        q.add_argument("--out", type=Path, default=OUT)
        q.add_argument("--notes", type=Path, help="markdown appended as the Notes section")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    runs_file = args.out / "strategies_runs.json"
    if args.cmd == "run":
        try:
            new = run(args.probe, args.seeds, args.max_steps, args.out, args.quick)
        except (ValueError, RuntimeError) as e:
            p.error(str(e))
        old = json.loads(runs_file.read_text()) if runs_file.exists() else []
        runs_file.write_text(json.dumps(merge(old, new), indent=1) + "\n")  # at write time
    runs = json.loads(runs_file.read_text()) if runs_file.exists() else []
    if not runs:
        p.error(f"{runs_file}: no runs yet; run a probe first")
    notes = args.notes.read_text() if args.notes else ""
    mine = {(r["probe"], r["seed"]) for r in runs}
    earlier = [r for r in earlier_openai_es_runs(args.out) if (r["probe"], r["seed"]) not in mine]
    print(report(args.out, merge(earlier, runs), notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
