"""A run directory on disk: creating it, its config.json, its log on resume, free space."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from esjax.config import Config
from esjax.errors import ConfigError


def create_run_dir(parent: Path, env_id: str) -> Path:
    """A new, empty ``parent/<timestamp>_<env>`` folder (never an existing one)."""
    if parent.exists() and not parent.is_dir():
        raise ConfigError(f"--run-dir {parent} is a file: give a folder path")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = env_id.replace(":", "_").replace("/", "_")  # module:Id, brax/NAME
    for i in range(1000):
        path = parent / (f"{stamp}_{name}" + (f"_{i}" if i else ""))
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
        except OSError as e:
            raise ConfigError(f"cannot create run directory under {parent}: {e.strerror}") from e
    raise ConfigError(f"could not find a free run directory name under {parent}")


def truncate_log(path: Path, generations: int) -> None:
    """Drop log rows of generations >= ``generations`` (written after the checkpoint we
    resume from), atomically, so the log matches an uninterrupted run."""
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    width = lines[0].count(",") if lines else 0

    def complete_and_before(line: str) -> bool:  # a row cut short by a hard kill is dropped
        first = line.split(",", 1)[0]
        return (
            line.endswith("\n")
            and line.count(",") == width
            and first.isdigit()
            and (int(first) < generations)
        )

    keep = lines[:1] + [ln for ln in lines[1:] if complete_and_before(ln)]
    if len(keep) != len(lines):
        write_atomically(path, lambda t: t.write_text("".join(keep)),
                         "make the run directory writable")  # fmt: skip


_WRITE_FIXES = {
    errno.ENOSPC: "free some space on that disk",
    errno.EDQUOT: "free some space on that disk",
    errno.EROFS: "choose a location on a writable disk",
    errno.EACCES: "make the folder writable or choose another location",
    errno.EPERM: "make the folder writable or choose another location",
    errno.ENOENT: "create the folder first",
    errno.EISDIR: "give a file name, not a folder",
}


def write_atomically(path: Path, write: Callable[[Path], None], fix: str = "") -> None:
    """``write(tmp)`` a sibling temporary file, then rename it to ``path``: readers see the
    old file or the whole new one. ConfigError (one line: the path, the reason, what to do)
    for a read-only, full or missing location; no temporary file is left behind."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"cannot write {path}: it is a folder; give a file name")
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        what = fix or _WRITE_FIXES.get(e.errno, "choose another location")
        if e.errno == errno.ENOENT and path.absolute().parent.is_dir():
            what = fix or "choose another location"  # a folder that takes no new files
        raise ConfigError(f"cannot write {path} ({e.strerror or e}): {what}") from None


def write_config(run_dir: Path, cfg: Config) -> None:
    """Atomically (re)write ``run_dir/config.json``; ConfigError if the folder is unwritable."""
    write_atomically(run_dir / "config.json", lambda t: t.write_text(cfg.to_json() + "\n"),
                     "make the run directory writable or pass --run-dir elsewhere")  # fmt: skip


def check_free_space(path: Path, need: int) -> None:
    """ConfigError unless the disk holding ``path`` (or its nearest existing parent) has
    ``need`` bytes free."""
    existing = path.absolute()
    while not existing.exists():
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if free < need:
        raise ConfigError(
            f"only {free / 1e6:.1f} MB free on the disk holding {path}, and this run's "
            f"checkpoints need about {need / 1e6:.1f} MB: free some space or pass --run-dir "
            "on another disk"
        )


def record_machine(run_dir: Path, generation: int) -> str | None:
    """Append this machine's record (``esjax.provenance.machine_record``, with the time and
    the generation it starts from) to ``run_dir/machine.json``, one entry per start or
    resume. Returns one line to print when the previous entry's machine differs: a
    warning where a version or XLA's CPU cap differs (the run goes on, but not bit-identical
    to an uninterrupted one), a note where only the CPU model does; None otherwise."""
    from esjax.provenance import machine_record, result_differences

    path = run_dir / "machine.json"
    try:
        history = json.loads(path.read_text()) if path.exists() else []
    except (OSError, ValueError):
        history = []  # unreadable: start the record afresh, it only informs
    mine = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "generation": generation,
            **machine_record()}  # fmt: skip
    line = None
    if history and isinstance(history[-1], dict):
        last = history[-1]
        changed = result_differences(last, mine)
        if changed:
            line = (f"warning: this run was last trained with other versions "
                    f"({', '.join(changed)}): it goes on, but not bit-identical to an "
                    "uninterrupted run")  # fmt: skip
        elif last.get("cpu") != mine["cpu"]:
            line = (
                f"note: resuming on another CPU ({last.get('cpu')} -> {mine['cpu']}): "
                "results stay bit-identical across x86-64 CPUs (docs/reproducibility.md)"
            )
    text = json.dumps([*history, mine], indent=1, allow_nan=False) + "\n"
    write_atomically(path, lambda t: t.write_text(text),
                     "make the run directory writable or pass --run-dir elsewhere")  # fmt: skip
    return line


LOCK_NAME = "lock"


class RunLock:
    """One owner per run directory: an exclusive ``flock`` on ``run_dir/lock`` (which
    names the holder's PID and host), held until ``release`` or the process's end. The
    kernel drops it when its holder dies, however (kill -9 included): a stale lock file
    never blocks a resume."""

    def __init__(self, run_dir: Path):
        import fcntl
        import socket

        self.path = Path(run_dir) / LOCK_NAME
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise ConfigError(f"cannot lock {run_dir} ({e.strerror}): make the run directory "
                              "writable") from None  # fmt: skip
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise ConfigError(
                f"{run_dir} is being trained by {holder}: wait for it to stop (or stop it) "
                "before resuming it"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"PID {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self.fd: int | None = fd

    def release(self) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            os.close(self.fd)  # closing drops the flock
            self.fd = None


def load_run_config(run_dir: Path) -> Config:
    """The Config saved in ``run_dir/config.json``; ConfigError (one line) otherwise."""
    run_dir = Path(run_dir)
    if run_dir.is_file():
        raise ConfigError(f"{run_dir} is a file, not a run directory: give the run's "
                          f"folder ({run_dir.parent})")  # fmt: skip
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such run directory")
    path = run_dir / "config.json"
    if not path.is_file():
        raise ConfigError(f"{run_dir} has no config.json, so it is not an esjax run directory")
    try:
        return Config.from_dict(json.loads(path.read_text()))
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"{path} is not valid JSON ({e.msg}, line {e.lineno}): restore it"
        ) from None
    except (TypeError, ConfigError) as e:
        raise ConfigError(f"{path} is not a valid esjax config: {e}") from None
