"""``CheckpointStore`` on its own: a round trip of arrays and metadata, the newest
``keep`` plus the best kept, 'latest' / 'best' / a generation resolved, and one-line
errors for what is missing or unreadable."""

import math
import shutil

import numpy as np
import pytest

from esjax.errors import CheckpointError
from esjax.run.checkpoint import CheckpointStore, best_step_after

TREE = {"theta": np.arange(5, dtype=np.float32), "counters": {"generation": np.array(3)}}


def tree(step: int) -> dict:
    return {"theta": np.full(5, step, np.float32), "counters": {"generation": np.array(step)}}


def save_steps(run_dir, evals: dict[int, float], keep: int = 2) -> CheckpointStore:
    """Save each step with its evaluation, the best-so-far bookkeeping as the trainer's."""
    store = CheckpointStore(run_dir, keep=keep)
    meta = None
    for step, ev in evals.items():
        best_step, best_eval = best_step_after(meta, step, ev)
        meta = {"eval_return": ev, "best_step": best_step, "best_eval": best_eval}
        store.save(step, tree(step), meta)
    return store


def test_arrays_and_metadata_round_trip(tmp_path):
    store = save_steps(tmp_path, {1: 5.0})
    state, meta = store.load(1, TREE)
    np.testing.assert_array_equal(state["theta"], tree(1)["theta"])
    assert state["theta"].dtype == np.float32 and int(state["counters"]["generation"]) == 1
    assert meta == {"eval_return": 5.0, "best_step": 1, "best_eval": 5.0}
    store.close()


def test_the_newest_keep_and_the_best_are_kept_and_resolved(tmp_path):
    store = save_steps(tmp_path, {1: 1.0, 2: 9.0, 3: 2.0, 4: math.nan, 5: 3.0}, keep=2)
    assert store.steps() == [2, 4, 5]  # newest two plus the best (9.0 at step 2)
    assert store.resolve("latest") == 5 and store.resolve("best") == 2
    assert store.resolve(4) == 4 and store.resolve("4") == 4
    with pytest.raises(
        CheckpointError, match=r"no checkpoint for generation 3; saved: \[2, 4, 5\]"
    ):
        store.resolve(3)
    with pytest.raises(CheckpointError, match="is not 'latest', 'best' or a generation"):
        store.resolve("newest")
    store.close()


def test_best_needs_an_evaluation_and_a_store_needs_checkpoints(tmp_path):
    store = save_steps(tmp_path, {1: math.nan})
    with pytest.raises(CheckpointError, match="no evaluation has run yet"):
        store.resolve("best")
    store.close()
    with pytest.raises(CheckpointError, match="has no checkpoints folder"):
        CheckpointStore(tmp_path / "elsewhere", read_only=True)


def test_an_unreadable_checkpoint_names_the_previous_one(tmp_path):
    save_steps(tmp_path, {1: 1.0, 2: 2.0}).close()
    for part in (tmp_path / "checkpoints" / "2" / "state").iterdir():
        if part.is_dir():
            shutil.rmtree(part)
        else:
            part.write_bytes(b"garbage")
    store = CheckpointStore(tmp_path, read_only=True)
    with pytest.raises(
        CheckpointError, match=r"checkpoint 2 is unreadable .* resume from checkpoint 1"
    ):
        store.load(2, TREE)
    store.close()


def test_best_step_after_ignores_nan_and_keeps_ties_on_the_older():
    assert best_step_after(None, 3, math.nan) == (None, -math.inf)
    assert best_step_after({"best_step": 2, "best_eval": 5.0}, 3, 5.0) == (2, 5.0)
    assert best_step_after({"best_step": 2, "best_eval": 5.0}, 3, 6.0) == (3, 6.0)
    assert best_step_after({"best_step": None, "best_eval": None}, 1, 0.0) == (1, 0.0)
