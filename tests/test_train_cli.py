"""What needs the real CLI in its own process or real worker processes: signals, killed,
hung and failing workers, a disk that fills up mid-checkpoint. (tests/test_train.py runs
the rest of the CLI in this process.)"""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from esjax.config import Config
from esjax.rollout.messages import Finished
from esjax.run.checkpoint import CheckpointStore

from .helpers import TINY, only_run_dir, read_log, train

pytestmark = pytest.mark.integration


def _children(pid):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return {int(p) for p in out.stdout.split()}


def _alive(pids):
    return {p for p in pids if os.path.exists(f"/proc/{p}") and
            "Z" not in open(f"/proc/{p}/stat").read().split(")")[-1].split()[0]}  # fmt: skip


def _start_and_wait_for_generations(tmp_path, n, cmd=None, cwd=None):
    proc = subprocess.Popen(
        cmd or [sys.executable, "-m", "esjax.train", "--run-dir", str(tmp_path / "runs"),
                *TINY, "--max-generations", "100000", "--snapshot-freq", "1000"],
        cwd=cwd or tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its own process group, as a shell job or a Slurm step
    )  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline:
        log = list((tmp_path / "runs").glob("*/log.csv"))
        if log and len(log[0].read_text().splitlines()) > n:
            break
        time.sleep(0.2)
    return proc


# SIGINT (Ctrl-C, exit 130); SIGTERM takes the same handler (exit 128 + 15).
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130)])
def test_stop_signal_checkpoints_stops_workers_and_resumes(tmp_path, sig, code):
    proc = _start_and_wait_for_generations(tmp_path, 2)
    try:
        workers = _children(proc.pid)
        assert len(workers) >= 2  # the workers (and multiprocessing's resource tracker)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code, err[-2000:]
    assert "Resume with" in err and "--resume" in err and "Traceback" not in err
    time.sleep(1.0)
    assert not _alive(workers)
    run = only_run_dir(tmp_path)
    rows = read_log(run)
    store = CheckpointStore(run, read_only=True)
    assert store.steps()[-1] == len(rows), err[-3000:]  # the last completed generation is saved
    store.close()
    proc = train("--resume", str(run), "--max-generations", str(len(rows) + 1), cwd=tmp_path)
    assert len(read_log(run)) == len(rows) + 1


def _assert_stopped_with_a_final_checkpoint(tmp_path, err):
    assert "Resume with" in err and "--resume" in err and "Traceback" not in err
    assert "leaked" not in err and "resource_tracker" not in err
    run = only_run_dir(tmp_path)
    store = CheckpointStore(run, read_only=True)
    # the last completed generation is saved
    assert store.steps()[-1] == len(read_log(run)), err[-3000:]
    store.close()


def test_sigterm_to_the_process_group_twice_is_one_orderly_stop(tmp_path):
    # Slurm, systemd and `kill -TERM -PGID` signal every process of the group (the
    # workers too), and a wrapper may forward the signal again.
    proc = _start_and_wait_for_generations(tmp_path, 2)
    try:
        workers = _children(proc.pid)
        os.killpg(proc.pid, signal.SIGTERM)
        time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    _assert_stopped_with_a_final_checkpoint(tmp_path, err)
    time.sleep(1.0)
    assert not _alive(workers)


