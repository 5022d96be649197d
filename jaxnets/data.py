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
are (already in ``[0, 1]`` / one-hot), as is the adding target. The statistics stay with the data set
(``ds.x_mean``, ``ds.x_std``), so predictions take raw inputs (:meth:`jaxnets.result.Result.predict`).

Your own data: :func:`from_arrays` turns arrays (``x [N, D]``, ``[N, H, W, C]`` or ``[N, T, F]``; ``y [N]``
labels or ``[N]`` / ``[N, D]`` targets) into a :class:`Dataset` the same way: the task is inferred from ``y``
(integer labels ``0..C-1``: binary for 2 classes, multiclass otherwise; non-integer floats: regression) unless
``task`` is given, validation / test splits you pass are used as they are and the others are split off the
training arrays with the same seeded, stratified splitting, and features are standardized with the
training split's statistics. :func:`load_file` reads a ``.csv`` (a header row, numeric feature columns, the
label column named by ``target``; class names in that column become ids in sorted order) or an ``.npz``
(arrays ``x``, ``y`` and optionally ``x_val``, ``y_val``, ``x_test``, ``y_test``). Bad data raises
:class:`DataError`, one line naming the file, column / array, row and value at fault, before any compute.

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
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxnets import standardize as standardize_lib
from jaxnets.data_files import FILE_HELP, FILE_SUFFIXES, NPZ_ARRAYS, DataError, read_csv, read_npz, show

__all__ = [
    "TASKS", "NAMES", "FILE_SUFFIXES", "Dataset", "DataError", "load", "describe", "from_arrays", "load_file",
]

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
      name: the data set's name: one of :data:`NAMES`, or the name given to :func:`from_arrays` (for
        :func:`load_file`, the file's stem by default).
      x_train: training features, ``[N, *input_shape]`` (see the shapes above).
      y_train: training labels / targets (see the shapes above).
      x_val: validation features, ``[N, *input_shape]``.
      y_val: validation labels / targets.
      x_test: test features, ``[N, *input_shape]``.
      y_test: test labels / targets.
      task: one of :data:`TASKS`.
      n_classes: number of classes: ``C`` for multiclass, 2 for binary, 0 for regression.
      output_dim: units the model's last layer needs: ``C`` for multiclass (logits), 1 for binary (one
        logit), ``D`` for regression.
      sequence_output: True when ``y`` has a time axis (many-to-many), so the model must emit
        ``[N, T, output_dim]``.
      default_loss: ``"binary_crossentropy"``, ``"sparse_categorical_crossentropy"`` or ``"mse"``.
      x_mean, x_std: float64 ``[*input_shape]``: the training split's per-feature mean and std the ``x_*``
        arrays were standardized with (``x = (raw - x_mean) / x_std``); ``None`` when not standardized.
      y_mean, y_std: float64 ``[output_dim]`` when regression targets were scaled the same way (predictions
        are unscaled with them); ``None`` otherwise (no built-in loader scales targets).
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
    x_mean: np.ndarray | None = None
    x_std: np.ndarray | None = None
    y_mean: np.ndarray | None = None
    y_std: np.ndarray | None = None

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


# ---------------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------------


def _load_spec(name: str, seed: Any, val_fraction: Any, test_fraction: Any, options: Mapping[str, Any]) -> _Spec:
    """The :class:`_Spec` of data set ``name``, after checking :func:`load`'s options, seed and fractions."""
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
    return spec


def _train_subsample(name: str, n_train: Any, train_idx: np.ndarray, labels: np.ndarray | None,
                     rng: np.random.Generator) -> np.ndarray:
    """Positions (into ``train_idx``) of a seeded, stratified subsample of ``n_train``, after checking it."""
    available = len(train_idx)
    if isinstance(n_train, bool) or not isinstance(n_train, numbers.Integral):
        raise ValueError(f"n_train must be an integer or None, got {n_train!r}")
    if not 1 <= n_train <= available:
        raise ValueError(
            f"n_train must be in 1..{available} (the training split of {name!r}), got {n_train}"
        )
    return _subsample(None if labels is None else labels[train_idx], available, int(n_train), rng)


def _float32(a: np.ndarray) -> np.ndarray:
    """``a`` as a C-contiguous float32 array."""
    return np.ascontiguousarray(a, dtype=np.float32)


