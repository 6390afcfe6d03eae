"""Runs know their machine: machine.json per start/resume, one line when a resume or a
Ray node differs in what changes results."""

import json

from esjax.provenance import RESULT_PACKAGES, machine_record, result_differences
from esjax.rollout.ray_cluster import machine_mismatch
from esjax.run.rundir import record_machine


def test_machine_record_names_cpu_versions_and_the_xla_cap():
    r = machine_record()
    assert r["cpu"] and r["arch"] and r["xla_cpu_isa"] == "AVX"
    assert set(r["packages"]) == set(RESULT_PACKAGES)
    assert r["packages"]["numpy"] and r["packages"]["jax"]
    assert json.loads(json.dumps(r)) == r


def test_a_resume_on_the_same_machine_says_nothing_and_records_each_session(tmp_path):
    assert record_machine(tmp_path, 0) is None
    assert record_machine(tmp_path, 7) is None
    history = json.loads((tmp_path / "machine.json").read_text())
    assert [h["generation"] for h in history] == [0, 7]


def test_a_resume_with_other_versions_warns_in_one_line_and_goes_on(tmp_path):
    record_machine(tmp_path, 0)
    history = json.loads((tmp_path / "machine.json").read_text())
    history[-1]["packages"]["numpy"] = "1.26.0"
    history[-1]["xla_cpu_isa"] = "unpinned"
    (tmp_path / "machine.json").write_text(json.dumps(history))
    line = record_machine(tmp_path, 3)
    assert line.startswith("warning: ") and "\n" not in line
    assert "numpy 1.26.0 -> " in line and "xla_cpu_isa unpinned -> AVX" in line


def test_a_resume_on_another_cpu_model_only_notes_it(tmp_path):
    record_machine(tmp_path, 0)
    history = json.loads((tmp_path / "machine.json").read_text())
    history[-1]["cpu"] = "Intel(R) Xeon(R) Platinum 8481C"
    (tmp_path / "machine.json").write_text(json.dumps(history))
    line = record_machine(tmp_path, 3)
    assert line.startswith("note: resuming on another CPU (Intel(R) Xeon(R) Platinum 8481C")


def test_ray_nodes_that_differ_in_versions_are_named_at_start_up():
    mine = machine_record()
    other = {**mine, "cpu": "another", "packages": {**mine["packages"], "pybullet": "3.2.5"}}
    assert machine_mismatch({"a": mine, "b": {**mine, "cpu": "another"}}, {}) is None
    line = machine_mismatch({"a": mine, "b": other}, {})
    assert "pybullet" in line and "3.2.5" in line and "\n" not in line
    assert result_differences(mine, other) == [f"pybullet {mine['packages']['pybullet']} -> 3.2.5"]
