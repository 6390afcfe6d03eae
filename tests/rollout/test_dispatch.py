"""Dispatch against a fake pool: no processes, no simulator.

The fake finishes episodes in a random order (any of the episodes in a worker's env
slots), so these tests cover arrival orders, worker counts and failures that a real pool
only shows by chance.
"""

import functools
import random
import sys
from collections import deque
from typing import Any

import jax
import numpy as np
import pytest

from esjax.errors import NonFiniteError, StopRequested, WorkerDied, WorkerError
from esjax.rollout.dispatch import Dispatcher, UnitSequence
from esjax.rollout.messages import (
    Aborted,
    Alive,
    Episode,
    EpisodeResult,
    Finished,
    NonFinite,
    Received,
)

GEN = 4


def episodes_of(unit: int, gen: int = GEN) -> list[Episode]:
    """Unit u: an evaluation when u % 5 == 3, else a mirrored pair."""
    common: dict[str, Any] = dict(gen=gen, unit=unit, offset=unit * 10, env_seed=unit,
                                  noise_seed=unit, calc_obstat=False)  # fmt: skip
    if unit % 5 == 3:
        return [Episode(part=0, sign=0, **common)]
    return [Episode(part=0, sign=1, **common), Episode(part=1, sign=-1, **common)]


def length(ep: Episode) -> int:
    return 5 + (7 * ep.unit + 3 * ep.part) % 11


def result(ep: Episode) -> EpisodeResult:
    ret = float(np.sin(ep.unit + 0.5 * ep.part))
    return EpisodeResult(ep, ret, np.sign(ret), length(ep), None, None, 0, (0.0, 0.0, 0.0, 0), 0.0)


def expected_prefix(min_episodes: int, min_timesteps: int):
    """The shortest prefix meeting both minimums, by a plain loop over the sequence."""
    train, evals, n_eps, n_steps, unit = [], [], 0, 0, 0
    while n_eps < min_episodes or n_steps < min_timesteps:
        eps = episodes_of(unit)
        if eps[0].sign == 0:
            evals.append(eps[0])
        else:
            train.append(eps)
            n_eps += len(eps)
            n_steps += sum(length(e) for e in eps)
        unit += 1
    return train, evals


class FakePool:
    """Finishes a random one of the episodes in a random worker's env slots per recv."""

    def __init__(self, num_workers: int, envs_per_worker: int = 2, seed: int = 0):
        self.num_workers, self.envs_per_worker = num_workers, envs_per_worker
        self.queues: list[list[Episode]] = [[] for _ in range(num_workers)]
        self.rng = random.Random(seed)
        self.inbox: deque = deque()  # messages delivered before any simulated result
        self.die_after: dict[int, int] = {}  # worker -> results it delivers, then dies
        self.always_dead: set[int] = set()
        self.hung: set[int] = set()  # alive but silent: their episodes never finish
        self.hang_again = False  # a replacement hangs too
        self.heartbeats: set[int] = set()  # silent workers that still send Alive
        self.delivered = [0] * num_workers
        self.sent: list[tuple[int, Episode]] = []
        self.restarts: list[int] = []
        self.gone: set[int] = set()  # machine lost: no replacement, the slot is retired
        self.retired: set[int] = set()

    def workers(self):
        return [w for w in range(len(self.queues)) if w not in self.retired]

    def add_worker(self) -> int:
        """A worker on a machine that joined (used by the next collect)."""
        self.queues.append([])
        self.delivered.append(0)
        return len(self.queues) - 1

    def broadcast_params(self, gen, theta, ob_mean, ob_std, sigma=None):
        pass

    def send(self, worker, ep):
        self.queues[worker].append(ep)
        self.sent.append((worker, ep))

    def recv(self, timeout):
        if self.inbox:
            return self.inbox.popleft()
        for w in self.always_dead:
            raise WorkerDied(w, "exit code -9")
        beating = [w for w in self.heartbeats if self.queues[w]]
        if beating and self.rng.random() < 0.5:
            return Received(self.rng.choice(beating), Alive())
        busy = [w for w, q in enumerate(self.queues)
                if q and w not in self.hung | self.heartbeats | self.retired]  # fmt: skip
        if not busy:
            return None
        w = self.rng.choice(busy)
        if w in self.die_after and self.delivered[w] >= self.die_after[w]:
            del self.die_after[w]
            raise WorkerDied(w, "exit code -9")
        q = self.queues[w]
        ep = q.pop(self.rng.randrange(min(len(q), self.envs_per_worker)))
        self.delivered[w] += 1
        return Received(w, Finished(result(ep)))

    def restart(self, worker):
        self.queues[worker].clear()
        self.restarts.append(worker)
        if worker in self.gone:
            self.retired.add(worker)
            self.always_dead.discard(worker)
            return False
        if not self.hang_again:
            self.hung.discard(worker)
        return True


