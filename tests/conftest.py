"""Suite-wide settings: implicit rank promotion is an error everywhere in the tests; fast compilation.

``jax_numpy_rank_promotion="raise"`` turns the silent ``[N]`` vs ``[N, 1]`` broadcasts (which would give an
``[N, N]`` loss) into errors, so any such bug in jaxnets fails the tests instead of training on nonsense.
Subprocesses the tests start inherit it through ``JAX_NUMPY_RANK_PROMOTION``.
"""

import os
from pathlib import Path

import pytest

os.environ["JAX_NUMPY_RANK_PROMOTION"] = "raise"
# The tests' programs run a few dozen steps: compiling fast matters more than running fast. XLA's backend
# optimization level 0 halves the suite's compile time on 2 cores, and XLA:CPU's older elemental emitter
# (``xla_cpu_use_fusion_emitters=false``) takes another 30-45 % off (test_vectorized_equals_sequential and
# test_user_model_vectorized_equals_alone: 48.5 -> 26.7 s on a 2-core Xeon). Every comparison in a test is
# between programs compiled with the same flags (set before JAX starts its backend).
_FAST_COMPILE = {"xla_backend_optimization_level": "0", "xla_cpu_use_fusion_emitters": "false"}
for _flag, _value in _FAST_COMPILE.items():
    if _flag not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" --{_flag}={_value}").strip()

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")

# The CLI turns JAX's persistent compilation cache on by default (a per-user directory); the tests' own
# subprocesses leave the user's cache alone.
os.environ.setdefault("JAXNETS_COMPILE_CACHE", "0")

from tiny import TINY_TOML  # noqa: E402


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory) -> Path:
    """The tiny sweep's config file (tests/tiny.py)."""
    path = tmp_path_factory.mktemp("config") / "tiny.toml"
    path.write_text(TINY_TOML)
    return path


@pytest.fixture(scope="module")
def reference(tiny_config, tmp_path_factory) -> Path:
    """An uninterrupted run of the tiny config (in this process)."""
    from jaxnets import cli

    out = tmp_path_factory.mktemp("runs") / "reference"
    assert cli.main(["sweep", str(tiny_config), "--out", str(out), "--quiet"]) == 0
    return out

