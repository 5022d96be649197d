"""Runs from Python: ``jaxnets.search``, the sweep command's planner with Python objects, and running a plan
into a results directory.

The same path as ``jaxnets sweep CONFIG --out DIR`` (:mod:`jaxnets.config` checks, :func:`jaxnets.sweep.plan`
plans and validates, :func:`jaxnets.sweep.run` trains unit by unit, :mod:`jaxnets.store` saves), but the data
set is a :class:`jaxnets.data.Dataset` (your own arrays: :func:`jaxnets.data.from_arrays`) and your model,
loss, metric and optimizer are Python callables. Example::

    import jaxnets
    from jaxnets import data

    ds = data.load("iris")
    result = jaxnets.search({"learning_rate": {"low": 1e-3, "high": 1e-1, "log": True},
                             "activation": ["tanh", "relu"]},
                            ds, method="random", trials=16, base={"hidden": [8], "steps": 200},
                            out="runs/iris")          # `jaxnets show runs/iris` reads it; a rerun resumes
    result.to_dataframe()

With ``out=DIR`` the directory is the CLI's (``config.toml``, ``units/``, ``results.csv``, ``history.npz``,
``plots/``), and ``DIR/config.toml`` records what Python objects were used in a ``[python]`` section (the data
set's name and a SHA-256 of its arrays, each callable's name and a hash of its code): a rerun with other
data or other code does not reuse the saved units.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxnets import config as config_lib
from jaxnets import data as data_lib
from jaxnets import variants as variants_lib
from jaxnets.result import Result, UnitResult

__all__ = ["search", "describe_callable", "describe_data", "to_toml", "run_search", "combine"]


def describe_callable(fn: Callable[..., Any]) -> str:
    """``module.qualname`` of ``fn`` and a short hash of its code (nested functions included), e.g.
    ``"__main__.<lambda> code:3f9a0c1d2e4b"``: what ``[python]`` records, so a rerun with changed code does not
    reuse units trained with the old one."""
    name = f"{getattr(fn, '__module__', None) or type(fn).__module__}." \
           f"{getattr(fn, '__qualname__', None) or type(fn).__qualname__}"
    code = getattr(fn, "__code__", None)
    if not isinstance(code, types.CodeType):
        return name

    def parts(c: types.CodeType) -> list[bytes]:
        out = [c.co_code, repr(c.co_names).encode()]
        for k in c.co_consts:
            out += parts(k) if isinstance(k, types.CodeType) else [repr(k).encode()]
        return out

    cells = []
    for cell in fn.__closure__ or ():
        try:
            cells.append(repr(cell.cell_contents).encode())
        except Exception:  # noqa: BLE001 - a closure value whose repr fails: its type name
            cells.append(type(cell.cell_contents).__name__.encode())
    digest = hashlib.sha256(b"\0".join(parts(code) + cells)).hexdigest()[:12]
    return f"{name} code:{digest}"


def describe_data(ds: data_lib.Dataset) -> str:
    """``"<name> sha256:<hex>"``: the data set's name and a hash of every split's arrays (shapes, dtypes,
    bytes), so a rerun on other data does not reuse saved units."""
    h = hashlib.sha256()
    for split in ("train", "val", "test"):
        for part in ("x", "y"):
            a = np.ascontiguousarray(getattr(ds, f"{part}_{split}"))
            h.update(f"{part}_{split}{a.shape}{a.dtype.str}".encode())
            h.update(a.tobytes())
    return f"{ds.name} sha256:{h.hexdigest()[:16]}"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        f = float(v)
        return "nan" if math.isnan(f) else ("inf" if f > 0 else "-inf") if math.isinf(f) else repr(f)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, Sequence):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"{v!r} ({type(v).__name__}) cannot be written to a config; use numbers, strings, booleans "
                    "and lists of them")


def to_toml(raw: Mapping[str, Any]) -> str:
    """A config as TOML text (top-level values, then one ``[section]`` per table; ``[sweep.axes]`` last)."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in raw.items() if not isinstance(v, Mapping)]
    for section, table in raw.items():
        if not isinstance(table, Mapping):
            continue
        lines += ["", f"[{section}]"]
        nested = {k: v for k, v in table.items() if isinstance(v, Mapping) and k == "axes"}
        lines += [f"{k} = {_toml_value(v)}" for k, v in table.items() if k not in nested]
        for name, sub in nested.items():
            lines += ["", f"[{section}.{name}]"] + [f"{k} = {_toml_value(v)}" for k, v in sub.items()]
    return "\n".join(lines) + "\n"


def _plain(v: Any) -> Any:
    """Tuples as lists (TOML has no tuples), NumPy scalars as Python numbers."""
    if isinstance(v, tuple | list):
        return [_plain(x) for x in v]
    if isinstance(v, Mapping):
        return {k: _plain(x) for k, x in v.items()}
    return v.item() if isinstance(v, np.generic) else v


