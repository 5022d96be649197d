"""Tests for jaxnets.initializers: statistics, bounds, aliases, by_index equivalence, fans, errors."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets import initializers as inits

KEY = jax.random.key(0)
SHAPE = (512, 256)  # fan_in = 512, fan_out = 256: 131k samples, std estimate within ~0.3%
FAN_IN, FAN_OUT = SHAPE
UNIFORM = ("uniform", "glorot_uniform", "he_uniform", "lecun_uniform")
TRUNCATED = ("glorot_normal", "he_normal", "lecun_normal")
RANDOM = tuple(n for n in inits.NAMES if n != "zeros")
# Untruncated sigma = target std / (std of a standard normal truncated to (-2, 2)).
TRUNC_STD = 0.87962566103423978
# One small shape everywhere else: eager jax compiles each random op once per shape, so reuse it.
BY_INDEX_SHAPE = (16, 8)


def sample(name, scale=1.0, shape=SHAPE, key=KEY, dtype=jnp.float32):
    return np.asarray(inits.get(name, scale)(key, shape, dtype), np.float64)


def test_names_and_ids():
    assert inits.NAMES == (
        "uniform",
        "normal",
        "glorot_uniform",
        "glorot_normal",
        "he_uniform",
        "he_normal",
        "lecun_uniform",
        "lecun_normal",
        "orthogonal",
        "zeros",
    )
    assert [inits.index(n) for n in inits.NAMES] == list(range(len(inits.NAMES)))
    assert inits.index("kaiming_normal") == inits.index("he_normal") == 5
    assert inits.index("xavier_uniform") == 2
    for alias, name in inits.ALIASES.items():
        assert inits.canonical(alias) == name


@pytest.mark.parametrize("scale", [1.0, 2.5])
@pytest.mark.parametrize("name", RANDOM)
def test_mean_and_std(name, scale):
    w = sample(name, scale)
    std = inits.std_formula(name, FAN_IN, FAN_OUT, scale)
    assert w.shape == SHAPE and w.dtype == np.float64
    assert abs(w.mean()) < 0.02 * std
    assert w.std() == pytest.approx(std, rel=0.02)


@pytest.mark.parametrize("scale", [1.0, 2.5])
@pytest.mark.parametrize("name", UNIFORM)
def test_uniform_bounds(name, scale):
    w = sample(name, scale)
    bound = math.sqrt(3.0) * inits.std_formula(name, FAN_IN, FAN_OUT, scale)  # U[-b, b]: std = b / sqrt(3)
    assert np.abs(w).max() <= bound * (1 + 1e-6)
    assert np.abs(w).max() >= bound * 0.99
    assert w.min() < -0.99 * bound and w.max() > 0.99 * bound


@pytest.mark.parametrize("scale", [1.0, 2.5])
@pytest.mark.parametrize("name", TRUNCATED)
def test_truncated_normal_bounds(name, scale):
    w = sample(name, scale)
    sigma_untruncated = inits.std_formula(name, FAN_IN, FAN_OUT, scale) / TRUNC_STD
    assert np.abs(w).max() <= 2 * sigma_untruncated * (1 + 1e-6)
    # With 500k samples the truncation point is reached closely (the density there is not small).
    assert np.abs(w).max() >= 2 * sigma_untruncated * 0.99


def test_hand_formulas():
    """Absolute numbers from the textbook formulas, independent of std_formula."""
    fan_in, fan_out = 512, 256
    shape = (fan_in, fan_out)
    assert np.abs(sample("uniform", shape=shape)).max() == pytest.approx(1 / math.sqrt(fan_in), rel=0.01)
    assert np.abs(sample("glorot_uniform", shape=shape)).max() == pytest.approx(
        math.sqrt(6 / (fan_in + fan_out)), rel=0.01
    )
    assert np.abs(sample("he_uniform", shape=shape)).max() == pytest.approx(math.sqrt(6 / fan_in), rel=0.01)
    assert np.abs(sample("lecun_uniform", shape=shape)).max() == pytest.approx(
        math.sqrt(3 / fan_in), rel=0.01
    )
    assert sample("he_normal", shape=shape).std() == pytest.approx(math.sqrt(2 / fan_in), rel=0.02)
    assert sample("glorot_normal", shape=shape).std() == pytest.approx(
        math.sqrt(2 / (fan_in + fan_out)), rel=0.02
    )
    assert sample("lecun_normal", shape=shape).std() == pytest.approx(math.sqrt(1 / fan_in), rel=0.02)
    assert sample("normal", shape=shape).std() == pytest.approx(0.01, rel=0.02)
    # Scale is a gain: it multiplies the std (not the variance).
    assert sample("he_normal", 3.0, shape=shape).std() == pytest.approx(3 * math.sqrt(2 / fan_in), rel=0.02)
    assert np.abs(sample("uniform", 0.5, shape=shape)).max() == pytest.approx(
        0.5 / math.sqrt(fan_in), rel=0.01
    )
    # std_formula itself, at a few points.
    assert inits.std_formula("he_normal", 512, 256) == pytest.approx(math.sqrt(2 / 512))
    assert inits.std_formula("uniform", 300, 7, 2.0) == pytest.approx(2 / math.sqrt(3 * 300))
    assert inits.std_formula("orthogonal", 512, 256) == pytest.approx(1 / math.sqrt(512))
    assert inits.std_formula("orthogonal", 256, 512) == pytest.approx(1 / math.sqrt(512))
    assert inits.std_formula("zeros", 5, 5) == 0.0


@pytest.mark.parametrize("shape", [(512, 256), (256, 512)])
def test_orthogonal(shape):
    w = sample("orthogonal", shape=shape)
    n = min(shape)
    gram = w.T @ w if shape[0] >= shape[1] else w @ w.T
    np.testing.assert_allclose(gram, np.eye(n), atol=1e-4)
    assert w.std() == pytest.approx(inits.std_formula("orthogonal", *shape), rel=0.02)
    w3 = sample("orthogonal", 3.0, shape=shape)
    np.testing.assert_allclose(w3, 3.0 * w, rtol=1e-6, atol=1e-7)


def test_zeros():
    w = inits.get("zeros", 2.5)(KEY, (4, 3))
    assert w.shape == (4, 3) and w.dtype == jnp.float32
    assert not np.asarray(w).any()


@pytest.mark.parametrize("alias", sorted(inits.ALIASES))
def test_aliases_identical(alias):
    shape = BY_INDEX_SHAPE
    a = inits.get(alias, 1.7)(KEY, shape)
    b = inits.get(inits.ALIASES[alias], 1.7)(KEY, shape)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_matches_jax_nn_initializers():
    """scale=1 reproduces the jax.nn.initializers functions exactly."""
    shape = BY_INDEX_SHAPE
    ref = {
        "glorot_uniform": jax.nn.initializers.glorot_uniform(),
        "glorot_normal": jax.nn.initializers.glorot_normal(),
        "he_uniform": jax.nn.initializers.he_uniform(),
        "he_normal": jax.nn.initializers.he_normal(),
        "lecun_uniform": jax.nn.initializers.lecun_uniform(),
        "lecun_normal": jax.nn.initializers.lecun_normal(),
        "orthogonal": jax.nn.initializers.orthogonal(),
        "normal": jax.nn.initializers.normal(1e-2),
    }
    for name, f in ref.items():
        np.testing.assert_array_equal(np.asarray(inits.get(name)(KEY, shape)), np.asarray(f(KEY, shape)))


def _get_jit(name, scale, key, shape=BY_INDEX_SHAPE):
    """``get`` under jit: the reference a traced ``by_index`` must match bit for bit.

    (Eager ``get`` can differ from any jitted computation in the last bit, because XLA fuses and reassociates
    the constant multiplications; that is true of every JAX function, not special to ``by_index``.)
    """
    return np.asarray(_jitted_get(name, shape)(scale, key))


@functools.cache
def _jitted_get(name, shape):
    return jax.jit(lambda s, k: inits.get(name, s)(k, shape))


@pytest.mark.parametrize("i", range(len(inits.NAMES)))
def test_by_index_eager(i):
    name = inits.NAMES[i]
    # A Python int selects the initializer directly: identical to get, eagerly.
    want = np.asarray(inits.get(name, 1.3)(KEY, BY_INDEX_SHAPE))
    np.testing.assert_array_equal(np.asarray(inits.by_index(i, 1.3)(KEY, BY_INDEX_SHAPE)), want)
    np.testing.assert_array_equal(np.asarray(inits.by_index(np.int64(i), 1.3)(KEY, BY_INDEX_SHAPE)), want)
    if i == 3:  # A concrete array index goes through lax.switch (compiled): identical to get under jit.
        got = inits.by_index(jnp.asarray(i, jnp.int32), 1.3)(KEY, BY_INDEX_SHAPE)
        np.testing.assert_array_equal(np.asarray(got), _get_jit(name, 1.3, KEY))
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-9)


def test_by_index_jit_traced_index():
    @jax.jit
    def f(i, scale, key):
        return inits.by_index(i, scale)(key, BY_INDEX_SHAPE)

    for i, name in enumerate(inits.NAMES):
        got = np.asarray(f(jnp.int32(i), jnp.float32(0.7), KEY))
        np.testing.assert_array_equal(got, _get_jit(name, jnp.float32(0.7), KEY))
        want = np.asarray(inits.get(name, 0.7)(KEY, BY_INDEX_SHAPE))
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)


def test_by_index_vmap():
    """A batch of ids and gains, one per variant: every branch runs, each variant gets its own."""
    n = len(inits.NAMES)
    ids = jnp.array([*range(n), 2, 5, 8], jnp.int32)
    scales = jnp.linspace(0.5, 2.0, len(ids))
    keys = jax.random.split(KEY, len(ids))
    got = jax.jit(jax.vmap(lambda i, s, k: inits.by_index(i, s)(k, BY_INDEX_SHAPE)))(ids, scales, keys)
    assert got.shape == (len(ids), *BY_INDEX_SHAPE)
    for j, i in enumerate(ids.tolist()):
        name = inits.NAMES[i]
        # the jitted single-variant initializer, to float32 rounding (tests/conftest.py compiles at XLA's backend
        # optimization level 0 with the elemental emitter, which round a vmapped and a single program's ops
        # differently: orthogonal's QR by up to 2e-6 relative); another variant's draw would differ by O(1)
        np.testing.assert_allclose(np.asarray(got[j]), _get_jit(name, scales[j], keys[j]), rtol=5e-6, atol=5e-7)
        want = np.asarray(inits.get(name, scales[j])(keys[j], BY_INDEX_SHAPE))
        np.testing.assert_allclose(np.asarray(got[j]), want, rtol=5e-6, atol=5e-7)


def test_by_index_subset_names():
    names = ("kaiming_uniform", "orthogonal")
    for i, name in enumerate(names):
        want = inits.get(name, 2.0)(KEY, BY_INDEX_SHAPE)
        got = jax.jit(lambda j: inits.by_index(j, 2.0, names)(KEY, BY_INDEX_SHAPE))(jnp.int32(i))
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-8)
    # A single name needs no switch; the traced index is ignored.
    got = jax.jit(lambda j: inits.by_index(j, 1.0, ("he_normal",))(KEY, BY_INDEX_SHAPE))(jnp.int32(0))
    np.testing.assert_array_equal(np.asarray(got), np.asarray(inits.get("he_normal")(KEY, BY_INDEX_SHAPE)))
    with pytest.raises(ValueError, match="out of range"):
        inits.by_index(2, 1.0, names)


def test_by_index_traces_each_shape_once(monkeypatch):
    """Flax re-traces a parameter's initializer (``jax.eval_shape``) at every ``apply`` to check its shape:
    with a traced id, the switch over the candidates is traced once per shape and dtype, not per call."""
    import flax.linen as nn

    built = []
    real_get = inits.get
    monkeypatch.setattr(inits, "get", lambda name, scale=1.0: built.append(name) or real_get(name, scale))
    names = ("glorot_uniform", "orthogonal", "he_normal")

    def forward(i, x):
        dense = nn.Dense(7, kernel_init=inits.by_index(i, 1.5, names))
        params = dense.init(KEY, x)
        return sum(dense.apply(params, x) for _ in range(4))  # four applies: four shape checks

    x = jnp.ones((2, 5))
    jax.eval_shape(forward, jnp.int32(1), x)
    assert sorted(built) == sorted(names)  # one trace of the switch for the [5, 7] kernel
    jax.eval_shape(forward, jnp.int32(2), jnp.ones((3, 5)))
    assert sorted(built) == sorted(names)  # same kernel shape: the cached trace
    got = jax.jit(lambda i: nn.Dense(7, kernel_init=inits.by_index(i, 1.5, names)).init(KEY, x))(jnp.int32(1))
    want = nn.Dense(7, kernel_init=inits.get("orthogonal", 1.5)).init(KEY, x)
    np.testing.assert_allclose(np.asarray(got["params"]["kernel"]), np.asarray(want["params"]["kernel"]),
                               rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", [n for n in RANDOM if n != "orthogonal"])
def test_conv_kernel_fans(name):
    """Conv kernels [h, w, c_in, c_out]: the receptive field h*w multiplies both fans, as in jax."""
    # [3, 3, 4, 8]: fan_in = 36, fan_out = 72 (the large-sample check is in test_conv_kernel_hand_formulas).
    w = np.asarray(inits.get(name)(KEY, (3, 3, 4, 8)), np.float64)
    std = inits.std_formula(name, 36, 72)
    assert w.std() == pytest.approx(std, rel=0.15)  # only 288 samples
    if name in UNIFORM:
        bound = math.sqrt(3) * std
        assert bound * 0.9 < np.abs(w).max() <= bound * (1 + 1e-6)
    if name in TRUNCATED:
        assert np.abs(w).max() <= 2 * std / TRUNC_STD * (1 + 1e-6)


def test_conv_kernel_hand_formulas():
    shape = (3, 3, 4, 8)  # fan_in = 36, fan_out = 72
    assert np.abs(np.asarray(inits.get("he_uniform")(KEY, shape))).max() <= math.sqrt(6 / 36)
    assert np.abs(np.asarray(inits.get("he_uniform")(KEY, shape))).max() > 0.9 * math.sqrt(6 / 36)
    glorot = np.abs(np.asarray(inits.get("glorot_uniform")(KEY, shape))).max()
    assert 0.9 * math.sqrt(6 / 108) < glorot <= math.sqrt(6 / 108)
    # [3, 3, 64, 128]: fan_in = 9 * 64 = 576, fan_out = 9 * 128 = 1152; 74k samples.
    big = np.asarray(inits.get("he_normal")(KEY, (3, 3, 64, 128)), np.float64)
    assert big.std() == pytest.approx(math.sqrt(2 / 576), rel=0.02)
    assert big.std() == pytest.approx(inits.std_formula("he_normal", 576, 1152), rel=0.02)
    big = np.asarray(inits.get("glorot_uniform")(KEY, (3, 3, 64, 128)), np.float64)
    assert big.std() == pytest.approx(math.sqrt(2 / (576 + 1152)), rel=0.02)
    assert np.abs(big).max() == pytest.approx(math.sqrt(6 / (576 + 1152)), rel=0.01)


def test_conv_kernel_orthogonal():
    """Orthogonal reshapes [3, 3, 4, 8] to [36, 8]: orthonormal columns, entry std 1/6 = 1/sqrt(fan_in)."""
    w = np.asarray(inits.get("orthogonal", 2.0)(KEY, (3, 3, 4, 8)), np.float64).reshape(36, 8)
    np.testing.assert_allclose(w.T @ w, 4.0 * np.eye(8), atol=1e-4)
    assert np.sqrt((w**2).mean()) == pytest.approx(2.0 / 6.0, rel=1e-4)


def test_unknown_name():
    with pytest.raises(ValueError, match="relu_init") as err:
        inits.get("relu_init")
    msg = str(err.value)
    for valid in (*inits.NAMES, *inits.ALIASES):
        assert valid in msg
    with pytest.raises(ValueError, match="valid initializers"):
        inits.index("nope")
    with pytest.raises(ValueError):
        inits.canonical("Glorot_Uniform")


def test_deterministic_and_key_dependent():
    for name in RANDOM:
        a = inits.get(name)(jax.random.key(1), BY_INDEX_SHAPE)
        b = inits.get(name)(jax.random.key(1), BY_INDEX_SHAPE)
        c = inits.get(name)(jax.random.key(2), BY_INDEX_SHAPE)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert not np.allclose(np.asarray(a), np.asarray(c))


@pytest.mark.parametrize("dtype", [jnp.bfloat16])
def test_half_precision_dtypes(dtype):
    for name in inits.NAMES:
        w = inits.get(name, 2.0)(KEY, BY_INDEX_SHAPE, dtype)
        assert w.dtype == dtype
        assert np.isfinite(np.asarray(w, np.float32)).all()
    # Orthogonal draws in float32 and casts.
    w16 = np.asarray(inits.get("orthogonal", 2.0)(KEY, BY_INDEX_SHAPE, dtype), np.float32)
    w32 = np.asarray(inits.get("orthogonal", 2.0)(KEY, BY_INDEX_SHAPE))
    np.testing.assert_allclose(w16, w32, rtol=1e-2, atol=1e-2)
    # by_index builds every branch at trace time, so all of them must support the dtype.
    w = inits.by_index(jnp.int32(0), jnp.float32(2.0))(KEY, BY_INDEX_SHAPE, dtype)
    assert w.dtype == dtype