class FakeClock:
    """Time that advances one second per ``recv``."""

    def __init__(self, pool):
        self.t = 0.0
        recv = pool.recv

        def recv_and_tick(timeout):
            self.t += 1.0
            return recv(timeout)

        pool.recv = recv_and_tick

    def __call__(self):
        return self.t


def collect(pool, min_episodes=30, min_timesteps=200, **kw):
    return Dispatcher(pool).collect(GEN, episodes_of, min_episodes, min_timesteps, 12.0, **kw)


def used_keys(gen):
    train = [[(r.episode.unit, r.episode.part, r.ret, r.length) for r in u] for u in gen.train]
    return train, [(r.episode.unit, r.ret) for r in gen.evals]


def reference_keys(min_episodes=30, min_timesteps=200):
    train, evals = expected_prefix(min_episodes, min_timesteps)
    want_train = [[(e.unit, e.part, result(e).ret, length(e)) for e in u] for u in train]
    return want_train, [(e.unit, result(e).ret) for e in evals]


@pytest.mark.parametrize("workers", [1, 2, 3, 5])
@pytest.mark.parametrize("envs", [1, 2, 8])
@pytest.mark.parametrize("seed", range(3))
def test_the_used_prefix_is_the_same_whatever_the_layout_and_arrival_order(workers, envs, seed):
    pool = FakePool(workers, envs, seed)
    gen = collect(pool)
    assert used_keys(gen) == reference_keys()
    assert gen.workers <= set(range(workers)) and gen.restarts == 0


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_work_goes_out_only_while_the_minimums_are_projected_short(workers):
    """Episodes finishing in the order sent, round robin: beyond the used prefix, at most
    one worker's load is handed out (the work in flight when the minimums are met)."""
    pool = FakePool(workers, 2)
    turn = iter(range(10**6))

    def recv_in_order(timeout):
        busy = [w for w, q in enumerate(pool.queues) if q]
        w = busy[next(turn) % len(busy)]
        return Received(w, Finished(result(pool.queues[w].pop(0))))

    pool.recv = recv_in_order  # type: ignore[method-assign]  # this test\'s fake
    gen = collect(pool, min_episodes=40, min_timesteps=100)
    assert used_keys(gen) == reference_keys(40, 100)
    cap = pool.envs_per_worker + Dispatcher.QUEUE_AHEAD
    assert len(pool.sent) <= len(gen.used) + workers * cap


@pytest.mark.parametrize("workers, envs, seed", [(1, 2, 0), (2, 3, 1), (3, 8, 2), (2, 16, 3)])
def test_nothing_is_sent_past_the_projection_when_it_holds(workers, envs, seed, monkeypatch):
    """Episodes as long as projected: every episode sent is used, whatever order they
    finish in. A worker that runs out waits; it does not start work to throw away."""
    monkeypatch.setattr(sys.modules[__name__], "length", lambda ep: 12)
    pool = FakePool(workers, envs, seed)
    gen = collect(pool, min_episodes=30, min_timesteps=200)
    assert (
        len(pool.sent) == len(gen.used) and gen.skipped == 0 and gen.env_steps == 12 * len(gen.used)
    )


