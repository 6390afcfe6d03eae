"""Option values as presets, config.json, the Python API and the CLI give them: checked
against their type, and spelled the way ``esjax.config.Config`` stores them (one-line
ConfigError otherwise)."""

from __future__ import annotations

import json
import math
import numbers
from typing import Any

from esjax.errors import ConfigError


def flag(name: str) -> str:
    """An option's name as its CLI flag (without the dashes)."""
    return name.replace("_", "-")


_KINDS = {"bool": "true or false", "int": "a whole number", "float": "a number",
          "str": "a string"}  # fmt: skip


def type_problem(name: str, ftype: str, value: Any) -> str | None:
    """One line if ``value`` is not of option ``name``'s type ``ftype`` (its annotation as
    text; presets, config.json and the Python API give values as they are: a string
    "false" is not false); None if it is."""
    base = ftype.replace(" | None", "")
    if value is None and base != ftype:
        return None
    if base == "bool":
        ok = isinstance(value, bool)
    elif base == "int":
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    elif base == "float":
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    elif base == "str":
        ok = isinstance(value, str)
    elif base == "tuple[int, ...]":  # hidden_dims: sizes, or the word linear
        items = [value] if isinstance(value, str) else value
        ok = isinstance(items, (list, tuple)) and all(
            (isinstance(x, numbers.Integral) and not isinstance(x, bool)) or x == "linear"
            for x in items
        )
        base = "a list of layer sizes, or linear"
    elif name == "env_kwargs":  # KEY=VALUE strings, or a table (a preset's [env_kwargs])
        ok = isinstance(value, dict) or (
            isinstance(value, (list, tuple)) and all(isinstance(x, str) for x in value)
        )
        base = "a list of KEY=VALUE strings (or a table)"
    else:  # tuple[str, ...]: logger
        items = [value] if isinstance(value, str) else value
        ok = isinstance(items, (list, tuple)) and all(isinstance(x, str) for x in items)
        base = "a list of names"
    if ok:
        return None
    return f"option {name} (--{flag(name)}) must be {_KINDS.get(base, base)} (got {value!r})"


def toml_literal(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string
    return repr(value)


def env_kwargs_items(value) -> tuple[str, ...]:
    """--env-kwarg items as KEY=VALUE strings (a table's items spelled so), checked."""
    if isinstance(value, dict):
        value = [f"{k}={toml_literal(v)}" for k, v in value.items()]
    items = tuple(value or ())
    env_kwargs_dict(items)  # ConfigError for a malformed item
    return items


def env_kwargs_dict(items: tuple[str, ...]) -> dict:
    """``("KEY=VALUE", ...)`` (--env-kwarg, VALUE a TOML literal) -> {KEY: value};
    ConfigError (one line) for a malformed item."""
    import tomllib

    out: dict = {}
    for item in items:
        key, eq, text = item.partition("=")
        key = key.strip()
        if not eq or not key.isidentifier():
            raise ConfigError(f"--env-kwarg takes KEY=VALUE (got {item!r})")
        try:
            out[key] = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            raise ConfigError(
                f"--env-kwarg {item}: the value must be a TOML literal (a number, true/false, "
                f"or a quoted string: {key}='text')"
            ) from None
    return out


def hidden_dims_tuple(value) -> tuple[int, ...]:
    """Layer sizes from a tuple, a list (TOML) or 'linear' (also as a one-item list)."""
    items = [value] if isinstance(value, str) else list(value)
    if items == ["linear"]:
        return ()
    try:
        return tuple(int(h) for h in items)
    except (TypeError, ValueError):
        raise ConfigError(
            f"--hidden-dims takes layer sizes or the word linear (got {items})"
        ) from None


TrainReward = tuple[tuple[str, float], ...]  # ((term, weight), ...) in the order given


def parse_train_reward(text: str) -> TrainReward:
    """``"a=1,b=-0.5"`` -> (("a", 1.0), ("b", -0.5)); "" -> () (the stock reward).
    ConfigError (one line) for a malformed pair, a repeated term or a non-finite weight."""
    pairs: list[tuple[str, float]] = []
    for item in (p.strip() for p in text.replace(" ", ",").split(",")):
        if not item:
            continue
        name, eq, value = item.partition("=")
        name = name.strip()
        try:
            weight = float(value) if eq and name else math.nan
        except ValueError:
            weight = math.nan
        if not math.isfinite(weight):
            raise ConfigError(
                f"--train-reward takes TERM=WEIGHT pairs separated by commas, e.g. "
                f"progress=1,constant=0.01 (got {item!r})"
            )
        if name in dict(pairs):
            raise ConfigError(f"--train-reward names {name} twice: give each term once")
        pairs.append((name, weight))
    return tuple(pairs)


def format_train_reward(reward: TrainReward) -> str:
    """The spelling ``parse_train_reward`` reads back to ``reward``."""
    return ",".join(f"{name}={weight!r}" for name, weight in reward)
