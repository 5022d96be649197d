"""Pieces the three model kinds share: argument resolution, per-variant dropout, recorded values."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxnets import activations, initializers

Initializer = Callable[..., jax.Array]
ActivationLike = str | int | jax.Array | Callable[[jax.Array], jax.Array]
InitializerLike = str | Initializer

#: Variable collection the models record per-layer values into (``mutable=["intermediates"]``).
RECORD = "intermediates"


def resolve_init(init: InitializerLike) -> Initializer:
    """A name from :mod:`jaxnets.initializers` (scale 1) or an initializer function."""
    return initializers.get(init) if isinstance(init, str) else init


def resolve_activation(activation: ActivationLike, names: Sequence[str]) -> Callable[[jax.Array], jax.Array]:
    """A name, an id into ``names`` (int or traced array), or a callable -> an activation function."""
    return activations.resolve(activation, names)


def dropout(module: nn.Module, x: jax.Array, rate: float | jax.Array, train: bool) -> jax.Array:
    """Inverted dropout whose ``rate`` may be a traced per-variant scalar.

    ``flax.linen.Dropout`` needs a Python float rate (it branches on ``rate == 0``), which would compile one
    program per rate; this keeps the rate as data. A Python ``0.0`` (or ``train=False``) is a no-op and draws
    no random bits; a traced rate of 0 keeps every unit and returns ``x`` unchanged.
    """
    if not train or (isinstance(rate, int | float) and rate == 0.0):
        return x
    keep = 1.0 - jnp.clip(jnp.asarray(rate, x.dtype), 0.0, 0.999)
    mask = jax.random.bernoulli(module.make_rng("dropout"), keep, x.shape)
    return jnp.where(mask, x / keep, 0.0)


def record(module: nn.Module, preact: jax.Array | None, act: jax.Array) -> None:
    """Record one hidden layer's pre-activation and activation for diagnostics (no effect on outputs)."""
    if preact is not None:
        module.sow(RECORD, "preact", preact)
    module.sow(RECORD, "act", act)


def layer_name(i: int) -> str:
    """Parameter-tree name of hidden layer ``i``; sorted names run from the input side to the output."""
    return f"layer_{i:02d}"


OUTPUT = "output"
"""Parameter-tree name of every model's last (output) layer; sorts after every ``layer_NN``."""