def _raw_dataset(name: str, raw: _Raw, xs: Sequence[np.ndarray], idx: Sequence[np.ndarray],
                 stats: tuple[np.ndarray, np.ndarray] | tuple[None, None]) -> Dataset:
    """The :class:`Dataset` of ``raw``'s features ``xs`` and labels at ``idx`` (train, val, test), typed."""
    y_dtype = np.float32 if raw.task == "regression" else np.int32
    x_train, x_val, x_test = (_float32(x) for x in xs)
    y_train, y_val, y_test = (np.ascontiguousarray(raw.y[i], dtype=y_dtype) for i in idx)
    return Dataset(
        name=name,
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        x_test=x_test,
        y_test=y_test,
        task=raw.task,
        n_classes=raw.n_classes,
        output_dim=raw.output_dim,
        sequence_output=raw.sequence_output,
        default_loss=_LOSSES[raw.task],
        x_mean=stats[0],
        x_std=stats[1],
    )


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
    spec = _load_spec(name, seed, val_fraction, test_fraction, options)
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
    stats = (None, None)
    if raw.standardize:
        (x_train, x_val, x_test), *stats = standardize_lib.fit(x_train, x_val, x_test)

    if n_train is not None:
        keep = _train_subsample(name, n_train, train_idx, labels, rng)
        train_idx, x_train = train_idx[keep], x_train[keep]

    return _raw_dataset(name, raw, (x_train, x_val, x_test), (train_idx, val_idx, test_idx), tuple(stats))


def _shape(a: np.ndarray) -> str:
    return "[" + ", ".join(str(d) for d in a.shape) + "]"


def describe(ds: Dataset) -> str:
    """One-line summary: name, task, classes, train shapes, ``y`` dtype, output units, split sizes, loss.

    Args:
      ds: the data set.

    Returns:
      the summary, e.g. ``'digits: multiclass, 10 classes, x [1079, 64] -> y [1079] int32, output_dim 10,
      val 359, test 359, loss sparse_categorical_crossentropy'``.
    """
    classes = f", {ds.n_classes} classes" if ds.n_classes else ""
    seq = ", per-step targets" if ds.sequence_output else ""
    return (
        f"{ds.name}: {ds.task}{classes}{seq}, "
        f"x {_shape(ds.x_train)} -> y {_shape(ds.y_train)} {ds.y_train.dtype}, "
        f"output_dim {ds.output_dim}, val {ds.n_val}, test {ds.n_test}, loss {ds.default_loss}"
    )


# ---------------------------------------------------------------------------------------------------------
# Your own data: arrays and files
# ---------------------------------------------------------------------------------------------------------

def _numeric(name: str, a: Any) -> np.ndarray:
    """``a`` as a numeric array (bool, integer or float dtype); anything else names the first bad value."""
    arr = np.asarray(a)
    if arr.dtype.kind in "biuf":
        return arr
    if arr.ndim == 0:
        raise DataError(f"{name} must be an array with one row an example, got {a!r}", column=name)
    if arr.dtype.kind in "OUS":
        for i, v in enumerate(arr.reshape(-1)):
            if isinstance(v, bytes | str) or not isinstance(v, numbers.Real):
                row = int(np.unravel_index(i, arr.shape)[0])
                hint = " (map class names to ids, e.g. np.unique(y, return_inverse=True)[1])" \
                    if name.startswith("y") else ""
                shown = v.item() if isinstance(v, np.generic) else v
                raise DataError(f"{name} is not numeric: {name}[{row}] holds {shown!r}{hint}", column=name,
                                row=row)
        return arr.astype(np.float64)
    raise DataError(f"{name} is not numeric (dtype {arr.dtype})", column=name)


def _check_finite(name: str, arr: np.ndarray) -> None:
    if arr.dtype.kind != "f":
        return
    bad = ~np.isfinite(arr)
    count = int(bad.sum())
    if count:
        first = int(np.argmax(bad.reshape(len(arr), -1).any(axis=1)))
        raise DataError(f"{name} has {count} NaN / Inf value(s) (first in {name}[{first}]); drop or fill them",
                        column=name, row=first)


