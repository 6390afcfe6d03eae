"""A run: its state, what it writes to disk and how it starts.

``state`` (the run state and its checkpoint tree), ``checkpoint`` (orbax, the best and the
latest), ``rundir`` (the run directory, its lock, config.json, machine.json), ``metrics``
(the CSV log and the progress display), ``trackers`` (TensorBoard, W&B), ``recorder`` (owns
the log, trackers, checkpoints and the best-checkpoint facts), ``resolve`` (a Config fitted
to the env and the machine, and the pool it asks for), ``provenance`` (commit and machine
records) and ``portable`` (a trained policy without the run).
"""
