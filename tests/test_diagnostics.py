"""Diagnostics against hand-computed values."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets import activations, diagnostics


def test_grad_norms_per_layer_in_input_order():
    grads = {"output": {"kernel": jnp.full((2, 2), 1.0)},
             "layer_00": {"kernel": jnp.full((3, 4), 2.0), "bias": jnp.zeros(4)},
             "layer_01": {"kernel": jnp.array([[3.0, 4.0]])}}
    np.testing.assert_allclose(diagnostics.grad_norms(grads), [np.sqrt(12 * 4), 5.0, 2.0], rtol=1e-6)


def test_dead_units_relu_vs_leaky():
    # unit 0 negative on every example (dead for ReLU), unit 1 positive once, unit 2 always positive
    z = jnp.array([[-1.0, -2.0, 1.0], [-3.0, 0.5, 2.0], [-0.1, -1.0, 3.0]])
    for name, want in (("relu", 1 / 3), ("leaky_relu", 0.0), ("elu", 0.0), ("tanh", 0.0)):
        f = activations.get(name)
        stats = diagnostics.activation_stats({"preact": (z,), "act": (f(z),)}, f, jnp.inf)
        np.testing.assert_allclose(stats["dead_fraction"], [want], err_msg=name)
        np.testing.assert_allclose(stats["act_mean"], [np.mean(f(z))], rtol=1e-6)
        np.testing.assert_allclose(stats["act_std"], [np.std(f(z))], rtol=1e-6)


def test_saturation_fraction():
    z = jnp.array([[-5.0, 0.0, 2.0, 3.0]])
    thr = activations.SATURATION_THRESHOLD
    f = jax.nn.sigmoid
    s = diagnostics.activation_stats({"preact": (z,), "act": (f(z),)}, f, thr["sigmoid"])
    np.testing.assert_allclose(s["saturated_fraction"], [0.25])  # only |-5| > 4.595
    s = diagnostics.activation_stats({"preact": (z,), "act": (jnp.tanh(z),)}, jnp.tanh, thr["tanh"])
    np.testing.assert_allclose(s["saturated_fraction"], [0.5])  # |-5| and |3| > 2.647


def test_conv_units_are_channels_and_missing_preact_is_nan():
    z = (-jnp.ones((2, 4, 4, 3))).at[:, :, :, 2].set(1.0)
    s = diagnostics.activation_stats({"preact": (z,), "act": (jax.nn.relu(z),)}, jax.nn.relu, jnp.inf)
    np.testing.assert_allclose(s["dead_fraction"], [2 / 3])
    s = diagnostics.activation_stats({"act": (jnp.ones((2, 5, 3)),)}, jnp.tanh, jnp.inf)
    assert np.isnan(s["dead_fraction"][0]) and np.isnan(s["saturated_fraction"][0])
