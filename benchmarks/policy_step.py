"""Policy inference per env step, measured where it runs: beside a stepping simulator.

Each of N spawned processes steps K envs in lockstep with one batched policy call per
step (as a worker does), perturbed weights per env, for a fixed time. Two backends:
  jax:   jax.jit(jax.vmap(policy_apply)), the pure-JAX policy (esjax's workers before)
  numpy: policy_apply_np on the calling thread (esjax's workers now)
Reported: µs of inference per env step (call time / K) and µs per env.step, averaged
over processes. Standalone microbenchmarks miss what matters here: the simulator evicts
the weights from cache and the other processes compete for the cores.

    python benchmarks/policy_step.py --env AntBulletEnv-v0 --workers 2 --seconds 20
"""

from __future__ import annotations

import argparse
import json
import os
import time

from throughput import run_concurrently

BACKENDS = ("jax", "numpy")


def _policy_worker(env_id: str, backend: str, k: int, seconds: float, out) -> None:
    os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false"
    import functools

    import numpy as np

    from esjax.core.policy import PolicySpec, policy_apply, policy_apply_np, unravel
    from esjax.rollout.envs import env_info, make_env

    info = env_info(env_id)
    spec = PolicySpec(info.ob_dim, info.ac_dim, (256, 256), "tanh", info.ac_low, info.ac_high)
    envs = [make_env(env_id) for _ in range(k)]
    rng = np.random.default_rng(0)
    rows = [unravel(spec, 0.05 * rng.standard_normal(spec.num_params, np.float32))
            for _ in range(k)]  # fmt: skip
    stacked = [
        tuple(np.stack([r[i][j] for r in rows]) for j in (0, 1)) for i in range(len(rows[0]))
    ]
    mean = np.zeros(spec.ob_dim, np.float32)
    std = np.ones(spec.ob_dim, np.float32)
    if backend == "jax":
        import jax

        apply = functools.partial(policy_apply, spec)
        fn = jax.jit(jax.vmap(apply, in_axes=(0, 0, None, None)))
        dev = jax.device_put((stacked, mean, std))

        def act(obs):
            return np.asarray(fn(dev[0], obs, dev[1], dev[2]))
    else:

        def act(obs):
            return policy_apply_np(spec, stacked, obs, mean, std)

    low, high = np.asarray(spec.ac_low, np.float32), np.asarray(spec.ac_high, np.float32)
    obs = np.stack([np.asarray(e.reset(seed=i)[0], np.float32).ravel() for i, e in enumerate(envs)])
    act(obs)  # compile / warm up
    t_act = t_env = 0.0
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        ta = time.perf_counter()
        actions = np.clip(act(obs), low, high)
        tb = time.perf_counter()
        for i, env in enumerate(envs):
            ob, _, term, trunc, _ = env.step(actions[i])
            obs[i] = ob if not (term or trunc) else env.reset()[0]
        t_act += tb - ta
        t_env += time.perf_counter() - tb
        steps += k
    out.put((1e6 * t_act / steps, 1e6 * t_env / steps, steps / (time.perf_counter() - t0)))


def bench_policy_step(env_id: str, backend: str, k: int, workers: int, seconds: float) -> dict:
    """Mean over ``workers`` concurrent processes of inference and env µs per step."""
    res = run_concurrently(_policy_worker, (env_id, backend, k, seconds), workers)
    return {
        "env": env_id,
        "backend": backend,
        "envs_per_call": k,
        "workers": workers,
        "inference_us_per_step": sum(r[0] for r in res) / len(res),
        "env_us_per_step": sum(r[1] for r in res) / len(res),
        "steps_per_s": sum(r[2] for r in res),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="AntBulletEnv-v0")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seconds", type=float, default=20.0)
    args = p.parse_args()
    for backend in BACKENDS:
        for k in (1, 8):
            r = bench_policy_step(args.env, backend, k, args.workers, args.seconds)
            print(json.dumps(r))


if __name__ == "__main__":
    main()
