"""Variant rows: defaults, validation errors, static groups, stacking."""

import numpy as np
import pytest

from jaxnets import variants


def test_defaults_and_canonical_names():
    row = variants.normalize({"init": "kaiming_normal", "hidden": [32, 16]}, 0, "mse")
    assert row["init"] == "he_normal" and row["hidden"] == (32, 16) and row["loss"] == "mse"
    assert set(row) == set(variants.KEYS)


@pytest.mark.parametrize("bad, match", [
    ({"hidden": [0]}, "hidden must be a list of positive integers"),
    ({"hidden": "64"}, "hidden must be a list"),
    ({"steps": 0}, "steps must be positive"),
    ({"steps": 1.5}, "steps must be an integer"),
    ({"seed": True}, "seed must be an integer"),
    ({"b2": 1.0}, r"b2 must be in \[0, 1\)"),
    ({"init_scale": -1.0}, "init_scale must be >= 0"),
    ({"learning_rate": float("nan")}, "learning_rate is NaN"),
    ({"learning_rate": float("inf")}, "learning_rate must be finite, got inf"),
    ({"weight_decay": float("inf")}, "weight_decay must be finite"),
    ({"steps": 10**12}, "steps must be at most 2,147,483,647, got 1,000,000,000,000"),
    ({"early_stopping_patience": 2**31}, "early_stopping_patience must be at most 2,147,483,647"),
    ({"seed": 2**32}, "seed must be at most 4,294,967,295"),
    ({"data_seed": 10**12}, "data_seed must be at most 4,294,967,295"),
    ({"cell": "rnn"}, "unknown RNN cell"),
    ({"loss": "hinge"}, "unknown loss"),
])
def test_validation_errors_name_the_problem(bad, match):
    with pytest.raises(ValueError, match=r"variant 3: " + match):
        variants.normalize(bad, 3, "mse")


def test_the_largest_representable_integers_are_accepted():
    row = variants.normalize({"steps": 2**31 - 1, "eval_every": 2**31 - 1, "seed": 2**32 - 1}, 0, "mse")
    spec = variants.group([row])[0].spec
    assert spec.steps == 2**31 - 1 and variants.stack(spec, [row])["seed"][0] == 2**32 - 1


def test_groups_split_on_static_keys_only():
    rows = [variants.normalize(v, i, "mse") for i, v in enumerate([
        {"activation": "relu"}, {"activation": "tanh", "learning_rate": 0.1}, {"hidden": [8]},
        {"activation": "elu", "seed": 3, "dropout": 0.5},
    ])]
    groups = variants.group(rows)
    assert [g.indices for g in groups] == [(0, 1, 3), (2,)]
    spec = groups[0].spec
    assert spec.activations == ("tanh", "relu", "elu")  # registry order
    assert spec.use_dropout and not spec.use_l2 and not spec.use_clip
    hyper = variants.stack(spec, groups[0].rows)
    np.testing.assert_array_equal(hyper["activation"], [1, 0, 2])
    np.testing.assert_allclose(hyper["learning_rate"], [1e-3, 0.1, 1e-3])
    assert hyper["seed"].dtype == np.uint32 and hyper["activation"].dtype == np.int32
    assert spec.n_evals == 21 and spec.eval_steps[-1] == 1000


def test_eval_steps_end_at_steps():
    row = variants.normalize({"steps": 95, "eval_every": 30}, 0, "mse")
    spec = variants.group([row])[0].spec
    np.testing.assert_array_equal(spec.eval_steps, [0, 30, 60, 90, 95])
