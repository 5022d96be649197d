"""Sweep configuration files: parse a TOML file into a checked :class:`Config`, before any compute.

The file format is a public contract (see the README)::

    seed = 0                   # optional: seeds the random / Bayesian search sampler

    [data]
    name = "digits"            # one of jaxnets.data.NAMES; other keys are options of data.load
    seed = 0                   # optional: the split (and generated data)
    # path = "my_data.csv"     # instead of name: your own .csv / .npz (relative to the config's folder)
    # target = "label"         # with a CSV: the label column; also task, standardize, val/test_fraction

    [model]                    # kind, hidden, dense, cell, activation, init, init_scale
    kind = "mlp"
    hidden = [64, 64, 64]

    [train]                    # loss, optimizer, learning_rate, momentum, b1, b2, rho, steps, batch_size,
    optimizer = "adam"         # eval_every, early_stopping_patience, weight_decay, l2, dropout, clip_norm
    steps = 1000

    [sweep]
    method = "grid"            # grid | random | bayesian
    trials = 64                # random / bayesian: number of variants
    batch = 16                 # bayesian: variants per round (one compiled program per round)
    metric = "val_loss"        # val_loss | best_val_loss | train_loss | val_accuracy (+ final_* spellings)
    goal = "min"               # min | max (default: max for val_accuracy, min otherwise)
    mix_architectures = "auto" # "auto" | true | false: hidden sizes in one padded program (README)
    [sweep.axes]               # any [model] / [train] key, or "seed" (the variants' training seed)
    activation = ["sigmoid", "tanh", "relu"]
    learning_rate = { low = 1e-4, high = 1e-1, log = true }

An axis is a list of values (grid: every one; random / Bayesian: a choice) or a range table
``{low, high, log}`` (random / Bayesian only). A range samples integers for the integer keys (``steps``,
``batch_size``, ``eval_every``, ``early_stopping_patience``, ``seed``; their bounds must be integers) and
floats for every other numeric key, uniformly or, with ``log = true``, log-uniformly (bounds > 0).

:func:`parse` checks every section, key, name, type and value and raises :class:`ConfigError` naming the bad
key and value and listing what is valid. Values are checked with the engine's own rules
(:func:`jaxnets.variants.normalize`), so the config accepts exactly what the engine trains. Checks that need
the data set (data options, loss vs. task, model kind vs. input layout) run in :func:`jaxnets.sweep.plan`,
still before any training.

Example::

    >>> from jaxnets import config
    >>> cfg = config.parse({"data": {"name": "iris"}, "sweep": {"axes": {"activation": ["tanh", "relu"]}}})
    >>> cfg.method, [a.name for a in cfg.axes], cfg.metric, cfg.goal
    ('grid', ['activation'], 'final_val_loss', 'min')
"""

from __future__ import annotations

import contextvars
import dataclasses
import hashlib
import math
import numbers
import os
import tomllib
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jaxnets import architectures, losses
from jaxnets import data as data_lib
from jaxnets import result as result_lib
from jaxnets import variants as variants_lib

__all__ = [
    "ConfigError", "Axis", "Config", "MODEL_KEYS", "TRAIN_KEYS", "AXIS_KEYS", "METHODS", "METRICS",
    "load", "loads", "parse", "data_kwargs",
]

