"""Which options each strategy (``--algo``) has, and their values when left unset.

``Config`` fills every option a strategy leaves at None from here when it is made, so
``config.json`` records what ran; an option of another strategy is a one-line error.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

ALGOS = ("openai-es", "ars", "pgpe")

# Each strategy's values for the options left unset (None). Only these strategies have
# the options they list; giving one to another strategy is an error (see ONLY_FOR).
STRATEGY_DEFAULTS: dict[str, dict[str, Any]] = {
    "openai-es": dict(optimizer="adam", learning_rate=0.01, noise_stdev=0.02, l2coeff=0.005,
                      momentum=0.9, return_proc_mode="centered_rank", fitness_shaping=True,
                      divide_by_stdev=False),
    # ARS V2(-t): plain SGD (momentum 0), no weight decay, ν 0.03 and α 0.02 (mid-range of
    # the paper's Table 9), every direction kept unless --top-directions says otherwise.
    "ars": dict(optimizer="sgd", learning_rate=0.02, noise_stdev=0.03, l2coeff=0.0,
                momentum=0.0, top_directions=0),
    # PGPE + ClipUp as EvoTorch's rl_clipup.py: σ learning rate 0.1, at most 20 % change
    # per generation, max speed 0.15, step 0.75 x max speed, initial radius 15 x max speed.
    "pgpe": dict(optimizer="clipup", l2coeff=0.0, momentum=0.9,
                 return_proc_mode="centered_rank", fitness_shaping=True, sigma_lr=0.1,
                 sigma_max_change=0.2),
}  # fmt: skip
ONLY_FOR = {
    "noise_stdev": ("openai-es", "ars"),
    "return_proc_mode": ("openai-es", "pgpe"),
    "fitness_shaping": ("openai-es", "pgpe"),
    "divide_by_stdev": ("openai-es",),
    "top_directions": ("ars",),
    "sigma_lr": ("pgpe",),
    "sigma_max_change": ("pgpe",),
    "init_radius": ("pgpe",),
}
CLIPUP_MAX_SPEED = 0.15  # EvoTorch rl_clipup.py's default max speed
CLIPUP_STEP = 0.75  # step = 0.75 x max speed (rl_clipup.py; the paper used 0.5)
PGPE_RADIUS = 15.0  # initial radius = 15 x max speed (the ClipUp paper)


def _flag(name: str) -> str:
    return name.replace("_", "-")


def strategy_problems(c) -> Iterator[str]:
    """Options given (not None) that the chosen strategy does not have."""
    if c.algo not in ALGOS:
        yield f"--algo must be one of {', '.join(ALGOS)} (got {c.algo})"
        return
    for name, algos in ONLY_FOR.items():
        if getattr(c, name) is not None and c.algo not in algos:
            yield (f"--{_flag(name)} applies to --algo {' / '.join(algos)} only, not "
                   f"{c.algo}: remove it or change --algo")  # fmt: skip
    if c.algo != "openai-es" and not c.mirrored_sampling:
        yield f"--algo {c.algo} always samples mirrored pairs: drop --no-mirrored-sampling"
    optimizer = c.optimizer or STRATEGY_DEFAULTS[c.algo]["optimizer"]
    if c.max_speed is not None and optimizer != "clipup":
        yield f"--max-speed applies to --optimizer clipup only (this run uses {optimizer})"


def strategy_values(c) -> dict[str, Any]:
    """The values of the unset options of ``c``'s strategy (its defaults, and the ones
    derived from other options: ClipUp's max speed and step, PGPE's initial radius)."""
    values = {k: v for k, v in STRATEGY_DEFAULTS[c.algo].items() if getattr(c, k) is None}
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
        values["learning_rate"] = STRATEGY_DEFAULTS[c.algo].get("learning_rate", 0.01)
    if c.algo == "pgpe" and c.init_radius is None:
        values["init_radius"] = PGPE_RADIUS * (values.get("max_speed") or c.max_speed
                                               or CLIPUP_MAX_SPEED)  # fmt: skip
    return values
