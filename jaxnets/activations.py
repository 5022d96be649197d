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

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

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


def by_index(i: int | jax.Array, x: jax.Array, names: Sequence[str] = NAMES) -> jax.Array:
    """Apply activation number ``i`` of ``names`` to ``x`` (any shape); differentiable in ``x``.

    Cost: a Python ``int`` costs one activation. A traced, unbatched ``i`` becomes a ``lax.switch``
    (a real branch, one activation at run time). Under ``vmap`` with a *batched* ``i`` — one id per
    variant — ``lax.switch`` turns into a select: every activation in ``names`` is computed on the whole
    array and the right one picked per variant, so the elementwise cost grows with ``len(names)``
    (matmuls are unaffected). All branches here are NaN-safe at extreme inputs, so the zero cotangent
    that flows into untaken branches never turns into NaN gradients.

    Args:
      i: the activation's id, an index into ``names``: a Python ``int`` or a traced int32 scalar, so one
        compiled program can hold variants with different activations.
      x: the pre-activations, any shape.
      names: restricts the candidates (``i`` then indexes into ``names``); pass only the activations a
        group of variants actually uses.

    Returns:
      the activation applied elementwise, the shape of ``x``.

    Raises:
      ValueError: a name in ``names`` is not a known activation.
    """
    fns = [get(n) for n in names]
    if isinstance(i, int):
        return fns[i](x)
    if len(fns) == 1:
        return fns[0](x)
    return jax.lax.switch(jnp.asarray(i, jnp.int32), fns, x)


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
