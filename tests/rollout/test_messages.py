"""The messages between trainer and workers are small typed records: every kind survives
the pipe (pickle) equal to itself, episodes are a few integers, and θ travels only in
``Params`` (once per generation)."""

import pickle
import typing

import numpy as np

from esjax.rollout import messages as m

EP = m.Episode(gen=3, unit=7, part=1, offset=123_456, sign=-1, env_seed=99, noise_seed=5,
               calc_obstat=True)  # fmt: skip
RESULT = m.EpisodeResult(EP, ret=12.5, sign_ret=-1.0, length=40, ob_sum=np.ones(5),
                         ob_sumsq=np.ones(5), ob_count=40, time_predict=(0.1, 0.0, 0.01, 40),
                         time_env=0.2, train_ret=3.0)  # fmt: skip


def every_message():
    theta = np.arange(6, dtype=np.float32)
    return [m.Params(3, theta, theta[:2], theta[:2], 0.02), m.Run(EP), m.Stop(), m.Ready(),
            m.Finished(RESULT), m.Aborted(2, 80), m.NonFinite(EP), m.Alive(),
            m.Failed("Traceback\nValueError\n")]  # fmt: skip


def same(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    if isinstance(a, tuple):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    return a == b


def test_every_message_crosses_a_pipe_unchanged():
    for msg in every_message():
        assert same(pickle.loads(pickle.dumps(msg)), msg), type(msg).__name__


def test_the_unions_name_every_message_kind_once():
    to_worker, from_worker = typing.get_args(m.ToWorker), typing.get_args(m.FromWorker)
    kinds = {type(msg) for msg in every_message()}
    assert kinds == set(to_worker) | set(from_worker)
    assert not set(to_worker) & set(from_worker)


def test_an_episode_is_a_few_integers_and_only_params_carry_theta():
    assert all(isinstance(v, (int, bool)) for v in EP)
    assert len(pickle.dumps(m.Run(EP))) < 200
    big = np.zeros(100_000, np.float32)
    sizes = {type(msg).__name__: len(pickle.dumps(msg)) for msg in every_message()}
    assert len(pickle.dumps(m.Params(0, big, big[:5], big[:5]))) > big.nbytes
    assert max(v for k, v in sizes.items() if k != "Params") < 2_000
