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
    return inverted_dropout(x, rate, module.make_rng("dropout"))


def inverted_dropout(x: jax.Array, rate: float | jax.Array, rng: jax.Array) -> jax.Array:
    """Drop each element of ``x`` with probability ``rate`` and scale the rest by ``1 / (1 - rate)``.

    Args:
      x: any shape.
      rate: a Python float or a traced scalar in [0, 1); a Python ``0.0`` returns ``x`` and draws nothing, a
        traced 0 keeps every element.
      rng: a PRNG key.

    Returns:
      an array of ``x``'s shape and dtype.
    """
    if isinstance(rate, int | float) and rate == 0.0:
        return x
    keep = 1.0 - jnp.clip(jnp.asarray(rate, x.dtype), 0.0, 0.999)
    mask = jax.random.bernoulli(rng, keep, x.shape)
    return jnp.where(mask, x / keep, 0.0)


def record(module: nn.Module, preact: jax.Array | None, act: jax.Array, units: jax.Array | None = None) -> None:
    """Record one hidden layer's pre-activation and activation for diagnostics (no effect on outputs);
    ``units``: bool [units], the layer's real units where it is masked to a smaller architecture (the
    diagnostics then count those only)."""
    if preact is not None:
        module.sow(RECORD, "preact", preact)
    module.sow(RECORD, "act", act)
    if units is not None:
        module.sow(RECORD, "units", units)


def layer_name(i: int) -> str:
    """Parameter-tree name of hidden layer ``i``; sorted names run from the input side to the output."""
    return f"layer_{i:02d}"


def apply_norm(module: nn.Module, z: jax.Array, norm: str, train: bool) -> jax.Array:
    """Normalize a hidden layer's pre-activation ``z`` [B, ..., units] inside ``module``: ``"none"`` (as is),
    ``"layer"`` (``flax.linen.LayerNorm``) or ``"batch"`` (``flax.linen.BatchNorm`` over every axis but the
    last, running averages in the ``batch_stats`` collection: batch statistics in training, the running ones
    in evaluation)."""
    if norm == "layer":
        return nn.LayerNorm(name="norm")(z)
    if norm == "batch":
        return nn.BatchNorm(use_running_average=not train, momentum=0.9, name="norm")(z)
    return z


class NormedDense(nn.Module):
    """``flax.linen.Dense`` (``dense``) followed by a normalization (``norm``), as one hidden layer.

    Attributes:
      features: output units.
      norm: ``"layer"`` or ``"batch"`` (see :func:`apply_norm`).
      kernel_init: the Dense kernel's initializer.
      dot_general: passed to ``flax.linen.Dense``.
    """

    features: int
    norm: str
    kernel_init: Callable[..., jax.Array]
    dot_general: Callable[..., jax.Array] | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        z = nn.Dense(self.features, kernel_init=self.kernel_init, dot_general=self.dot_general, name="dense")(x)
        return apply_norm(self, z, self.norm, train)


OUTPUT = "output"
"""Parameter-tree name of every model's last (output) layer; sorts after every ``layer_NN``."""


#: Largest kernel (inputs x outputs) whose weight gradient :func:`small_kernel_dot_general` computes as a
#: fused multiply-and-sum instead of a dot. On XLA:CPU a vmapped weight gradient of a small kernel (a batched
#: dot contracting over the minibatch) runs several times slower than its forward dot; from 64x32 kernels on
#: the dot is faster (benchmarks/README.md, ``python -m benchmarks.profile dots``).
SMALL_KERNEL = 1280


@jax.custom_vjp
def _small_kernel_matmul(x: jax.Array, w: jax.Array) -> jax.Array:
    return jnp.matmul(x, w)


def _small_kernel_matmul_fwd(x: jax.Array, w: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    return jnp.matmul(x, w), (x, w)


def _small_kernel_matmul_bwd(res: tuple[jax.Array, jax.Array], g: jax.Array) -> tuple[jax.Array, jax.Array]:
    x, w = res
    xs, gs = x.reshape(-1, x.shape[-1]), g.reshape(-1, g.shape[-1])
    return jnp.matmul(g, w.T), jnp.sum(xs[:, :, None] * gs[:, None, :], axis=0)


_small_kernel_matmul.defvjp(_small_kernel_matmul_fwd, _small_kernel_matmul_bwd)


def small_kernel_dot_general(lhs: jax.Array, rhs: jax.Array, dimension_numbers, precision=None,
                             preferred_element_type=None) -> jax.Array:
    """``lax.dot_general`` for ``flax.linen.Dense(dot_general=...)``, faster to differentiate under ``vmap``
    on the CPU when the kernel is small.

    ``lhs`` [..., I] times a kernel ``rhs`` [I, O] with at most :data:`SMALL_KERNEL` entries: the forward
    pass and the input gradient are the same dots as ``lax.dot_general``; the kernel gradient
    ``sum_b lhs[b, :, None] * g[b, None, :]`` is a multiply fused into a reduction (same value up to float
    rounding order). Anything else goes to ``lax.dot_general`` unchanged. Reverse mode only (a
    ``jax.custom_vjp``).
    """
    (lc, rc), (lb, rb) = dimension_numbers
    small = (rhs.ndim == 2 and tuple(lc) == (lhs.ndim - 1,) and tuple(rc) == (0,) and not lb and not rb
             and rhs.shape[0] * rhs.shape[1] <= SMALL_KERNEL and precision is None
             and preferred_element_type is None)
    if small:
        return _small_kernel_matmul(lhs, rhs)
    return jax.lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                               preferred_element_type=preferred_element_type)
