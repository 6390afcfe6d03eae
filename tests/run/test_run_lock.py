"""One owner per run directory: a second trainer is refused in one line naming the holder,
and a lock whose holder died (kill -9) does not block a resume."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from esjax.errors import ConfigError
from esjax.run.rundir import RunLock
from tests.helpers import TINY, only_run_dir, read_log, train


def test_a_second_lock_is_refused_naming_pid_and_host_and_released_on_release(tmp_path):
    first = RunLock(tmp_path)
    with pytest.raises(ConfigError, match=f"PID {os.getpid()} on {socket.gethostname()}"):
        RunLock(tmp_path)
    first.release()
    RunLock(tmp_path).release()


@pytest.mark.integration
def test_two_resumes_at_once_one_is_refused_and_a_killed_holder_frees_the_run(tmp_path):
    # inline (episodes in the trainer's process): the lock is the trainer's, and the
    # resumes below keep the run's backend, so no worker process is started 4 times
    train(*TINY, "--backend", "inline", "--max-generations", "1", cwd=tmp_path)
    run = only_run_dir(tmp_path)
    cmd = [sys.executable, "-m", "esjax.train", "--resume", str(run), "--max-generations", "500"]
    holder = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    try:
        for line in holder.stdout:  # wait until it trains
            if line.startswith("resuming"):
                break
        second = train("--resume", str(run), "--max-generations", "500", cwd=tmp_path,
                       check=False)  # fmt: skip
        assert second.returncode == 2
        assert f"is being trained by PID {holder.pid}" in second.stderr
        assert second.stderr.count("\n") == 1
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
    finally:
        holder.kill()
    time.sleep(0.5)
    budget = len(read_log(run)) + 2  # past the holder's last checkpoint
    resumed = train("--resume", str(run), "--max-generations", str(budget), cwd=tmp_path,
                    check=False)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    gens = [int(r["Generation"]) for r in read_log(run)]
    assert gens == list(range(budget))
