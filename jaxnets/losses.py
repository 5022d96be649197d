r"""Loss functions, by name, with the output activation that pairs with each.

Every loss takes **logits** (raw model outputs, never probabilities) and returns the **per-example** loss:
it reduces over the class / feature axis only, never over the batch, so the caller chooses how to average
(masked means, per-variant sums, ...). The losses are thin wrappers around :mod:`optax.losses`, which
computes them in a numerically stable way: values and gradients stay finite for logits at +-100.

With logits ``z``, labels / targets ``y`` and ``C`` classes (or ``D`` regression outputs):

================================  ====================================================  ==================
name                              formula (per example)                                 output activation
================================  ====================================================  ==================
binary_crossentropy               max(z, 0) - z y + log(1 + exp(-|z|)),  y in {0, 1}     sigmoid
                                  (= -y log sigmoid(z) - (1 - y) log(1 - sigmoid(z)))
categorical_crossentropy          -sum_c y_c log softmax(z)_c                           softmax (axis -1)
                                  = logsumexp(z) - sum_c y_c z_c,  y one-hot / probs
sparse_categorical_crossentropy   logsumexp(z) - z_y,  y an integer in [0, C - 1]       softmax (axis -1)
mse                               mean_d (z_d - y_d)^2                                   identity
================================  ====================================================  ==================

Shapes:

* ``binary_crossentropy``: logits ``[...]``, labels ``[...]`` (same shape) -> ``[...]``. Elementwise: each
  logit is an independent yes/no prediction (one sigmoid output, or several for multi-label problems).
* ``categorical_crossentropy``: logits ``[..., C]``, labels ``[..., C]`` -> ``[...]``.
* ``sparse_categorical_crossentropy``: logits ``[..., C]``, integer labels ``[...]`` -> ``[...]``.
* ``mse``: predictions ``[..., D]``, targets ``[..., D]`` -> ``[...]`` (mean over the last axis).

The gradients with respect to the logits are the familiar ``sigmoid(z) - y`` (binary cross-entropy),
``softmax(z) - y`` (categorical cross-entropy, with ``y`` one-hot for the sparse form) and
``2 (z - y) / D`` (mean squared error).

:func:`check_labels` is an eager, host-side check to run on concrete label arrays *before* any compute; it
turns the usual silent mistakes (integer class ids given to the one-hot loss, label 10 with 10 classes,
``[N]`` labels against ``[N, 1]`` logits that would broadcast to ``[N, N]``, NaNs) into a clear error.

Example::

    >>> import jax.numpy as jnp
    >>> from jaxnets import losses
    >>> logits = jnp.array([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0]])
    >>> losses.get("sparse_categorical_crossentropy")(logits, jnp.array([0, 2])).shape
    (2,)
    >>> losses.accuracy("sparse_categorical_crossentropy", logits, jnp.array([0, 2]))
    Array([1., 0.], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

Loss = Callable[[jax.Array, jax.Array], jax.Array]
"""A loss: ``(logits, labels) -> per-example loss``."""

NAMES: tuple[str, ...] = (
    "binary_crossentropy",
    "categorical_crossentropy",
    "sparse_categorical_crossentropy",
    "mse",
)
"""Canonical loss names."""


# --------------------------------------------------------------------------------------------------- losses


def binary_crossentropy(logits: jax.typing.ArrayLike, labels: jax.typing.ArrayLike) -> jax.Array:
    """Sigmoid binary cross-entropy, elementwise (``optax.losses.sigmoid_binary_cross_entropy``).

    ``max(z, 0) - z y + log(1 + exp(-|z|))``; pairs with a sigmoid output.

    Args:
      logits: float logits, shape ``[...]``.
      labels: labels in ``{0, 1}`` (int, bool or float), the same shape as ``logits``. Shapes must match
        exactly: ``[N]`` labels against ``[N, 1]`` logits would silently broadcast to ``[N, N]``, so this
        raises instead.

    Returns:
      The loss per element, shape ``[...]`` (float, the dtype of ``logits``).

    Raises:
      ValueError: ``labels`` and ``logits`` differ in shape.
    """
    logits = jnp.asarray(logits)
    labels = jnp.asarray(labels)
    _require_same_shape("binary_crossentropy", logits.shape, labels.shape)
    return optax.losses.sigmoid_binary_cross_entropy(logits, labels)


def categorical_crossentropy(logits: jax.typing.ArrayLike, labels: jax.typing.ArrayLike) -> jax.Array:
    """Softmax cross-entropy with one-hot / probability labels (``optax.losses.softmax_cross_entropy``).

    ``logsumexp(z) - sum_c y_c z_c``; pairs with a softmax output over the last axis.

    Args:
      logits: float logits, shape ``[..., C]``.
      labels: one-hot labels or class probabilities, shape ``[..., C]`` (rows summing to 1).

    Returns:
      The loss per example, shape ``[...]``.

    Raises:
      ValueError: ``labels`` and ``logits`` differ in shape.
    """
    logits = jnp.asarray(logits)
    labels = jnp.asarray(labels)
    _require_same_shape("categorical_crossentropy", logits.shape, labels.shape)
    return optax.losses.softmax_cross_entropy(logits, labels.astype(logits.dtype))


def sparse_categorical_crossentropy(logits: jax.typing.ArrayLike, labels: jax.typing.ArrayLike) -> jax.Array:
    """Softmax cross-entropy with integer labels (``optax.losses.softmax_cross_entropy_with_integer_labels``).

    ``logsumexp(z) - z_y``; pairs with a softmax output over the last axis. Equal to
    :func:`categorical_crossentropy` with ``to_one_hot(labels, C)``, without building the one-hot array.

    Args:
      logits: float logits, shape ``[..., C]``.
      labels: integer class ids in ``[0, C - 1]``, shape ``[...]``. Out-of-range ids are not checked here
        (they cannot be, inside ``jit``); run :func:`check_labels` on the data first.

    Returns:
      The loss per example, shape ``[...]``.

    Raises:
      ValueError: ``labels``' shape is not the logits shape without its class axis (or ``logits`` is a
        scalar).
    """
    logits = jnp.asarray(logits)
    labels = jnp.asarray(labels)
    if logits.ndim == 0 or labels.shape != logits.shape[:-1]:
        raise ValueError(
            f"sparse_categorical_crossentropy: labels shape {labels.shape} must equal the logits shape "
            f"without its class axis; logits shape is {logits.shape}"
        )
    return optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels)


def mse(predictions: jax.typing.ArrayLike, targets: jax.typing.ArrayLike) -> jax.Array:
    """Mean squared error over the last axis (``optax.losses.squared_error``, then a mean).

    ``mean_d (z_d - y_d)^2``; pairs with the identity output.

    Args:
      predictions: float predictions (raw outputs), shape ``[..., D]``.
      targets: targets, the same shape ``[..., D]``.

    Returns:
      The mean squared error per example, shape ``[...]``.

    Raises:
      ValueError: ``targets`` and ``predictions`` differ in shape, or ``predictions`` is a scalar (it needs
        a feature axis).
    """
    predictions = jnp.asarray(predictions)
    targets = jnp.asarray(targets)
    _require_same_shape("mse", predictions.shape, targets.shape)
    if predictions.ndim == 0:
        raise ValueError("mse: predictions need at least one (feature) axis, got a scalar")
    return optax.losses.squared_error(predictions, targets.astype(predictions.dtype)).mean(axis=-1)


def _require_same_shape(name: str, logits_shape: tuple[int, ...], labels_shape: tuple[int, ...]) -> None:
    if tuple(labels_shape) != tuple(logits_shape):
        raise ValueError(
            f"{name}: labels shape {tuple(labels_shape)} does not match logits shape {tuple(logits_shape)} "
            "(they must be equal; broadcasting is not allowed)"
        )


_LOSSES: dict[str, Loss] = {
    "binary_crossentropy": binary_crossentropy,
    "categorical_crossentropy": categorical_crossentropy,
    "sparse_categorical_crossentropy": sparse_categorical_crossentropy,
    "mse": mse,
}
assert tuple(_LOSSES) == NAMES


def _check_name(name: str) -> str:
    if name not in _LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid names: {', '.join(NAMES)}")
    return name


def get(name: str) -> Loss:
    """The loss function called ``name`` (one of :data:`NAMES`).

    Args:
      name: the loss (one of :data:`NAMES`).

    Returns:
      ``loss(logits, labels) -> per-example loss``, with the shapes documented in the module docstring.

    Raises:
      ValueError: ``name`` is not a known loss (the message lists the valid names).
    """
    return _LOSSES[_check_name(name)]


# --------------------------------------------------------------------------------------- output activations


def _softmax_last_axis(logits: jax.Array) -> jax.Array:
    """``softmax`` over the last (class) axis: ``[..., C] -> [..., C]``."""
    return jax.nn.softmax(logits, axis=-1)


def _identity(x: jax.Array) -> jax.Array:
    """The identity: ``[...] -> [...]``."""
    return x


_OUTPUT_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "binary_crossentropy": jax.nn.sigmoid,
    "categorical_crossentropy": _softmax_last_axis,
    "sparse_categorical_crossentropy": _softmax_last_axis,
    "mse": _identity,
}


def output_activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """The activation that turns logits into predictions for loss ``name``.

    Args:
      name: the loss (one of :data:`NAMES`).

    Returns:
      ``binary_crossentropy`` -> sigmoid (``[...] -> [...]``); ``categorical_crossentropy`` and
      ``sparse_categorical_crossentropy`` -> softmax over the last axis (``[..., C] -> [..., C]``);
      ``mse`` -> identity.

    Raises:
      ValueError: ``name`` is not a known loss.
    """
    return _OUTPUT_ACTIVATIONS[_check_name(name)]


def predict(name: str, logits: jax.typing.ArrayLike) -> jax.Array:
    """Predictions from logits for loss ``name``: ``output_activation(name)(logits)``.

    Args:
      name: the loss (one of :data:`NAMES`).
      logits: the model's raw outputs.

    Returns:
      the predictions, the shape of ``logits``: probabilities for the cross-entropies (per element for
      binary, per row for categorical), the raw outputs for ``mse``.

    Raises:
      ValueError: ``name`` is not a known loss.
    """
    return output_activation(name)(jnp.asarray(logits))


# ---------------------------------------------------------------------------------------------- accuracy


def has_accuracy(name: str) -> bool:
    """Whether :func:`accuracy` applies to loss ``name`` (every classification loss; not ``mse``).

    Args:
      name: the loss (one of :data:`NAMES`).

    Returns:
      ``True`` for the cross-entropies, ``False`` for ``mse``.

    Raises:
      ValueError: ``name`` is not a known loss.
    """
    return _check_name(name) != "mse"


def accuracy(name: str, logits: jax.typing.ArrayLike, labels: jax.typing.ArrayLike) -> jax.Array:
    """Per-example correctness, 1.0 or 0.0, as float32 (jit-compatible).

    * ``binary_crossentropy``: ``(logits > 0) == labels``; logits ``[...]``, labels ``[...]`` in {0, 1}
      (labels are read as ``labels > 0.5``, identical on valid labels) -> ``[...]``.
    * ``categorical_crossentropy``: ``argmax(logits, -1) == argmax(labels, -1)``; ``[..., C]`` -> ``[...]``.
    * ``sparse_categorical_crossentropy``: ``argmax(logits, -1) == labels``; logits ``[..., C]``, labels
      ``[...]`` -> ``[...]``.

    Args:
      name: a classification loss (see :func:`has_accuracy`).
      logits: the model's raw outputs, shaped as above.
      labels: the labels in the form loss ``name`` takes, shaped as above.

    Returns:
      the correctness per example, float32, shape ``[...]``.

    Raises:
      ValueError: for ``mse`` (accuracy does not apply; see :func:`has_accuracy`) or an unknown name, or
        when the shapes of ``labels`` and ``logits`` do not fit as above.
    """
    if not has_accuracy(name):
        raise ValueError(f"accuracy does not apply to loss {name!r} (regression); check has_accuracy() first")
    logits = jnp.asarray(logits)
    labels = jnp.asarray(labels)
    if name == "binary_crossentropy":
        _require_same_shape(name, logits.shape, labels.shape)
        correct = (logits > 0) == (labels.astype(jnp.float32) > 0.5)
    elif name == "categorical_crossentropy":
        _require_same_shape(name, logits.shape, labels.shape)
        correct = jnp.argmax(logits, axis=-1) == jnp.argmax(labels, axis=-1)
    else:
        if logits.ndim == 0 or labels.shape != logits.shape[:-1]:
            raise ValueError(
                f"{name}: labels shape {labels.shape} must equal the logits shape without its class axis; "
                f"logits shape is {logits.shape}"
            )
        correct = jnp.argmax(logits, axis=-1) == labels
    return correct.astype(jnp.float32)


# -------------------------------------------------------------------------------------------------- labels


def to_one_hot(
    labels: jax.typing.ArrayLike, n_classes: int, dtype: jax.typing.DTypeLike = jnp.float32
) -> jax.Array:
    """One-hot encode integer class ids (``jax.nn.one_hot``): ``[...]`` -> ``[..., n_classes]``.

    Turns ``sparse_categorical_crossentropy`` labels into ``categorical_crossentropy`` ones.

    Args:
      labels: integer class ids, shape ``[...]``. An id outside ``[0, n_classes - 1]`` becomes an all-zero
        row (``jax.nn.one_hot``'s behaviour).
      n_classes: the number of classes ``C``.
      dtype: the dtype of the result.

    Returns:
      the one-hot labels, shape ``[..., n_classes]``.
    """
    return jax.nn.one_hot(jnp.asarray(labels), n_classes, dtype=dtype)


def labels_for(name: str, y: np.ndarray, output_dim: int, task: str) -> np.ndarray:
    """Labels in the form loss ``name`` takes, from a data set's labels (host-side, NumPy).

    * ``binary_crossentropy``: float32 0/1, the shape of ``y``;
    * ``categorical_crossentropy`` / ``mse`` on class labels: one-hot float32 ``[..., output_dim]`` (integer
      ``y`` of a binary task becomes ``[..., 1]`` float targets for ``mse``);
    * ``sparse_categorical_crossentropy``: ``y`` unchanged;
    * regression (``task == "regression"``): float32 ``y`` unchanged.

    Args:
      name: the loss (one of :data:`NAMES`).
      y: class labels ``[N]`` / ``[N, T]`` (int) or regression targets ``[N, D]`` (float).
      output_dim: units of the model's output layer (classes, 1 for binary, D for regression).
      task: ``"binary"``, ``"multiclass"`` or ``"regression"``.

    Returns:
      the labels, ready for :func:`check_labels` and the loss.

    Raises:
      ValueError: the loss does not fit the task (``binary_crossentropy`` on more than two classes) or the
        labels are out of range for one-hot encoding.
    """
    _check_name(name)
    y = np.asarray(y)
    if task == "regression":
        return y.astype(np.float32)
    if name == "binary_crossentropy":
        if output_dim != 1:
            raise ValueError(f"binary_crossentropy needs a binary task; the data has {output_dim} classes "
                             f"(use sparse_categorical_crossentropy or categorical_crossentropy)")
        return y.astype(np.float32)
    if name in ("categorical_crossentropy", "mse"):
        if output_dim == 1:
            return y.astype(np.float32)[..., None] if name == "mse" else y
        if not np.issubdtype(y.dtype, np.integer):
            return y
        if y.size and (y.min() < 0 or y.max() >= output_dim):
            raise ValueError(f"{name}: labels must be integers in [0, {output_dim - 1}], found values in "
                             f"{_range(y)}")
        return np.eye(output_dim, dtype=np.float32)[y]
    return y


def fit_logits(name: str, logits: jax.Array, labels: jax.Array) -> jax.Array:
    """The model's outputs in the shape loss ``name`` pairs with ``labels``.

    Works on traced arrays (shapes are static).

    Args:
      name: the loss (one of :data:`NAMES`).
      logits: the model's outputs.
      labels: the labels they will meet.

    Returns:
      ``logits``, except that a binary model's single output unit ``[..., 1]`` against labels ``[...]``
      loses its unit axis (the elementwise ``binary_crossentropy`` would otherwise see mismatched shapes);
      everything else is returned unchanged.
    """
    if name == "binary_crossentropy" and logits.ndim == labels.ndim + 1 and logits.shape[-1] == 1:
        return logits[..., 0]
    return logits


def _range(values: np.ndarray) -> str:
    return f"[{_fmt(values.min())}, {_fmt(values.max())}]"


def _fmt(x: np.generic | float | int) -> str:
    x = np.asarray(x).item()
    return str(x) if isinstance(x, int | bool) else f"{x:.6g}"


def check_labels(
    name: str,
    labels: jax.typing.ArrayLike,
    output_dim: int,
    logits_shape: tuple[int, ...] | None = None,
) -> None:
    """Check concrete labels for loss ``name`` eagerly, before any compute; raise a clear error if wrong.

    Runs on the host (NumPy) and needs concrete arrays: call it on the data, not inside ``jit``.

    Checks, by loss:

    * every loss: numeric dtype; no NaN / Inf; if ``logits_shape`` is given, labels shape equals the logits
      shape (``logits_shape[:-1]`` for the sparse loss) and ``logits_shape[-1] == output_dim``.
    * ``binary_crossentropy``: values in {0, 1} (int, bool or float); when ``output_dim > 1`` (multi-label)
      the last axis has size ``output_dim``.
    * ``categorical_crossentropy``: float dtype, last axis of size ``output_dim``, values in [0, 1], rows
      summing to 1 (one-hot or probabilities).
    * ``sparse_categorical_crossentropy``: integer dtype, values in ``[0, output_dim - 1]``.
    * ``mse``: last axis of size ``output_dim``.

    Args:
      name: the loss (one of :data:`NAMES`).
      labels: the labels / targets, a NumPy or (concrete) JAX array, shape as the loss expects.
      output_dim: the model's output size: the number of classes ``C``, of regression outputs ``D``, or of
        sigmoid outputs (usually 1) for binary cross-entropy.
      logits_shape: optionally, the shape of the logits the labels will meet.

    Raises:
      ValueError: the labels do not fit the loss; the message names the loss and the problem.
      TypeError: ``labels`` is a tracer (called under ``jit`` / ``vmap``).
    """
    _check_name(name)
    if isinstance(output_dim, bool) or not isinstance(output_dim, int | np.integer) or output_dim < 1:
        raise ValueError(f"{name}: output_dim must be a positive integer, got {output_dim!r}")
    output_dim = int(output_dim)
    try:
        y = np.asarray(labels)
    except jax.errors.TracerArrayConversionError as err:
        raise TypeError(
            f"{name}: check_labels needs concrete labels; it cannot run on traced values inside jit/vmap"
        ) from err

    kind = y.dtype.kind  # b bool, i/u integer, f float, c complex, O/U/S/... other
    if kind not in "biuf":
        raise ValueError(f"{name}: labels must be a numeric array, got dtype {y.dtype}")
    if kind == "f" and not np.all(np.isfinite(y)):
        n_bad = int(np.size(y) - np.count_nonzero(np.isfinite(y)))
        raise ValueError(f"{name}: labels contain NaN/Inf ({n_bad} of {y.size} values are not finite)")

    if name == "binary_crossentropy":
        _check_binary(y, output_dim, logits_shape)
    elif name == "categorical_crossentropy":
        _check_categorical(y, output_dim, logits_shape)
    elif name == "sparse_categorical_crossentropy":
        _check_sparse(y, output_dim, logits_shape)
    else:
        _check_mse(y, output_dim, logits_shape)


def _check_logits_shape(
    name: str, y: np.ndarray, output_dim: int, logits_shape: tuple[int, ...] | None, *, sparse: bool = False
) -> None:
    if logits_shape is None:
        return
    logits_shape = tuple(int(d) for d in logits_shape)
    if name != "binary_crossentropy" or output_dim != 1:
        if len(logits_shape) == 0 or logits_shape[-1] != output_dim:
            raise ValueError(
                f"{name}: logits shape {logits_shape} does not match output_dim={output_dim} "
                "(the logits' last axis must have size output_dim)"
            )
    expected = logits_shape[:-1] if sparse else logits_shape
    if y.shape != expected:
        what = "the logits shape without its class axis" if sparse else "the logits shape"
        hint = ""
        if not sparse and y.shape + (1,) == logits_shape:
            hint = f"; reshape labels to {logits_shape} (labels[..., None])"
        raise ValueError(
            f"{name}: labels shape {y.shape} does not match logits shape {logits_shape} "
            f"(labels must have {what}, {expected}){hint}"
        )


def _check_binary(y: np.ndarray, output_dim: int, logits_shape: tuple[int, ...] | None) -> None:
    name = "binary_crossentropy"
    if output_dim != 1 and (y.ndim == 0 or y.shape[-1] != output_dim):
        raise ValueError(
            f"{name}: labels shape {y.shape} does not match output_dim={output_dim} "
            f"(multi-label binary labels need a last axis of size {output_dim})"
        )
    _check_logits_shape(name, y, output_dim, logits_shape)
    bad = np.unique(y[(y != 0) & (y != 1)])
    if bad.size:
        shown = ", ".join(_fmt(v) for v in bad[:5]) + (", ..." if bad.size > 5 else "")
        raise ValueError(
            f"{name}: labels must be 0 or 1, found other values [{shown}] (values in {_range(y)})"
        )


def _check_categorical(y: np.ndarray, output_dim: int, logits_shape: tuple[int, ...] | None) -> None:
    name = "categorical_crossentropy"
    if y.dtype.kind != "f":
        raise ValueError(
            f"{name}: labels must be a float one-hot/probability array with a last axis of size "
            f"{output_dim}, got dtype {y.dtype} and shape {y.shape}; for integer class ids use "
            "sparse_categorical_crossentropy or convert them with to_one_hot(labels, n_classes)"
        )
    if y.ndim == 0 or y.shape[-1] != output_dim:
        raise ValueError(
            f"{name}: labels last axis must have size output_dim={output_dim} (one-hot/probabilities), "
            f"got labels shape {y.shape}"
        )
    _check_logits_shape(name, y, output_dim, logits_shape)
    if y.size == 0:
        return
    if y.min() < 0 or y.max() > 1:
        raise ValueError(f"{name}: labels must be probabilities in [0, 1], found values in {_range(y)}")
    sums = y.astype(np.float64).sum(axis=-1)
    tol = max(1e-3, output_dim * float(np.finfo(y.dtype).eps))
    if not np.all(np.abs(sums - 1.0) <= tol):
        raise ValueError(
            f"{name}: label rows must sum to 1 (one-hot or probabilities), found row sums in {_range(sums)}"
        )


def _check_sparse(y: np.ndarray, output_dim: int, logits_shape: tuple[int, ...] | None) -> None:
    name = "sparse_categorical_crossentropy"
    if y.dtype.kind not in "iu":
        hint = ""
        if y.dtype.kind == "f" and y.ndim >= 1 and y.shape[-1] == output_dim:
            hint = "; these look like one-hot labels: use categorical_crossentropy"
        elif y.dtype.kind == "f":
            hint = "; cast them with labels.astype(int) if they hold class ids"
        raise ValueError(
            f"{name}: labels must be integers in [0, {output_dim - 1}], got dtype {y.dtype}{hint}"
        )
    _check_logits_shape(name, y, output_dim, logits_shape, sparse=True)
    if y.size and (y.min() < 0 or y.max() > output_dim - 1):
        raise ValueError(
            f"{name}: labels must be integers in [0, {output_dim - 1}], found values in {_range(y)}"
        )


def _check_mse(y: np.ndarray, output_dim: int, logits_shape: tuple[int, ...] | None) -> None:
    name = "mse"
    if y.ndim == 0 or y.shape[-1] != output_dim:
        raise ValueError(
            f"{name}: targets last axis must have size output_dim={output_dim}, got targets shape {y.shape}"
        )
    _check_logits_shape(name, y, output_dim, logits_shape)
