"""Values from presets, config.json and the Python API are checked against each option's
type: a one-line error naming the file and key, never a silent wrong value."""

import json

import pytest

from esjax.config import Config
from esjax.errors import ConfigError
from esjax.presets import load_preset
from esjax.run.rundir import load_run_config
from tests.helpers import run_module

WRONG = [  # (key, value as TOML, what the message says)
    ("discretize_actions", '"false"', "must be true or false"),
    ("mirrored_sampling", '"no"', "must be true or false"),
    ("population_size", "4.7", "must be a whole number"),
    ("population_size", '"many"', "must be a whole number"),
    ("population_size", "true", "must be a whole number"),
    ("learning_rate", '"0.1"', "must be a number"),
    ("hidden_dims", "64", "must be a list of layer sizes, or linear"),
    ("hidden_dims", '[64, "x"]', "must be a list of layer sizes, or linear"),
    ("nonlin", "3", "must be a string"),
    ("logger", "5", "must be a list of names"),
]


@pytest.mark.parametrize("key, value, says", WRONG, ids=lambda x: str(x)[:20])
def test_a_wrong_typed_preset_value_names_file_and_key(tmp_path, key, value, says):
    path = tmp_path / "bad.toml"
    path.write_text(f'env = "InvertedPendulumBulletEnv-v0"\n{key} = {value}\n')
    with pytest.raises(ConfigError, match=f"preset {path}: option {key} .*{says}") as e:
        load_preset(str(path))
    assert "\n" not in str(e.value)


def test_the_cli_refuses_a_wrong_typed_preset_in_one_line_and_creates_nothing(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('env = "InvertedPendulumBulletEnv-v0"\ndiscretize_actions = "false"\n')
    proc = run_module("esjax.train", "--preset", str(path), "--run-dir", str(tmp_path / "runs"))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "discretize_actions" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_a_wrong_typed_config_json_names_the_file(tmp_path):
    d = Config().to_dict()
    d["population_size"] = "40"
    (tmp_path / "config.json").write_text(json.dumps(d))
    with pytest.raises(ConfigError, match="config.json is not a valid esjax config: option "
                                          "population_size"):  # fmt: skip
        load_run_config(tmp_path)


def test_right_types_pass_and_numbers_become_floats():
    c = Config(learning_rate=1, noise_stdev=0.5, hidden_dims=[8], logger=["tensorboard"])
    assert isinstance(c.learning_rate, float) and c.learning_rate == 1.0
    assert c.hidden_dims == (8,) and c.logger == ("tensorboard",)
    assert Config(hidden_dims="linear").hidden_dims == ()


def test_argparse_errors_are_one_line_with_a_pointer_to_help():
    proc = run_module("esjax.train", "--population-size", "x")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "python -m esjax.train: error: argument --population-size: invalid count: 'x' (see --help)"
    ]


def test_resume_of_a_file_says_it_is_a_file(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    proc = run_module("esjax.train", "--resume", str(tmp_path / "config.json"))
    assert proc.returncode == 2 and "is a file, not a run directory" in proc.stderr


def test_config_json_is_strict_json_and_round_trips_no_target():
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    text = Config().to_json()
    d = json.loads(text, parse_constant=refuse)
    assert d["target_return"] is None
    assert Config.from_dict(d).target_return == float("inf")
    assert Config.from_dict(json.loads(Config(target_return=900.0).to_json())).target_return == 900


def test_help_shows_real_defaults_only():
    proc = run_module("esjax.train", "--help")
    assert "(default: None)" not in proc.stdout and "(default: 5)" in proc.stdout
    seeds = run_module("esjax.seeds", "--help")
    assert "%%" not in seeds.stdout and "95% CI" in seeds.stdout


def test_plot_of_a_missing_run_names_the_run(tmp_path):
    proc = run_module("esjax.plot", str(tmp_path / "nope"))
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == f"python -m esjax.plot: error: {tmp_path / 'nope'}: no such run directory"
    )


def test_unwritable_outputs_fail_in_one_line_before_work_and_leave_no_tmp(tmp_path):
    from tests.helpers import main_inline, only_run_dir

    main_inline("--env", "InvertedPendulumBulletEnv-v0", "--preset", "none",
                "--noise-table-size", "2000000", "--hidden-dims", "4", "--population-size", "4",
                "--timesteps-per-gen", "50", "--eval-every", "1", "--eval-episodes", "1",
                "--max-generations", "1", cwd=tmp_path)  # fmt: skip
    run = str(only_run_dir(tmp_path))
    cases = [  # /proc takes no new files, even from root
        ("esjax.evaluate", run, "--video", "/proc/esjax.mp4"),
        ("esjax.export", run, "--out", "/proc/esjax.npz"),
        ("esjax.export", run, "--out", str(tmp_path), "--force"),
        ("esjax.seeds", "--env", "InvertedPendulumBulletEnv-v0", "--out", f"{run}/config.json"),
    ]
    for module, *args in cases:
        proc = run_module(module, *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert not list(tmp_path.glob("*.tmp"))


def test_export_of_a_run_without_evaluations_takes_the_latest(tmp_path):
    from tests.helpers import main_inline, only_run_dir

    main_inline("--env", "InvertedPendulumBulletEnv-v0", "--preset", "none",
                "--noise-table-size", "2000000", "--hidden-dims", "4", "--population-size", "4",
                "--timesteps-per-gen", "50", "--eval-every", "0", "--max-generations", "1",
                cwd=tmp_path)  # fmt: skip
    run = only_run_dir(tmp_path)
    proc = run_module("esjax.export", str(run), "--format", "npz")
    assert proc.returncode == 0, proc.stderr
    assert "(latest)" in proc.stdout and (run / "policy_latest.npz").is_file()
