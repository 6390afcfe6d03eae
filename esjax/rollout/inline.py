"""``--backend inline``: the workers' episodes run in the trainer's own process.

``InlinePool`` implements ``esjax.rollout.transport.WorkerPool`` with one ``EpisodeRunner`` per
slot, stepped in turn whenever the trainer waits for a message: no processes, no pipes,
no shared memory. Results are the other backends' bit for bit (they do not depend on the
worker layout). It is for debugging and profiling (a breakpoint or a profiler sees the
rollouts), for environments that cannot live in another process, and for fast tests; it
runs on one core.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from esjax.core.noise import fill_noise_table
from esjax.rollout.messages import Episode, Params, Ready
from esjax.rollout.transport import Transport
from esjax.rollout.worker import EpisodeRunner, WorkerConfig, make_runner


class InlinePool(Transport):
    """``num_workers`` slots of ``cfg.envs_per_worker`` envs each, in this process."""

    nodes_lost = nodes_joined = 0

    def __init__(self, cfg: WorkerConfig, num_workers: int, seed: int,
                 log: Callable[[str], None] = print):  # fmt: skip
        super().__init__()
        self.cfg, self.seed, self.log = cfg, seed, log
        self.num_workers, self.envs_per_worker = num_workers, cfg.envs_per_worker
        self.table: np.ndarray | None = None
        self.runners: list[EpisodeRunner] = []
        self._params: Params | None = None
        self.restarts = 0

    def start(self) -> None:
        t0 = time.perf_counter()
        self.table = fill_noise_table(np.empty(self.cfg.noise_size, np.float32), self.seed)
        self.runners = [self._new_runner(slot) for slot in range(self.num_workers)]
        self.log(f"noise table: {self.cfg.noise_size:,} floats in "
                 f"{time.perf_counter() - t0:.1f} s; episodes run in this process")  # fmt: skip
        self.await_ready(set(range(self.num_workers)))

    def _new_runner(self, slot: int) -> EpisodeRunner:
        assert self.table is not None  # started
        runner = make_runner(self.cfg, self.table)
        self._buffer.append((slot, Ready()))
        if self._params is not None:
            runner.set_params(self._params)
        return runner

    def workers(self) -> list[int]:
        return list(range(self.num_workers))

    def broadcast_params(self, gen: int, theta, ob_mean, ob_std, sigma=None) -> None:
        self._params = Params(gen, np.asarray(theta, np.float32), ob_mean, ob_std, sigma)
        for slot, runner in enumerate(self.runners):
            self._buffer.extend((slot, m) for m in runner.set_params(self._params))

    def send(self, slot: int, ep: Episode) -> None:
        self.runners[slot].add(ep)

    def _poll(self, wait: float) -> None:
        """Step every busy runner until one of them has something to say (or none is busy:
        then wait, as an idle worker would)."""
        busy = [s for s, r in enumerate(self.runners) if r.busy]
        if not busy:
            time.sleep(wait)
        while busy and not self._buffer:
            for slot in busy:
                self._buffer.extend((slot, m) for m in self.runners[slot].advance())
            busy = [s for s in busy if self.runners[s].busy]

    def restart(self, slot: int) -> bool:
        """A fresh runner (new envs) for ``slot``; the old one's messages are dropped."""
        self._purge(slot)
        self.restarts += 1
        self.runners[slot] = self._new_runner(slot)
        return True

    def kill_now(self) -> None:
        """Nothing runs outside this process."""

    def close(self) -> None:
        for runner in self.runners:
            for env in runner.envs:
                env.close()
        self.runners = []
        self.table = None
