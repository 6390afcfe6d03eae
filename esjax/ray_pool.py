"""The Ray backend: rollout actors on the nodes of a Ray cluster (``--backend ray``).

``RayPool`` implements ``esjax.dispatch.WorkerPool``, so the trainer and the dispatcher
(unit sequence, prefix rule, re-dispatch, stale accounting) are the same as with the
local process pool; only the transport differs. Each actor runs the same
``esjax.worker.serve_episodes`` loop as a local worker process, in a thread, between an
inbox and an outbox that two actor methods feed (``submit``) and drain (``harvest``).

- **One noise table per node**, built there from the seed by a node-pinned task (never
  sent over the network), held in that node's object store and read zero-copy by every
  actor on the node and by the trainer. Each node's table is checked against the
  trainer's by checksum before use.
- **One actor per CPU**, pinned to its node, capped by ``--num-workers``.
- **Recovery in esjax, not Ray**: actors have ``max_restarts=0`` and no task retries
  (Ray's retries re-run calls out of order). A dead actor surfaces as ``WorkerDied``;
  the dispatcher re-queues its episodes and calls ``restart``, which starts a new actor
  on the same node, or retires the slot if the node is gone. Nodes that join are
  polled once per generation and get their table and actors in the background.
- Every call is self-contained: ``submit`` carries the generation and a reference to
  its θ, so a late or reordered call can never run an episode with the wrong θ.

Ray is an optional extra (``pip install 'esjax[ray]'``): nothing here is imported by
the local backend.
"""

from __future__ import annotations

import contextlib
import os
import queue
import secrets
import signal
import socket
import sys
import threading
import time
import traceback
import warnings
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from esjax.config import ConfigError
from esjax.core.noise import fill_noise_table
from esjax.dispatch import WorkerDied, WorkerError
from esjax.pool import WorkerConfig
from esjax.worker import EpisodeRunner, serve_episodes

INSTALL_HINT = "pip install 'esjax[ray]' (make setup installs it)"
START_TIMEOUT_S = 300.0  # actors: imports, envs; nodes: building their noise table
CONNECT_TIMEOUT_S = 10.0  # reaching the head's port before handing over to ray.init
HARVEST_WAIT_S = 1.0  # a harvest call returns at least this often
OBJECT_STORE_MARGIN = 64 << 20  # bytes beyond the table: θ of a few generations, results
WORKER_ENV = {  # every actor: CPU-only JAX, one BLAS thread (it shares its core with an env)
    "JAX_PLATFORMS": "cpu",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


class RayBackendError(ConfigError):
    """The Ray backend cannot start as asked (exit code 2 at the CLI)."""


def import_ray():
    """The ``ray`` module, or a one-line RayBackendError naming the install command."""
    try:
        import ray
    except ImportError:
        raise RayBackendError(f"--backend ray needs Ray: install it with {INSTALL_HINT}") from None
    return ray


def table_checksum(table: np.ndarray) -> int:
    """CRC-32 of the table's bytes (1 GB: about 0.5 s)."""
    return zlib.crc32(memoryview(table).cast("B"))


def _make_table(seed: int, size: int) -> np.ndarray:
    """A node's noise table (pinned task): the local pool's table, bit for bit."""
    return fill_noise_table(np.empty(size, np.float32), seed)


def _node_table_facts(table: np.ndarray) -> tuple[int, str]:
    """On the table's node: its checksum and that node's numpy version."""
    return table_checksum(table), np.__version__


def _writable_view(table: np.ndarray) -> np.ndarray:
    """A view of the object store's (read-only) array that JAX's dlpack accepts; only
    read. The caller keeps ``table`` alive as long as the view."""
    import ctypes

    buf = (ctypes.c_float * table.size).from_address(table.ctypes.data)
    return np.ctypeslib.as_array(buf)


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc; [] elsewhere)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