SECTIONS: tuple[str, ...] = ("seed", "data", "model", "train", "sweep", "keys", "python")
#: ``[python]`` keys: what :func:`jaxnets.search` trained with, as text (Python objects are not TOML): the data
#: set (its name and a SHA-256 of its arrays) and your own model, loss, metric and optimizer (name and a hash
#: of the code). A config with ``[python]`` describes a results directory; only Python can run it again.
PYTHON_KEYS: tuple[str, ...] = ("data", "model", "loss", "metric", "optimizer")
MODEL_KEYS: tuple[str, ...] = ("kind", "hidden", "dense", "cell", "norm", "activation", "init", "init_scale")
TRAIN_KEYS: tuple[str, ...] = (
    "loss", "optimizer", "learning_rate", "momentum", "b1", "b2", "rho", "steps", "batch_size", "eval_every",
    "early_stopping_patience", "weight_decay", "l2", "dropout", "clip_norm", "divergence_factor", "shared_data",
    "data_seed", "schedule", "warmup_steps", "decay_steps", "end_factor", "decay_rate", "sampling",
)
AXIS_KEYS: tuple[str, ...] = MODEL_KEYS + TRAIN_KEYS + ("seed",)
SWEEP_KEYS: tuple[str, ...] = ("method", "trials", "batch", "metric", "goal", "axes", "eta", "min_steps", "brackets",
                               "interval", "fraction", "perturb", "resample", "mix_architectures")
METHODS: tuple[str, ...] = ("grid", "random", "bayesian", "asha", "pbt")
#: ``[sweep]`` keys of the population methods (successive halving, population-based training).
POPULATION_KEYS: dict[str, tuple[str, ...]] = {
    "asha": ("eta", "min_steps", "brackets"),
    "pbt": ("interval", "fraction", "perturb", "resample"),
}
GOALS: tuple[str, ...] = ("min", "max")
RANGE_KEYS: tuple[str, ...] = ("low", "high", "log")

#: The ``results.csv`` columns a sweep can rank by: the per-variant metric columns of :data:`result.COLUMNS`,
#: except the test split's (never used for selection).
_RANKABLE: tuple[str, ...] = tuple(c for c in result_lib.COLUMNS
                                   if c.endswith(("_loss", "_accuracy")) and not c.startswith("test_"))
#: Metric names accepted in ``[sweep] metric`` -> the ``results.csv`` column they rank by: every rankable
#: column, and each ``final_*`` column without its prefix (``val_loss`` = ``final_val_loss``).
METRICS: dict[str, str] = {
    **{c.removeprefix("final_"): c for c in _RANKABLE if c.startswith("final_")},
    **{c: c for c in _RANKABLE},
}

#: Integer-valued keys: range tables over them sample integers.
INT_KEYS: tuple[str, ...] = ("steps", "batch_size", "eval_every", "early_stopping_patience", "seed", "data_seed",
                             "warmup_steps", "decay_steps")
#: Keys a range table may sweep (numbers); the rest take lists only.
NUMERIC_KEYS: tuple[str, ...] = INT_KEYS + (
    "init_scale", "learning_rate", "momentum", "b1", "b2", "rho", "weight_decay", "l2", "dropout",
    "clip_norm", "divergence_factor", "end_factor", "decay_rate",
)
DATA_LOAD_KEYS: tuple[str, ...] = ("seed", "n_train", "val_fraction", "test_fraction")
#: ``[data]`` keys with ``path`` (your own file, read by :func:`jaxnets.data.load_file`) instead of ``name``.
DATA_FILE_KEYS: tuple[str, ...] = ("path", "target", "seed", "val_fraction", "test_fraction", "standardize", "task")
_PLACEHOLDER_LOSS = "mse"  # lets a lone key be checked before the data set (and its default loss) is known


class ConfigError(ValueError):
    """A bad config: the message names the key and value at fault and lists what is valid."""


@dataclasses.dataclass(frozen=True)
class Axis:
    """One swept key: either ``values`` (a list) or a range ``low``..``high`` (``log``: log-uniform).

    Attributes:
      name: the config key (e.g. ``early_stopping_patience``).
      values: the listed values (lists as tuples), or ``None`` for a range.
      low: the range's lower bound (``None`` for a list).
      high: the range's upper bound (``None`` for a list).
      log: a range samples log-uniformly.
      integer: a range samples ints.
    """

    name: str
    values: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False

    @property
    def is_range(self) -> bool:
        """True for a ``{low, high}`` table, False for a list of values."""
        return self.values is None


