"""Weight initializers, by name or by a (traced) integer id.

Every initializer is one of ``jax.nn.initializers`` (``variance_scaling``, ``normal``, ``orthogonal``,
``zeros``); this module names them, gives each a stable integer id, adds a ``scale`` *gain*, and lets one
compiled program initialize each variant with its own initializer.

``scale`` is a gain: the base initializer's output is multiplied by ``scale``, so the standard deviation
and the bounds are multiplied by ``scale`` (the variance by ``scale**2``). It is PyTorch's ``gain``
argument and corresponds to ``jax.nn.initializers.variance_scaling(scale=scale**2, ...)``. Because it is a
plain multiplication it may be a traced array, e.g. one gain per variant under ``vmap``.

Fans are computed as in JAX (``jax._src.nn.initializers._compute_fans``): the kernel's second-to-last axis
is the input axis, the last axis the output axis, and every other axis is receptive field. For a dense
kernel ``[n_in, n_out]``: ``fan_in = n_in``, ``fan_out = n_out``. For a conv kernel ``[h, w, c_in, c_out]``
(Flax's HWIO layout): ``fan_in = h*w*c_in``, ``fan_out = h*w*c_out`` — the same numbers PyTorch gets from
its ``[c_out, c_in, h, w]`` layout. Below, ``fan_avg = (fan_in + fan_out) / 2``, so glorot_uniform's bound
is ``scale sqrt(6 / (fan_in + fan_out))`` and its std ``scale sqrt(2 / (fan_in + fan_out))``.

==============  ====================  ==================================  ===========================
name            distribution          standard deviation                  bound on |w|
==============  ====================  ==================================  ===========================
uniform         U[-b, b]              scale / sqrt(3 fan_in)              b = scale / sqrt(fan_in)
normal          N(0, s^2)             s = 0.01 scale (no fan dependence)  none
glorot_uniform  U[-b, b]              scale / sqrt(fan_avg)               b = scale sqrt(3 / fan_avg)
glorot_normal   truncated normal (*)  s = scale / sqrt(fan_avg)           2 s / 0.87962566
he_uniform      U[-b, b]              scale sqrt(2 / fan_in)              b = scale sqrt(6 / fan_in)
he_normal       truncated normal (*)  s = scale sqrt(2 / fan_in)          2 s / 0.87962566
lecun_uniform   U[-b, b]              scale / sqrt(fan_in)                b = scale sqrt(3 / fan_in)
lecun_normal    truncated normal (*)  s = scale / sqrt(fan_in)            2 s / 0.87962566
orthogonal      random orthogonal     scale / sqrt(max(rows, cols)) (**)  scale
zeros           constant 0            0                                   0
==============  ====================  ==================================  ===========================

(*) JAX's ``*_normal`` initializers (``variance_scaling(..., "truncated_normal")``) draw a standard normal
truncated to (-2, 2) and multiply it by ``s / 0.87962566103423978``, where 0.8796... is the standard
deviation of a standard normal truncated to (-2, 2). So the *actual* standard deviation is exactly the
target ``s``, and every value lies strictly within ``±2 s_u`` with ``s_u = s / 0.8796 ≈ 1.137 s``, i.e.
``|w| < 2.274 s``: values the untruncated N(0, s_u^2) would put beyond ``2 s_u`` (4.55% of its mass)
never occur.

(**) ``orthogonal`` reshapes the kernel to a matrix ``[rows, cols] = [prod(shape[:-1]), shape[-1]]``,
draws a uniformly (Haar) random matrix with orthonormal columns (``rows >= cols``) or orthonormal rows
(``rows < cols``), and multiplies it by ``scale``. For a dense ``[fan_in, fan_out]`` kernel the entry
standard deviation is ``scale / sqrt(max(fan_in, fan_out))``; for a conv kernel ``[h, w, c_in, c_out]`` it
is ``scale / sqrt(max(fan_in, c_out))`` (rows = ``h*w*c_in`` = fan_in, cols = ``c_out``).
``uniform``'s ``1/3`` is ``variance_scaling(1/3, "fan_in", "uniform")``: the bound is
``sqrt(3 * (1/3) / fan_in) = 1/sqrt(fan_in)``.

Differences from other libraries
--------------------------------
* **PyTorch.** ``nn.Linear`` / ``nn.ConvNd`` weights default to ``kaiming_uniform_(a=sqrt(5))``, i.e.
  U[-1/sqrt(fan_in), 1/sqrt(fan_in)] — this module's ``"uniform"`` (Glorot & Bengio's "standard"
  initialization). ``kaiming_normal_`` and ``xavier_normal_`` draw a plain, **untruncated** normal with
  the same standard deviation as ``he_normal`` / ``glorot_normal`` here, so they produce occasional larger
  weights; ``kaiming_uniform_`` / ``xavier_uniform_`` match ``he_uniform`` / ``glorot_uniform``. PyTorch's
  ``gain`` is this module's ``scale`` (= ``sqrt`` of JAX's ``variance_scaling`` scale); its kaiming
  functions build the gain from ``nonlinearity`` (``sqrt(2)`` for ReLU is already in ``he_*`` here, so
  ``scale=1`` matches ``kaiming_*_(nonlinearity="relu")``). PyTorch has no LeCun initializer.
  ``torch.nn.init.normal_`` defaults to std 1, here ``"normal"`` has std 0.01 (JAX's default).
* **Keras.** ``Dense`` / ``Conv`` kernels default to ``glorot_uniform`` (biases to zeros). Keras'
  ``he_normal`` / ``glorot_normal`` / ``lecun_normal`` are truncated at 2 standard deviations with the
  same 0.8796 correction, so they match JAX and this module. ``RandomNormal`` defaults to std 0.05.
* **Flax.** ``nn.Dense`` / ``nnx.Linear`` / ``Conv`` kernels default to ``lecun_normal`` (truncated),
  biases to zeros.

Ids are positions in :data:`NAMES` and never change order.

Example::

    >>> import jax
    >>> from jaxnets import initializers
    >>> w = initializers.get("he_uniform")(jax.random.key(0), (784, 128))
    >>> bool(abs(w).max() <= (6 / 784) ** 0.5)
    True
    >>> w2 = initializers.by_index(initializers.index("kaiming_uniform"))(jax.random.key(0), (784, 128))
    >>> bool((w == w2).all())
    True
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Initializer = jax.nn.initializers.Initializer

_init = jax.nn.initializers

#: Base initializers (gain 1), built from ``jax.nn.initializers``.
_BASE: dict[str, Callable[..., jax.Array]] = {
    "uniform": _init.variance_scaling(1.0 / 3.0, "fan_in", "uniform"),
    "normal": _init.normal(1e-2),
    "glorot_uniform": _init.glorot_uniform(),
    "glorot_normal": _init.glorot_normal(),
    "he_uniform": _init.he_uniform(),
    "he_normal": _init.he_normal(),
    "lecun_uniform": _init.lecun_uniform(),
    "lecun_normal": _init.lecun_normal(),
    "orthogonal": _init.orthogonal(),
    "zeros": _init.zeros,
}

NAMES: tuple[str, ...] = (
    "uniform",
    "normal",
    "glorot_uniform",
    "glorot_normal",
    "he_uniform",
    "he_normal",
    "lecun_uniform",
    "lecun_normal",
    "orthogonal",
    "zeros",
)
"""Canonical initializer names; the position of a name is its integer id."""

ALIASES: dict[str, str] = {
    "xavier_uniform": "glorot_uniform",
    "xavier_normal": "glorot_normal",
    "kaiming_uniform": "he_uniform",
    "kaiming_normal": "he_normal",
}
"""Alternative names (PyTorch's) -> canonical names."""

assert tuple(_BASE) == NAMES

#: Standard deviation of a standard normal truncated to (-2, 2) (the constant in jax's variance_scaling).
TRUNCATED_NORMAL_STD = 0.87962566103423978


def canonical(name: str) -> str:
    """Resolve aliases; raise a ``ValueError`` naming ``name`` and listing valid names if it is unknown."""
    if isinstance(name, str):
        name = ALIASES.get(name, name)
        if name in _BASE:
            return name
    valid = ", ".join(NAMES + tuple(ALIASES))
    raise ValueError(f"unknown initializer {name!r}; valid initializers: {valid}")


def index(name: str) -> int:
    """Integer id of initializer ``name`` (aliases resolve): its position in :data:`NAMES`."""
    return NAMES.index(canonical(name))


def get(name: str, scale: float | jax.Array = 1.0) -> Initializer:
    """The initializer called ``name`` with gain ``scale``: ``init(key, shape, dtype=jnp.float32)``.

    ``orthogonal`` with a half-precision dtype (bfloat16, float16) draws in float32 and casts, because the
    QR decomposition it uses has no half-precision kernel on CPU.

    Args:
      name: one of :data:`NAMES` or an alias in :data:`ALIASES`.
      scale: the gain: the output is the ``jax.nn.initializers`` base initializer's output times
        ``scale`` (see the module table), so ``scale`` multiplies the standard deviation and the bounds and
        may be a traced array.

    Returns:
      ``init(key, shape, dtype=jnp.float32)``, returning an array of ``shape``.

    Raises:
      ValueError: ``name`` is unknown (the message lists the valid names).
    """
    name = canonical(name)
    base = _BASE[name]

    def init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32, out_sharding=None) -> jax.Array:
        if name == "orthogonal" and dtype is not None and jnp.dtype(dtype).itemsize < 4:
            w = base(key, shape, jnp.float32, out_sharding=out_sharding)
            return (w * jnp.asarray(scale, w.dtype)).astype(dtype)
        w = base(key, shape, dtype, out_sharding=out_sharding)
        return w * jnp.asarray(scale, w.dtype)

    return init