class RolloutActor:
    """One worker: ``envs_per_worker`` envs running ``serve_episodes`` in a thread.

    ``table`` is its node's noise table, resolved zero-copy by Ray from the reference
    passed to the constructor."""

    def __init__(self, cfg: WorkerConfig, table: np.ndarray):
        import ray

        from esjax.envs import make_env

        self.table = table
        envs = [make_env(cfg.env_id) for _ in range(cfg.envs_per_worker)]
        self.runner = EpisodeRunner(cfg.spec, envs, table, cfg.noise_stdev, cfg.ac_noise_std)
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
            self.outbox.put(("error", traceback.format_exc()))

    def ready(self) -> dict:
        """Where this actor runs, and what its table looks like from here."""
        return {"node": self.node_id, "pid": os.getpid(), "table_address": self.table.ctypes.data}

    def submit(self, gen: int, params: list, episodes: list) -> None:
        """Episodes of generation ``gen``; ``params``: [ref to (θ, ob_mean, ob_std, σ)],
        fetched once per generation. Episodes of a generation older than the newest
        seen are dropped as stale (an "aborted" message), whatever order calls ran in."""
        import ray

        with self.lock:
            if gen > self.gen:
                theta, ob_mean, ob_std, sigma = ray.get(params[0])
                self.gen = gen
                self.inbox.put(("params", gen, theta, ob_mean, ob_std, sigma))
            elif gen < self.gen:
                if episodes:
                    self.outbox.put(("aborted", len(episodes), 0))
                return
            for ep in episodes:
                self.inbox.put(("episode", ep))

    def harvest(self, wait_s: float) -> list[tuple]:
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
        self.inbox.put(("stop",))


@dataclass
class _Node:
    node_id: str
    address: str
    cpus: int
    table: object = None  # ObjectRef of its noise table
    facts: object = None  # ObjectRef of (checksum, numpy version), until checked
    checked: bool = False
    lost: bool = False
    slots: list[int] = field(default_factory=list)


def _one_line(err: BaseException) -> str:
    """The last meaningful line of an exception raised on a worker (its cause)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    for ln in reversed(lines):
        if not ln.startswith(("File ", "^", "~", "During handling", "The above exception")):
            return ln
    return type(err).__name__


def _check_reachable(address: str) -> None:
    """RayBackendError unless ``HOST:PORT`` accepts a TCP connection within
    CONNECT_TIMEOUT_S (ray.init itself retries an unreachable head for minutes)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise RayBackendError(
            f"--ray-address {address!r} is not HOST:PORT or auto: give the head node's "
            "address as printed by `ray start --head` (e.g. 10.0.0.1:6379)"
        )
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise RayBackendError(
            f"cannot reach a Ray cluster at {address} ({why}): start its head with "
            "`ray start --head`, or check the address and the firewall"
        ) from None


