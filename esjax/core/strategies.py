"""The strategies (``--algo``), one registry entry each: the options it has, their values
when left unset, its constructor and its state.

Config validation, the CLI's help, the checkpoint tree and the parametrized strategy test
all read ``STRATEGIES``. A new strategy is a file in ``esjax/core`` (its ``make_*`` and
state NamedTuple, whose first fields are ``theta`` and ``opt_state``) and one ``Strategy``
entry here; an option only it has also needs a field in ``esjax.config.Config``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import optax

from esjax.core.ars import make_ars
from esjax.core.es import ES, ESState, make_es
from esjax.core.pgpe import PGPEState, make_pgpe

CLIPUP_MAX_SPEED = 0.15  # EvoTorch rl_clipup.py's default max speed
CLIPUP_STEP = 0.75  # step = 0.75 x max speed (rl_clipup.py; the paper used 0.5)
PGPE_RADIUS = 15.0  # initial radius = 15 x max speed (the ClipUp paper)

# Options every strategy has (the optimizer's), and the ones a strategy may own.
OPTIMIZER_OPTIONS = ("optimizer", "learning_rate", "gradient_optimizer", "momentum",
                     "weight_decay", "l2coeff", "max_speed")  # fmt: skip


class Strategy(NamedTuple):
    """One ``--algo``.

    ``defaults``: its values of the options left unset (None), shared ones included;
    ``own_options``: options only strategies that list them have (another strategy's are
    a one-line error); ``build(num_params, optimizer, options)``: its ``ES`` (init / ask /
    tell / sigma), ``options`` any object with the option names as attributes;
    ``state``: its state NamedTuple (``theta``, ``opt_state``, then what else a
    checkpoint stores); ``always_mirrored``: it cannot run without mirrored pairs;
    ``derive(options, values)``: values of its unset options computed from others."""

    name: str
    summary: str
    defaults: dict[str, Any]
    own_options: tuple[str, ...]
    build: Callable[[int, optax.GradientTransformation, Any], ES]
    state: type
    always_mirrored: bool
    derive: Callable[[Any, dict[str, Any]], dict[str, Any]] | None = None


def _build_openai_es(num_params, optimizer, o) -> ES:
    return make_es(
        num_params, optimizer, noise_stdev=o.noise_stdev,
        mirrored_sampling=o.mirrored_sampling, fitness_shaping=o.fitness_shaping,
        return_proc_mode=o.return_proc_mode, divide_by_stdev=o.divide_by_stdev,
    )  # fmt: skip


def _build_ars(num_params, optimizer, o) -> ES:
    return make_ars(num_params, optimizer, noise_stdev=o.noise_stdev,
                    top_directions=o.top_directions)  # fmt: skip


def _pgpe_radius(c, values: dict[str, Any]) -> dict[str, Any]:
    if c.init_radius is not None:
        return {}
    return {"init_radius": PGPE_RADIUS * (values.get("max_speed") or c.max_speed
                                          or CLIPUP_MAX_SPEED)}  # fmt: skip


def _build_pgpe(num_params, optimizer, o) -> ES:
    return make_pgpe(num_params, optimizer, init_radius=o.init_radius, sigma_lr=o.sigma_lr,
                     sigma_max_change=o.sigma_max_change, return_proc_mode=o.return_proc_mode,
                     fitness_shaping=o.fitness_shaping)  # fmt: skip


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    Strategy(
        "openai-es", "Salimans et al. 2017: ranks, Adam, fixed sigma",
        dict(optimizer="adam", learning_rate=0.01, noise_stdev=0.02, l2coeff=0.005,
             momentum=0.9, return_proc_mode="centered_rank", fitness_shaping=True,
             divide_by_stdev=False),
        ("noise_stdev", "return_proc_mode", "fitness_shaping", "divide_by_stdev"),
        _build_openai_es, ESState, always_mirrored=False,
    ),
    # ARS V2(-t): plain SGD (momentum 0), no weight decay, ν 0.03 and α 0.02 (mid-range of
    # the paper's Table 9), every direction kept unless --top-directions says otherwise.
    Strategy(
        "ars", "Mania et al. 2018, V2-t: raw returns of the --top-directions best "
        "directions, SGD",
        dict(optimizer="sgd", learning_rate=0.02, noise_stdev=0.03, l2coeff=0.0,
             momentum=0.0, top_directions=0),
        ("noise_stdev", "top_directions"),
        _build_ars, ESState, always_mirrored=True,
    ),
    # PGPE + ClipUp as EvoTorch's rl_clipup.py: σ learning rate 0.1, at most 20 % change
    # per generation, max speed 0.15, step 0.75 x max speed, initial radius 15 x max speed.
    Strategy(
        "pgpe", "a learned sigma per parameter, ClipUp",
        dict(optimizer="clipup", l2coeff=0.0, momentum=0.9,
             return_proc_mode="centered_rank", fitness_shaping=True, sigma_lr=0.1,
             sigma_max_change=0.2),
        ("return_proc_mode", "fitness_shaping", "sigma_lr", "sigma_max_change", "init_radius"),
        _build_pgpe, PGPEState, always_mirrored=True, derive=_pgpe_radius,
    ),
)}  # fmt: skip

ALGOS = tuple(STRATEGIES)
# Which strategies have each option that not every strategy has.
ONLY_FOR: dict[str, tuple[str, ...]] = {
    option: tuple(s.name for s in STRATEGIES.values() if option in s.own_options)
    for option in dict.fromkeys(o for s in STRATEGIES.values() for o in s.own_options)
}
# Every option a strategy's constructor or optimizer reads (one ES per distinct tuple).
ES_OPTIONS = ("algo", *OPTIMIZER_OPTIONS, *ONLY_FOR, "mirrored_sampling")


def _flag(name: str) -> str:
    return name.replace("_", "-")


def algo_help() -> str:
    """The ``--algo`` help: each strategy and its summary."""
    names = [f"{s.name} ({s.summary})" for s in STRATEGIES.values()]
    return (f"Strategy: {', '.join(names[:-1])} or {names[-1]}. Options of another strategy "
            "are an error.")  # fmt: skip


def default_help(option: str, derived: str = "") -> str:
    """'Default: 0.01 (openai-es), 0.02 (ars)' for an option the strategies set, from their
    entries; ``derived`` adds the rule of a value computed from other options."""
    by_value: dict[str, list[str]] = {}
    for s in STRATEGIES.values():
        if option in s.defaults:
            by_value.setdefault(repr(s.defaults[option]).strip("'"), []).append(s.name)
    parts = [f"{value} ({', '.join(names)})" for value, names in by_value.items()]
    text = ", ".join(parts + ([derived] if derived else []))
    return f"Default: {text}." if text else ""


def strategy_problems(c) -> Iterator[str]:
    """Options given (not None) that the chosen strategy does not have."""
    if c.algo not in STRATEGIES:
        yield f"--algo must be one of {', '.join(ALGOS)} (got {c.algo})"
        return
    for name, algos in ONLY_FOR.items():
        if getattr(c, name) is not None and c.algo not in algos:
            yield (f"--{_flag(name)} applies to --algo {' / '.join(algos)} only, not "
                   f"{c.algo}: remove it or change --algo")  # fmt: skip
    if STRATEGIES[c.algo].always_mirrored and not c.mirrored_sampling:
        yield f"--algo {c.algo} always samples mirrored pairs: drop --no-mirrored-sampling"
    optimizer = c.optimizer or STRATEGIES[c.algo].defaults["optimizer"]
    if c.max_speed is not None and optimizer != "clipup":
        yield f"--max-speed applies to --optimizer clipup only (this run uses {optimizer})"


def strategy_values(c) -> dict[str, Any]:
    """The values of the unset options of ``c``'s strategy (its defaults, and the ones
    derived from other options: ClipUp's max speed and step, the strategy's ``derive``)."""
    strategy = STRATEGIES[c.algo]
    defaults = strategy.defaults
    values = {k: v for k, v in defaults.items() if getattr(c, k) is None}
    optimizer = c.optimizer or values.get("optimizer")
    lr = c.learning_rate
    if optimizer == "clipup":
        speed = c.max_speed
        if speed is None:
            speed = 2 * lr if lr is not None else CLIPUP_MAX_SPEED
            values["max_speed"] = speed
        if lr is None:
            values["learning_rate"] = round(CLIPUP_STEP * speed, 12)
    if c.learning_rate is None and "learning_rate" not in values:
        values["learning_rate"] = defaults.get("learning_rate", 0.01)
    if strategy.derive:
        values.update(strategy.derive(c, values))
    return values


def build_strategy(options, num_params: int, optimizer: optax.GradientTransformation) -> ES:
    """The ES of ``options.algo`` with ``options``' values (any object with the names of
    ``ES_OPTIONS`` as attributes)."""
    return STRATEGIES[options.algo].build(num_params, optimizer, options)


def state_extras(state) -> dict[str, Any]:
    """What a strategy's state holds beyond θ and the optimizer state (PGPE: σ), by name."""
    return {f: getattr(state, f) for f in state._fields if f not in ("theta", "opt_state")}


def state_of(algo: str, theta, opt_state, extras: dict[str, Any]):
    """``algo``'s state NamedTuple from θ, the optimizer state and ``state_extras``."""
    cls = STRATEGIES[algo].state
    return cls(theta, opt_state, *(extras[f] for f in cls._fields[2:]))