def _extra_keys(space: Mapping[str, Any], base: Mapping[str, Any], given: Mapping[str, str] | None
                ) -> dict[str, str]:
    """Your own keys: the given declaration, plus every key of ``space`` / ``base`` that is not a jaxnets key
    (numbers: ``vmapped``; anything else: ``static``)."""
    out = dict(given or {})
    for key in [*base, *space]:
        if key in variants_lib.KEYS or key in out or key == "seed":
            continue
        values = space[key] if key in space else [base[key]]
        numeric = isinstance(values, Mapping) or all(
            isinstance(v, int | float | np.number) and not isinstance(v, bool) for v in values)
        out[key] = "vmapped" if numeric else "static"
    return out


def _raw_config(space, ds, method, base, trials, metric, goal, seed, extra, python, settings) -> dict[str, Any]:
    """The config dict a TOML file of this search would hold."""
    base = _plain(dict(base or {}))
    model = {k: v for k, v in base.items() if k in config_lib.MODEL_KEYS}
    train = {k: v for k, v in base.items() if k not in model}
    sweep: dict[str, Any] = {"method": method, "metric": metric, **_plain(dict(settings))}
    if goal is not None:
        sweep["goal"] = goal
    if trials is not None:
        sweep["trials"] = trials
    sweep["axes"] = {k: _plain(v) for k, v in space.items()}
    raw: dict[str, Any] = {"seed": seed, "data": {"name": ds.name}, "model": model, "train": train,
                           "sweep": sweep, "python": python}
    if extra:
        raw["keys"] = extra
    return raw


def search(space: Mapping[str, Any], data: data_lib.Dataset | str, *, method: str = "grid",
           base: Mapping[str, Any] | None = None, trials: int | None = None,
           model: Callable[..., Any] | None = None, loss: str | Callable[..., Any] | None = None,
           optimizer: Callable[..., Any] | None = None, metric: str = "val_loss", goal: str | None = None,
           seed: int = 0, out: str | Path | None = None, progress: bool = True,
           extra_keys: Mapping[str, str] | None = None, accuracy: Callable[..., Any] | None = None,
           force: bool = False, **settings: Any) -> Result:
    """Search ``space`` on ``data`` as ``jaxnets sweep`` does, with Python objects; return a :class:`Result`.

    Args:
      space: the swept keys, written like ``[sweep.axes]``: ``{key: [values]}`` (grid: every one; random /
        Bayesian: a choice) or ``{key: {"low": ..., "high": ..., "log": bool}}`` (random / Bayesian / ASHA /
        PBT). Keys: any variant key (:data:`jaxnets.variants.KEYS`), ``seed``, or your own (declared
        automatically: numbers are vmapped, anything else static; or give ``extra_keys``).
      data: a :class:`jaxnets.data.Dataset` (your arrays: :func:`jaxnets.data.from_arrays`) or a built-in name.
      method: ``grid`` | ``random`` | ``bayesian`` | ``asha`` | ``pbt``.
      base: the fixed values of every variant (what ``[model]`` / ``[train]`` hold), e.g. ``{"hidden": [64],
        "steps": 500}``.
      trials: random / Bayesian: the number of variants.
      model: your own model factory (:func:`jaxnets.engine.train`'s ``model``).
      loss: a loss name, or your own ``loss(outputs, labels) -> [B]``.
      optimizer: your own optimizer factory ``hp -> optax.GradientTransformation``.
      metric: the ranking metric (``val_loss``, ``best_val_loss``, ``train_loss``, ``val_accuracy``) that
        random / Bayesian search optimize and ASHA / PBT rank by.
      goal: ``"min"`` or ``"max"`` (default: ``max`` for ``val_accuracy``).
      seed: the search sampler's seed (random / Bayesian / PBT draws).
      out: a results directory, written as the CLI writes it (``jaxnets show DIR`` reads it; the same call
        again resumes, reusing every finished unit).
      progress: a progress bar on stderr.
      extra_keys: your own keys' kinds, ``{name: "vmapped" | "static"}`` (default: inferred).
      accuracy: with a loss callable, ``metric(outputs, labels) -> [B]`` reported as ``val_accuracy``.
      force: with ``out``, replace another search's results there instead of refusing.
      **settings: the ``[sweep]`` settings of the method: ``batch`` (bayesian), ``eta``, ``min_steps``,
        ``brackets`` (asha), ``interval``, ``fraction``, ``perturb``, ``resample`` (pbt).

    Returns:
      the :class:`Result` of every variant, in the order of ``results.csv`` (variant ids), with parameters.

    Raises:
      jaxnets.config.ConfigError: a bad space, setting or variant (naming it), before any compute.
      jaxnets.store.DirectoryError: ``out`` holds another search's results (``force=True`` replaces them).
    """
    from jaxnets import sweep

    ds = data_lib.load(data) if isinstance(data, str) else data
    if not isinstance(ds, data_lib.Dataset):
        raise TypeError(f"data must be a jaxnets.data.Dataset or a built-in name, got {type(data).__name__}")
    extra = _extra_keys(space, base or {}, extra_keys)
    python = {"data": describe_data(ds)}
    python |= {k: describe_callable(f) for k, f in (("model", model), ("optimizer", optimizer),
                                                      ("metric", accuracy)) if callable(f)}
    if callable(loss):
        python["loss"] = describe_callable(loss)
    raw = _raw_config(space, ds, method, base, trials, metric, goal, seed, extra, python, settings)
    if isinstance(loss, str):
        raw["train"]["loss"] = loss
    cfg = config_lib.parse(raw)
    kw = {k: v for k, v in (("model", model), ("optimizer", optimizer), ("metric", accuracy)) if v is not None}
    kw |= {"loss": loss} if callable(loss) else {}
    kw |= {"extra_keys": extra} if extra else {}
    p = sweep.plan(cfg, dataset=ds, engine_kw=kw)
    return run_search(p, cfg, to_toml(raw), out, progress=progress, force=force)


