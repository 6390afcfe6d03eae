"""The Ray backend: rollout actors on the nodes of a Ray cluster (``--backend ray``).

``RayPool`` implements ``esjax.rollout.transport.WorkerPool``, so the trainer and the dispatcher
(unit sequence, prefix rule, re-dispatch, stale accounting) are the same as with the
local process pool; only the transport differs. Each actor runs the same
``esjax.rollout.worker.serve_episodes`` loop as a local worker process, in a thread, between an
inbox and an outbox that two actor methods feed (``submit``) and drain (``harvest``).
The cluster session and the per-node noise tables are ``esjax.rollout.ray_cluster``'s.

- **One actor per CPU**, pinned to its node, capped by ``--num-workers``.
- **Recovery in esjax, not Ray**: actors have ``max_restarts=0`` and no task retries
  (Ray's retries re-run calls out of order). A dead actor surfaces as ``WorkerDied``;
  the dispatcher re-queues its episodes and calls ``restart``, which starts a new actor
  on the same node, or retires the slot if the node is gone. Nodes that join are
  polled once per generation and get their table and actors in the background.
- Every call is self-contained: ``submit`` carries the generation and a reference to
  its θ, so a late or reordered call can never run an episode with the wrong θ.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from esjax.errors import RayBackendError
from esjax.rollout.messages import Aborted, Failed, Params, Run, Stop
from esjax.rollout.ray_cluster import (
    INSTALL_HINT,
    Node,
    NodeTables,
    RaySession,
    import_ray,
    machine_mismatch,
    one_line,
)
from esjax.rollout.transport import START_TIMEOUT_S, Transport
from esjax.rollout.worker import WorkerConfig, make_runner, serve_episodes

__all__ = ["INSTALL_HINT", "RayPool", "RolloutActor", "import_ray"]

HARVEST_WAIT_S = 1.0  # a harvest call returns at least this often


class RolloutActor:
    """One worker: ``envs_per_worker`` envs running ``serve_episodes`` in a thread.

    ``table`` is its node's noise table, resolved zero-copy by Ray from the reference
    passed to the constructor."""

    def __init__(self, cfg: WorkerConfig, table: np.ndarray):
        import ray

        self.table = table
        self.runner = make_runner(cfg, table)
        self.node_id = ray.get_runtime_context().get_node_id()
        self.inbox: queue.Queue = queue.Queue()
        self.outbox: queue.Queue = queue.Queue()
        self.lock = threading.Lock()
        self.gen = -1
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            serve_episodes(self.runner, self.inbox, self.outbox.put)
        except Exception:
            self.outbox.put(Failed(traceback.format_exc()))

    def ready(self) -> dict:
        """Where this actor runs, and what its table looks like from here."""
        from esjax.provenance import machine_record

        return {"node": self.node_id, "pid": os.getpid(), "table_address": self.table.ctypes.data,
                "machine": machine_record()}  # fmt: skip

    def submit(self, gen: int, params: list, episodes: list) -> None:
        """Episodes of generation ``gen``; ``params``: [ref to (θ, ob_mean, ob_std, σ)],
        fetched once per generation. Episodes of a generation older than the newest
        seen are dropped as stale (an ``Aborted``), whatever order calls ran in."""
        import ray

        with self.lock:
            if gen > self.gen:
                self.gen = gen
                self.inbox.put(Params(gen, *ray.get(params[0])))
            elif gen < self.gen:
                if episodes:
                    self.outbox.put(Aborted(len(episodes), 0))
                return
            for ep in episodes:
                self.inbox.put(Run(ep))

    def harvest(self, wait_s: float) -> list:
        """The messages sent since the last call, waiting up to ``wait_s`` for one."""
        try:
            msgs = [self.outbox.get(timeout=wait_s)]
        except queue.Empty:
            return []
        with contextlib.suppress(queue.Empty):
            while True:
                msgs.append(self.outbox.get_nowait())
        return msgs

    def stop(self) -> None:
        self.inbox.put(Stop())


@dataclass
class Slot:
    """One worker slot of the pool: its node, its actor and everything in flight for it."""

    node_id: str
    actor: Any  # its Ray actor handle
    ready: object | None  # the actor's ready() ref while it starts; None once in use
    pending: list = field(default_factory=list)  # episodes sent, not yet submitted
    harvest: object | None = None  # its outstanding harvest() ref
    unreachable: bool = False  # its last call failed as unavailable (node may be dying)


class RayPool(Transport):
    """Rollout actors on a Ray cluster; see the module docstring.

    ``address``: None starts a private local Ray instance with ``num_workers`` CPUs
    (never a stranger's cluster); "auto" or HOST:PORT joins that cluster and uses every
    alive node's CPUs, capped by ``num_workers`` (0: no cap). ``slots``: every slot, in
    use or starting (the one record of slot, node and actor).
    """

    def __init__(self, cfg: WorkerConfig, seed: int, num_workers: int,
                 address: str | None = None, log: Callable[[str], None] = print):  # fmt: skip
        super().__init__()
        self.cfg, self.log, self.cap = cfg, log, num_workers
        self.envs_per_worker = cfg.envs_per_worker
        self.session = RaySession(address, num_workers)
        self.ray = self.session.ray
        self.tables = NodeTables(self.session, seed, cfg.noise_size, log)
        self.slots: dict[int, Slot] = {}
        self.node_machines: dict[str, dict] = {}  # node id -> its machine_record()
        self._params: tuple[int, list] | None = None
        self._next_slot = 0
        self.restarts = self.nodes_joined = 0
        self.startup_s: dict[str, float] = {}

    @property
    def table(self) -> np.ndarray | None:
        """The trainer's view of its node's table, in Ray's object store."""
        return self.tables.table

    @property
    def nodes_lost(self) -> int:
        return self.tables.lost

    @property
    def driver_node(self) -> str:
        return self.session.driver_node

    @property
    def actors(self) -> dict[int, object]:
        """Slot -> actor handle, of the slots in use."""
        return {i: s.actor for i, s in self.slots.items() if s.ready is None}

    def slot_nodes(self) -> dict[int, str]:
        """Slot -> node id, of every slot (in use or starting)."""
        return {i: s.node_id for i, s in self.slots.items()}

    def starting(self) -> list[int]:
        """The slots whose actor is starting."""
        return [i for i, s in self.slots.items() if s.ready is not None]

    # -- start-up ----------------------------------------------------------------
    def start(self) -> None:
        """Connect, build and check every node's table, start the actors and wait until
        all are ready. RayBackendError (one line) for what the user can fix."""
        t0 = time.perf_counter()
        self.session.connect()
        t1 = time.perf_counter()
        self.tables.build_all()
        t2 = time.perf_counter()
        self._place_actors(list(self.tables.nodes.values()))
        self._take_in(START_TIMEOUT_S, at_start=True)
        t3 = time.perf_counter()
        self.startup_s = {"connect": t1 - t0, "tables": t2 - t1, "actors": t3 - t2}
        in_use = self.workers()
        if not in_use:
            raise RayBackendError("no rollout worker could start on the Ray cluster")
        n_nodes = len({self.slots[i].node_id for i in in_use})
        self.log(f"ray: {len(in_use)} workers on {n_nodes} node(s); connect "
                 f"{t1 - t0:.1f} s, tables {t2 - t1:.1f} s, actors {t3 - t2:.1f} s")  # fmt: skip
        mismatch = machine_mismatch(self.node_machines, self.tables.nodes)
        if mismatch:
            self.log(mismatch)

    def _place_actors(self, nodes: list[Node]) -> None:
        """Start actors on ``nodes``' free CPUs, spread evenly, up to the cap; they join
        the pool once ready (``_take_in``)."""
        taken: dict[str, int] = {}
        for s in self.slots.values():
            taken[s.node_id] = taken.get(s.node_id, 0) + 1
        free = {n.node_id: n.cpus - taken.get(n.node_id, 0)
                for n in nodes if n.usable}  # fmt: skip
        total = len(self.slots)
        while any(v > 0 for v in free.values()) and not (self.cap and total >= self.cap):
            for node_id in [k for k, v in free.items() if v > 0]:
                if self.cap and total >= self.cap:
                    break
                self._start_actor(self._next_slot, node_id)
                self._next_slot += 1
                free[node_id] -= 1
                total += 1

    def _start_actor(self, slot: int, node_id: str) -> None:
        actor = self.ray.remote(RolloutActor).options(
            **self.session.pinned(node_id, num_cpus=1), max_restarts=0, max_task_retries=0,
            max_concurrency=2, name=None,
        ).remote(self.cfg, self.tables.nodes[node_id].table)  # fmt: skip
        self.slots[slot] = Slot(node_id, actor, actor.ready.remote())

    def _take_in(self, timeout: float, at_start: bool = False) -> None:
        """Put the starting actors that are ready in use. ``at_start``: wait up to
        ``timeout`` for all of them, RayBackendError if one fails or is late; else
        (between generations) only those ready now, a failure logged and its slot
        dropped, and a node whose first worker this is counted as joined."""
        ray = self.ray
        deadline = time.monotonic() + timeout
        while True:
            refs = {self.slots[i].ready: i for i in self.starting()}
            if not refs:
                return
            left = deadline - time.monotonic()
            if at_start and left <= 0:
                raise RayBackendError(
                    f"{len(refs)} rollout worker(s) did not start within {timeout:.0f} s "
                    "(are the nodes' CPUs taken by other Ray jobs?)"
                )
            ready, _ = ray.wait(list(refs), num_returns=1 if at_start else len(refs),
                                timeout=min(1.0, left) if at_start else 0)  # fmt: skip
            for ref in ready:
                i = refs[ref]
                node = self._node(i)
                try:
                    self.node_machines[node.node_id] = ray.get(ref).get("machine")
                except ray.exceptions.RayError as e:
                    if at_start:
                        raise RayBackendError(f"a rollout worker on node {node.address} failed "
                                              f"to start: {one_line(e)}") from None  # fmt: skip
                    del self.slots[i]
                    if node.node_id in self.session.alive_nodes():  # else: its loss is logged
                        self.log(f"ray: a worker on node {node.address} failed to start: "
                                 f"{one_line(e)}")  # fmt: skip
                    continue
                joins = not at_start and node.node_id not in {
                    self.slots[w].node_id for w in self.workers()
                }  # this node's first worker, between generations
                self._admit(i)
                self.nodes_joined += joins
            if not at_start:
                return

    def _admit(self, slot: int) -> None:
        """Put ``slot``'s started actor in use: this generation's θ, its first harvest."""
        s = self.slots[slot]
        s.ready = None
        if self._params is not None:
            s.actor.submit.remote(self._params[0], self._params[1], [])
        s.harvest = s.actor.harvest.remote(HARVEST_WAIT_S)

    def _node(self, slot: int) -> Node:
        return self.tables.nodes[self.slots[slot].node_id]

    # -- WorkerPool --------------------------------------------------------------
    def workers(self) -> list[int]:
        return sorted(i for i, s in self.slots.items() if s.ready is None)

    @property
    def num_workers(self) -> int:
        return len(self.workers())

    def broadcast_params(self, gen: int, theta, ob_mean, ob_std, sigma=None) -> None:
        """θ (and σ) of generation ``gen`` go into the object store once; every actor
        fetches them with its next ``submit``. Between generations, new nodes are taken in."""
        self._poll_nodes()
        ref = self.ray.put((np.asarray(theta, np.float32), np.asarray(ob_mean, np.float32),
                            np.asarray(ob_std, np.float32), sigma))  # fmt: skip
        self._params = (gen, [ref])
        for i in self.workers():
            s = self.slots[i]
            s.actor.submit.remote(gen, [ref], [])  # drops its stale episodes now
            s.pending.clear()

    def send(self, slot: int, ep) -> None:
        self.slots[slot].pending.append(ep)

    def _flush(self) -> None:
        """Submit the episodes sent since the last flush, one call per actor."""
        if self._params is None:
            return
        gen, params = self._params
        for i in self.workers():
            s = self.slots[i]
            if s.pending:
                s.actor.submit.remote(gen, params, s.pending)
                s.pending = []

    def _poll(self, wait: float) -> None:
        """Take in the harvests that return within ``wait`` seconds."""
        harvests = {s.harvest: i for i, s in self.slots.items() if s.harvest is not None}
        if not harvests:
            time.sleep(wait)
            return
        ready, _ = self.ray.wait(list(harvests), num_returns=1, timeout=wait)
        for ref in ready:
            self._harvested(harvests[ref])

    def _harvested(self, slot: int) -> None:
        ray = self.ray
        s = self.slots[slot]
        ref, s.harvest = s.harvest, None
        try:
            msgs = ray.get(ref)
        except ray.exceptions.RayError as e:
            if isinstance(e, ray.exceptions.ActorUnavailableError):
                s.unreachable = True  # its node may be dying: see restart
            self._dead[slot] = self._why_dead(slot, e)
            return
        self._buffer.extend((slot, m) for m in msgs)
        s.harvest = s.actor.harvest.remote(HARVEST_WAIT_S)

    def _why_dead(self, slot: int, err: BaseException) -> str:
        node, kind = self._node(slot), type(err).__name__
        if node.node_id not in self.session.alive_nodes():
            return f"{kind}: its node {node.address} is gone"
        return f"{kind} on node {node.address}"

    def restart(self, slot: int) -> bool:
        """A new actor for ``slot`` on the same node. False (slot retired) if the node
        is gone, or if the actor was unreachable: a node that stops answering is
        declared dead by Ray only after its health checks fail (about 15 s by default),
        and a replacement pinned there would hold its work until then. Such a node gets
        new workers between generations if it is still alive (``_poll_nodes``)."""
        node, unreachable = self._node(slot), self.slots[slot].unreachable
        self._drop(slot)
        if node.node_id not in self.session.alive_nodes():
            self.tables.lose(node)
            return False
        if unreachable:
            self.log(f"ray: worker {slot} on node {node.address} does not answer; its work "
                     "goes to the others")  # fmt: skip
            return False
        self.restarts += 1
        self._start_actor(slot, node.node_id)
        self._admit(slot)  # in use at once: the dispatcher re-sends its work
        return True

    def _drop(self, slot: int) -> None:
        """Forget ``slot``: kill its actor, drop its calls and unreturned messages."""
        s = self.slots.pop(slot, None)
        if s is not None:
            with contextlib.suppress(Exception):
                self.ray.kill(s.actor, no_restart=True)
        self._purge(slot)

    def _poll_nodes(self) -> None:
        """Between generations: tables for nodes that joined, actors on checked nodes'
        free CPUs, and the actors that are ready taken in (a failure to start there is
        logged and the node left out)."""
        self._place_actors(self.tables.refresh())
        self._take_in(0.0)

    def kill_now(self) -> None:
        self.session.kill_now()

    def close(self) -> None:
        """Stop every actor; disconnect (a private instance stops entirely). Nothing is
        left running."""
        for s in self.slots.values():
            with contextlib.suppress(Exception):
                self.ray.kill(s.actor, no_restart=True)
        self.slots.clear()
        self.tables.close()
        self._params = None
        self.session.shutdown()
