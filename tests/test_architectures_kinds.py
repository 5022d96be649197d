"""Architectures as data beyond the MLP (issue 27): RNN hidden sizes and CNN channel lists in ONE program."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxnets import data, engine, initializers
from jaxnets import variants as variants_lib


@pytest.fixture(scope="module")
def sequences():
    return data.load("digits_sequence")


@pytest.fixture(scope="module")
def images():
    return data.load("digits_image")


def _both(ds, vs):
    mixed = engine.train(vs, ds, options=engine.Options(mix_architectures=True))
    alone = engine.train(vs, ds, options=engine.Options(mix_architectures=False))
    return mixed, alone


def _check_same_networks(ds, vs, mixed, alone, n_groups):
    assert len(mixed.groups) == n_groups < len(alone.groups)
    np.testing.assert_allclose(mixed.final("val_loss"), alone.final("val_loss"), rtol=2e-5)
    np.testing.assert_allclose(mixed.history["train_loss"], alone.history["train_loss"], rtol=1e-4, atol=1e-6)
    for i in range(len(vs)):
        own = mixed.params(i)
        chex_tree = jax.tree.map(np.shape, own)
        assert chex_tree == jax.tree.map(np.shape, alone.params(i))  # sliced to the variant's own network
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=2e-6), own, alone.params(i))
        plain = engine.model(mixed.rows[i], ds).apply({"params": own}, ds.x_test[:64])
        np.testing.assert_allclose(mixed.predict(i, ds.x_test[:64], standardized=True), plain, atol=2e-6)


@pytest.mark.parametrize("cell", ["lstm", "gru", "simple"])
def test_rnn_hidden_sizes_mix_and_train_as_alone(sequences, cell):
    # sigmoid and softplus are not 0 at 0: a padded unit would drift without the state mask
    vs = [{"kind": "rnn", "cell": cell, "hidden": h, "activation": a, "seed": s, "steps": 20, "eval_every": 10,
           "dropout": 0.1, "weight_decay": 1e-3, "clip_norm": 1.0}
          for h, a in (([8], "sigmoid"), ([16], "tanh"), ([8, 12], "softplus")) for s in range(2)]
    mixed, alone = _both(sequences, vs)
    _check_same_networks(sequences, vs, mixed, alone, 1)
    p = jax.tree.map(np.asarray, mixed.groups[0].params)
    g0 = p["layer_00"]["cell"]
    for gate, leaf in g0.items():  # variant 0: 8 real units of 16
        k = leaf["kernel"][0]
        assert not k[:, 8:].any() and (gate.startswith("i") or not k[8:].any())
    assert not any(leaf["kernel"][0].any() for leaf in p["layer_01"]["cell"].values())  # past its depth
    assert not p["output"]["kernel"][0][8:].any()
    g = mixed.history["grad_norm"]
    assert np.isnan(g[0, -1, 2]) and np.isfinite(g[4, -1]).all()  # [8]: layer, output, then NaN
    assert mixed.layer_names(0) == ["layer_00", "output"]


def test_cnn_channel_lists_mix_and_train_as_alone(images):
    vs = [{"kind": "cnn", "hidden": h, "dense": d, "activation": a, "init": i, "steps": 20, "eval_every": 10,
           "dropout": 0.1} for d in ((), (16,))
          for h, a, i in (([4, 8], "relu", "orthogonal"), ([8, 16], "sigmoid", "he_normal"),
                          ([8, 4], "tanh", "glorot_uniform"))]
    mixed, alone = _both(images, vs)
    _check_same_networks(images, vs, mixed, alone, 2)  # one program per dense head
    p = jax.tree.map(np.asarray, mixed.groups[0].params)
    assert mixed.groups[0].spec.hidden == (8, 16)
    assert not p["layer_00"]["kernel"][0][..., 4:].any() and not p["layer_01"]["kernel"][0][:, :, 4:].any()
    out = p["output"]["kernel"][2].reshape(4, 16, -1)  # variant [8, 4]: 4 real channels at each of 4 positions
    assert not out[:, 4:].any() and out[:, :4].all()
    assert mixed.layer_names(0) == ["layer_00", "layer_01", "output"]


def test_cnn_lists_of_different_lengths_do_not_mix(images):
    vs = [{"kind": "cnn", "hidden": h, "steps": 2, "eval_every": 2} for h in ([4], [4, 8], [8, 8])]
    checked = engine.check(vs, images, mix_architectures=True)
    assert [p.spec.hidden for p in checked.programs] == [(4,), (8, 8)]


@pytest.mark.parametrize("name", ["glorot_uniform", "he_normal", "lecun_uniform", "orthogonal"])
def test_masked_conv_has_its_own_fan_variance(images, name):
    rows = [variants_lib.normalize({"kind": "cnn", "hidden": h, "init": name}, i, "sparse_categorical_crossentropy")
            for i, h in enumerate([[32, 64], [64, 128]])]
    (g,) = variants_lib.group(rows, mix=True)
    prog = engine.Program(g, images)
    params = jax.jit(lambda h: jax.lax.map(prog.init_params, h))(prog.stack())[0]
    k = np.asarray(params["layer_01"]["kernel"][0])  # variant 0: [3, 3, 32, 64] inside [3, 3, 64, 128]
    real = k[:, :, :32, :64]
    if name == "orthogonal":  # orthonormal columns of the [3 * 3 * 32, 64] matrix
        m = real.reshape(-1, 64)
        np.testing.assert_allclose(m.T @ m, np.eye(64), atol=1e-5)
    else:
        want = initializers.std_formula(name, 9 * 32, 9 * 64) ** 2
        assert abs(real.var() / want - 1) < 0.05
    assert not k[:, :, 32:].any() and not k[..., 64:].any()


@pytest.mark.parametrize("kind", ["rnn", "cnn"])
def test_saved_mixed_rnn_and_cnn_load_as_each_variants_own_network(sequences, images, kind, tmp_path):
    import jaxnets

    ds = sequences if kind == "rnn" else images
    hiddens = ([8], [12, 6]) if kind == "rnn" else ([4, 8], [8, 4])
    vs = [{"kind": kind, "hidden": h, "steps": 5, "eval_every": 5} for h in hiddens]
    r = engine.train(vs, ds, options=engine.Options(mix_architectures=True))
    assert len(r.groups) == 1
    r.save(tmp_path)
    saved = jaxnets.load(tmp_path)
    for i in range(2):
        jax.tree.map(np.testing.assert_array_equal, saved.params(i), r.params(i))
        np.testing.assert_array_equal(saved.predict(i, ds.x_test[:32], standardized=True),
                                      r.predict(i, ds.x_test[:32], standardized=True))


def test_your_nnx_model_masks_with_masked_linear_and_trains_as_its_own_width(digits_flat):
    import jax.numpy as jnp
    from flax import nnx

    from jaxnets.models import MaskedLinear

    class Wide(nnx.Module):  # one hidden layer of hp["width"] real units inside 32
        def __init__(self, hp, rngs):
            n = hp["width"].astype(jnp.int32)
            self.hidden = MaskedLinear(64, 32, hp.masked_kernel_init, 64, n, rngs=rngs)
            self.out = MaskedLinear(32, 10, hp.masked_kernel_init, n, 10, rngs=rngs)
            self.hp = hp

        def __call__(self, x):
            on = jnp.arange(32) < self.hp["width"].astype(jnp.int32)
            h = jnp.where(on[None, :], self.hp.activation(self.hidden(x, jnp.ones(64, bool), on)), 0.0)
            return self.out(h, on, jnp.ones(10, bool))

    class Plain(nnx.Module):  # the same network at its own width, plain nnx.Linear
        def __init__(self, hp, rngs, width):
            self.hidden = nnx.Linear(64, width, kernel_init=hp.kernel_init, rngs=rngs)
            self.out = nnx.Linear(width, 10, kernel_init=hp.kernel_init, rngs=rngs)
            self.hp = hp

        def __call__(self, x):
            return self.out(self.hp.activation(self.hidden(x)))

    rows = [{"width": w, "seed": s, "steps": 30, "eval_every": 15, "activation": "tanh", "init": "glorot_uniform"}
            for w in (8, 32) for s in range(2)]
    mixed = engine.train(rows, digits_flat, model=lambda hp, rngs: Wide(hp, rngs), extra_keys={"width": "vmapped"})
    assert len(mixed.groups) == 1
    for w in (8, 32):
        idx = [i for i, r in enumerate(rows) if r["width"] == w]
        alone = engine.train([rows[i] for i in idx], digits_flat, model=lambda hp, rngs, w=w: Plain(hp, rngs, w),
                             extra_keys={"width": "vmapped"})
        np.testing.assert_allclose(mixed.final("val_loss")[idx], alone.final("val_loss"), rtol=2e-5)
    k = np.asarray(mixed.params(0)["hidden"]["kernel"])  # width 8 of 32: zero past it after training
    assert not k[:, 8:].any() and k[:, :8].all()


@pytest.fixture(scope="module")
def digits_flat():
    return data.load("digits")


@pytest.mark.parametrize("name", initializers.NAMES)
def test_row_groups_place_the_real_draw_at_every_position(name):
    # a CNN's first dense layer: 4 positions x 16 padded channels (5 real) -> 7 outputs (3 real)
    key = jax.random.key(5)
    own = np.asarray(initializers.get(name, 1.0)(key, (4 * 5, 3)))
    big = np.asarray(initializers.embedded(initializers.index(name))(key, (4 * 16, 7), 5, 3, row_groups=4))
    real = big.reshape(4, 16, 7)[:, :5, :3].reshape(20, 3)
    np.testing.assert_allclose(real, own, atol=1e-6 if name == "orthogonal" else 0)
    assert not big.reshape(4, 16, 7)[:, 5:].any() and not big[:, 3:].any()
    with pytest.raises(ValueError, match="row_groups"):
        initializers.embedded(0)(key, (10, 7), 5, 3, row_groups=4)
