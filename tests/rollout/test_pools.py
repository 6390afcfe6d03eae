"""The backends on this machine through the ``WorkerPool`` protocol alone: ``InlinePool``
(episodes in this process) and ``LocalPool`` (spawned processes) return the same results
for the same episodes, a replaced worker's episodes run again, and closing leaves no
process and no shared memory behind. (Ray's backend: tests/rollout/test_ray.py.)"""

import multiprocessing as mp
import os

import numpy as np
import pytest

from esjax.config import Config
from esjax.errors import WorkerDied
from esjax.rollout.inline import InlinePool
from esjax.rollout.local import LocalPool
from esjax.rollout.messages import Episode, Finished
from esjax.rollout.transport import WorkerPool
from esjax.run.resolve import resolve_config, worker_config

CFG, SPEC = resolve_config(Config(env="InvertedPendulumBulletEnv-v0", noise_table_size=200_000,
                                  hidden_dims=(4,), envs_per_worker=2))  # fmt: skip
EPISODES = [Episode(gen=0, unit=u, part=p, offset=17 * u, sign=1 - 2 * p, env_seed=u,
                    noise_seed=u, calc_obstat=False)
            for u in range(3) for p in (0, 1)]  # fmt: skip


def params(pool: WorkerPool) -> None:
    theta = np.linspace(-0.3, 0.3, SPEC.num_params).astype(np.float32)
    ob = np.zeros(SPEC.ob_dim, np.float32)
    pool.broadcast_params(0, theta, ob, ob + 1, 0.02)


def results(pool: WorkerPool, episodes, slots) -> dict:
    """(unit, part) -> (return, length) of ``episodes`` sent round-robin to ``slots``."""
    for i, ep in enumerate(episodes):
        pool.send(slots[i % len(slots)], ep)
    out = {}
    while len(out) < len(episodes):
        got = pool.recv(timeout=60)
        assert got is not None, "no result within 60 s"
        if isinstance(got.message, Finished):
            r = got.message.result
            out[(r.episode.unit, r.episode.part)] = (r.ret, r.length)
    return out


def test_inline_pool_runs_episodes_by_their_seeds_whatever_slot():
    pool = InlinePool(worker_config(CFG, SPEC), num_workers=2, seed=0, log=lambda s: None)
    pool.start()
    try:
        params(pool)
        first = results(pool, EPISODES, [0, 1])
        params(pool)
        again = results(pool, EPISODES[::-1], [1])
    finally:
        pool.close()
    assert first == again
    assert len(set(first.values())) > 1  # the episodes differ (so the match means something)


@pytest.mark.integration
def test_local_pool_matches_inline_survives_a_kill_and_leaves_nothing_behind():
    inline = InlinePool(worker_config(CFG, SPEC), num_workers=1, seed=0, log=lambda s: None)
    inline.start()
    try:
        params(inline)
        want = results(inline, EPISODES, [0])
    finally:
        inline.close()

    pool = LocalPool(worker_config(CFG, SPEC), num_workers=2, seed=0, log=lambda s: None)
    pool.start()
    try:
        params(pool)
        assert results(pool, EPISODES, pool.workers()) == want
        pid = pool.procs[1].pid
        os.kill(pid, 9)
        with pytest.raises(WorkerDied, match="worker 1 died"):
            while True:
                pool.recv(timeout=10)
        assert pool.restart(1) and pool.procs[1].pid != pid
        params(pool)
        assert results(pool, EPISODES[:2], [1]) == {k: want[k] for k in [(0, 0), (0, 1)]}
        shm = pool.noise.name
    finally:
        pool.close()
    assert not [p for p in mp.active_children() if p.name.startswith("esjax-worker")]
    assert not os.path.exists(f"/dev/shm/{shm}")
