"""Read back what was trained: :func:`load` a results directory into a :class:`Saved` run that predicts.

A results directory of ``jaxnets sweep CONFIG --out DIR`` (or of ``jaxnets.search(..., out=DIR)``) holds one
parameters file per unit (``DIR/params/<key>.safetensors``, checked against its unit file); one written by
:meth:`jaxnets.result.Result.save` holds ``DIR/params/result.safetensors``. Each file carries its variants'
rows and the data set's shapes and standardization (:mod:`jaxnets.paramfile`), so :meth:`Saved.predict` on
raw inputs gives what :meth:`jaxnets.result.Result.predict` gave in the process that trained them, without
the data set. A damaged file is reported with a :class:`~jaxnets.paramfile.CorruptParamsWarning` and its
variants' parameters are unavailable (:class:`ParamsUnavailableError`), never a crash.

Example::

    >>> import jaxnets
    >>> run = jaxnets.load("runs/digits")                      # doctest: +SKIP
    >>> run.predict(3, x_raw).shape                            # doctest: +SKIP
    (5, 10)
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets import architectures, paramfile, store
from jaxnets import variants as variants_lib
from jaxnets.data import Dataset
from jaxnets.engine.options import tuning_for
from jaxnets.engine.programs import Program
from jaxnets.result import predict_groups, predict_one
from jaxnets.standardize import DataInfo

__all__ = ["FactoryNeededError", "ParamsUnavailableError", "Saved", "load", "nnx_state"]


class ParamsUnavailableError(LookupError):
    """A variant's parameters cannot be had from a saved run (its file is damaged or missing, or it was saved
    without parameters).

    Attributes:
      variant: The variant's id.
      reason: Why, in a few words.
    """

    def __init__(self, variant: int, reason: str):
        self.variant, self.reason = int(variant), reason
        super().__init__(f"variant {self.variant}: its parameters are unavailable ({reason})")


class FactoryNeededError(TypeError):
    """A saved run trained your own model: predicting needs that factory, ``jaxnets.load(DIR, model=factory)``.

    Attributes:
      factory: The factory's name as it was saved.
    """

    def __init__(self, factory: str):
        self.factory = factory
        super().__init__(f"these variants were trained with your own model factory {factory!r}: pass it again, "
                         f"jaxnets.load(DIR, model={factory.rsplit('.', 1)[-1]})")


@dataclasses.dataclass
class SavedGroupView:
    """One static group of a saved run, shaped like a :class:`jaxnets.result.GroupResult` for prediction."""

    indices: np.ndarray
    rows: list[dict[str, Any]]
    params: Any
    model_state: Any
    saved: paramfile.SavedGroup
    info: DataInfo
    model: Callable[..., Any] | None

    @property
    def mixed(self) -> bool:
        """Whether the group trained built-in models of several ``hidden`` lists in one padded program
        (:mod:`jaxnets.architectures`): its saved parameters are then the padded ones."""
        return self.saved.custom is None and len({tuple(r["hidden"]) for r in self.rows}) > 1

    @functools.cached_property
    def program(self) -> Program:
        """The group's :class:`jaxnets.engine.Program`, built from its rows and the data set's shapes."""
        if self.saved.custom is not None and self.model is None:
            raise FactoryNeededError(self.saved.custom)
        rows = [_tuples(r, self.saved.extra_keys) for r in self.rows]
        groups = variants_lib.group(rows, self.saved.extra_keys, mix=self.mixed)
        prog = Program(groups[0], _skeleton(self.info), model=self.model if self.saved.custom else None,
                       tuning=tuning_for(jax.devices()[0].platform))
        if self.saved.nnx:
            self.model_state = nnx_state(prog, self.model_state, len(self.indices))
        return prog


def _tuples(row: dict[str, Any], extra: dict[str, str]) -> dict[str, Any]:
    """A row read from JSON with its lists back as tuples (sizes, static user keys: hashable again)."""
    tup = lambda v: tuple(tup(x) for x in v) if isinstance(v, list) else v  # noqa: E731
    return {k: tup(v) if k in ("hidden", "dense") or extra.get(k) == "static" else v for k, v in row.items()}


def _skeleton(info: DataInfo) -> Dataset:
    """A one-example data set of ``info``'s shapes (zeros): what a :class:`Program` needs to predict."""
    x = np.zeros((1, *info.input_shape), np.float32)
    y = np.zeros((1, *info.label_shape), info.label_dtype)
    return Dataset(name=info.name, x_train=x, y_train=y, x_val=x, y_val=y, x_test=x, y_test=y, task=info.task,
                   n_classes=info.n_classes, output_dim=info.output_dim, sequence_output=info.sequence_output,
                   default_loss=info.default_loss, x_mean=info.x_mean, x_std=info.x_std, y_mean=info.y_mean,
                   y_std=info.y_std)


