"""--logger tensorboard and --logger wandb: every numeric log column, per generation, at
step TimestepsSoFar, equal to log.csv, across a resume; the config as hyperparameters."""

import json
import math
import shutil
import struct
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.helpers import TINY, main_inline, only_run_dir, read_log


def csv_series(run: Path) -> dict[str, list[tuple[int, float]]]:
    """log.csv as {column: [(TimestepsSoFar, value)]}, finite cells only."""
    series: dict[str, list] = {}
    for row in read_log(run):
        for k, v in row.items():
            try:
                value = float(v)
            except ValueError:
                continue
            if math.isfinite(value):
                series.setdefault(k, []).append((int(row["TimestepsSoFar"]), value))
    return series


def test_tensorboard_events_equal_the_log_across_a_resume(tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
    from tensorboardX import event_file_writer

    # tensorboardX names event files by the second: both runs start within the same one.
    monkeypatch.setattr(event_file_writer, "time", SimpleNamespace(time=lambda: 1.8e9))
    proc = main_inline(*TINY, "--max-generations", "3", "--snapshot-freq", "2",
                       "--eval-every", "2", "--logger", "tensorboard", cwd=tmp_path)  # fmt: skip
    run = only_run_dir(tmp_path)
    assert f"tensorboard: {run / 'tensorboard'}" in proc.stdout
    # A crash after generation 2's row, before its checkpoint: the resume redoes it.
    shutil.rmtree(run / "checkpoints" / "3")
    main_inline("--resume", str(run), "--max-generations", "4", cwd=tmp_path)
    assert len(read_log(run)) == 4

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0}).Reload()
    want = csv_series(run)
    assert set(events.Tags()["scalars"]) == set(want)  # every numeric column, by its name
    for tag, points in want.items():
        got = [(e.step, e.value) for e in events.Scalars(tag)]
        assert got == [(s, pytest.approx(v, rel=1e-6)) for s, v in points], tag
    config = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert json.loads(config.strip("`\n"))["logger"] == ["tensorboard"]
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    start = HParamsPluginData.FromString(
        events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    ).session_start_info.hparams
    assert start["algo"].string_value == "openai-es" and start["run_directory"].string_value == str(
        run
    )
    assert start["population_size"].number_value == 8

    listing = EventMultiplexer().AddRunsFromDirectory(str(tmp_path / "runs")).Runs()
    assert f"{run.name}/tensorboard" in listing  # what `tensorboard --logdir runs` shows


def test_a_missing_tracker_package_is_one_line_and_exit_2(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    proc = main_inline(*TINY, "--max-generations", "1", "--logger", "tensorboard", cwd=tmp_path,
                       check=False)  # fmt: skip
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "--logger tensorboard needs the tensorboardX package: pip install 'esjax[tracking]' "
            "(make setup installs it)"
        )
    )
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    bad = main_inline(*TINY, "--logger", "mlflow", cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "invalid choice: 'mlflow'" in bad.stderr


def wandb_records(path: Path):
    """The records of a .wandb file: W&B's LevelDB-style log (a 7-byte file header, then
    32 KiB blocks of chunks, each with a 7-byte header: crc32, length, type; types 1 (a
    whole record) and 4 (the last chunk of one) end a record)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, record = 7, b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if left < 7 or (kind == 0 and length == 0):  # block padding
            pos += left
            continue
        if pos + 7 + length > len(data):  # a record still being written
            return
        record += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            parsed = wandb_internal_pb2.Record()
            parsed.ParseFromString(record)
            record = b""
            yield parsed


def wandb_history_and_config(files, run_id: str, name: str) -> tuple[list[dict], dict]:
    """The history rows and the config the offline run files hold so far."""
    history, config = [], {}
    for f in files:
        for rec in wandb_records(f):
            kind = rec.WhichOneof("record_type")
            if kind == "history":
                history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                                for i in rec.history.item})  # fmt: skip
            elif kind == "run":
                assert rec.run.run_id == run_id and rec.run.display_name == name
                config.update({u.key: json.loads(u.value_json) for u in rec.run.config.update})
    return history, config


@pytest.mark.integration  # W&B runs its own service process
def test_wandb_offline_run_holds_the_log_and_resume_continues_the_same_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    proc = main_inline(*TINY, "--max-generations", "2", "--logger", "wandb", cwd=tmp_path)
    run = only_run_dir(tmp_path)
    run_id = (run / "wandb_run_id").read_text().strip()
    assert f"wandb: run {run_id} (offline)" in proc.stdout and "wandb sync" in proc.stdout
    main_inline("--resume", str(run), "--max-generations", "3", cwd=tmp_path)
    files = sorted((run / "wandb").glob("offline-run-*/run-*.wandb"))
    assert [f.name for f in files] == [f"run-{run_id}.wandb"] * 2  # one W&B run, resumed

    rows = read_log(run)
    # W&B's service process writes the files; it may still be writing the last record
    # when run.finish() has returned to this (the training) process.
    deadline = time.monotonic() + 60
    while True:
        history, config = wandb_history_and_config(files, run_id, run.name)
        if len(history) >= len(rows) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert config["algo"] == "openai-es" and config["run_directory"] == str(run)
    assert len(history) == len(rows) == 3
    for logged, row in zip(history, rows):
        for k, v in row.items():
            value = float(v) if v not in ("", "True", "False") else math.nan
            if math.isfinite(value):
                assert logged[k] == pytest.approx(value, rel=1e-6), k
