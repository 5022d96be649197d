"""Searches over a :class:`~jaxnets.config.Config`: grid, random and Bayesian, trained unit by unit.

Data path::

    Config ─► plan()  load the data set; grid / random: list every variant, split them into the engine's
                      static groups (one *unit* each); Bayesian: probe every axis value; validate all of it
                      with engine.prepare — before any compute
           ─► run()   train unit after unit, one engine.train call each: a static group (grid / random) or
                      a round of ``batch`` trials asked from Optuna (Bayesian, told when the round ends);
                      report progress and every finished unit through ``on_event``; skip units in ``done``
           ─► assemble()  one results table (pandas) and one history dict, in variant order

A *unit* is the resume granularity: the caller saves each finished :class:`UnitResult` (see
:mod:`jaxnets.store`) and passes the saved ones back as ``done`` to resume; this module touches no files.
Same config, same variants, same numbers: random search samples with Optuna's ``RandomSampler(seed)``,
Bayesian search with ``TPESampler(seed)``; a resumed Bayesian search replays the saved rounds through
ask/tell, so the sampler continues exactly where an uninterrupted run would be.

Example::

    >>> from jaxnets import config, sweep
    >>> cfg = config.parse({
    ...     "data": {"name": "iris"}, "model": {"hidden": [8]}, "train": {"steps": 20, "batch_size": 16},
    ...     "sweep": {"axes": {"activation": ["tanh", "relu"], "seed": [0, 1]}},
    ... })
    >>> p = sweep.plan(cfg)
    >>> p.n_variants, [u.key for u in p.units]
    (4, ['group-000'])
    >>> table, history = sweep.assemble(sweep.run(p), cfg)   # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import importlib.util
import itertools
import json
import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxnets import config as config_lib
from jaxnets import data as data_lib
from jaxnets import engine, events
from jaxnets import result as result_lib
from jaxnets import variants as variants_lib
from jaxnets.config import Axis, Config, ConfigError
from jaxnets.result import UnitResult

__all__ = [
    "Unit", "UnitResult", "Plan", "plan", "run", "assemble", "rank", "grid_points", "random_points",
    "COLUMNS", "HISTORY_METRICS", "POPULATION_METHODS", "policy", "train_unit",
]

#: Result columns every unit carries (besides ``variant`` and the swept axes): :data:`jaxnets.result.COLUMNS`.
COLUMNS: tuple[str, ...] = result_lib.COLUMNS
#: Per-evaluation histories saved for every variant, [V, E] or [V, E, L]: :data:`jaxnets.result.METRICS`.
HISTORY_METRICS: tuple[str, ...] = result_lib.METRICS

EventFn = Callable[[events.Event], None]


@dataclasses.dataclass(frozen=True)
class Unit:
    """Variants trained by one ``engine.train`` call and saved together.

    Attributes:
      key: the unit's name: ``group-NNN`` (a static group, grid / random search) or ``round-NNN`` (a
        Bayesian round).
      variant_ids: the variants' ids (rows of ``results.csv``).
      points: each variant's axis values (config keys, JSON-able).
      rows: the engine variants.
      fingerprint: a hash of the rows and the data options, so a saved unit is reused only for exactly the
        same variants.
      checked: the rows checked by the engine (:class:`jaxnets.engine.Checked`) when the plan already did
        (grid, random, asha, pbt), so training does not check them again; ``None``: checked when trained.
    """

    key: str
    variant_ids: tuple[int, ...]
    points: tuple[dict[str, Any], ...]
    rows: tuple[dict[str, Any], ...]
    fingerprint: str
    checked: Any = dataclasses.field(default=None, compare=False, repr=False)


@dataclasses.dataclass
class Plan:
    """What a config will train: the loaded data set and, for grid / random search, every unit.

    Attributes:
      config: the config.
      dataset: the loaded data set.
      units: every unit, in order; ``None`` for Bayesian search (its rounds are asked one by one during
        :func:`run`).
      n_variants: counts all variants (trials).
      n_units: the number of units (static groups, or Bayesian rounds).
      evals: the number of evaluations after step 0 (progress total; an estimate for Bayesian search).
      engine_kw: the engine keyword arguments every unit trains with (:func:`engine_kwargs`, or the Python
        objects :func:`jaxnets.search` was given: ``model``, ``loss``, ``metric``, ``optimizer``,
        ``extra_keys``).
    """

    config: Config
    dataset: data_lib.Dataset
    units: list[Unit] | None
    n_variants: int
    n_units: int
    evals: int
    engine_kw: dict[str, Any] = dataclasses.field(default_factory=dict)

    def shared_architectures(self) -> list[tuple[str, tuple[tuple[int, ...], ...]]]:
        """``(unit key, hidden lists)`` of every static group that trains several MLP architectures in one
        program (:mod:`jaxnets.architectures`), in plan order (none for Bayesian search)."""
        out = []
        for unit in self.units or ():
            for prog in unit.checked.programs if unit.checked is not None else ():
                if prog.spec.mixed:
                    out.append((unit.key, prog.spec.architectures))
        return out


# ---------------------------------------------------------------------------------------------------------
# Points: axis values -> engine variants
# ---------------------------------------------------------------------------------------------------------


def _json_value(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def grid_points(axes: Sequence[Axis]) -> list[dict[str, Any]]:
    """The Cartesian product of list axes, the last axis varying fastest.

    Args:
      axes: list axes (``values`` set).

    Returns:
      one point (``{axis name: value}``, lists as lists) per combination; ``[{}]`` with no axes.
    """
    names = [a.name for a in axes]
    return [dict(zip(names, map(_json_value, combo), strict=True))
            for combo in itertools.product(*(a.values for a in axes))]


def to_variant(base: Mapping[str, Any], point: Mapping[str, Any]) -> dict[str, Any]:
    """An engine variant: the fixed keys of ``base`` overridden by a point's axis values (config keys)."""
    return {**base, **dict(point)}


