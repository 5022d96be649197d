"""A recurrent network on Flax's cells; the time loop is ``flax.linen.RNN`` (a ``scan``), never Python."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxnets import activations
from jaxnets.models._common import (
    OUTPUT,
    ActivationLike,
    InitializerLike,
    dropout,
    layer_name,
    record,
    resolve_activation,
    resolve_init,
)
from jaxnets.models.masked import MaskedDense, masked_cell, masked_dropout, next_input

CELLS: dict[str, type[nn.RNNCellBase]] = {"simple": nn.SimpleCell, "lstm": nn.OptimizedLSTMCell,
                                          "gru": nn.GRUCell}
"""Cell kinds: Elman tanh cell, LSTM, GRU (all from ``flax.linen``).

The LSTM is ``OptimizedLSTMCell``: ``LSTMCell``'s parameters (the same names, shapes and initial values) and
equations, with each step's four input and four recurrent matmuls done as one of each (faster, and fewer
XLA kernels to compile). Its outputs equal
``LSTMCell``'s; gradients differ in rounding only."""


def cell_class(name: str) -> type[nn.RNNCellBase]:
    """The Flax cell class called ``name``; unknown names raise a ``ValueError`` listing valid ones."""
    if name not in CELLS:
        raise ValueError(f"unknown RNN cell {name!r}; valid cells: {', '.join(CELLS)}")
    return CELLS[name]


class RNN(nn.Module):
    """Stacked recurrent layers over a sequence, then a linear output layer.

    Attributes:
      hidden: hidden size of each recurrent layer, e.g. ``(64,)``.
      output_dim: units of the output layer (logits).
      cell: ``"simple"`` (h' = act(W x + U h + b)), ``"lstm"`` or ``"gru"``.
      many_to_many: ``False``: logits from the last time step [B, output_dim]; ``True``: logits at every step
        [B, T, output_dim].
      activation: the cell's activation (the simple cell's nonlinearity; the LSTM/GRU candidate activation;
        gates stay sigmoid). Name, id into ``activation_names`` or function.
      kernel_init: initializer for the input kernels, the recurrent kernels and the output layer.
      dropout: dropout on each layer's output sequence (float or traced scalar) when ``train=True``.
      widths: ``None`` (a plain RNN), or a variant's own layer sizes as data, int32 [len(hidden)] (traced; 0
        past its depth): ``hidden`` is then a padded architecture (:mod:`jaxnets.architectures`), each layer a
        :func:`jaxnets.models.masked.masked_cell` whose state stays zero past the variant's units; a layer
        past its depth passes its input through unchanged and the output layer reads the last real one.
        ``kernel_init`` is then an embedded initializer ``init(key, shape, fan_in, fan_out, dtype)``
        (``hp.masked_kernel_init``), for the input and recurrent kernels alike.

    Call: ``x`` [B, T, F] -> logits. Records each recurrent layer's hidden states [B, T, H] as ``"act"``.
    """

    hidden: Sequence[int]
    output_dim: int
    cell: str = "lstm"
    many_to_many: bool = False
    activation: ActivationLike = "tanh"
    activation_names: Sequence[str] = activations.NAMES
    kernel_init: InitializerLike = "lecun_normal"
    dropout: float | jax.Array = 0.0
    widths: jax.Array | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if x.ndim != 3:
            raise ValueError(f"RNN expects sequences [B, T, F], got shape {x.shape}")
        if self.widths is not None:
            return self.masked(x, train)
        act = resolve_activation(self.activation, self.activation_names)
        init = resolve_init(self.kernel_init)
        cls = cell_class(self.cell)
        for i, width in enumerate(self.hidden):
            cell = cls(features=width, activation_fn=act, kernel_init=init, recurrent_kernel_init=init,
                       parent=None)  # owned by the nn.RNN below, so its params sit under layer_NN/cell
            x = nn.RNN(cell, name=layer_name(i))(x)
            record(self, None, x)
            x = dropout(self, x, self.dropout, train)
        if not self.many_to_many:
            x = x[:, -1]
        return nn.Dense(self.output_dim, kernel_init=init, name=OUTPUT)(x)

    def masked(self, x: jax.Array, train: bool) -> jax.Array:
        """The forward pass of a variant of sizes :attr:`widths` inside the padded :attr:`hidden`."""
        act = resolve_activation(self.activation, self.activation_names)
        sizes = jnp.asarray(self.widths, jnp.int32)
        cls = masked_cell(cell_class(self.cell))
        init = self.kernel_init
        in_mask, fan_in = jnp.ones((x.shape[-1],), bool), jnp.int32(x.shape[-1])
        for i, width in enumerate(self.hidden):
            n = sizes[i]
            on = jnp.arange(width) < n
            cell = cls(features=width, activation_fn=act, units=on, parent=None,
                       kernel_init=lambda key, shape, dtype=jnp.float32, a=fan_in, b=n: init(key, shape, a, b, dtype),
                       recurrent_kernel_init=lambda key, shape, dtype=jnp.float32, b=n: init(key, shape, b, b, dtype))
            h = nn.RNN(cell, name=layer_name(i))(x)
            record(self, None, h, on)
            h = masked_dropout(self, h, self.dropout, train, n)
            x, in_mask, fan_in = next_input(i == 0, h, on, n, x, in_mask, fan_in)
        if not self.many_to_many:
            x = x[:, -1]
        out = jnp.ones((self.output_dim,), bool)
        return MaskedDense(self.output_dim, init, name=OUTPUT)(x, in_mask, out, fan_in, jnp.int32(self.output_dim))
