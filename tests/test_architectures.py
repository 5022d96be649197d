"""Architectures as data (issue 27): MLP variants of different widths and depths in ONE compiled program."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets import architectures, data, engine, initializers
from jaxnets import variants as variants_lib
from jaxnets.models import MLP

HIDDEN = [[16], [32], [64], [16, 16], [32, 32], [64, 64], [32, 32, 32], [64, 64, 64]]


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


def _rows(hiddens, **kw):
    loss = "sparse_categorical_crossentropy"
    return [variants_lib.normalize({"hidden": h, "loss": loss, **kw}, i) for i, h in enumerate(hiddens)]


# -- grouping ---------------------------------------------------------------------------------------------
def test_mix_true_makes_one_group_at_the_padded_shape():
    rows = _rows(HIDDEN)
    (g,) = variants_lib.group(rows, mix=True)
    assert g.spec.hidden == (64, 64, 64) and g.spec.mixed
    assert g.spec.architectures == tuple(tuple(h) for h in HIDDEN)
    assert [r["hidden"] for r in g.rows] == [tuple(h) for h in HIDDEN]  # rows keep their own lists
    hp = variants_lib.stack(g.spec, g.rows)
    assert hp["widths"].dtype == np.int32 and hp["widths"].shape == (8, 3)
    assert hp["widths"][3].tolist() == [16, 16, 0]
    assert len(variants_lib.group(rows, mix=False)) == 8
    assert not variants_lib.group(rows[:1], mix=True)[0].spec.mixed  # one architecture: nothing to mix


COSTS = architectures.Costs((64,), 10, n_val=359, n_eval_train=1024, compile_macs=4.5e10)


def test_auto_rule_weighs_compilations_against_the_padding():
    rows = _rows(HIDDEN * 4, steps=300)  # N = 32: 4 variants per architecture
    mixed, split = architectures.plan_costs(rows, COSTS)
    examples = 3 * 300 * 128 + 7 * (359 + 3 * 1024)  # 7 evaluations (every 50 steps and step 0)
    own = sum(architectures.mlp_macs(h, 64, 10) for h in HIDDEN)
    assert mixed == pytest.approx(4.5e10 + 32 * architectures.mlp_macs((64, 64, 64), 64, 10) * examples)
    assert split == pytest.approx(8 * 4.5e10 + 4 * own * examples)
    assert architectures.worth_mixing(rows, COSTS)  # short runs: 7 compilations saved outweigh the padding
    assert len(variants_lib.group(rows, mix="auto", costs=COSTS)) == 1
    long = _rows(HIDDEN * 16, steps=3000)  # N = 128, long: the padding (2.6x the real work) outweighs them
    assert not architectures.worth_mixing(long, COSTS)
    assert len(variants_lib.group(long, mix="auto", costs=COSTS)) == 8
    free = dataclasses.replace(COSTS, compile_macs=0.0)  # compilations free: only equal work mixes
    assert not architectures.worth_mixing(rows, free)
    assert architectures.worth_mixing(_rows([[64], [64, 64]] * 2, kind="mlp"), COSTS)
    with pytest.raises(ValueError, match="costs"):
        variants_lib.group(rows, mix="auto")


def test_macs_of_each_kind():
    rnn = variants_lib.normalize({"kind": "rnn", "cell": "lstm", "hidden": [16, 8]}, 0, "mse")
    assert architectures.macs(rnn, (8, 5), 10) == 8 * 4 * 16 * (5 + 16) + 8 * 4 * 8 * (16 + 8) + 8 * 10
    assert architectures.macs(rnn, (8, 5), 10, many_to_many=True) == 8 * 4 * 16 * 21 + 8 * 4 * 8 * 24 + 8 * 8 * 10
    cnn = variants_lib.normalize({"kind": "cnn", "hidden": [16, 32], "dense": [64]}, 0, "mse")
    assert architectures.macs(cnn, (8, 8, 1), 10) == 64 * 9 * 16 + 16 * 9 * 16 * 32 + 4 * 32 * 64 + 64 * 10
    assert architectures.padded([(8, 32), (16, 16)], "cnn") == (16, 32)
    assert architectures.padded([(8, 32), (16,)], "rnn") == (32, 32)


def test_only_eligible_variants_mix():
    assert len(variants_lib.group(_rows([[16], [32]], norm="layer"), mix=True)) == 2
    assert len(variants_lib.group(_rows([[8, 16], [16, 8]], kind="cnn"), mix=True)) == 1
    assert len(variants_lib.group(_rows([[8, 16], [16]], kind="cnn"), mix=True)) == 2  # pooling: same depth only
    assert len(variants_lib.group(_rows([[8, 16], [16]], kind="rnn"), mix=True)) == 1
    mixed = _rows([[16], [32]]) + _rows([[16], [32]], learning_rate=0.1, batch_size=64)
    assert [len(g.indices) for g in variants_lib.group(mixed, mix=True)] == [2, 2]


def test_options_validate_mix_architectures():
    assert engine.Options().mix_architectures == "auto"
    with pytest.raises(ValueError, match="mix_architectures"):
        engine.Options(mix_architectures="yes")


# -- initialization ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", initializers.NAMES)
@pytest.mark.parametrize("real", [(20, 12), (12, 20)])
def test_embedded_init_is_the_real_shapes_draw(name, real):
    key = jax.random.key(3)
    own = np.asarray(initializers.get(name, 1.5)(key, real))
    big = np.asarray(initializers.embedded(initializers.index(name), 1.5)(key, (64, 48), *real))
    if name == "orthogonal":  # one QR of the zero-padded matrix: the real Q to float32 rounding
        np.testing.assert_allclose(big[: real[0], : real[1]], own, atol=1e-6)
    else:
        np.testing.assert_array_equal(big[: real[0], : real[1]], own)
    assert not big[real[0]:].any() and not big[:, real[1]:].any()


@pytest.mark.parametrize("name", ["glorot_uniform", "he_normal", "lecun_uniform", "uniform", "orthogonal"])
def test_masked_narrow_layer_has_its_own_fan_in_variance(digits, name):
    rows = _rows([[256, 128], [512, 512]], init=name)
    (g,) = variants_lib.group(rows, mix=True)
    prog = engine.Program(g, digits)
    hp = prog.stack()
    params = jax.jit(lambda h: jax.lax.map(prog.init_params, h))(hp)[0]
    k1 = np.asarray(params["layer_01"]["kernel"][0])  # variant 0: [256, 128] inside [512, 512]
    want = initializers.std_formula(name, 256, 128) ** 2
    assert abs(k1[:256, :128].var() / want - 1) < 0.05
    assert not k1[256:].any() and not k1[:, 128:].any()
    k0 = np.asarray(params["layer_00"]["kernel"][0])  # [64, 256] inside [64, 512]
    assert abs(k0[:, :256].var() / initializers.std_formula(name, 64, 256) ** 2 - 1) < 0.05
    out = np.asarray(params["output"]["kernel"][0])  # reads 128 units
    assert not out[128:].any()


# -- training ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer", ["adam", "sgd", "momentum", "rmsprop"])
def test_padded_entries_stay_zero_after_training(digits, optimizer):
    vs = [{"hidden": h, "optimizer": optimizer, "steps": 15, "eval_every": 15, "weight_decay": 1e-3,
           "clip_norm": 0.5, "l2": 1e-4, "dropout": 0.1, "learning_rate": 0.05} for h in ([8], [24, 16])]
    r = engine.train(vs, digits, options=engine.Options(mix_architectures=True))
    assert len(r.groups) == 1
    p = jax.tree.map(np.asarray, r.groups[0].params)
    assert not p["layer_00"]["kernel"][0][:, 8:].any() and not p["layer_00"]["bias"][0][8:].any()
    assert not p["layer_01"]["kernel"][0].any() and not p["layer_01"]["bias"][0].any()
    assert not p["output"]["kernel"][0][8:].any()
    assert not p["layer_00"]["kernel"][1][:, 24:].any() and not p["layer_01"]["kernel"][1][24:].any()
    assert not p["layer_01"]["kernel"][1][:, 16:].any() and not p["output"]["kernel"][1][16:].any()
    assert np.isfinite(r.final("val_loss")).all() and (r.status == "ok").all()


def _grid(seeds, **kw):
    return [{"hidden": h, "activation": a, "seed": s, **kw} for h in HIDDEN for a in ("relu", "tanh")
            for s in range(seeds)]


def _check_mixed_equals_alone(ds, vs, rtol, history_rtol=1e-3):
    mixed = engine.train(vs, ds, options=engine.Options(mix_architectures=True))
    alone = engine.train(vs, ds, options=engine.Options(mix_architectures=False))
    assert len(mixed.groups) == 1 and len(alone.groups) == len({tuple(v["hidden"]) for v in vs})
    np.testing.assert_allclose(mixed.final("val_loss"), alone.final("val_loss"), rtol=rtol)
    # the history: own layers, the output layer, then NaN, as the variant's own group reports them
    for key in ("grad_norm", "dead_fraction", "saturated_fraction", "act_std"):
        a, b = mixed.history[key], alone.history[key]
        width = min(a.shape[-1], b.shape[-1])
        np.testing.assert_array_equal(np.isnan(a[..., :width]), np.isnan(b[..., :width]))
        np.testing.assert_allclose(a[..., :width], b[..., :width], rtol=history_rtol, atol=1e-6)
    for i in range(len(vs)):
        assert mixed.layer_names(i) == alone.layer_names(i)
        assert mixed.rows[i]["hidden"] == tuple(vs[i]["hidden"])
    return mixed


def test_mixed_grid_equals_each_variant_alone(digits):
    vs = _grid(1, steps=20, eval_every=10)
    mixed = _check_mixed_equals_alone(digits, vs, rtol=1e-4)
    every = mixed.predict_all(digits.x_test, standardized=True)
    for i in (0, 5, 10, 15):
        one = mixed.predict(i, digits.x_test, standardized=True)
        np.testing.assert_allclose(every[i], one, rtol=1e-5, atol=1e-5)
        # sliced parameters in a plain MLP of the variant's own architecture
        own = engine.model(mixed.rows[i], digits).apply({"params": mixed.params(i)}, digits.x_test)
        np.testing.assert_allclose(np.asarray(own), one, rtol=1e-5, atol=1e-5)
        assert jax.tree.map(np.shape, mixed.params(i))["layer_00"]["kernel"] == (64, mixed.rows[i]["hidden"][0])


@pytest.mark.slow
def test_mixed_grid_equals_each_variant_alone_default_size(digits):
    vs = _grid(2)  # 1000 steps, an evaluation every 50: float32 rounding amplified by 1000 steps of training
    _check_mixed_equals_alone(digits, vs, rtol=1e-3, history_rtol=5e-2)


def test_masked_mlp_with_full_widths_is_the_plain_mlp(digits):
    x = jnp.asarray(digits.x_test[:32])
    plain = MLP(hidden=(32, 16), output_dim=10, kernel_init="he_normal")
    masked = MLP(hidden=(32, 32), output_dim=10, kernel_init=initializers.embedded(initializers.index("he_normal")),
                 widths=jnp.array([32, 16], jnp.int32))
    p = masked.init(jax.random.key(1), x)["params"]
    sliced = architectures.slice_mlp(p, (32, 16), ["layer_00", "layer_01", "output"])
    np.testing.assert_array_equal(np.asarray(plain.init(jax.random.key(1), x)["params"]["layer_01"]["kernel"]),
                                  np.asarray(sliced["layer_01"]["kernel"]))
    np.testing.assert_allclose(np.asarray(plain.apply({"params": sliced}, x)),
                               np.asarray(masked.apply({"params": p}, x)), rtol=1e-5, atol=1e-6)


def test_own_layers_puts_the_output_after_the_real_layers():
    v = jnp.array([1.0, 2.0, 3.0, 4.0])  # three hidden layers, then the output
    np.testing.assert_array_equal(np.asarray(architectures.own_layers(v, jnp.int32(1))), [1.0, 4.0, np.nan, np.nan])
    np.testing.assert_array_equal(np.asarray(architectures.own_layers(v, jnp.int32(3))), [1.0, 2.0, 3.0, 4.0])


def test_saved_mixed_result_loads_as_each_variants_own_network(digits, tmp_path):
    import jaxnets

    vs = [{"hidden": h, "steps": 5, "eval_every": 5} for h in ([8], [24, 16])]
    r = engine.train(vs, digits, options=engine.Options(mix_architectures=True))
    r.save(tmp_path)
    saved = jaxnets.load(tmp_path)
    for i in range(2):
        jax.tree.map(np.testing.assert_array_equal, saved.params(i), r.params(i))
        np.testing.assert_array_equal(saved.predict(i, digits.x_test, standardized=True),
                                      r.predict(i, digits.x_test, standardized=True))


# -- configs and the plan line ----------------------------------------------------------------------------
def _config(mix: str) -> str:
    return f"""
