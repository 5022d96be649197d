"""Small data sets, split and standardized, ready for JAX.

Every data set comes back as a :class:`Dataset`: train / validation / test arrays (features ``float32``,
class labels ``int32``, regression targets ``float32``), plus the task, the number of classes, the number of
output units the model's last layer needs and the loss that fits. Nothing is downloaded: the real data sets
are the ones bundled with scikit-learn (imported lazily, only by their loaders), the rest are generated from
``seed``.

=================  =====  ===========================  ==========  =======  ==================================
name               N      one example (``x``)          task        classes  notes
=================  =====  ===========================  ==========  =======  ==================================
digits             1797   ``[64]``                     multiclass  10       8x8 handwritten digits, flattened
digits_image       1797   ``[8, 8, 1]`` (HWC)          multiclass  10       same examples, image layout (CNN)
digits_sequence    1797   ``[8, 8]`` (time, features)  multiclass  10       same examples, 8 rows = 8 steps
breast_cancer      569    ``[30]``                     binary      2        Wisconsin diagnostic, 212 / 357
wine               178    ``[13]``                     multiclass  3        59 / 71 / 48
iris               150    ``[4]``                      multiclass  3        50 / 50 / 50
adding             2000   ``[T, 2]``                   regression  --       y ``[1]``: sum of 2 marked values
copy               2000   ``[T + 2 n_copy, S + 2]``    multiclass  S + 2    y ``[T + 2 n_copy]``: label a step
spirals            1000   ``[2]``                      binary      2        two interleaved spirals
=================  =====  ===========================  ==========  =======  ==================================

(``N`` is the whole data set before splitting; for the generated sets it is the ``n_samples`` option.)

* **digits / digits_image / digits_sequence** hold the *same* examples in the *same* order for a given seed,
  standardized with the same per-pixel statistics: ``digits.x_train.reshape(-1, 8, 8, 1)`` equals
  ``digits_image.x_train`` exactly, so MLPs, CNNs and RNNs can be compared on identical data.
* **adding** (Hochreiter & Schmidhuber, 1997): channel 0 holds ``T`` values uniform in ``[0, 1)``, channel 1
  a marker with exactly two ones, one in the first half (steps ``[0, T // 2)``) and one in the second half
  (steps ``[T // 2, T)``). The target is the sum of the two marked values, in ``[0, 2)``; predicting the
  constant 1 gives a mean squared error of about 1/6. Options: ``length`` (T, 50), ``n_samples`` (2000).
* **copy** (copy-memory task, Arjovsky, Shah & Bengio, 2016): with ``S = n_symbols`` and ``K = n_copy``, the
  input is ``K`` random symbols from ``1..S``, then ``T - 1`` blanks (0), then the delimiter ``S + 1``, then
  ``K`` blanks: ``T + 2 K`` steps, one-hot over ``S + 2`` classes. The target is blank everywhere except the
  last ``K`` steps, which hold the ``K`` symbols in order. A model that outputs blanks, then guesses
  uniformly, has a cross-entropy of ``K log(S) / (T + 2 K)``. Options: ``length`` (T, 20), ``n_symbols``
  (8), ``n_copy`` (10), ``n_samples`` (2000).
* **spirals**: two arms ``r = theta / pi``, the second rotated by half a turn, so along any ray the arms
  alternate one unit apart; ``theta`` runs over ``turns`` full turns and each coordinate gets Gaussian noise
  of std ``noise`` (in those units, before standardization). Options: ``n_samples`` (1000), ``noise``
  (0.2), ``turns`` (1.5).

Splits are seeded (``numpy.random.default_rng(seed)``) and, for classification data sets with one label an
example, stratified: each class is spread over train / validation / test in proportion. Tabular features
(digits*, breast_cancer, wine, iris, spirals) are standardized with the mean and std of the training split
only (a constant feature keeps std 1, so it becomes 0 everywhere); adding and copy inputs are left as they
are (already in ``[0, 1]`` / one-hot), as is the adding target.

Example::

    >>> from jaxnets import data
    >>> ds = data.load("digits", seed=0)
    >>> ds.x_train.shape, ds.y_train.dtype, ds.output_dim, ds.default_loss
    ((1079, 64), dtype('int32'), 10, 'sparse_categorical_crossentropy')
    >>> data.describe(data.load("adding", length=20, n_samples=500))
    'adding: regression, x [300, 20, 2] -> y [300, 1] float32, output_dim 1, val 100, test 100, loss mse'
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

__all__ = ["TASKS", "NAMES", "Dataset", "load", "describe"]

TASKS: tuple[str, ...] = ("binary", "multiclass", "regression")
"""The kinds of task a :class:`Dataset` can pose."""

_LOSSES: dict[str, str] = {
    "binary": "binary_crossentropy",
    "multiclass": "sparse_categorical_crossentropy",
    "regression": "mse",
}


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A train / validation / test split ready for JAX.

    Shapes (``N`` is the number of examples in a split, which differs between splits):

    * ``x_*``: ``float32``, ``[N, *input_shape]``, e.g. ``[N, 64]`` (tabular), ``[N, 8, 8, 1]`` (images,
      NHWC), ``[N, T, F]`` (sequences, time on axis 1).
    * ``y_*``: ``int32`` ``[N]`` class labels (binary: 0/1, multiclass: ``0..n_classes - 1``); ``int32``
      ``[N, T]`` when ``sequence_output`` (one label a time step, e.g. the copy task); ``float32``
      ``[N, output_dim]`` for regression.

    All arrays are C-contiguous ``numpy.ndarray`` s. The dataclass is frozen but the arrays are ordinary
    (writable) arrays: do not modify them in place. Equality is identity (arrays have no single truth value).

    Attributes:
        name: the data set's name, one of :data:`NAMES`.
        task: one of :data:`TASKS`.
        n_classes: number of classes: ``C`` for multiclass, 2 for binary, 0 for regression.
        output_dim: units the model's last layer needs: ``C`` for multiclass (logits), 1 for binary (one
            logit), ``D`` for regression.
        sequence_output: True when ``y`` has a time axis (many-to-many), so the model must emit
            ``[N, T, output_dim]``.
        default_loss: ``"binary_crossentropy"``, ``"sparse_categorical_crossentropy"`` or ``"mse"``.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    task: str
    n_classes: int
    output_dim: int
    sequence_output: bool
    default_loss: str

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        for split in ("train", "val", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if len(x) != len(y):
                raise ValueError(f"x_{split} has {len(x)} examples but y_{split} has {len(y)}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example, ``x_train.shape[1:]`` (e.g. ``(64,)``, ``(8, 8, 1)``, ``(T, F)``)."""
        return tuple(self.x_train.shape[1:])

    @property
    def n_train(self) -> int:
        """Number of training examples."""
        return int(self.x_train.shape[0])

    @property
    def n_val(self) -> int:
        """Number of validation examples."""
        return int(self.x_val.shape[0])

    @property
    def n_test(self) -> int:
        """Number of test examples."""
        return int(self.x_test.shape[0])