def test_make_train_stopped_by_a_group_sigterm_saves_its_checkpoint(tmp_path):
    repo = Path(__file__).resolve().parent.parent
    args = " ".join([*TINY[4:], "--run-dir", str(tmp_path / "runs"), "--snapshot-freq", "1000"])
    cmd = ["make", "-s", "--no-print-directory", "train", f"PY={sys.executable}",
           "PRESET=none", "TIMESTEPS=100000000", f"ARGS=--env {TINY[1]} {args}"]  # fmt: skip
    make = _start_and_wait_for_generations(tmp_path, 2, cmd=cmd, cwd=repo)
    os.killpg(make.pid, signal.SIGTERM)
    _, err = make.communicate(timeout=60)
    deadline = time.time() + 60  # if make exits first, the trainer still saves, then exits
    while time.time() < deadline and subprocess.run(["pgrep", "-g", str(make.pid)],
                                                    capture_output=True).stdout:  # fmt: skip
        time.sleep(0.2)
    run = only_run_dir(tmp_path)
    store = CheckpointStore(run, read_only=True)
    assert store.steps()[-1] == len(read_log(run)), err[-3000:]
    store.close()
    # a quiet stop: no resource-tracker warnings about leaked semaphores or shared memory
    assert "leaked" not in err and "resource_tracker" not in err and "Traceback" not in err


def test_killed_or_hung_worker_is_replaced_without_lost_or_double_results(tmp_path):
    """Determinism makes this checkable: a run whose workers are SIGKILLed, one while idle
    and one mid-generation with episodes in flight, and one SIGSTOPped mid-generation (a
    hung simulator: alive, silent), must log the same results as one where nothing
    happened, and the log must count the restarts."""
    from esjax.trainer import Trainer

    cfg = Config(env="InvertedPendulumBulletEnv-v0", noise_table_size=2_000_000,
                 hidden_dims=(16,), num_workers=2, envs_per_worker=2, population_size=8,
                 timesteps_per_gen=200, max_generations=4, eval_prob=0.2)  # fmt: skip

    def run(disturb: bool):
        # the reference runs in this process; the disturbed run on worker processes
        backend = "local" if disturb else "inline"
        trainer = Trainer.from_config(replace(cfg, backend=backend), log=lambda s: None)
        trainer.start()
        trainer.dispatcher.stall_timeout_s = 8.0  # a spawning worker stays under this
        pool, rows, results = trainer.pool, [], {1: [], 2: []}
        recv = pool.recv

        def recv_and_disturb(timeout=1.0):
            msg = recv(timeout)
            gen = trainer.state.generation
            if disturb and msg is not None and isinstance(msg.message, Finished) and gen in results:
                results[gen].append(msg)
                if gen == 1 and len(results[1]) == 3:
                    pool.procs[1].kill()  # mid-generation: it has episodes queued
                if gen == 2 and len(results[2]) == 2:
                    os.kill(pool.procs[0].pid, signal.SIGSTOP)
            return msg

        if disturb:
            pool.recv = recv_and_disturb
        try:
            if disturb:
                pool.procs[0].kill()  # idle, between generations
            for _ in range(cfg.max_generations):
                rows.append(trainer.step())
            procs = list(getattr(pool, "procs", []))
        finally:
            trainer.close()
        assert not any(p.is_alive() for p in procs)
        keys = ["GenRewMean", "GenRewStd", "EpisodesThisGen", "TimestepsThisGen", "EvalGenCount"]
        return [[r[k] for k in keys] for r in rows], np.asarray(trainer.state.theta), rows

    ref, theta_ref, _ = run(disturb=False)
    got, theta, rows = run(disturb=True)
    assert [r["WorkerRestarts"] for r in rows] == [1, 1, 1, 0]
    assert got == ref
    np.testing.assert_array_equal(theta, theta_ref)


def test_worker_that_keeps_dying_stops_training():
    """A worker whose every replacement dies at once (a crash loop) ends training with an
    error after a bounded number of restarts, and leaves no process behind."""
    from esjax.errors import WorkerError
    from esjax.rollout.dispatch import Dispatcher
    from esjax.trainer import Trainer

    cfg = Config(env="InvertedPendulumBulletEnv-v0", noise_table_size=100_000, hidden_dims=(8,),
                 num_workers=1, envs_per_worker=1, max_generations=1)  # fmt: skip
    trainer = Trainer.from_config(cfg, log=lambda s: None)
    trainer.start()
    pool, spawned = trainer.pool, []
    spawn = pool._spawn

    def spawn_and_kill(slot):
        spawn(slot)
        spawned.append(pool.procs[slot])
        pool.procs[slot].kill()

    pool._spawn = spawn_and_kill
    pool.procs[0].kill()
    try:
        with pytest.raises(WorkerError, match="worker 0 keeps dying"):
            trainer.step()
    finally:
        trainer.close()
    assert len(spawned) == Dispatcher.MAX_CONSECUTIVE_RESTARTS
    assert not any(p.is_alive() for p in spawned)


