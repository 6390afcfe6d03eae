"""The rollout side: everything that runs episodes.

``envs`` (the only code that knows Gymnasium, pybullet and MuJoCo) and ``train_reward``
(training rewards from the env's own terms); ``worker`` (a worker's episode slots),
``messages`` (the typed records between trainer and workers) and ``transport`` (the
``WorkerPool`` protocol the backends implement); the backends: ``local`` (spawned processes
on this machine), ``inline`` (in the trainer's process) and ``ray_pool`` / ``ray_cluster``
(Ray actors on a cluster), and for JAX-native envs (``jax_envs``: ``brax/NAME``)
``jax_pool``, whose episodes run as jitted chunks (``jax_rollout``) in the trainer's
process; ``dispatch`` hands a generation's episodes to any of them.
"""