@dataclasses.dataclass(frozen=True)
class Config:
    """A checked sweep configuration.

    Attributes:
      data: ``data.load`` keyword arguments including ``name``. With ``[data] path``, ``data`` holds
        ``path`` as written (not resolved, so it means the same config on every machine), the other
        ``[data]`` keys and ``sha256``, the hash of the file's bytes when it could be read (so a changed data
        file changes the resume fingerprints).
      base: the fixed [model] / [train] keys (config keys are engine variant keys; unset keys keep the
        engine's defaults).
      method: the search method, one of :data:`METHODS`.
      trials: ``[sweep] trials``, the number of variants of a random / Bayesian search.
      batch: ``[sweep] batch``, the variants per round of a Bayesian search.
      metric: the ``results.csv`` column random / Bayesian search optimizes and ``show`` ranks by.
      goal: ``"min"`` or ``"max"``.
      axes: the swept keys in file order.
      seed: the search sampler's seed.
      raw: the parsed TOML.
      data_path: with ``[data] path``, the file resolved against the config's folder (``None`` for a
        built-in data set).
      extra_keys: the ``[keys]`` declarations, ``{name: "vmapped" | "static"}``.
      factory: ``[model] factory``, your own model factory as ``"file.py:function"`` / ``"module:function"``.
      base_dir: the folder relative paths are relative to (the config file's).
      python: ``[python]``: what :func:`jaxnets.search` trained with (see :data:`PYTHON_KEYS`); empty for a
        config file's sweep.
      optimizer: ``[train] optimizer`` when it names your own optimizer factory (``"file.py:function"`` /
        ``"module:function"``, a function ``hp -> optax.GradientTransformation``); ``None``: a built-in one.
      population: the options of ``asha`` (``eta``, ``min_steps``, ``brackets``) or ``pbt`` (``interval``,
        ``fraction``, ``perturb``, ``resample``) with their defaults; empty for the other methods.
    """

    data: dict[str, Any]
    base: dict[str, Any]
    method: str
    trials: int
    batch: int
    metric: str
    goal: str
    axes: tuple[Axis, ...]
    seed: int
    raw: dict[str, Any]
    data_path: Path | None = None
    population: dict[str, Any] = dataclasses.field(default_factory=dict)
    extra_keys: dict[str, str] = dataclasses.field(default_factory=dict)
    factory: str | None = None
    base_dir: Path | None = None
    optimizer: str | None = None
    python: dict[str, str] = dataclasses.field(default_factory=dict)
    mix_architectures: str | bool = "auto"


# ---------------------------------------------------------------------------------------------------------
# Small checks
# ---------------------------------------------------------------------------------------------------------


def _valid(names: tuple[str, ...] | list[str]) -> str:
    return ", ".join(names)


def _check_keys(where: str, table: Mapping[str, Any], valid: tuple[str, ...]) -> None:
    unknown = [k for k in table if k not in valid]
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise ConfigError(f"{where}: unknown key(s) {names}; valid keys: {_valid(valid)}")


def _table(where: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a table (e.g. `{where}` followed by `key = value` lines), "
                          f"got {value!r}")
    return dict(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _positive_int(where: str, value: Any) -> int:
    if not _is_int(value) or value < 1:
        raise ConfigError(f"{where} must be a positive integer, got {value!r}")
    return int(value)


def _choice(where: str, value: Any, valid: tuple[str, ...] | list[str]) -> str:
    if not isinstance(value, str) or value not in valid:
        raise ConfigError(f"{where} = {value!r} is not valid; valid values: {_valid(valid)}")
    return value


#: The ``[keys]`` declarations of the config being parsed (set by :func:`parse` for its checks).
_DECLARED: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "declared_keys", default=types.MappingProxyType({}))


def _declared(kind: str | None = None) -> tuple[str, ...]:
    """The declared user keys (of one kind: ``"vmapped"`` / ``"static"``) of the config being parsed."""
    return tuple(k for k, v in _DECLARED.get().items() if kind is None or v == kind)


