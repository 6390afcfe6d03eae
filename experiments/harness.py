"""Run seeds of a preset through ``esjax.seeds`` and read back what the runs measured.

The protocol every result in ``experiments/results`` follows is ``esjax.seeds``'s (its
module docstring): θ scored by its periodic noiseless evaluations; timesteps = every env
step the training simulated before that θ existed, the evaluations' own steps apart.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from esjax.provenance import REPO, git_commit, machine
from esjax.run.seed_stats import eval_curve, first_reach, median_reach
from esjax.seeds import SeedRun, run_seeds

__all__ = ["QUICK_FLAGS", "REPO", "RunResult", "eval_curve", "first_reach", "git_commit",
           "machine", "median_reach", "preset_seeds", "pyplot", "run_seed", "save_figure",
           "train_flags", "write_markdown"]  # fmt: skip

RunResult = SeedRun  # one seed's run, as the results files store it

# Flags that shrink any run to 2 tiny generations, its episodes in the trainer's process
# (no worker to start): the scripts' --quick smoke tests.
QUICK_FLAGS = ["--max-generations", "2", "--population-size", "8", "--timesteps-per-gen",
               "100", "--noise-table-size", "1000000", "--num-workers", "1",
               "--backend", "inline"]  # fmt: skip


def train_flags(preset: str, max_timesteps: int, extra: list[str] | tuple[str, ...] = ()
                ) -> list[str]:  # fmt: skip
    """The esjax.train flags that train ``preset`` for ``max_timesteps``."""
    return ["--preset", preset, "--max-timesteps", str(int(max_timesteps)),
            "--snapshot-freq", "0", "--keep-checkpoints", "1", *extra]  # fmt: skip


def preset_seeds(env: str, preset: str, seeds: list[int], max_timesteps: int, runs_dir: Path,
                 extra: list[str] | tuple[str, ...] = (), say=print) -> list[dict]:  # fmt: skip
    """Train ``seeds`` of ``preset`` with ``esjax.seeds`` (in turn; a seed already
    finished with the same flags is not rerun), in ``runs_dir/NAME_FLAGSHASH``; their
    SeedRun records (dicts), in order."""
    flags = train_flags(preset, max_timesteps, extra)
    name = f"{env}_{Path(preset).stem}" if preset.endswith(".toml") else preset
    digest = hashlib.sha1(" ".join(flags).encode()).hexdigest()[:8]
    return run_seeds(flags, seeds, runs_dir / f"{name}_{digest}", parallel=1, env=env, say=say)


def run_seed(env: str, preset: str, seed: int, max_timesteps: int, runs_dir: Path,
             extra: list[str] | tuple[str, ...] = ()) -> RunResult:  # fmt: skip
    """Train one seed (``preset_seeds``) and read its curve."""
    (record,) = preset_seeds(env, preset, [seed], max_timesteps, runs_dir, extra,
                             say=lambda line: None)  # fmt: skip
    return SeedRun(**record)


def pyplot():
    """matplotlib.pyplot drawing to files only (the Agg backend), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> None:
    """Lay out ``fig``, write it to ``path`` and free it."""
    fig.tight_layout()
    fig.savefig(path)
    pyplot().close(fig)


def write_markdown(path: Path, lines: list[str], notes: str | None = None) -> Path:
    """Write a report's ``lines`` to ``path``, with ``notes`` (Markdown) as its last
    section; ``path``."""
    if notes:
        lines = [*lines, "", "## Notes", "", notes.strip()]
    path.write_text("\n".join(lines) + "\n")
    return path