def fingerprint(rows: Sequence[Mapping[str, Any]], data: Mapping[str, Any]) -> str:
    """A short stable hash of engine rows and data options (identifies a unit's exact variants)."""
    text = json.dumps({"rows": list(rows), "data": dict(data)}, sort_keys=True, default=_json_value)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _unit(key: str, ids: Sequence[int], points: Sequence[dict], cfg: Config) -> Unit:
    rows = tuple(to_variant(cfg.base, p) for p in points)
    data = dict(cfg.data)  # your own model and optimizer (and search()'s Python objects) are part of it
    data |= {"factory": cfg.factory} if cfg.factory else {}
    data |= {"optimizer": cfg.optimizer} if cfg.optimizer else {}
    data |= {f"python_{k}": v for k, v in cfg.python.items()}
    return Unit(key, tuple(int(i) for i in ids), tuple(points), rows, fingerprint(rows, data))


# ---------------------------------------------------------------------------------------------------------
# Optuna search space (random and Bayesian search)
# ---------------------------------------------------------------------------------------------------------


def _encodable(values: Sequence[Any]) -> bool:
    return all(isinstance(v, str | int | float | bool) for v in values)


def distributions(axes: Sequence[Axis]) -> dict[str, Any]:
    """Optuna distributions for the axes.

    Args:
      axes: the swept axes.

    Returns:
      ``{axis name: distribution}``: lists -> categorical (lists of lists as JSON text), ranges ->
      ``IntDistribution`` (integer keys) or ``FloatDistribution``, log-scaled when ``log = true``.
    """
    import optuna

    out: dict[str, Any] = {}
    for a in axes:
        if a.is_range:
            dist = optuna.distributions
            cls = dist.IntDistribution if a.integer else dist.FloatDistribution
            out[a.name] = cls(a.low, a.high, log=a.log)
        else:
            encode = _encodable(a.values)
            choices = a.values if encode else tuple(json.dumps(_json_value(v)) for v in a.values)
            out[a.name] = optuna.distributions.CategoricalDistribution(choices)
    return out


