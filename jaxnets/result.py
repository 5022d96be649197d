"""What a training run returns: stacked parameters, metric histories, per-variant summaries.

Arrays are indexed by variant in the order the variants were given. Histories have shape [V, E] (scalar
metrics) or [V, E, L] (per-layer metrics, input side first); where groups differ in their number of
evaluations or layers, the shorter ones are padded with NaN. Evaluations after a variant stopped or
diverged repeat its last values; ``status`` says which.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxnets import architectures, diagnostics

#: Status of a variant after training; a status's code inside the compiled program is its position here.
#: ``pruned``: stopped by a population policy (successive halving, :mod:`jaxnets.population`).
STATUS_NAMES: tuple[str, ...] = ("ok", "diverged", "early_stopped", "pruned")

#: Per-evaluation metrics of one variant that are scalars: histories [V, E].
#: ``learning_rate``: the rate in effect at the evaluation's step (the variant's ``learning_rate`` times its
#: schedule, :mod:`jaxnets.schedules`; with PBT, after its perturbations).
SCALAR_METRICS: tuple[str, ...] = ("train_loss", "val_loss", "val_accuracy", "learning_rate")
#: Per-evaluation metrics with a layer axis: histories [V, E, L] (``grad_norm``: hidden layers then the output
#: layer; the activation statistics: hidden layers).
LAYER_METRICS: tuple[str, ...] = ("grad_norm",) + diagnostics.STATS
#: Every metric recorded at each evaluation (the keys of :attr:`Result.history`).
METRICS: tuple[str, ...] = SCALAR_METRICS + LAYER_METRICS

#: Metrics of the test split, computed once at the end for every variant (never used for selection or early
#: stopping); NaN where the data set has no test split (accuracy: where the loss has none).
TEST_METRICS: tuple[str, ...] = ("test_loss", "test_accuracy")

#: Per-variant summary columns (besides the variant id and its hyperparameters), as in ``results.csv``.
COLUMNS: tuple[str, ...] = (
    "status", "stopped_step", "final_train_loss", "final_val_loss", "best_val_loss", "val_accuracy",
    "test_loss", "test_accuracy", "group_wall_s",
)


@dataclasses.dataclass
class GroupResult:
    """One static group's results; ``indices`` place its rows among all variants.

    ``params`` is the group's parameter pytree with a leading [V_group] axis; ``history`` maps metric name to
    [V_group, E] or [V_group, E, L]; ``compile_s`` is the time spent compiling, ``run_s`` the time spent
    running the compiled programs (init, training steps and evaluations), ``wall_s`` the whole group's
    time (compilation and data transfer included); ``n_blocks`` the number of blocks of variants
    the group ran as (one after another, see :class:`jaxnets.engine.Options`); ``model_steps`` the training
    steps computed, summed over variants (a chunk of ``eval_every`` steps counts for each real variant of its
    block; pruned variants stop counting); ``program`` the group's :class:`jaxnets.engine.Program`; ``loop``
    how its segments' steps ran: ``"scan"`` (inside the compiled program) or ``"host"`` (a host loop over one
    compiled step, see :func:`jaxnets.engine.plan.loop_strategy`).
    """

    spec: Any
    indices: np.ndarray
    rows: list[dict[str, Any]]
    params: Any
    status: np.ndarray
    stopped_step: np.ndarray
    best_val_loss: np.ndarray
    history: dict[str, np.ndarray]
    eval_steps: np.ndarray
    compile_s: float
    run_s: float
    wall_s: float
    n_blocks: int
    model_state: Any = None
    test: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    layer_names: list[str] = dataclasses.field(default_factory=list)
    program: Any = None
    model_steps: int = 0
    loop: str = "scan"


#: Row keys that describe the built-in models' structure: they mean nothing for your own model.
BUILTIN_STRUCTURE: tuple[str, ...] = ("hidden", "dense", "cell", "norm")


def callable_name(fn: Any) -> str:
    """A callable's name for a table: its ``__qualname__`` (``<lambda>`` for a lambda)."""
    fn = getattr(fn, "func", fn)  # functools.partial: the function's name
    return getattr(fn, "__qualname__", None) or type(fn).__qualname__


def trained_as(row: dict[str, Any], program: Any) -> dict[str, Any]:
    """``row`` as it was trained by ``program``: with your own model, ``kind`` is ``custom:<factory name>`` and
    the built-in structure keys (:data:`BUILTIN_STRUCTURE`) are ``None``; with your own loss, ``loss`` is its
    name; with your own optimizer, ``optimizer`` is ``custom:<factory name>`` — never a built-in default that
    was not used."""
    if program is None:
        return row
    row = marked(row, program)
    if getattr(program, "custom", False):
        row.update(dict.fromkeys(BUILTIN_STRUCTURE))
    if getattr(program, "user_loss", None) is not None:
        row["loss"] = callable_name(program.user_loss)
    return row


