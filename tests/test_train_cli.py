"""The main job end to end through the real CLI and worker pool."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from esjax.checkpoint import CheckpointStore
from esjax.config import Config
from esjax.metrics import LOG_FIELDS

from .helpers import TINY, only_run_dir, read_log, train

REFERENCE_COLUMNS = [
    "Generation", "GenRewMean", "GenRewStd", "GenLenMean", "EvalGenRewardMean",
    "EvalGenRewardStd", "EvalGenLengthMean", "EvalGenCount", "EpisodesThisGen", "EpisodesSoFar",
    "TimestepsThisGen", "TimestepsSoFar", "UniqueWorkers", "ResultsSkippedFrac", "ObCount",
    "TimeElapsedThisGen", "TimeElapsed", "TimePredictMin", "TimePredictMax", "TimePredictMean",
    "TimePredictCount",
]  # fmt: skip


def test_run_directory_config_log_and_snapshots(tmp_path):
    proc = train(*TINY, "--max-generations", "4", "--snapshot-freq", "2", "--eval-prob", "0.3",
                 cwd=tmp_path)  # fmt: skip
    run = only_run_dir(tmp_path)
    assert "InvertedPendulumBulletEnv-v0" in run.name
    cfg = Config.from_dict(json.loads((run / "config.json").read_text()))
    assert cfg.max_generations == 4 and cfg.hidden_dims == (16,)

    rows = read_log(run)
    assert list(rows[0].keys())[: len(REFERENCE_COLUMNS)] == REFERENCE_COLUMNS
    assert list(rows[0].keys()) == list(LOG_FIELDS)
    assert [int(r["Generation"]) for r in rows] == [0, 1, 2, 3]
    for r in rows:
        # a generation has at least population_size episodes and timesteps_per_gen steps
        assert int(r["EpisodesThisGen"]) >= 8 and int(r["TimestepsThisGen"]) >= 200
        assert int(r["EpisodesThisGen"]) % 2 == 0  # mirrored pairs
        assert 0.0 <= float(r["ResultsSkippedFrac"]) < 1.0
        assert int(r["TimePredictCount"]) > 0 and float(r["TimePredictMean"]) > 0
        assert 0.0 < float(r["EnvTimeFrac"]) <= 1.0
        assert 0.0 < float(r["GlueTimeFrac"]) < 1.0 - float(r["EnvTimeFrac"])
    assert int(rows[-1]["EpisodesSoFar"]) == sum(int(r["EpisodesThisGen"]) for r in rows)
    assert int(rows[-1]["TimestepsSoFar"]) == sum(int(r["TimestepsThisGen"]) for r in rows)
    assert sum(int(r["EvalGenCount"]) for r in rows) > 0

    store = CheckpointStore(run, read_only=True)
    steps = store.steps()
    assert {2, 4} <= set(steps) and store.resolve("best") in steps
    for extra in set(steps) - {2, 4}:  # saved because its evaluation was a new best
        assert store.load_meta(extra)["eval_return"] is not None
    meta = store.load_meta(4)
    store.close()
    assert meta["generation"] == 4 and meta["num_params"] == 5 * 16 + 16 + 16 + 1
    assert Config.from_dict(meta["config"]) == cfg

    # the terminal shows one compact line per generation
    gen_lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("gen ")]
    assert len(gen_lines) == 4 and "steps/s" in gen_lines[0]
    assert "argv[0]" not in proc.stdout + proc.stderr


def test_envs_per_worker_auto_is_printed_and_recorded(tmp_path):
    args = [a for a in TINY]
    i = args.index("--envs-per-worker")
    del args[i : i + 2]
    proc = train(*args, "--max-generations", "1", cwd=tmp_path)
    # 16 hidden units on InvertedPendulum: tiny weights, so one wave of 8 episodes / 2
    assert "envs per worker: auto -> 5" in proc.stdout
    run = only_run_dir(tmp_path)
    assert json.loads((run / "config.json").read_text())["envs_per_worker"] == 5
    train("--resume", str(run), "--envs-per-worker", "3", "--max-generations", "2", cwd=tmp_path)
    assert json.loads((run / "config.json").read_text())["envs_per_worker"] == 3


def test_timestep_budget_stops_the_run(tmp_path):
    train(*TINY, "--max-timesteps", "1500", "--snapshot-freq", "0", cwd=tmp_path)
    rows = read_log(only_run_dir(tmp_path))
    steps = [int(r["TimestepsSoFar"]) for r in rows]
    assert steps[-1] >= 1500 and (len(steps) == 1 or steps[-2] < 1500)


def test_target_return_stops_the_run_once_an_evaluation_reaches_it(tmp_path):
    """Evaluations every 2 generations: the run ends after the first generation whose
    periodic evaluation scores >= the target, and resuming it says the budget is spent."""
    train(*TINY, "--eval-every", "2", "--eval-episodes", "3", "--target-return", "40",
          "--learning-rate", "0.05", "--max-generations", "40", "--snapshot-freq", "0",
          cwd=tmp_path)  # fmt: skip
    run = only_run_dir(tmp_path)
    rows = read_log(run)
    evals = [float(r["PeriodicEvalRewMean"]) if int(r["PeriodicEvalCount"]) else None
             for r in rows]  # fmt: skip
    hits = [i for i, e in enumerate(evals) if e is not None and e >= 40]
    assert hits == [len(rows) - 1] and 1 < len(rows) < 40  # stopped at the first hit
    assert float(rows[-1]["EvalBestSoFar"]) >= 40
    resumed = train("--resume", str(run), "--max-generations", "80", cwd=tmp_path, check=False)
    assert resumed.returncode == 2 and "--target-return" in resumed.stderr


@pytest.mark.parametrize(
    "extra",
    [
        ["--no-mirrored-sampling", "--optimizer", "sgd"],
        ["--discretize-actions", "--ac-bins", "3", "--nonlin", "elu"],
        ["--no-gradient-optimizer", "--no-observation-normalization", "--divide-by-stdev"],
        ["--return-proc-mode", "centered_sign_rank", "--no-weight-decay", "--nonlin", "lrelu"],
    ],
)
def test_option_combinations_train_through_the_cli(tmp_path, extra):
    """The flags reach the trainer (tests/test_trainer.py checks what each one does)."""
    train(*TINY, "--max-generations", "2", *extra, cwd=tmp_path)
    run = only_run_dir(tmp_path)
    rows = read_log(run)
    assert len(rows) == 2 and all(math.isfinite(float(r["GenRewMean"])) for r in rows)
    cfg = Config.from_dict(json.loads((run / "config.json").read_text()))
    assert cfg.mirrored_sampling == ("--no-mirrored-sampling" not in extra)
    assert cfg.discretize_actions == ("--discretize-actions" in extra)
    if "--no-observation-normalization" in extra:
        assert all(int(r["ObCount"]) == 0 for r in rows)


def test_any_gymnasium_box_env(tmp_path):
    train("--env", "Pendulum-v1", "--noise-table-size", "100000", "--hidden-dims", "8",
          "--num-workers", "1", "--max-generations", "2", "--population-size", "4",
          "--timesteps-per-gen", "100", cwd=tmp_path)  # fmt: skip
    rows = read_log(only_run_dir(tmp_path))
    assert float(rows[0]["GenLenMean"]) == 200  # Pendulum's registered time limit


def _children(pid):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return {int(p) for p in out.stdout.split()}


def _alive(pids):
    return {p for p in pids if os.path.exists(f"/proc/{p}") and
            "Z" not in open(f"/proc/{p}/stat").read().split(")")[-1].split()[0]}  # fmt: skip


def _start_and_wait_for_generations(tmp_path, n):
    proc = subprocess.Popen(
        [sys.executable, "-m", "esjax.train", "--run-dir", str(tmp_path / "runs"), *TINY,
         "--max-generations", "100000", "--snapshot-freq", "1000"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline:
        log = list((tmp_path / "runs").glob("*/log.csv"))
        if log and len(log[0].read_text().splitlines()) > n:
            break
        time.sleep(0.2)
    return proc


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
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
    assert store.steps()[-1] == len(rows)  # the last completed generation is saved
    store.close()
    proc = train("--resume", str(run), "--max-generations", str(len(rows) + 1), cwd=tmp_path)
    assert len(read_log(run)) == len(rows) + 1


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
        trainer = Trainer(cfg, log=lambda s: None)
        trainer.start()
        trainer.dispatcher.stall_timeout_s = 8.0  # a spawning worker stays under this
        pool, rows, results = trainer.pool, [], {1: [], 2: []}
        recv = pool.recv

        def recv_and_disturb(timeout=1.0):
            msg = recv(timeout)
            gen = trainer.state.generation
            if disturb and msg is not None and msg[0] == "result" and gen in results:
                results[gen].append(msg)
                if gen == 1 and len(results[1]) == 3:
                    pool.procs[1].kill()  # mid-generation: it has episodes queued
                if gen == 2 and len(results[2]) == 2:
                    os.kill(pool.procs[0].pid, signal.SIGSTOP)
            return msg

        pool.recv = recv_and_disturb
        try:
            if disturb:
                pool.procs[0].kill()  # idle, between generations
            for _ in range(cfg.max_generations):
                rows.append(trainer.step())
            procs = list(pool.procs)
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
    from esjax.dispatch import Dispatcher, WorkerError
    from esjax.trainer import Trainer

    cfg = Config(env="InvertedPendulumBulletEnv-v0", noise_table_size=100_000, hidden_dims=(8,),
                 num_workers=1, envs_per_worker=1, max_generations=1)  # fmt: skip
    trainer = Trainer(cfg, log=lambda s: None)
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
    from esjax.dispatch import WorkerError
    from esjax.policy import PolicySpec
    from esjax.pool import LocalPool, WorkerConfig

    spec = PolicySpec(3, 1, (4,), "tanh", (-2.0,), (2.0,))
    cfg = WorkerConfig("Pendulum-v1", spec, "no-such-shared-memory", 10, 0.02, 0.0, 1)
    pool = LocalPool(cfg, 1)
    try:
        with pytest.raises(WorkerError, match="FileNotFoundError") as info:
            pool.start()
        assert "Traceback" in str(info.value) and "worker 0 failed" in str(info.value)
    finally:
        procs = list(pool.procs)
        pool.close()
    assert not any(p.is_alive() for p in procs)


def test_non_finite_update_stops_with_one_line_and_keeps_the_last_finite_theta(tmp_path):
    """A learning rate that overflows float32 makes the first update non-finite: the run
    stops with exit code 1 and the checkpoint holds the last finite θ (generation 0's)."""
    from esjax.state import load_run

    proc = train(*TINY, "--learning-rate", "1e39", "--max-generations", "3", cwd=tmp_path,
                 check=False)  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("esjax: error:")]
    assert errors == ["esjax: error: theta became non-finite in generation 0: lower "
                      "--learning-rate or --noise-stdev"]  # fmt: skip
    run = load_run(only_run_dir(tmp_path))
    assert run.step == 0 and np.isfinite(np.asarray(run.state.theta)).all()
    assert read_log(only_run_dir(tmp_path)) == []


