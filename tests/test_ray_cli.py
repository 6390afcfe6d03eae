"""The real CLI with ``--backend ray``: a private instance, and a cluster of two nodes
started with ``ray start`` on 127.0.0.1 (stopped by PID: never ``ray stop``, which
kills every Ray on the machine)."""

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import TINY, only_run_dir, read_log, train
from tests.test_train_cli import _alive, _children

pytest.importorskip("ray")
pytestmark = pytest.mark.ray

RAY = str(Path(sys.executable).parent / "ray")
COLUMNS = ("Generation", "GenRewMean", "GenRewStd", "GenLenMean", "TimestepsThisGen")


def columns(run_dir):
    return [tuple(r[c] for c in COLUMNS) for r in read_log(run_dir)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> set[int]:
    out, todo = set(), [pid]
    while todo:
        kids = _children(todo.pop())
        todo.extend(kids - out)
        out |= kids
    return out


def wait_for_line(proc, text: str, timeout: float) -> str:
    """Read ``proc``'s stdout until a line contains ``text``; the output so far."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            return "".join(seen)
    raise AssertionError(f"no {text!r} within {timeout} s:\n{''.join(seen)[-3000:]}")


def start_long_private_run(tmp_path, stderr):
    """The CLI on a private Ray instance, for longer than any test waits."""
    return subprocess.Popen(
        [sys.executable, "-m", "esjax.train", "--run-dir", str(tmp_path / "runs"), *TINY,
         "--backend", "ray", "--max-generations", "100000", "--snapshot-freq", "1000"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=stderr, text=True,
    )  # fmt: skip


@pytest.fixture(scope="module")
def local_columns(tmp_path_factory):
    """The log columns of 3 generations with the local pool: what every Ray run matches."""
    local = tmp_path_factory.mktemp("local")
    train(*TINY, "--max-generations", "3", cwd=local)
    return columns(only_run_dir(local))


def test_private_instance_matches_local_shows_only_progress_and_a_double_ctrl_c_leaves_nothing(
    tmp_path, local_columns
):
    # Two Ctrl-Cs within REPEAT_GRACE_S (or a signal to the whole process group, which
    # reaches the Ray processes too) are one request: a checkpoint, then a clean exit (one
    # Ctrl-C does the same: tests/test_train_cli.py). A deliberate later Ctrl-C quits at
    # once: tests/test_train.py (quits_at_once).
    proc = start_long_private_run(tmp_path, stderr=subprocess.PIPE)
    try:
        out = wait_for_line(proc, "gen    3 |", timeout=120)
        ray_processes = descendants(proc.pid)
        assert len(ray_processes) >= 4  # gcs_server, raylet, the actors, ...
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "Resume with" in err and "Traceback" not in err
    # stdout: esjax's lines only, none of Ray's
    lines = (out + rest).splitlines()
    ours = ("settings: ", "ray: ", "envs per", "2 workers", "run directory", "gen ")
    assert all(ln.startswith(ours) for ln in lines), lines
    assert "ray: 2 workers on 1 node(s)" in out
    deadline = time.monotonic() + 15
    while _alive(ray_processes) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _alive(ray_processes)
    run = only_run_dir(tmp_path)
    assert columns(run)[:3] == local_columns


@pytest.fixture(scope="module")
def ray_start_cluster(tmp_path_factory):
    """A head and a worker node started with ``ray start --block``, token auth, on
    127.0.0.1; stopped with SIGTERM to their PIDs."""
    port = free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "RAY_USAGE_STATS_ENABLED": "0"}  # fmt: skip
    env.pop("RAY_ADDRESS", None)
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--object-store-memory=200000000",
              "--block"]  # fmt: skip
    cwd = tmp_path_factory.mktemp("ray")
    procs = []
    try:
        head = subprocess.Popen(
            [RAY, "start", "--head", f"--port={port}", "--include-dashboard=false",
             "--disable-usage-stats", *common],
            env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        procs.append(head)
        wait_for_line(head, "Ray runtime started", timeout=90)
        node = subprocess.Popen(
            [RAY, "start", f"--address=127.0.0.1:{port}", "--dashboard-agent-listen-port=0",
             *common],
            env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        procs.append(node)
        wait_for_line(node, "Ray runtime started", timeout=90)
        yield f"127.0.0.1:{port}", env
    finally:
        started = set().union(*(descendants(p.pid) for p in procs))
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        deadline = time.monotonic() + 20
        while _alive(started) and time.monotonic() < deadline:
            time.sleep(0.5)
        for pid in _alive(started):  # never left behind, whatever happened above
            os.kill(pid, signal.SIGKILL)


def cli(cwd, env, *args, timeout=180):
    return subprocess.run(
        [sys.executable, "-m", "esjax.train", "--run-dir", str(Path(cwd) / "runs"), *TINY,
         "--max-generations", "3", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def test_cli_on_a_two_node_cluster_matches_local_and_refuses_bad_addresses(
    tmp_path, ray_start_cluster, local_columns
):
    address, env = ray_start_cluster
    on_cluster = tmp_path / "cluster"
    on_cluster.mkdir()
    proc = cli(on_cluster, env, "--backend", "ray", "--ray-address", address)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ray: 2 workers on 2 node(s)" in proc.stdout
    assert columns(only_run_dir(on_cluster)) == local_columns

    # A token that is not the cluster's: one line naming the fix, exit 2, no run directory.
    wrong = tmp_path / "wrong_token"
    wrong.mkdir()
    t0 = time.monotonic()
    # (Ray retries reading the session name, a second apart, 20 times by default: 2 here.)
    proc = cli(wrong, {**env, "RAY_AUTH_TOKEN": secrets.token_hex(32),
                       "RAY_NUM_REDIS_GET_RETRIES": "2"}, "--backend", "ray",
               "--ray-address", address)  # fmt: skip
    assert proc.returncode == 2 and time.monotonic() - t0 < 120
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("python -m esjax.train: error: cannot connect to 127.0.0.1")
    assert "RAY_AUTH_TOKEN" in last
    assert not (wrong / "runs").exists()

    # Nothing listening there: refused at once.
    t0 = time.monotonic()
    proc = cli(wrong, env, "--backend", "ray", "--ray-address", f"127.0.0.1:{free_port()}")
    assert proc.returncode == 2 and time.monotonic() - t0 < 30
    assert "cannot reach a Ray cluster at 127.0.0.1:" in proc.stderr.strip().splitlines()[-1]
    assert not (wrong / "runs").exists()


def test_without_ray_the_backend_is_a_one_line_error_naming_the_install(tmp_path):
    code = (
        "import sys; sys.modules['ray'] = None\n"  # as if the extra were not installed
        "from esjax.train import main\n"
        f"sys.exit(main({[*TINY, '--max-generations', '1', '--backend', 'ray']!r}))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert "needs Ray" in last and "pip install 'esjax[ray]'" in last
    assert not (tmp_path / "runs").exists()