def marked(row: dict[str, Any], program: Any) -> dict[str, Any]:
    """``row`` with ``kind`` / ``optimizer`` = ``custom:<factory name>`` where ``program`` trained it with your
    own model / optimizer: what :attr:`Result.rows` hold, so building the variant again asks for the factory
    (``engine.model(row, ds)`` on such a row is an error naming the fix, not the built-in MLP)."""
    if program is None:
        return row
    row = dict(row)
    if getattr(program, "custom", False):
        row["kind"] = f"custom:{callable_name(program.adapter.factory)}"
    if getattr(program, "user_optimizer", None) is not None:
        row["optimizer"] = f"custom:{callable_name(program.user_optimizer)}"
    return row


def _place(parts: list[tuple[np.ndarray, np.ndarray]], n: int) -> np.ndarray:
    """Scatter per-group arrays [v_g, ...] into one [n, ...] float64 array, NaN-padding trailing axes (the one
    NaN-padding rule of results: histories of groups with fewer evaluations or layers)."""
    shape = tuple(max(a.shape[d] for _, a in parts) for d in range(1, parts[0][1].ndim))
    out = np.full((n, *shape), np.nan, np.float64)
    for idx, a in parts:
        out[(idx, *(slice(0, s) for s in a.shape[1:]))] = a
    return out


def concat_padded(parts: list[np.ndarray]) -> np.ndarray:
    """Concatenate [n_i, ...] arrays along axis 0 into float64, NaN-padding the trailing axes to the largest."""
    ends = np.cumsum([len(a) for a in parts])
    return _place([(np.arange(end - len(a), end), np.asarray(a)) for a, end in zip(parts, ends, strict=True)],
                  int(ends[-1]) if len(ends) else 0)


