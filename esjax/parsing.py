"""argparse at the edge, shared by the commands: one-line errors, defaults in the help,
and the types of the flags that are not plain values."""

from __future__ import annotations

import argparse


class OneLineParser(argparse.ArgumentParser):
    """argparse with its errors on one line and a pointer to --help (no usage wall).
    ``invoked_as``: the program name to show instead of ``prog`` (the ``esjax`` command
    sets it to e.g. 'esjax train')."""

    invoked_as: str | None = None

    def __init__(self, *args, **kwargs):
        if OneLineParser.invoked_as:
            kwargs["prog"] = OneLineParser.invoked_as
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        """argparse's own errors (a bad flag or value): one line and where to look."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

    def fail(self, message: str):
        """esjax's own one-line errors, which name their fix: exit code 2."""
        self.exit(2, f"{self.prog}: error: {message}\n")


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default unless it is None or its help already states it."""

    def _get_help_string(self, action):
        text = action.help or ""
        empty = action.default in (None, argparse.SUPPRESS) or action.default == []
        if empty or "default" in text.lower():
            return text
        return super()._get_help_string(action)


def envs_per_worker_arg(text: str) -> int:
    """The CLI's --envs-per-worker: 'auto' is 0; otherwise a count >= 1."""
    if text == "auto":
        return 0
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 1:
        raise ValueError(f"--envs-per-worker must be >= 1, or auto (got {text})")
    return value


def hidden_dims_arg(text: str) -> int | str:
    """The CLI's --hidden-dims tokens: layer sizes, or the single word 'linear'."""
    if text == "linear":
        return text
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"--hidden-dims takes layer sizes or 'linear' (got {text})") from None
