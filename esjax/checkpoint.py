"""Snapshots of the training state with orbax (no pickle: arrays and scalars only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orbax.checkpoint as ocp


class Snapshots:
    """``RUN_DIR/checkpoints/<generation>/``: θ, optimizer state, observation statistics
    and counters, written atomically by orbax (a partial write never counts as a step)."""

    def __init__(self, run_dir: Path, max_to_keep: int | None = None):
        self.directory = Path(run_dir).absolute() / "checkpoints"
        self._mngr = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        )

    def save(self, generation: int, state: dict[str, Any]) -> Path:
        """Save ``state`` (a pytree of arrays) as step ``generation``; blocks until written."""
        self._mngr.save(generation, args=ocp.args.StandardSave(state), force=True)
        self._mngr.wait_until_finished()
        return self.directory / str(generation)

    def steps(self) -> list[int]:
        return list(self._mngr.all_steps())

    def restore(self, generation: int | None = None) -> dict[str, Any]:
        """The saved pytree of ``generation`` (default: latest) as numpy arrays."""
        step = self._mngr.latest_step() if generation is None else generation
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        tree = self._mngr.restore(step)
        return _to_numpy(tree)

    def close(self) -> None:
        self._mngr.close()


def _to_numpy(tree):
    if isinstance(tree, dict):
        return {k: _to_numpy(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_to_numpy(v) for v in tree)
    return np.asarray(tree)