def _decode(axes: Sequence[Axis], params: Mapping[str, Any]) -> dict[str, Any]:
    """Optuna trial params -> a point (axis values in config form, file order)."""
    point = {}
    for a in axes:
        v = params[a.name]
        if not a.is_range and not _encodable(a.values):
            v = json.loads(v)
        point[a.name] = v
    return point


def _study(cfg: Config, sampler: Any):
    import optuna

    return optuna.create_study(direction="minimize" if cfg.goal == "min" else "maximize", sampler=sampler)


def _tpe(seed: int):
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def random_points(axes: Sequence[Axis], trials: int, seed: int) -> list[dict[str, Any]]:
    """``trials`` points sampled independently from the axes with Optuna's ``RandomSampler(seed)``.

    Args:
      axes: the swept axes (lists or ranges).
      trials: the number of points.
      seed: the sampler's seed.

    Returns:
      the points (``{axis name: value}``), in sampling order.
    """
    import optuna

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    dists = distributions(axes)
    return [_decode(axes, study.ask(dists).params) for _ in range(trials)]


# ---------------------------------------------------------------------------------------------------------
# Planning and validation (no compute)
# ---------------------------------------------------------------------------------------------------------


def load_data(cfg: Config) -> data_lib.Dataset:
    """The ``[data]`` data set (built-in, or your own file with ``[data] path``).

    Args:
      cfg: a checked config.

    Returns:
      the loaded :class:`~jaxnets.data.Dataset`.

    Raises:
      ConfigError: a bad option or bad data, naming it (for a file: the path, and the column / row at
        fault).
    """
    name, kwargs = config_lib.data_kwargs(cfg)
    if cfg.data_path is not None:
        try:
            return data_lib.load_file(name, **kwargs)
        except data_lib.DataError as e:
            raise ConfigError(f"[data] path = {cfg.data['path']!r} ({name}): {e.reason}") from None
        except (ValueError, TypeError) as e:
            raise ConfigError(f"[data] path = {cfg.data['path']!r}: {e}") from None
    try:
        return data_lib.load(name, **kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"[data] {e} (options every data set takes: "
                          f"{', '.join(config_lib.DATA_LOAD_KEYS)})") from None


def _describe(point: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} = {v!r}" for k, v in point.items()) or "the [model]/[train] settings"


def engine_kwargs(cfg: Config) -> dict[str, Any]:
    """The engine keyword arguments a config asks for: your own model factory (``[model] factory``), optimizer
    factory (``[train] optimizer = "file.py:function"``) and the ``[keys]`` declarations (``extra_keys``);
    ``{}`` for the built-in models and optimizers.

    Raises:
      ConfigError: a factory cannot be imported.
    """
    kw: dict[str, Any] = {}
    if cfg.factory is not None:
        kw["model"] = load_factory(cfg.factory, cfg.base_dir)
    if cfg.optimizer is not None:
        kw["optimizer"] = load_factory(cfg.optimizer, cfg.base_dir, "[train] optimizer")
    if kw:
        kw["extra_keys"] = dict(cfg.extra_keys)
    return kw


