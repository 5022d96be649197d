"""Suite-wide settings: implicit rank promotion is an error everywhere in the tests; fast compilation.

``jax_numpy_rank_promotion="raise"`` turns the silent ``[N]`` vs ``[N, 1]`` broadcasts (which would give an
``[N, N]`` loss) into errors, so any such bug in jaxnets fails the tests instead of training on nonsense.
Subprocesses the tests start inherit it through ``JAX_NUMPY_RANK_PROMOTION``.
"""

import os

os.environ["JAX_NUMPY_RANK_PROMOTION"] = "raise"
# The tests' programs run a few dozen steps: compiling fast matters more than running fast. XLA's backend
# optimization level 0 halves the suite's compile time on 2 cores; every comparison in a test is between
# programs compiled with the same flags (set before JAX starts its backend).
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")

# The CLI turns JAX's persistent compilation cache on by default (a per-user directory); the tests' own
# subprocesses leave the user's cache alone.
os.environ.setdefault("JAXNETS_COMPILE_CACHE", "0")
