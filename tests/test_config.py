"""Tests for jaxnets.config (and the data-aware checks of sweep.plan): every error path, before compute."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest

from jaxnets import config, sweep
from jaxnets.config import ConfigError

BASE = {
    "data": {"name": "iris"},
    "model": {"kind": "mlp", "hidden": [8], "activation": "relu", "init": "glorot_uniform"},
    "train": {"optimizer": "adam", "learning_rate": 1e-3, "steps": 20, "batch_size": 16, "eval_every": 10},
    "sweep": {"method": "grid", "axes": {"activation": ["tanh", "relu"], "seed": [0, 1]}},
}


def _with(path: str, value, base: dict | None = None) -> dict:
    """A copy of BASE with ``value`` at the dotted ``path`` (``...`` deletes the key)."""
    raw = copy.deepcopy(base or BASE)
    *parents, last = path.split(".")
    node = raw
    for key in parents:
        node = node.setdefault(key, {})
    if value is ...:
        node.pop(last, None)
    else:
        node[last] = value
    return raw


def _error(raw: dict) -> str:
    with pytest.raises(ConfigError) as info:
        config.parse(raw)
    return str(info.value)


# ------------------------------------------------------------------------------------------ valid configs


def test_valid_config_maps_to_engine_keys():
    raw = _with("train.early_stopping_patience", 3)
    cfg = config.parse(raw)
    assert cfg.base["patience"] == 3 and "early_stopping_patience" not in cfg.base
    assert cfg.method == "grid" and [a.name for a in cfg.axes] == ["activation", "seed"]
    assert cfg.metric == "final_val_loss" and cfg.goal == "min" and cfg.seed == 0
    assert sweep.to_variant(cfg.base, {"early_stopping_patience": 5})["patience"] == 5


def test_issue_example_parses():
    text = """
        [data]
        name = "digits"
        [model]
        kind = "mlp"
        hidden = [64, 64, 64]
        activation = "relu"
        init = "glorot_uniform"
        [train]
        loss = "sparse_categorical_crossentropy"
        optimizer = "adam"
        learning_rate = 1e-3
        steps = 1000
        batch_size = 128
        eval_every = 50
        early_stopping_patience = 0
        weight_decay = 0.0
        l2 = 0.0
        dropout = 0.0
        [sweep]
        method = "random"
        trials = 64
        batch = 16
        metric = "val_loss"
        goal = "min"
        [sweep.axes]
        activation = ["sigmoid", "tanh", "relu"]
        init = ["uniform", "glorot_uniform", "he_normal"]
        learning_rate = { low = 1e-4, high = 1e-1, log = true }
        seed = [0, 1, 2]
    """
    cfg = config.loads(text)
    lr = cfg.axes[2]
    assert lr.is_range and lr.log and not lr.integer and (lr.low, lr.high) == (1e-4, 1e-1)


def test_metric_aliases_and_default_goal():
    cfg = config.parse(_with("sweep.metric", "val_accuracy"))
    assert (cfg.metric, cfg.goal) == ("val_accuracy", "max")
    assert config.parse(_with("sweep.metric", "train_loss")).metric == "final_train_loss"


def test_integer_range_samples_ints():
    raw = _with("sweep.method", "random")
    raw = _with("sweep.axes", {"steps": {"low": 10, "high": 30}, "dropout": {"low": 0, "high": 0.5}}, raw)
    steps, dropout = config.parse(raw).axes
    assert steps.integer and (steps.low, steps.high) == (10, 30)
    assert not dropout.integer and isinstance(dropout.low, float)


def test_bundled_demo_config_is_valid():
    from jaxnets import cli

    cfg = config.load(cli.demo_config())
    p = sweep.plan(cfg)
    assert p.n_units == 1, "the demo grid must be one static group (one compile)"
    assert p.n_variants == len(sweep.grid_points(cfg.axes)) >= 24


# ------------------------------------------------------------------------------------------ error paths

ERRORS = [
    # (dotted path, value, substrings the message must contain)
    ("colour", "red", ["unknown key", "'colour'", "valid keys", "data", "sweep"]),
    ("seed", -1, ["seed", "-1", "non-negative"]),
    ("data", "iris", ["[data] must be a table"]),
    ("data.name", ..., ["missing key 'name'", "digits", "spirals"]),
    ("data.name", "mnist", ["'mnist'", "valid values", "digits", "iris"]),
    ("data.seed", 1.5, ["[data] seed", "1.5", "integer"]),
    ("data.n_train", 0, ["[data] n_train", "positive integer"]),
    ("data.val_fraction", 1.5, ["[data] val_fraction", "(0, 1)"]),
    ("model.depth", 3, ["[model]", "'depth'", "valid keys", "hidden", "init_scale"]),
    ("model.kind", "transformer", ["[model] kind", "'transformer'", "mlp, cnn, rnn"]),
    ("model.hidden", "64", ["[model] hidden", "'64'", "list of positive integers"]),
    ("model.hidden", [64, -1], ["[model] hidden", "positive integers"]),
    ("model.cell", "transformer", ["[model] cell", "'transformer'", "lstm"]),
    ("model.activation", "rleu", ["[model] activation", "'rleu'", "valid activations", "relu", "gelu"]),
    ("model.init", "xavier", ["[model] init", "'xavier'", "glorot_uniform"]),
    ("model.init_scale", "big", ["[model] init_scale", "'big'", "number"]),
    ("train.epochs", 3, ["[train]", "'epochs'", "valid keys", "steps", "early_stopping_patience"]),
    ("train.optimizer", "adagrad", ["[train] optimizer", "'adagrad'", "sgd", "rmsprop"]),
    ("train.loss", "hinge", ["[train] loss", "'hinge'", "mse"]),
    ("train.learning_rate", 0, ["[train] learning_rate", "> 0"]),
    ("train.learning_rate", "fast", ["[train] learning_rate", "'fast'", "number"]),
    ("train.steps", 10.5, ["[train] steps", "10.5", "integer"]),
    ("train.batch_size", 0, ["[train] batch_size", "positive"]),
    ("train.early_stopping_patience", -2, ["[train] early_stopping_patience", ">= 0"]),
    ("train.dropout", 1.0, ["[train] dropout", "[0, 1)"]),
    ("train.momentum", True, ["[train] momentum", "True", "number"]),
    ("sweep", [1], ["[sweep] must be a table"]),
    ("sweep.method", "hyperband", ["[sweep] method", "'hyperband'", "grid, random, bayesian"]),
    ("sweep.trials", 0, ["[sweep] trials", "positive integer"]),
    ("sweep.batch", 2.5, ["[sweep] batch", "positive integer"]),
    ("sweep.metric", "loss", ["[sweep] metric", "'loss'", "val_loss", "val_accuracy"]),
    ("sweep.goal", "minimize", ["[sweep] goal", "'minimize'", "min, max"]),
    ("sweep.strategy", "x", ["[sweep]", "'strategy'", "valid keys", "method"]),
    ("sweep.axes", [1, 2], ["[sweep.axes] must be a table"]),
    ("sweep.axes.colour", ["red"], ["[sweep.axes]", "'colour'", "valid keys", "learning_rate", "seed"]),
    ("sweep.axes.activation", "relu", ["[sweep.axes] activation", "list of values", "range table"]),
    ("sweep.axes.activation", [], ["[sweep.axes] activation", "empty"]),
    ("sweep.axes.activation", ["relu", "rleu"], ["[sweep.axes] activation[1]", "'rleu'", "valid activations"]),
    ("sweep.axes.activation", ["relu", "relu"], ["[sweep.axes] activation", "listed twice"]),
    ("sweep.axes.seed", [0, -1], ["[sweep.axes] seed[1]", ">= 0"]),
    ("sweep.axes.hidden", [[8], "x"], ["[sweep.axes] hidden[1]", "list of positive integers"]),
    ("sweep.axes.learning_rate", {"low": 1e-4, "high": 1e-1},
     ["[sweep.axes] learning_rate is a range table", "grid", "give a list", "random"]),
]


@pytest.mark.parametrize(("path", "value", "expected"), ERRORS, ids=[f"{p}={v!r}" for p, v, _ in ERRORS])
def test_error_names_key_value_and_valid_options(path, value, expected):
    message = _error(_with(path, value))
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"


RANGE_ERRORS = [
    ({"low": 1e-4}, ["missing 'high'"]),
    ({"low": 1e-4, "high": 1e-1, "step": 2}, ["'step'", "valid keys: low, high, log"]),
    ({"low": "a", "high": 1.0}, ["low = 'a'", "finite number"]),
    ({"low": 0.1, "high": 0.01}, ["low must be below high"]),
    ({"low": 0.0, "high": 0.1, "log": True}, ["log = true needs low > 0"]),
    ({"low": 1e-4, "high": 0.1, "log": "yes"}, ["log = 'yes'", "true or false"]),
    ({"low": 1e-4, "high": 5.0, "log": True}, []),  # valid for learning_rate: no error expected
]


@pytest.mark.parametrize(("table", "expected"), RANGE_ERRORS)
def test_range_table_errors(table, expected):
    raw = _with("sweep.method", "random")
    raw = _with("sweep.axes.learning_rate", table, raw)
    if not expected:
        config.parse(raw)
        return
    message = _error(raw)
    assert "[sweep.axes] learning_rate" in message
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"


def test_range_errors_specific_to_keys():
    raw = _with("sweep.method", "random")
    msg = _error(_with("sweep.axes", {"activation": {"low": 0, "high": 1}}, raw))
    assert "numeric key" in msg and "'activation'" in msg and "learning_rate" in msg
    msg = _error(_with("sweep.axes", {"steps": {"low": 10, "high": 20.5}}, raw))
    assert "integer key" in msg and "20.5" in msg
    msg = _error(_with("sweep.axes", {"dropout": {"low": 0.0, "high": 1.5}}, raw))
    assert "[sweep.axes] dropout bound = 1.5" in msg and "[0, 1)" in msg


def test_sampling_methods_need_axes():
    msg = _error(_with("sweep", {"method": "bayesian"}))
    assert "bayesian" in msg and "[sweep.axes] is empty" in msg


def test_val_accuracy_needs_a_classification_loss():
    raw = _with("train.loss", "mse", _with("sweep.metric", "val_accuracy"))
    msg = _error(raw)
    assert "val_accuracy" in msg and "'mse'" in msg


def test_model_keys_checked_together():
    msg = _error(_with("model", {"kind": "cnn", "hidden": []}))
    assert "[model]/[train]" in msg and "hidden" in msg and "empty" in msg


def test_axis_values_checked_on_top_of_fixed_keys():
    raw = _with("model.kind", "cnn", _with("sweep.axes", {"hidden": [[8], []]}))
    assert "[sweep.axes] hidden[1]" in _error(raw)


def test_toml_syntax_and_missing_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.loads("[data\nname = 1")
    with pytest.raises(ConfigError, match="cannot read config file"):
        config.load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text('[data]\nname = "mnist"\n')
    with pytest.raises(ConfigError, match=r"bad\.toml.*'mnist'"):
        config.load(bad)


# ------------------------------------------------------------- checks that need the data set (sweep.plan)

PLAN_ERRORS = [
    (_with("data.length", 5), ["[data]", "'length'", "iris", "n_train"]),
    (_with("data.n_train", 10_000), ["[data]", "n_train", "1..90"]),
    (_with("train.loss", "binary_crossentropy"), ["binary_crossentropy", "3 classes", "iris"]),
    (_with("model.kind", "cnn"), ["[model]/[train]: ", "'cnn'", "images", "'_image'"]),
    (_with("train.batch_size", 500), ["batch_size 500", "90 training examples"]),
    (_with("sweep.axes", {"batch_size": [16, 1000]}), ["batch_size = 1000", "batch_size 1000"]),
    (_with("sweep", {"method": "bayesian", "trials": 4, "axes": {"kind": ["mlp", "rnn"]}}),
     ["kind = 'rnn'", "sequences"]),
]


@pytest.mark.parametrize(("raw", "expected"), PLAN_ERRORS)
def test_plan_errors_before_compute(raw, expected, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("trained during validation")

    monkeypatch.setattr(sweep.engine, "train", no_training)
    cfg = config.parse(raw)
    with pytest.raises(ConfigError) as info:
        sweep.plan(cfg)
    for part in expected:
        assert part in str(info.value), f"{part!r} not in {str(info.value)!r}"


def test_plan_of_bayesian_counts_rounds():
    raw = _with("sweep", {"method": "bayesian", "trials": 5, "batch": 2,
                          "axes": {"learning_rate": {"low": 1e-3, "high": 1e-1, "log": True}}})
    p = sweep.plan(config.parse(raw))
    assert p.units is None and p.n_units == 3 and p.n_variants == 5 and p.evals == 3 * 2
    assert math.isclose(p.config.axes[0].high, 0.1)