def _labels(ys: dict[str, np.ndarray], task: str | None, y_name: str) -> tuple[str, int, dict[str, np.ndarray]]:
    """Class labels ``int32 [N]`` of every split, the task (``binary`` / ``multiclass``) and the class count."""
    out = {}
    for key, y in ys.items():
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise DataError(f"{y_name if key == 'y' else key} has shape {list(y.shape)}: class labels are one "
                            "integer an example, [N] (for a regression target pass task=\"regression\")", column=key)
        if y.dtype.kind == "f":
            fraction = np.flatnonzero(y != np.round(y))
            if len(fraction):
                i = int(fraction[0])
                # arrays: y[i] (0-based index); a CSV's label column: its 1-based data row
                where, row = (f"{key}[{i}] =", i) if y_name == "y" else (f"{y_name} holds, in row {i + 1},", i + 1)
                raise DataError(f"task=\"{task}\" needs whole-number class labels; {where} {y[i].item()!r}",
                                column=key, row=row)
        out[key] = y
    _check_split_labels(out, y_name)
    values = np.unique(np.concatenate([y.astype(np.int64) for y in out.values()]))
    if len(values) < 2:
        raise DataError(f"{y_name} holds one class only ({show(values)}): a classifier needs at least 2 classes",
                        column="y")
    n_classes = len(values)
    if not np.array_equal(values, np.arange(n_classes)):
        fix = "" if task is not None else "; for a numeric target pass task=\"regression\""
        raise DataError(f"{y_name} holds the labels {show(values)}, not 0..{n_classes - 1}: map them to "
                        f"0..{n_classes - 1} (e.g. y = np.unique(y, return_inverse=True)[1]){fix}", column="y")
    if task == "binary" and n_classes != 2:
        raise DataError(f"task=\"binary\" needs 2 classes; {y_name} holds {n_classes} (0..{n_classes - 1}): "
                        "pass task=\"multiclass\"", column="y")
    task = task or ("binary" if n_classes == 2 else "multiclass")
    return task, n_classes, {k: np.ascontiguousarray(y, dtype=np.int32) for k, y in out.items()}


def _check_split_labels(ys: dict[str, np.ndarray], y_name: str) -> None:
    """Raise ``DataError`` naming the split when a validation or test split holds a class the training labels
    never have (a model cannot learn it; often a shifted or differently encoded label array)."""
    train = np.unique(ys["y"].astype(np.int64)) if "y" in ys else None
    for key, y in ys.items():
        if (extra := np.setdiff1d(np.unique(y.astype(np.int64)), train if train is not None else y)).size:
            raise DataError(f"{key} holds the label(s) {show(extra)}, which the training labels ({y_name}: "
                            f"{show(train)}) never have; encode every split's labels the same way", column=key)


def _targets(ys: dict[str, np.ndarray], y_name: str) -> dict[str, np.ndarray]:
    """Regression targets ``float32 [N, D]`` of every split (``[N]`` becomes ``[N, 1]``)."""
    out = {}
    for key, y in ys.items():
        if y.ndim == 1:
            y = y[:, None]
        if y.ndim != 2:
            raise DataError(f"{y_name if key == 'y' else key} has shape {list(y.shape)}: regression targets are "
                            "[N] or [N, D]", column=key)
        out[key] = np.ascontiguousarray(y, dtype=np.float32)
    dims = {y.shape[1] for y in out.values()}
    if len(dims) > 1:
        shapes = ", ".join(f"{k} {list(y.shape)}" for k, y in out.items())
        raise DataError(f"the targets have different widths: {shapes}", column="y")
    return out


def _infer_task(y: np.ndarray, y_name: str) -> str | None:
    """``"regression"`` for non-integer floats, ``None`` (labels: decide by class count) for ints / bools."""
    if y.dtype.kind in "biu":
        return None
    values = np.unique(y)
    if np.array_equal(values, np.round(values)):
        raise DataError(
            f"{y_name} holds only whole numbers stored as floats ({show(values)}), so the task is ambiguous: pass "
            "task=\"multiclass\" (or \"binary\") for class labels, or task=\"regression\" for a numeric target "
            "(in a config: [data] task = \"...\"); or store the labels as integers", column="y")
    return "regression"


