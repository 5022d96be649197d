"""Tests for jaxnets.config (and the data-aware checks of sweep.plan): every error path, before compute."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pandas as pd
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


def test_valid_config_keys_are_engine_keys():
    raw = _with("train.early_stopping_patience", 3)
    cfg = config.parse(raw)
    assert cfg.base["early_stopping_patience"] == 3 and "patience" not in cfg.base
    assert cfg.method == "grid" and [a.name for a in cfg.axes] == ["activation", "seed"]
    assert cfg.metric == "final_val_loss" and cfg.goal == "min" and cfg.seed == 0
    assert sweep.to_variant(cfg.base, {"early_stopping_patience": 5})["early_stopping_patience"] == 5


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
    latin = tmp_path / "latin.toml"
    latin.write_bytes('[data]\nname = "ïris"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin\.toml' is not UTF-8 text \(byte 15"):
        config.load(latin)
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


@pytest.mark.parametrize(("raw", "expected"), [
    (_with("train.steps", 10**12), "[train] steps = 1000000000000: steps must be at most 2,147,483,647"),
    (_with("sweep.axes", {"seed": [0, 10**12]}), "seed[1] = 1000000000000: seed must be at most 4,294,967,295"),
    (_with("sweep.axes", {"learning_rate": [0.1, float("inf")]}), "learning_rate must be finite, got inf"),
])
def test_values_beyond_what_the_programs_hold_are_config_errors(raw, expected):
    """int32 step counts, uint32 seeds, finite rates: refused when the config is read (so by --dry-run)."""
    with pytest.raises(ConfigError) as info:
        config.parse(raw)
    assert expected in str(info.value)


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


# ------------------------------------------------------------- your own data: [data] path / target

TINY_CSV_TOML = """\
[data]
path = "{path}"
target = "label"

[model]
hidden = [4]

[train]
steps = 4
batch_size = 8
eval_every = 2

[sweep.axes]
activation = ["tanh", "relu"]
"""


def _tiny_csv(path: Path, n: int = 60, shift: float = 0.0) -> Path:
    """A small binary CSV: features a, b, c and a text label column (yes / no)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = ["a,b,c,label"]
    for i in range(n):
        a, b, c = (i * 7 % 11) / 11 + shift, (i * 5 % 13) / 13, i % 3
        rows.append(f"{a:.4f},{b:.4f},{c},{'yes' if a + b > 1 else 'no'}")
    path.write_text("\n".join(rows) + "\n")
    return path


def _project(root: Path, data_path: str = "data/tiny.csv") -> Path:
    """``root/sweep.toml`` whose [data] path is ``data_path``, and the CSV at ``root/data/tiny.csv``."""
    _tiny_csv(root / "data" / "tiny.csv")
    cfg = root / "sweep.toml"
    cfg.write_text(TINY_CSV_TOML.format(path=data_path))
    return cfg


def test_data_path_is_relative_to_the_config_folder(tmp_path, monkeypatch):
    import hashlib

    cfg_file = _project(tmp_path / "project")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    csv = tmp_path / "project" / "data" / "tiny.csv"
    cfg = config.load(cfg_file)
    assert cfg.data_path == csv and cfg.data["path"] == "data/tiny.csv" and cfg.data["target"] == "label"
    assert cfg.data["sha256"] == hashlib.sha256(csv.read_bytes()).hexdigest()
    ds = sweep.load_data(cfg)
    assert (ds.name, ds.task, ds.input_shape, ds.n_train + ds.n_val + ds.n_test) == ("tiny", "binary", (3,), 60)
    assert config.data_kwargs(cfg) == (str(csv), {"target": "label"})
    text = cfg_file.read_text()
    assert config.loads(text, base_dir=cfg_file.parent).data_path == csv
    assert config.parse(cfg.raw, base_dir=str(cfg_file.parent)).data == cfg.data
    # without base_dir a relative path is relative to the current directory (here: no such file)
    other = config.loads(text)
    assert other.data_path == tmp_path / "elsewhere" / "data" / "tiny.csv" and "sha256" not in other.data
    with pytest.raises(ConfigError, match=r"\[data\] path = 'data/tiny.csv' \(.*elsewhere.*\): no such file"):
        sweep.plan(other)
    # an absolute path (normalized, '..' and all) works from anywhere
    absolute = tmp_path / "abs.toml"
    absolute.write_text(TINY_CSV_TOML.format(path=(tmp_path / "project" / "data" / ".." / "data" / "tiny.csv")))
    assert config.load(absolute).data_path == csv


