"""What every worker pool shares: the ``WorkerPool`` protocol the trainer drives and
``Transport``, the receive side written once (its errors are in ``esjax.errors``).

A backend (``local.LocalPool``: processes on this machine; ``inline.InlinePool``: episodes
in this process; ``ray_pool.RayPool``: actors on a Ray cluster) supplies how to start
a worker and how to poll its workers for messages (``_poll``); ``Transport`` owns the
buffer of messages read but not yet returned, dead-worker reporting, the receive loop
with its timeout, and the purge of a restarted worker's messages.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Protocol

import numpy as np

from esjax.errors import WorkerDied, WorkerError
from esjax.rollout.messages import Episode, Failed, FromWorker, Received

START_TIMEOUT_S = 300.0  # a worker (process or actor) or a node's noise table, starting


class EpisodeQueues(Protocol):
    """What the dispatcher needs of a set of workers (a ``WorkerPool`` is one).

    Workers are numbered by slot; each runs up to ``envs_per_worker`` episodes at once
    and queues the rest in the order sent. ``workers()`` may lose slots (a machine gone)
    and gain new ones (a machine joined), the latter only in ``broadcast_params``.
    """

    envs_per_worker: int

    def workers(self) -> list[int]:
        """The slots that take work now."""

    def send(self, worker: int, ep: Episode) -> None:
        """Queue ``ep`` on ``worker``."""

    def recv(self, timeout: float) -> Received | None:
        """The next message, None after ``timeout`` seconds. Raises WorkerDied once a
        worker's process is gone, after every message it sent before dying; WorkerError
        for a worker's exception."""

    def restart(self, worker: int) -> bool:
        """Replace ``worker``'s process; messages of the old one are never returned.
        False if it cannot be replaced (its machine is gone): the slot is retired."""


class WorkerPool(EpisodeQueues, Protocol):
    """What the trainer needs of a set of workers: the dispatcher's ``EpisodeQueues``,
    their start and stop, and the generation's parameters."""

    table: np.ndarray | None  # the trainer's view of the noise table (after ``start``)
    restarts: int  # workers replaced over the pool's life
    nodes_lost: int  # machines lost / joined over the pool's life (0 on one machine)
    nodes_joined: int

    def start(self) -> None:
        """Start the workers and wait until every one is ready."""

    def broadcast_params(self, gen: int, theta, ob_mean, ob_std, sigma=None) -> None:
        """Every worker (and every later replacement) runs generation ``gen`` with these
        (``sigma``: the perturbation scale, a float or (P,); None: the one the workers
        started with); workers drop the episodes of older generations they still hold."""

    def kill_now(self) -> None:
        """Stop every process the pool started, at once, with no clean-up (a second
        Ctrl-C)."""

    def close(self) -> None:
        """Stop the workers and free what ``start`` made (safe to call twice)."""


class Transport:
    """The receive side of a pool: subclasses implement ``_poll``, which moves the
    messages that arrive within ``wait`` seconds into ``self._buffer`` as (slot, message)
    and notes dead workers in ``self._dead`` (slot -> why)."""

    def __init__(self) -> None:
        self._buffer: deque[tuple[int, FromWorker]] = deque()
        self._dead: dict[int, str] = {}

    def _poll(self, wait: float) -> None:
        raise NotImplementedError

    def _flush(self) -> None:
        """Hand over the work ``send`` queued (for backends that batch it)."""

    def recv(self, timeout: float = 1.0) -> Received | None:
        """See ``WorkerPool.recv``. A worker's messages are returned before its death."""
        self._flush()
        deadline = time.monotonic() + timeout
        while True:
            if self._buffer:
                slot, msg = self._buffer.popleft()
                if isinstance(msg, Failed):
                    self._dead.pop(slot, None)  # reported once, with its traceback
                    raise WorkerError(f"worker {slot} failed:\n{msg.traceback.rstrip()}")
                return Received(slot, msg)
            if self._dead:
                slot = next(iter(self._dead))
                raise WorkerDied(slot, self._dead.pop(slot))
            left = deadline - time.monotonic()
            self._poll(max(0.0, min(0.5, left)))
            if not self._buffer and not self._dead and left <= 0:
                return None

    def _purge(self, slot: int) -> None:
        """Forget what ``slot``'s worker sent and did not get returned (it is replaced)."""
        self._buffer = deque(m for m in self._buffer if m[0] != slot)
        self._dead.pop(slot, None)

    def await_ready(self, slots: set[int], what: str = "workers") -> None:
        """Receive until every worker in ``slots`` said Ready (start-up); WorkerError if
        one fails or START_TIMEOUT_S passes."""
        from esjax.rollout.messages import Ready

        ready: set[int] = set()
        deadline = time.monotonic() + START_TIMEOUT_S
        while ready < slots:
            got = self.recv(timeout=max(1.0, deadline - time.monotonic()))
            if got is None:
                raise WorkerError(f"{what} did not start within {START_TIMEOUT_S:.0f} s")
            if isinstance(got.message, Ready):
                ready.add(got.worker)