def _check_array_options(arrays: Mapping[str, Any], task: Any, seed: Any, standardize: Any, name: Any) -> None:
    """Check that given val / test splits come in pairs, then :func:`from_arrays`'s options."""
    for split in ("val", "test"):
        has_x, has_y = arrays.get(f"x_{split}") is not None, arrays.get(f"y_{split}") is not None
        if has_x != has_y:
            given, missing = (f"x_{split}", f"y_{split}") if has_x else (f"y_{split}", f"x_{split}")
            raise DataError(f"{given} given without {missing}: pass both (the {split} split is used as given) or "
                            "neither (it is split off x, y)", column=given)
    if task is not None and task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)} or None (inferred from y), got {task!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(standardize, bool):
        raise ValueError(f"standardize must be True or False, got {standardize!r}")
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")


def _checked_arrays(arrays: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], list[str]]:
    """The given arrays as numeric arrays, checked (shapes, lengths, finite), and the split suffixes given."""
    arr = {k: _numeric(k, v) for k, v in arrays.items() if v is not None}
    x = arr["x"]
    if x.ndim not in (2, 3, 4):
        hint = " (one feature: x.reshape(-1, 1))" if x.ndim == 1 else ""
        raise DataError(f"x has shape {list(x.shape)}: it must be [N, D] (tabular), [N, H, W, C] (images) or "
                        f"[N, T, F] (sequences){hint}", column="x")
    splits = ["", *(s for s in ("_val", "_test") if f"x{s}" in arr)]
    for s in splits:
        xs, ys = arr[f"x{s}"], arr[f"y{s}"]
        if len(xs) == 0:
            raise DataError(f"x{s} is empty (no examples)", column=f"x{s}")
        if ys.ndim == 0 or len(xs) != len(ys):
            ny = "no rows" if ys.ndim == 0 else f"{len(ys)} rows"
            raise DataError(f"x{s} has {len(xs)} rows but y{s} has {ny}: one label / target a row of x{s}",
                            column=f"y{s}")
        if xs.shape[1:] != x.shape[1:]:
            raise DataError(f"x{s} examples have shape {list(xs.shape[1:])}, x examples {list(x.shape[1:])}",
                            column=f"x{s}")
    for key, a in arr.items():
        _check_finite(key, a)
    return arr, splits


def _task_and_ys(ys: dict[str, np.ndarray], task: str | None,
                 y_name: str) -> tuple[str, int, int, dict[str, np.ndarray]]:
    """The task (inferred when ``None``), class count, output units and the typed ``y`` of every split."""
    if task is None:
        task = _infer_task(np.concatenate([y.reshape(-1) for y in ys.values()]), y_name)
    if task == "regression":
        ys = _targets(ys, y_name)
        n_classes, output_dim = 0, ys["y"].shape[1]
    else:
        task, n_classes, ys = _labels(ys, task, y_name)
        output_dim = 1 if task == "binary" else n_classes
    return task, n_classes, output_dim, ys


def _split_off_sizes(n: int, has_val: bool, has_test: bool, val_fraction: Any,
                     test_fraction: Any) -> tuple[int, int]:
    """Validation / test sizes to split off ``n`` examples (0 for a split given), after checking the fractions."""
    fractions = {"val_fraction": val_fraction} if not has_val else {}
    if not has_test:
        fractions["test_fraction"] = test_fraction
    for label, frac in fractions.items():
        if isinstance(frac, bool) or not isinstance(frac, numbers.Real) or not 0.0 < frac < 1.0:
            raise ValueError(f"{label} must be in (0, 1), got {frac!r}")
    if sum(fractions.values()) >= 1.0:
        raise ValueError(f"val_fraction + test_fraction must be below 1, got {val_fraction} + {test_fraction}")
    n_val = round(n * val_fraction) if "val_fraction" in fractions else 0
    n_test = round(n * test_fraction) if "test_fraction" in fractions else 0
    if ("val_fraction" in fractions and n_val < 1) or ("test_fraction" in fractions and n_test < 1) \
            or n - n_val - n_test < 1:
        taken = ", ".join(f"{k}={v}" for k, v in fractions.items())
        raise DataError(f"x has {n} examples: {taken} leave a split empty", column="x")
    return n_val, n_test