def test_data_file_fingerprints_stable_across_folders_and_track_the_file(tmp_path):
    one, two = config.load(_project(tmp_path / "one")), config.load(_project(tmp_path / "two"))
    assert one.data_path != two.data_path
    fp_one = [u.fingerprint for u in sweep.plan(one).units]
    assert fp_one == [u.fingerprint for u in sweep.plan(two).units]  # same config text, same bytes
    _tiny_csv(tmp_path / "two" / "data" / "tiny.csv", shift=0.5)
    changed = config.load(tmp_path / "two" / "sweep.toml")
    assert changed.data["sha256"] != one.data["sha256"]
    assert [u.fingerprint for u in sweep.plan(changed).units] != fp_one  # retrained, not silently resumed
    assert config.parse(BASE).data == {"name": "iris"}  # built-in data sets: no hash, fingerprints unchanged


DATA_FILE_ERRORS = [
    # ([data] table, substrings the message must contain)
    ({"name": "iris", "path": "d.csv", "target": "y"}, ["[data]", "either name", "path", "not both", "'d.csv'"]),
    ({"path": "d.csv"}, ["[data] path = 'd.csv' is a CSV file", "target = ", "label column"]),
    ({"path": "d.csv", "target": ""}, ["[data] target = ''", "name of a column"]),
    ({"path": "d.xlsx"}, ["[data] path = 'd.xlsx'", "unsupported file type '.xlsx'", ".csv, .npz"]),
    ({"path": "d"}, ["unsupported file type '(no suffix)'"]),
    ({"path": "d.npz", "target": "y"}, ["[data] target = 'y'", "CSV files only"]),
    ({"path": 3}, ["[data] path = 3", "file path"]),
    ({"path": "d.csv", "target": "y", "n_train": 10},
     ["[data] (with path)", "'n_train'", "valid keys", "target", "standardize", "task"]),
    ({"path": "d.csv", "target": "y", "task": "classification"},
     ["[data] task", "'classification'", "binary, multiclass, regression"]),
    ({"path": "d.csv", "target": "y", "standardize": "yes"}, ["[data] standardize = 'yes'", "true or false"]),
    ({"path": "d.csv", "target": "y", "seed": -1}, ["[data] seed = -1", "non-negative"]),
    ({"path": "d.csv", "target": "y", "val_fraction": 0}, ["[data] val_fraction = 0", "(0, 1)"]),
    ({"name": "iris", "target": "y"}, ["[data] target = 'y'", "path", "built-in data set 'iris'"]),
    ({"seed": 1}, ["missing key 'name'", "digits", "path = "]),
]


@pytest.mark.parametrize(("table", "expected"), DATA_FILE_ERRORS, ids=[str(t) for t, _ in DATA_FILE_ERRORS])
def test_data_file_config_errors(table, expected):
    message = _error(_with("data", table))
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"


