"""The main job end to end through ``esjax.train.main``, in this process: the run
directory, the log, budgets, option plumbing, non-finite values, disk checks. Episodes
run in this process too (``--backend inline``); tests/test_train_cli.py covers what needs
worker processes (signals, killed and hung workers).
"""

import json
import math

import jax
import numpy as np
import pytest

from esjax.config import Config
from esjax.run.checkpoint import CheckpointStore
from esjax.run.metrics import LOG_FIELDS

from .helpers import TINY, only_run_dir, read_log
from .helpers import main_inline as train

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
    # 16 hidden units on InvertedPendulum: tiny weights, so one wave of 8 training and 5
    # evaluation episodes (every 10 generations) on 2 workers
    assert "envs per worker: auto -> 7" in proc.stdout
    run = only_run_dir(tmp_path)
    assert json.loads((run / "config.json").read_text())["envs_per_worker"] == 7
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
        [
            "--no-mirrored-sampling",
            "--optimizer",
            "sgd",
            "--obs-std-floor",
            "50",
            "--output-init-std",
            "0.5",
        ],
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
    if "--obs-std-floor" in extra:  # what the workers and the checkpoints use
        from esjax.run.state import load_run

        loaded = load_run(run)
        assert (loaded.cfg.obs_std_floor, loaded.cfg.output_init_std) == (50.0, 0.5)
        for which in ("latest", "best"):  # no observation of the pendulum varies that much
            np.testing.assert_array_equal(loaded.policy(which)[2], 50.0)


def test_any_gymnasium_box_env(tmp_path):
    train("--env", "Pendulum-v1", "--noise-table-size", "100000", "--hidden-dims", "8",
          "--num-workers", "1", "--max-generations", "2", "--population-size", "4",
          "--timesteps-per-gen", "100", cwd=tmp_path)  # fmt: skip
    rows = read_log(only_run_dir(tmp_path))
    assert float(rows[0]["GenLenMean"]) == 200  # Pendulum's registered time limit


def test_non_finite_update_stops_with_one_line_and_keeps_the_last_finite_theta(tmp_path):
    """A learning rate that overflows float32 makes the first update non-finite: the run
    stops with exit code 1 and the checkpoint holds the last finite θ (generation 0's)."""
    from esjax.run.state import load_run

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
    from esjax.errors import NonFiniteError
    from esjax.run.state import load_run

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
                 max_generations=5, snapshot_freq=0, backend="inline")  # fmt: skip
    trainer = Trainer.from_config(cfg, log=lambda s: None)
    tell, calls, finite = trainer.tell, [], []

    def tell_that_overflows_in_generation_2(state, *args):
        new, info = tell(state, *args)
        calls.append(1)
        if len(calls) == 3:
            finite.append(np.asarray(state.theta))
            return new._replace(theta=new.theta.at[0].set(np.inf)), info
        return new, info

    trainer.tell = tell_that_overflows_in_generation_2
    run = _train_until_non_finite(trainer, tmp_path, "theta became non-finite in generation 2")
    assert run.step == 2
    np.testing.assert_array_equal(np.asarray(run.state.theta), finite[0])


def test_non_finite_actions_stop_training_and_keep_the_finite_theta(tmp_path):
    """θ finite but so large that the policy's products overflow (inf - inf = NaN): the
    workers report it, training stops, and the checkpoint holds that finite θ."""
    from esjax.trainer import Trainer

    cfg = Config(env="InvertedPendulumBulletEnv-v0", noise_table_size=100_000, hidden_dims=(8,),
                 num_workers=1, envs_per_worker=2, max_generations=3, backend="inline")  # fmt: skip
    trainer = Trainer.from_config(cfg, log=lambda s: None)
    huge = np.where(np.arange(trainer.num_params) % 2, 3e38, -3e38).astype(np.float32)
    es = trainer.state.es._replace(theta=jax.numpy.asarray(huge))
    trainer.state = trainer.state._replace(es=es)
    run = _train_until_non_finite(trainer, tmp_path, "non-finite action in generation 0")
    assert run.step == 0
    np.testing.assert_array_equal(np.asarray(run.state.theta), huge)


def test_too_little_disk_space_is_refused_before_anything_is_written(tmp_path, monkeypatch, capsys):
    import shutil

    from esjax import train as train_cli
    from esjax.run import rundir

    real = shutil.disk_usage
    monkeypatch.setattr(rundir.shutil, "disk_usage", lambda p: real(p)._replace(free=100_000))
    with pytest.raises(SystemExit) as info:
        train_cli.main([*TINY, "--run-dir", str(tmp_path / "runs"), "--max-generations", "1"])
    assert info.value.code == 2
    assert "MB free on the disk holding" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_resume_messages_a_user_can_act_on(tmp_path):
    main_inline = train
    small = ["--env", "InvertedPendulumBulletEnv-v0", "--preset", "none", "--noise-table-size",
             "2000000", "--hidden-dims", "linear", "--population-size", "4",
             "--timesteps-per-gen", "50", "--eval-every", "0"]  # fmt: skip
    done = main_inline(*small, "--max-generations", "2", cwd=tmp_path)
    run = only_run_dir(tmp_path)
    # no evaluation ran, so there is no best checkpoint: the hint names the latest
    assert "--checkpoint latest" in done.stdout and "--checkpoint best" not in done.stdout
    refused = main_inline("--resume", str(run), "--hidden-dims", "8", cwd=tmp_path, check=False)
    assert refused.returncode == 2 and "(the run has 'linear')" in refused.stderr
    (run / "log.csv").unlink()
    resumed = main_inline("--resume", str(run), "--max-generations", "3", cwd=tmp_path)
    assert "log.csv is missing: the log starts again at generation 2" in resumed.stdout


def test_each_progress_line_says_the_time_left_at_the_pace_so_far(monkeypatch):
    from esjax.run import metrics

    clock = [100.0]
    monkeypatch.setattr(metrics.time, "monotonic", lambda: clock[0])
    display = metrics.ProgressDisplay(1_000_000, "steps", initial=200_000)
    clock[0] += 600.0  # 10 minutes for 100,000 steps: 700,000 more take 70 minutes
    assert display.time_left(300_000) == " | ~70 min left"
    clock[0] += 6000.0
    assert display.time_left(400_000) == " | ~5.5 h left"  # 600,000 at 6,600 s per 200,000
    assert display.time_left(1_000_000) == ""
    display.close()


def test_only_a_deliberate_later_ctrl_c_quits_at_once():
    import signal

    from esjax.train import REPEAT_GRACE_S, quits_at_once

    assert not quits_at_once(signal.SIGINT, 0.001)  # a double tap, or the group's copy
    assert not quits_at_once(signal.SIGTERM, 0.001)
    assert not quits_at_once(signal.SIGTERM, 30.0)  # Slurm / systemd repeating SIGTERM
    assert quits_at_once(signal.SIGINT, REPEAT_GRACE_S + 0.1)
