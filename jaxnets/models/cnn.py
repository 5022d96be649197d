"""A small convolutional network: conv blocks with pooling, then a dense head."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

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


class CNN(nn.Module):
    """``[conv 3x3 (SAME) -> act -> 2x2 max-pool] * len(channels) -> flatten -> [dense -> act] * len(dense)
    -> dense(output_dim)``.

    Pooling is skipped once the spatial size is below 2, so the default works on 8x8 digits.

    Attributes:
      channels: output channels of each conv block, e.g. ``(16, 32)``.
      output_dim: units of the output layer (logits).
      dense: hidden sizes of the dense head between the conv blocks and the output layer.
      kernel_size: spatial size of every conv kernel.
      activation, activation_names, kernel_init, dropout: as in :class:`jaxnets.models.MLP`
        (dropout applies after the dense head's activations).

    Call: ``x`` [B, H, W, C] (NHWC) -> logits [B, output_dim]. Records each conv block's and dense
    layer's pre-activation and activation under ``"intermediates"``.
    """

    channels: Sequence[int]
    output_dim: int
    dense: Sequence[int] = ()
    kernel_size: int = 3
    activation: ActivationLike = "relu"
    activation_names: Sequence[str] = activations.NAMES
    kernel_init: InitializerLike = "lecun_normal"
    dropout: float | jax.Array = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if x.ndim != 4:
            raise ValueError(f"CNN expects images [B, H, W, C], got shape {x.shape}")
        act = resolve_activation(self.activation, self.activation_names)
        init = resolve_init(self.kernel_init)
        k = (self.kernel_size, self.kernel_size)
        for i, ch in enumerate(self.channels):
            z = nn.Conv(ch, k, padding="SAME", kernel_init=init, name=layer_name(i))(x)
            x = act(z)
            record(self, z, x)
            if min(x.shape[1:3]) >= 2:
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        for j, width in enumerate(self.dense):
            z = nn.Dense(width, kernel_init=init, name=layer_name(len(self.channels) + j))(x)
            x = act(z)
            record(self, z, x)
            x = dropout(self, x, self.dropout, train)
        return nn.Dense(self.output_dim, kernel_init=init, name=OUTPUT)(x)
