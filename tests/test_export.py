"""A policy you can take away: ``esjax.load_policy``, and ``esjax.export`` to ONNX and
npz, each giving the actions the workers give (``esjax.rollout.worker.act``, noiseless)."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import esjax
from esjax.core.policy import unravel
from esjax.rollout.worker import act
from esjax.run.portable import portable_policy
from esjax.run.state import load_run

from .helpers import main_inline, only_run_dir, run_module

REPO = Path(__file__).resolve().parent.parent
SHORT = ["--max-generations", "2", "--eval-every", "1", "--eval-episodes", "1",
         "--noise-table-size", "1000000", "--num-workers", "1", "--population-size", "8",
         "--timesteps-per-gen", "100"]  # fmt: skip
# Every path of the network: a linear policy (the preset's ARS), hidden layers of each
# nonlinearity, discretized actions, no observation normalization.
RUNS = {
    "linear": ["--env", "InvertedPendulum-v5"],
    "tanh": ["--env", "Pendulum-v1", "--hidden-dims", "8", "8", "--noise-stdev", "0.5"],
    "elu_bins": ["--env", "Pendulum-v1", "--hidden-dims", "8", "--nonlin", "elu",
                 "--discretize-actions", "--ac-bins", "5", "--noise-stdev", "0.5"],
    "lrelu_raw": ["--env", "Pendulum-v1", "--hidden-dims", "8", "--nonlin", "lrelu",
                  "--no-observation-normalization", "--noise-stdev", "0.5"],
    "relu": ["--env", "Pendulum-v1", "--hidden-dims", "6", "--nonlin", "relu"],
}  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    made = {}
    for name, args in RUNS.items():
        cwd = tmp_path_factory.mktemp(name)
        main_inline(*args, *SHORT, cwd=cwd)
        made[name] = only_run_dir(cwd)
    return made


def readme_npz_loader():
    """The docs' npz loader (docs/runs.md), run as a user would paste it."""
    text = (REPO / "docs" / "runs.md").read_text()
    code = re.search(r"<!-- npz-loader -->\n```python\n(.*?)```", text, re.S).group(1)
    assert len(code.strip().splitlines()) <= 25  # "a 20-line NumPy loader"
    scope: dict = {}
    exec(code, scope)
    return scope["load_npz_policy"]


def observations(run, count=1000):
    """Random observations around the run's statistics, far enough out to be clipped."""
    p = portable_policy(run)
    rng = np.random.default_rng(1)
    return (p.ob_mean + 4 * p.ob_std * rng.standard_normal((count, p.ob_dim))).astype(np.float32)


def workers_actions(run, obs):
    """What the workers do in an evaluation episode with the best policy."""
    loaded = load_run(run, "best")
    theta, mean, std = loaded.policy("best")
    params = unravel(loaded.spec, np.asarray(theta, np.float32))
    return np.stack([act(loaded.spec, params, o, mean, std) for o in obs])


@pytest.mark.parametrize("name", list(RUNS))
def test_every_form_gives_the_workers_actions(runs, name, tmp_path):
    import onnxruntime

    run = runs[name]
    obs = observations(run)
    want = workers_actions(run, obs)
    policy = esjax.load_policy(run, checkpoint="best")
    assert policy.env == RUNS[name][1] and repr(policy).startswith("Policy(")
    np.testing.assert_allclose(np.asarray(policy(obs)), want, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.asarray(policy(obs[0])), want[0], atol=1e-5, rtol=0)

    onnx_file, npz_file = tmp_path / "p.onnx", tmp_path / "p.npz"
    for fmt, out in (("onnx", onnx_file), ("npz", npz_file)):
        proc = run_module("esjax.export", str(run), "--format", fmt, "--out", str(out))
        assert proc.returncode == 0, proc.stderr
    assert "checked with onnxruntime: max |action difference|" in proc.stdout or fmt == "npz"
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    (got,) = session.run(["actions"], {"obs": obs})
    assert got.shape == want.shape and np.max(np.abs(got - want)) <= 1e-5
    got = readme_npz_loader()(npz_file)(obs)
    assert got.shape == want.shape and np.max(np.abs(got - want)) <= 1e-5
    if "bins" in name:  # each action is one of the bins
        assert set(np.unique(want)) <= set(np.linspace(-2, 2, 5, dtype=np.float32))


def test_export_refuses_to_overwrite_and_names_what_is_missing(runs, tmp_path, monkeypatch):
    run = runs["tanh"]
    out = tmp_path / "p.onnx"
    out.write_text("precious")
    proc = run_module("esjax.export", str(run), "--out", str(out))
    assert proc.returncode == 2 and "exists: pass --force" in proc.stderr
    assert out.read_text() == "precious"
    assert run_module("esjax.export", str(run), "--out", str(out), "--force").returncode == 0
    proc = run_module("esjax.export", str(tmp_path / "nope"))
    assert proc.returncode == 2 and "no such run directory" in proc.stderr
    proc = run_module("esjax.export", str(run), "--checkpoint", "7", "--out", str(tmp_path / "x"))
    assert proc.returncode == 2 and "no checkpoint for generation 7" in proc.stderr
    monkeypatch.setitem(sys.modules, "onnx", None)  # the export extra not installed
    proc = run_module("esjax.export", str(run), "--out", str(tmp_path / "y.onnx"))
    assert proc.returncode == 2 and "pip install 'esjax[export]'" in proc.stderr.splitlines()[-1]
    assert not (tmp_path / "y.onnx").exists()


EPISODE_WITHOUT_ESJAX = """
import sys
sys.modules["esjax"] = None  # as on a machine without esjax: importing it fails
import gymnasium as gym, numpy as np, onnxruntime
session = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
env = gym.make("InvertedPendulum-v5")
ob, _ = env.reset(seed=11)
ret, done = 0.0, False
while not done:
    (a,) = session.run(["actions"], {"obs": np.asarray(ob, np.float32)[None]})
    ob, r, terminated, truncated, _ = env.step(a[0])
    ret, done = ret + r, terminated or truncated
print(ret)
"""


@pytest.mark.integration
def test_onnx_policy_runs_an_episode_without_esjax(runs, tmp_path):
    from esjax.evaluate import run_episodes
    from esjax.rollout.envs import make_env

    run, out = runs["linear"], tmp_path / "policy.onnx"
    assert run_module("esjax.export", str(run), "--out", str(out)).returncode == 0
    proc = subprocess.run([sys.executable, "-c", EPISODE_WITHOUT_ESJAX, str(out)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = load_run(run, "best")
    env = make_env("InvertedPendulum-v5")
    returns, _, _ = run_episodes(env, loaded.spec, *loaded.policy("best"), episodes=1, seed=11)
    env.close()
    assert float(proc.stdout) == pytest.approx(returns[0], rel=1e-6)  # esjax's own episode
