#!/usr/bin/env bash
# JAX-native envs on a GPU machine (Python 3.12 with a CUDA jax preinstalled, no
# internet): a venv over the system's packages, the wheels it lacks from
# benchmarks/gpu-wheels (make gpu-wheels fetches them on a machine with internet), then
# benchmarks/jax_gpu.py (its figures: $OUT/jax_gpu.json). Arguments go to jax_gpu.py.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-/tmp/esjax-gpu-venv}
python3 -m venv --system-site-packages "$VENV"
"$VENV/bin/python" -m pip install --quiet --no-index --find-links benchmarks/gpu-wheels \
    brax mujoco-mjx gymnasium optax orbax-checkpoint tqdm
"$VENV/bin/python" -m pip install --quiet --no-index --no-deps --no-build-isolation -e .
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # JAX would take 75 % of the GPU's memory
"$VENV/bin/python" -c 'import jax; print(jax.devices())'
exec "$VENV/bin/python" benchmarks/jax_gpu.py "$@"