def _from_arrays(arrays: dict[str, Any], *, task: str | None, val_fraction: float, test_fraction: float,
                 seed: int, standardize: bool, name: str, y_name: str = "y") -> Dataset:
    """:func:`from_arrays` on ``arrays`` (keys of :data:`jaxnets.data_files.NPZ_ARRAYS`); ``y_name`` names y in messages
    (``"y"``, or a CSV's ``"column 'label'"``, whose positions are then 1-based data rows)."""
    _check_array_options(arrays, task, seed, standardize, name)
    arr, splits = _checked_arrays(arrays)
    x = arr["x"]
    task, n_classes, output_dim, ys = _task_and_ys({f"y{s}": arr[f"y{s}"] for s in splits}, task, y_name)

    # Splits not given are split off the training arrays, as data.load splits a built-in set.
    n = len(x)
    n_val, n_test = _split_off_sizes(n, "x_val" in arr, "x_test" in arr, val_fraction, test_fraction)
    labels = ys["y"] if task != "regression" else None
    rng = np.random.default_rng(int(seed))
    train_idx, val_idx, test_idx = _split_indices(labels, n, n_val, n_test, rng)

    x_train, y_train = x[train_idx], ys["y"][train_idx]
    x_val, y_val = (arr["x_val"], ys["y_val"]) if "x_val" in arr else (x[val_idx], ys["y"][val_idx])
    x_test, y_test = (arr["x_test"], ys["y_test"]) if "x_test" in arr else (x[test_idx], ys["y"][test_idx])
    stats = [None, None]
    if standardize:
        (x_train, x_val, x_test), *stats = standardize_lib.fit(x_train, x_val, x_test)

    return Dataset(
        name=name,
        x_train=_float32(x_train),
        y_train=np.ascontiguousarray(y_train),
        x_val=_float32(x_val),
        y_val=np.ascontiguousarray(y_val),
        x_test=_float32(x_test),
        y_test=np.ascontiguousarray(y_test),
        task=task,
        n_classes=n_classes,
        output_dim=int(output_dim),
        sequence_output=False,
        default_loss=_LOSSES[task],
        x_mean=stats[0],
        x_std=stats[1],
    )


def from_arrays(
    x: Any,
    y: Any,
    *,
    task: str | None = None,
    x_val: Any = None,
    y_val: Any = None,
    x_test: Any = None,
    y_test: Any = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 0,
    standardize: bool = True,
    name: str = "arrays",
) -> Dataset:
    """Your own arrays as a :class:`Dataset`: checked, split, standardized, typed like the built-in sets.

    Args:
      x: features, ``[N, D]`` (tabular), ``[N, H, W, C]`` (images, for ``kind = "cnn"``) or ``[N, T, F]``
        (sequences, for ``kind = "rnn"``); any numeric dtype (returned as float32).
      y: ``[N]``: class labels (integers ``0..C-1``; ``[N, 1]`` is flattened) or regression targets
        (floats); ``[N, D]``: regression targets.
      task: ``"binary"``, ``"multiclass"`` or ``"regression"``; ``None`` infers it from ``y``: integer (or
        bool) labels are binary with 2 classes, multiclass with more; floats are regression, except
        floats that are all whole numbers (``0.0, 1.0, 2.0``), which are ambiguous and raise (pass
        ``task`` or cast ``y`` to int).
      x_val: validation features ``[N_val, ...]`` (same example shape as ``x``), used as the validation
        split instead of splitting one off ``x, y``; needs ``y_val``.
      y_val: validation labels / targets ``[N_val]`` (or ``[N_val, D]``); needs ``x_val``.
      x_test: test features ``[N_test, ...]``, used as the test split; needs ``y_test``.
      y_test: test labels / targets; needs ``x_test``.
      val_fraction: when ``x_val`` is not given, the share of ``x, y`` split off for validation, in
        ``(0, 1)`` (``round(N * val_fraction)`` examples).
      test_fraction: when ``x_test`` is not given, the share of ``x, y`` split off for testing; the shares
        split off must sum below 1. Splits are seeded and, for classification, stratified (each class in
        proportion), exactly as :func:`load` splits a built-in data set.
      seed: non-negative integer fixing the split (and the order of the training examples).
      standardize: standardize every feature (every pixel / channel or time step / feature) with the
        mean and std of the training split only (std 0 -> 1); ``False`` leaves ``x`` as it is.
      name: the data set's name (in messages and plan lines).

    Returns:
      A :class:`Dataset`: ``x_*`` float32 ``[N, *x.shape[1:]]``; ``y_*`` int32 ``[N]`` (binary /
      multiclass, ``n_classes`` ``C``, ``output_dim`` 1 / ``C``) or float32 ``[N, D]`` (regression,
      ``output_dim`` ``D``; ``[N]`` targets become ``[N, 1]``); ``x_mean`` / ``x_std`` float64
      ``[*x.shape[1:]]``, the statistics ``x`` was standardized with (``None`` with ``standardize=False``).

    Raises:
      DataError: non-numeric values, NaN / Inf (count and array), one class only, labels that are not
        ``0..C-1``, ambiguous whole-number float ``y``, mismatched lengths or shapes, ``y_val`` without
        ``x_val`` (or the reverse), a split that would be empty.
      ValueError: a bad option (``task``, ``seed``, ``standardize``, fractions, ``name``).

    Example::

        >>> import numpy as np
        >>> x = np.random.default_rng(0).normal(size=(100, 3))
        >>> ds = from_arrays(x, (x[:, 0] > 0).astype(int), seed=1)
        >>> ds.task, ds.x_train.shape, ds.y_train.dtype, ds.n_val, ds.n_test
        ('binary', (60, 3), dtype('int32'), 20, 20)
    """
    arrays = dict(x=x, y=y, x_val=x_val, y_val=y_val, x_test=x_test, y_test=y_test)
    return _from_arrays(arrays, task=task, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
                        standardize=standardize, name=name)


