"""A user's own environment: ``--env module:Id`` (Gymnasium's form) and ``--env-kwarg``,
through every worker, backend, evaluate, export and resume, with no esjax change.
The env: tests/user_env/mypkg/envs.py (registers Toy-v0 when imported)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from esjax.config import Config
from esjax.errors import ConfigError
from tests.helpers import only_run_dir, read_log, run_module

USER_PATH = str(Path(__file__).resolve().parent / "user_env")
TOY = ["--env", "mypkg.envs:Toy-v0", "--env-kwarg", "target=0.8", "--env-kwarg", "horizon=30",
       "--preset", "none", "--noise-table-size", "2000000", "--hidden-dims", "8",
       "--population-size", "8", "--timesteps-per-gen", "100", "--eval-every", "1",
       "--eval-episodes", "2"]  # fmt: skip


def _cli(module, *args, cwd):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([USER_PATH, os.environ.get(
        "PYTHONPATH", "")])}  # fmt: skip
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_env_kwargs_are_checked_and_a_preset_table_is_spelled_as_flags():
    assert Config(env_kwargs={"target": 0.8, "mode": "fast", "on": True}).env_kwargs == (
        "target=0.8",
        'mode="fast"',
        "on=true",
    )
    for bad, says in [(["target"], "KEY=VALUE"), (["target=abc"], "TOML literal"),
                      ([1], "KEY=VALUE strings")]:  # fmt: skip
        with pytest.raises(ConfigError, match=says):
            Config(env_kwargs=bad)


def test_a_missing_module_or_keyword_is_one_line_and_creates_nothing(tmp_path):
    cases = [(["--env", "nomod.envs:Toy-v0"], "cannot import module 'nomod.envs'"),
             (["--env", "json:Toy-v0"], "registered no environment 'Toy-v0'"),
             (["--env", "Hopper-v5", "--env-kwarg", "foo=1"], "--env-kwarg foo: Hopper-v5 "
              "takes no such keyword")]  # fmt: skip
    for args, says in cases:
        proc = run_module("esjax.train", *args, "--preset", "none", "--run-dir",
                          str(tmp_path / "runs"))  # fmt: skip
        assert proc.returncode == 2 and says in proc.stderr and proc.stderr.count("\n") == 1
    assert not (tmp_path / "runs").exists()


@pytest.mark.integration
def test_a_user_env_trains_on_workers_evaluates_exports_and_resumes(tmp_path):
    done = _cli("esjax.train", *TOY, "--num-workers", "2", "--max-generations", "2",
                "--run-dir", "runs", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    run = only_run_dir(tmp_path)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["env"] == "mypkg.envs:Toy-v0"
    assert cfg["env_kwargs"] == ["target=0.8", "horizon=30"]
    assert {float(r["GenLenMean"]) for r in read_log(run)} == {30.0}  # horizon reached workers
    ev = _cli("esjax.evaluate", str(run), "--episodes", "2", cwd=tmp_path)
    assert ev.returncode == 0 and "length 30.0" in ev.stdout, ev.stderr[-2000:]
    ex = _cli("esjax.export", str(run), "--checkpoint", "latest", cwd=tmp_path)
    assert ex.returncode == 0, ex.stderr[-2000:]
    more = _cli("esjax.train", "--resume", str(run), "--max-generations", "3", cwd=tmp_path)
    assert more.returncode == 0 and len(read_log(run)) == 3, more.stderr[-2000:]


@pytest.mark.ray
def test_a_user_env_trains_on_the_ray_backend(tmp_path):
    pytest.importorskip("ray")
    done = _cli("esjax.train", *TOY, "--backend", "ray", "--num-workers", "2",
                "--max-generations", "2", "--run-dir", "runs", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert {float(r["GenLenMean"]) for r in read_log(only_run_dir(tmp_path))} == {30.0}


def test_resume_accepts_the_same_env_kwargs_and_refuses_others(tmp_path):
    from tests.helpers import main_inline

    args = ["--env", "Pendulum-v1", "--env-kwarg", "g=9.0", "--preset", "none",
            "--noise-table-size", "2000000", "--hidden-dims", "4", "--population-size", "4",
            "--timesteps-per-gen", "50", "--eval-every", "0"]  # fmt: skip
    main_inline(*args, "--max-generations", "1", cwd=tmp_path)
    run = str(only_run_dir(tmp_path))
    main_inline("--resume", run, "--env-kwarg", "g=9.0", "--max-generations", "2", cwd=tmp_path)
    other = main_inline("--resume", run, "--env-kwarg", "g=3.0", "--max-generations", "3",
                        cwd=tmp_path, check=False)  # fmt: skip
    assert other.returncode == 2 and "cannot change --env-kwarg when" in other.stderr
