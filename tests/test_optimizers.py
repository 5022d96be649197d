"""Our injected optimizer chains give exactly the updates of Optax's own optimizers."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnets import optimizers

PARAMS = {"w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "b": jnp.arange(4.0)}


def _grads(i):
    key = jax.random.key(i)
    return jax.tree.map(lambda p: jax.random.normal(jax.random.fold_in(key, p.size), p.shape), PARAMS)


def _run(tx, steps=5):
    state, params, out = tx.init(PARAMS), PARAMS, []
    for i in range(steps):
        updates, state = tx.update(_grads(i), state, params)
        params = optax.apply_updates(params, updates)
        out.append(params)
    return out


REFERENCE = {
    "sgd": (dict(learning_rate=0.1), optax.sgd(0.1)),
    "momentum": (dict(learning_rate=0.1, momentum=0.8), optax.sgd(0.1, momentum=0.8)),
    "adam": (dict(learning_rate=0.01, b1=0.8, b2=0.99), optax.adam(0.01, b1=0.8, b2=0.99)),
    "adamw": (dict(learning_rate=0.01, weight_decay=0.1), optax.adamw(0.01, weight_decay=0.1)),
    "rmsprop": (dict(learning_rate=0.01, rho=0.8), optax.rmsprop(0.01, decay=0.8)),
}


@pytest.mark.parametrize("kind", optimizers.NAMES)
def test_matches_optax(kind):
    hyper, reference = REFERENCE[kind]
    ours = optimizers.with_hyperparameters(kind, hyper, clip=False, decay=kind == "adamw")
    for a, b in zip(_run(ours), _run(reference), strict=True):
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_clipping_and_unused_stages_are_exact():
    ref = optax.chain(optax.clip_by_global_norm(0.5), optax.adam(0.01))
    ours = optimizers.with_hyperparameters("adam", {"learning_rate": 0.01, "clip_norm": 0.5}, decay=False)
    for a, b in zip(_run(ours), _run(ref), strict=True):
        np.testing.assert_allclose(a["w"], b["w"], rtol=1e-5, atol=1e-6)
    # clip_norm = inf and weight_decay = 0 change nothing, bit for bit
    full = optimizers.with_hyperparameters("adam", {"learning_rate": 0.01})
    bare = optimizers.with_hyperparameters("adam", {"learning_rate": 0.01}, clip=False, decay=False)
    for a, b in zip(_run(full), _run(bare), strict=True):
        np.testing.assert_array_equal(a["w"], b["w"])


@pytest.mark.parametrize("kind", optimizers.NAMES)
def test_flat_chain_equals_the_tree_chain(kind):
    """``flat=True`` (one vector, ``optax.flatten``) gives each leaf the tree chain's update, to float rounding:
    every stage but clipping is elementwise (XLA's CPU kernels for other shapes may still round Adam's
    multiply-adds in another way), and clipping's global norm sums the squares in another order."""
    hyper = {**REFERENCE[kind][0], "weight_decay": 0.1}
    tree = optimizers.with_hyperparameters(kind, hyper, decay=True, clip=False)
    flat = optimizers.with_hyperparameters(kind, hyper, decay=True, clip=False, flat=True)
    assert {x.shape for x in jax.tree.leaves(flat.init(PARAMS).inner_state)} <= {(), (16,)}  # vectors
    for a, b in zip(_run(flat), _run(tree), strict=True):
        chex.assert_trees_all_close(a, b, rtol=2e-7, atol=1e-7)
    clipped = {**hyper, "clip_norm": 0.5}
    for a, b in zip(_run(optimizers.with_hyperparameters(kind, clipped, flat=True)),
                    _run(optimizers.with_hyperparameters(kind, clipped)), strict=True):
        chex.assert_trees_all_close(a, b, rtol=1e-6, atol=1e-7)
    assert flat.init(PARAMS).hyperparams["learning_rate"].dtype == jnp.float32  # still injected, per variant


def test_hyperparameters_are_float32_state_and_vmappable():
    def final_w(lr):
        tx = optimizers.with_hyperparameters("sgd", {"learning_rate": lr})
        state = tx.init(PARAMS)
        assert state.hyperparams["learning_rate"].dtype == jnp.float32
        updates, _ = tx.update(_grads(0), state, PARAMS)
        return optax.apply_updates(PARAMS, updates)["w"]

    lrs = jnp.array([0.0, 0.1, 1.0], jnp.float32)
    batched = jax.jit(jax.vmap(final_w))(lrs)
    for i, lr in enumerate([0.0, 0.1, 1.0]):
        np.testing.assert_allclose(batched[i], final_w(lr), rtol=1e-6)


def test_unknown_names_raise():
    with pytest.raises(ValueError, match="unknown optimizer 'adagrad'.*sgd"):
        optimizers.make("adagrad")
    with pytest.raises(ValueError, match="unknown optimizer hyperparameters"):
        optimizers.with_hyperparameters("adam", {"beta1": 0.9})