@functools.lru_cache(maxsize=32)
def _import_factory(module: str, name: str, folder: str, where: str) -> Callable[..., Any]:
    if module.endswith(".py"):
        path = Path(module) if Path(module).is_absolute() else Path(folder) / module
        if not path.is_file():
            raise ConfigError(f"{where}: no file {str(path)!r}")
        spec = importlib.util.spec_from_file_location(f"jaxnets_user_models_{abs(hash(str(path)))}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    else:
        mod = importlib.import_module(module)
    fn = getattr(mod, name, None)
    if not callable(fn):
        raise ConfigError(f"{where}: {module!r} has no function {name!r}")
    return fn


def load_factory(spec: str, base_dir: str | Path | None = None, where: str = "[model] factory"
                 ) -> Callable[..., Any]:
    """The function named by ``[model] factory`` (or ``where``, e.g. ``[train] optimizer``):
    ``"file.py:function"`` (relative to ``base_dir``, the config's folder) or ``"package.module:function"``.
    The same spec gives the same function object (so the engine's compiled programs are reused).

    Raises:
      ConfigError: the file or module cannot be imported, or has no such function.
    """
    module, name = spec.split(":")
    try:
        return _import_factory(module, name, str(Path(base_dir or ".").resolve()), where)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - the user's module may raise anything on import
        raise ConfigError(f"{where} = {spec!r}: cannot import it: {type(e).__name__}: {e}") from None


def _first_error(rows: Sequence[Mapping[str, Any]], ds, kw: Mapping[str, Any] | None = None
                 ) -> variants_lib.VariantError | None:
    """The error ``engine.prepare`` raises for the first row it rejects on its own, or ``None``."""
    for i, row in enumerate(rows):
        try:
            engine.prepare([row], ds, **(kw or {}))
        except variants_lib.VariantError as e:
            return variants_lib.VariantError(i, e.reason)
    return None


def _prepare(base: Mapping[str, Any], points: Sequence[Mapping[str, Any]], ds, kw: Mapping[str, Any] | None = None
             ) -> engine.Checked:
    """``engine.check`` of every point's variant (your own model traced against the data, shapes only, once
    per static group); its errors re-raised as :class:`ConfigError` naming the offending point (or the fixed
    [model]/[train] settings when they alone are at fault)."""
    rows = [to_variant(base, p) for p in points]
    kw = dict(kw or {})
    try:
        return engine.check(rows, ds, **kw)
    except variants_lib.VariantError as e:
        err = e if len(e.indices) == 1 else (_first_error(rows, ds, kw) or e)
    base_err = _first_error([dict(base)], ds, kw)
    at_base = base_err is not None and base_err.reason == err.reason
    msg = f"[model]/[train]: {err.reason}" if at_base else f"with {_describe(points[err.index])}: {err.reason}"
    if repr(ds.name) not in msg:
        msg += f" (data set {ds.name!r})"
    raise ConfigError(msg) from None


def _evals(groups: Sequence[Any]) -> int:
    return sum(g.spec.n_evals - 1 for g in groups)


def _unit_checked(unit: Unit, ds, kw: Mapping[str, Any]) -> engine.Checked:
    """The unit's checked rows: the plan's, else checked now (a Bayesian round)."""
    return unit.checked if unit.checked is not None else engine.check(list(unit.rows), ds, **kw)


def _first_values(axes: Sequence[Axis]) -> dict[str, Any]:
    """A point with every axis at its first value (a range at its low bound)."""
    return {a.name: (_json_value(a.values[0]) if not a.is_range else a.low) for a in axes}


def _probe_points(axes: Sequence[Axis], pinned: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Points that exercise every axis value: every combination of the list axes' values and the ranges'
    bounds would be too many, so: each value of each axis alone, plus every combination of the static
    (shape-changing) axes, which decide what the data set must fit. ``pinned``: values every point carries
    (the first value of each axis over a declared user key, which every variant must have)."""
    def options(a: Axis) -> list[Any]:
        return [_json_value(v) for v in a.values] if not a.is_range else [a.low, a.high]

    pinned = dict(pinned or {})
    static = [a for a in axes if a.name in variants_lib.STATIC_KEYS]
    points = [{**pinned, a.name: v} for a in axes for v in options(a)]
    points += [{**pinned, **dict(zip([a.name for a in static], combo, strict=True))}
               for combo in itertools.product(*(options(a) for a in static))]
    return points or [pinned]


def coverage(axes: Sequence[Axis]) -> variants_lib.Coverage:
    """What every unit of a search over ``axes`` is compiled for (:class:`jaxnets.variants.Coverage`): the
    activations and initializers the axes list, and each stage (dropout, L2, weight decay, clipping) an axis
    can switch on. A Bayesian search's rounds then share one compiled program per static group, whatever mix
    the sampler asks for."""
    by = {a.name: a for a in axes}

    def can(name: str, on: Callable[[float], bool]) -> bool:
        a = by.get(name)
        if a is None:
            return False
        return on(a.high) if a.is_range else any(on(float(v)) for v in a.values)

    listed = lambda name: tuple(str(v) for v in by[name].values) if name in by and by[name].values else ()  # noqa: E731
    return variants_lib.Coverage(
        activations=listed("activation"), initializers=listed("init"),
        dropout=can("dropout", lambda v: v > 0), l2=can("l2", lambda v: v > 0),
        weight_decay=can("weight_decay", lambda v: v > 0), clip=can("clip_norm", math.isfinite))


def plan(cfg: Config, *, dataset: data_lib.Dataset | None = None, engine_kw: Mapping[str, Any] | None = None
         ) -> Plan:
    """Load the data and list (grid / random) or probe (Bayesian) every variant; validate all of it.

    Args:
      cfg: a checked config.
      dataset: the data set, when it is not the config's to load (:func:`jaxnets.search`'s in-memory data).
      engine_kw: the engine keyword arguments (your own ``model``, ``loss``, ``metric``, ``optimizer`` and
        ``extra_keys`` as Python objects); default: the config's (:func:`engine_kwargs`).

    Returns:
      the :class:`Plan`.

    Raises:
      ConfigError: for anything the engine would reject (loss vs. task, model kind vs. data layout, batch
        size vs. data size, ...), before any compute; or bad data (see :func:`load_data`); a config written by
        :func:`jaxnets.search` (``[python]``) without its data set.
    """
    if cfg.python and dataset is None:
        raise ConfigError("this config was written by jaxnets.search() from Python (its [python] section names "
                          f"{', '.join(cfg.python.values())}): run it again from Python, jaxnets.search(..., out=DIR)")
    ds = dataset if dataset is not None else load_data(cfg)
    kw = dict(engine_kw) if engine_kw is not None else engine_kwargs(cfg)
    if cfg.mix_architectures != "auto" or cfg.method == "pbt":  # PBT copies parameters: one architecture each
        kw.setdefault("mix_architectures", False if cfg.method == "pbt" else cfg.mix_architectures)
    if cfg.method == "bayesian":
        probes = _probe_points(cfg.axes, _first_values([a for a in cfg.axes if a.name in cfg.extra_keys]))
        _prepare(cfg.base, probes, ds, kw)  # every listed name is valid: the coverage can name them
        # rounds mix activations, initializers and stages differently: one compiled program for all of them
        kw["cover"] = coverage(cfg.axes)
        n_rounds = -(-cfg.trials // cfg.batch)
        first = _first_values([a for a in cfg.axes if a.name in cfg.extra_keys])
        per_round = _evals(engine.prepare([to_variant(cfg.base, first)], ds, **kw))
        return Plan(cfg, ds, None, cfg.trials, n_rounds, per_round * n_rounds, kw)
    points = grid_points(cfg.axes) if cfg.method == "grid" else random_points(cfg.axes, cfg.trials, cfg.seed)
    checked = _prepare(cfg.base, points, ds, kw)
    groups = checked.programs
    if cfg.method in POPULATION_METHODS:  # every variant in ONE engine.train call: decisions span the groups
        schedules = {(g.spec.steps, g.spec.eval_every) for g in groups}
        if len(schedules) > 1:
            raise ConfigError(f"method = {cfg.method!r} needs the same steps and eval_every for every variant; "
                              f"the axes give (steps, eval_every) = {sorted(schedules)}")
        try:
            policy(cfg).boundaries(groups[0].spec)
        except ValueError as e:
            raise ConfigError(f"[sweep] {e}") from None
        unit = dataclasses.replace(_unit("population-000", range(len(points)), points, cfg), checked=checked)
        return Plan(cfg, ds, [unit], len(points), 1, _evals(groups), kw)
    units = [dataclasses.replace(_unit(f"group-{gi:03d}", g.indices, [points[i] for i in g.indices], cfg),
                                 checked=checked.group(gi))
             for gi, g in enumerate(groups)]
    return Plan(cfg, ds, units, len(points), len(units), _evals(groups), kw)


# ---------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------


#: Methods that train every variant in one unit under a population policy (:mod:`jaxnets.population`).
POPULATION_METHODS: tuple[str, ...] = ("asha", "pbt")


def policy(cfg: Config) -> Any:
    """The population policy of an ``asha`` / ``pbt`` config (``None`` for the other methods).

    ASHA ranks by the config's metric at each rung (``final_val_loss`` = the validation loss at the rung);
    PBT explores every swept float hyperparameter of :data:`jaxnets.population.PERTURB_KEYS` and every swept
    vmapped user key (``[keys]``), resampling from its axis (a range, or the listed values) and is seeded by ``seed``.

    Args:
      cfg: a checked config.

    Returns:
      a :class:`jaxnets.population.ASHA` / :class:`jaxnets.population.PBT`, or ``None``.
    """
    from jaxnets import population

    opts = cfg.population
    metric = cfg.metric.removeprefix("final_")
    if cfg.method == "asha":
        return population.ASHA(min_steps=opts["min_steps"], eta=opts["eta"], brackets=opts["brackets"],
                               metric=metric, goal=cfg.goal)
    if cfg.method == "pbt":
        spaces = {a.name: (("range", a.low, a.high, a.log) if a.is_range else ("choice", tuple(a.values)))
                  for a in cfg.axes if a.name in population.PERTURB_KEYS
                  or cfg.extra_keys.get(a.name) == "vmapped"}
        return population.PBT(interval=opts["interval"], spaces=spaces, fraction=opts["fraction"],
                              perturb=tuple(opts["perturb"]), resample=opts["resample"], metric=metric,
                              goal=cfg.goal, seed=cfg.seed)
    return None


def train_unit(unit: Unit, ds: data_lib.Dataset, on_event: EventFn | None = None, *, policy: Any = None,
               resume: Mapping[str, np.ndarray] | None = None, model: Callable[..., Any] | None = None,
               extra_keys: Mapping[str, str] | None = None, checked: Any = None,
               optimizer: Callable[..., Any] | None = None) -> UnitResult:
    """Train one unit with one ``engine.train`` call, passing the engine's progress events to ``on_event``.

    Args:
      unit: the unit.
      ds: the data set.
      on_event: called with each of the engine's progress events (``None``: none) and, with a policy, a
        :class:`~jaxnets.events.Checkpoint` after every rung / interval.
      policy: a population policy (:func:`policy`), or ``None``.
      resume: with a policy, the state of a :class:`~jaxnets.events.Checkpoint` of this unit to continue from.
      model: your own model factory (``None``: the built-in models).
      extra_keys: the declared user keys (see :func:`jaxnets.engine.train`).
      checked: the unit's rows already checked (:func:`jaxnets.engine.check` with ``ds``, ``model``,
        ``extra_keys`` and ``optimizer``): trained without checking them again.
      optimizer: your own optimizer factory (``None``: the built-in optimizers the rows name).

    Returns:
      the trained :class:`UnitResult`; with PBT its history also holds ``parent`` (variant ids, -1 when
      unchanged) and ``hp_<key>`` per explored key, [n, E].
    """
    emit = on_event if on_event is not None else (lambda _: None)
    checkpoint = None
    if policy is not None:
        def checkpoint(state: dict[str, np.ndarray]) -> None:
            emit(events.Checkpoint(unit=unit.key, fingerprint=unit.fingerprint, eval=int(state["e"]), state=state))
    if checked is None:
        checked = engine.check(list(unit.rows), ds, model=model, extra_keys=extra_keys, optimizer=optimizer)
    result = engine.train(checked, progress=on_event, policy=policy, checkpoint=checkpoint, resume=resume)
    history = {m: np.asarray(result.history[m], dtype=np.float64) for m in HISTORY_METRICS}
    ids = np.asarray(unit.variant_ids, dtype=np.int64)
    for k, h in result.history.items():
        if k == "parent":
            h = np.asarray(h)
            history[k] = np.where(h >= 0, ids[np.maximum(h, 0).astype(np.int64)], -1).astype(np.float64)
        elif k.startswith("hp_"):
            history[k] = np.asarray(h, dtype=np.float64)
    return UnitResult(
        key=unit.key,
        fingerprint=unit.fingerprint,
        variant=np.asarray(unit.variant_ids, dtype=np.int64),
        points=[dict(p) for p in unit.points],
        columns={k: np.asarray(v) for k, v in result.columns().items()},
        history=history,
        eval_step=np.asarray(result.eval_step, dtype=np.float64),
        group=np.asarray(result.group_of, dtype=np.int64),
        trained=result,
    )


def objective(res: UnitResult, cfg: Config) -> list[float | None]:
    """The metric of each variant of a unit for Optuna; ``None`` where it is not finite (told as FAIL)."""
    return [float(v) if math.isfinite(v) else None for v in res.columns[cfg.metric]]


def _run_unit(unit: Unit, ds, done: Mapping[str, UnitResult], index: int, n_units: int,
              emit: EventFn, cfg: Config | None = None,
              partial: Mapping[str, tuple[str, Mapping[str, np.ndarray]]] | None = None,
              kw: Mapping[str, Any] | None = None) -> UnitResult:
    """Reuse a saved unit with the same fingerprint, or train it; emit :class:`~jaxnets.events.UnitStarted` /
    :class:`~jaxnets.events.UnitDone`."""
    saved = done.get(unit.key)
    resumed = saved is not None and saved.fingerprint == unit.fingerprint
    kw = kw if kw is not None else engine_kwargs(cfg) if cfg is not None else {}
    checked = _unit_checked(unit, ds, kw)
    emit(events.UnitStarted(unit=unit.key, index=index, n_units=n_units, n_variants=len(unit.rows),
                            evals=checked.evals, resumed=resumed, stale=saved is not None and not resumed))
    if resumed:
        res = saved
    else:
        pol = policy(cfg) if cfg is not None else None
        part = (partial or {}).get(unit.key)
        state = part[1] if pol is not None and part is not None and part[0] == unit.fingerprint else None
        res = train_unit(unit, ds, emit, policy=pol, resume=state if pol is not None else None, checked=checked)
    emit(events.UnitDone(unit=unit.key, result=res, resumed=resumed))
    return res


def _bayesian_units(p: Plan) -> Iterator[tuple[Unit, Callable[[UnitResult], None]]]:
    """Rounds of ``batch`` trials asked from a seeded TPE sampler; the callback tells a round's results."""
    import optuna

    cfg = p.config
    study = _study(cfg, _tpe(cfg.seed))
    dists = distributions(cfg.axes)
    start = 0
    for r in range(p.n_units):
        trials = [study.ask(dists) for _ in range(min(cfg.batch, cfg.trials - start))]
        points = [_decode(cfg.axes, t.params) for t in trials]
        unit = _unit(f"round-{r:03d}", range(start, start + len(trials)), points, cfg)

        def tell(res: UnitResult, trials=trials) -> None:
            for t, value in zip(trials, objective(res, cfg), strict=True):
                if value is None:
                    study.tell(t, state=optuna.trial.TrialState.FAIL)
                else:
                    study.tell(t, value)

        yield unit, tell
        start += len(trials)