def nnx_state(prog: Program, pure: Any, n: int) -> Any:
    """An NNX model's [n]-stacked state from its saved pure dict (rng keys from a fresh init: unused when
    predicting)."""
    from flax import nnx

    hp = {k: v[0] for k, v in prog.stack(prog.rows[:1]).items()}
    _, template = prog.init_params(hp)
    state = jax.tree.map(lambda v: np.broadcast_to(v, (n, *np.shape(v))) if not jax.dtypes.issubdtype(
        v.dtype, jax.dtypes.prng_key) else jnp.stack([v] * n), template)
    merged = nnx.to_pure_dict(state)

    def fill(dst: dict, src: dict) -> None:
        for k, v in src.items():
            fill(dst[k], v) if isinstance(v, dict) else dst.__setitem__(k, v)

    fill(merged, pure)
    nnx.replace_by_pure_dict(state, merged)
    return state


class Saved:
    """A saved run, read back by :func:`load`: each variant's row and parameters, and predictions.

    Indexed by variant id (the rows of ``results.csv``, or of the saved :class:`jaxnets.result.Result`).

    Attributes:
      rows: [V] each variant's normalized row (``None`` where its parameters are unavailable).
      info: the data set's shapes and standardization (:class:`jaxnets.standardize.DataInfo`); ``None`` when
        no parameters file could be read.
      unavailable: ``{variant id: reason}`` for variants whose parameters cannot be had.
      files: the parameters files read.
    """

    def __init__(self, groups: list[SavedGroupView], n: int, unavailable: dict[int, str], files: list[Path],
                 damaged: str | None = None):
        self.groups, self.unavailable, self.files, self._damaged = groups, unavailable, files, damaged
        self.rows: list[dict[str, Any] | None] = [None] * n
        self.group_of = np.full(n, -1, np.int64)
        self._pos = np.full(n, -1, np.int64)
        for gi, g in enumerate(groups):
            for j, (i, row) in enumerate(zip(g.indices, g.rows, strict=True)):
                self.rows[i], self.group_of[i], self._pos[i] = row, gi, j
        self.info = groups[0].info if groups else None

    def __len__(self) -> int:
        return len(self.rows)

    def _locate(self, i: int) -> tuple[SavedGroupView, int]:
        if not 0 <= i < len(self) and self._damaged is not None:
            raise ParamsUnavailableError(i, self._damaged)
        if not 0 <= i < len(self):
            raise IndexError(f"variant {i} is out of range: the run has {len(self)} variants")
        if self.group_of[i] < 0:
            raise ParamsUnavailableError(i, self.unavailable.get(i, "not saved"))
        return self.groups[self.group_of[i]], int(self._pos[i])

    def params(self, i: int) -> Any:
        """Variant ``i``'s parameters (nested dicts of arrays, without the variant axis).

        Raises:
          ParamsUnavailableError: its file is damaged or missing, or it was saved without parameters.
        """
        g, j = self._locate(i)
        params = jax.tree.map(lambda a: a[j], g.params)
        if g.mixed:  # the variant's own network, sliced from the padded one
            return architectures.slice_params(g.rows[j]["kind"], params, g.rows[j]["hidden"], sorted(params))
        return params

    def model_state(self, i: int) -> Any:
        """Variant ``i``'s other model collections (e.g. ``{"batch_stats": ...}``; ``{}``)."""
        g, j = self._locate(i)
        _ = g.program  # an NNX state is rebuilt with the program
        return jax.tree.map(lambda a: a[j], g.model_state) if g.model_state else {}

    def predict(self, i: int, x: Any, *, standardized: bool = False) -> np.ndarray:
        """Variant ``i``'s outputs on RAW inputs ``x`` [B, ...], as :meth:`jaxnets.result.Result.predict`:
        [B, ...outputs].

        Raises:
          ParamsUnavailableError: as :meth:`params`.
          FactoryNeededError: it was trained with your own model and :func:`load` was not given it.
          jaxnets.standardize.InputShapeError: ``x`` is not [B, *input_shape].
        """
        g, j = self._locate(i)
        params = jax.tree.map(lambda a: a[j], g.params)  # as its program holds them (padded where mixed)
        return predict_one(g, j, params, self.model_state(i), x, standardized)

    def predict_all(self, x: Any, *, standardized: bool = False) -> np.ndarray:
        """Every variant's outputs on RAW inputs ``x`` [B, ...]: [V, B, ...outputs].

        Raises:
          ParamsUnavailableError: a variant's parameters are unavailable (the first one is named).
        """
        missing = np.flatnonzero(self.group_of < 0)
        if len(missing):
            i = int(missing[0])
            raise ParamsUnavailableError(i, self.unavailable.get(i, "not saved"))
        return predict_groups(self.groups, len(self), x, standardized)