def test_data_file_problems_are_config_errors_before_compute(tmp_path, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("trained during validation")

    monkeypatch.setattr(sweep.engine, "train", no_training)
    csv = _tiny_csv(tmp_path / "tiny.csv")
    cases = [
        ({"path": "missing.csv", "target": "label"}, ["[data] path = 'missing.csv'", "missing.csv", "no such file"]),
        ({"path": "tiny.csv", "target": "y"}, ["no column 'y'", "columns: 'a', 'b', 'c', 'label'"]),
        ({"path": "tiny.csv", "target": "c"}, ["column 'label' is not numeric", "row 1 (line 2)", "'no'"]),
        ({"path": "tiny.csv", "target": "label", "task": "regression"}, ["column 'label' is not numeric"]),
    ]
    for table, expected in cases:
        cfg = config.parse(_with("data", table), base_dir=tmp_path)
        with pytest.raises(ConfigError) as info:
            sweep.plan(cfg)
        for part in expected:
            assert part in str(info.value), f"{part!r} not in {str(info.value)!r}"
    # [data] options reach data.load_file
    cfg = config.parse(_with("data", {"path": str(csv), "target": "label", "val_fraction": 0.5,
                                      "test_fraction": 0.25, "standardize": False, "seed": 3}))
    ds = sweep.load_data(cfg)
    assert (ds.n_val, ds.n_test, ds.n_train) == (30, 15, 15)
    assert ds.x_train[:, 2].max() == 2.0  # not standardized


def test_sweep_command_end_to_end_on_a_csv(tmp_path, monkeypatch, capsys):
    import pandas as pd

    from jaxnets import cli

    cfg_file = _project(tmp_path / "project")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # the config's [data] path is relative to its own folder
    out = tmp_path / "runs" / "tiny"
    assert cli.main(["sweep", str(cfg_file), "--out", str(out), "--quiet"]) == 0
    table = pd.read_csv(out / "results.csv")
    assert list(table["activation"]) == ["tanh", "relu"]
    assert set(table["status"]) <= {"ok", "early_stopped"} and table["final_val_loss"].notna().all()
    assert "results:" in capsys.readouterr().out
    # the same command again resumes: nothing is trained
    monkeypatch.setattr(sweep.engine, "train", lambda *a, **k: (_ for _ in ()).throw(AssertionError("trained")))
    assert cli.main(["sweep", str(cfg_file), "--out", str(out), "--quiet"]) == 0


# ------------------------------------------------------------------------------ your own model and keys

USER_MODEL = '''
import flax.linen as nn


class Net(nn.Module):
    hp: object

    @nn.compact
    def __call__(self, x):
        h = self.hp.activation(nn.Dense(self.hp["width"], kernel_init=self.hp.kernel_init)(x))
        return nn.Dense(3)(h) / self.hp["temperature"]


def make(hp):
    return Net(hp)
'''

USER_CONFIG = """
[data]
name = "iris"

[keys]
width = "static"
temperature = "vmapped"

[model]
factory = "models.py:make"

[train]
steps = 10
eval_every = 5
batch_size = 16

[sweep.axes]
temperature = [1.0, 4.0]
width = [4, 8]
"""


def test_config_sweeps_your_own_model_and_keys(tmp_path):
    from jaxnets import cli

    (tmp_path / "models.py").write_text(USER_MODEL)
    (tmp_path / "sweep.toml").write_text(USER_CONFIG)
    cfg = config.load(tmp_path / "sweep.toml")
    assert cfg.factory == "models.py:make" and cfg.extra_keys == {"width": "static", "temperature": "vmapped"}
    p = sweep.plan(cfg)
    assert p.n_units == 2  # width is static: two groups
    assert cli.main(["sweep", str(tmp_path / "sweep.toml"), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    table = pd.read_csv(tmp_path / "out" / "results.csv")
    assert len(table) == 4 and set(table["width"]) == {4, 8} and set(table["temperature"]) == {1.0, 4.0}


@pytest.mark.parametrize("edit, match", [
    (lambda t: t.replace('factory = "models.py:make"\n', ""), r"\[keys\] declares width, temperature.*factory"),
    (lambda t: t.replace("width = [4, 8]", 'width = [4, 8]\ndepth = [1, 2]'), r"unknown key\(s\) 'depth'"),
    (lambda t: t.replace("temperature = [1.0, 4.0]", 'temperature = ["hot"]'), "temperature must be a number"),
    (lambda t: t.replace('width = "static"', 'width = "sometimes"'), "kind must be one of vmapped, static"),
    (lambda t: t.replace('width = "static"', 'learning_rate = "vmapped"\nwidth = "static"'),
     "already a jaxnets key"),
    (lambda t: t.replace('"models.py:make"', '"models"'), r'give "file.py:function"'),
])
def test_bad_user_model_configs_are_refused(tmp_path, edit, match):
    (tmp_path / "models.py").write_text(USER_MODEL)
    with pytest.raises(config.ConfigError, match=match):
        config.loads(edit(USER_CONFIG), base_dir=tmp_path)


def test_a_missing_factory_file_is_refused_before_training(tmp_path):
    cfg = config.loads(USER_CONFIG, base_dir=tmp_path)  # no models.py there
    with pytest.raises(config.ConfigError, match="no file"):
        sweep.plan(cfg)
