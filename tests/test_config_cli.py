"""Bad input through the CLI (``esjax.train.main``, in this process): one-line error,
exit code 2, nothing created."""

import subprocess
import sys

import pytest

from esjax.config import Config
from esjax.errors import ConfigError
from esjax.train import build_parser, parse

from .helpers import run_module

FAST = ["--noise-table-size", "200000", "--max-generations", "1"]


def run_cli(*args, cwd):
    return run_module("esjax.train", "--run-dir", str(cwd / "runs"), *args)


def error_line(proc):
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("python -m esjax")]
    return lines[-1] if lines else proc.stderr


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--population-size", "-4"], "--population-size must be >= 1"),
        (["--population-size", "0"], "--population-size must be >= 1"),
        (["--timesteps-per-gen", "-1"], "--timesteps-per-gen must be >= 1"),
        (["--num-workers", "-2"], "--num-workers must be >= 0"),
        (["--eval-prob", "1.5"], "--eval-prob is a probability"),
        (["--calc-obstat-prob", "-0.1"], "--calc-obstat-prob is a probability"),
        (["--noise-stdev", "0"], "--noise-stdev must be > 0"),
        (["--learning-rate", "-1"], "--learning-rate must be > 0"),
        (["--discretize-actions", "--ac-bins", "1"], "--ac-bins must be >= 2"),
        (["--hidden-dims", "0"], "--hidden-dims needs positive sizes, or linear"),
        (["--no-fitness-shaping", "--return-proc-mode", "sign"], "no effect"),
        (["--nonlin", "sigmoid"], "invalid choice"),
        (["--envs-per-worker", "0"], "--envs-per-worker must be >= 1"),
        (["--noise-table-size", "0"], "--noise-table-size must be >= 1"),
        (["--max-timesteps", "-5"], "--max-timesteps must be >= 0"),
        (["--max-generations", "-1"], "--max-generations must be >= 0"),
        (["--max-timesteps", "0", "--max-generations", "0"], "no budget"),
        (["--snapshot-freq", "-1"], "--snapshot-freq must be >= 0"),
        (["--keep-checkpoints", "0"], "--keep-checkpoints must be >= 1"),
        (["--l2coeff", "-0.1"], "--l2coeff must be >= 0"),
        (["--ac-noise-std", "-1"], "--ac-noise-std must be a finite number >= 0"),
        (["--momentum", "1.0"], "--momentum must be in [0, 1)"),
        (["--eval-prob", "1"], "leaves no training episodes"),
        (["--eval-every", "-1"], "--eval-every must be >= 0"),
        (["--eval-episodes", "0"], "--eval-episodes must be >= 1"),
        (["--target-return", "nan"], "--target-return must be a number"),
        (["--reward-shift", "inf"], "--reward-shift must be a finite number"),
        (["--preset", "Nope-v0"], "unknown preset 'Nope-v0': choose one of"),
        (["--preset", "missing.toml"], "--preset missing.toml: no such file"),
        (["--preset", "Hopper-v5", "--resume", "runs/x"], "cannot be combined with --resume"),
        (["--preset", "Hopper-v5", "--algo", "pgpe"], "preset Hopper-v5 is tuned for ars; drop"),
        (["--population-size", "ten"], "invalid count"),
        (["--env", "AntBulletEnv-v9"], "did you mean AntBulletEnv-v0"),
        (["--env", "CartPole-v1"], "Discrete action space: not supported"),
        (["--env", "Pendulum-v1", "--noise-table-size", "10"], "smaller than the policy"),
        (["--env", "Pendulum-v1", "--noise-table-size", "100000000000"], "GiB of memory and"),
        (["--noise-stdev", "inf"], "--noise-stdev must be > 0"),
        (["--ac-noise-std", "inf"], "--ac-noise-std must be a finite number >= 0"),
        (["--max-timesteps", "1.5e3.2"], "invalid count"),
        (["--max-timesteps", "1234.5"], "is not a whole number"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_creates_nothing(tmp_path, args, fragment):
    proc = run_cli(*FAST, *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert fragment in error_line(proc)
    assert "Traceback" not in proc.stderr
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(runs.iterdir())


def test_run_dir_that_is_a_file(tmp_path):
    (tmp_path / "runs").write_text("precious")
    proc = run_cli(*FAST, "--env", "Pendulum-v1", "--backend", "inline", cwd=tmp_path)
    assert proc.returncode == 2 and "is a file" in error_line(proc)
    assert (tmp_path / "runs").read_text() == "precious"


def test_every_config_field_is_a_flag_with_help():
    parser = build_parser()
    flags = {a.dest: a for a in parser._actions}
    for name in Config.__dataclass_fields__:
        assert name in flags and flags[name].help
    args = vars(parser.parse_args(["--no-mirrored-sampling", "--hidden-dims", "32", "16"]))
    assert args.pop("resume") is None and args.pop("preset") is None
    cfg = Config(**args)
    assert cfg.mirrored_sampling is False and cfg.hidden_dims == (32, 16)


def test_counts_take_integral_scientific_notation():
    cfg, _, _ = parse(["--max-timesteps", "3.16e7", "--population-size", "1e2",
                    "--noise-table-size", "1_000_000"])  # fmt: skip
    assert (cfg.max_timesteps, cfg.population_size, cfg.noise_table_size) == (
        31_600_000, 100, 1_000_000)  # fmt: skip


def test_config_json_roundtrip():
    cfg = Config(env="Pendulum-v1", hidden_dims=(8,), optimizer="sgd", seed=3)
    assert Config.from_dict(__import__("json").loads(cfg.to_json())) == cfg
    with pytest.raises(ConfigError, match="unknown config key"):
        Config.from_dict({**cfg.to_dict(), "bogus": 1})


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(output_init_std=0.0), "--output-init-std must be a positive number"),
        (dict(output_init_std=float("inf")), "--output-init-std must be a positive number"),
        (dict(output_init_std=1.0, hidden_dims="linear"), "--output-init-std needs hidden"),
        (dict(obs_std_floor=-0.1), "--obs-std-floor must be a positive number"),
        (dict(obs_std_floor=float("nan")), "--obs-std-floor must be a positive number"),
    ],
)
def test_bad_init_or_std_floor_names_the_option(options, message):
    with pytest.raises(ConfigError, match=message):
        Config(**options)


