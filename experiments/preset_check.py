"""Check a preset against a target: several seeds, θ's evaluation against env steps.

    python -m experiments.preset_check --preset AntBulletEnv-v0 --timesteps 3000000 \\
        --target 1230 --seeds 0 1 2
    python -m experiments.preset_check --preset InvertedPendulum-v5 --quick --out /tmp/pc

Appends to ``OUT/presets_runs.json`` and rewrites ``OUT/presets.md`` (a section per preset,
with the median over seeds of the best evaluation within the budget and of the env steps
to the target) and ``OUT/preset_NAME.png``. The seeds run through ``esjax.seeds`` (so a
seed already finished with the same flags is not rerun) and follow its protocol and
statistics; the runs do not stop at the target, so the curves show what follows it.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

from esjax.run.seed_stats import aggregate, plot_seeds
from experiments.harness import (
    QUICK_FLAGS,
    REPO,
    git_commit,
    machine,
    median_reach,
    preset_seeds,
)


def best_within(run: dict, steps: float) -> float:
    """Best evaluation of θ produced within ``steps`` env steps."""
    return max((e for s, e in zip(run["steps"], run["eval_mean"]) if s <= steps),
               default=math.nan)  # fmt: skip


def write_report(out: Path, checks: dict[str, dict]) -> Path:
    lines = [
        "# Presets checked against targets",
        "",
        "Protocol (`experiments/harness.py`): θ scored by the mean of its periodic "
        "noiseless evaluation episodes; env steps = every step the training simulated "
        "(evaluation episodes excluded); median over seeds.",
    ]
    for name, c in checks.items():
        runs, budget, target = c["runs"], c["timesteps"], c["target"]
        bests = [best_within(r, budget) for r in runs]
        med_reach, reached = median_reach(runs, target)
        med_best = statistics.median(bests)
        spread = aggregate(bests)
        walls = ", ".join(f"{r['wall_s']:.0f} s" for r in runs)
        lines += [
            "",
            f"## {name}: target {target:g} within {budget:,} env steps",
            "",
            f"- Median best evaluation within the budget: **{med_best:.1f}** "
            f"(seeds: {', '.join(f'{b:.1f}' for b in bests)}; IQM {spread['iqm']:.1f}, "
            f"95 % bootstrap CI [{spread['ci95'][0]:.1f}, {spread['ci95'][1]:.1f}]); "
            f"{'met' if med_best >= target else 'NOT met'}.",
            "- Env steps to the target: median "
            f"{'never' if med_reach is None else f'{med_reach:,.0f}'} (seeds: "
            f"{', '.join('never' if x is None else f'{x:,}' for x in reached)}).",
            f"- Machine: {c['machine']}; commit `{c['commit']}`; wall time per seed: {walls}.",
            f"- Command: `{c['command']}`; each run: `{' '.join(runs[0]['command'])}` "
            "(seed varied).",
            "",
            f"![{name}](preset_{name}.png)",
        ]
        plot_seeds(out / f"preset_{name}.png", runs, name, target)
    path = out / "presets.md"
    path.write_text("\n".join(lines).replace(str(REPO) + "/", "") + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.preset_check",
                                description=__doc__.split("\n\n")[0])  # fmt: skip
    p.add_argument("--preset", required=True)
    p.add_argument("--timesteps", type=int, required=True, help="training budget per seed")
    p.add_argument("--target", type=float, required=True)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--out", type=Path, default=REPO / "experiments" / "results")
    p.add_argument("--runs-dir", type=Path, default=REPO / "runs" / "presets")
    p.add_argument("--quick", action="store_true", help="tiny runs (a smoke test)")
    args = p.parse_args(argv)
    if args.quick and args.out == p.get_default("out"):
        p.error("--quick writes tiny, meaningless results: give --out elsewhere")
    args.out.mkdir(parents=True, exist_ok=True)
    runs = preset_seeds(args.preset, args.preset, args.seeds, args.timesteps, args.runs_dir,
                        QUICK_FLAGS if args.quick else [])  # fmt: skip
    store = args.out / "presets_runs.json"
    checks = json.loads(store.read_text()) if store.exists() else {}
    argv_text = " ".join(sys.argv[1:] if argv is None else argv)
    checks[args.preset] = {
        "runs": runs, "timesteps": args.timesteps, "target": args.target,
        "machine": machine(), "commit": git_commit(),
        "command": f"python -m experiments.preset_check {argv_text}",
    }  # fmt: skip
    store.write_text(json.dumps(checks, indent=1) + "\n")
    print(f"wrote {write_report(args.out, checks)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
