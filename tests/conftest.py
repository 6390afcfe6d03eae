import os

# Tests run on CPU with a small, deterministic XLA setup.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