@dataclasses.dataclass(frozen=True)
class _Raw:
    """A whole data set before splitting: ``x [N, ...]``, ``y [N, ...]`` and how to treat it."""

    x: np.ndarray
    y: np.ndarray
    task: str
    n_classes: int
    output_dim: int
    sequence_output: bool = False
    standardize: bool = True

    @property
    def stratify(self) -> bool:
        return self.task != "regression" and not self.sequence_output


# ---------------------------------------------------------------------------------------------------------
# Real data sets (scikit-learn's bundled copies)
# ---------------------------------------------------------------------------------------------------------


@functools.cache
def _sklearn_arrays(which: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x float64 [N, F], y int64 [N])`` of a bundled scikit-learn data set, cached and read-only."""
    try:
        from sklearn import datasets
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"the {which!r} data set ships with scikit-learn; install it with `pip install 'jaxnets[data]'`"
        ) from err
    loader = {
        "digits": datasets.load_digits,
        "breast_cancer": datasets.load_breast_cancer,
        "wine": datasets.load_wine,
        "iris": datasets.load_iris,
    }[which]
    x, y = loader(return_X_y=True)
    x = np.array(x, dtype=np.float64)
    y = np.array(y, dtype=np.int64)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def _tabular(which: str, n_classes: int) -> _Raw:
    x, y = _sklearn_arrays(which)
    task = "binary" if n_classes == 2 else "multiclass"
    return _Raw(x=x, y=y, task=task, n_classes=n_classes, output_dim=1 if task == "binary" else n_classes)


def _digits(rng: np.random.Generator) -> _Raw:
    return _tabular("digits", 10)


def _digits_image(rng: np.random.Generator) -> _Raw:
    raw = _digits(rng)
    return dataclasses.replace(raw, x=raw.x.reshape(-1, 8, 8, 1))


def _digits_sequence(rng: np.random.Generator) -> _Raw:
    raw = _digits(rng)
    return dataclasses.replace(raw, x=raw.x.reshape(-1, 8, 8))


def _breast_cancer(rng: np.random.Generator) -> _Raw:
    return _tabular("breast_cancer", 2)


def _wine(rng: np.random.Generator) -> _Raw:
    return _tabular("wine", 3)


def _iris(rng: np.random.Generator) -> _Raw:
    return _tabular("iris", 3)


# ---------------------------------------------------------------------------------------------------------
# Generated data sets
# ---------------------------------------------------------------------------------------------------------


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"option {name!r} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"option {name!r} must be >= {minimum}, got {value}")
    return int(value)


def _check_float(name: str, value: Any, minimum: float, *, strict: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"option {name!r} must be a finite number, got {value!r}")
    if value < minimum or (strict and value == minimum):
        raise ValueError(f"option {name!r} must be {'>' if strict else '>='} {minimum}, got {value}")
    return float(value)


def _adding(rng: np.random.Generator, *, length: int, n_samples: int) -> _Raw:
    """Adding problem: ``x [N, T, 2]`` (values, marker), ``y [N, 1]`` = sum of the two marked values."""
    t = _check_int("length", length, 2)
    n = _check_int("n_samples", n_samples, 3)
    values = rng.random((n, t), dtype=np.float32)
    half = t // 2
    first = rng.integers(0, half, size=n)
    second = rng.integers(half, t, size=n)
    rows = np.arange(n)
    marker = np.zeros((n, t), dtype=np.float32)
    marker[rows, first] = 1.0
    marker[rows, second] = 1.0
    x = np.stack([values, marker], axis=-1)
    y = (values[rows, first] + values[rows, second]).astype(np.float32)[:, None]
    return _Raw(x=x, y=y, task="regression", n_classes=0, output_dim=1, standardize=False)


def _copy(rng: np.random.Generator, *, length: int, n_symbols: int, n_copy: int, n_samples: int) -> _Raw:
    """Copy-memory task: ``x [N, T + 2K, S + 2]`` one-hot, ``y [N, T + 2K]`` labels (see module docstring)."""
    t = _check_int("length", length, 1)
    s = _check_int("n_symbols", n_symbols, 1)
    k = _check_int("n_copy", n_copy, 1)
    n = _check_int("n_samples", n_samples, 3)
    steps = t + 2 * k
    symbols = rng.integers(1, s + 1, size=(n, k))
    inputs = np.zeros((n, steps), dtype=np.int64)
    inputs[:, :k] = symbols
    inputs[:, k + t - 1] = s + 1  # delimiter: "start copying now"
    targets = np.zeros((n, steps), dtype=np.int32)
    targets[:, -k:] = symbols
    x = np.eye(s + 2, dtype=np.float32)[inputs]
    return _Raw(
        x=x,
        y=targets,
        task="multiclass",
        n_classes=s + 2,
        output_dim=s + 2,
        sequence_output=True,
        standardize=False,
    )


def _spirals(rng: np.random.Generator, *, n_samples: int, noise: float, turns: float) -> _Raw:
    """Two interleaved spirals: ``x [N, 2]``, ``y [N]`` in {0, 1} (class 0 gets the odd example)."""
    n = _check_int("n_samples", n_samples, 6)
    noise = _check_float("noise", noise, 0.0, strict=False)
    turns = _check_float("turns", turns, 0.0, strict=True)
    labels = (np.arange(n) >= n - n // 2).astype(np.int64)
    # sqrt spreads points evenly along the arm (arc length grows like theta^2); start a quarter turn out
    # so the two arms do not begin on top of each other at the origin.
    theta = 0.5 * np.pi + np.sqrt(rng.random(n)) * (2.0 * np.pi * turns)
    radius = theta / np.pi
    angle = theta + np.pi * labels
    x = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=-1)
    x = x + noise * rng.standard_normal((n, 2))
    order = rng.permutation(n)
    return _Raw(x=x[order], y=labels[order], task="binary", n_classes=2, output_dim=1)


@dataclasses.dataclass(frozen=True)
class _Spec:
    build: Callable[..., _Raw]
    options: Mapping[str, Any]


_SPECS: dict[str, _Spec] = {
    "digits": _Spec(_digits, {}),
    "digits_image": _Spec(_digits_image, {}),
    "digits_sequence": _Spec(_digits_sequence, {}),
    "breast_cancer": _Spec(_breast_cancer, {}),
    "wine": _Spec(_wine, {}),
    "iris": _Spec(_iris, {}),
    "adding": _Spec(_adding, {"length": 50, "n_samples": 2000}),
    "copy": _Spec(_copy, {"length": 20, "n_symbols": 8, "n_copy": 10, "n_samples": 2000}),
    "spirals": _Spec(_spirals, {"n_samples": 1000, "noise": 0.2, "turns": 1.5}),
}

NAMES: tuple[str, ...] = tuple(_SPECS)
"""Names :func:`load` accepts."""

_GENERATOR_STREAM = 0x6A61786E  # keeps the generating stream apart from the splitting stream of one seed


# ---------------------------------------------------------------------------------------------------------
# Splitting and standardizing
# ---------------------------------------------------------------------------------------------------------


def _allocate(counts: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` over groups in proportion to ``counts`` (largest remainder), never above a count."""
    quota = counts * (total / counts.sum())
    alloc = np.floor(quota).astype(np.int64)
    order = np.argsort(-(quota - alloc), kind="stable")
    alloc[order[: total - alloc.sum()]] += 1
    return np.minimum(alloc, counts)


