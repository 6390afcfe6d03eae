"""``Transport``, the receive side every backend shares: order, failures, dead workers,
timeouts and the purge of a replaced worker's messages (a scripted ``_poll``)."""

import time

import pytest

from esjax.errors import WorkerDied, WorkerError
from esjax.rollout.messages import Alive, Failed, Ready
from esjax.rollout.transport import Transport


class ScriptedTransport(Transport):
    """Each ``_poll`` delivers the next batch of (slot, message) and deaths."""

    def __init__(self, batches):
        super().__init__()
        self.batches = list(batches)
        self.flushes = 0
        self.waits = []

    def _flush(self):
        self.flushes += 1

    def _poll(self, wait):
        self.waits.append(wait)
        if not self.batches:
            time.sleep(wait)
            return
        messages, dead = self.batches.pop(0)
        self._buffer.extend(messages)
        self._dead.update(dead)


def test_messages_come_in_order_each_recv_flushes_first():
    t = ScriptedTransport([([(0, Ready()), (1, Alive())], {})])
    first, second = t.recv(1.0), t.recv(1.0)
    assert (first.worker, type(first.message)) == (0, Ready)
    assert (second.worker, type(second.message)) == (1, Alive)
    assert t.flushes == 2


def test_a_dead_workers_messages_come_before_its_death():
    t = ScriptedTransport([([(2, Alive())], {2: "exit code -9"})])
    assert t.recv(1.0).worker == 2
    with pytest.raises(WorkerDied, match=r"worker 2 died \(exit code -9\)") as e:
        t.recv(1.0)
    assert (e.value.slot, e.value.why) == (2, "exit code -9")
    assert t.recv(0.0) is None  # reported once


def test_a_failed_worker_raises_its_traceback_once_not_also_a_death():
    t = ScriptedTransport([([(1, Failed("Traceback ...\nValueError: bad\n"))], {1: "exit 1"})])
    with pytest.raises(WorkerError, match="worker 1 failed:\nTraceback ...\nValueError: bad$"):
        t.recv(1.0)
    assert t.recv(0.0) is None


def test_recv_returns_none_after_its_timeout_polling_in_short_steps():
    t = ScriptedTransport([])
    t0 = time.monotonic()
    assert t.recv(0.3) is None
    assert 0.25 <= time.monotonic() - t0 < 2.0
    assert all(w <= 0.5 for w in t.waits)


def test_purge_forgets_a_replaced_workers_messages_and_death():
    t = ScriptedTransport([([(0, Alive()), (1, Alive()), (0, Ready())], {0: "gone"})])
    t._poll(0.0)
    t._purge(0)
    got = t.recv(0.0)
    assert got.worker == 1 and t.recv(0.0) is None


def test_await_ready_waits_for_every_slot_and_reports_a_failure():
    t = ScriptedTransport([([(0, Ready())], {}), ([(1, Alive()), (1, Ready())], {})])
    t.await_ready({0, 1})
    bad = ScriptedTransport([([(0, Ready()), (1, Failed("Traceback\nImportError: gym\n"))], {})])
    with pytest.raises(WorkerError, match="ImportError: gym"):
        bad.await_ready({0, 1})