def _train_until_non_finite(trainer, run_dir, match: str):
    """Train until NonFiniteError (message ``match``); the run's latest checkpoint."""
    from esjax.dispatch import NonFiniteError
    from esjax.state import load_run

    trainer.start()
    try:
        with pytest.raises(NonFiniteError, match=match):
            trainer.train(run_dir)
    finally:
        trainer.close()
    return load_run(run_dir, "latest", trainer.cfg)


def test_non_finite_update_after_some_generations_saves_the_last_finite_state(tmp_path):
    from esjax.trainer import Trainer

    cfg = Config(env="InvertedPendulumBulletEnv-v0", noise_table_size=100_000, hidden_dims=(8,),
                 num_workers=1, envs_per_worker=2, population_size=4, timesteps_per_gen=100,
                 max_generations=5, snapshot_freq=0)  # fmt: skip
    trainer = Trainer(cfg, log=lambda s: None)
    tell, calls, finite = trainer._tell, [], []

    def tell_that_overflows_in_generation_2(state, *args):
        new, info = tell(state, *args)
        calls.append(1)
        if len(calls) == 3:
            finite.append(np.asarray(state.theta))
            return new._replace(theta=new.theta.at[0].set(np.inf)), info
        return new, info

    trainer._tell = tell_that_overflows_in_generation_2
    run = _train_until_non_finite(trainer, tmp_path, "theta became non-finite in generation 2")
    assert run.step == 2
    np.testing.assert_array_equal(np.asarray(run.state.theta), finite[0])


