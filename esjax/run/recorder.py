"""What a run leaves on disk and who hears of it: ``Recorder`` owns the run's log.csv, its
checkpoints, its trackers and the facts about the best checkpoint."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from esjax.config import Config
from esjax.core.policy import PolicySpec
from esjax.run.checkpoint import CheckpointStore, best_step_after
from esjax.run.metrics import CsvLog
from esjax.run.state import RunState, checkpoint_meta, state_to_tree


def judged_eval(cfg: Config, row: dict[str, Any]) -> float:
    """The mean evaluation return a generation's best checkpoint is judged on: its
    periodic evaluations (--eval-every) when they are on, else its --eval-prob episodes;
    NaN when it ran none."""
    return row["PeriodicEvalRewMean"] if cfg.eval_every else row["EvalGenRewardMean"]


class Recorder:
    """A run's log, checkpoints and trackers, and which checkpoint is the best.

    ``observe(row)`` after each generation (the trainer's "updated" event), ``open`` a run
    directory, then ``record(state, row)`` writes a generation's row and checkpoints it
    when due (every ``snapshot_freq`` generations and after each new best evaluation);
    ``finish(state)`` checkpoints the last generation. ``on_checkpoint(step)`` hears each
    checkpoint written. Facts: ``gen_eval`` (the last generation's judged evaluation),
    ``best_step`` / ``best_step_eval`` (the saved checkpoint with the best one),
    ``saved_step`` (the newest checkpoint on disk)."""

    def __init__(self, cfg: Config, spec: PolicySpec,
                 on_checkpoint: Callable[[int], None] | None = None):  # fmt: skip
        self.cfg, self.spec, self.on_checkpoint = cfg, spec, on_checkpoint
        self.gen_eval = math.nan
        self.best_step: int | None = None
        self.best_step_eval = -math.inf
        self.saved_step: int | None = None
        self._log: CsvLog | None = None
        self._store: CheckpointStore | None = None
        self._saved: set[int] = set()
        self._sinks: tuple[Callable[[dict], None], ...] = ()

    def restore(self, meta: dict[str, Any], step: int) -> None:
        """Continue from the checkpoint ``step`` whose metadata is ``meta``."""
        eval_return, best_eval = meta.get("eval_return"), meta.get("best_eval")
        self.gen_eval = math.nan if eval_return is None else eval_return
        self.best_step = meta.get("best_step")
        self.best_step_eval = -math.inf if best_eval is None else best_eval
        self.saved_step = step

    def observe(self, row: dict[str, Any]) -> None:
        """Note a finished generation's judged evaluation."""
        self.gen_eval = judged_eval(self.cfg, row)

    def open(self, run_dir: Path, sinks: tuple[Callable[[dict], None], ...] = ()) -> None:
        """Append to ``run_dir``'s log.csv and checkpoints; ``sinks`` (a progress display,
        the trackers' ``log``) get every row recorded."""
        self._log = CsvLog(Path(run_dir) / "log.csv")
        self._store = CheckpointStore(run_dir, keep=self.cfg.keep_checkpoints)
        self._saved = set(self._store.steps())
        self._sinks = sinks

    def record(self, state: RunState, row: dict[str, Any]) -> None:
        """Write the row of the generation that led to ``state``; checkpoint it if due."""
        assert self._log is not None, "Recorder.open first"
        self._log.write(row)
        for sink in self._sinks:
            sink(row)
        freq = self.cfg.snapshot_freq
        if (freq and state.generation % freq == 0) or (
            self.gen_eval > self.best_step_eval  # NaN compares False
        ):
            self.finish(state)  # a new best evaluation is always kept

    def finish(self, state: RunState) -> None:
        """Checkpoint ``state`` unless it is on disk already."""
        assert self._store is not None, "Recorder.open first"
        if state.generation not in self._saved:
            self.save(state, self._store)
            self._saved.add(state.generation)

    def save(self, state: RunState, store: CheckpointStore) -> None:
        """Checkpoint ``state`` into ``store`` (raises CheckpointWriteError: then nothing
        here changes)."""
        step = state.generation
        best_step, best_eval = best_step_after(
            {"best_step": self.best_step, "best_eval": self.best_step_eval}, step, self.gen_eval
        )
        meta = checkpoint_meta(self.cfg, self.spec, state, self.gen_eval, best_step, best_eval)
        store.save(step, state_to_tree(state), meta)
        self.best_step, self.best_step_eval = best_step, best_eval
        self.saved_step = step
        if self.on_checkpoint is not None:
            self.on_checkpoint(step)

    def close(self) -> None:
        """Close the log and the checkpoint store (safe to call twice)."""
        if self._log is not None:
            self._log.close()
        if self._store is not None:
            self._store.close()
        self._log = self._store = None
