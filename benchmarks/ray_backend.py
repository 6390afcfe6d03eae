"""The Ray backend against the local process pool on this machine, and what losing a node
costs.

throughput: the same training run (env, policy, 2 workers) with ``--backend local`` and
``--backend ray`` (a private Ray instance), measured back to back and alternated
(local, ray, local, ray), each against the same raw ceiling (2 processes stepping the
env with random actions, no policy). startup: seconds from ``Trainer.start()`` to
workers ready (Ray: connect + per-node tables + actors).

node loss: a 2-node ``ray.cluster_utils.Cluster`` (1 CPU each, Ray's default health
checks) trains; the worker node is removed 50 ms into a generation. Reported: the
generation times before (2 nodes), of the generation with the loss, and after (1 node),
how long until esjax had re-queued the lost node's work, and until the log counted the
node as lost (when Ray declares it dead).

    python benchmarks/ray_backend.py --env HalfCheetah-v5 --seconds 30
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from throughput import raw_ceiling, training_rate  # noqa: E402


def ray_vs_local(env_id: str, hidden: tuple, seconds: float, table: int, repeats: int = 2):
    """Alternated local / ray training rates against one raw ceiling."""
    raw = raw_ceiling(env_id, 2, seconds / 2, "random")
    extra = {"noise_table_size": table, "hidden_dims": hidden}
    runs = {"local": [], "ray": []}
    for _ in range(repeats):
        for backend in ("local", "ray"):
            print(f"  {env_id} {backend} ...", flush=True)
            runs[backend].append(training_rate(env_id, 2, seconds, {**extra, "backend": backend}))
    out = {"env": env_id, "hidden_dims": hidden, "workers": 2, "raw_random_steps_per_s": raw}
    for backend, rs in runs.items():
        out[backend] = {
            "steps_per_s": [r["steps_per_s"] for r in rs],
            "startup_s": [r["startup_s"] for r in rs],
            "ratio_random": statistics.mean(r["steps_per_s"] for r in rs) / raw,
        }
    out["ray_over_local"] = statistics.mean(out["ray"]["steps_per_s"]) / statistics.mean(
        out["local"]["steps_per_s"]
    )
    return out


def node_loss(env_id: str, hidden: tuple, timesteps_per_gen: int, table: int,
              fast_health: bool = False) -> dict:  # fmt: skip
    """Generation times around the loss of one of two nodes (Ray's default health checks;
    ``fast_health``: 0.5 s x 2, for a smoke test that need not wait ~15 s for the loss)."""
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    import ray
    from ray.cluster_utils import Cluster

    from esjax.config import Config
    from esjax.trainer import Trainer

    store = max(200 << 20, 4 * table + (128 << 20))
    warnings.filterwarnings("ignore", "os.fork", RuntimeWarning)  # Ray's fork+exec
    head = dict(num_cpus=1, include_dashboard=False, object_store_memory=store)
    if fast_health:
        head["_system_config"] = {"health_check_initial_delay_ms": 0,
                                  "health_check_period_ms": 500,
                                  "health_check_failure_threshold": 2}  # fmt: skip
    cluster = Cluster(initialize_head=True, head_node_args=head)
    worker = cluster.add_node(num_cpus=1, object_store_memory=store)
    cluster.wait_for_nodes()
    events: list[tuple[float, str]] = []
    cfg = Config(env=env_id, hidden_dims=hidden, noise_table_size=table, backend="ray",
                 ray_address=cluster.address, timesteps_per_gen=timesteps_per_gen,
                 population_size=40, eval_every=0, max_generations=10**6)  # fmt: skip
    trainer = Trainer.from_config(cfg, log=lambda s: events.append((time.monotonic(), s)))
    try:
        trainer.start()
        trainer.step()  # warm-up
        before = [trainer.step()["TimeElapsedThisGen"] for _ in range(4)]
        pool, recv, removed = trainer.pool, trainer.pool.recv, []

        def recv_then_remove(timeout=1.0):
            if removed:
                return recv(timeout)
            msg = recv(0.05)
            removed.append(time.monotonic())
            cluster.remove_node(worker, allow_graceful=False)
            return msg

        pool.recv = recv_then_remove
        row = trainer.step()
        pool.recv = recv
        after, lost_at = [], None  # on 1 node, until Ray declares the node dead (<= 60 s)
        while len(after) < 4 or (lost_at is None and time.monotonic() - removed[0] < 60):
            r = trainer.step()
            after.append(r["TimeElapsedThisGen"])
            if lost_at is None and (r["NodesLost"] or row["NodesLost"]):
                lost_at = time.monotonic() - removed[0]
        notices = [(t - removed[0], s) for t, s in events if t >= removed[0]]
    finally:
        trainer.close()
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
    return {
        "env": env_id,
        "timesteps_per_gen": timesteps_per_gen,
        "gen_s_two_nodes": before,
        "gen_s_with_loss": row["TimeElapsedThisGen"],
        "gen_s_one_node": after,
        "worker_restarts": row["WorkerRestarts"],
        "nodes_lost": row["NodesLost"],
        "nodes_lost_logged_s_after_removal": lost_at,
        "notices_s_after_removal": notices,
        "cost_s": row["TimeElapsedThisGen"] - statistics.median(after[:4]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="HalfCheetah-v5")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--hidden-dims", type=int, nargs="+", default=[64, 64])
    p.add_argument("--out", default=None)
    args = p.parse_args()
    hidden = tuple(args.hidden_dims)
    result = {
        "throughput": ray_vs_local(args.env, hidden, args.seconds, 250_000_000),
        "node_loss": node_loss(args.env, hidden, 10_000, 25_000_000),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
