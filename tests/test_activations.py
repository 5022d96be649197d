"""Activations: values vs formulas, gradients (check_grads), by-index == by-name, NaN-safety under vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxnets import activations

X = np.linspace(-6, 6, 41).astype(np.float32)

REFERENCE = {
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0),
    "leaky_relu": lambda x: np.where(x >= 0, x, 0.01 * x),
    "elu": lambda x: np.where(x > 0, x, np.expm1(x)),
    "gelu": lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3))),
    "silu": lambda x: x / (1 + np.exp(-x)),
    "softplus": lambda x: np.log1p(np.exp(x)),
    "identity": lambda x: x,
}


def test_registry_covers_reference():
    assert set(activations.NAMES) == set(REFERENCE)


@pytest.mark.parametrize("name", activations.NAMES)
def test_values_match_formula(name):
    got = np.asarray(activations.get(name)(jnp.asarray(X)))
    np.testing.assert_allclose(got, REFERENCE[name](X.astype(np.float64)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", activations.NAMES)
def test_gradients(name):
    # avoid the kinks of relu / leaky_relu / elu at exactly 0
    x = jnp.asarray(X + 0.013)
    check_grads(activations.get(name), (x,), order=1, modes=["fwd", "rev"], atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("i", range(len(activations.NAMES)))
def test_by_index_equals_by_name(i):
    name = activations.NAMES[i]
    want = activations.get(name)(X)
    np.testing.assert_array_equal(activations.by_index(i, X), want)
    # under jit XLA may use a different (equally accurate) tanh/exp: equal to float32 rounding
    np.testing.assert_allclose(jax.jit(activations.by_index)(jnp.int32(i), X), want, rtol=1e-5, atol=1e-6)
    g_name = jax.grad(lambda x: jnp.sum(activations.get(name)(x)))(X)
    g_idx = jax.jit(jax.grad(lambda x, j: jnp.sum(activations.by_index(j, x)), argnums=0))(X, jnp.int32(i))
    np.testing.assert_allclose(g_idx, g_name, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_by_index_under_vmap_with_extreme_inputs_has_finite_gradients(jit):
    """Batched ids turn switch into select: no branch may leak NaN into gradients (jax#9159). Compiled as one
    program, the gradient is reverse mode's (gelu's forward-mode slope gave 2,550 at -1e4 under jit)."""
    ids = jnp.arange(len(activations.NAMES), dtype=jnp.int32)
    x = jnp.array([-1e4, -100.0, -88.0, -20.0, 0.0, 20.0, 88.0, 100.0, 1e4], jnp.float32)
    wrap = jax.jit if jit else (lambda f: f)

    def f(i, x):
        return jnp.sum(activations.by_index(i, x))

    grads = wrap(jax.vmap(jax.grad(f, argnums=1), in_axes=(0, None)))(ids, x)
    assert np.all(np.isfinite(np.asarray(grads)))
    for j, name in enumerate(activations.NAMES):
        want = wrap(jax.grad(lambda x, n=name: jnp.sum(activations.get(n)(x))))(x)
        np.testing.assert_allclose(grads[j], want, rtol=1e-6, err_msg=name)


def test_subset_names_index_into_subset():
    names = ("tanh", "relu")
    np.testing.assert_array_equal(activations.by_index(jnp.int32(1), X, names), activations.get("relu")(X))


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="unknown activation 'relu6'.*sigmoid"):
        activations.get("relu6")


def test_saturation_threshold_is_one_percent_of_bound():
    np.testing.assert_allclose(jax.nn.sigmoid(activations.SATURATION_THRESHOLD["sigmoid"]), 0.99, atol=1e-5)
    np.testing.assert_allclose(np.tanh(activations.SATURATION_THRESHOLD["tanh"]), 0.99, atol=1e-5)
    thr = activations.saturation_threshold(("relu", "tanh"))
    assert np.isinf(thr[0]) and np.isfinite(thr[1])


# ------------------------------------------------------------------ each activation on its own variants only


def _reference(i, x, names):
    return jax.lax.switch(i, [activations.get(n) for n in names], x)


@pytest.mark.parametrize("layout_kind", ["ordered", "none", "mismatched"])
def test_by_index_with_a_layout_equals_the_switch_values_and_gradients(layout_kind):
    """All nine activations in one vmapped batch, extreme inputs included: the layout path (each activation
    on its own slice), the select fallback and a layout that does not fit the batch all give the switch's
    values and gradients, finite everywhere."""
    names = activations.NAMES
    ids = jnp.repeat(jnp.arange(len(names)), 2)  # two variants per activation, in layout order
    layout = tuple((k, 2) for k in range(len(names)))
    chosen = {"ordered": layout, "none": None, "mismatched": ((0, 5), (1, 2))}[layout_kind]
    x = jnp.concatenate([jax.random.normal(jax.random.key(0), (len(ids), 6)) * 5,
                         jnp.tile(jnp.array([[-1e4, -100.0, -20.0, 20.0, 100.0, 1e4]]), (len(ids), 1))], axis=1)
    w = jax.random.normal(jax.random.key(1), x.shape[1:])

    def loss(fn):
        return lambda i, x: jnp.sum(fn(i, x) * w)

    ours = jax.vmap(jax.value_and_grad(loss(lambda i, x: activations.by_index(i, x, names, chosen)), argnums=1))
    ref = jax.vmap(jax.value_and_grad(loss(lambda i, x: _reference(i, x, names)), argnums=1))
    (v1, g1), (v2, g2) = ours(ids, x), ref(ids, x)
    np.testing.assert_allclose(v1, v2, rtol=1e-6)
    np.testing.assert_allclose(g1, g2, rtol=1e-5, atol=1e-6)
    assert np.all(np.isfinite(g1))
    slopes = jax.vmap(lambda i, x: activations.slope_by_index(i, x, names, chosen))(ids, x)
    np.testing.assert_allclose(slopes * w[None, :], g1, rtol=1e-5, atol=1e-6)


def test_layout_computes_each_activation_once_per_slice():
    """With a layout, the lowered program applies each activation to its own slice: a 9-way mix has as many
    tanh ops as a one-tanh batch, not one per variant slot of every branch."""
    names = ("sigmoid", "tanh", "relu")
    ids = jnp.array([0, 0, 1, 1, 2, 2])
    x = jnp.ones((6, 8))
    with_layout = jax.jit(jax.vmap(lambda i, x: activations.by_index(i, x, names, ((0, 2), (1, 2), (2, 2)))))
    text = with_layout.lower(ids, x).as_text()
    assert "select" not in text and text.count("tanh") == 1


def test_gradient_with_a_layout_evaluates_each_activation_once():
    """The backward pass uses the slope kept from the forward pass: differentiating a layout mix evaluates tanh
    and sigmoid once each, as ``jax.grad`` of the plain functions does (before, the backward pass evaluated
    every activation again: an LSTM's candidate tanh twice per time step)."""
    names = ("sigmoid", "tanh", "relu")
    ids = jnp.array([0, 0, 1, 1, 2, 2])
    x = jnp.linspace(-3.0, 3.0, 48).reshape(6, 8)
    layout = ((0, 2), (1, 2), (2, 2))
    value_and_grad = jax.jit(jax.vmap(jax.value_and_grad(
        lambda i, x: jnp.sum(activations.by_index(i, x, names, layout) ** 2), argnums=1)))
    text = value_and_grad.lower(ids, x).as_text()
    assert text.count("stablehlo.tanh") == 1 and text.count("stablehlo.exponential") == 1  # sigmoid: 1 / (1 + exp(-x))
    y = jnp.stack([activations.get(names[i])(x[j]) for j, i in enumerate(ids.tolist())])
    slope = jnp.stack([activations.derivative(names[i])(x[j]) for j, i in enumerate(ids.tolist())])
    value, grad = value_and_grad(ids, x)
    np.testing.assert_allclose(value, jnp.sum(y**2, axis=1), rtol=1e-6)
    np.testing.assert_allclose(grad, 2 * y * slope, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", activations.NAMES)
def test_value_and_derivative_of(name):
    x = jnp.asarray(X + 0.013)
    y, dy = activations.value_and_derivative_of(activations.get(name))(x)
    np.testing.assert_array_equal(y, activations.get(name)(x))
    np.testing.assert_allclose(dy, activations.derivative(name)(x), rtol=1e-6, atol=1e-7)


def test_unbatched_id_is_a_real_branch():
    x = jnp.linspace(-3, 3, 7)
    for i, name in enumerate(activations.NAMES):
        np.testing.assert_allclose(activations.by_index(jnp.int32(i), x, activations.NAMES, ((0, 1),)),
                                   activations.get(name)(x), rtol=1e-5, atol=1e-6)
