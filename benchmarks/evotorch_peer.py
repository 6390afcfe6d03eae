"""EvoTorch's PGPE on a pybullet env: steps/s of a peer, for ``make bench``.

Runs in its own virtual environment (``make bench`` builds it: evotorch, the CPU build
of torch, gymnasium, pybullet); it never imports esjax. Settings mirror esjax's run:
the same MLP (tanh hidden layers), population, timesteps per generation (EvoTorch's
``num_interactions``: the population grows until a generation has that many steps, as
esjax's generation does), observation normalization and number of worker processes
(Ray actors). Prints one JSON object: simulated steps, seconds and steps/s over the
generations after the first (its start-up and warm-up apart).

    benchmarks/.evotorch/bin/python benchmarks/evotorch_peer.py --env AntBulletEnv-v0 \\
        --hidden 32 32 --popsize 40 --interactions 10000 --actors 2 --timesteps 300000
"""

from __future__ import annotations

import argparse
import json
import time


def make_env(env_id: str):
    """The env, with pybullet's ids registered (in each Ray actor too)."""
    import gymnasium as gym
    import pybullet_envs_gymnasium  # noqa: F401  (registers *BulletEnv-v0)

    return gym.make(env_id)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="AntBulletEnv-v0")
    p.add_argument("--hidden", type=int, nargs="*", default=[32, 32])
    p.add_argument("--popsize", type=int, default=40)
    p.add_argument("--interactions", type=int, default=10_000)
    p.add_argument("--actors", type=int, default=2)
    p.add_argument("--timesteps", type=int, default=300_000)
    args = p.parse_args()

    import functools

    import evotorch
    import torch
    from evotorch.algorithms import PGPE
    from evotorch.neuroevolution import GymNE

    torch.set_num_threads(1)
    layers, width = [], "obs_length"
    for h in args.hidden:
        layers += [f"Linear({width}, {h})", "Tanh()"]
        width = str(h)
    network = " >> ".join([*layers, f"Linear({width}, act_length)"])
    problem = GymNE(
        env=functools.partial(make_env, args.env),
        network=network,
        observation_normalization=True,
        num_actors=args.actors,
    )
    searcher = PGPE(
        problem,
        popsize=args.popsize,
        num_interactions=args.interactions,
        popsize_max=args.popsize * 8,
        center_learning_rate=0.01125,  # EvoTorch's Ant-like PGPE/ClipUp settings
        stdev_learning_rate=0.1,
        stdev_init=0.1,
        optimizer="clipup",
        optimizer_config={"max_speed": 0.0225},
    )
    searcher.step()  # start-up: actors, envs, the first generation
    start_steps = int(searcher.status["total_interaction_count"])
    t0 = time.perf_counter()
    generations = 0
    while int(searcher.status["total_interaction_count"]) - start_steps < args.timesteps:
        searcher.step()
        generations += 1
    seconds = time.perf_counter() - t0
    steps = int(searcher.status["total_interaction_count"]) - start_steps
    print(json.dumps({
        "evotorch": evotorch.__version__, "torch": torch.__version__, "env": args.env,
        "hidden": args.hidden, "popsize": args.popsize, "interactions": args.interactions,
        "actors": args.actors, "generations": generations, "steps": steps,
        "seconds": seconds, "steps_per_s": steps / seconds,
        "mean_eval": float(searcher.status.get("mean_eval", float("nan"))),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
