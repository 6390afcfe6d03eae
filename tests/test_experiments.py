"""experiments/: presets through the CLI, and the quick modes of the harness and scripts."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from esjax.config import Config
from esjax.presets import PRESET_DIR, load_preset, preset_names
from esjax.rollout.envs import check_env_id

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_is_a_valid_config_of_a_registered_env(name):
    values = load_preset(name)
    cfg = Config(**values)
    check_env_id(cfg.env)
    text = (PRESET_DIR / f"{name}.toml").read_text()
    assert text.startswith("#"), f"{name}: say where its values come from"


PROBES = sorted((REPO / "experiments" / "results").rglob("probe_presets/*.toml"))


@pytest.mark.parametrize("path", PROBES, ids=[p.stem for p in PROBES])
def test_every_probe_preset_in_the_results_still_loads(path):
    """The results' reproduce commands (``--preset experiments/.../X.toml``) keep working:
    each probe file is a valid config of a registered env."""
    cfg = Config(**load_preset(str(path)))
    check_env_id(cfg.env)


def test_every_shipped_preset_was_measured_on_its_own_env():
    """A preset is a measurement: its env has committed runs in the results files, and
    the paper's envs and the headline AntBulletEnv-v0 keep theirs."""
    results = REPO / "experiments" / "results"
    measured = set()
    for name in ("table3_runs.json", "strategies_runs.json"):
        data = json.loads((results / name).read_text())
        measured |= {r["env"] for r in (data["runs"] if isinstance(data, dict) else data)}
    measured |= set(json.loads((results / "presets_runs.json").read_text()))
    for summary in (results / "pybullet").glob("*/summary.json"):  # esjax.seeds summaries
        env = summary.parent.name
        if all(s["run_dir"].endswith(f"_{env}") for s in json.loads(summary.read_text())["seeds"]):
            measured.add(env)
    for name in preset_names():
        assert load_preset(name)["env"] in measured, f"{name}: no measured run"
    paper = {"HalfCheetah", "Hopper", "InvertedDoublePendulum", "InvertedPendulum",
             "Swimmer", "Walker2d"}  # fmt: skip
    assert {f"{e}-v5" for e in paper} | {"AntBulletEnv-v0"} <= set(preset_names())