def _check_variant(where: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """Check engine keys with the engine's rules; re-raise its error under the config key ``where``."""
    declared = dict(_DECLARED.get())
    row = {**{k: (0.0 if v == "vmapped" else "") for k, v in declared.items()}, **row}  # keys set elsewhere
    try:
        return variants_lib.normalize(row, 0, default_loss=_PLACEHOLDER_LOSS, extra_keys=declared)
    except variants_lib.VariantError as e:
        raise ConfigError(f"{where}: {e.reason}") from None
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from None


def _check_value(where: str, key: str, value: Any, base: Mapping[str, Any]) -> None:
    """Check one config key's value on top of ``base`` (engine keys), e.g. ``[model] hidden = [64]``."""
    if key in INT_KEYS and not _is_int(value):
        raise ConfigError(f"{where} = {value!r}: {key} must be an integer")
    if (key in NUMERIC_KEYS or key in _declared("vmapped")) and not _is_number(value):
        raise ConfigError(f"{where} = {value!r}: {key} must be a number")
    if key in ("hidden", "dense") and not isinstance(value, list | tuple | int):
        raise ConfigError(f"{where} = {value!r}: {key} must be a list of positive integers, e.g. [64, 64]")
    _check_variant(f"{where} = {value!r}", {**base, key: value})


# ---------------------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------------------


def _parse_data(raw: Any, base_dir: str | Path | None = None) -> tuple[dict[str, Any], Path | None]:
    """The ``[data]`` table checked, and the data file resolved against ``base_dir`` (``None``: built-in)."""
    table = _table("[data]", raw)
    if "name" in table and "path" in table:
        raise ConfigError(f"[data]: give either name (a built-in data set) or path (your own .csv / .npz file), "
                          f"not both; got name = {table['name']!r} and path = {table['path']!r}")
    if "path" in table:
        return _parse_data_file(table, base_dir)
    if "name" not in table:
        raise ConfigError(f"[data]: missing key 'name'; valid names: {_valid(data_lib.NAMES)} (or path = "
                          "\"my_data.csv\" with target = \"label\" for your own .csv / .npz file)")
    _choice("[data] name", table["name"], data_lib.NAMES)
    for key in ("target", "standardize", "task"):
        if key in table:
            raise ConfigError(f"[data] {key} = {table[key]!r}: applies to your own data file (path = ...), not "
                              f"to the built-in data set {table['name']!r}")
    _check_split_options(table)
    return table, None


def _parse_data_file(table: dict[str, Any], base_dir: str | Path | None) -> tuple[dict[str, Any], Path]:
    """``[data]`` with ``path``: check the keys, resolve the file, hash its bytes if it can be read."""
    _check_keys("[data] (with path)", table, DATA_FILE_KEYS)
    path = table["path"]
    if not isinstance(path, str) or not path.strip():
        raise ConfigError(f"[data] path = {path!r}: must be a file path (a string), e.g. path = \"my_data.csv\"")
    where = f"[data] path = {path!r}"
    file = Path(path).expanduser()
    suffix = file.suffix.lower()
    if suffix not in data_lib.FILE_SUFFIXES:
        raise ConfigError(f"{where}: unsupported file type {file.suffix or '(no suffix)'!r}; supported: "
                          f"{_valid(data_lib.FILE_SUFFIXES)}")
    target = table.get("target")
    if suffix == ".csv" and target is None:
        raise ConfigError(f"{where} is a CSV file: add target = \"<column>\", the name of its label column")
    if suffix == ".csv" and (not isinstance(target, str) or not target):
        raise ConfigError(f"[data] target = {target!r}: must be the name of a column (a string)")
    if suffix != ".csv" and target is not None:
        raise ConfigError(f"[data] target = {target!r}: applies to CSV files only; an .npz names its arrays x and y")
    if "task" in table:
        _choice("[data] task", table["task"], data_lib.TASKS)
    if "standardize" in table and not isinstance(table["standardize"], bool):
        raise ConfigError(f"[data] standardize = {table['standardize']!r}: must be true or false")
    _check_split_options(table)
    if not file.is_absolute():
        file = (Path.cwd() if base_dir is None else Path(base_dir)) / file
    file = Path(os.path.abspath(file))
    data = dict(table)
    try:
        with file.open("rb") as f:
            data["sha256"] = hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        pass  # a missing or unreadable file is reported, with its path, when sweep.plan loads it
    return data, file


def _check_split_options(table: Mapping[str, Any]) -> None:
    for key in ("seed", "n_train"):
        if key in table and (not _is_int(table[key]) or table[key] < (0 if key == "seed" else 1)):
            kind = "a non-negative" if key == "seed" else "a positive"
            raise ConfigError(f"[data] {key} = {table[key]!r}: must be {kind} integer")
    for key in ("val_fraction", "test_fraction"):
        if key in table and not (_is_number(table[key]) and 0 < table[key] < 1):
            raise ConfigError(f"[data] {key} = {table[key]!r}: must be a number in (0, 1)")


def _parse_base(model: Any, train: Any) -> dict[str, Any]:
    """The fixed [model] and [train] keys as an engine variant (only the keys given)."""
    base: dict[str, Any] = {}
    for section, raw, valid in (("model", model, MODEL_KEYS + ("factory",)), ("train", train, TRAIN_KEYS)):
        table = _table(f"[{section}]", raw)
        _check_keys(f"[{section}]", table, valid + _declared())
        table.pop("factory", None)  # the model factory is not a variant key (see Config.factory)
        if section == "train" and isinstance(table.get("optimizer"), str) and ":" in table["optimizer"]:
            table.pop("optimizer")  # your own optimizer factory (see Config.optimizer)
        for key, value in table.items():
            _check_value(f"[{section}] {key}", key, value, {})
            base[key] = value
    _check_variant("[model]/[train]", base)  # keys that only make sense together (e.g. kind and hidden)
    return base


def _parse_range(where: str, key: str, table: Mapping[str, Any], base: Mapping[str, Any]) -> Axis:
    _check_keys(where, table, RANGE_KEYS)
    if key not in NUMERIC_KEYS + _declared("vmapped"):
        raise ConfigError(f"{where}: a range table needs a numeric key; {key!r} takes a list of values "
                          f"(numeric keys: {_valid(NUMERIC_KEYS)})")
    for bound in ("low", "high"):
        if bound not in table:
            raise ConfigError(f"{where}: missing {bound!r}; a range table is {{ low = ..., high = ... }} "
                              "with optional log = true")
        if not _is_number(table[bound]) or not math.isfinite(table[bound]):
            raise ConfigError(f"{where}: {bound} = {table[bound]!r} must be a finite number")
    low, high, log = table["low"], table["high"], table.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: log = {log!r} must be true or false")
    integer = key in INT_KEYS
    if integer and not (_is_int(low) and _is_int(high)):
        raise ConfigError(f"{where}: {key} is an integer key; low and high must be integers, "
                          f"got low = {low!r}, high = {high!r}")
    if not low < high:
        raise ConfigError(f"{where}: low must be below high, got low = {low!r}, high = {high!r}")
    if log and low <= 0:
        raise ConfigError(f"{where}: log = true needs low > 0, got low = {low!r}")
    for bound in (low, high):
        _check_value(f"{where} bound", key, bound, base)
    if integer:
        return Axis(key, low=int(low), high=int(high), log=log, integer=True)
    return Axis(key, low=float(low), high=float(high), log=log)


def _parse_axis(key: str, value: Any, base: Mapping[str, Any]) -> Axis:
    where = f"[sweep.axes] {key}"
    if isinstance(value, Mapping):
        return _parse_range(where, key, value, base)
    if not isinstance(value, list):
        raise ConfigError(f"{where} = {value!r}: an axis is a list of values (e.g. [1, 2]) or a range table "
                          "{ low = ..., high = ..., log = true }")
    if not value:
        raise ConfigError(f"{where}: the list of values is empty")
    for i, v in enumerate(value):
        _check_value(f"{where}[{i}]", key, v, base)
    seen = []
    for v in value:
        if v in seen:
            raise ConfigError(f"{where}: value {v!r} is listed twice in {value!r}")
        seen.append(v)
    return Axis(key, values=tuple(tuple(v) if isinstance(v, list) else v for v in value))


def _parse_sweep(raw: Any, base: Mapping[str, Any]) -> dict[str, Any]:
    table = _table("[sweep]", raw)
    _check_keys("[sweep]", table, SWEEP_KEYS)
    method = _choice("[sweep] method", table.get("method", "grid"), METHODS)
    metric = _choice("[sweep] metric", table.get("metric", "val_loss"), tuple(METRICS))
    default_goal = "max" if METRICS[metric] == "val_accuracy" else "min"
    goal = _choice("[sweep] goal", table.get("goal", default_goal), GOALS)
    trials = _positive_int("[sweep] trials", table.get("trials", 16))
    batch = _positive_int("[sweep] batch", table.get("batch", 16))
    axes_table = _table("[sweep.axes]", table.get("axes"))
    _check_keys("[sweep.axes]", axes_table, AXIS_KEYS + _declared())
    axes = tuple(_parse_axis(k, v, base) for k, v in axes_table.items())
    if method == "grid":
        for axis in axes:
            if axis.is_range:
                raise ConfigError(
                    f"[sweep.axes] {axis.name} is a range table, but method = \"grid\" needs a list of "
                    f"values for every axis: give a list (e.g. {axis.name} = [{_example(axis)}]) or use "
                    "method = \"random\" or \"bayesian\""
                )
    elif not axes:
        raise ConfigError(f"[sweep] method = {method!r} samples the axes, but [sweep.axes] is empty; add an "
                          f"axis (valid keys: {_valid(AXIS_KEYS)}) or use method = \"grid\"")
    population = _parse_population(method, table, axes)
    try:
        mix = architectures.check_mix(table.get("mix_architectures", "auto"))
    except ValueError as e:
        raise ConfigError(f"[sweep] {e}") from None
    if mix is True and method == "pbt":
        raise ConfigError("[sweep] mix_architectures = true with method = \"pbt\": PBT copies parameters between "
                          "variants, which needs one architecture per program (use \"auto\" or false)")
    return dict(method=method, metric=METRICS[metric], goal=goal, trials=trials, batch=batch, axes=axes,
                population=population, mix_architectures=mix)


def _parse_population(method: str, table: Mapping[str, Any], axes: tuple[Axis, ...]) -> dict[str, Any]:
    """The ``asha`` / ``pbt`` options of ``[sweep]`` (with defaults); keys of another method are refused."""
    for other, keys in POPULATION_KEYS.items():
        for key in keys:
            if key in table and other != method:
                raise ConfigError(f"[sweep] {key} = {table[key]!r} applies to method = \"{other}\" only, "
                                  f"not {method!r}")
    if method == "asha":
        if "min_steps" not in table:
            raise ConfigError("[sweep] method = \"asha\" needs min_steps, the first rung in steps (a multiple "
                              "of eval_every, e.g. min_steps = 100)")
        eta = table.get("eta", 3)
        if not _is_int(eta) or eta < 2:
            raise ConfigError(f"[sweep] eta = {eta!r} must be an integer >= 2")
        return {"eta": int(eta), "min_steps": _positive_int("[sweep] min_steps", table["min_steps"]),
                "brackets": _positive_int("[sweep] brackets", table.get("brackets", 1))}
    if method != "pbt":
        return {}
    from jaxnets.population import PERTURB_KEYS

    fraction = table.get("fraction", 0.25)
    if not _is_number(fraction) or not 0 < fraction <= 0.5:
        raise ConfigError(f"[sweep] fraction = {fraction!r} must be a number in (0, 0.5]")
    perturb = table.get("perturb", [0.8, 1.25])
    if not isinstance(perturb, list) or not perturb or not all(_is_number(f) and f > 0 for f in perturb):
        raise ConfigError(f"[sweep] perturb = {perturb!r} must be a list of positive factors, e.g. [0.8, 1.25]")
    resample = table.get("resample", 0.0)
    if not _is_number(resample) or not 0 <= resample <= 1:
        raise ConfigError(f"[sweep] resample = {resample!r} must be a probability in [0, 1]")
    explorable = tuple(PERTURB_KEYS) + _declared("vmapped")
    if not any(a.name in explorable for a in axes):
        raise ConfigError(f"[sweep] method = \"pbt\" explores the swept float hyperparameters, but no axis is "
                          f"one of them; sweep at least one of: {_valid(explorable)}")
    return {"interval": _positive_int("[sweep] interval", table.get("interval", 1)), "fraction": float(fraction),
            "perturb": [float(f) for f in perturb], "resample": float(resample)}


def _example(axis: Axis) -> str:
    lo, hi = axis.low, axis.high
    mid = math.sqrt(lo * hi) if axis.log else (lo + hi) / 2
    return ", ".join(f"{v:g}" for v in (lo, mid, hi))


# ---------------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------------


def parse(raw: Mapping[str, Any], *, base_dir: str | Path | None = None) -> Config:
    """Check a parsed TOML document and return a :class:`Config`; raise :class:`ConfigError` if it is bad.

    No data loading, no compute; the only file read is a ``[data] path`` file, hashed (sha256) into
    ``Config.data`` so that resuming notices a changed file (a missing file is reported by
    :func:`jaxnets.sweep.plan`, which loads it). See the module docstring for the schema.

    Args:
      raw: the parsed TOML document.
      base_dir: the folder a relative ``[data] path`` is relative to: the config file's folder
        (:func:`load` passes it); ``None``: the current directory.

    Returns:
      The checked :class:`Config`.

    Raises:
      ConfigError: naming the bad key and value and listing what is valid.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(f"a config is a TOML table, got {type(raw).__name__}")
    _check_keys("config (top level)", raw, SECTIONS)
    seed = raw.get("seed", 0)
    if not _is_int(seed) or seed < 0:
        raise ConfigError(f"seed = {seed!r}: the search sampler's seed must be a non-negative integer")
    python = _parse_python(raw.get("python"))
    if python:  # jaxnets.search: the data set is Python's, named in [data] and hashed in [python]
        data, data_path = dict(_table("[data]", raw.get("data"))), None
    else:
        data, data_path = _parse_data(raw.get("data"), base_dir)
    extra = _parse_keys(raw.get("keys"))
    token = _DECLARED.set(extra)
    try:
        factory = _parse_factory(raw.get("model"), "[model]", "factory")
        optimizer = _parse_factory(raw.get("train"), "[train]", "optimizer")
        base = _parse_base(raw.get("model"), raw.get("train"))
        sweep = _parse_sweep(raw.get("sweep"), base)
    finally:
        _DECLARED.reset(token)
    if extra and factory is None and optimizer is None and not {"model", "optimizer"} & set(python):
        raise ConfigError(f"[keys] declares {', '.join(extra)}, but only your own model or optimizer reads them: "
                          "add [model] factory = \"my_models.py:make\" (a function factory(hp) or factory(hp, "
                          "rngs)) or [train] optimizer = \"my_optimizers.py:make\" (hp -> optax transformation)")
    for key in extra:
        if key not in base and key not in {a.name for a in sweep["axes"]}:
            raise ConfigError(f"[keys] declares {key!r}, but neither [model] / [train] nor [sweep.axes] sets it")
    if sweep["metric"] == "val_accuracy" and "loss" in base and not losses.has_accuracy(base["loss"]):
        raise ConfigError(f"[sweep] metric = \"val_accuracy\" needs a classification loss; [train] loss = "
                          f"{base['loss']!r} has no accuracy (use metric = \"val_loss\")")
    return Config(data=data, base=base, seed=int(seed), raw=dict(raw), data_path=data_path, extra_keys=extra,
                  factory=factory, base_dir=Path(base_dir) if base_dir is not None else None, optimizer=optimizer,
                  python=python, **sweep)


def _parse_python(raw: Any) -> dict[str, str]:
    """``[python]``: what :func:`jaxnets.search` trained with, as text (see :data:`PYTHON_KEYS`)."""
    table = _table("[python]", raw)
    _check_keys("[python]", table, PYTHON_KEYS)
    for key, value in table.items():
        if not isinstance(value, str):
            raise ConfigError(f"[python] {key} = {value!r}: must be a string")
    return dict(table)


def _parse_keys(raw: Any) -> dict[str, str]:
    """``[keys]``: your own hyperparameters, ``name = "vmapped"`` (numbers) or ``name = "static"`` (any value)."""
    table = _table("[keys]", raw)
    for name in table:
        if name in AXIS_KEYS or name == "factory":
            raise ConfigError(f"[keys] {name} is already a jaxnets key; declare only keys of your own")
    try:
        return variants_lib.check_extra_keys(table)
    except ValueError as e:
        raise ConfigError(f"[keys]: {str(e).removeprefix('extra_keys: ')}") from None


def _parse_factory(raw: Any, section: str, key: str) -> str | None:
    """A function named in ``section`` ``key`` (``[model] factory``, or ``[train] optimizer`` when it holds a
    colon): ``"file.py:function"`` (relative to the config's folder) or ``"module:function"``; ``None`` when
    not given (or, for the optimizer, a built-in name)."""
    value = _table(section, raw).get(key)
    if value is None or (key == "optimizer" and not (isinstance(value, str) and ":" in value)):
        return None
    if not isinstance(value, str) or value.count(":") != 1 or not all(value.split(":")):
        raise ConfigError(f"{section} {key} = {value!r}: give \"file.py:function\" (relative to the config's "
                          "folder) or \"package.module:function\"")
    return value


def loads(text: str, *, base_dir: str | Path | None = None) -> Config:
    """Parse TOML text into a checked :class:`Config` (TOML syntax errors become :class:`ConfigError`).

    Args:
      text: the config file's text.
      base_dir: the folder a relative ``[data] path`` is relative to (the config file's folder; ``None``:
        the current directory), as in :func:`parse`.

    Returns:
      The checked :class:`Config`.

    Raises:
      ConfigError: the text is not valid TOML, or :func:`parse` rejects it.
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"not valid TOML: {e}") from None
    return parse(raw, base_dir=base_dir)


def read_text(path: str | Path) -> str:
    """The text of config file ``path``.

    Raises:
      ConfigError: it cannot be read, or it is not UTF-8 text (TOML's encoding), naming the file.
    """
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config file {str(path)!r}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {str(path)!r} is not UTF-8 text (byte {e.start}: {e.reason}); "
                          "save it as UTF-8") from None


def load(path: str | Path) -> Config:
    """Read and check a config file.

    Args:
      path: the config file (TOML). A relative ``[data] path`` in it is relative to the config file's
        folder.

    Returns:
      The checked :class:`Config`.

    Raises:
      ConfigError: naming the file, if it is missing (cannot be read) or bad.
    """
    path = Path(path)
    text = read_text(path)
    try:
        return loads(text, base_dir=path.parent)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def data_kwargs(cfg: Config) -> tuple[str, dict[str, Any]]:
    """The data set's loader arguments from the ``[data]`` table.

    Args:
      cfg: a checked config.

    Returns:
      ``(name, keyword arguments)`` for :func:`jaxnets.data.load`; with ``[data] path``:
      ``(the resolved file path, keyword arguments)`` for :func:`jaxnets.data.load_file`.
    """
    if cfg.data_path is not None:
        return str(cfg.data_path), {k: v for k, v in cfg.data.items() if k not in ("path", "sha256")}
    kwargs = {k: v for k, v in cfg.data.items() if k != "name"}
    return cfg.data["name"], kwargs

