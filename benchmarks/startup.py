"""Start-up time to the first generation with the default 1 GB noise table, and memory."""

from __future__ import annotations

import os
import time


def _rss_mb(pid: int) -> tuple[float, float]:
    """(RSS, proportional set size) of a process in MB; PSS counts shared pages once."""
    rss = pss = 0.0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1]) / 1024
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1]) / 1024
    except OSError:
        pass
    return rss, pss


def bench_startup(env_id: str, workers: int, table_size: int) -> dict:
    from esjax.config import Config
    from esjax.trainer import Trainer

    t0 = time.perf_counter()
    cfg = Config(env=env_id, num_workers=workers, noise_table_size=table_size,
                 max_generations=1, snapshot_freq=0)  # fmt: skip
    trainer = Trainer.from_config(cfg, log=lambda s: None)
    trainer.start()
    t_ready = time.perf_counter() - t0
    try:
        trainer.step()
        t_first = time.perf_counter() - t0
        pids = [os.getpid()] + [p.pid for p in trainer.pool.procs]
        mem = [_rss_mb(p) for p in pids]
    finally:
        trainer.close()
    return {
        "env": env_id,
        "workers": workers,
        "noise_table_gb": 4 * table_size / 1e9,
        "workers_ready_s": t_ready,
        "first_generation_done_s": t_first,
        "rss_total_mb": sum(m[0] for m in mem),
        "pss_total_mb": sum(m[1] for m in mem),
    }
