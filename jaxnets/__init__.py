"""jaxnets: train hundreds of neural-network variants at once, in one compiled JAX program.

Building blocks (``activations``, ``initializers``, ``losses``, ``data``), Flax models (``models``), and the
vectorized training engine (``engine``). Importing ``jaxnets`` needs only jax, flax, optax and numpy;
the sweep command, plots and benchmarks use the optional extras.
"""

__version__ = "0.1.0"

__all__ = ["load", "search"]


def __getattr__(name: str):
    """``jaxnets.search`` (imported on first use: it needs the sweep extras)."""
    if name == "load":  # jaxnets.load(DIR): a saved run's parameters and predictions (jaxnets.saving)
        from jaxnets.saving import load

        return load
    if name == "search":
        from jaxnets.runs import search

        return search
    raise AttributeError(f"module 'jaxnets' has no attribute {name!r}")