@dataclasses.dataclass
class Result:
    """All variants' results. Build with :meth:`from_groups`; see the module docstring for shapes."""

    groups: list[GroupResult]
    rows: list[dict[str, Any]]
    group_of: np.ndarray  # [V] group index of each variant
    status: np.ndarray  # [V] str
    stopped_step: np.ndarray  # [V] int
    best_val_loss: np.ndarray  # [V]
    history: dict[str, np.ndarray]  # metric -> [V, E] / [V, E, L]
    eval_steps: np.ndarray  # [E] of the group with the most evaluations
    eval_step: np.ndarray  # [V, E] each variant's own evaluation steps (NaN-padded)

    @classmethod
    def from_groups(cls, groups: list[GroupResult], n_variants: int) -> Result:
        """Assemble group results into one result in the callers' variant order."""
        rows: list[dict[str, Any]] = [{}] * n_variants
        group_of = np.zeros(n_variants, np.int64)
        for gi, g in enumerate(groups):
            for i, row in zip(g.indices, g.rows, strict=True):
                rows[i] = marked(row, g.program)
            group_of[g.indices] = gi
        place = lambda get: _place([(g.indices, np.asarray(get(g))) for g in groups], n_variants)  # noqa: E731
        status_code = place(lambda g: g.status).astype(int)
        longest = max(groups, key=lambda g: len(g.eval_steps))
        return cls(
            groups=groups,
            rows=rows,
            group_of=group_of,
            status=np.array([STATUS_NAMES[c] for c in status_code]),
            stopped_step=place(lambda g: g.stopped_step).astype(int),
            best_val_loss=place(lambda g: g.best_val_loss),
            history={k: place(lambda g, k=k: g.history[k]) for k in groups[0].history},
            eval_steps=np.asarray(longest.eval_steps),
            eval_step=place(lambda g: np.broadcast_to(g.eval_steps, (len(g.indices), len(g.eval_steps)))),
        )

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def model_steps(self) -> int:
        """Training steps computed, summed over every variant and group (see :class:`GroupResult`)."""
        return int(sum(g.model_steps for g in self.groups))

    def params(self, i: int) -> Any:
        """Parameters of variant ``i`` (a pytree without the variant axis): its own network's, so that
        ``engine.model(result.rows[i], ds).apply({"params": result.params(i)}, x)`` gives its outputs. A
        variant trained in a group that mixed architectures (:mod:`jaxnets.architectures`) gets its
        parameters sliced from the padded ones (:func:`jaxnets.architectures.slice_params`)."""
        g, j = self._locate(i)
        params = jax.tree.map(lambda a: a[j], g.params)
        if getattr(g.spec, "mixed", False):
            return architectures.slice_params(g.spec.kind, params, g.rows[j]["hidden"], g.layer_names)
        return params

    def final(self, metric: str) -> np.ndarray:
        """The last evaluation's value of a scalar metric, [V]."""
        h = self.history[metric]
        last = np.array([len(self.groups[gi].eval_steps) - 1 for gi in self.group_of])
        return h[np.arange(len(self)), last]

    def _place_test(self, key: str) -> np.ndarray:
        out = np.full(len(self), np.nan)
        for g in self.groups:
            if key in g.test:
                out[g.indices] = g.test[key]
        return out

    def _locate(self, i: int) -> tuple[GroupResult, int]:
        g = self.groups[self.group_of[i]]
        return g, int(np.flatnonzero(g.indices == i)[0])

    def model_state(self, i: int) -> Any:
        """The model's non-parameter collections of variant ``i`` (e.g. ``{"batch_stats": ...}``; ``{}``)."""
        g, j = self._locate(i)
        return jax.tree.map(lambda a: a[j], g.model_state) if g.model_state is not None else {}

    def layer_names(self, i: int = 0) -> list[str]:
        """The entries of variant ``i``'s ``grad_norm`` history, input side first (parameter-tree paths)."""
        g, j = self._locate(i)
        if getattr(g.spec, "mixed", False):
            return architectures.layer_names(g.rows[j]["hidden"], g.layer_names, g.spec.kind)
        return list(g.layer_names)

    def predict(self, i: int, x: Any, *, standardized: bool = False) -> np.ndarray:
        """Variant ``i``'s outputs (logits for the classification losses) on RAW inputs ``x`` [B, ...], in
        evaluation mode (no dropout; BatchNorm's running statistics): [B, ...outputs].

        ``x`` is standardized with the data set's statistics first (``ds.x_mean``, ``ds.x_std``: what the model
        was trained on); ``standardized=True`` for inputs already standardized (e.g. ``ds.x_test``). Scaled
        regression targets are unscaled on the way out.

        Raises:
          jaxnets.standardize.InputShapeError: ``x`` is not [B, *input_shape].
        """
        g, j = self._locate(i)
        params = jax.tree.map(lambda a: a[j], g.params)  # as its program holds them (padded where mixed)
        return predict_one(g, j, params, self.model_state(i), x, standardized)

    def predict_all(self, x: Any, *, standardized: bool = False) -> np.ndarray:
        """Every variant's outputs on RAW inputs ``x`` [B, ...] (as :meth:`predict`), one vectorized call per
        static group: [V, B, ...]."""
        return predict_groups(self.groups, len(self), x, standardized)

    def save(self, out: str | Path) -> Path:
        """Save every variant's trained parameters and model state, its row and the data set's shapes and
        standardization to ``out/params/result.safetensors`` (atomic, checksummed: :mod:`jaxnets.paramfile`),
        so that ``jaxnets.load(out)`` predicts in another process.

        Returns:
          the file's path.

        Raises:
          jaxnets.atomic.StorageError: the machine refused the write (an ``OSError``).
          ValueError, TypeError: a parameter tree or row that a file cannot hold.
          ImportError: safetensors is not installed.
        """
        from jaxnets import paramfile
        from jaxnets.atomic import atomic_write

        data, _ = paramfile.encode(paramfile.of_groups("result", self.groups, np.arange(len(self))))
        return atomic_write(Path(out) / "params" / f"result{paramfile.SUFFIX}", lambda f: f.write(data))

    def group_wall_s(self) -> np.ndarray:
        """Wall time of each variant's group, [V]."""
        return np.array([self.groups[gi].wall_s for gi in self.group_of])

    def columns(self) -> dict[str, np.ndarray]:
        """The :data:`COLUMNS` of every variant as [V] arrays: ``status`` str, ``stopped_step`` int, the rest
        float (``val_accuracy`` NaN where the loss has no accuracy)."""
        final = {k: self.final(k) for k in SCALAR_METRICS}
        cols = {
            "status": self.status.astype(str),
            "stopped_step": self.stopped_step.astype(np.int64),
            "final_train_loss": final["train_loss"],
            "final_val_loss": final["val_loss"],
            "best_val_loss": np.asarray(self.best_val_loss, np.float64),
            "val_accuracy": final["val_accuracy"],
            **{k: self._place_test(k) for k in TEST_METRICS},
            "group_wall_s": self.group_wall_s(),
        }
        assert tuple(cols) == COLUMNS
        return cols

    def summary(self) -> list[dict[str, Any]]:
        """One dict per variant: ``variant`` (its index), its hyperparameters as trained (:func:`trained_as`),
        :data:`COLUMNS` (``val_accuracy`` ``None`` where the loss has no accuracy) and ``group`` (its static
        group)."""
        cols = self.columns()
        out = []
        for i, row in enumerate(self.rows):
            entry: dict[str, Any] = {"variant": i}
            row = trained_as(row, self.groups[int(self.group_of[i])].program)
            entry.update({k: (list(v) if isinstance(v, tuple) else v) for k, v in row.items()})
            for k, values in cols.items():
                v = values[i].item()
                entry[k] = None if isinstance(v, float) and np.isnan(v) and k.endswith("_accuracy") else v
            entry["group"] = int(self.group_of[i])
            out.append(entry)
        return out

    def to_dataframe(self):
        """A pandas DataFrame with one row per variant (needs pandas: ``pip install jaxnets[cli]``)."""
        import pandas as pd

        return pd.DataFrame(self.summary())


