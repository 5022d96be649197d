"""Issue 26: the researcher's path — ``jaxnets.search`` from Python, honest tables, no silent no-ops, one
compilation per program whatever the factory object."""

import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import pytest

import jaxnets
from jaxnets import cli, config, data, engine, events, store, sweep, variants

RNG = np.random.default_rng(0)
X = RNG.normal(size=(240, 5)).astype(np.float32)
Y = (X @ RNG.normal(size=5) + 0.1 * RNG.normal(size=240)).astype(np.float32)
REG = data.from_arrays(X, Y, task="regression")
IRIS = data.load("iris")
BASE = {"steps": 40, "eval_every": 10, "batch_size": 32}


class Residual(nn.Module):
    """A residual MLP with LayerNorm, heterogeneous through hp."""
    hp: object

    @nn.compact
    def __call__(self, x, train: bool = False):
        h = self.hp.activation(nn.Dense(16, kernel_init=self.hp.kernel_init)(x))
        h = h + self.hp.activation(nn.Dense(16)(nn.LayerNorm()(h)))
        return nn.Dense(1)(h)


def huber(outputs, y):
    d = (outputs - y.reshape(outputs.shape))[:, 0]
    return jnp.where(jnp.abs(d) < 1, 0.5 * d * d, jnp.abs(d) - 0.5)


SPACE = {"learning_rate": {"low": 1e-3, "high": 1e-1, "log": True}, "activation": ["tanh", "relu"]}


@pytest.mark.parametrize("method, settings", [
    ("random", {"trials": 6}),
    ("bayesian", {"trials": 6, "batch": 3}),
    ("asha", {"trials": 9, "eta": 3, "min_steps": 10}),
])
def test_search_from_python_with_your_model_loss_and_arrays(tmp_path, method, settings, capsys):
    out = tmp_path / method
    r = jaxnets.search(SPACE, REG, method=method, base=BASE, model=lambda hp: Residual(hp), loss=huber,
                       out=out, progress=False, **settings)
    n = settings["trials"]
    assert isinstance(r, engine.Result) and len(r.rows) == n
    table, _ = store.read_results(out)
    assert len(table) == n
    np.testing.assert_allclose(table["final_val_loss"], r.final("val_loss"), rtol=1e-6)
    if method == "asha":
        assert (r.status == "pruned").sum() == n - 1
    assert cli.main(["show", str(out)]) == 0
    assert f"of {n} variants" in capsys.readouterr().out
    cfg = config.loads(store.read_config_text(out))
    assert cfg.python["model"].startswith("test_search.test_search_from_python") and cfg.python["loss"].startswith(
        "test_search.huber")
    with pytest.raises(config.ConfigError, match=r"written by jaxnets.search\(\) from Python"):
        sweep.plan(cfg)


def test_search_grid_equals_the_engine_and_names_what_was_trained():
    space = {"learning_rate": [1e-2, 3e-2], "seed": [0, 1]}
    r = jaxnets.search(space, REG, base=BASE, model=lambda hp: Residual(hp), loss=huber, progress=False)
    rows = [{**BASE, "learning_rate": lr, "seed": s} for lr in (1e-2, 3e-2) for s in (0, 1)]
    alone = engine.train(rows, REG, model=lambda hp: Residual(hp), loss=huber)
    np.testing.assert_allclose(r.final("val_loss"), alone.final("val_loss"), rtol=1e-6)
    df = r.to_dataframe()
    assert set(df["kind"]) == {"custom:test_search_grid_equals_the_engine_and_names_what_was_trained.<locals>"
                               ".<lambda>"}
    assert set(df["loss"]) == {"huber"} and df["hidden"].isna().all()


def test_search_with_your_optimizer_and_inferred_keys():
    def per_layer(hp):
        return optax.multi_transform({"a": optax.sgd(hp["lr1"]), "b": optax.sgd(hp["lr2"])},
                                     lambda p: {k: "a" if k == "layer_00" else "b" for k in p})

    r = jaxnets.search({"lr1": [0.01, 0.1], "lr2": [0.01, 0.1]}, IRIS, base={**BASE, "hidden": [8]},
                       optimizer=per_layer, progress=False)
    assert len(r.rows) == 4 and set(r.to_dataframe()["optimizer"]) == {
        "custom:test_search_with_your_optimizer_and_inferred_keys.<locals>.per_layer"}


def test_search_refuses_bad_input_before_compute():
    with pytest.raises(config.ConfigError, match="activation"):
        jaxnets.search({"activation": ["tanh", "swish2"]}, IRIS, base=BASE, progress=False)
    with pytest.raises(config.ConfigError, match="method"):
        jaxnets.search({"seed": [0]}, IRIS, method="anneal", base=BASE, progress=False)
    with pytest.raises(TypeError, match="Dataset or a built-in name"):
        jaxnets.search({"seed": [0]}, {"x": X}, base=BASE, progress=False)


def test_the_same_code_in_a_new_lambda_compiles_once():
    """A Bayesian round re-creates its factory: the compiled program is reused (keyed by code, closure and the
    globals it reads), and a different closure value compiles anew."""
    rows = [{**BASE, "learning_rate": lr} for lr in (1e-2, 3e-2)]

    def make(width):
        class Net(nn.Module):
            hp: object

            @nn.compact
            def __call__(self, x, train: bool = False):
                return nn.Dense(1)(self.hp.activation(nn.Dense(width)(x)))
        return Net

    seen = []
    engine.clear_cache()
    Net = make(8)
    for factory in (lambda hp: Net(hp), lambda hp: Net(hp)):
        engine.train(rows, REG, model=factory, loss=huber, progress=seen.append)
    assert sum(isinstance(e, events.Compiling) for e in seen) == 1
    Net = make(16)  # a new class object: a new program, never the old one
    r = engine.train(rows, REG, model=lambda hp: Net(hp), loss=huber, progress=seen.append)
    assert sum(isinstance(e, events.Compiling) for e in seen) == 2
    assert r.params(0)["Dense_1"]["kernel"].shape == (5, 16)