[data]
name = "digits"
[train]
steps = 5
eval_every = 5
[sweep]
method = "grid"
mix_architectures = {mix}
[sweep.axes]
hidden = {[list(h) for h in HIDDEN]}
activation = ["relu", "tanh"]
seed = [0, 1]
"""


@pytest.mark.parametrize(("mix", "n_groups"), [("true", 1), ("false", 8), ('"auto"', 1)])
def test_plan_line_says_which_architectures_share_a_program(mix, n_groups, tmp_path, capsys):
    from jaxnets import cli

    path = tmp_path / "c.toml"
    path.write_text(_config(mix))
    assert cli.main(["sweep", str(path), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert f"32 variants, {n_groups} static group(s)" in err
    assert ("group-000 trains hidden [16], [32], [64], [16, 16]" in err) == (n_groups == 1)


def test_config_refuses_a_bad_mix_value():
    from jaxnets import config

    with pytest.raises(config.ConfigError, match="mix_architectures"):
        config.loads(_config('"sometimes"'))
    pbt = _config("true").replace('method = "grid"', 'method = "pbt"\ninterval = 1')
    with pytest.raises(config.ConfigError, match="mix_architectures = true with method"):
        config.loads(pbt.replace("seed = [0, 1]", "learning_rate = [0.01, 0.1]"))


def test_pbt_never_trains_mixed_groups(digits):
    from jaxnets import population

    vs = [{"hidden": h, "learning_rate": lr, "steps": 4, "eval_every": 2} for h in ([64], [48]) for lr in (0.01, 0.1)]
    pbt = population.PBT(interval=1, spaces={"learning_rate": ("range", 1e-4, 1.0, True)})
    with pytest.raises(ValueError, match="mix_architectures"):
        engine.train(vs, digits, policy=pbt, options=engine.Options(mix_architectures=True))
    r = engine.train(vs, digits, policy=pbt)  # "auto" would mix these two; PBT splits them
    assert len(r.groups) == 2


@pytest.mark.parametrize("init", ["glorot_uniform", "orthogonal"])
def test_dropout_in_a_mixed_group_draws_the_variants_own_masks(digits, init):
    vs = [{"hidden": h, "dropout": 0.3, "steps": 10, "eval_every": 5, "seed": 3, "init": init}
          for h in ([8], [24, 16], [16])]
    mixed = engine.train(vs, digits, options=engine.Options(mix_architectures=True))
    alone = engine.train(vs, digits, options=engine.Options(mix_architectures=False))
    assert len(mixed.groups) == 1 and len(alone.groups) == 3
    np.testing.assert_allclose(mixed.final("val_loss"), alone.final("val_loss"), rtol=1e-5)


def test_your_own_model_masks_with_a_vmapped_width(digits):
    import flax.linen as nn

    from jaxnets.models import MaskedDense

    class Wide(nn.Module):
        hp: object
        max_width: int = 32

        @nn.compact
        def __call__(self, x, train: bool = False):
            n = self.hp["width"].astype(jnp.int32)
            on = jnp.arange(self.max_width) < n
            d = x.shape[-1]
            init = self.hp.masked_kernel_init
            h = MaskedDense(self.max_width, init, name="layer_00")(x, jnp.ones(d, bool), on, d, n)
            h = jnp.where(on[None, :], self.hp.activation(h), 0.0)
            self.sow("intermediates", "act", h)
            self.sow("intermediates", "units", on)
            return MaskedDense(10, init, name="output")(h, on, jnp.ones(10, bool), n, 10)

    rows = [{"width": w, "steps": 10, "eval_every": 10} for w in (8, 32)]
    r = engine.train(rows, digits, model=lambda hp: Wide(hp), extra_keys={"width": "vmapped"})
    assert len(r.groups) == 1
    k = np.asarray(r.params(0)["layer_00"]["kernel"])
    assert not k[:, 8:].any() and k[:, :8].all()
    plain = [{"hidden": [w], "steps": 10, "eval_every": 10} for w in (8, 32)]
    alone = engine.train(plain, digits, options=engine.Options(mix_architectures=False))
    np.testing.assert_allclose(r.final("val_loss"), alone.final("val_loss"), rtol=1e-4)  # same names, same keys


def test_a_mixed_program_is_reused_for_other_architectures_of_its_padded_shape(digits):
    from jaxnets import events

    compiled = []
    progress = lambda e: compiled.append(e) if isinstance(e, events.Compiling) else None  # noqa: E731
    opts = engine.Options(mix_architectures=True)
    engine.train([{"hidden": h, "steps": 4, "eval_every": 2} for h in ([64], [16])], digits, options=opts,
                 progress=progress)
    n = len(compiled)
    r = engine.train([{"hidden": h, "steps": 4, "eval_every": 2} for h in ([64], [32])], digits, options=opts,
                     progress=progress)
    assert n >= 1 and len(compiled) == n  # the widths are data: nothing compiles again
    assert r.rows[1]["hidden"] == (32,) and r.params(1)["layer_00"]["kernel"].shape == (64, 32)
