"""The Ray backend's cluster side: the session (connecting, Ray's own output) and one
noise table per node.

- ``RaySession`` joins a cluster ("auto" or HOST:PORT, checked reachable first) or starts
  a private local instance (a throw-away auth token, nothing written to $HOME), keeps
  Ray's notices out of the progress display, and lists the alive nodes.
- ``NodeTables``: **one noise table per node**, built there from the seed by a
  node-pinned task (never sent over the network), held in that node's object store and
  read zero-copy by every actor on the node and by the trainer. Each node's table is
  checked against the trainer's by checksum before its node gets workers.

Ray is an optional extra (``pip install 'esjax[ray]'``): nothing here is imported by the
other backends. The actors and the transport are in ``esjax.rollout.ray_pool``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import sys
import warnings
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from esjax.core.noise import fill_noise_table
from esjax.errors import RayBackendError
from esjax.rollout.transport import START_TIMEOUT_S

INSTALL_HINT = "pip install 'esjax[ray]' (make setup installs it)"
CONNECT_TIMEOUT_S = 10.0  # reaching the head's port before handing over to ray.init
OBJECT_STORE_MARGIN = 64 << 20  # bytes beyond the table: θ of a few generations, results
WORKER_ENV = {  # every actor: CPU-only JAX, one BLAS thread (it shares its core with an env)
    "JAX_PLATFORMS": "cpu",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


def import_ray():
    """The ``ray`` module, or a one-line RayBackendError naming the install command."""
    try:
        import ray
    except ImportError:
        raise RayBackendError(f"--backend ray needs Ray: install it with {INSTALL_HINT}") from None
    return ray


def one_line(err: BaseException) -> str:
    """The last meaningful line of an exception raised on a worker (its cause)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    for ln in reversed(lines):
        if not ln.startswith(("File ", "^", "~", "During handling", "The above exception")):
            return ln
    return type(err).__name__


def has_cpu(info: dict) -> bool:
    """Whether the node ``info`` (an entry of ``ray.nodes()``) can run rollout workers."""
    return info["Resources"].get("CPU", 0) >= 1


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