def test_ties_on_the_ranking_metric_are_broken_by_validation_loss():
    t = pd.DataFrame({"variant": [0, 1, 2, 3], "val_accuracy": [1.0, 1.0, 0.9, 1.0],
                      "final_val_loss": [0.3, 0.1, 0.05, 0.2]})
    assert sweep.rank(t, "val_accuracy", "max")["variant"].tolist() == [1, 3, 0, 2]


# ------------------------------------------------------------------------------------------ silent no-ops


class IgnoresHp(nn.Module):
    hp: object

    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.Dense(3)(jnp.tanh(nn.Dense(8)(x)))


def _warned(fn) -> list[variants.UnusedKeyWarning]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    return [w.message for w in caught if isinstance(w.message, variants.UnusedKeyWarning)]


def test_a_swept_key_your_model_never_reads_is_a_warning():
    rows = [{**BASE, "activation": a, "init": i} for a in ("tanh", "relu") for i in ("he_normal", "lecun_normal")]
    warned = _warned(lambda: engine.check(rows, IRIS, model=lambda hp: IgnoresHp(hp)))
    assert {w.key for w in warned} == {"activation", "init"}
    assert "hp.activation" in str(next(w for w in warned if w.key == "activation"))
    assert warned[0].indices == (0, 1, 2, 3)
    assert not _warned(lambda: engine.check(rows, IRIS))  # the built-in MLP reads both


def test_a_builtin_optimizer_number_it_does_not_read_is_a_warning():
    rows = [{**BASE, "hidden": (8,), "optimizer": "adam", "momentum": m} for m in (0.5, 0.9)]
    (w,) = _warned(lambda: engine.check(rows, IRIS))
    assert w.key == "momentum" and "optimizer 'adam' does not read it" in str(w)


def test_a_user_key_nothing_reads_is_a_warning():
    rows = [{**BASE, "hidden": (8,), "temperature": t} for t in (1.0, 2.0)]
    (w,) = _warned(lambda: engine.check(rows, IRIS, model=lambda hp: IgnoresHp(hp),
                                        extra_keys={"temperature": "vmapped"}))
    assert w.key == "temperature" and "hp['temperature']" in str(w)


def test_building_a_custom_row_asks_for_its_factory():
    r = engine.train([{**BASE, "learning_rate": 1e-2}], IRIS, model=lambda hp: IgnoresHp(hp))
    assert r.rows[0]["kind"].startswith("custom:")
    with pytest.raises(variants.VariantError, match="trained with your own model factory; pass it again"):
        engine.model(r.rows[0], IRIS)
    again = engine.train(r.rows, IRIS, model=lambda hp: IgnoresHp(hp))  # with the factory: the same variant
    np.testing.assert_array_equal(again.final("val_loss"), r.final("val_loss"))


def test_a_flax_layer_branching_on_a_traced_rate_names_the_helper():
    class FlaxDropout(nn.Module):
        hp: object

        @nn.compact
        def __call__(self, x, train: bool = False):
            h = nn.Dropout(rate=self.hp["dropout"], deterministic=not train)(nn.Dense(8)(x))
            return nn.Dense(3)(h)

    rows = [{**BASE, "dropout": d} for d in (0.1, 0.2)]
    with pytest.raises(variants.VariantError, match=r"use hp.dropout\(x, rng\) instead of nn.Dropout"):
        engine.check(rows, IRIS, model=lambda hp: FlaxDropout(hp))


def test_code_key_falls_back_to_identity_for_what_it_cannot_hash():
    from jaxnets.engine.compile import code_key

    arr = np.zeros(3)
    f = lambda hp: arr  # noqa: E731 - an unhashable closure value
    assert code_key(f) is f
    g1, g2 = (lambda hp: hp), (lambda hp: hp)
    assert code_key(g1) == code_key(g2) and code_key(g1) is not g1
    assert code_key(jax.nn.relu) is not None


def test_search_again_reuses_the_saved_units_with_their_parameters(tmp_path):
    """The same search into the same directory trains nothing and returns the same variants: metrics from
    the units, parameters from their saved files, predictions equal."""
    kw = dict(method="random", trials=4, base=BASE, model=lambda hp: Residual(hp), loss=huber, out=tmp_path,
              progress=False)
    first = jaxnets.search(SPACE, REG, **kw)
    again = jaxnets.search(SPACE, REG, **kw)
    assert all(g.compile_s == 0 and g.run_s == 0 for g in again.groups)  # nothing trained
    np.testing.assert_array_equal(again.final("val_loss"), first.final("val_loss"))
    np.testing.assert_array_equal(again.status, first.status)
    x_raw = X[:7]
    np.testing.assert_allclose(again.predict_all(x_raw), first.predict_all(x_raw), rtol=1e-6, atol=1e-6)
    loaded = jaxnets.load(tmp_path, model=lambda hp: Residual(hp))
    np.testing.assert_allclose(loaded.predict(2, x_raw), first.predict(2, x_raw), rtol=1e-6, atol=1e-6)
