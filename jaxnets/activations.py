"""Activation functions, by name or by a (traced) integer id.

Every function comes from ``jax.nn`` (or ``jax.numpy``); this module only names them, gives each a stable
integer id, and lets one compiled program apply a *per-variant* activation.

=============  ==========================================  ===========================
name           formula                                      derivative range
=============  ==========================================  ===========================
sigmoid        1 / (1 + exp(-x))                            (0, 0.25]
tanh           tanh(x)                                      (0, 1]
relu           max(x, 0)                                    {0, 1}
leaky_relu     x if x >= 0 else 0.01 x                      {0.01, 1}
elu            x if x > 0 else exp(x) - 1                   (0, 1]
gelu           x Φ(x), tanh approximation (``jax.nn.gelu``)  about [-0.13, 1.13]
silu           x sigmoid(x)                                 about [-0.1, 1.1]
softplus       log(1 + exp(x))                              (0, 1)
identity       x                                            {1}
=============  ==========================================  ===========================

Ranges are mathematical; in float32 the derivatives of sigmoid, tanh, elu and softplus become exactly 0 far
in their tails (ELU's below z ≈ -17, where ``exp(z)`` underflows relative to 1), which the dead-unit
diagnostic counts as dead. Ids are positions in :data:`NAMES` and never change order.

Example::

    >>> import jax.numpy as jnp
    >>> from jaxnets import activations
    >>> activations.get("relu")(jnp.array([-1.0, 2.0]))
    Array([0., 2.], dtype=float32)
    >>> activations.by_index(activations.index("tanh"), jnp.zeros(3))  # same as jnp.tanh
    Array([0., 0., 0.], dtype=float32)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

Activation = Callable[[jax.Array], jax.Array]

_FUNCTIONS: dict[str, Activation] = {
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "leaky_relu": jax.nn.leaky_relu,
    "elu": jax.nn.elu,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
    "softplus": jax.nn.softplus,
    "identity": lambda x: x,
}

NAMES: tuple[str, ...] = tuple(_FUNCTIONS)
"""Canonical activation names; the position of a name is its integer id."""

#: Activations whose output is bounded on both sides and whose gradient vanishes at the bounds.
#: Maps name -> |pre-activation| beyond which the output is within 1% of a bound
#: (sigmoid(4.595) = 0.99, tanh(2.647) = 0.99). Used by the saturation diagnostic.
SATURATION_THRESHOLD: dict[str, float] = {"sigmoid": 4.59512, "tanh": 2.64665}


def canonical(name: str) -> str:
    """Return ``name`` if it is a known activation, else raise a ``ValueError`` listing valid names."""
    if not isinstance(name, str) or name not in _FUNCTIONS:
        raise ValueError(f"unknown activation {name!r}; valid activations: {', '.join(NAMES)}")
    return name


def get(name: str) -> Activation:
    """The activation called ``name`` (see :data:`NAMES`): an elementwise function ``[...] -> [...]``."""
    return _FUNCTIONS[canonical(name)]


def index(name: str) -> int:
    """Integer id of activation ``name``: its position in :data:`NAMES`."""
    return NAMES.index(canonical(name))


def value_and_derivative_of(f: Activation) -> Callable[[jax.Array], tuple[jax.Array, jax.Array]]:
    """``x -> (f(x), f'(x))`` in one pass, the derivative as reverse mode computes it (``jax.vjp`` of ``f``
    with unit cotangents) from the same forward values (e.g. tanh's is ``(1 + y)(1 - y)`` from
    ``y = tanh(x)``), so a backward pass that keeps the slope need not evaluate ``f`` again."""

    def both(x):
        y, pullback = jax.vjp(f, x)
        return y, pullback(jnp.ones_like(x))[0]

    return both


def derivative_of(f: Activation) -> Activation:
    """The derivative ``x -> f'(x)`` of an elementwise function ``f``, computed as reverse mode computes it
    (``jax.vjp`` with unit cotangents). Forward mode's formula is not the same under ``jit``: XLA:CPU's fused
    ``tanh`` stops just short of 1, so gelu's ``x * (1 - tanh(u)**2) * u'`` gave 2,550 instead of 0 at
    ``x = -1e4``."""
    both = value_and_derivative_of(f)
    return lambda x: both(x)[1]


def derivative(name: str) -> Activation:
    """The elementwise derivative of activation ``name``: ``x -> f'(x)`` (:func:`derivative_of`)."""
    return derivative_of(get(name))


Layout = tuple[tuple[int, int], ...]
"""How a batch of variants is ordered by activation: ``((id, count), ...)`` for each device's contiguous share
of the variant axis (the same on every device): the first ``count`` variants of a share have activation ``id``,
and so on. See :func:`by_index`."""