def by_index(i: int | jax.Array, scale: float | jax.Array = 1.0, names: Sequence[str] = NAMES) -> Initializer:
    """Initializer number ``i`` of ``names`` with gain ``scale``.

    The result is the same array as ``get(names[i], scale)(key, shape, dtype)`` for the same key — bit for
    bit when both are computed the same way (a Python ``int`` ``i`` eagerly, or both under ``jit``; a traced
    ``i`` is always compiled, and compiled vs. eager float arithmetic can differ in the last bit because XLA
    fuses the constant multiplications).

    Cost: a Python ``int`` runs one initializer. A traced, unbatched ``i`` becomes a ``lax.switch`` (one
    branch runs). Under ``vmap`` with a *batched* ``i`` — one id per variant — ``lax.switch`` turns into a
    select: every initializer in ``names`` is computed and the right one picked per variant. That cost is
    paid at init time only, once per run, so it is negligible next to training; pass only the names a
    group of variants uses to keep it small.

    Args:
      i: the initializer's id, an index into ``names``: a Python ``int`` or a traced int32 scalar, so one
        compiled program can initialize variants with different initializers.
      scale: the gain, as in :func:`get` (may be a traced array).
      names: restricts the candidates (aliases allowed; ``i`` then indexes into ``names``).

    Returns:
      ``init(key, shape, dtype=jnp.float32)``.

    Raises:
      ValueError: ``names`` is empty or holds an unknown name, or a Python ``int`` ``i`` is out of range.
    """
    names = tuple(canonical(n) for n in names)
    if not names:
        raise ValueError("by_index needs at least one initializer name")
    if isinstance(i, int | np.integer):
        if not 0 <= int(i) < len(names):
            raise ValueError(f"initializer index {int(i)} out of range for {len(names)} names {names}")
        return get(names[int(i)], scale)
    if len(names) == 1:
        return get(names[0], scale)

    def init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32, out_sharding=None) -> jax.Array:
        return _switch(jnp.asarray(i, jnp.int32), scale, key, tuple(shape), jnp.dtype(dtype), out_sharding, names)

    return init


