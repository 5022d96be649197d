"""Your own model, loss, hyperparameters and data in the engine: the engine's guarantees hold for them too.

Vectorized == each variant alone (linen and NNX), divergence isolation, one compilation per group,
BatchNorm state per variant (updated in training, read-only in evaluation), diagnostics for any model,
user losses and metrics, declared user keys, predictions and the test split, and the public per-variant
program.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxnets import data, engine, events, variants
from jaxnets.result import METRICS

DIGITS = data.load("digits")
BASE = {"steps": 40, "eval_every": 20, "batch_size": 32}
# 8 mixed variants: 2 activations x 2 learning rates x 2 seeds, one with dropout
MIXED = [{**BASE, "activation": a, "learning_rate": lr, "seed": s, "init": "he_normal" if s else "glorot_uniform"}
         for a in ("relu", "tanh") for lr in (1e-3, 3e-3) for s in (0, 1)]
MIXED[3] = {**MIXED[3], "dropout": 0.2}


class LinenNet(nn.Module):
    """Dense -> LayerNorm -> act (recorded) -> dropout -> Dense, heterogeneous through hp."""

    hp: object
    width: int = 32

    @nn.compact
    def __call__(self, x, train: bool = False):
        z = nn.Dense(self.width, kernel_init=self.hp.kernel_init)(x)
        z = nn.LayerNorm()(z)
        h = self.hp.activation(z)
        self.sow("intermediates", "preact", z)
        self.sow("intermediates", "act", h)
        if train:
            h = self.hp.dropout(h, self.make_rng("dropout"))
        return nn.Dense(10, kernel_init=self.hp.kernel_init)(h)


class NnxNet(nnx.Module):
    def __init__(self, hp, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(64, 32, kernel_init=hp.kernel_init, rngs=rngs)
        self.norm = nnx.LayerNorm(32, rngs=rngs)
        self.head = nnx.Linear(32, 10, kernel_init=hp.kernel_init, rngs=rngs)
        self.fn = hp.activation

    def __call__(self, x):
        h = self.fn(self.norm(self.hidden(x)))
        self.sow(nnx.Intermediate, "act", h)
        return self.head(h)


class BatchNormNet(nn.Module):
    hp: object

    @nn.compact
    def __call__(self, x, train: bool = False):
        z = nn.BatchNorm(use_running_average=not train, momentum=0.9)(nn.Dense(16)(x))
        return nn.Dense(10)(self.hp.activation(z))


def linen_factory(hp):
    return LinenNet(hp)


def nnx_factory(hp, rngs):
    return NnxNet(hp, rngs)


def bn_factory(hp):
    return BatchNormNet(hp)


def _close(a, b, rtol=1e-4):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=1e-6)


@pytest.mark.parametrize("factory", [linen_factory, nnx_factory], ids=["linen", "nnx"])
def test_user_model_vectorized_equals_alone(factory):
    together = engine.train(MIXED, DIGITS, model=factory)
    assert len(together.groups) == 1 and np.all(together.status == "ok")
    assert np.all(together.history["val_loss"][:, -1] < together.history["val_loss"][:, 0])
    for i in (3, 6):  # relu with dropout; tanh / he (each alone compiles its own program)
        alone = engine.train([MIXED[i]], DIGITS, model=factory)
        for k in ("train_loss", "val_loss", "val_accuracy", "grad_norm", "act_std"):
            np.testing.assert_allclose(together.history[k][i], alone.history[k][0], rtol=1e-4, atol=1e-6,
                                       err_msg=k)
        _close(together.params(i), alone.params(0))


@pytest.mark.parametrize("factory", [linen_factory, nnx_factory], ids=["linen", "nnx"])
def test_user_model_divergence_is_isolated_and_one_compile(factory):
    good = MIXED[:4]
    bad = {**BASE, "activation": "relu", "seed": 9, "learning_rate": 1e12}  # same static group
    benign = {**bad, "learning_rate": 1e-3}  # the same batch without the divergence
    clean = engine.train(good[:2] + [benign] + good[2:], DIGITS, model=factory)
    engine.clear_cache()
    progress = []
    mixed = engine.train(good[:2] + [bad] + good[2:], DIGITS, model=factory, progress=progress.append)
    assert sum(isinstance(e, events.Compiling) for e in progress) == 1
    assert mixed.status[2] == "diverged"
    others = [0, 1, 3, 4]
    for k in METRICS:
        np.testing.assert_array_equal(mixed.history[k][others], clean.history[k][others])
    for i in others:
        for x, y in zip(jax.tree.leaves(mixed.params(i)), jax.tree.leaves(clean.params(i)), strict=True):
            np.testing.assert_array_equal(x, y)


def test_diagnostics_for_any_model():
    res = engine.train(MIXED[:2], DIGITS, model=linen_factory)
    assert res.layer_names(0) == ["Dense_0", "LayerNorm_0", "Dense_1"]  # creation order, input side first
    assert res.history["grad_norm"].shape == (2, 3, 3)
    assert res.history["act_std"].shape == (2, 3, 1)  # the one recorded layer
    dead = res.history["dead_fraction"][:, 0, 0]
    assert 0 <= dead[0] <= 1 and np.isfinite(dead[1])  # relu and tanh recorded with their preactivations
    nres = engine.train(MIXED[:1], DIGITS, model=nnx_factory)
    assert nres.layer_names(0) == ["hidden", "norm", "head"]
    assert nres.history["act_std"].shape == (1, 3, 1)
    assert np.all(np.isnan(nres.history["dead_fraction"]))  # no preact recorded


def test_grad_norm_is_the_norm_of_each_named_entry():
    prog = engine.program(MIXED[:1], DIGITS, model=linen_factory, tuning=engine.CPU_TUNING)
    hp = {k: v[0] for k, v in prog.stack().items()}
    params, state = prog.init_params(hp)
    data_ = prog.data

    def loss(p):
        out = prog.adapter.apply(p, state, prog.hyper(hp), data_["x_eval"], train=False)[0]
        return prog.data_loss(out, data_["y_eval"])

    grads = jax.grad(loss)(params)
    m = prog.evaluate(params, hp, data_, state)
    expected = [np.sqrt(sum(np.sum(np.square(g)) for g in jax.tree.leaves(grads[n]))) for n in prog.layer_names]
    np.testing.assert_allclose(m["grad_norm"], expected, rtol=1e-5)


def test_batchnorm_state_per_variant_updated_in_training_not_in_evaluation():
    # SGD: Adam turns 1-ulp gradient differences between the one-variant (unbatched) and vmapped kernels on
    # near-zero gradient entries into learning-rate-sized steps, which would blur the comparison
    vs = [{**v, "optimizer": "sgd", "learning_rate": 0.05} for v in MIXED[:4]]
    together = engine.train(vs, DIGITS, model=bn_factory)
    for i in (3,):
        v = vs[i]
        alone = engine.train([v], DIGITS, model=bn_factory)
        np.testing.assert_allclose(together.history["val_loss"][i], alone.history["val_loss"][0], rtol=1e-4)
        _close(together.model_state(i), alone.model_state(0))
    stats = together.model_state(0)["batch_stats"]
    assert not np.allclose(jax.tree.leaves(stats)[0], 0.0)  # updated by training (means start at 0)
    # an evaluation (the chunk program with no steps) leaves the running statistics bit-identical
    prog = engine.program(vs[:1], DIGITS, model=bn_factory, tuning=engine.CPU_TUNING)
    hp = {k: v[0] for k, v in prog.stack().items()}
    data_ = jax.tree.map(jnp.asarray, prog.data)
    state = prog.train_chunk(prog.init(hp), hp, data_)[0]
    after, _ = prog.chunk(state, hp, data_, False, False)
    for x, y in zip(jax.tree.leaves(state.model_state), jax.tree.leaves(after.model_state), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("norm", [pytest.param("layer", marks=pytest.mark.slow), "batch"])
def test_builtin_mlp_norm_vectorized_equals_alone(norm):
    # SGD, as in the BatchNorm test above: Adam would blur the one-variant vs vmapped comparison
    vs = [{**BASE, "hidden": (16, 16), "norm": norm, "activation": a, "seed": s, "optimizer": "sgd",
           "learning_rate": 0.05} for a in ("sigmoid", "relu") for s in (0, 1)]
    together = engine.train(vs, DIGITS)
    assert together.layer_names(0) == ["layer_00", "layer_01", "output"]
    assert set(together.params(0)["layer_00"]) == {"dense", "norm"}
    for i in (0, 3):
        v = vs[i]
        alone = engine.train([v], DIGITS)
        np.testing.assert_allclose(together.history["val_loss"][i], alone.history["val_loss"][0], rtol=1e-4)
    logits = engine.model(vs[0], DIGITS).apply({"params": together.params(0), **together.model_state(0)},
                                               DIGITS.x_test[:5])
    np.testing.assert_allclose(logits, together.predict(0, DIGITS.x_test[:5], standardized=True), rtol=1e-5, atol=1e-5)


def test_user_loss_and_metric():
    def loss(outputs, labels):
        return optax_ce(outputs, labels)

    def metric(outputs, labels):
        return (jnp.argmax(outputs, -1) == labels).astype(jnp.float32)

    res = engine.train(MIXED[:2], DIGITS, model=linen_factory, loss=loss, metric=metric)
    ref = engine.train(MIXED[:2], DIGITS, model=linen_factory)  # the built-in loss it equals
    np.testing.assert_allclose(res.history["val_loss"], ref.history["val_loss"], rtol=1e-5)
    np.testing.assert_allclose(res.history["val_accuracy"], ref.history["val_accuracy"])
    no_metric = engine.train(MIXED[:1], DIGITS, model=linen_factory, loss=loss)
    assert np.all(np.isnan(no_metric.history["val_accuracy"]))


def test_a_nan_gradient_with_a_finite_loss_diverges_at_its_step():
    """The guard checks the loss and the new parameters; a NaN gradient must reach the latter (sqrt at 0
    times a zero slope: the loss is finite, its gradient NaN), so the variants are diverged at step 0 with
    their initial parameters."""
    def nan_grad(outputs, labels):
        return optax_ce(outputs, labels) + jnp.sum(jnp.sqrt(jnp.maximum(outputs - 1e9, 0.0)), axis=-1)

    rows = MIXED[:2]
    res = engine.train(rows, DIGITS, model=linen_factory, loss=nan_grad)
    assert list(res.status) == ["diverged", "diverged"] and list(res.stopped_step) == [0, 0]
    prog = engine.program(rows, DIGITS, model=linen_factory)
    initial = jax.jit(prog.init_batch)(prog.stack(), prog.data).params
    for i in range(2):
        for a, b in zip(jax.tree.leaves(res.params(i)), jax.tree.leaves(initial), strict=True):
            np.testing.assert_array_equal(a, np.asarray(b)[i])


def optax_ce(outputs, labels):
    import optax

    return optax.losses.softmax_cross_entropy_with_integer_labels(outputs, labels)


def test_predictions_and_test_metrics():
    res = engine.train(MIXED[:3], DIGITS, model=linen_factory)
    all_out = res.predict_all(DIGITS.x_test, standardized=True)  # already standardized
    assert all_out.shape == (3, len(DIGITS.x_test), 10)
    for i in range(3):
        out = res.predict(i, DIGITS.x_test, standardized=True)
        np.testing.assert_allclose(out, all_out[i], rtol=1e-5, atol=1e-5)
        loss = float(np.mean(optax_ce(jnp.asarray(out), jnp.asarray(DIGITS.y_test))))
        acc = float(np.mean(np.argmax(out, -1) == DIGITS.y_test))
        cols = res.columns()
        assert cols["test_loss"][i] == pytest.approx(loss, rel=1e-4)
        assert cols["test_accuracy"][i] == pytest.approx(acc, abs=1e-6)
    df = res.to_dataframe()
    assert {"test_loss", "test_accuracy"} <= set(df.columns)


def test_extra_keys_vmapped_and_static():
    class Tempered(nn.Module):
        hp: object

        @nn.compact
        def __call__(self, x):
            h = self.hp.activation(nn.Dense(self.hp["width"])(x))
            return nn.Dense(10)(h) / self.hp["temperature"]

    vs = [{**BASE, "temperature": t, "width": w} for t in (1.0, 4.0) for w in (8, 16)]
    res = engine.train(vs, DIGITS, model=lambda hp: Tempered(hp),
                       extra_keys={"temperature": "vmapped", "width": "static"})
    assert len(res.groups) == 2  # width splits static groups
    assert res.params(0)["Dense_0"]["kernel"].shape == (64, 8)
    assert res.params(1)["Dense_0"]["kernel"].shape == (64, 16)
    # same seed and width, different temperature: the same initial parameters, different training
    assert res.history["val_loss"][0, 0] != res.history["val_loss"][2, 0]
    with pytest.raises(variants.VariantError, match=r"unknown key\(s\) \['temperature'\].*extra_keys"):
        engine.train([{**BASE, "temperature": 1.0}], DIGITS)
    with pytest.raises(ValueError, match="already a jaxnets key"):
        engine.train([BASE], DIGITS, extra_keys={"learning_rate": "vmapped"})
    with pytest.raises(variants.VariantError, match="temperature must be a number"):
        engine.train([{**BASE, "temperature": "hot"}], DIGITS, model=lambda hp: Tempered(hp),
                     extra_keys={"temperature": "vmapped"})


class Seven(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(7)(x)


class AlwaysDropout(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(10)(nn.Dropout(0.5, deterministic=False)(x))


class NnxDropoutNoRng(nnx.Module):
    def __init__(self, rngs):
        self.lin = nnx.Linear(64, 10, rngs=rngs)
        self.drop = nnx.Dropout(0.5)  # no rngs

    def __call__(self, x):
        return self.lin(self.drop(x))


@pytest.mark.parametrize("kwargs, match", [
    ({"model": lambda hp: "not a module"}, "must return a flax.linen.Module"),
    ({"model": lambda hp: Seven()}, r"model output shape \(32, 7\) does not fit the labels.*output_dim=10"),
    ({"model": lambda hp: AlwaysDropout()}, "dropout"),
    ({"model": lambda hp, rngs: NnxDropoutNoRng(rngs)}, "(?i)rng"),
    ({"model": linen_factory, "loss": lambda out, y: jnp.square(out[:, :3])},
     r"the loss returned shape \(32, 3\); it must return one value per example, shape \(32,\)"),
    ({"model": Seven()}, "takes a factory, not a module"),
    ({"model": linen_factory, "loss": lambda out, y: optax_ce(out, y),
      "metric": lambda out, y: jnp.mean(jnp.argmax(out, -1) == y)},
     r"the metric returned shape \(\); it must return one value per example, shape \(32,\)"),
])
def test_bad_factories_and_losses_fail_before_training(kwargs, match, monkeypatch):
    monkeypatch.setattr(engine.loop, "run", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises((ValueError, TypeError), match=match):
        engine.train(MIXED[:2], DIGITS, **kwargs)


def test_public_program_is_what_train_runs():
    """jit(vmap(init)) + jit(vmap(train_chunk)) by hand gives the engine's numbers."""
    prog = engine.program(MIXED[:4], DIGITS, model=linen_factory, tuning=engine.CPU_TUNING)
    hp = prog.stack()
    data_ = jax.device_put(prog.data)
    state = jax.jit(jax.vmap(prog.init, in_axes=(0, None)))(hp, data_)
    chunk = jax.jit(jax.vmap(prog.train_chunk, in_axes=(0, 0, None)))
    for _ in range(prog.spec.n_evals - 1):
        state, metrics = chunk(state, hp, data_)
    res = engine.train(MIXED[:4], DIGITS, model=linen_factory)
    np.testing.assert_allclose(metrics["val_loss"], res.history["val_loss"][:, -1], rtol=1e-4)
    with pytest.raises(ValueError, match="static groups"):
        engine.program(MIXED + [{**BASE, "batch_size": 16}], DIGITS)


