"""A small convolutional network: conv blocks with pooling, then a dense head."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxnets import activations
from jaxnets.models._common import (
    OUTPUT,
    ActivationLike,
    InitializerLike,
    NormedDense,
    apply_norm,
    dropout,
    layer_name,
    record,
    resolve_activation,
    resolve_init,
)
from jaxnets.models.masked import MaskedConv, MaskedDense, masked_dropout

#: :func:`matmul_conv` gathers a map's patches with one matmul by a one-hot matrix when that costs at most
#: this many times the convolution's own multiply-adds (the product costs ``H * W / out_channels`` times
#: them), else with shifted slices.
SHIFT_MATMUL_MAX_COST = 4

#: ... and when the map has at most this many positions (H * W): the one-hot matrix has
#: ``H * W * kh * kw * OH * OW`` entries, 2.4 MB of float32 at 16x16 with a 3x3 kernel.
SHIFT_MATMUL_MAX_POSITIONS = 256


@functools.lru_cache(maxsize=64)
def patch_matrix(h: int, w: int, kh: int, kw: int, pads: tuple[tuple[int, int], tuple[int, int]]) -> np.ndarray:
    """The one-hot matrix that gathers a [H, W] map's (kh, kw) patches: [OH * OW * kh * kw, H * W] float32,
    row ``((p * OW + q) * kh + i) * kw + j`` picking input position ``(p + i - pad_top, q + j - pad_left)``
    (an all-zero row where that lies in the padding).

    Args:
      h, w: the input map's size; kh, kw: the kernel's; pads: ``((top, bottom), (left, right))``.
    """
    (pt, pb), (pl, pr) = pads
    oh, ow = h + pt + pb - kh + 1, w + pl + pr - kw + 1
    p, q, i, j = np.meshgrid(np.arange(oh), np.arange(ow), np.arange(kh), np.arange(kw), indexing="ij")
    y, x = (p + i - pt).ravel(), (q + j - pl).ravel()
    inside = (y >= 0) & (y < h) & (x >= 0) & (x < w)
    m = np.zeros((oh * ow * kh * kw, h * w), np.float32)
    m[np.flatnonzero(inside), (y * w + x)[inside]] = 1.0
    m.setflags(write=False)
    return m


def matmul_conv(lhs: jax.Array, rhs: jax.Array, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                dimension_numbers=None, feature_group_count: int = 1, precision=None) -> jax.Array:
    """A drop-in for ``lax.conv_general_dilated`` (as ``flax.linen.Conv`` calls it) for stride-1 2-D
    convolutions in Flax's layout (NHWC inputs, HWIO kernels): the input's patches [B * OH * OW, kh * kw * C]
    times the reshaped kernel — one matmul.

    The patches come from one matmul by the one-hot :func:`patch_matrix` when the map is small (at most
    :data:`SHIFT_MATMUL_MAX_COST` times the convolution's multiply-adds and
    :data:`SHIFT_MATMUL_MAX_POSITIONS` positions), else from ``kh * kw`` shifted
    slices concatenated along channels: the same outputs either way, bit for bit (a one-hot product adds
    only exact zeros; the input's gradient sums the same terms in another order). The one-hot form is two
    library matmuls (forward and backward) where the slices compile to ``kh * kw`` kernels each way (it
    compiles and trains faster: benchmarks/README.md). One difference: a non-finite input value spreads to its
    example's whole patch matrix (``0 * inf`` is NaN), not only to the patches it is in — within that
    example (and variant) only.

    Why a matmul at all: under ``vmap`` with a kernel per variant, ``lax.conv_general_dilated`` becomes a
    grouped convolution, which XLA's CPU backend runs about two orders of magnitude slower than this matmul
    form (benchmarks/README.md). Numbers agree with the convolution to float32 rounding. Anything else
    (strides, dilation, groups) falls back to ``lax.conv_general_dilated``.
    """
    ones = (1,) * (lhs.ndim - 2)
    simple = (lhs.ndim == 4 and tuple(window_strides) == ones and feature_group_count == 1
              and tuple(lhs_dilation or ones) == ones and tuple(rhs_dilation or ones) == ones)
    if not simple:
        return jax.lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                            dimension_numbers, feature_group_count, precision=precision)
    kh, kw, c, o = rhs.shape
    b, h, w, _ = lhs.shape
    pads = jax.lax.padtype_to_pads((h, w), (kh, kw), (1, 1), padding) if isinstance(padding, str) else padding
    pads = tuple((int(lo), int(hi)) for lo, hi in pads)
    oh, ow = h + sum(pads[0]) - kh + 1, w + sum(pads[1]) - kw + 1
    if h * w <= min(SHIFT_MATMUL_MAX_COST * o, SHIFT_MATMUL_MAX_POSITIONS):
        gather = jnp.asarray(patch_matrix(h, w, kh, kw, pads))
        # exact: every output is one input times 1.0 plus zeros, at full float32 precision on every backend
        patches = jnp.einsum("rq,bqc->brc", gather, lhs.reshape(b, h * w, c), precision=jax.lax.Precision.HIGHEST)
    else:
        xp = jnp.pad(lhs, ((0, 0), pads[0], pads[1], (0, 0)))
        patches = jnp.concatenate([xp[:, i:i + oh, j:j + ow, :] for i in range(kh) for j in range(kw)], axis=-1)
    out = patches.reshape(b * oh * ow, kh * kw * c) @ rhs.reshape(kh * kw * c, o)
    return out.reshape(b, oh, ow, o)


def _window_view(x: jax.Array) -> jax.Array:
    """[B, H, W, C] -> [B, H//2, 2, W//2, 2, C] (an odd last row / column is dropped, as VALID pooling does)."""
    b, h, w, c = x.shape
    return x[:, : h // 2 * 2, : w // 2 * 2].reshape(b, h // 2, 2, w // 2, 2, c)


@jax.custom_vjp
def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max pooling with stride 2 (VALID): ``flax.linen.max_pool(x, (2, 2), strides=(2, 2))``, the same
    values and gradients bit for bit, computed by a reshape and a max instead of ``reduce_window``.

    Why: the gradient of ``reduce_window`` max is ``select_and_scatter``, which XLA's CPU backend compiles
    slowly and runs slowly under ``vmap``. The gradient goes to the first maximum of each window in row-major order,
    as ``select_and_scatter`` with ``>=`` gives it.

    Args:
      x: [B, H, W, C].

    Returns:
      [B, H // 2, W // 2, C].
    """
    return _window_view(x).max(axis=(2, 4))


def _max_pool_fwd(x):
    y = max_pool_2x2(x)
    return y, (x, y)


def _max_pool_bwd(res, g):
    x, y = res
    v = _window_view(x)
    taken = jnp.zeros(y.shape, bool)
    rows = []
    for i in range(2):
        cols = []
        for j in range(2):
            first = (v[:, :, i, :, j, :] == y) & ~taken  # the first maximum of the window, row-major
            taken = taken | first
            cols.append(jnp.where(first, g, jnp.zeros_like(g)))
        rows.append(jnp.stack(cols, axis=3))
    b, h, w, c = x.shape
    dx = jnp.stack(rows, axis=2).reshape(b, h // 2 * 2, w // 2 * 2, c)
    return (jnp.pad(dx, ((0, 0), (0, h - dx.shape[1]), (0, w - dx.shape[2]), (0, 0))),)


max_pool_2x2.defvjp(_max_pool_fwd, _max_pool_bwd)


class _NormedConv(nn.Module):
    """A conv layer (``conv``, built by ``make``) followed by a normalization (``norm``)."""

    make: Callable[..., nn.Module]
    norm: str

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        return apply_norm(self, self.make(name="conv")(x), self.norm, train)


CONV_IMPLS = {"xla": None, "matmul": matmul_conv}
"""How :class:`CNN` computes convolutions: ``"xla"`` (``lax.conv_general_dilated``, best for one model and on
GPU) or ``"matmul"`` (:func:`matmul_conv`, best for many vmapped variants on CPU)."""


class CNN(nn.Module):
    """``[conv 3x3 (SAME) -> act -> 2x2 max-pool] * len(channels) -> flatten -> [dense -> act] * len(dense)
    -> dense(output_dim)``; the pooling is :func:`max_pool_2x2`.

    Pooling is skipped once the spatial size is below 2, so the default works on 8x8 digits.

    Attributes:
      channels: output channels of each conv block, e.g. ``(16, 32)``.
      output_dim: units of the output layer (logits).
      dense: hidden sizes of the dense head between the conv blocks and the output layer.
      kernel_size: spatial size of every conv kernel.
      conv_impl: ``"xla"`` or ``"matmul"`` (see :data:`CONV_IMPLS`); the same numbers either way.
      activation, activation_names, kernel_init, dropout: as in :class:`jaxnets.models.MLP`
        (dropout applies after the dense head's activations).
      dot_general: passed to every ``flax.linen.Dense`` (``None``: ``lax.dot_general``); the engine uses
        :func:`jaxnets.models.small_kernel_dot_general` on the CPU.
      norm: ``"none"``, ``"layer"`` or ``"batch"``, after every conv and dense hidden layer (as in
        :class:`jaxnets.models.MLP`).
      widths: ``None`` (a plain CNN), or a variant's own channels as data, int32 [len(channels)] (traced, each
        > 0): ``channels`` is then a padded architecture (:mod:`jaxnets.architectures`), each conv block a
        :class:`jaxnets.models.masked.MaskedConv` masked to the variant's channels, and the dense head's first
        layer reads the variant's channels at every position. ``kernel_init`` is then an embedded initializer
        ``init(key, shape, fan_in, fan_out, dtype)`` (``hp.masked_kernel_init``); ``norm`` must be ``"none"``.

    Call: ``x`` [B, H, W, C] (NHWC) -> logits [B, output_dim]. Records each conv block's and dense
    layer's pre-activation and activation under ``"intermediates"``.
    """

    channels: Sequence[int]
    output_dim: int
    dense: Sequence[int] = ()
    kernel_size: int = 3
    conv_impl: str = "xla"
    activation: ActivationLike = "relu"
    activation_names: Sequence[str] = activations.NAMES
    kernel_init: InitializerLike = "lecun_normal"
    dropout: float | jax.Array = 0.0
    dot_general: Callable[..., jax.Array] | None = None
    norm: str = "none"
    widths: jax.Array | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if x.ndim != 4:
            raise ValueError(f"CNN expects images [B, H, W, C], got shape {x.shape}")
        if self.widths is not None:
            return self.masked(x, train)
        act = resolve_activation(self.activation, self.activation_names)
        init = resolve_init(self.kernel_init)
        k = (self.kernel_size, self.kernel_size)
        for i, ch in enumerate(self.channels):
            conv = functools.partial(nn.Conv, ch, k, padding="SAME", kernel_init=init,
                                     conv_general_dilated=CONV_IMPLS[self.conv_impl])
            z = conv(name=layer_name(i))(x) if self.norm == "none" else \
                _NormedConv(conv, self.norm, name=layer_name(i))(x, train)
            x = act(z)
            record(self, z, x)
            if min(x.shape[1:3]) >= 2:
                x = max_pool_2x2(x)
        x = x.reshape(x.shape[0], -1)
        for j, width in enumerate(self.dense):
            name = layer_name(len(self.channels) + j)
            if self.norm == "none":
                z = nn.Dense(width, kernel_init=init, dot_general=self.dot_general, name=name)(x)
            else:
                z = NormedDense(width, self.norm, init, self.dot_general, name=name)(x, train)
            x = act(z)
            record(self, z, x)
            x = dropout(self, x, self.dropout, train)
        return nn.Dense(self.output_dim, kernel_init=init, dot_general=self.dot_general, name=OUTPUT)(x)

    def masked(self, x: jax.Array, train: bool) -> jax.Array:
        """The forward pass of a variant of channels :attr:`widths` inside the padded :attr:`channels`."""
        if self.norm != "none":
            raise ValueError("a CNN masked to its widths takes norm = 'none'")
        act = resolve_activation(self.activation, self.activation_names)
        sizes = jnp.asarray(self.widths, jnp.int32)
        k = (self.kernel_size, self.kernel_size)
        in_mask, fan_in = jnp.ones((x.shape[-1],), bool), jnp.int32(x.shape[-1])
        for i, width in enumerate(self.channels):
            n = sizes[i]
            on = jnp.arange(width) < n
            z = MaskedConv(width, k, self.kernel_init, CONV_IMPLS[self.conv_impl], name=layer_name(i))(
                x, in_mask, on, fan_in, n)
            x = jnp.where(on[None, None, None, :], act(z), 0.0)
            record(self, z, x, on)
            if min(x.shape[1:3]) >= 2:
                x = max_pool_2x2(x)
            in_mask, fan_in = on, n
        positions = x.shape[1] * x.shape[2]
        x = x.reshape(x.shape[0], -1)

        def first_init(key, shape, _fan_in, fan_out, dtype=jnp.float32):
            # the flattened map is [positions, channels]: the real kernel is [positions * n_last, out]
            return self.kernel_init(key, shape, fan_in, fan_out, dtype, row_groups=positions)

        in_mask, init = jnp.tile(in_mask, positions), first_init
        for j, width in enumerate(self.dense):
            on = jnp.ones((width,), bool)
            z = MaskedDense(width, init, self.dot_general, name=layer_name(len(self.channels) + j))(
                x, in_mask, on, x.shape[-1], width)
            x = act(z)
            record(self, z, x)
            x = masked_dropout(self, x, self.dropout, train, width)
            in_mask, init = on, self.kernel_init
        out = jnp.ones((self.output_dim,), bool)
        return MaskedDense(self.output_dim, init, self.dot_general, name=OUTPUT)(
            x, in_mask, out, x.shape[-1], self.output_dim)