def predict_one(g: Any, j: int, params: Any, model_state: Any, x: Any, standardized: bool) -> np.ndarray:
    """Variant ``j`` of group ``g`` (``program`` and ``rows``) with ``params`` / ``model_state`` on raw ``x``
    [B, ...] (standardized with the program's data info unless ``standardized``): [B, ...outputs]."""
    prog = g.program
    hp = {k: v[j] for k, v in prog.stack(g.rows).items()}
    one, _ = prog.predict_fns
    x = prog.data_info.inputs(x, standardized=standardized)
    return prog.data_info.outputs(np.asarray(one(params, model_state if model_state is not None else {}, hp, x)))


def predict_groups(groups: Sequence[Any], n: int, x: Any, standardized: bool) -> np.ndarray:
    """Every variant's outputs on raw ``x`` [B, ...]: one vectorized call per group (``program``, ``rows``,
    ``params``, ``model_state``, ``indices``): [n, B, ...outputs]."""
    parts = []
    for g in groups:
        prog = g.program
        _, fn = prog.predict_fns
        state = g.model_state if g.model_state is not None else {}
        z = prog.data_info.inputs(x, standardized=standardized)
        parts.append((g.indices, prog.data_info.outputs(np.asarray(fn(g.params, state, prog.stack(g.rows), z)))))
    shapes = {p.shape[1:] for _, p in parts}
    if len(shapes) != 1:
        raise ValueError(f"the static groups' outputs differ in shape ({sorted(shapes)}); use predict(i, x)")
    out = np.empty((n, *parts[0][1].shape[1:]), parts[0][1].dtype)
    for idx, p in parts:
        out[np.asarray(idx)] = p
    return out


@dataclasses.dataclass
class UnitResult:
    """A trained unit of a sweep (:mod:`jaxnets.sweep`): per-variant columns (:data:`COLUMNS`) and histories.

    Attributes:
      key: the unit's key (:attr:`jaxnets.sweep.Unit.key`).
      fingerprint: the unit's fingerprint (:attr:`jaxnets.sweep.Unit.fingerprint`).
      variant: [n] int, the variants' ids.
      points: each variant's axis values (config keys).
      columns: ``columns[k]``: [n] arrays (``status`` str, ``stopped_step`` int, the rest float;
        ``val_accuracy`` NaN where the loss has no accuracy).
      history: ``history[m]``: [n, E] or [n, E, L] float (NaN-padded where the unit's static groups differ).
      eval_step: [n, E] float, the step of each evaluation of each variant (NaN where padded).
      group: [n] int, the static group within the unit.
      trained: the engine's :class:`Result` of the unit (rows in unit order) when it was trained in this
        process; ``None`` for a unit loaded from a results directory. Not saved, not compared.
      params: the unit's saved parameters (:class:`jaxnets.paramfile.Trained`) when read back with
        ``store.load_unit(path, params=True)``; ``None`` otherwise. Not compared.
    """

    key: str
    fingerprint: str
    variant: np.ndarray
    points: list[dict[str, Any]]
    columns: dict[str, np.ndarray]
    history: dict[str, np.ndarray]
    eval_step: np.ndarray
    group: np.ndarray
    trained: Any = dataclasses.field(default=None, compare=False, repr=False)
    params: Any = dataclasses.field(default=None, compare=False, repr=False)
