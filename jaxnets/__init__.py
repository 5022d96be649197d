"""jaxnets: train hundreds of neural-network variants at once, in one compiled JAX program.

Building blocks (``activations``, ``initializers``, ``losses``, ``data``), Flax models (``models``), and the
vectorized training engine (``engine``). Importing ``jaxnets`` needs only jax, flax, optax and numpy;
the sweep command, plots and benchmarks use the optional extras.
"""

__version__ = "0.1.0"
