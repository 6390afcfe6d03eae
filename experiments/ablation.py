"""Ablation of fitness shaping and mirrored sampling on one fast env, with esjax as a
library: ``Config`` + ``Trainer`` in this process, one run directory per variant and seed.

    python -m experiments.ablation                      # InvertedPendulum-v5, 3 seeds
    python -m experiments.ablation --env InvertedDoublePendulum-v5 --timesteps 1000000
    python -m experiments.ablation --quick --out /tmp/ablation

Every variant starts from the env's OpenAI-ES settings
(``experiments/strategies/ENV/openai-es.toml``) and changes one thing. Curves: θ's periodic
evaluation (mean of 5 noiseless episodes) against env steps (``experiments.harness``).
Writes ``OUT/ablation.md`` (steps to the target per variant) and ``OUT/ablation.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

from esjax.config import Config
from esjax.errors import ConfigError
from esjax.presets import load_preset
from esjax.trainer import Trainer
from experiments.harness import (
    eval_curve,
    first_reach,
    git_commit,
    machine,
    median_reach,
    pyplot,
    save_figure,
)

OPENAI_ES = Path(__file__).resolve().parent / "strategies"
VARIANTS = {  # name: the options it changes from the openai-es settings
    "centered ranks (default)": {},
    "sign of rewards": {"return_proc_mode": "sign"},
    "centered ranks of reward signs": {"return_proc_mode": "centered_sign_rank"},
    "raw returns": {"fitness_shaping": False},
    "no mirrored sampling": {"mirrored_sampling": False},
}
QUICK = dict(max_generations=2, population_size=4, timesteps_per_gen=100,
             noise_table_size=1_000_000, num_workers=1, backend="inline")  # fmt: skip


def train_variant(cfg: Config, run_dir: Path) -> dict:
    """Train ``cfg`` into ``run_dir`` (no console output); its evaluation curve."""
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer.from_config(cfg, log=lambda line: None)
    trainer.start()
    try:
        trainer.train(run_dir)
    finally:
        trainer.close()
    return eval_curve(run_dir)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.ablation",
                                description=__doc__.split("\n\n")[0])  # fmt: skip
    p.add_argument("--env", default="InvertedPendulum-v5",
                   help="an env with experiments/strategies/ENV/openai-es.toml")  # fmt: skip
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--timesteps", type=int, default=300_000, help="training budget per run")
    p.add_argument("--target", type=float, default=None,
                   help="return that counts as solved (default: the env's threshold)")  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("experiments/results"))
    p.add_argument("--quick", action="store_true", help="tiny runs (a smoke test)")
    args = p.parse_args(argv)
    try:
        base = Config(**load_preset(str(OPENAI_ES / args.env / "openai-es.toml")))
    except ConfigError as e:
        p.error(str(e))
    base = dataclasses.replace(base, max_timesteps=args.timesteps, snapshot_freq=0,
                               keep_checkpoints=1, **(QUICK if args.quick else {}))  # fmt: skip
    target = args.target
    if target is None:
        import gymnasium as gym

        target = gym.spec(base.env).reward_threshold or math.inf
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="esjax-ablation-") as tmp:
        for name, change in VARIANTS.items():
            for seed in args.seeds:
                cfg = dataclasses.replace(base, seed=seed, **change)
                t0 = time.perf_counter()
                curve = train_variant(cfg, Path(tmp) / f"{len(results)}_{seed}")
                curve["wall_s"] = time.perf_counter() - t0
                results.setdefault(name, []).append(curve)
                reached = first_reach(curve["steps"], curve["eval_mean"], target)
                print(f"{name:>32} seed {seed}: best {max(curve['eval_mean']):8.1f}, "
                      f"target {target:g} at {reached or 'never'} steps", flush=True)  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    write_report(args, base, target, results)
    return 0


def write_report(args, base: Config, target: float, results: dict[str, list[dict]]) -> None:
    plt = pyplot()

    argv = " ".join(sys.argv[1:])
    lines = [
        f"# Ablation on {base.env}: fitness shaping and mirrored sampling",
        "",
        f"Preset `{args.env}`, one change per variant; seeds {args.seeds}; training budget "
        f"{args.timesteps:,} timesteps; θ scored by {base.eval_episodes} noiseless episodes "
        f"every {base.eval_every} generation(s); env steps counted as in table3.md. "
        f"Machine: {machine()}; commit `{git_commit()}`; "
        f"command: `python -m experiments.ablation {argv}`.",
        "",
        f"| variant | env steps to reach {target:g}: median (per seed) | best evaluation: median |",
        "| --- | --- | ---: |",
    ]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=90)
    for i, (name, curves) in enumerate(results.items()):
        med, reached = median_reach(curves, target)
        per_seed = ", ".join("never" if x is None else f"{x:,}" for x in reached)
        best = statistics.median(max(c["eval_mean"]) for c in curves)
        lines.append(f"| {name} | {'never' if med is None else f'{med:,.0f}'} "
                     f"({per_seed}) | {best:.1f} |")  # fmt: skip
        for j, c in enumerate(curves):
            ax.plot(c["steps"], c["eval_mean"], color=f"C{i}", lw=1,
                    label=name if j == 0 else None)  # fmt: skip
    if math.isfinite(target):
        ax.axhline(target, color="k", ls="--", lw=1, label=f"target {target:g}")
    ax.set_xlabel("env steps")
    ax.set_ylabel("evaluation return of θ")
    ax.set_title(f"{base.env}: {len(args.seeds)} seed(s) per variant")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, args.out / "ablation.png")
    (args.out / "ablation.md").write_text("\n".join(lines) + "\n\n![curves](ablation.png)\n")
    print(f"wrote {args.out / 'ablation.md'}")


if __name__ == "__main__":
    sys.exit(main())
