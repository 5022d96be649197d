"""Layers masked to a smaller real layer inside a padded one (architectures as data,
:mod:`jaxnets.architectures`): :class:`MaskedDense`, :class:`MaskedConv`, :func:`masked_cell` (a Flax
recurrent cell whose state stays zero past the real units) and :func:`masked_dropout` in linen, and
:class:`MaskedLinear` in NNX."""

from __future__ import annotations

import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx


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


def next_input(first: bool, out: jax.Array, units: jax.Array, n: jax.Array, x: jax.Array, in_mask: jax.Array,
               fan_in: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """What the layer after a masked hidden layer reads, ``(x, in_mask, fan_in)``: this layer's output
    ``out``, its unit mask ``units`` and real size ``n`` where the layer is real (``n > 0``; the ``first``
    layer always is), else the layer's own input passed through unchanged (a layer past the variant's depth)."""
    if first:
        return out, units, n
    real = n > 0
    return jnp.where(real, out, x), jnp.where(real, units, in_mask), jnp.where(real, n, fan_in)


def masked_dropout(module: nn.Module, x: jax.Array, rate: float | jax.Array, train: bool, n: jax.Array) -> jax.Array:
    """Inverted dropout of a layer's activations ``x`` [..., W] whose first ``n`` units (last axis) are real:
    the real block gets exactly the mask ``jaxnets.models.inverted_dropout`` draws for [..., n] from the same
    rng (a Bernoulli draw is elementwise by flat index), the rest stays as it is (zero). A Python ``0.0`` rate
    (or ``train=False``) returns ``x`` and draws nothing."""
    if not train or (isinstance(rate, int | float) and rate == 0.0):
        return x
    keep = 1.0 - jnp.clip(jnp.asarray(rate, x.dtype), 0.0, 0.999)
    w = x.shape[-1]
    rows = x.size // w
    u = jax.random.uniform(module.make_rng("dropout"), (rows * w,), x.dtype)
    width = jnp.maximum(jnp.asarray(n, jnp.int32), 1)
    mask = (u[jnp.arange(rows)[:, None] * width + jnp.arange(w)[None, :]] < keep).reshape(x.shape)
    return jnp.where(mask, x / keep, 0.0)


class MaskedConv(nn.Module):
    """A stride-1 ``SAME`` 2-D convolution of a padded shape whose kernel and bias count only the real layer's
    channels (``flax.linen.Conv``'s parameter names: ``kernel`` [kh, kw, I, features], ``bias`` [features]).

    Entries outside the real block ``[kh, kw, fan_in, fan_out]`` are exactly zero at initialization
    (``kernel_init`` draws the real kernel there, :func:`jaxnets.initializers.embedded`) and receive exactly
    zero gradient (the forward pass multiplies them by the masks).

    Attributes:
      features: padded output channels.
      kernel_size: ``(kh, kw)``.
      kernel_init: ``init(key, shape, fan_in, fan_out, dtype)`` (the real sizes of the kernel's last two axes).
      conv_general_dilated: the convolution (``None``: ``lax.conv_general_dilated``; the engine's CPU tuning
        passes :func:`jaxnets.models.cnn.matmul_conv`).

    Call: ``x`` [B, H, W, I] (NHWC), ``in_mask`` bool [I], ``out_mask`` bool [features], ``fan_in`` /
    ``fan_out`` int (traced) real channels -> [B, H, W, features].
    """

    features: int
    kernel_size: tuple[int, int]
    kernel_init: Callable[..., jax.Array]
    conv_general_dilated: Callable[..., jax.Array] | None = None

    @nn.compact
    def __call__(self, x: jax.Array, in_mask: jax.Array, out_mask: jax.Array, fan_in: jax.Array,
                 fan_out: jax.Array) -> jax.Array:
        init = lambda key, shape, dtype=jnp.float32: self.kernel_init(key, shape, fan_in, fan_out, dtype)  # noqa: E731
        kernel = self.param("kernel", init, (*self.kernel_size, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        kernel = kernel * (in_mask[:, None] & out_mask[None, :]).astype(kernel.dtype)[None, None]
        conv = self.conv_general_dilated or jax.lax.conv_general_dilated
        y = conv(x, kernel, (1, 1), "SAME", dimension_numbers=jax.lax.ConvDimensionNumbers(
            lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1), out_spec=(0, 3, 1, 2)))
        return y + (bias * out_mask.astype(bias.dtype)).reshape((1,) * (y.ndim - 1) + (-1,))


@functools.cache
def masked_cell(cls: type[nn.RNNCellBase]) -> type[nn.RNNCellBase]:
    """A Flax recurrent cell class ``cls`` whose state and output stay exactly zero past the real units: the
    subclass takes ``units`` (bool [features]) and, after each of ``cls``'s steps, zeroes every carry entry
    and output past them (``jnp.where``: no gradient flows back through the padding). Its parameters are
    ``cls``'s (the same names and shapes); give it kernel initializers that draw zeros outside the real
    block (:func:`jaxnets.initializers.embedded`), and the padded kernel entries then stay exactly zero in
    training: a padded unit's state is zero, so nothing it multiplies gets a gradient, and nothing reaches it.
    """

    class Masked(cls):  # type: ignore[misc, valid-type]
        units: jax.Array | None = None

        @nn.compact
        def __call__(self, carry, inputs):
            carry, y = super().__call__(carry, inputs)
            keep = lambda a: jnp.where(self.units.reshape((1,) * (a.ndim - 1) + (-1,)), a, jnp.zeros_like(a))  # noqa: E731
            return jax.tree.map(keep, carry), keep(y)

    Masked.__name__ = Masked.__qualname__ = f"Masked{cls.__name__}"
    return Masked


class MaskedLinear(nnx.Module):
    """The NNX counterpart of :class:`MaskedDense`: an ``nnx.Linear`` of a padded shape whose kernel and bias
    count only the real ``[fan_in, fan_out]`` block (parameters ``kernel`` [in_features, out_features] and
    ``bias`` [out_features], as ``nnx.Linear``'s).

    ``kernel_init`` (e.g. ``hp.masked_kernel_init``) draws the real block with the real fans, entry for entry
    what ``nnx.Linear(fan_in, fan_out, kernel_init=hp.kernel_init, rngs=rngs)`` built at the same point would
    draw, zeros elsewhere; the forward pass multiplies by the masks, so the padding gets zero gradient.

    Args:
      in_features, out_features: the padded shape.
      kernel_init: ``init(key, shape, fan_in, fan_out, dtype)``.
      fan_in, fan_out: the real sizes (ints or traced int scalars, e.g. ``hp["width"].astype(jnp.int32)``).
      rngs: the module's ``nnx.Rngs`` (one ``params`` key, as ``nnx.Linear`` takes).

    Call: ``x`` [B, in_features], ``in_mask`` bool [in_features], ``out_mask`` bool [out_features] ->
    [B, out_features].

    Example::

        class Wide(nnx.Module):
            def __init__(self, hp, rngs, max_width=256):
                n = hp["width"].astype(jnp.int32)
                self.hidden = MaskedLinear(64, max_width, hp.masked_kernel_init, 64, n, rngs=rngs)
                self.out = MaskedLinear(max_width, 10, hp.masked_kernel_init, n, 10, rngs=rngs)
                self.hp, self.max_width = hp, max_width

            def __call__(self, x):
                on = jnp.arange(self.max_width) < self.hp["width"].astype(jnp.int32)
                h = jnp.where(on[None, :], self.hp.activation(self.hidden(x, jnp.ones(64, bool), on)), 0.0)
                return self.out(h, on, jnp.ones(10, bool))
    """

    def __init__(self, in_features: int, out_features: int, kernel_init: Callable[..., jax.Array],
                 fan_in: int | jax.Array, fan_out: int | jax.Array, *, rngs: nnx.Rngs):
        self.kernel = nnx.Param(kernel_init(rngs.params(), (in_features, out_features), fan_in, fan_out))
        rngs.params()  # the bias key nnx.Linear draws (zeros need none): later layers draw nnx.Linear's keys
        self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32))

    def __call__(self, x: jax.Array, in_mask: jax.Array, out_mask: jax.Array) -> jax.Array:
        kernel = self.kernel[...] * (in_mask[:, None] & out_mask[None, :]).astype(self.kernel[...].dtype)
        bias = self.bias[...] * out_mask.astype(self.bias[...].dtype)
        return x @ kernel + bias.reshape((1,) * (x.ndim - 1) + (-1,))