def load_file(path: str | os.PathLike, *, target: str | None = None, **options: Any) -> Dataset:
    """Read your own data from a ``.csv`` or ``.npz`` file and return it as :func:`from_arrays` would.

    * ``.csv``: a header row naming the columns, then one example a row; every column but ``target`` is a
      numeric feature (``x [N, F]``, in file order); ``target`` is the label column. Integers there are class
      labels (``0..C-1``), other numbers regression targets, text class names, mapped to ids ``0..C-1`` in
      sorted order of the names (``"benign", "malignant"`` -> 0, 1). Empty cells count as missing values.
      Read with the standard library's :mod:`csv` (UTF-8, a byte-order mark is skipped; blank lines ignored).
    * ``.npz``: arrays ``x`` and ``y`` and optionally ``x_val``, ``y_val``, ``x_test``, ``y_test`` (the splits
      to use as given), read with ``allow_pickle=False``; shapes as in :func:`from_arrays`.

    Args:
      path: the file; its suffix (``.csv`` or ``.npz``, see :data:`FILE_SUFFIXES`) picks the reader.
      target: CSV only, and required there: the name of the label / target column.
      **options: :func:`from_arrays` keyword arguments (``task``, ``val_fraction``, ``test_fraction``,
        ``seed``, ``standardize``, ``name``, ...); ``name`` defaults to the file's stem.

    Returns:
      A :class:`Dataset`, as :func:`from_arrays` returns it.

    Raises:
      DataError: each in one line naming the file: no such file, an unsupported suffix (lists the supported
        ones), a CSV without ``target`` or without that column (lists the columns), a non-numeric column
        (names it, shows the first bad value and its row), missing / NaN / Inf values (count and
        columns), an ``.npz`` without ``x`` / ``y`` or with other arrays, ``target`` for an ``.npz``, an
        array also passed as an option, and everything :func:`from_arrays` rejects.
      ValueError: a bad :func:`from_arrays` option.
      TypeError: an unknown keyword argument.

    Example::

        >>> ds = load_file("patients.csv", target="diagnosis", seed=0)   # doctest: +SKIP
        >>> ds.name, ds.task                                               # doctest: +SKIP
        ('patients', 'binary')
    """
    unknown = sorted(set(options) - set(from_arrays.__kwdefaults__))
    if unknown:
        raise TypeError(f"load_file() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
                        f"valid: target, {', '.join(from_arrays.__kwdefaults__)}")
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise DataError(f"unsupported file type {path.suffix or '(no suffix)'!r}; supported: {FILE_HELP}",
                        source=path)
    if not path.exists():
        raise DataError("no such file", source=path)
    if not path.is_file():
        raise DataError("not a file", source=path)
    if suffix == ".npz":
        if target is not None:
            raise DataError(f"target={target!r} applies to CSV files only; an .npz names its arrays x and y",
                            source=path)
        arrays = read_npz(path)
    else:
        arrays = read_csv(path, target, options.get("task"))
    both = [k for k in arrays if options.get(k) is not None]
    if both:
        verb = "is" if len(both) == 1 else "are"
        raise DataError(f"{', '.join(both)} {verb} both in the file and passed as options", source=path,
                        column=both[0])
    opts = {"task": None, "val_fraction": 0.2, "test_fraction": 0.2, "seed": 0, "standardize": True,
            "name": path.stem, **options}
    arrays.update({k: opts.pop(k) for k in NPZ_ARRAYS if k in opts})
    y_name = f"column {target!r}" if suffix == ".csv" else "y"
    try:
        return _from_arrays(arrays, y_name=y_name, **opts)
    except DataError as e:
        if e.source is not None:
            raise
        column = target if suffix == ".csv" and e.column == "y" else e.column  # a CSV's y is its target column
        raise DataError(e.reason, source=path, column=column, row=e.row) from None
