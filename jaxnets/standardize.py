"""A data set's standardization, and what predictions on raw inputs need of a data set without its arrays.

:func:`fit` standardizes features with the training split's per-feature mean and std (what
:func:`jaxnets.data.load` and :func:`jaxnets.data.from_arrays` do) and returns the statistics, which the
:class:`jaxnets.data.Dataset` keeps (``x_mean``, ``x_std``). :class:`DataInfo` is a data set's shape, task and
scaling without the arrays: what :meth:`jaxnets.result.Result.predict` applies to raw inputs (and to scaled
regression outputs), and what a saved run keeps (:mod:`jaxnets.saving`).

Example::

    >>> import numpy as np
    >>> (z,), mean, std = fit(np.array([[1.0, 5.0], [3.0, 5.0]]))
    >>> z.tolist(), mean.tolist(), std.tolist()
    ([[-1.0, 0.0], [1.0, 0.0]], [2.0, 5.0], [1.0, 1.0])
    >>> apply(np.array([[2.0, 6.0]]), mean, std).tolist()
    [[0.0, 1.0]]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["DataInfo", "InputShapeError", "apply", "fit"]


def fit(train: np.ndarray, *others: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Per-feature ``(x - mean) / std`` with the statistics of ``train`` (std 0 -> 1), as float32.

    Args:
      train: ``[N, *shape]`` training features; every one of the ``prod(shape)`` features gets its own
        mean and std.
      *others: more ``[M, *shape]`` arrays standardized with ``train``'s statistics.

    Returns:
      ``(arrays, mean, std)``: ``train`` and ``others`` standardized (float32, same shapes), and the
      statistics, float64 ``[*shape]`` each.
    """
    flat = train.reshape(len(train), -1).astype(np.float64)
    mean = flat.mean(axis=0)
    std = flat.std(axis=0)
    std[std == 0] = 1.0
    shape = train.shape[1:]
    return [apply(x, mean, std) for x in (train, *others)], mean.reshape(shape), std.reshape(shape)


def apply(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(x - mean) / std`` per feature, computed in float64 and returned as float32 (as :func:`fit` does).

    Args:
      x: ``[B, *shape]`` raw features.
      mean: ``[*shape]`` (or ``[prod(shape)]``) per-feature means.
      std: per-feature standard deviations, shaped like ``mean``.

    Returns:
      float32 ``[B, *shape]``.
    """
    x = np.asarray(x)
    z = (x.reshape(len(x), -1).astype(np.float64) - np.reshape(mean, -1)) / np.reshape(std, -1)
    return z.astype(np.float32).reshape(x.shape)


class InputShapeError(ValueError):
    """Inputs given to a prediction do not have the data set's example shape.

    Attributes:
      expected: the shape of one example, ``input_shape``.
      got: the shape of the array given.
    """

    def __init__(self, expected: tuple[int, ...], got: tuple[int, ...]):
        self.expected, self.got = tuple(expected), tuple(got)
        super().__init__(f"x has shape {list(self.got)}; predictions take [B, {', '.join(map(str, self.expected))}] "
                         "(a batch of examples shaped like the data set's)")


_FIELDS = ("name", "task", "n_classes", "output_dim", "sequence_output", "default_loss", "input_shape",
           "label_shape", "label_dtype")
_ARRAYS = ("x_mean", "x_std", "y_mean", "y_std")


@dataclasses.dataclass(frozen=True, eq=False)
class DataInfo:
    """A data set without its arrays: shapes, task and scaling (see :class:`jaxnets.data.Dataset`).

    Attributes:
      name, task, n_classes, output_dim, sequence_output, default_loss: as the data set's.
      input_shape: one example's shape (``x_train.shape[1:]``).
      label_shape: one label's shape (``y_train.shape[1:]``: ``()`` for class labels, ``(D,)`` for targets).
      label_dtype: the labels' dtype name (``"int32"`` / ``"float32"``).
      x_mean, x_std: float64 ``[*input_shape]``, the training split's statistics the features were
        standardized with; ``None`` when they were not.
      y_mean, y_std: float64 ``[output_dim]`` when regression targets were scaled (outputs are unscaled with
        them); ``None`` otherwise.
    """

    name: str
    task: str
    n_classes: int
    output_dim: int
    sequence_output: bool
    default_loss: str
    input_shape: tuple[int, ...]
    label_shape: tuple[int, ...]
    label_dtype: str
    x_mean: np.ndarray | None = None
    x_std: np.ndarray | None = None
    y_mean: np.ndarray | None = None
    y_std: np.ndarray | None = None

    @classmethod
    def of(cls, ds: Any) -> DataInfo:
        """The info of a :class:`jaxnets.data.Dataset` (any object with its attributes)."""
        get = lambda k: None if getattr(ds, k, None) is None else np.asarray(getattr(ds, k), np.float64)  # noqa: E731
        return cls(name=ds.name, task=ds.task, n_classes=int(ds.n_classes), output_dim=int(ds.output_dim),
                   sequence_output=bool(ds.sequence_output), default_loss=ds.default_loss,
                   input_shape=tuple(int(d) for d in ds.x_train.shape[1:]),
                   label_shape=tuple(int(d) for d in ds.y_train.shape[1:]), label_dtype=str(ds.y_train.dtype),
                   **{k: get(k) for k in _ARRAYS})

    def inputs(self, x: Any, *, standardized: bool = False) -> np.ndarray:
        """Raw inputs ``x`` [B, *input_shape] as the model was trained on them: standardized with
        ``x_mean`` / ``x_std`` (unless ``standardized``, or the data set was not), float32.

        Raises:
          InputShapeError: ``x`` is not [B, *input_shape].
        """
        x = np.asarray(x)
        if x.ndim < 1 or tuple(x.shape[1:]) != self.input_shape:
            raise InputShapeError(self.input_shape, x.shape)
        if standardized or self.x_mean is None:
            return np.asarray(x, np.float32)
        return apply(x, self.x_mean, self.x_std)

    def outputs(self, y: np.ndarray) -> np.ndarray:
        """The model's outputs ``y`` [..., output_dim] in the targets' units (unscaled with ``y_mean`` /
        ``y_std`` when regression targets were scaled; unchanged otherwise)."""
        if self.y_mean is None:
            return y
        return (np.asarray(y, np.float64) * self.y_std + self.y_mean).astype(np.float32)

    def to_json(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(fields, arrays)``: the JSON-able fields and the scaling arrays (only those that are set)."""
        fields = {k: (list(v) if isinstance(v, tuple) else v) for k in _FIELDS for v in [getattr(self, k)]}
        return fields, {k: getattr(self, k) for k in _ARRAYS if getattr(self, k) is not None}

    @classmethod
    def from_json(cls, fields: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> DataInfo:
        """The inverse of :meth:`to_json`.

        Raises:
          KeyError, TypeError, ValueError: ``fields`` lacks a field or holds one of the wrong type.
        """
        kw = {k: fields[k] for k in _FIELDS}
        kw["input_shape"], kw["label_shape"] = tuple(kw["input_shape"]), tuple(kw["label_shape"])
        if not all(type(d) is int for d in kw["input_shape"] + kw["label_shape"]):
            raise TypeError("input_shape and label_shape must hold integers")
        info = cls(**kw, **{k: np.asarray(arrays[k], np.float64) for k in _ARRAYS if k in arrays})
        if info.x_mean is not None and (info.x_mean.shape != info.input_shape or info.x_std is None
                                        or info.x_std.shape != info.input_shape):
            raise ValueError(f"x_mean / x_std do not have the input shape {list(info.input_shape)}")
        return info
