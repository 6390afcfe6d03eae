"""Named option sets: ``python -m esjax.train --env NAME`` starts from NAME's preset.

A preset is a TOML file of Config fields (``env`` included) beside this module (package
data: an installed esjax has them), each value commented with where it comes from and the
results in the repository's experiments/results it cites; ``--preset`` picks
another (a name or a path to such a file), ``--preset none`` the bare defaults. Flags
given on the command line override the preset's values.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

from esjax.config import Config, field_type_problem
from esjax.errors import ConfigError

PRESET_DIR = Path(__file__).resolve().parent  # package data: installed with esjax
NO_PRESET = "none"  # --preset none: the bare defaults


def preset_for(env_id: str, requested: str | None, folder: Path = PRESET_DIR) -> str:
    """The preset a run of ``env_id`` starts from: ``requested`` (``--preset``) if given,
    else the env's own preset if one is shipped, else ``NO_PRESET``."""
    if requested is not None:
        return requested
    return env_id if (Path(folder) / f"{env_id}.toml").is_file() else NO_PRESET


def start_values(env_id: str, requested: str | None, algo: str | None,
                 folder: Path = PRESET_DIR) -> dict[str, Any]:  # fmt: skip
    """The Config fields a run starts from, before its flags: preset ``requested``, else
    ``env_id``'s own. A preset is tuned for its strategy: with another ``--algo`` the
    env's own preset gives way to the defaults, and a requested one is an error."""
    name = preset_for(env_id, requested, folder)
    values = load_preset(name, folder)
    tuned_for = values.get("algo", Config.algo)
    if name == NO_PRESET or algo is None or algo == tuned_for:
        return values
    if requested is None:
        return load_preset(NO_PRESET)
    raise ConfigError(
        f"--algo {algo}: preset {name} is tuned for {tuned_for}; drop --algo, or add "
        "--preset none to start from esjax's defaults"
    )


def settings_line(cfg: Config, requested: str | None = None, folder: Path = PRESET_DIR) -> str:
    """The first line ``esjax.train`` prints: where the options of ``cfg`` (made with
    ``--preset requested``, if given) come from."""
    if cfg.preset == NO_PRESET:
        own = preset_for(cfg.env, None, folder)
        if requested == NO_PRESET:
            why = "--preset none"
        elif own == NO_PRESET:
            why = f"no preset for {cfg.env}"
        else:
            tuned_for = load_preset(own, folder).get("algo", Config.algo)
            why = f"preset {own} is tuned for {tuned_for}, not {cfg.algo}"
        return f"settings: esjax defaults ({why}); flags override"
    path = preset_path(cfg.preset, folder).resolve()
    if path.parent == PRESET_DIR.resolve():  # shipped: the same line from a wheel or a clone
        shown: Path | str = f"esjax/presets/{path.name}"
    else:
        try:
            shown = path.relative_to(Path.cwd())
        except ValueError:
            shown = path
    return f"settings: preset {cfg.preset} ({shown}); flags override"


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
    """The Config fields preset ``name`` sets (with ``preset`` = ``name``; none for
    ``NO_PRESET``); ConfigError (one line) for an unknown name, a file that is not TOML,
    or keys that are not options."""
    if name == NO_PRESET:
        return {"preset": NO_PRESET}
    path = preset_path(name, folder)
    try:
        values = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"preset {path} is not valid TOML ({e}): fix the file") from None
    fields = {f.name for f in dataclasses.fields(Config)}
    unknown = sorted(set(values) - (fields - {"preset"}))
    if unknown:
        raise ConfigError(f"preset {path} sets unknown option(s) {unknown}: fix the file")
    if "env" not in values:
        raise ConfigError(f'preset {path} names no env: add env = "..." to it')
    for key, value in values.items():
        problem = field_type_problem(key, value)
        if problem:
            raise ConfigError(f"preset {path}: {problem}: fix the file")
    if isinstance(values.get("hidden_dims"), list):
        values["hidden_dims"] = tuple(values["hidden_dims"])  # or the word "linear"
    return {**values, "preset": name}
