"""The env's preset by default: ``--env X`` starts from esjax/presets/X.toml, says
so in its first line and records it in config.json; ``--preset none`` gives the bare
defaults; flags override either."""

import json

import pytest

from esjax.config import Config
from esjax.presets import load_preset
from esjax.train import parse

from .helpers import main_inline as train
from .helpers import only_run_dir, read_log

SMALL = ["--population-size", "10", "--timesteps-per-gen", "50", "--max-generations", "3",
         "--noise-table-size", "1000000", "--num-workers", "1", "--eval-episodes", "2"]  # fmt: skip


def test_env_starts_from_its_preset_says_so_first_and_records_it(tmp_path):
    proc = train("--env", "InvertedPendulum-v5", *SMALL, cwd=tmp_path)
    first = proc.stdout.splitlines()[0]
    assert first == ("settings: preset InvertedPendulum-v5 "
                     "(esjax/presets/InvertedPendulum-v5.toml); flags override") or (
        first.startswith("settings: preset InvertedPendulum-v5 (/")  # run from elsewhere
    )  # fmt: skip
    run = only_run_dir(tmp_path)
    cfg = json.loads((run / "config.json").read_text())
    preset = load_preset("InvertedPendulum-v5")
    assert cfg["preset"] == "InvertedPendulum-v5"
    assert (cfg["algo"], cfg["hidden_dims"]) == (preset["algo"], [])  # "linear", the preset's
    assert cfg["top_directions"] == preset["top_directions"]
    assert cfg["population_size"] == 10 and cfg["eval_episodes"] == 2  # from the flags
    rows = read_log(run)
    assert [int(r["PeriodicEvalCount"]) for r in rows] == [2, 0, 2]  # the preset's eval_every 2

    resumed = train("--resume", str(run), "--max-generations", "4", cwd=tmp_path)
    assert resumed.stdout.splitlines()[0] == (
        f"settings: {run / 'config.json'} (the run started from preset InvertedPendulum-v5); "
        "flags change only its budget and layout"
    )
    assert json.loads((run / "config.json").read_text())["preset"] == "InvertedPendulum-v5"


@pytest.mark.parametrize(
    "argv, preset, algo, why",
    [
        (["--preset", "none", "--env", "Hopper-v5"], "none", "openai-es", "--preset none"),
        (["--env", "Pendulum-v1"], "none", "openai-es", "no preset for Pendulum-v1"),
        # A preset is tuned for its strategy: another --algo starts from the defaults.
        (["--env", "Hopper-v5", "--algo", "pgpe"], "none", "pgpe",
         "preset Hopper-v5 is tuned for ars, not pgpe"),
    ],
)  # fmt: skip
def test_bare_defaults_say_why(argv, preset, algo, why):
    cfg, resume, settings = parse(argv)
    assert (cfg.preset, cfg.algo, resume) == (preset, algo, None)
    assert cfg.hidden_dims == Config().hidden_dims and cfg.population_size == 40
    assert settings == f"settings: esjax defaults ({why}); flags override"


def test_the_main_job_without_flags_is_the_ant_preset():
    cfg, _, settings = parse([])
    assert (cfg.env, cfg.preset) == ("AntBulletEnv-v0", "AntBulletEnv-v0")
    assert cfg.hidden_dims == tuple(load_preset("AntBulletEnv-v0")["hidden_dims"])
    assert settings.startswith("settings: preset AntBulletEnv-v0 (")


def test_an_explicit_preset_wins_over_the_envs_and_flags_over_both():
    cfg, _, _ = parse(["--preset", "Swimmer-v5", "--env", "Hopper-v5", "--seed", "3"])
    swimmer = load_preset("Swimmer-v5")
    assert (cfg.env, cfg.preset, cfg.seed) == ("Hopper-v5", "Swimmer-v5", 3)
    assert cfg.population_size == swimmer["population_size"]