@functools.partial(jax.jit, static_argnums=(3, 4, 5, 6))
def _switch(i: jax.Array, scale: float | jax.Array, key: jax.Array, shape: tuple[int, ...], dtype: np.dtype,
            out_sharding: Any, names: tuple[str, ...]) -> jax.Array:
    """``lax.switch`` over ``names``' initializers. A ``jit`` so that its trace is cached by shape: Flax
    re-traces a parameter's initializer (``jax.eval_shape``) at every ``apply`` to check the shape, and a
    model applied in the training step, the evaluation and the test split would otherwise trace every
    branch (an orthogonal one's QR included) several times per compile."""
    inits = [get(n, scale) for n in names]
    branches = [lambda k, f=f: f(k, shape, dtype, out_sharding) for f in inits]
    return jax.lax.switch(i, branches, key)


#: Per initializer: the unit draw (``"uniform"`` on [-1, 1), ``"truncated_normal"`` on (-2, 2), ``"normal"``),
#: the variance-scaling ``(scale, mode)`` (``None``: a fixed standard deviation of 1e-2), as in
#: ``jax.nn.initializers``; what :func:`embedded` draws.
_EMBEDDED: dict[str, tuple[str, tuple[float, str] | None]] = {
    "uniform": ("uniform", (1.0 / 3.0, "fan_in")),
    "normal": ("normal", None),
    "glorot_uniform": ("uniform", (1.0, "fan_avg")),
    "glorot_normal": ("truncated_normal", (1.0, "fan_avg")),
    "he_uniform": ("uniform", (2.0, "fan_in")),
    "he_normal": ("truncated_normal", (2.0, "fan_in")),
    "lecun_uniform": ("uniform", (1.0, "fan_in")),
    "lecun_normal": ("truncated_normal", (1.0, "fan_in")),
    "orthogonal": ("orthogonal", None),
    "zeros": ("zeros", None),
}