@pytest.mark.parametrize("workers, envs, seed", [(1, 1, 0), (2, 2, 1), (3, 8, 2)])
def test_periodic_evaluations_are_all_used_apart_and_count_toward_no_minimum(
    workers, envs, seed, monkeypatch
):
    """Units 0..3 are evaluations reported apart; the training prefix after them is the
    one a generation without them uses (units renumbered), whatever the arrival order."""
    n = 4
    seq = UnitSequence(jax.random.PRNGKey(1), 10_000, 100, 0.0, 0.0, mirrored=True)
    want_train, want_evals = reference_keys()
    plain = result

    def shifted_result(ep):  # a training episode's result is that of its unbumped unit
        if ep.unit < n:
            return plain(ep)
        return plain(ep._replace(unit=ep.unit - n))._replace(episode=ep)

    monkeypatch.setattr(sys.modules[__name__], "result", shifted_result)

    def shifted(unit):  # the fake's sequence after n evaluation units
        if unit < n:
            return seq.with_evals(GEN, n)(unit)
        return [e._replace(unit=unit) for e in episodes_of(unit - n)]

    pool = FakePool(workers, envs, seed)
    gen = Dispatcher(pool).collect(GEN, shifted, 30, 200, 12.0, eval_units=n)
    assert [r.episode.unit for r in gen.periodic] == list(range(n))
    assert all(r.episode.sign == 0 and not r.episode.calc_obstat for r in gen.periodic)
    train, evals = used_keys(gen)
    assert [[(u - n, *rest) for u, *rest in unit] for unit in train] == want_train
    assert [(u - n, ret) for u, ret in evals] == want_evals
    assert seq.with_evals(GEN, n)(n) == [e._replace(unit=n) for e in seq.episodes(GEN, 0)]


def test_env_steps_count_every_finished_episode_used_or_not():
    pool = FakePool(2, 2, seed=1)
    gen = collect(pool)
    finished = [ep for _, ep in pool.sent if ep not in {e for q in pool.queues for e in q}]
    assert gen.env_steps == sum(length(ep) for ep in finished)
    assert gen.skipped == len(finished) - len(gen.used)


def test_duplicate_stale_and_unassigned_results_are_skipped_never_used():
    pool = FakePool(2, 2, seed=2)
    ep0 = episodes_of(0)[0]
    pool.inbox.extend([
        Received(0, Finished(result(episodes_of(0, gen=GEN - 1)[0]))),  # an older generation's
        Received(1, Finished(result(episodes_of(1)[0]))),  # a result worker 1 was never given
    ])  # fmt: skip
    real_send = pool.send

    def send_and_duplicate(worker, ep):
        real_send(worker, ep)
        if ep == ep0:  # the same result delivered twice
            pool.inbox.extend([Received(worker, Finished(result(ep)))] * 2)

    pool.send = send_and_duplicate  # type: ignore[method-assign]  # this test\'s fake
    gen = collect(pool)
    assert used_keys(gen) == reference_keys()
    assert gen.skipped >= 3


def test_aborted_episodes_count_as_skipped_with_their_steps():
    pool = FakePool(2, 2)
    pool.inbox.append(Received(1, Aborted(3, 120)))  # a worker dropped 3 stale episodes
    gen = collect(pool)
    assert used_keys(gen) == reference_keys()
    assert gen.skipped >= 3 and gen.env_steps >= 120 + sum(r.length for r in gen.used)


@pytest.mark.parametrize("deaths", [{1: 0}, {1: 3}, {0: 5, 2: 1}])
def test_a_dead_worker_is_replaced_and_its_unfinished_episodes_rerun(deaths):
    pool = FakePool(3, 2, seed=5)
    pool.die_after = dict(deaths)
    gen = collect(pool)
    assert used_keys(gen) == reference_keys()  # nothing lost, nothing twice
    assert sorted(pool.restarts) == sorted(deaths) and gen.restarts == len(deaths)


