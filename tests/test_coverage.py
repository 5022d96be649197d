"""Programs compiled for a coverage (``engine.Options(cover=...)``): calls that mix activations, initializers and
stages differently share one compiled program — a Bayesian search's rounds compile once."""

from __future__ import annotations

import math

import numpy as np
import pytest

import jaxnets
from jaxnets import config, data, engine, sweep
from jaxnets import variants as variants_lib

COVER = variants_lib.Coverage(activations=("tanh", "relu", "gelu"), initializers=("he_normal", "glorot_uniform"),
                              dropout=True, clip=True)


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


def _rows(acts, inits, dropouts):
    return [{"hidden": [16], "activation": a, "init": i, "dropout": d, "seed": k, "steps": 30, "eval_every": 15,
             "learning_rate": 1e-3} for k, (a, i, d) in enumerate(zip(acts, inits, dropouts, strict=True))]


def test_a_covered_group_holds_the_coverage_and_changes_no_number(digits):
    rows = _rows(["relu", "relu", "tanh"], ["he_normal"] * 3, [0.0, 0.0, 0.0])
    engine.clear_cache()
    covered = engine.train(rows, digits, options=engine.Options(cover=COVER))
    spec = covered.groups[0].spec
    assert spec.covered and spec.activations == ("tanh", "relu", "gelu")
    assert spec.initializers == ("glorot_uniform", "he_normal") and spec.use_dropout and spec.use_clip
    plain = engine.train(rows, digits)
    assert not plain.groups[0].spec.use_dropout and plain.groups[0].spec.activations == ("tanh", "relu")
    for key in ("val_loss", "train_loss", "grad_norm"):
        np.testing.assert_allclose(covered.history[key], plain.history[key], rtol=1e-5, atol=1e-7)


def test_calls_with_other_mixes_reuse_the_covered_program(digits):
    engine.clear_cache()
    opts = engine.Options(cover=COVER)
    first = engine.train(_rows(["relu", "tanh", "tanh"], ["he_normal"] * 3, [0.0, 0.1, 0.0]), digits, options=opts)
    again = engine.train(_rows(["gelu", "gelu", "relu"], ["glorot_uniform"] * 3, [0.0, 0.0, 0.0]), digits,
                         options=opts)
    assert first.groups[0].compile_s > 0 and again.groups[0].compile_s == 0
    plain = engine.train(_rows(["gelu", "gelu", "relu"], ["glorot_uniform"] * 3, [0.0, 0.0, 0.0]), digits)
    assert plain.groups[0].compile_s > 0  # its own, narrower program
    np.testing.assert_allclose(again.final("val_loss"), plain.final("val_loss"), rtol=1e-5)


def test_coverage_and_options_refuse_bad_values():
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        variants_lib.Coverage(activations=("swish",))
    with pytest.raises(ValueError, match="initializer"):
        variants_lib.Coverage(initializers=("kaiming",))
    with pytest.raises(TypeError, match="Coverage"):
        engine.Options(cover=("relu",))


def test_a_search_covers_what_its_axes_can_switch_on():
    axes = [config.Axis("activation", values=("relu", "tanh")), config.Axis("dropout", low=0.0, high=0.5),
            config.Axis("l2", values=(0.0,)), config.Axis("clip_norm", values=(1.0, math.inf)),
            config.Axis("learning_rate", low=1e-4, high=1e-1, log=True)]
    c = sweep.coverage(axes)
    assert c == variants_lib.Coverage(activations=("relu", "tanh"), dropout=True, clip=True)
    assert sweep.coverage([config.Axis("clip_norm", values=(math.inf,))]) == variants_lib.Coverage()


def test_bayesian_rounds_compile_once(digits):
    engine.clear_cache()
    space = {"learning_rate": {"low": 1e-4, "high": 1e-1, "log": True}, "activation": ["tanh", "relu", "gelu"],
             "dropout": [0.0, 0.2]}
    base = {"steps": 20, "eval_every": 10, "hidden": [16]}
    r = jaxnets.search(space, digits, method="bayesian", trials=12, batch=4, base=base, progress=False)
    compiles = [g.compile_s for g in r.groups]
    assert len(compiles) == 3 and compiles[0] > 0 and compiles[1:] == [0.0, 0.0]
    assert all(g.spec.activations == ("tanh", "relu", "gelu") for g in r.groups)