def test_user_arrays_train_end_to_end():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)
    ds = data.from_arrays(x, y, seed=0)
    res = engine.train([{"hidden": (16,), "steps": 100, "eval_every": 50, "batch_size": 32, "seed": s}
                        for s in range(2)], ds)
    assert np.all(res.status == "ok") and np.all(res.history["val_accuracy"][:, -1] > 0.7)
    assert np.all(res.history["val_loss"][:, -1] < res.history["val_loss"][:, 0])


class NnxDropoutNet(nnx.Module):
    """An NNX model with an rng stream (nnx.Dropout keeps its key and count as state)."""

    def __init__(self, hp, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(64, 16, rngs=rngs)
        self.drop = nnx.Dropout(0.3, rngs=rngs)
        self.head = nnx.Linear(16, 10, rngs=rngs)

    def __call__(self, x):
        return self.head(self.drop(jax.nn.relu(self.hidden(x))))


def test_nnx_model_with_rng_state_trains_and_predicts():
    rows = [{**BASE, "seed": s, "activation": a} for s in range(2) for a in ("relu", "tanh")]
    res = engine.train(rows, DIGITS, model=lambda hp, rngs: NnxDropoutNet(hp, rngs),
                       options=engine.Options(max_variants_per_program=2))  # two blocks to concatenate
    assert np.all(res.status == "ok") and res.groups[0].n_blocks == 2
    assert np.all(res.history["val_loss"][:, -1] < res.history["val_loss"][:, 0])
    out = res.predict_all(DIGITS.x_test[:4], standardized=True)
    assert out.shape == (4, 4, 10) and np.all(np.isfinite(out))
    # the two seeds' dropout streams differ: same init per seed, different training
    assert not np.allclose(res.params(0)["hidden"]["kernel"], res.params(2)["hidden"]["kernel"])


class NnxConvNet(nnx.Module):
    """A user's NNX CNN (3x3 convolution, average pooling, dense): XLA:CPU runs its convolution slowly in a loop."""

    def __init__(self, hp, rngs: nnx.Rngs):
        self.conv = nnx.Conv(1, 4, kernel_size=(3, 3), kernel_init=hp.kernel_init, rngs=rngs)
        self.head = nnx.Linear(4 * 4 * 4, 10, rngs=rngs)
        self.fn = hp.activation

    def __call__(self, x):
        h = nnx.avg_pool(self.fn(self.conv(x)), window_shape=(2, 2), strides=(2, 2))
        return self.head(h.reshape(h.shape[0], -1))


def test_a_convolution_trains_in_a_host_loop_with_the_scan_numbers():
    """On the CPU a user's convolution model runs its segments as a host loop over one compiled step (the rule
    reads the lowered program); the numbers are the in-program scan's to float32 rounding, a diverging variant
    included, and the built-in CNN (matmul convolutions) stays in the scan."""
    images = data.load("digits_image")
    rows = [{**BASE, "steps": 12, "eval_every": 4, "activation": a, "seed": s, "learning_rate": lr}
            for a, s, lr in (("relu", 0, 1e-3), ("tanh", 1, 3e-3), ("relu", 2, 1e12))]
    factory = lambda hp, rngs: NnxConvNet(hp, rngs)  # noqa: E731
    host = engine.train(rows, images, model=factory)
    scan = engine.train(rows, images, model=factory, options=engine.Options(loop="scan"))
    assert host.groups[0].loop == "host" and scan.groups[0].loop == "scan"
    assert host.status.tolist() == scan.status.tolist() == ["ok", "ok", "diverged"]
    assert host.stopped_step.tolist() == scan.stopped_step.tolist()
    for k in ("train_loss", "val_loss", "val_accuracy", "grad_norm", "test_loss"):
        got, want = (host.history[k], scan.history[k]) if k in host.history else (host.columns()[k], scan.columns()[k])
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6, err_msg=k)
    for i in range(2):
        _close(host.params(i), scan.params(i), rtol=2e-5)
    builtin = engine.train([{**rows[0], "kind": "cnn", "hidden": [4], "dense": []}], images)
    assert builtin.groups[0].loop == "scan"