def run(p: Plan, done: Mapping[str, UnitResult] | None = None, on_event: EventFn | None = None,
        partial: Mapping[str, tuple[str, Mapping[str, np.ndarray]]] | None = None) -> list[UnitResult]:
    """Train every unit of the plan not already in ``done``; return all unit results in order.

    Args:
      p: the plan.
      done: saved unit results by key; a unit with the same key and fingerprint is reused, not trained.
      on_event: receives :mod:`jaxnets.events`: :class:`~jaxnets.events.SweepStarted`, then per unit
        :class:`~jaxnets.events.UnitStarted`, the engine's :class:`~jaxnets.events.Compiling` /
        :class:`~jaxnets.events.Evaluated` while it trains, and :class:`~jaxnets.events.UnitDone` (its
        ``result`` is the :class:`UnitResult`). Save a result when its ``UnitDone`` arrives (before the next
        unit starts) to lose nothing if the process is killed. ``asha`` / ``pbt`` also emit a
        :class:`~jaxnets.events.Checkpoint` after every rung / interval: save its state to resume mid-unit.
      partial: ``{unit key: (fingerprint, state)}`` from saved :class:`~jaxnets.events.Checkpoint` s: an
        ``asha`` / ``pbt`` unit not in ``done`` continues from its state when the fingerprint matches (the
        final results are those of an uninterrupted run).

    Returns:
      all unit results, in unit order.
    """
    done = done or {}
    emit = on_event if on_event is not None else (lambda _: None)
    emit(events.SweepStarted(n_variants=p.n_variants, n_units=p.n_units, evals=p.evals,
                             exact=p.units is not None))
    if p.units is not None:
        return [_run_unit(u, p.dataset, done, i, p.n_units, emit, p.config, partial, p.engine_kw)
                for i, u in enumerate(p.units)]
    results = []
    for i, (unit, tell) in enumerate(_bayesian_units(p)):
        res = _run_unit(unit, p.dataset, done, i, p.n_units, emit, p.config, kw=p.engine_kw)
        tell(res)
        results.append(res)
    return results


