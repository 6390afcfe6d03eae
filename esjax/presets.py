"""Named option sets for ``python -m esjax.train --preset NAME``.

A preset is a TOML file of Config fields (``env`` included) in ``experiments/presets/``
of the esjax checkout, each value commented with where it comes from; a path to any such
file works too. Flags given on the command line override the preset's values.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

from esjax.config import Config, ConfigError

PRESET_DIR = Path(__file__).resolve().parent.parent / "experiments" / "presets"


def preset_names(folder: Path = PRESET_DIR) -> list[str]:
    """The presets in ``folder`` (file names without ``.toml``), sorted."""
    return sorted(p.stem for p in Path(folder).glob("*.toml"))


def preset_path(name: str, folder: Path = PRESET_DIR) -> Path:
    """The file of preset ``name`` (or ``name`` itself when it is a .toml path)."""
    if name.endswith(".toml"):
        path = Path(name)
        if not path.is_file():
            raise ConfigError(f"--preset {name}: no such file")
        return path
    path = Path(folder) / f"{name}.toml"
    if not path.is_file():
        names = ", ".join(preset_names(folder)) or f"(none found in {folder})"
        raise ConfigError(f"unknown preset {name!r}: choose one of {names}")
    return path


def load_preset(name: str, folder: Path = PRESET_DIR) -> dict[str, Any]:
    """The Config fields preset ``name`` sets; ConfigError (one line) for an unknown
    name, a file that is not TOML, or keys that are not options."""
    path = preset_path(name, folder)
    try:
        values = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"preset {path} is not valid TOML ({e}): fix the file") from None
    fields = {f.name for f in dataclasses.fields(Config)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ConfigError(f"preset {path} sets unknown option(s) {unknown}: fix the file")
    if "env" not in values:
        raise ConfigError(f'preset {path} names no env: add env = "..." to it')
    if isinstance(values.get("hidden_dims"), list):
        values["hidden_dims"] = tuple(values["hidden_dims"])  # or the word "linear"
    return values