def _views(trained: paramfile.Trained, model: Callable[..., Any] | None) -> list[SavedGroupView]:
    return [SavedGroupView(np.asarray(g.variant, np.int64), g.rows, g.params, g.model_state, g, trained.info, model)
            for g in trained.groups]


def _from_units(out: Path, model: Callable[..., Any] | None) -> tuple[list, dict[int, str], list[Path], int]:
    """The groups of every intact unit with parameters; the variants of the others, with the reason."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", store.CorruptUnitWarning)
        units = store.load_units(out, params=True)
    for w in caught:
        if isinstance(w.message, store.CorruptUnitWarning):
            warnings.warn(paramfile.CorruptParamsWarning(w.message.path, w.message.reason), stacklevel=3)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    groups, unavailable, files = [], {}, []
    for key, res in units.items():
        if res.params is None:
            unavailable |= {int(i): f"unit {key} was saved without parameters" for i in res.variant}
            continue
        groups += _views(res.params, model)
        files.append(store.params_path(out, key))
    n = max([int(g.indices.max()) + 1 for g in groups] + [int(i) + 1 for i in unavailable] + [0])
    try:
        n = max(n, len(store.read_results(out)[0]))
    except Exception:  # noqa: BLE001 - no (intact) results table: the units say how many variants there are
        pass
    damaged = "its unit or parameters file is damaged or missing (see the warnings)"
    known = {int(i) for g in groups for i in g.indices} | set(unavailable)
    unavailable |= {i: damaged for i in range(n) if i not in known}
    return groups, unavailable, files, n


def load(out: str | Path, *, model: Callable[..., Any] | None = None) -> Saved:
    """Load a saved run: the results directory of ``jaxnets sweep`` / ``jaxnets.search(out=...)``, or a folder
    written by :meth:`jaxnets.result.Result.save`.

    Args:
      out: the directory.
      model: the model factory the variants were trained with, when it was your own (the same function;
        ``None``: the built-in models). Parameters are available without it; predictions need it.

    Returns:
      a :class:`Saved` run: ``params(i)``, ``model_state(i)``, ``predict(i, x_raw)``, ``predict_all(x_raw)``,
      ``rows``, ``info``.

    Raises:
      FileNotFoundError: ``out`` holds no saved run (no ``units`` folder and no ``params/result.safetensors``).

    Warns:
      jaxnets.paramfile.CorruptParamsWarning: per damaged file; its variants' parameters are unavailable.
    """
    out = Path(out)
    single = out / store.PARAMS / f"result{paramfile.SUFFIX}"
    if (out / store.UNITS).is_dir():
        groups, unavailable, files, n = _from_units(out, model)
        return Saved(groups, n, unavailable, files)
    if not single.exists():
        raise FileNotFoundError(f"{str(out)!r} holds no saved run (no {store.UNITS}/ folder of a sweep, no "
                                f"{store.PARAMS}/result{paramfile.SUFFIX} of Result.save)")
    try:
        trained, _ = paramfile.read(single)
    except paramfile.CorruptParamsError as e:
        warnings.warn(paramfile.CorruptParamsWarning(e.path, e.reason), stacklevel=2)
        return Saved([], 0, {}, [], damaged=f"{e.path} is damaged: {e.reason}")
    groups = _views(trained, model)
    return Saved(groups, sum(len(g.indices) for g in groups), {}, [single])