def test_population_smaller_than_workers_is_fine(tmp_path):
    # (Pendulum with 8 hidden units, as tests/test_train.py: the same compiled update.)
    proc = run_cli("--env", "Pendulum-v1", "--noise-table-size", "100000", "--hidden-dims", "8",
                   "--num-workers", "2", "--population-size", "1", "--timesteps-per-gen", "1",
                   "--max-generations", "1", "--backend", "inline", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.integration
def test_mujoco_id_without_mujoco_installed_names_the_extra(tmp_path):
    """A machine without the mujoco extra: a stand-in package that fails to import
    shadows the installed one."""
    fake = tmp_path / "no_mujoco" / "mujoco"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'mujoco'\", name='mujoco')\n"
    )
    import os

    env = {**os.environ, "PYTHONPATH": str(fake.parent)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "esjax.train",
            "--run-dir",
            "runs",
            *FAST,
            "--env",
            "HalfCheetah-v5",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )  # fmt: skip (a subprocess: the stand-in must be imported before the real mujoco)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "HalfCheetah-v5 needs MuJoCo: pip install 'esjax[mujoco]'" in error_line(proc)
    assert not (tmp_path / "runs").exists()


def test_choice_lists_match_what_the_core_implements():
    """The options module holds its choice lists as data; each must name exactly what the
    implementation accepts (a choice the core lacks would fail only at run time)."""
    from esjax import config
    from esjax.core import fitness, optim, policy
    from esjax.run import trackers

    assert (
        set(config.NONLINEARITIES) == set(policy.NONLINEARITIES) == set(policy.NUMPY_NONLINEARITIES)
    )
    assert config.RETURN_PROC_MODES == fitness.RETURN_PROC_MODES
    assert config.OPTIMIZERS == optim.OPTIMIZERS
    for name in config.OPTIMIZERS:
        optim.make_optimizer(name, 0.01, momentum=0.9, max_speed=0.02)
    assert set(config.TRACKERS) == set(trackers._NEEDS)
