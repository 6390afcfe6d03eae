"""Every error type esjax raises on purpose, on the ground floor (imports nothing of
esjax). The CLI prints the message of a ``ConfigError`` (and its subclasses) as one line and
exits 2; the others are failures of a run, reported with their cause."""

from __future__ import annotations

__all__ = ["CheckpointError", "CheckpointWriteError", "ConfigError", "NonFiniteError",
           "RayBackendError", "StopRequested", "WorkerDied", "WorkerError"]  # fmt: skip


class ConfigError(ValueError):
    """A user-caused configuration problem; its message is one line naming problem and fix."""


class CheckpointError(ConfigError):
    """A checkpoint that is missing, unreadable or does not fit the run (one line)."""


class RayBackendError(ConfigError):
    """The Ray backend cannot start as asked (exit code 2 at the CLI)."""


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (disk full, folder unwritable); nothing of it loads."""


class WorkerError(RuntimeError):
    """A worker failed; the message carries its traceback or exit code."""


class WorkerDied(WorkerError):
    """Worker ``slot`` lost its process (killed, segfault, its node gone); it can be
    restarted. ``why``: its exit code, or what the backend knows."""

    def __init__(self, slot: int, why: str):
        super().__init__(f"worker {slot} died ({why})")
        self.slot, self.why = slot, why


class NonFiniteError(RuntimeError):
    """The policy produced non-finite actions or θ became non-finite."""


class StopRequested(Exception):
    """A stop signal arrived; raised only between generations' state updates."""
