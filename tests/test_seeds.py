"""``python -m esjax.seeds``: several seeds of one config, resumable, summarized with the
median, the interquartile mean and its bootstrap CI, and one plot."""

import json
import math

import numpy as np
import pytest

from esjax.run.seed_stats import bootstrap_ci, iqm, plot_seeds, summarize

from .helpers import run_module


def test_iqm_is_the_mean_of_the_middle_half():
    from scipy.stats import trim_mean

    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 4, 5, 8, 10, 33):
        x = rng.normal(size=n)
        assert iqm(x) == pytest.approx(trim_mean(x, 0.25))
    assert iqm([1, 2, 3, 4, 100, -100, 2.5, 3.5]) == pytest.approx(2.75)  # 2, 2.5, 3, 3.5


def test_bootstrap_interval_is_reproducible_and_narrows_with_more_seeds():
    rng = np.random.default_rng(1)
    few, many = rng.normal(size=5), rng.normal(size=200)
    lo, hi = bootstrap_ci(few)
    assert (lo, hi) == bootstrap_ci(few) and lo <= iqm(few) <= hi
    assert lo >= few.min() and hi <= few.max()
    lo2, hi2 = bootstrap_ci(many)
    assert hi2 - lo2 < (hi - lo) / 2 and lo2 < 0 < hi2  # around the true IQM, 0
    assert bootstrap_ci([7.0]) == (7.0, 7.0)
    med_lo, med_hi = bootstrap_ci(many, stat=np.median)
    assert med_lo < np.median(many) < med_hi


def run(seed, steps, evals):
    return {"seed": seed, "run_dir": f"seed_{seed}/r", "wall_s": 1.0, "steps": steps,
            "eval_mean": evals, "total_env_steps": steps[-1] + 10 if steps else 0}  # fmt: skip


def test_summary_per_seed_and_across_seeds(tmp_path):
    runs = [run(0, [0, 100, 200], [1.0, 5.0, 3.0]), run(1, [0, 120, 240], [2.0, 4.0, 6.0]),
            run(2, [0, 90, 180], [0.0, 1.0, 2.0])]  # fmt: skip
    s = summarize(runs, target=4.0)
    assert [(x["best"], x["final"], x["steps_to_target"]) for x in s["seeds"]] == [
        (5.0, 3.0, 100), (6.0, 6.0, 120), (2.0, 2.0, None)]  # fmt: skip
    assert s["best"]["median"] == 5.0 and s["best"]["iqm"] == pytest.approx(13 / 3)
    assert s["best"]["ci95"][0] <= s["best"]["iqm"] <= s["best"]["ci95"][1]
    assert s["final"]["median"] == 3.0
    assert s["steps_to_target"] == {"median": 120, "reached": 2, "n": 3}
    # an unreached seed counts as infinitely late: 1 of 3 reached -> the median never did
    s = summarize(runs, target=5.5)
    assert s["steps_to_target"] == {"median": None, "reached": 1, "n": 3}
    assert "steps_to_target" not in summarize(runs)["seeds"][0]
    every = summarize(runs, target=2.0)["steps_to_target"]  # all reached: their spread too
    assert (every["median"], every["reached"], every["iqm"]) == (100, 3, pytest.approx(280 / 3))
    plot_seeds(tmp_path / "c.png", runs, "three seeds", target=4.0)
    assert (tmp_path / "c.png").stat().st_size > 5000


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--seed", "3"], "--seed is set by esjax.seeds for each seed: remove it"),
        (["--run-dir", "x"], "--run-dir is set by esjax.seeds"),
        (["--seeds", "1", "1"], "--seeds must be distinct"),
        (["--population-size", "0"], "--population-size must be >= 1"),
        (["--env", "Nope-v0"], "Nope-v0"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, fragment):
    proc = run_module("esjax.seeds", "--out", str(tmp_path / "s"), *args)
    assert proc.returncode == 2 and fragment in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "s").exists()


FLAGS = ["--preset", "InvertedPendulum-v5", "--max-generations", "3", "--eval-every", "1",
         "--population-size", "8", "--timesteps-per-gen", "100", "--noise-table-size",
         "1000000", "--backend", "inline"]  # fmt: skip


@pytest.mark.integration  # each seed is an esjax.train process
def test_seeds_run_summarize_and_resume(tmp_path):
    out = tmp_path / "seeds"
    proc = run_module("esjax.seeds", "--seeds", "0", "1", "2", "--out", str(out), "--target",
                      "20", *FLAGS)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("settings: preset InvertedPendulum-v5")
    assert "| best evaluation |" in proc.stdout and "Target 20: reached by" in proc.stdout
    logs = proc.stdout + proc.stderr + (out / "seed_0" / "train.log").read_text()
    assert "\r" not in logs  # lines in a file, no progress-bar redraws
    summary = json.loads((out / "summary.json").read_text())
    assert [s["seed"] for s in summary["seeds"]] == [0, 1, 2]
    assert all(s["evaluations"] == 3 and math.isfinite(s["best"]) for s in summary["seeds"])
    lo, hi = summary["best"]["ci95"]
    assert lo <= summary["best"]["iqm"] <= hi and summary["best"]["n"] == 3
    assert (out / "curves.png").stat().st_size > 5000
    assert "![curves](curves.png)" in (out / "summary.md").read_text()
    bests = {s["seed"]: s["best"] for s in summary["seeds"]}
    assert len(set(bests.values())) > 1  # the seeds differ

    # Finished seeds are not rerun; a seed whose record was lost (the seeds process killed
    # after its run's last checkpoint) is continued from its run, not started again.
    store = json.loads((out / "seeds.json").read_text())
    del store["runs"]["1"]
    (out / "seeds.json").write_text(json.dumps(store))
    proc = run_module("esjax.seeds", "--seeds", "0", "1", "2", "3", "--out", str(out),
                      "--target", "20", *FLAGS)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "seed 0: finished earlier" in proc.stdout and "seed 2: finished earlier" in proc.stdout
    assert "seed 3: training" in proc.stdout and "seed 0: training" not in proc.stdout
    assert "--resume" in (out / "seed_1" / "train.log").read_text()
    assert len(list((out / "seed_1").glob("*_InvertedPendulum-v5"))) == 1
    again = json.loads((out / "summary.json").read_text())
    assert {s["seed"]: s["best"] for s in again["seeds"] if s["seed"] < 3} == bests

    other = run_module("esjax.seeds", "--out", str(out), *FLAGS[:-2])
    assert other.returncode == 2 and "holds seeds trained with other flags" in other.stderr