def test_worker_exception_surfaces_with_its_traceback(monkeypatch):
    from esjax.core.policy import PolicySpec
    from esjax.errors import WorkerError
    from esjax.rollout.local import LocalPool
    from esjax.rollout.worker import WorkerConfig

    spec = PolicySpec(3, 1, (4,), "tanh", (-2.0,), (2.0,))
    cfg = WorkerConfig("NoSuchEnv-v0", spec, 10, 0.02, 0.0, 1)
    pool = LocalPool(cfg, 1, seed=0, log=lambda s: None)
    try:
        with pytest.raises(WorkerError, match="NoSuchEnv") as info:
            pool.start()
        assert "Traceback" in str(info.value) and "worker 0 failed" in str(info.value)
    finally:
        procs = list(pool.procs)
        pool.close()
    assert not any(p.is_alive() for p in procs)


def _file_size_limit(limit: int):
    """preexec_fn: writes past ``limit`` bytes in any one file fail (EFBIG), like a disk
    that fills up mid-checkpoint; the SIG_IGN disposition survives exec."""
    import resource

    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_failing_checkpoint_write_stops_with_one_line_and_leaves_nothing_that_loads(tmp_path):
    # 4,609 parameters: a checkpoint's data (θ, Adam's two moments, the generation's θ:
    # ~74 KB) crosses the 30 KB limit in any file holding two or more of its arrays; the
    # shared noise table (18 KB), config.json and log.csv stay under it. How tensorstore
    # groups the arrays into files varies with timing, so the first save to fail may be a
    # later one: everything before it must load, nothing of it may.
    args = ["--env", "InvertedPendulumBulletEnv-v0", "--preset", "none",
            "--hidden-dims", "64", "64",
            "--noise-table-size", "4609", "--num-workers", "1", "--envs-per-worker", "1",
            "--population-size", "4", "--timesteps-per-gen", "100", "--max-generations", "4",
            "--snapshot-freq", "1", "--backend", "inline"]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "esjax.train", "--run-dir", str(tmp_path / "runs"), *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        preexec_fn=_file_size_limit(30_000),
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("esjax: error:")]
    assert len(errors) == 1 and "could not write checkpoint " in errors[0], proc.stderr
    failed = int(errors[0].split("could not write checkpoint ")[1].split()[0])
    assert "File too large" in errors[0]
    assert "free some space" in errors[0] and "Traceback" not in proc.stderr
    run = only_run_dir(tmp_path)
    assert [int(r["Generation"]) for r in read_log(run)] == list(range(failed))
    assert Config.from_dict(json.loads((run / "config.json").read_text())).max_generations == 4
    assert not list((run / "checkpoints").glob("*tmp*"))  # the half-written save is gone
    store = CheckpointStore(run, read_only=True)
    try:
        assert store.steps() == list(range(1, failed))  # the earlier saves, whole
    finally:
        store.close()
    if failed == 1:
        assert "then start the run again" in errors[0]
        resumed = train("--resume", str(run), cwd=tmp_path, check=False)
        assert resumed.returncode == 2 and "no checkpoint" in resumed.stderr
    else:
        assert f"resume from generation {failed - 1}" in errors[0]
        train("--resume", str(run), cwd=tmp_path)  # without the limit: it finishes
        assert [int(r["Generation"]) for r in read_log(run)] == [0, 1, 2, 3]
