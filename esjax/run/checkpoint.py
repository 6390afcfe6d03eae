"""Full training state on disk with orbax: arrays through StandardSave, metadata as JSON.

Layout: ``RUN_DIR/checkpoints/<generation>/{state,meta}``. orbax writes each step to a
temporary folder and renames it when complete, so a crash mid-save never leaves a step that
loads. No pickle anywhere: loading a checkpoint executes no code.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orbax.checkpoint as ocp
from absl import logging as absl_logging

from esjax.errors import CheckpointError, CheckpointWriteError
from esjax.quiet import silenced_stdout

absl_logging.set_verbosity(absl_logging.ERROR)  # orbax logs every save at INFO/WARNING


def checkpoint_bytes(num_params: int, ob_dim: int) -> int:
    """Rough size on disk of one checkpoint: θ, two optimizer moments and the generation's
    θ (float32), observation statistics (float64), plus metadata and orbax's files."""
    return 16 * num_params + 24 * ob_dim + 64 * 1024


class CheckpointStore:
    """Keeps the newest ``keep`` checkpoints plus the best one by evaluation return.

    ``meta`` of each step is a JSON dict; this class uses its ``eval_return`` (the mean
    noiseless evaluation return of that generation, NaN if none ran) to track the best.
    """

    def __init__(self, run_dir: Path, keep: int = 5, read_only: bool = False):
        self.directory = Path(run_dir).absolute() / "checkpoints"
        if read_only and not self.directory.is_dir():
            raise CheckpointError(f"{run_dir} has no checkpoints folder: is it an esjax run?")
        self.keep = keep
        self._mngr = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=None, create=not read_only, read_only=read_only
            ),
        )

    def steps(self) -> list[int]:
        return sorted(self._mngr.all_steps())

    def save(self, step: int, state: dict[str, Any], meta: dict[str, Any]) -> None:
        """Write ``state`` (pytree of arrays) and ``meta`` (JSON) as ``step``; blocks until
        committed, then prunes to the newest ``keep`` plus the best."""
        try:
            # A failed write makes orbax's background threads print several tracebacks;
            # the one-line CheckpointWriteError below says it all.
            with silenced_stdout():
                try:
                    self._mngr.save(
                        step,
                        args=ocp.args.Composite(
                            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
                        ),
                        force=True,
                    )
                    self._mngr.wait_until_finished()
                except Exception:
                    _ignore_closed_loop_callbacks()  # before the output comes back
                    # orbax's failed write tasks are collected later, and asyncio then logs
                    # "Task exception was never retrieved" with a traceback: already said.
                    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
                    raise
        except Exception as e:  # orbax / tensorstore raise many kinds for a failed write
            self._remove_unfinished()
            raise CheckpointWriteError(
                f"could not write checkpoint {step} to {self.directory}: {_write_reason(e)}"
            ) from e
        self._prune(best=meta.get("best_step"))

    def _remove_unfinished(self) -> None:
        """Delete the temporary folders of a failed save (orbax never lists them as steps;
        removing them gives the space back)."""
        for tmp in self.directory.glob("*.orbax-checkpoint-tmp*"):
            shutil.rmtree(tmp, ignore_errors=True)

    def _prune(self, best: int | None) -> None:
        steps = self.steps()
        keep = set(steps[-self.keep :]) if self.keep else set()
        if best is not None:
            keep.add(best)
        for s in steps:
            if s not in keep:
                self._mngr.delete(s)

    def resolve(self, which: str | int) -> int:
        """'latest', 'best' or a generation number -> an existing step."""
        steps = self.steps()
        if not steps:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        if which == "latest":
            return steps[-1]
        if which == "best":
            best = self.load_meta(steps[-1]).get("best_step")
            if best is None or best not in steps:
                raise CheckpointError("no evaluation has run yet, so there is no best checkpoint")
            return best
        try:
            step = int(which)
        except ValueError:
            raise CheckpointError(
                f"checkpoint {which!r} is not 'latest', 'best' or a generation number"
            ) from None
        if step not in steps:
            raise CheckpointError(f"no checkpoint for generation {step}; saved: {steps}")
        return step

    def load_meta(self, step: int) -> dict[str, Any]:
        try:
            out = self._mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
            return dict(out["meta"])
        except Exception as e:  # orbax raises many kinds; all mean "unreadable"
            raise CheckpointError(f"checkpoint {step} is unreadable ({_short(e)})") from e

    def load(self, step: int, template: dict[str, Any]) -> tuple[dict[str, Any], dict]:
        """(state as numpy arrays shaped like ``template``, meta) of ``step``."""
        try:
            out = self._mngr.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(template), meta=ocp.args.JsonRestore()
                ),
            )
        except Exception as e:
            older = [s for s in self.steps() if s < step]
            way = (f": move {self.directory / str(step)} aside to resume from checkpoint "
                   f"{older[-1]}" if older else "")  # fmt: skip
            raise CheckpointError(
                f"checkpoint {step} is unreadable or does not fit this run ({_short(e)}){way}"
            ) from e
        return _to_numpy(out["state"]), dict(out["meta"])

    def close(self) -> None:
        self._mngr.close()


def best_step_after(meta_prev: dict[str, Any] | None, step: int, eval_return: float):
    """(best_step, best_eval) once ``step`` scored ``eval_return`` (NaN: no evaluation)."""
    best_step = meta_prev.get("best_step") if meta_prev else None
    best_eval = meta_prev.get("best_eval", -math.inf) if meta_prev else -math.inf
    if best_eval is None:
        best_eval = -math.inf
    if not math.isnan(eval_return) and eval_return > best_eval:
        return step, eval_return
    return best_step, best_eval


def _ignore_closed_loop_callbacks() -> None:
    """After a failed save, tensorstore's writes still in flight report back to orbax's
    already-closed event loops for a while; each report would print a bare traceback
    ("Event loop is closed") through sys.unraisablehook. Drop exactly those."""
    previous = sys.unraisablehook
    if getattr(previous, "_esjax_filter", False):
        return

    def hook(unraisable):
        exc = unraisable.exc_value
        if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
            return
        previous(unraisable)

    hook._esjax_filter = True
    sys.unraisablehook = hook


def _write_reason(e: Exception) -> str:
    """The OS's reason in a tensorstore/orbax write error ("No space left on device",
    "Permission denied", ...), else the error's first line."""
    m = re.search(r":\s*([A-Z][A-Za-z ]+?)\s*\[os_error_code", str(e))
    return m.group(1) if m else _short(e)


def _short(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]


def _to_numpy(tree):
    if isinstance(tree, dict):
        return {k: _to_numpy(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_to_numpy(v) for v in tree]
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return type(tree)(*(_to_numpy(v) for v in tree))
    if isinstance(tree, tuple):
        return tuple(_to_numpy(v) for v in tree)
    return np.asarray(tree) if tree is not None else None
