"""A multi-layer perceptron (a plain ANN)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxnets import activations
from jaxnets.models._common import (
    OUTPUT,
    ActivationLike,
    InitializerLike,
    NormedDense,
    dropout,
    layer_name,
    record,
    resolve_activation,
    resolve_init,
)
from jaxnets.models.masked import MaskedDense, masked_dropout, next_input


class MLP(nn.Module):
    """Dense layers ``x -> act(W x + b)`` for each hidden size, then a linear output layer.

    Attributes:
      hidden: hidden layer sizes, input side first, e.g. ``(128, 128)``.
      output_dim: units of the output layer (logits; no output activation).
      activation: a name, an id into ``activation_names`` (int or traced int32 scalar), or a function.
      activation_names: the candidates an id indexes (default: all of :data:`jaxnets.activations.NAMES`).
      kernel_init: an initializer name or function for every kernel; biases start at zero.
      dropout: dropout rate after each hidden activation (float or traced scalar), used when ``train=True``.
      dot_general: passed to every ``flax.linen.Dense`` (``None``: ``lax.dot_general``); the engine uses
        :func:`jaxnets.models.small_kernel_dot_general` on the CPU.
      norm: ``"none"``, ``"layer"`` or ``"batch"``: a LayerNorm / BatchNorm between each hidden layer's Dense
        and its activation (then the layer's parameters are ``layer_NN/dense`` and ``layer_NN/norm``;
        BatchNorm keeps running statistics in the ``batch_stats`` collection).
      widths: ``None`` (a plain MLP), or a variant's own layer sizes as data, int32 [len(hidden)] (traced; 0
        past its depth): ``hidden`` is then a padded architecture (:mod:`jaxnets.architectures`) and each
        layer is a :class:`jaxnets.models.masked.MaskedDense` masked to the variant's units; a layer past its
        depth passes its input through unchanged and the output layer reads the last real one.
        ``kernel_init`` is then an embedded initializer ``init(key, shape, fan_in, fan_out, dtype)``
        (``hp.masked_kernel_init``); ``norm`` must be ``"none"``.

    Call: ``x`` [B, ...] (flattened to [B, D]) -> logits [B, output_dim]. Records each hidden layer's
    (normalized) pre-activation and activation under ``"intermediates"`` when that collection is mutable.

    Example::

        model = MLP(hidden=(64, 64), output_dim=10, activation="relu", kernel_init="he_normal")
        params = model.init(jax.random.key(0), x)["params"]
        logits = model.apply({"params": params}, x)
    """

    hidden: Sequence[int]
    output_dim: int
    activation: ActivationLike = "relu"
    activation_names: Sequence[str] = activations.NAMES
    kernel_init: InitializerLike = "lecun_normal"
    dropout: float | jax.Array = 0.0
    dot_general: Callable[..., jax.Array] | None = None
    norm: str = "none"
    widths: jax.Array | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if self.widths is not None:
            return self.masked(x, train)
        act = resolve_activation(self.activation, self.activation_names)
        init = resolve_init(self.kernel_init)
        x = x.reshape(x.shape[0], -1)
        for i, width in enumerate(self.hidden):
            if self.norm == "none":
                z = nn.Dense(width, kernel_init=init, dot_general=self.dot_general, name=layer_name(i))(x)
            else:
                z = NormedDense(width, self.norm, init, self.dot_general, name=layer_name(i))(x, train)
            x = act(z)
            record(self, z, x)
            x = dropout(self, x, self.dropout, train)
        return nn.Dense(self.output_dim, kernel_init=init, dot_general=self.dot_general, name=OUTPUT)(x)

    def masked(self, x: jax.Array, train: bool) -> jax.Array:
        """The forward pass of a variant of sizes :attr:`widths` inside the padded :attr:`hidden`."""
        if self.norm != "none":
            raise ValueError("an MLP masked to its widths takes norm = 'none'")
        act = resolve_activation(self.activation, self.activation_names)
        sizes = jnp.asarray(self.widths, jnp.int32)
        x = x.reshape(x.shape[0], -1)
        in_mask, fan_in = jnp.ones((x.shape[-1],), bool), jnp.int32(x.shape[-1])
        for i, width in enumerate(self.hidden):
            n = sizes[i]
            on = jnp.arange(width) < n
            z = MaskedDense(width, self.kernel_init, self.dot_general, name=layer_name(i))(x, in_mask, on, fan_in, n)
            a = jnp.where(on[None, :], act(z), 0.0)
            record(self, z, a, on)
            a = masked_dropout(self, a, self.dropout, train, n)
            x, in_mask, fan_in = next_input(i == 0, a, on, n, x, in_mask, fan_in)
        out = jnp.ones((self.output_dim,), bool)
        return MaskedDense(self.output_dim, self.kernel_init, self.dot_general, name=OUTPUT)(
            x, in_mask, out, fan_in, jnp.int32(self.output_dim))