class RayPool:
    """Rollout actors on a Ray cluster; see the module docstring.

    ``address``: None starts a private local Ray instance with ``num_workers`` CPUs
    (never a stranger's cluster); "auto" or HOST:PORT joins that cluster and uses every
    alive node's CPUs, capped by ``num_workers`` (0: no cap).
    """

    def __init__(self, cfg: WorkerConfig, seed: int, num_workers: int,
                 address: str | None = None, log: Callable[[str], None] = print):  # fmt: skip
        self.cfg, self.seed, self.address, self.log = cfg, seed, address, log
        self.cap = num_workers
        self.envs_per_worker = cfg.envs_per_worker
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if address is None and "ray" not in sys.modules:
            # A private instance: a throw-away token (Ray's ports listen on every
            # interface); nothing written to $HOME. Ray reads these when imported.
            os.environ["RAY_AUTH_MODE"] = "token"
            os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
        self.ray = import_ray()
        self.nodes: dict[str, _Node] = {}
        self.actors: dict[int, object] = {}  # slot -> actor handle (in use)
        self.slot_node: dict[int, str] = {}
        self.joining: dict[int, object] = {}  # slot -> ready() ref of an actor not yet in use
        self.harvests: dict[object, int] = {}  # harvest ref -> slot
        self.pending: dict[int, list] = {}  # slot -> episodes not yet submitted
        self._buffer: deque[tuple[int, tuple]] = deque()
        self._dead: dict[int, str] = {}  # slot -> why, once a call of its actor failed
        self._unreachable: set[int] = set()  # slots whose actor failed as unavailable
        self._params: tuple[int, list] | None = None
        self._next_slot = 0
        self.restarts = self.nodes_lost = self.nodes_joined = 0
        self.ray_messages: deque[str] = deque(maxlen=100)  # Ray's own notices, not shown
        self.table: np.ndarray | None = None  # the trainer's view of its node's table
        self._table_obj = None
        self._connected = False
        self._restore_print = None
        self.startup_s: dict[str, float] = {}

    # -- start-up ----------------------------------------------------------------
    def start(self) -> None:
        """Connect, build and check every node's table, start the actors and wait until
        all are ready. RayBackendError (one line) for what the user can fix."""
        t0 = time.perf_counter()
        self._connect()
        self.startup_s["connect"] = time.perf_counter() - t0
        ray = self.ray
        self.driver_node = ray.get_runtime_context().get_node_id()
        alive = self._alive_nodes()
        if not any(n["Resources"].get("CPU", 0) >= 1 for n in alive.values()):
            raise RayBackendError("the Ray cluster has no node with a CPU for rollout workers")
        need = 4 * self.cfg.noise_size + OBJECT_STORE_MARGIN
        for info in alive.values():
            if info["NodeID"] == self.driver_node or info["Resources"].get("CPU", 0) >= 1:
                self._check_store(info, need)
        t1 = time.perf_counter()
        for node_id, info in alive.items():
            if node_id == self.driver_node or info["Resources"].get("CPU", 0) >= 1:
                self._build_table(info)
        expected = self.checksum = self._driver_table()
        for node in self.nodes.values():
            self._check_table(node, expected, timeout=START_TIMEOUT_S)
        self.startup_s["tables"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        self._place_actors(list(self.nodes.values()))
        self._await_joining(START_TIMEOUT_S)
        self.startup_s["actors"] = time.perf_counter() - t2
        if not self.actors:
            raise RayBackendError("no rollout worker could start on the Ray cluster")
        n_nodes = len({self.slot_node[s] for s in self.actors})
        self.log(f"ray: {len(self.actors)} workers on {n_nodes} node(s); connect "
                 f"{self.startup_s['connect']:.1f} s, tables {self.startup_s['tables']:.1f} s, "
                 f"actors {self.startup_s['actors']:.1f} s")  # fmt: skip

    def _connect(self) -> None:
        ray = self.ray
        kw = dict(namespace="esjax", logging_level="ERROR", log_to_driver=False,
                  runtime_env={"env_vars": WORKER_ENV})  # fmt: skip
        if self.address is None:  # "local": never a cluster of someone else's
            kw.update(address="local", num_cpus=self.cap or os.cpu_count() or 1,
                      include_dashboard=False)  # fmt: skip
        else:
            if self.address != "auto":
                _check_reachable(self.address)
            kw["address"] = self.address
        self._quiet_ray()
        try:
            with warnings.catch_warnings():
                # Ray starts its processes with fork+exec (subprocess), which JAX's
                # "os.fork() was called" warning cannot tell from a bare fork.
                warnings.filterwarnings("ignore", "os.fork", RuntimeWarning)
                ray.init(**kw)
        except Exception as e:
            where = "a private Ray instance" if self.address is None else self.address
            hint = (
                "set RAY_AUTH_MODE (and RAY_AUTH_TOKEN) as on the cluster, and run the "
                "same Ray and Python versions as its nodes"
                if self.address is not None
                else "see the Ray logs under /tmp/ray"
            )
            raise RayBackendError(f"cannot connect to {where}: {_one_line(e)}; {hint}") from None
        self._connected = True

    def _quiet_ray(self) -> None:
        """Keep Ray's error notices ("(raylet) A worker died...") out of the progress
        display: the driver prints them to stdout even with ``log_to_driver=False``.
        They are kept in ``ray_messages``."""
        try:
            import ray._private.worker as rw
        except ImportError:
            return
        original = getattr(rw, "print_to_stdstream", None)
        if original is None:
            return

        def keep(data, ignore_prefix=False):
            for line in data.get("lines", []):
                self.ray_messages.append(str(line))

        rw.print_to_stdstream = keep
        self._restore_print = lambda: setattr(rw, "print_to_stdstream", original)

    def _alive_nodes(self) -> dict[str, dict]:
        return {n["NodeID"]: n for n in self.ray.nodes() if n.get("Alive")}

    def _check_store(self, info: dict, need: int) -> None:
        have = int(info["Resources"].get("object_store_memory", 0))
        if have < need:
            raise RayBackendError(
                f"node {info['NodeManagerAddress']} has {have / 2**20:.0f} MiB of object "
                f"store, and the noise table needs {need / 2**20:.0f} MiB: pass a smaller "
                "--noise-table-size, or give the node more (ray start --object-store-memory; "
                "in Docker, --shm-size)"
            )

    def _pinned(self, node_id: str, num_cpus: float = 0):
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        pin = NodeAffinitySchedulingStrategy(node_id, soft=False)
        return dict(num_cpus=num_cpus, scheduling_strategy=pin)

    def _build_table(self, info: dict) -> _Node:
        ray, node_id = self.ray, info["NodeID"]
        opts = self._pinned(node_id)
        table = (
            ray.remote(_make_table)
            .options(**opts, max_retries=0)
            .remote(self.seed, self.cfg.noise_size)
        )
        facts = ray.remote(_node_table_facts).options(**opts, max_retries=0).remote(table)
        node = _Node(node_id, info["NodeManagerAddress"], int(info["Resources"].get("CPU", 0)),
                     table, facts)  # fmt: skip
        self.nodes[node_id] = node
        return node

    def _driver_table(self) -> int:
        """The trainer's view of its own node's table; its checksum."""
        obj = self.ray.get(self.nodes[self.driver_node].table, timeout=START_TIMEOUT_S)
        self._table_obj = obj  # keeps the object store's buffer mapped
        self.table = _writable_view(obj)
        return table_checksum(obj)

    def _check_table(self, node: _Node, expected: int, timeout: float | None) -> bool:
        """Whether ``node``'s table is checked (False: not built yet, with timeout 0);
        RayBackendError if it differs from the trainer's."""
        ray = self.ray
        if node.checked:
            return True
        if timeout == 0 and not ray.wait([node.facts], timeout=0)[0]:
            return False
        try:
            checksum, numpy_version = ray.get(node.facts, timeout=timeout)
        except ray.exceptions.GetTimeoutError:
            raise RayBackendError(
                f"node {node.address} did not build its noise table within {timeout:.0f} s"
            ) from None
        if checksum != expected:
            raise RayBackendError(
                f"node {node.address} built a different noise table (checksum {checksum:08x}, "
                f"the trainer's {expected:08x}; numpy {numpy_version} there, {np.__version__} "
                "here): install the same numpy version on every node"
            )
        node.checked, node.facts = True, None
        return True

    def _place_actors(self, nodes: list[_Node]) -> None:
        """Start actors on ``nodes``' CPUs, spread evenly, up to the cap; they join the
        pool once ready (``_await_joining`` / ``broadcast_params``)."""
        free = {n.node_id: n.cpus - len(n.slots) for n in nodes if n.checked and not n.lost}
        total = len(self.actors) + len(self.joining)
        while any(free.values()) and not (self.cap and total >= self.cap):
            for node_id in [k for k, v in free.items() if v > 0]:
                if self.cap and total >= self.cap:
                    break
                self._start_actor(self._next_slot, node_id)
                self.nodes[node_id].slots.append(self._next_slot)
                self._next_slot += 1
                free[node_id] -= 1
                total += 1

    def _actor_class(self):
        return self.ray.remote(RolloutActor)

    def _start_actor(self, slot: int, node_id: str) -> None:
        actor = self._actor_class().options(
            **self._pinned(node_id, num_cpus=1), max_restarts=0, max_task_retries=0,
            max_concurrency=2, name=None,
        ).remote(self.cfg, self.nodes[node_id].table)  # fmt: skip
        self.slot_node[slot] = node_id
        self.joining[slot] = (actor, actor.ready.remote())

    def _await_joining(self, timeout: float) -> None:
        """Wait for the starting actors (start-up): RayBackendError if one fails."""
        ray = self.ray
        deadline = time.monotonic() + timeout
        while self.joining:
            refs = {ref: slot for slot, (_, ref) in self.joining.items()}
            left = deadline - time.monotonic()
            if left <= 0:
                raise RayBackendError(
                    f"{len(refs)} rollout worker(s) did not start within {timeout:.0f} s "
                    "(are the nodes' CPUs taken by other Ray jobs?)"
                )
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=min(1.0, left))
            for ref in ready:
                slot = refs[ref]
                try:
                    ray.get(ref)
                except ray.exceptions.RayError as e:
                    node = self.nodes[self.slot_node[slot]]
                    raise RayBackendError(
                        f"a rollout worker on node {node.address} failed to start: {_one_line(e)}"
                    ) from None
                self._admit(slot)

    def _admit(self, slot: int) -> None:
        actor, _ = self.joining.pop(slot)
        self.actors[slot] = actor
        if self._params is not None:
            actor.submit.remote(self._params[0], self._params[1], [])
        self.harvests[actor.harvest.remote(HARVEST_WAIT_S)] = slot

    # -- WorkerPool --------------------------------------------------------------
    def workers(self) -> list[int]:
        return sorted(self.actors)

    @property
    def num_workers(self) -> int:
        return len(self.actors)

    def broadcast_params(self, gen: int, theta, ob_mean, ob_std, sigma=None) -> None:
        """θ (and σ) of generation ``gen`` go into the object store once; every actor
        fetches them with its next ``submit``. Between generations, new nodes are taken in."""
        self._poll_nodes()
        ref = self.ray.put((np.asarray(theta, np.float32), np.asarray(ob_mean, np.float32),
                            np.asarray(ob_std, np.float32), sigma))  # fmt: skip
        self._params = (gen, [ref])
        for slot, actor in self.actors.items():
            actor.submit.remote(gen, [ref], [])  # drops its stale episodes now
            self.pending.pop(slot, None)

    def send(self, slot: int, ep) -> None:
        self.pending.setdefault(slot, []).append(ep)

    def _flush(self) -> None:
        """Submit the episodes sent since the last flush, one call per actor."""
        gen, params = self._params
        for slot, eps in self.pending.items():
            if eps and slot in self.actors:
                self.actors[slot].submit.remote(gen, params, eps)
        self.pending.clear()

    def recv(self, timeout: float = 1.0):
        """The next message as (kind, slot, *payload), None after ``timeout`` s; raises
        WorkerDied for an actor whose call failed (after its earlier messages)."""
        ray = self.ray
        self._flush()
        deadline = time.monotonic() + timeout
        while True:
            if self._buffer:
                slot, msg = self._buffer.popleft()
                if msg[0] == "error":
                    raise WorkerError(f"worker {slot} failed:\n{msg[1].rstrip()}")
                return (msg[0], slot, *msg[1:])
            if self._dead:
                slot = next(iter(self._dead))
                raise WorkerDied(slot, None, self._dead.pop(slot))
            left = deadline - time.monotonic()
            if self.harvests:
                ready, _ = ray.wait(list(self.harvests), num_returns=1,
                                    timeout=max(0.0, min(0.5, left)))  # fmt: skip
                for ref in ready:
                    self._harvested(ref)
            else:
                time.sleep(max(0.0, min(0.5, left)))
            if not self._buffer and not self._dead and left <= 0:
                return None

    def _harvested(self, ref) -> None:
        ray = self.ray
        slot = self.harvests.pop(ref)
        try:
            msgs = ray.get(ref)
        except ray.exceptions.RayError as e:
            if isinstance(e, ray.exceptions.ActorUnavailableError):
                self._unreachable.add(slot)  # its node may be dying: see restart
            self._dead[slot] = self._why_dead(slot, e)
            return
        self._buffer.extend((slot, m) for m in msgs)
        self.harvests[self.actors[slot].harvest.remote(HARVEST_WAIT_S)] = slot

    def _why_dead(self, slot: int, err: BaseException) -> str:
        node = self.nodes[self.slot_node[slot]]
        kind = type(err).__name__
        if self.slot_node[slot] not in self._alive_nodes():
            return f"{kind}: its node {node.address} is gone"
        return f"{kind} on node {node.address}"

    def restart(self, slot: int) -> bool:
        """A new actor for ``slot`` on the same node. False (slot retired) if the node
        is gone, or if the actor was unreachable: a node that stops answering is
        declared dead by Ray only after its health checks fail (about 15 s by default),
        and a replacement pinned there would hold its work until then. Such a node gets
        new workers between generations if it is still alive (``_poll_nodes``)."""
        unreachable = slot in self._unreachable
        self._unreachable.discard(slot)
        self._drop(slot)
        node = self.nodes[self.slot_node[slot]]
        if node.node_id not in self._alive_nodes():
            node.slots.remove(slot)
            self._lose(node)
            return False
        if unreachable:
            node.slots.remove(slot)
            self.log(f"ray: worker {slot} on node {node.address} does not answer; its work "
                     "goes to the others")  # fmt: skip
            return False
        self.restarts += 1
        self._start_actor(slot, node.node_id)
        actor, _ = self.joining.pop(slot)
        self.actors[slot] = actor  # in use at once: the dispatcher re-sends its work
        if self._params is not None:
            actor.submit.remote(self._params[0], self._params[1], [])
        self.harvests[actor.harvest.remote(HARVEST_WAIT_S)] = slot
        return True

    def _lose(self, node: _Node) -> None:
        if not node.lost:
            node.lost, node.table = True, None
            self.nodes_lost += 1
            self.log(f"ray: node {node.address} lost; going on with the other nodes")

    def _drop(self, slot: int) -> None:
        """Forget ``slot``'s actor: kill it, drop its calls and unreturned messages."""
        actor = self.actors.pop(slot, None)
        if actor is not None:
            with contextlib.suppress(Exception):
                self.ray.kill(actor, no_restart=True)
        self._buffer = deque(m for m in self._buffer if m[0] != slot)
        self._dead.pop(slot, None)
        self.pending.pop(slot, None)
        for ref in [r for r, s in self.harvests.items() if s == slot]:
            del self.harvests[ref]

    def _poll_nodes(self) -> None:
        """Between generations: build tables on nodes that joined, start actors on
        checked ones, and take in actors that are ready (a failure to start there is
        logged and the node left out)."""
        ray = self.ray
        alive = self._alive_nodes()
        for node_id, info in alive.items():
            if node_id not in self.nodes and info["Resources"].get("CPU", 0) >= 1:
                need = 4 * self.cfg.noise_size + OBJECT_STORE_MARGIN
                try:
                    self._check_store(info, need)
                except RayBackendError as e:
                    self.log(f"ray: node left out: {e}")
                    self.nodes[node_id] = _Node(node_id, info["NodeManagerAddress"], 0,
                                                lost=True)  # fmt: skip
                    continue
                self._build_table(info)
                self.log(f"ray: node {info['NodeManagerAddress']} joined; building its table")
        expected = self.checksum
        for node in self.nodes.values():
            if node.lost:
                continue
            if node.node_id not in alive:
                self._lose(node)
                continue
            if node.checked:  # workers for CPUs freed (an unreachable worker retired)
                self._place_actors([node])
                continue
            try:
                if self._check_table(node, expected, timeout=0):
                    self._place_actors([node])
            except ray.exceptions.RayError as e:
                node.lost = True
                self.log(f"ray: node {node.address} left out: {_one_line(e)}")
        for slot, (_, ref) in list(self.joining.items()):
            if not ray.wait([ref], timeout=0)[0]:
                continue
            try:
                ray.get(ref)
            except ray.exceptions.RayError as e:
                self.joining.pop(slot)
                node = self.nodes[self.slot_node[slot]]
                node.slots.remove(slot)
                if node.node_id in self._alive_nodes():  # else: the node's loss is logged
                    self.log(
                        f"ray: a worker on node {node.address} failed to start: {_one_line(e)}"
                    )
                continue
            first_on_node = not any(self.slot_node[s] == self.slot_node[slot] for s in self.actors)
            self._admit(slot)
            if first_on_node:
                self.nodes_joined += 1

    def kill_now(self) -> None:
        """At once, no clean-up (a second Ctrl-C): SIGKILL every process this one started,
        which for a private instance is all of Ray's. Actors on a cluster die with this
        driver (Ray's fate sharing); Ray's node agents would linger for about a minute."""
        for pid in _descendants(os.getpid()):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def close(self) -> None:
        """Stop every actor; disconnect (a private instance stops entirely). Nothing is
        left running, and ``ray stop`` (which kills every Ray on the machine) is never
        used."""
        ray = self.ray
        for actor in [*self.actors.values(), *(a for a, _ in self.joining.values())]:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
        self.actors.clear()
        self.joining.clear()
        self.harvests.clear()
        self.table = self._table_obj = None
        self.nodes.clear()
        self._params = None
        if self._connected:
            with contextlib.suppress(Exception):
                ray.shutdown()
            self._connected = False
        if self._restore_print is not None:
            self._restore_print()
            self._restore_print = None