EmbeddedInitializer = Callable[..., jax.Array]


def _real_index(shape: tuple[int, ...], real_in: jax.Array, real_out: jax.Array) -> tuple[jax.Array, jax.Array]:
    """For each entry of a padded kernel ``shape`` ``(..., I, O)``: whether it lies in the real kernel
    ``(..., real_in, real_out)`` and its flat index there (row-major; 0 outside)."""
    lead = (1,) * (len(shape) - 2)
    p = jnp.arange(math.prod(shape[:-2])).reshape(shape[:-2] + (1, 1))
    r = jnp.arange(shape[-2]).reshape(lead + (shape[-2], 1))
    c = jnp.arange(shape[-1]).reshape(lead + (1, shape[-1]))
    inside = jnp.broadcast_to((r < real_in) & (c < real_out), shape)
    flat = (p * jnp.maximum(real_in, 1) + r) * jnp.maximum(real_out, 1) + c
    return inside, jnp.where(inside, flat, 0)


def _embedded_one(name: str, key: jax.Array, shape: tuple[int, ...], fan_in: jax.Array, fan_out: jax.Array,
                  dtype: Any, row_groups: int = 1) -> jax.Array:
    """Initializer ``name`` (gain 1) of a real kernel ``shape[:-2] + (fan_in, fan_out)`` placed in the corner of
    ``shape``; with ``row_groups`` > 1, ``shape`` is 2-D and its rows are that many blocks of equal size,
    the first ``fan_in`` rows of each real (see :func:`embedded`)."""
    if row_groups > 1:
        grouped = (row_groups, shape[0] // row_groups, shape[1])
        return _embedded_grouped(name, key, grouped, fan_in, fan_out, dtype).reshape(shape)
    return _embedded_grouped(name, key, shape, fan_in, fan_out, dtype, out_receptive=True)


def _embedded_grouped(name: str, key: jax.Array, shape: tuple[int, ...], fan_in: jax.Array, fan_out: jax.Array,
                      dtype: Any, out_receptive: bool = False) -> jax.Array:
    """:func:`_embedded_one` of ``shape`` (..., I, O); the fan-out counts the leading axes (a convolution's
    receptive field) when ``out_receptive``, else not (a 2-D kernel whose rows were grouped)."""
    draw, scaling = _EMBEDDED[name]
    if draw == "zeros":
        return jnp.zeros(shape, dtype)
    if draw == "orthogonal":
        return _embedded_orthogonal(key, shape, fan_in, fan_out, dtype)
    n = math.prod(shape)
    unit = {"uniform": lambda: jax.random.uniform(key, (n,), dtype, -1, 1),
            "truncated_normal": lambda: jax.random.truncated_normal(key, -2, 2, (n,), dtype),
            "normal": lambda: jax.random.normal(key, (n,), dtype)}[draw]()
    real_in, real_out = jnp.asarray(fan_in, jnp.int32), jnp.asarray(fan_out, jnp.int32)
    receptive = math.prod(shape[:-2])
    # an empty layer: zeros, a finite variance
    fi, fo = receptive * jnp.maximum(real_in, 1), (receptive if out_receptive else 1) * jnp.maximum(real_out, 1)
    # entry i of the real kernel's draw is the flat draw's entry i (threefry draws elementwise by flat index),
    # so the real block holds exactly the values of a draw at the real shape
    inside, flat = _real_index(shape, real_in, real_out)
    w = jnp.where(inside, unit[flat], 0)
    if scaling is None:
        return w * jnp.asarray(1e-2, dtype)
    scale, mode = scaling
    denominator = fi.astype(dtype) if mode == "fan_in" else (fi + fo).astype(dtype) / 2
    variance = jnp.asarray(scale, dtype) / denominator if scale != 1.0 / 3.0 else 1 / (3 * fi.astype(dtype))
    if draw == "uniform":
        return w * jnp.sqrt(3 * variance)
    return w * (jnp.sqrt(variance) / jnp.array(TRUNCATED_NORMAL_STD, dtype))


def _embedded_orthogonal(key: jax.Array, shape: tuple[int, ...], fan_in: jax.Array, fan_out: jax.Array,
                         dtype: Any) -> jax.Array:
    """``orthogonal`` of a real kernel ``shape[:-2] + (fan_in, fan_out)`` in the corner of ``shape``: the same
    Gaussian matrix ``jax.nn.initializers.orthogonal`` draws for it (``[max, min]`` of its rows
    ``prod(shape[:-2]) * fan_in`` and columns ``fan_out``), zero-padded to a square, then one QR. Householder
    reflections of a zero-padded matrix never touch the padding, so the real block's ``Q`` is the real
    matrix's (to float32 rounding); the rest is masked to zero."""
    fi, fo = jnp.asarray(fan_in, jnp.int32), jnp.asarray(fan_out, jnp.int32)
    receptive = math.prod(shape[:-2])
    real_rows = receptive * fi
    size = max(receptive * shape[-2], shape[-1])
    g = jax.random.normal(key, (math.prod(shape),), dtype)
    tall = real_rows >= fo
    rows, cols = jnp.where(tall, real_rows, fo), jnp.maximum(jnp.where(tall, fo, real_rows), 1)
    r, c = jnp.arange(size)[:, None], jnp.arange(size)[None, :]
    inside = (r < rows) & (c < cols)
    q, upper = jnp.linalg.qr(jnp.where(inside, g[jnp.where(inside, r * cols + c, 0)], 0))
    q = q * jnp.sign(jnp.diag(upper))[None, :]
    q = jnp.where(tall, q, q.T)  # [real_rows, fo] in the corner
    inside, flat = _real_index(shape, fi, fo)
    row, col = flat // jnp.maximum(fo, 1), flat % jnp.maximum(fo, 1)
    return jnp.where(inside, q[row, col], 0).astype(dtype)


def embedded(i: int | jax.Array, scale: float | jax.Array = 1.0, names: Sequence[str] = NAMES
             ) -> EmbeddedInitializer:
    """Initializer number ``i`` of ``names`` for a real ``[fan_in, fan_out]`` kernel inside a padded one.

    ``init(key, shape, fan_in, fan_out, dtype=jnp.float32)`` -> [*shape] (2-D): the top-left
    ``[fan_in, fan_out]`` block holds what ``by_index(i, scale, names)(key, (fan_in, fan_out))`` draws, entry
    for entry (to float32 rounding of the traced scale factor), the rest is zero. A kernel of more axes (a
    convolution's ``[kh, kw, in, out]``) takes ``fan_in`` / ``fan_out`` as the real sizes of its LAST TWO
    axes: its entries ``[..., :fan_in, :fan_out]`` hold the draw at shape ``shape[:-2] + (fan_in, fan_out)``
    (fans times the receptive field, as ``jax.nn.initializers`` counts them). ``row_groups=G`` (a 2-D kernel
    that reads a flattened map of G positions, e.g. a CNN's first dense layer): the rows are G blocks of
    ``shape[0] // G``, the first ``fan_in`` of each real; the real kernel is ``[G * fan_in, fan_out]``.
    ``fan_in`` / ``fan_out`` may be traced ints (a variant's own layer sizes, :mod:`jaxnets.architectures`):
    the variance follows the real layer, never the padded shape.

    ``orthogonal`` draws the same Gaussian matrix as the real shape's and takes one QR of it zero-padded to a
    square: the real block is orthogonal (the real shape's ``Q`` to float32 rounding), the rest zero.

    Raises:
      ValueError: a bad ``i`` / ``names`` as :func:`by_index`.
    """
    names = tuple(canonical(n) for n in names)
    if isinstance(i, int | np.integer):
        if not 0 <= int(i) < len(names):
            raise ValueError(f"initializer index {int(i)} out of range for {len(names)} names {names}")
        names, i = (names[int(i)],), 0
    bad = [n for n in names if n not in _EMBEDDED]
    if bad:
        raise ValueError(f"initializer(s) {bad} have no embedded form (a variant's own matrix inside a padded one)")
    branches = [functools.partial(_embedded_one, n) for n in names]

    def init(key: jax.Array, shape: Sequence[int], fan_in: Any, fan_out: Any, dtype=jnp.float32, *,
             row_groups: int = 1) -> jax.Array:
        shape = tuple(shape)
        if row_groups > 1 and (len(shape) != 2 or shape[0] % row_groups):
            raise ValueError(f"row_groups={row_groups} needs a 2-D kernel whose rows it divides, got {shape}")
        if len(branches) == 1:
            w = branches[0](key, shape, fan_in, fan_out, dtype, row_groups)
        else:
            w = jax.lax.switch(jnp.asarray(i, jnp.int32),
                               [lambda k, a, b, f=f: f(k, shape, a, b, dtype, row_groups) for f in branches],
                               key, jnp.asarray(fan_in), jnp.asarray(fan_out))
        return w * jnp.asarray(scale, w.dtype)

    return init


def std_formula(name: str, fan_in: int, fan_out: int, scale: float = 1.0) -> float:
    """Theoretical standard deviation of the entries of a 2-D ``[fan_in, fan_out]`` kernel from ``name``.

    Truncated normals are included: JAX rescales them so their standard deviation is exactly the target.

    Args:
      name: one of :data:`NAMES` or an alias in :data:`ALIASES`.
      fan_in: the kernel's input size (its first axis).
      fan_out: the kernel's output size (its last axis).
      scale: the gain (only its absolute value matters).

    Returns:
      the standard deviation, the module table's formula (``abs(scale)`` times the gain-1 value).

    Raises:
      ValueError: ``name`` is unknown.
    """
    name = canonical(name)
    fan_avg = (fan_in + fan_out) / 2.0
    std = {
        "uniform": 1.0 / math.sqrt(3.0 * fan_in),  # U[-b, b] has std b / sqrt(3), b = 1 / sqrt(fan_in)
        "normal": 1e-2,
        "glorot_uniform": 1.0 / math.sqrt(fan_avg),  # variance_scaling(1, "fan_avg"): var = 1 / fan_avg
        "glorot_normal": 1.0 / math.sqrt(fan_avg),
        "he_uniform": math.sqrt(2.0 / fan_in),
        "he_normal": math.sqrt(2.0 / fan_in),
        "lecun_uniform": 1.0 / math.sqrt(fan_in),
        "lecun_normal": 1.0 / math.sqrt(fan_in),
        # A [n_in, n_out] matrix with n_in >= n_out has orthonormal columns: each column's n_in entries have
        # squares summing to 1, and by the rotation invariance of the Haar measure each entry has mean 0 and
        # the same second moment, so the entry variance is 1 / n_in. With n_in < n_out the rows (n_out
        # entries each) are orthonormal instead, giving 1 / n_out. Both are 1 / max(n_in, n_out).
        "orthogonal": 1.0 / math.sqrt(max(fan_in, fan_out)),
        "zeros": 0.0,
    }[name]
    return abs(scale) * std