@pytest.mark.parametrize("seed", range(4))
def test_workers_whose_machine_is_gone_are_retired_and_the_rest_finish_the_generation(seed):
    """A lost node: its workers die, cannot be replaced, and their episodes go to the
    workers left; the prefix is the same, nothing lost or counted twice."""
    pool = FakePool(4, 2, seed=seed)
    pool.gone = {2, 3}
    pool.die_after = {2: 1, 3: 0}
    dispatcher = Dispatcher(pool)
    gen = dispatcher.collect(GEN, episodes_of, 30, 200, 12.0)
    assert used_keys(gen) == reference_keys()
    assert gen.retired == 2 and gen.restarts == 0
    assert pool.workers() == [0, 1] and gen.workers <= {0, 1, 2}
    # Later generations use the workers left, and never send to a retired one.
    pool.sent.clear()
    again = dispatcher.collect(GEN, episodes_of, 30, 200, 12.0)
    assert used_keys(again) == reference_keys()
    assert {w for w, _ in pool.sent} <= {0, 1}


def test_losing_every_worker_ends_in_an_error_not_a_hang():
    pool = FakePool(2, 2)
    pool.gone = pool.always_dead = {0, 1}
    with pytest.raises(WorkerError, match="no workers left"):
        collect(pool)


def test_a_worker_that_joins_is_used_from_the_next_generation():
    pool = FakePool(2, 2, seed=4)
    dispatcher = Dispatcher(pool)
    dispatcher.collect(GEN, episodes_of, 30, 200, 12.0)
    new = pool.add_worker()
    gen = dispatcher.collect(GEN, episodes_of, 30, 200, 12.0)
    assert used_keys(gen) == reference_keys()
    assert new in gen.workers


def test_results_from_a_retired_slot_are_skipped_never_used():
    pool = FakePool(2, 2, seed=2)
    pool.inbox.append(Received(7, Finished(result(episodes_of(0)[0]))))  # no such slot in use
    gen = collect(pool)
    assert used_keys(gen) == reference_keys() and 7 not in gen.workers
    assert gen.skipped >= 1


def test_a_worker_that_keeps_dying_ends_in_an_error_not_a_hang():
    pool = FakePool(2, 2)
    pool.always_dead = {1}
    with pytest.raises(WorkerError, match="worker 1 keeps dying"):
        collect(pool)
    assert pool.restarts == [1] * Dispatcher.MAX_CONSECUTIVE_RESTARTS


def test_a_result_resets_the_restart_count():
    """Deaths far apart (each followed by results) are not a crash loop."""
    pool = FakePool(2, 2, seed=3)
    dispatcher = Dispatcher(pool)
    for gen in range(Dispatcher.MAX_CONSECUTIVE_RESTARTS + 2):
        pool.die_after = {0: 2}
        dispatcher.collect(gen, functools.partial(episodes_of, gen=gen), 10, 50, 12.0)
    assert len(pool.restarts) == Dispatcher.MAX_CONSECUTIVE_RESTARTS + 2


def test_a_non_finite_action_stops_the_generation():
    pool = FakePool(2, 2)
    pool.inbox.append(Received(0, NonFinite(episodes_of(0)[0])))
    with pytest.raises(NonFiniteError, match=f"generation {GEN}"):
        collect(pool)


def test_a_stop_request_is_honoured_between_messages():
    pool = FakePool(2, 2)
    calls = []

    def should_stop():
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(StopRequested):
        collect(pool, should_stop=should_stop)


def test_unit_sequence_is_seeded_and_draws_statistics_per_rollout():
    key = jax.random.PRNGKey(7)
    seq = UnitSequence(key, 10_000, 100, eval_prob=0.2, calc_obstat_prob=0.5, mirrored=True)
    units = [seq.episodes(3, u) for u in range(600)]
    again = UnitSequence(key, 10_000, 100, 0.2, 0.5, True)
    assert [again.episodes(3, u) for u in reversed(range(600))] == units[::-1]
    assert units != [seq.episodes(4, u) for u in range(600)]
    evals = [u for u in units if u[0].sign == 0]
    pairs = [u for u in units if u[0].sign != 0]
    assert 60 < len(evals) < 180 and all(len(u) == 1 and not u[0].calc_obstat for u in evals)
    assert all([e.sign for e in u] == [1, -1] and u[0].env_seed == u[1].env_seed for u in pairs)
    # each rollout of a pair decides alone, as the starter: about half the pairs disagree
    disagree = sum(u[0].calc_obstat != u[1].calc_obstat for u in pairs) / len(pairs)
    assert 0.35 < disagree < 0.65
    single = UnitSequence(key, 10_000, 100, 0.2, 0.5, mirrored=False)
    assert all(len(single.episodes(3, u)) == 1 for u in range(50))


