"""Which episodes go to which worker, and which results a generation uses.

No processes here: ``Dispatcher`` drives any ``WorkerPool`` (the local process pool, the
Ray actors of a cluster, or a fake one in the tests) through one generation at a time.

A generation is a fixed sequence of units (``esjax.core.schedule``): a noiseless
evaluation, or one noise vector (θ ± σε: two episodes with mirrored sampling). Units go
out in sequence order, and only while the episodes finished or in flight are projected
to fall short of the minimums (in-flight episodes counted at the last generation's mean
length), so little work is thrown away at the generation's end. A worker with nothing
left to do waits rather than start work past what is projected to be needed: that work
was thrown away whenever the projection held (8 % of the steps simulated on
HalfCheetah-v5, benchmarks/replay.py); when it falls short, the next units go out as the
last episodes finish. The generation uses the shortest prefix of
complete units that meets both minimums, in sequence order, not arrival order: the
results do not depend on how many workers ran them or when they finished. A worker that
dies, or stalls (busy but silent for ``stall_timeout_s``: busy workers send a heartbeat
every few seconds), is replaced and its unfinished episodes are handed out again, first;
results are keyed by (unit, part), so none is lost or counted twice. A worker whose
machine is gone cannot be replaced: its work goes to the others, and the generation
completes on them; workers that join are used from the next generation.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

from esjax.core.schedule import UNIT_BLOCK, eval_env_seeds, sample_units
from esjax.errors import NonFiniteError, StopRequested, WorkerDied, WorkerError
from esjax.rollout.messages import Aborted, Episode, EpisodeResult, Finished, NonFinite, Received
from esjax.rollout.transport import START_TIMEOUT_S, EpisodeQueues, WorkerPool

__all__ = ["Dispatcher", "Generation", "UnitSequence", "WorkerPool"]


# Every argument traced: one compilation per process (a static generation number
# recompiled it every generation, for ~0.3 s while the workers waited).
_sample_units = jax.jit(sample_units)


class UnitSequence:
    """The episodes of unit u of generation g (``esjax.core.schedule``), block-cached.

    An evaluation unit is one noiseless episode that gathers no statistics; a training
    unit is θ + σε and, with ``mirrored``, θ - σε, both reset with the same seed, each
    deciding on its own whether it adds to the observation statistics (as the starter).
    """

    def __init__(self, key: jax.Array, table_size: int, num_params: int, eval_prob: float,
                 calc_obstat_prob: float, mirrored: bool):  # fmt: skip
        self._args = (table_size, num_params, eval_prob, calc_obstat_prob)
        self.key, self.signs = key, (1, -1) if mirrored else (1,)
        self._sample = _sample_units
        self._cached: tuple[tuple[int, int], dict[str, np.ndarray]] | None = None

    def episodes(self, gen: int, unit: int) -> list[Episode]:
        block, i = divmod(unit, UNIT_BLOCK)
        if self._cached is None or self._cached[0] != (gen, block):
            units = self._sample(self.key, gen, block, *self._args)
            self._cached = (gen, block), {k: np.asarray(v) for k, v in units._asdict().items()}
        u = {k: v[i] for k, v in self._cached[1].items()}
        common: dict[str, Any] = dict(gen=gen, unit=unit, offset=int(u["offset"]),
                                      env_seed=int(u["env_seed"]),
                                      noise_seed=int(u["noise_seed"]))  # fmt: skip
        if u["is_eval"]:
            return [Episode(part=0, sign=0, calc_obstat=False, **common)]
        return [
            Episode(part=p, sign=s, calc_obstat=bool(u["calc_obstat"][p]), **common)
            for p, s in enumerate(self.signs)
        ]

    def with_evals(self, gen: int, n: int,
                   end_on_fall: bool = False) -> Callable[[int], list[Episode]]:  # fmt: skip
        """Generation ``gen``'s units with ``n`` periodic evaluations first: units
        0..n-1 are noiseless episodes of θ (seeds of their own stream), unit n + u is
        training unit u. The training units are the same whatever ``n``; with
        ``end_on_fall``, their episodes end at a fall (``Episode.end_on_fall``)."""
        seeds = np.asarray(eval_env_seeds(self.key, gen, n)) if n else ()

        def episodes_of(unit: int) -> list[Episode]:
            if unit < n:
                seed = int(seeds[unit])
                return [Episode(gen, unit, 0, offset=0, sign=0, env_seed=seed, noise_seed=0,
                                calc_obstat=False)]  # fmt: skip
            return [e._replace(unit=unit, end_on_fall=end_on_fall and e.sign != 0)
                    for e in self.episodes(gen, unit - n)]  # fmt: skip

        return episodes_of


@dataclass
class Generation:
    """What one generation collected: the prefix it uses and what it cost."""

    train: list[list[EpisodeResult]] = field(default_factory=list)  # per unit: 1 or 2 parts
    evals: list[EpisodeResult] = field(default_factory=list)  # --eval-prob units
    periodic: list[EpisodeResult] = field(default_factory=list)  # --eval-every episodes
    workers: set[int] = field(default_factory=set)  # workers behind the used results
    skipped: int = 0  # episodes run or started but not used (older θ or past the prefix)
    env_steps: int = 0  # every env step simulated for it: used, evaluated, thrown away
    restarts: int = 0  # worker processes replaced during the generation
    retired: int = 0  # workers lost for good during the generation (their machine left)

    @property
    def used(self) -> list[EpisodeResult]:
        return [r for unit in self.train for r in unit] + self.evals + self.periodic


class Dispatcher:
    """Runs generations on ``pool``. Lives as long as the pool: it counts each worker's
    restarts since its last result and gives up on a worker that keeps dying."""

    MAX_CONSECUTIVE_RESTARTS = 3
    QUEUE_AHEAD = 2  # episodes queued per worker beyond its env slots: no slot waits on IPC
    STALL_TIMEOUT_S = 120.0
    START_TIMEOUT_S = START_TIMEOUT_S  # a replacement is silent while it starts (imports, envs)

    def __init__(self, pool: EpisodeQueues, stall_timeout_s: float = STALL_TIMEOUT_S,
                 clock: Callable[[], float] = time.monotonic):  # fmt: skip
        self.pool, self.clock = pool, clock
        self.stall_timeout_s = stall_timeout_s
        # A pool may hold no episode beyond its slots (JaxPool: a lane holds one chunk).
        self.capacity = pool.envs_per_worker + getattr(pool, "queue_ahead", self.QUEUE_AHEAD)
        self.consecutive_restarts: dict[int, int] = {}  # slot -> deaths since its last result
        self.started: dict[int, bool] = {}  # heard from since its last (re)start

    def collect(
        self,
        gen: int,
        episodes_of: Callable[[int], list[Episode]],
        min_episodes: int,
        min_timesteps: int,
        expected_length: float,
        should_stop: Callable[[], bool] = lambda: False,
        eval_units: int = 0,
        while_running: Callable[[], None] | None = None,
    ) -> Generation:
        """Hand out units 0, 1, ... of generation ``gen`` (``episodes_of(unit)``; the
        caller has broadcast its θ) until a prefix of complete units has at least
        ``min_episodes`` training episodes and ``min_timesteps`` training steps. The
        first ``eval_units`` units are periodic evaluations (``Generation.periodic``):
        the prefix includes them all, and they count toward neither minimum.
        ``while_running()`` is called once the first work is out (the caller's own work
        then overlaps the workers')."""
        c = _Collection(self, gen, episodes_of, min_episodes, min_timesteps, expected_length,
                        eval_units)  # fmt: skip
        c.top_up()
        if while_running is not None:
            while_running()
        while not c.complete():
            if should_stop():
                raise StopRequested
            try:
                msg = self.pool.recv(timeout=0.5)
            except WorkerDied as dead:
                self._replace(c, dead.slot, dead.why)
                continue
            if msg is not None:
                c.receive(msg)
                if not c.complete():  # work sent now would only be thrown away
                    c.top_up()
            for w in c.stalled():
                self._replace(c, w, f"stalled: silent for {self.stall_timeout_s:.0f} s")
        return c.finish()

    def _replace(self, c: _Collection, w: int, why: str) -> None:
        """Restart worker ``w`` and hand its unfinished episodes out again."""
        if w not in c.assigned:
            return  # already retired (a late notice)
        self.consecutive_restarts[w] = self.consecutive_restarts.get(w, 0) + 1
        if self.consecutive_restarts[w] > self.MAX_CONSECUTIVE_RESTARTS:
            raise WorkerError(
                f"worker {w} keeps dying ({why}; "
                f"{self.MAX_CONSECUTIVE_RESTARTS} restarts in a row without a result)"
            )
        replaced = self.pool.restart(w)
        self.started[w] = False
        c.reassign(w, replaced)
        if not c.assigned:
            raise WorkerError(f"no workers left: the last one was lost ({why})")
        c.top_up()


class _Collection:
    """Bookkeeping of one generation's collection (see ``Dispatcher.collect``)."""

    def __init__(self, dispatcher: Dispatcher, gen, episodes_of, min_episodes, min_timesteps,
                 expected_length, eval_units=0):  # fmt: skip
        self.d, self.pool = dispatcher, dispatcher.pool
        self.gen, self.episodes_of = gen, episodes_of
        self.min_episodes, self.min_timesteps = min_episodes, min_timesteps
        self.expected_length, self.eval_units = expected_length, eval_units
        workers = self.pool.workers()
        if not workers:
            raise WorkerError(f"no workers left to run generation {gen}")
        # slot -> its episodes not yet finished; a retired slot leaves the dict
        self.assigned: dict[int, dict[tuple[int, int], Episode]] = {w: {} for w in workers}
        self.to_send: deque[Episode] = deque()  # handed out before any new unit
        self.parts: dict[int, int] = {}  # unit -> number of episodes
        self.done: dict[tuple[int, int], tuple[int, EpisodeResult]] = {}
        self.next_unit = 0
        self.in_flight = 0  # training episodes sent, not yet finished
        self.done_eps = self.done_steps = 0  # training episodes finished (any unit)
        self.prefix = self.n_eps = self.n_steps = 0  # complete units used so far
        self.out = Generation()
        now = dispatcher.clock()
        self.heard = {w: now for w in workers}  # last message, or start of the busy spell

    def complete(self) -> bool:
        return (
            self.n_eps >= self.min_episodes
            and self.n_steps >= self.min_timesteps
            and self.prefix >= self.eval_units
        )

    def needed(self) -> bool:
        """Whether more work must go out for the minimums to be met, as projected."""
        projected_steps = self.done_steps + self.in_flight * self.expected_length
        return (
            self.next_unit < self.eval_units
            or self.done_eps + self.in_flight < self.min_episodes
            or projected_steps < self.min_timesteps
        )

    def top_up(self) -> None:
        """Hand out work while it is needed (or waiting to be resent), one episode at a
        time to the least loaded worker, up to capacity. Even loads matter: episodes
        queued behind a full set of env slots start only when a slot frees, and a long
        episode that starts last sets the generation's end."""
        while True:
            w = min(self.assigned, key=lambda w: len(self.assigned[w]))
            assigned = self.assigned[w]
            if len(assigned) >= self.d.capacity or not (self.to_send or self.needed()):
                return
            if not self.to_send:
                eps = self.episodes_of(self.next_unit)
                self.parts[self.next_unit] = len(eps)
                self.to_send.extend(eps)
                self.next_unit += 1
            ep = self.to_send.popleft()
            if not assigned:
                self.heard[w] = self.d.clock()  # silence counts from here
            self.pool.send(w, ep)
            assigned[(ep.unit, ep.part)] = ep
            self.in_flight += ep.sign != 0

    def reassign(self, w: int, replaced: bool = True) -> None:
        """Worker ``w`` was replaced (or, if not ``replaced``, retired): its unfinished
        episodes go out again, first, in sequence order."""
        lost = sorted(self.assigned[w].values(), key=lambda e: (e.unit, e.part))
        self.to_send.extendleft(reversed(lost))
        self.in_flight -= sum(e.sign != 0 for e in lost)
        self.assigned[w].clear()
        if replaced:
            self.out.restarts += 1
        else:
            del self.assigned[w]
            self.out.retired += 1

    def stalled(self) -> list[int]:
        """Workers with episodes outstanding that have been silent too long (a worker
        still starting after a restart gets START_TIMEOUT_S)."""
        d, now = self.d, self.d.clock()
        return [
            w for w, a in self.assigned.items() if a and now - self.heard[w] > (
                d.stall_timeout_s if d.started.get(w, True)
                else max(d.stall_timeout_s, d.START_TIMEOUT_S)
            )
        ]  # fmt: skip

    def receive(self, got: Received) -> None:
        w, msg = got
        if w not in self.assigned:  # a slot retired or not yet in use: nothing of it counts
            if isinstance(msg, Finished):
                self.out.skipped += 1
                self.out.env_steps += msg.result.length
            return
        self.heard[w] = self.d.clock()
        self.d.started[w] = True
        if isinstance(msg, Aborted):
            self.out.skipped += msg.episodes
            self.out.env_steps += msg.steps
        elif isinstance(msg, NonFinite):
            raise NonFiniteError(
                f"the policy produced a non-finite action in generation {self.gen}: lower "
                "--learning-rate or --noise-stdev, or check the environment's observations"
            )
        elif isinstance(msg, Finished):
            self._result(w, msg.result)

    def _result(self, w: int, res: EpisodeResult) -> None:
        self.d.consecutive_restarts[w] = 0
        self.out.env_steps += res.length
        key = (res.episode.unit, res.episode.part)
        if res.episode.gen != self.gen or key not in self.assigned[w] or key in self.done:
            self.out.skipped += 1
            return
        del self.assigned[w][key]
        if res.episode.sign != 0:
            self.in_flight -= 1
            self.done_eps += 1
            self.done_steps += res.length
        self.done[key] = (w, res)
        self._extend_prefix()

    def _extend_prefix(self) -> None:
        """Take complete units in sequence order until the minimums are met."""
        while not self.complete() and self.prefix < self.next_unit:
            keys = [(self.prefix, p) for p in range(self.parts[self.prefix])]
            if not all(k in self.done for k in keys):
                return
            unit = [self.done[k] for k in keys]
            self.out.workers.update(w for w, _ in unit)
            results = [r for _, r in unit]
            if self.prefix < self.eval_units:
                self.out.periodic.append(results[0])
            elif results[0].episode.sign == 0:
                self.out.evals.append(results[0])
            else:
                self.out.train.append(results)
                self.n_eps += len(results)
                self.n_steps += sum(r.length for r in results)
            self.prefix += 1

    def finish(self) -> Generation:
        """The generation's results; episodes finished past the prefix count as skipped."""
        self.out.skipped += len(self.done) - len(self.out.used)
        return self.out
