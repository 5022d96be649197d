"""A dense layer masked to a smaller real layer inside a padded one (architectures as data,
:mod:`jaxnets.architectures`)."""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp


class MaskedDense(nn.Module):
    """``y = x (W * in_mask out_mask^T) + b * out_mask``: a ``flax.linen.Dense`` of a padded shape whose kernel
    and bias count only the real layer's units (same parameter names, ``kernel`` [I, features] and ``bias``
    [features]).

    Entries outside the real block are exactly zero at initialization (``kernel_init`` draws the real
    ``[fan_in, fan_out]`` kernel in the top-left corner, :func:`jaxnets.initializers.embedded`) and, because
    the forward pass multiplies them by the masks, receive exactly zero gradient.

    Attributes:
      features: padded output units.
      kernel_init: ``init(key, shape, fan_in, fan_out, dtype)`` (e.g. ``hp.masked_kernel_init``).
      dot_general: as ``flax.linen.Dense``'s (``None``: ``lax.dot_general``).

    Call: ``x`` [B, I], ``in_mask`` bool [I], ``out_mask`` bool [features], ``fan_in`` / ``fan_out`` int
    (traced) real sizes -> [B, features].
    """

    features: int
    kernel_init: Callable[..., jax.Array]
    dot_general: Callable[..., jax.Array] | None = None

    @nn.compact
    def __call__(self, x: jax.Array, in_mask: jax.Array, out_mask: jax.Array, fan_in: jax.Array,
                 fan_out: jax.Array) -> jax.Array:
        init = lambda key, shape, dtype=jnp.float32: self.kernel_init(key, shape, fan_in, fan_out, dtype)  # noqa: E731
        kernel = self.param("kernel", init, (x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        kernel = kernel * (in_mask[:, None] & out_mask[None, :]).astype(kernel.dtype)
        bias = bias * out_mask.astype(bias.dtype)
        dot = self.dot_general or jax.lax.dot_general
        y = dot(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))
        return y + bias.reshape((1,) * (y.ndim - 1) + (-1,))


def masked_dropout(module: nn.Module, x: jax.Array, rate: float | jax.Array, train: bool, n: jax.Array) -> jax.Array:
    """Inverted dropout of a layer's activations ``x`` [B, W] whose first ``n`` units are real: the real
    block gets exactly the mask ``jaxnets.models.inverted_dropout`` draws for [B, n] from the same rng (a
    Bernoulli draw is elementwise by flat index), the rest stays as it is (zero). A Python ``0.0`` rate (or
    ``train=False``) returns ``x`` and draws nothing."""
    if not train or (isinstance(rate, int | float) and rate == 0.0):
        return x
    keep = 1.0 - jnp.clip(jnp.asarray(rate, x.dtype), 0.0, 0.999)
    b, w = x.shape
    u = jax.random.uniform(module.make_rng("dropout"), (b * w,), x.dtype)
    width = jnp.maximum(jnp.asarray(n, jnp.int32), 1)
    mask = u[jnp.arange(b)[:, None] * width + jnp.arange(w)[None, :]] < keep
    return jnp.where(mask, x / keep, 0.0)