def test_strategies_quick_mode_runs_a_probe_and_reports_it(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.strategies", "run", "--probe", "Hopper-v5/ars",
         "--seeds", "0", "--quick", "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = json.loads((tmp_path / "strategies_runs.json").read_text())
    assert [(r["probe"], r["algo"], r["seed"]) for r in runs] == [("Hopper-v5/ars", "ars", 0)]
    config = json.loads((Path(runs[0]["run_dir"]) / "config.json").read_text())
    assert config["algo"] == "ars" and config["hidden_dims"] == []
    report = (tmp_path / "strategies.md").read_text()
    row = next(ln for ln in report.splitlines() if "`Hopper-v5/ars`" in ln)
    assert row.startswith("| Hopper-v5 | 3403.46 (5.0e+06) |") and "| 0/1 |" in row
    assert (tmp_path / "strategies_Hopper-v5.png").stat().st_size > 1000
    bad = subprocess.run([sys.executable, "-m", "experiments.strategies", "run", "--probe",
                          "Nope-v0/ars", "--out", str(tmp_path)], cwd=REPO,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert bad.returncode == 2 and "no probe 'Nope-v0/ars': choose one of" in bad.stderr


# Two of the six envs, the fastest (every env's own code path is the same).
QUICK_ENVS = ["InvertedPendulum-v5", "InvertedDoublePendulum-v5"]


def test_paper_table3_quick_mode_writes_the_whole_report(tmp_path):
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.paper_table3", "--quick", "--out", str(out),
         "--runs-dir", str(tmp_path / "runs"), "--seeds", "0", "--envs", *QUICK_ENVS],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = json.loads((out / "table3_runs.json").read_text())["runs"]
    assert sorted(r["env"] for r in runs) == sorted(QUICK_ENVS)
    for r in runs:
        assert r["steps"][0] == 0 and len(r["steps"]) == len(r["eval_mean"]) == 2
        assert r["steps"][1] > 0 and r["eval_episodes"] == 5
    report = (out / "table3.md").read_text()
    for env in QUICK_ENVS:
        assert report.count(f"| {env} | ") == 5  # four targets and one run
        assert (out / f"table3_{env}.png").stat().st_size > 1000
    assert (out / "table3.png").stat().st_size > 1000
    assert "**Protocol.**" in report


def test_paper_table3_quick_refuses_to_overwrite_committed_results():
    proc = subprocess.run([sys.executable, "-m", "experiments.paper_table3", "--quick"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2 and "give --out elsewhere" in proc.stderr


def test_toy_objective_quick_mode_runs_jitted_es_and_plots(tmp_path):
    out = tmp_path / "toy.png"
    cmd = [sys.executable, "-m", "experiments.toy_objective", "--quick", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("final objective") == 3 and out.stat().st_size > 1000


def test_toy_objective_es_improves_the_objective():
    import jax.numpy as jnp
    import numpy as np

    from esjax.core import fill_noise_table
    from experiments.toy_objective import rastrigin, run_es

    table = jnp.asarray(fill_noise_table(np.empty(100_000, np.float32), seed=0))
    curve = run_es(table, dim=5, generations=200, pairs=16, seed=0, shaping=True, mirrored=True)
    assert curve.shape == (200,) and curve[-1] < 0.6 * curve[0]  # 43.9 -> 19.9 measured
    assert float(rastrigin(jnp.zeros(5))) == 0.0


def test_ablation_quick_mode_trains_every_variant_through_the_library(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "experiments.ablation", "--quick", "--seeds",
                           "0", "--out", str(tmp_path)], cwd=REPO, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    from experiments.ablation import VARIANTS

    report = (tmp_path / "ablation.md").read_text()
    assert all(f"| {name} |" in report for name in VARIANTS)
    assert (tmp_path / "ablation.png").stat().st_size > 1000


def test_defaults_ab_quick_mode_trains_every_variant_and_reuses_finished_runs(tmp_path):
    cmd = [sys.executable, "-m", "experiments.defaults_ab", "--quick", "--preset",
           "Walker2DBulletEnv-v0", "--seeds", "0", "--timesteps", "100", "--parallel", "2",
           "--out", str(tmp_path), "--runs", str(tmp_path / "runs")]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from experiments.defaults_ab import VARIANTS

    report = (tmp_path / "Walker2DBulletEnv-v0.md").read_text()
    assert all(f"| {name} |" in report for name in VARIANTS)
    assert (tmp_path / "Walker2DBulletEnv-v0.png").stat().st_size > 1000
    runs = sorted((tmp_path / "runs").glob("*/seed_0/*/log.csv"))
    assert len(runs) == len(VARIANTS)
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert sorted((tmp_path / "runs").glob("*/seed_0/*/log.csv")) == runs  # none rerun


def test_preset_check_quick_mode_reports_the_median_against_the_target(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.preset_check", "--preset", "InvertedPendulum-v5",
         "--timesteps", "1000", "--target", "5", "--seeds", "0", "1", "--quick", "--out",
         str(tmp_path), "--runs-dir", str(tmp_path / "runs")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    checks = json.loads((tmp_path / "presets_runs.json").read_text())
    runs = checks["InvertedPendulum-v5"]["runs"]
    assert [r["seed"] for r in runs] == [0, 1] and all(r["steps"][0] == 0 for r in runs)
    report = (tmp_path / "presets.md").read_text()
    assert "## InvertedPendulum-v5: target 5 within 1,000 env steps" in report
    assert "; met." in report  # any pendulum policy stays up for 5 steps
    assert (tmp_path / "preset_InvertedPendulum-v5.png").stat().st_size > 1000


def test_best_within_counts_only_evaluations_inside_the_budget():
    from experiments.preset_check import best_within

    run = {"steps": [0, 100, 200], "eval_mean": [1.0, 5.0, 9.0]}
    assert best_within(run, 150) == 5.0 and best_within(run, 200) == 9.0


def test_seed_report_cuts_each_run_at_the_budget(tmp_path, capsys):
    """A run trained by hand (here 4 tiny generations, θ evaluated before each)
    summarized within a budget: evaluations of θs made past it are left out."""
    from esjax.run.seed_stats import eval_curve
    from experiments.seed_report import main as seed_report

    proc = subprocess.run(
        [sys.executable, "-m", "esjax.train", "--env", "InvertedPendulumBulletEnv-v0",
         "--max-generations", "4", "--population-size", "8", "--timesteps-per-gen", "100",
         "--noise-table-size", "1000000", "--backend", "inline", "--eval-every", "1",
         "--eval-episodes", "1", "--seed", "3", "--run-dir", str(tmp_path / "runs")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = (tmp_path / "runs").iterdir()
    curve = eval_curve(run)
    assert len(curve["steps"]) == 4 and curve["steps"][0] == 0
    budget = curve["steps"][2]
    assert seed_report([str(run), "--budget", str(budget), "--target", "1e9", "--also", "1",
                        "--title", "pendulum", "--out", str(tmp_path / "report")]) == 0  # fmt: skip
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    (seed,) = summary["seeds"]
    assert (seed["seed"], seed["evaluations"]) == (3, 3)
    assert seed["best"] == pytest.approx(max(curve["eval_mean"][:3]))
    assert seed["total_env_steps"] == curve["steps"][3]  # the training steps up to the cut
    text = (tmp_path / "report" / "summary.md").read_text()
    assert "pendulum within" in text and "Target 1: median env steps to it 0" in text

    # The report keeps the curve: a later report takes the seed from it, run dir gone.
    stored = f"{tmp_path / 'report' / 'summary.json'}:3"
    assert seed_report([stored, "--budget", str(budget), "--target", "1e9", "--title", "again",
                        "--out", str(tmp_path / "again")]) == 0  # fmt: skip
    again = json.loads((tmp_path / "again" / "summary.json").read_text())
    assert again["seeds"] == summary["seeds"] and again["best"] == summary["best"]
    for bad, says in ((f"{stored[:-2]}:4", "has no seed 4"),
                      (stored, "reported past --budget")):  # fmt: skip
        with pytest.raises(SystemExit) as exit_:
            seed_report([bad, "--budget", str(curve["steps"][1]), "--target", "1",
                         "--title", "t", "--out", str(tmp_path / "bad")])  # fmt: skip
        assert exit_.value.code == 2
        assert says in capsys.readouterr().err