def _saved_groups(res: UnitResult, checked: Any) -> list[Any]:
    """The :class:`jaxnets.result.GroupResult` s of a unit reused from a results directory: its programs
    (``checked``, the unit's rows checked against the data), its saved parameters (``res.params``) and its
    saved metrics."""
    from jaxnets.result import STATUS_NAMES, GroupResult
    from jaxnets.saving import nnx_state

    pos = {int(v): k for k, v in enumerate(res.variant)}
    out = []
    for prog, saved in zip(checked.programs, res.params.groups, strict=True):
        at = np.array([pos[int(v)] for v in saved.variant], np.int64)
        n_e = prog.spec.n_evals
        state = nnx_state(prog, saved.model_state, len(at)) if saved.nnx else saved.model_state
        col = lambda k, at=at: np.asarray(res.columns[k])[at]  # noqa: E731
        out.append(GroupResult(
            spec=prog.spec, indices=np.asarray(saved.variant, np.int64), rows=list(prog.rows),
            params=saved.params, status=np.array([STATUS_NAMES.index(s) for s in col("status")]),
            stopped_step=col("stopped_step"), best_val_loss=col("best_val_loss"),
            history={m: np.asarray(h)[at, :n_e] for m, h in res.history.items()}, eval_steps=prog.spec.eval_steps,
            compile_s=0.0, run_s=0.0, wall_s=0.0, n_blocks=0, model_state=state,
            test={k: col(k) for k in ("test_loss", "test_accuracy")}, layer_names=list(prog.layer_names),
            program=prog))
    return out


def combine(results: Sequence[UnitResult], n_variants: int, checked: Callable[[UnitResult], Any] | None = None
            ) -> Result:
    """One :class:`Result` of every variant (rows in variant-id order): the units trained in this process,
    and the units reused from a results directory with their saved parameters (``checked(res)``: the
    unit's rows checked against the data, :class:`jaxnets.engine.Checked`).

    Raises:
      ValueError: a reused unit has no saved parameters.
    """
    groups = []
    for res in results:
        if res.trained is not None:
            ids = np.asarray(res.variant, np.int64)
            groups += [dataclasses.replace(g, indices=ids[np.asarray(g.indices)]) for g in res.trained.groups]
        elif res.params is not None and checked is not None:
            groups += _saved_groups(res, checked(res))
        else:
            raise ValueError(f"unit {res.key} was reused from the results directory without its parameters")
    return Result.from_groups(groups, n_variants)


def run_search(p: Any, cfg: Any, config_text: str, out: str | Path | None, *, progress: bool = True,
               force: bool = False) -> Result:
    """Train the plan ``p`` of ``cfg`` (into ``out`` when given: ``config_text`` is its ``config.toml``, units
    are saved as they finish and reused by the same call again) and return every variant's :class:`Result`."""
    from jaxnets import engine, report, store, sweep
    from jaxnets.cli import Progress

    if out is None:
        bar = Progress(None, cfg.metric, cfg.goal, quiet=not progress)
        try:
            results = sweep.run(p, on_event=bar)
        finally:
            bar.close()
        return combine(results, p.n_variants)
    out = Path(out)
    with store.lock(out):
        done = store.open_run(out, config_text, force=force, params=True)  # reused units bring their parameters
        bar = Progress(out, cfg.metric, cfg.goal, quiet=not progress)
        try:
            results = sweep.run(p, done, bar, store.load_checkpoints(out))
        finally:
            bar.close()
        table, history = sweep.assemble(results, cfg)
        store.write_results(out, table, history)
        report.save(out, table, history, cfg.axes, cfg.metric, cfg.goal, cfg.method)
    units = {u.key: u for u in p.units or ()}

    def checked(res: UnitResult) -> Any:
        unit = units.get(res.key)
        if unit is not None and unit.checked is not None:
            return unit.checked
        rows = [sweep.to_variant(cfg.base, point) for point in res.points]
        return engine.check(rows, p.dataset, **p.engine_kw)

    return combine(results, p.n_variants, checked)