def test_non_finite_actions_stop_training_and_keep_the_finite_theta(tmp_path):
    """θ finite but so large that the policy's products overflow (inf - inf = NaN): the
    workers report it, training stops, and the checkpoint holds that finite θ."""
    from esjax.trainer import Trainer

    cfg = Config(env="InvertedPendulumBulletEnv-v0", noise_table_size=100_000, hidden_dims=(8,),
                 num_workers=1, envs_per_worker=2, max_generations=3)  # fmt: skip
    trainer = Trainer(cfg, log=lambda s: None)
    huge = np.where(np.arange(trainer.num_params) % 2, 3e38, -3e38).astype(np.float32)
    es = trainer.state.es._replace(theta=jax.numpy.asarray(huge))
    trainer.state = trainer.state._replace(es=es)
    run = _train_until_non_finite(trainer, tmp_path, "non-finite action in generation 0")
    assert run.step == 0
    np.testing.assert_array_equal(np.asarray(run.state.theta), huge)


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
    args = ["--env", "InvertedPendulumBulletEnv-v0", "--hidden-dims", "64", "64",
            "--noise-table-size", "4609", "--num-workers", "1", "--envs-per-worker", "1",
            "--population-size", "4", "--timesteps-per-gen", "100", "--max-generations", "4",
            "--snapshot-freq", "1"]  # fmt: skip
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


def test_too_little_disk_space_is_refused_before_anything_is_written(tmp_path, monkeypatch, capsys):
    import shutil

    from esjax import train as train_cli

    real = shutil.disk_usage
    monkeypatch.setattr(train_cli.shutil, "disk_usage", lambda p: real(p)._replace(free=100_000))
    with pytest.raises(SystemExit) as info:
        train_cli.main([*TINY, "--run-dir", str(tmp_path / "runs"), "--max-generations", "1"])
    assert info.value.code == 2
    assert "MB free on the disk holding" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