def _switch_vmap(fns: Sequence[Callable], layout: Layout | None):
    """``op(i, x) = fns[i](x)`` with a batching rule that applies each function to its own variants only.
    ``fns`` may return an array or a tuple of arrays shaped like ``x``."""

    @jax.custom_batching.custom_vmap
    def op(i, x):
        return jax.lax.switch(i, fns, x)

    @op.def_vmap
    def rule(axis_size, in_batched, i, x):
        i_batched, x_batched = in_batched
        if not x_batched:
            x = jnp.broadcast_to(x, (axis_size, *x.shape))
        if not i_batched:  # one id for the whole batch: a real branch
            out = jax.lax.switch(i, [jax.vmap(f) for f in fns], x)
            return out, jax.tree.map(lambda _: True, out)
        share = sum(c for _, c in layout) if layout else 0
        if share and axis_size % share == 0:
            # each device's share holds the activations in contiguous slices: one function per slice
            xr = x.reshape((axis_size // share, share) + x.shape[1:])
            parts, start = [], 0
            for k, count in layout:
                parts.append(fns[k](xr[:, start:start + count]))
                start += count
            out = jax.tree.map(lambda *p: jnp.concatenate(p, axis=1).reshape(x.shape), *parts)
            return out, jax.tree.map(lambda _: True, out)
        out = jax.vmap(lambda i, x: jax.lax.switch(i, fns, x))(i, x)  # a select over every function
        return out, jax.tree.map(lambda _: True, out)

    return op


@functools.lru_cache(maxsize=256)
def _ordered(names: tuple[str, ...], layout: Layout | None) -> Activation:
    forward = _switch_vmap([get(n) for n in names], layout)
    slope = _switch_vmap([derivative(n) for n in names], layout)
    value_and_slope = _switch_vmap([value_and_derivative_of(get(n)) for n in names], layout)

    @jax.custom_vjp
    def apply(i, x):
        return forward(i, x)

    def fwd(i, x):
        # the slope is computed with the value (one evaluation of each activation, fused) and kept for the
        # backward pass, which is then one multiply: no second evaluation of the activation (tanh, sigmoid, ...)
        y, dy = value_and_slope(i, x)
        return y, (i, dy)

    def bwd(res, g):
        i, dy = res
        return np.zeros(np.shape(i), jax.dtypes.float0), g * dy

    apply.defvjp(fwd, bwd)
    jitted = jax.jit(apply)
    jitted.derivative = jax.jit(slope)
    return jitted


def by_index(i: int | jax.Array, x: jax.Array, names: Sequence[str] = NAMES, layout: Layout | None = None
             ) -> jax.Array:
    """Apply activation number ``i`` of ``names`` to ``x`` (any shape); differentiable in ``x``.

    Cost: a Python ``int`` costs one activation; a traced, unbatched ``i`` is a ``lax.switch`` (a real
    branch, one activation at run time). Under ``vmap`` with a *batched* ``i`` — one id per variant — a
    plain ``lax.switch`` would become a select that computes every activation on every variant; here, when
    ``layout`` says how the batch is ordered by activation, each activation is applied to its own contiguous
    slice of variants only (a ``jax.custom_batching.custom_vmap`` rule), so a batch mixing nine activations
    costs about as much as one. Without ``layout`` (or when the batch does not match it) it falls back to the
    select. The gradient is ``g * f_i'(x)`` (a ``jax.custom_vjp``; reverse mode only), computed the same way,
    so no untaken branch can put NaN into it; the slope is computed with the value in the forward pass
    (:func:`value_and_derivative_of`) and kept, so the backward pass is one multiply and evaluates no
    activation again.

    Args:
      i: the activation's id, an index into ``names``: a Python ``int`` or a traced int32 scalar, so one
        compiled program can hold variants with different activations.
      x: the pre-activations, any shape.
      names: restricts the candidates (``i`` then indexes into ``names``); pass only the activations a
        group of variants actually uses.
      layout: how the batch that ``i`` is vmapped over is ordered by activation (:data:`Layout`), or
        ``None``. A wrong layout gives wrong activations: the engine builds it from the variants' ids.

    Returns:
      the activation applied elementwise, the shape of ``x``.

    Raises:
      ValueError: a name in ``names`` is not a known activation.
    """
    if isinstance(i, int):
        return get(names[i])(x)
    if len(names) == 1:
        return get(names[0])(x)
    return _ordered(tuple(names), layout)(jnp.asarray(i, jnp.int32), x)


def slope_by_index(i: int | jax.Array, x: jax.Array, names: Sequence[str] = NAMES, layout: Layout | None = None
                   ) -> jax.Array:
    """The derivative ``f_i'(x)`` of activation number ``i`` of ``names`` (as :func:`by_index`, elementwise)."""
    if isinstance(i, int):
        return derivative(names[i])(x)
    if len(names) == 1:
        return derivative(names[0])(x)
    return _ordered(tuple(names), layout).derivative(jnp.asarray(i, jnp.int32), x)


def resolve(activation: str | int | jax.Array | Activation, names: Sequence[str] = NAMES) -> Activation:
    """Turn a name, an id or a callable into an activation.

    This is what the models accept as their ``activation`` argument.

    Args:
      activation: a name (see :data:`NAMES`), an id (int or traced array, indexing ``names``) or a
        callable (returned as it is).
      names: the candidates an id indexes.

    Returns:
      an elementwise function ``[...] -> [...]``.

    Raises:
      ValueError: ``activation`` is an unknown name.
    """
    if isinstance(activation, str):
        return get(activation)
    if callable(activation):
        return activation
    return lambda x: by_index(activation, x, names)


def saturation_threshold(names: Sequence[str] = NAMES) -> jax.Array:
    """Per-id |pre-activation| saturation thresholds for ``names`` (``inf`` where none applies), shape [K]."""
    return jnp.array([SATURATION_THRESHOLD.get(canonical(n), jnp.inf) for n in names], jnp.float32)