def test_a_stalled_worker_is_replaced_and_its_episodes_rerun():
    """Alive but silent (a hung simulator): after the stall timeout it is restarted and
    its episodes go to whoever is free; the results are the undisturbed ones."""
    pool = FakePool(3, 2, seed=4)
    pool.hung = {1}
    dispatcher = Dispatcher(pool, stall_timeout_s=10.0, clock=FakeClock(pool))
    gen = dispatcher.collect(GEN, episodes_of, 30, 200, 12.0)
    assert used_keys(gen) == reference_keys()
    assert pool.restarts == [1] and gen.restarts == 1


def test_heartbeats_keep_a_slow_worker_from_being_restarted():
    pool = FakePool(2, 2, seed=6)
    pool.heartbeats = {1}  # busy with long episodes: only heartbeats for a while
    clock = FakeClock(pool)
    dispatcher = Dispatcher(pool, stall_timeout_s=20.0, clock=clock)
    real_recv = pool.recv

    def recv_then_finish(timeout):  # after 100 s its episodes start finishing
        if clock.t > 100:
            pool.heartbeats.clear()
        return real_recv(timeout)

    pool.recv = recv_then_finish  # type: ignore[method-assign]  # this test\'s fake
    gen = dispatcher.collect(GEN, episodes_of, 30, 200, 12.0)
    assert used_keys(gen) == reference_keys() and pool.restarts == []


def test_a_worker_that_stalls_every_time_ends_in_an_error():
    pool = FakePool(2, 2)
    pool.hung, pool.hang_again = {0}, True
    dispatcher = Dispatcher(pool, stall_timeout_s=5.0, clock=FakeClock(pool))
    with pytest.raises(WorkerError, match="worker 0 keeps dying \\(stalled"):
        dispatcher.collect(GEN, episodes_of, 30, 200, 12.0)


def test_a_replacement_gets_the_start_timeout_before_it_counts_as_stalled():
    """Silence while a new process starts (imports, envs) is not a stall; after its first
    message the ordinary stall timeout applies again."""
    pool = FakePool(2, 2, seed=8)
    pool.hung, pool.hang_again = {1}, True  # its replacements never answer either
    clock, restart_times = FakeClock(pool), []
    real_restart = pool.restart

    def restart_and_note(worker):
        restart_times.append(clock.t)
        return real_restart(worker)

    pool.restart = restart_and_note  # type: ignore[method-assign]  # this test\'s fake
    with pytest.raises(WorkerError, match="keeps dying"):  # minimums never met
        Dispatcher(pool, stall_timeout_s=10.0, clock=clock).collect(
            GEN, episodes_of, 10**6, 10**9, 12.0
        )
    gaps = np.diff(restart_times)
    assert restart_times[0] <= 12 and all(g >= Dispatcher.START_TIMEOUT_S for g in gaps)


def test_end_on_fall_marks_training_episodes_and_no_evaluation():
    seq = UnitSequence(jax.random.PRNGKey(1), 10_000, 100, eval_prob=0.2, calc_obstat_prob=0.5,
                       mirrored=True)  # fmt: skip
    n = 3
    falls = [e for u in range(n + 40) for e in seq.with_evals(GEN, n, end_on_fall=True)(u)]
    assert any(e.sign == 0 for e in falls[n:])  # --eval-prob units among the training ones
    assert [e.end_on_fall for e in falls] == [e.sign != 0 for e in falls]
    plain = [e for u in range(n + 40) for e in seq.with_evals(GEN, n)(u)]
    assert [e._replace(end_on_fall=False) for e in falls] == plain