class RaySession:
    """A connection to a Ray cluster. ``address``: None starts a private local instance
    with ``num_cpus`` CPUs (never a stranger's cluster); "auto" or HOST:PORT joins one."""

    def __init__(self, address: str | None, num_cpus: int):
        self.address, self.num_cpus = address, num_cpus
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if address is None and "ray" not in sys.modules:
            # A private instance: a throw-away token (Ray's ports listen on every
            # interface); nothing written to $HOME. Ray reads these when imported.
            os.environ["RAY_AUTH_MODE"] = "token"
            os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
        self.ray = import_ray()
        self.messages: deque[str] = deque(maxlen=100)  # Ray's own notices, not shown
        self.connected = False
        self._restore_print: Callable[[], None] | None = None

    def connect(self) -> None:
        """ray.init; RayBackendError (one line) naming the fix if it cannot."""
        ray = self.ray
        kw = dict(namespace="esjax", logging_level="ERROR", log_to_driver=False,
                  runtime_env={"env_vars": WORKER_ENV})  # fmt: skip
        if self.address is None:  # "local": never a cluster of someone else's
            kw.update(address="local", num_cpus=self.num_cpus or os.cpu_count() or 1,
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
            raise RayBackendError(f"cannot connect to {where}: {one_line(e)}; {hint}") from None
        self.connected = True
        self.driver_node = ray.get_runtime_context().get_node_id()

    def _quiet_ray(self) -> None:
        """Keep Ray's error notices ("(raylet) A worker died...") out of the progress
        display: the driver prints them to stdout even with ``log_to_driver=False``.
        They are kept in ``messages``."""
        try:
            import ray._private.worker as rw
        except ImportError:
            return
        original = getattr(rw, "print_to_stdstream", None)
        if original is None:
            return

        def keep(data, ignore_prefix=False):
            for line in data.get("lines", []):
                self.messages.append(str(line))

        rw.print_to_stdstream = keep
        self._restore_print = lambda: setattr(rw, "print_to_stdstream", original)

    def alive_nodes(self) -> dict[str, dict]:
        """node id -> its ``ray.nodes()`` entry, for the nodes alive now."""
        return {n["NodeID"]: n for n in self.ray.nodes() if n.get("Alive")}

    def pinned(self, node_id: str, num_cpus: float = 0) -> dict:
        """Options that run a task or actor on ``node_id`` and nowhere else."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        pin = NodeAffinitySchedulingStrategy(node_id, soft=False)
        return dict(num_cpus=num_cpus, scheduling_strategy=pin)

    @staticmethod
    def kill_now() -> None:
        """At once, no clean-up (a second Ctrl-C): SIGKILL every process this one started,
        which for a private instance is all of Ray's. Actors on a cluster die with this
        driver (Ray's fate sharing); Ray's node agents would linger for about a minute."""
        for pid in _descendants(os.getpid()):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def shutdown(self) -> None:
        """Disconnect (a private instance stops entirely); ``ray stop``, which kills every
        Ray on the machine, is never used."""
        if self.connected:
            with contextlib.suppress(Exception):
                self.ray.shutdown()
            self.connected = False
        if self._restore_print is not None:
            self._restore_print()
            self._restore_print = None


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


@dataclass
class Node:
    node_id: str
    address: str
    cpus: int
    table: object = None  # ObjectRef of its noise table
    facts: object = None  # ObjectRef of (checksum, numpy version), until checked
    checked: bool = False
    lost: bool = False  # it ran workers and is gone (counted: NodeTables.lose)
    left_out: bool = False  # never used: no room for its table, or its table failed

    @property
    def usable(self) -> bool:
        """Checked, and neither lost nor left out: it may get workers."""
        return self.checked and not self.lost and not self.left_out


class NodeTables:
    """The nodes that run workers, each with its own noise table (see the module
    docstring); ``table`` is the trainer's zero-copy view of its own node's."""

    def __init__(self, session: RaySession, seed: int, size: int,
                 log: Callable[[str], None]):  # fmt: skip
        self.session, self.ray = session, session.ray
        self.seed, self.size, self.log = seed, size, log
        self.need = 4 * size + OBJECT_STORE_MARGIN  # object store bytes per node
        self.nodes: dict[str, Node] = {}
        self.table: np.ndarray | None = None
        self.checksum: int | None = None
        self.lost = 0  # nodes lost over the pool's life
        self._table_obj = None

    def build_all(self) -> None:
        """Tables on every alive node with a CPU (and the driver's), checked against the
        trainer's. RayBackendError for a node without room or with another table."""
        alive = self.session.alive_nodes()
        if not any(has_cpu(n) for n in alive.values()):
            raise RayBackendError("the Ray cluster has no node with a CPU for rollout workers")
        wanted = [i for i in alive.values()
                  if i["NodeID"] == self.session.driver_node or has_cpu(i)]  # fmt: skip
        for info in wanted:
            self.check_store(info)
        for info in wanted:
            self.build(info)
        obj = self.ray.get(self.nodes[self.session.driver_node].table, timeout=START_TIMEOUT_S)
        self._table_obj = obj  # keeps the object store's buffer mapped
        self.table = _writable_view(obj)
        self.checksum = table_checksum(obj)
        for node in self.nodes.values():
            self.check(node, timeout=START_TIMEOUT_S)

    def check_store(self, info: dict) -> None:
        have = int(info["Resources"].get("object_store_memory", 0))
        if have < self.need:
            raise RayBackendError(
                f"node {info['NodeManagerAddress']} has {have / 2**20:.0f} MiB of object "
                f"store, and the noise table needs {self.need / 2**20:.0f} MiB: pass a smaller "
                "--noise-table-size, or give the node more (ray start --object-store-memory; "
                "in Docker, --shm-size)"
            )

    def build(self, info: dict) -> Node:
        """Start building ``info``'s node's table (a pinned task) and its facts."""
        ray, node_id = self.ray, info["NodeID"]
        opts = dict(self.session.pinned(node_id), max_retries=0)
        table = ray.remote(_make_table).options(**opts).remote(self.seed, self.size)
        facts = ray.remote(_node_table_facts).options(**opts).remote(table)
        node = Node(node_id, info["NodeManagerAddress"], int(info["Resources"].get("CPU", 0)),
                    table, facts)  # fmt: skip
        self.nodes[node_id] = node
        return node

    def check(self, node: Node, timeout: float | None) -> bool:
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
        if checksum != self.checksum:
            raise RayBackendError(
                f"node {node.address} built a different noise table (checksum {checksum:08x}, "
                f"the trainer's {self.checksum:08x}; numpy {numpy_version} there, "
                f"{np.__version__} here): install the same numpy version on every node"
            )
        node.checked, node.facts = True, None
        return True

    def lose(self, node: Node) -> None:
        if not node.lost:
            node.lost, node.table = True, None
            self.lost += 1
            self.log(f"ray: node {node.address} lost; going on with the other nodes")

    def refresh(self) -> list[Node]:
        """Between generations: start tables on nodes that joined (a node without room is
        logged and left out), note the nodes lost; the checked nodes, ready for workers."""
        alive = self.session.alive_nodes()
        for node_id, info in alive.items():
            if node_id in self.nodes or not has_cpu(info):
                continue
            try:
                self.check_store(info)
            except RayBackendError as e:
                self.log(f"ray: node left out: {e}")
                self.nodes[node_id] = Node(node_id, info["NodeManagerAddress"], 0, left_out=True)
                continue
            self.build(info)
            self.log(f"ray: node {info['NodeManagerAddress']} joined; building its table")
        ready = []
        for node in self.nodes.values():
            if node.lost or node.left_out:
                continue
            if node.node_id not in alive:
                self.lose(node)
                continue
            try:
                if self.check(node, timeout=0):
                    ready.append(node)
            except self.ray.exceptions.RayError as e:
                node.left_out, node.table = True, None  # it never ran workers: not lost
                self.log(f"ray: node {node.address} left out: {one_line(e)}")
        return ready

    def close(self) -> None:
        self.table = self._table_obj = None
        self.nodes.clear()


def machine_mismatch(node_machines: dict[str, dict], nodes: dict[str, Node]) -> str | None:
    """One line naming the nodes whose machine differs from the driver's in what changes
    results (``esjax.provenance.result_differences``), or None when none does."""
    from esjax.provenance import machine_record, result_differences

    mine = machine_record()
    differ = []
    for node_id, record in sorted(node_machines.items()):
        changed = result_differences(mine, record or {})
        if changed:
            name = nodes[node_id].address if node_id in nodes else node_id[:8]
            differ.append(f"{name}: {', '.join(changed)}")
    if not differ:
        return None
    return (
        "ray: warning: nodes differ from this machine in what changes results ("
        + "; ".join(differ)
        + "): results will not be bit-identical to a local run"
    )