def _split_indices(
    labels: np.ndarray | None, n: int, n_val: int, n_test: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded (stratified when ``labels`` is given) train / val / test indices, each in random order."""
    if labels is None:
        perm = rng.permutation(n)
        return perm[n_val + n_test :], perm[:n_val], perm[n_val : n_val + n_test]
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    test_alloc = _allocate(counts, n_test)
    val_alloc = np.minimum(_allocate(counts, n_val), counts - test_alloc)
    train, val, test = [], [], []
    for c in range(len(classes)):
        members = rng.permutation(np.flatnonzero(inverse == c))
        test.append(members[: test_alloc[c]])
        val.append(members[test_alloc[c] : test_alloc[c] + val_alloc[c]])
        train.append(members[test_alloc[c] + val_alloc[c] :])
    return tuple(rng.permutation(np.concatenate(part)) for part in (train, val, test))  # type: ignore[return-value]


def _subsample(labels: np.ndarray | None, available: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` of the positions ``0..available - 1``, stratified when ``labels`` is given, shuffled."""
    if labels is None:
        return rng.permutation(available)[:size]
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    alloc = _allocate(counts, size)
    picked = [rng.permutation(np.flatnonzero(inverse == c))[: alloc[c]] for c in range(len(classes))]
    return rng.permutation(np.concatenate(picked))


def _standardize(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Per-feature ``(x - mean) / std`` with the statistics of ``train`` (std 0 -> 1), as float32."""
    flat = train.reshape(len(train), -1).astype(np.float64)
    mean = flat.mean(axis=0)
    std = flat.std(axis=0)
    std[std == 0] = 1.0
    out = []
    for x in (train, *others):
        z = (x.reshape(len(x), -1).astype(np.float64) - mean) / std
        out.append(z.astype(np.float32).reshape(x.shape))
    return out


# ---------------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------------


def load(
    name: str,
    *,
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    n_train: int | None = None,
    **options: Any,
) -> Dataset:
    """Load, split and (for tabular data) standardize a data set.

    Args:
        name: one of :data:`NAMES`.
        seed: non-negative integer; fixes the split, the ``n_train`` subsample and, for generated data sets,
            the data itself. Same seed, same arrays; another seed, another split.
        val_fraction: share of all examples held out for validation, in ``(0, 1)``.
        test_fraction: share held out for testing; ``val_fraction + test_fraction`` must be below 1. Split
            sizes are ``round(N * fraction)``, spread over the classes in proportion (stratified) for data
            sets with one class label an example.
        n_train: keep only this many training examples (a seeded, stratified subsample of the training
            split; validation and test are untouched), e.g. for overfitting experiments. Standardization
            still uses the whole training split, so the kept rows equal rows of the full ``x_train``.
        **options: data-set options (generated data sets only): ``adding``: ``length``, ``n_samples``;
            ``copy``: ``length``, ``n_symbols``, ``n_copy``, ``n_samples``; ``spirals``: ``n_samples``,
            ``noise``, ``turns``. See the module docstring for meanings and defaults.

    Returns:
        A :class:`Dataset`; e.g. ``digits``: ``x_train`` float32 ``[1079, 64]``, ``y_train`` int32 ``[1079]``,
        359 validation and 359 test examples.

    Raises:
        ValueError: unknown name or option, bad option value, bad fractions, a split that would be empty, or
            ``n_train`` not in ``1..(size of the training split)``.
    """
    if name not in _SPECS:
        raise ValueError(f"unknown data set {name!r}; valid names: {', '.join(NAMES)}")
    spec = _SPECS[name]
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        valid = ", ".join(spec.options) if spec.options else "none"
        raise ValueError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for data set {name!r}; valid options: {valid}"
        )
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    for label, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not isinstance(frac, numbers.Real) or not 0.0 < frac < 1.0:
            raise ValueError(f"{label} must be in (0, 1), got {frac!r}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"val_fraction + test_fraction must be below 1, got {val_fraction} + {test_fraction}"
        )

    seed = int(seed)
    raw = spec.build(np.random.default_rng([seed, _GENERATOR_STREAM]), **{**spec.options, **options})
    rng = np.random.default_rng(seed)

    n = len(raw.x)
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    if min(n_val, n_test, n - n_val - n_test) < 1:
        raise ValueError(
            f"{name!r} has {n} examples: val_fraction={val_fraction}, test_fraction={test_fraction} "
            "leave a split empty"
        )
    labels = raw.y if raw.stratify else None
    train_idx, val_idx, test_idx = _split_indices(labels, n, n_val, n_test, rng)

    x_train, x_val, x_test = raw.x[train_idx], raw.x[val_idx], raw.x[test_idx]
    if raw.standardize:
        x_train, x_val, x_test = _standardize(x_train, x_val, x_test)

    if n_train is not None:
        available = len(train_idx)
        if isinstance(n_train, bool) or not isinstance(n_train, numbers.Integral):
            raise ValueError(f"n_train must be an integer or None, got {n_train!r}")
        if not 1 <= n_train <= available:
            raise ValueError(
                f"n_train must be in 1..{available} (the training split of {name!r}), got {n_train}"
            )
        keep = _subsample(None if labels is None else labels[train_idx], available, int(n_train), rng)
        train_idx, x_train = train_idx[keep], x_train[keep]

    y_dtype = np.float32 if raw.task == "regression" else np.int32

    def _x(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a, dtype=np.float32)

    def _y(idx: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(raw.y[idx], dtype=y_dtype)

    return Dataset(
        name=name,
        x_train=_x(x_train),
        y_train=_y(train_idx),
        x_val=_x(x_val),
        y_val=_y(val_idx),
        x_test=_x(x_test),
        y_test=_y(test_idx),
        task=raw.task,
        n_classes=raw.n_classes,
        output_dim=raw.output_dim,
        sequence_output=raw.sequence_output,
        default_loss=_LOSSES[raw.task],
    )


def _shape(a: np.ndarray) -> str:
    return "[" + ", ".join(str(d) for d in a.shape) + "]"


def describe(ds: Dataset) -> str:
    """One-line summary: name, task, classes, train shapes, ``y`` dtype, output units, split sizes, loss.

    Example: ``'digits: multiclass, 10 classes, x [1079, 64] -> y [1079] int32, output_dim 10, val 359,
    test 359, loss sparse_categorical_crossentropy'``.
    """
    classes = f", {ds.n_classes} classes" if ds.n_classes else ""
    seq = ", per-step targets" if ds.sequence_output else ""
    return (
        f"{ds.name}: {ds.task}{classes}{seq}, "
        f"x {_shape(ds.x_train)} -> y {_shape(ds.y_train)} {ds.y_train.dtype}, "
        f"output_dim {ds.output_dim}, val {ds.n_val}, test {ds.n_test}, loss {ds.default_loss}"
    )