# ---------------------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------------------


def _cell(v: Any) -> Any:
    """A table cell for an axis value: lists (e.g. hidden sizes) as their JSON text."""
    return json.dumps(v) if isinstance(v, list | tuple) else v


def assemble(results: Sequence[UnitResult], cfg: Config):
    """One table (pandas DataFrame, one row per variant, in variant order) and one history dict.

    Args:
      results: the unit results (from :func:`run`).
      cfg: the config (its axes name the table's axis columns).

    Returns:
      ``(table, history)``. Table columns: ``variant``, one per swept axis (named as the axis),
      :data:`COLUMNS`, ``unit`` (the unit's key) and ``group`` (``unit/static group``). History: ``step`` [E]
      (the evaluation steps of the longest variant), ``eval_step`` [V, E] (each variant's own steps,
      NaN-padded), ``variant`` [V] and :data:`HISTORY_METRICS` [V, E] / [V, E, L]; units with fewer
      evaluations or layers are NaN-padded, as in :class:`jaxnets.result.Result`.

    Raises:
      ValueError: ``results`` is empty.
    """
    import pandas as pd

    if not results:
        raise ValueError("no unit results to assemble")
    variant = np.concatenate([r.variant for r in results])
    order = np.argsort(variant, kind="stable")
    names = [a.name for a in cfg.axes]
    table: dict[str, Any] = {"variant": variant}
    points = [p for r in results for p in r.points]
    for name in names:
        table[name] = [_cell(p[name]) for p in points]
    for col in COLUMNS:
        table[col] = np.concatenate([r.columns[col] for r in results])
    table["unit"] = [r.key for r in results for _ in r.variant]
    table["group"] = [f"{r.key}/{g}" for r in results for g in r.group]
    df = pd.DataFrame(table).iloc[order].reset_index(drop=True)
    extra = [k for k in results[0].history if k not in HISTORY_METRICS and all(k in r.history for r in results)]
    history = {m: result_lib.concat_padded([r.history[m] for r in results])[order] for m in (*HISTORY_METRICS, *extra)}
    eval_step = result_lib.concat_padded([r.eval_step for r in results])[order]
    longest = int(np.argmax(np.sum(np.isfinite(eval_step), axis=1)))
    history["step"] = eval_step[longest][np.isfinite(eval_step[longest])].astype(np.int64)
    history["eval_step"] = eval_step
    history["variant"] = variant[order]
    return df, history


def rank(table, metric: str, goal: str):
    """The table sorted best first by ``metric``; NaN last; ties broken by the final validation loss (lower
    first: e.g. many variants at ``val_accuracy`` 1.0 on a small validation set), then by id.

    Args:
      table: a results table (with a ``variant`` column).
      metric: the column to rank by.
      goal: ``"min"`` or ``"max"``.

    Returns:
      the sorted table (a new DataFrame, index reset).
    """
    keys, ascending = [metric], [goal == "min"]
    if metric != "final_val_loss" and "final_val_loss" in table.columns:
        keys, ascending = keys + ["final_val_loss"], ascending + [True]
    return table.sort_values(keys + ["variant"], ascending=ascending + [True], na_position="last",
                             kind="stable").reset_index(drop=True)
