"""Tests for jaxnets.losses: values vs float64 NumPy references, stability at +-100, gradients, labels."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxnets import losses

# ----------------------------------------------------------------------------- float64 NumPy references


def _logsumexp(z: np.ndarray) -> np.ndarray:
    return np.logaddexp.reduce(z, axis=-1)


def ref_bce(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    z, y = np.float64(z), np.float64(y)
    return np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))


def ref_ce(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    z, y = np.float64(z), np.float64(y)
    return _logsumexp(z) - np.sum(y * z, axis=-1)


def ref_sparse(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    z = np.float64(z)
    return _logsumexp(z) - np.take_along_axis(z, y[..., None], axis=-1)[..., 0]


def ref_mse(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.mean((np.float64(z) - np.float64(y)) ** 2, axis=-1)


def ref_sigmoid(z: np.ndarray) -> np.ndarray:
    z = np.float64(z)
    return np.exp(-np.logaddexp(0.0, -z))


def ref_softmax(z: np.ndarray) -> np.ndarray:
    z = np.float64(z)
    return np.exp(z - _logsumexp(z)[..., None])


N, C = 16, 5


def _logits(kind: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "normal":
        z = rng.normal(size=shape) * 3
    elif kind == "extreme":
        z = rng.choice([-100.0, 100.0], size=shape)
    else:  # mixed: +-100 next to ordinary values
        z = np.where(rng.random(shape) < 0.5, rng.choice([-100.0, 100.0], size=shape), rng.normal(size=shape))
    return z.astype(np.float32)


def _data(name: str, kind: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed + 1)
    if name == "binary_crossentropy":
        return _logits(kind, (N, 3), seed), rng.integers(0, 2, size=(N, 3)).astype(np.float32)
    z = _logits(kind, (N, C), seed)
    if name == "categorical_crossentropy":
        return z, np.eye(C, dtype=np.float32)[rng.integers(0, C, size=N)]
    if name == "sparse_categorical_crossentropy":
        return z, rng.integers(0, C, size=N).astype(np.int32)
    return z, (rng.normal(size=(N, C)) * 3).astype(np.float32)


REFS = {
    "binary_crossentropy": ref_bce,
    "categorical_crossentropy": ref_ce,
    "sparse_categorical_crossentropy": ref_sparse,
    "mse": ref_mse,
}
KINDS = ("normal", "extreme", "mixed")


# ----------------------------------------------------------------------------------------------- values


def test_names_and_get():
    assert losses.NAMES == (
        "binary_crossentropy",
        "categorical_crossentropy",
        "sparse_categorical_crossentropy",
        "mse",
    )
    for name in losses.NAMES:
        assert losses.get(name) is getattr(losses, name)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", losses.NAMES)
def test_matches_float64_reference(name, kind):
    z, y = _data(name, kind)
    got = np.asarray(losses.get(name)(jnp.asarray(z), jnp.asarray(y)))
    want = REFS[name](z, y)
    assert got.shape == want.shape == ((N, 3) if name == "binary_crossentropy" else (N,))
    assert got.dtype == np.float32
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", losses.NAMES)
def test_gradients_finite(name, kind):
    z, y = _data(name, kind)
    loss = losses.get(name)
    g = jax.grad(lambda z: loss(z, jnp.asarray(y)).mean())(jnp.asarray(z))
    assert g.shape == z.shape
    assert np.all(np.isfinite(np.asarray(g)))


@pytest.mark.parametrize("kind", KINDS)
def test_bce_gradient_formula(kind):
    z, y = _data("binary_crossentropy", kind)
    g = jax.grad(lambda z: losses.binary_crossentropy(z, y).sum())(jnp.asarray(z))
    np.testing.assert_allclose(np.asarray(g), ref_sigmoid(z) - y, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_ce_gradient_formula(kind):
    z, y = _data("categorical_crossentropy", kind)
    g = jax.grad(lambda z: losses.categorical_crossentropy(z, y).sum())(jnp.asarray(z))
    np.testing.assert_allclose(np.asarray(g), ref_softmax(z) - y, rtol=1e-5, atol=1e-6)


def test_mse_gradient_formula():
    z, y = _data("mse", "normal")
    g = jax.grad(lambda z: losses.mse(z, y).sum())(jnp.asarray(z))
    np.testing.assert_allclose(np.asarray(g), 2 * (z - y) / C, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_sparse_equals_one_hot(kind):
    z, y = _data("sparse_categorical_crossentropy", kind)
    one_hot = losses.to_one_hot(y, C)
    assert one_hot.shape == (N, C) and one_hot.dtype == jnp.float32
    sparse = lambda z: losses.sparse_categorical_crossentropy(z, y).mean()
    dense = lambda z: losses.categorical_crossentropy(z, one_hot).mean()
    np.testing.assert_allclose(  # both are ~1e-5 from exact at |z| = 100 (float32 spacing near 100 is 7.6e-6)
        losses.sparse_categorical_crossentropy(z, y),
        losses.categorical_crossentropy(z, one_hot),
        rtol=1e-5,
        atol=2e-5,
    )
    np.testing.assert_allclose(jax.grad(sparse)(z), jax.grad(dense)(z), rtol=1e-5, atol=1e-7)


def test_labels_of_other_dtypes():
    z, y = _data("binary_crossentropy", "normal")
    want = losses.binary_crossentropy(z, y)
    np.testing.assert_allclose(losses.binary_crossentropy(z, y.astype(np.int32)), want)
    np.testing.assert_allclose(losses.binary_crossentropy(z, y.astype(bool)), want)
    z, y = _data("categorical_crossentropy", "normal")
    np.testing.assert_allclose(
        losses.categorical_crossentropy(z, y.astype(np.int32)), losses.categorical_crossentropy(z, y)
    )


def test_soft_labels_categorical():
    rng = np.random.default_rng(3)
    z = _logits("normal", (N, C))
    y = ref_softmax(rng.normal(size=(N, C))).astype(np.float32)
    np.testing.assert_allclose(losses.categorical_crossentropy(z, y), ref_ce(z, y), rtol=1e-5, atol=1e-5)


def test_batch_axes_jit_and_vmap():
    z = _logits("normal", (2, 3, C))
    y = np.random.default_rng(0).integers(0, C, size=(2, 3))
    loss = jax.jit(losses.sparse_categorical_crossentropy)(z, y)
    assert loss.shape == (2, 3)
    np.testing.assert_allclose(loss, ref_sparse(z, y), rtol=1e-5)
    per_variant = jax.vmap(losses.sparse_categorical_crossentropy, in_axes=(0, None))(z, y[0])
    assert per_variant.shape == (2, 3)


@pytest.mark.parametrize(
    "name, logits_shape, labels_shape",
    [
        ("binary_crossentropy", (N, 1), (N,)),  # would broadcast to [N, N] in optax
        ("categorical_crossentropy", (N, C), (N, C + 1)),
        ("sparse_categorical_crossentropy", (N, C), (N, 1)),
        ("mse", (N, C), (N, 1)),
    ],
)
def test_losses_reject_shape_mismatch(name, logits_shape, labels_shape):
    labels = np.zeros(labels_shape, np.int32 if name.startswith("sparse") else np.float32)
    with pytest.raises(ValueError, match="shape"):
        losses.get(name)(jnp.zeros(logits_shape), labels)


# ----------------------------------------------------------------------------------------- properties


@jax.jit
def _all_losses(z, y, yb):
    """Every loss on one draw, in one compiled program (one compile per shape keeps the test fast)."""
    return (
        losses.sparse_categorical_crossentropy(z, y),
        losses.categorical_crossentropy(z, losses.to_one_hot(y, z.shape[-1])),
        losses.binary_crossentropy(z, yb),
        losses.mse(z, z[::-1]),
    )


@settings(max_examples=30, deadline=None)
@given(
    batch=st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple),
    n_classes=st.integers(1, 5),
    scale=st.sampled_from([1.0, 10.0, 100.0]),
    seed=st.integers(0, 2**16),
)
def test_property_losses(batch, n_classes, scale, seed):
    """Random shapes / logits: CE, BCE, MSE >= 0 and finite; sparse == one-hot; both match the reference."""
    rng = np.random.default_rng(seed)
    z = (rng.normal(size=(*batch, n_classes)) * scale).astype(np.float32)
    y = rng.integers(0, n_classes, size=batch).astype(np.int32)
    yb = rng.integers(0, 2, size=z.shape).astype(np.float32)
    sparse, dense, bce, m = map(np.asarray, _all_losses(z, y, yb))
    assert sparse.shape == dense.shape == m.shape == batch and bce.shape == z.shape
    for value in (sparse, dense, bce, m):
        assert np.all(np.isfinite(value)) and np.all(value >= 0)
    np.testing.assert_allclose(sparse, dense, rtol=1e-5, atol=2e-5)
    np.testing.assert_allclose(sparse, ref_sparse(z, y), rtol=1e-5, atol=2e-5)
    np.testing.assert_allclose(bce, ref_bce(z, yb), rtol=1e-5, atol=1e-5)


@settings(max_examples=20, deadline=None)
@given(n_classes=st.integers(2, 5), seed=st.integers(0, 2**16))
def test_property_accuracy_matches_predict(n_classes, seed):
    rng = np.random.default_rng(seed)
    z = (rng.normal(size=(8, n_classes)) * 3).astype(np.float32)
    y = rng.integers(0, n_classes, size=8)
    acc = losses.accuracy("sparse_categorical_crossentropy", z, y)
    p = losses.predict("sparse_categorical_crossentropy", z)
    np.testing.assert_array_equal(acc, (np.argmax(p, -1) == y).astype(np.float32))
    np.testing.assert_array_equal(acc, losses.accuracy("categorical_crossentropy", z, np.eye(n_classes)[y]))


# ------------------------------------------------------------------------------- activations, accuracy


def test_output_activation_and_predict():
    z = _logits("mixed", (N, C))
    np.testing.assert_allclose(losses.predict("binary_crossentropy", z), ref_sigmoid(z), rtol=1e-6, atol=1e-7)
    for name in ("categorical_crossentropy", "sparse_categorical_crossentropy"):
        p = np.asarray(losses.predict(name, z))
        np.testing.assert_allclose(p, ref_softmax(z), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(losses.predict("mse", z), z)
    assert losses.output_activation("binary_crossentropy") is jax.nn.sigmoid


def test_accuracy():
    z = np.array([[2.0, -1.0, 0.5], [0.1, 0.3, -2.0], [-5.0, -4.0, -3.0]], np.float32)
    acc = losses.accuracy("sparse_categorical_crossentropy", z, np.array([0, 0, 2]))
    assert acc.dtype == jnp.float32
    np.testing.assert_array_equal(acc, [1.0, 0.0, 1.0])
    np.testing.assert_array_equal(
        losses.accuracy("categorical_crossentropy", z, np.eye(3, dtype=np.float32)[[0, 0, 2]]),
        [1.0, 0.0, 1.0],
    )
    zb = np.array([3.0, -2.0, 0.5, -0.1, 100.0, -100.0], np.float32)
    yb = np.array([1, 0, 0, 1, 1, 0])
    want = [1.0, 1.0, 0.0, 0.0, 1.0, 1.0]
    np.testing.assert_array_equal(losses.accuracy("binary_crossentropy", zb, yb), want)
    np.testing.assert_array_equal(losses.accuracy("binary_crossentropy", zb, yb.astype(np.float32)), want)
    np.testing.assert_array_equal(losses.accuracy("binary_crossentropy", zb, yb.astype(bool)), want)
    assert jax.jit(lambda z, y: losses.accuracy("binary_crossentropy", z, y))(zb, yb).shape == (6,)


def test_has_accuracy_and_mse_accuracy_raises():
    assert [losses.has_accuracy(n) for n in losses.NAMES] == [True, True, True, False]
    with pytest.raises(ValueError, match="accuracy does not apply.*mse"):
        losses.accuracy("mse", np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32))


@pytest.mark.parametrize(
    "fn",
    [
        losses.get,
        losses.output_activation,
        losses.has_accuracy,
        lambda n: losses.predict(n, np.zeros(3)),
        lambda n: losses.accuracy(n, np.zeros(3), np.zeros(3)),
        lambda n: losses.check_labels(n, np.zeros(3), 1),
    ],
)
def test_unknown_name_lists_valid_names(fn):
    with pytest.raises(ValueError, match="'hinge'.*binary_crossentropy, categorical_crossentropy") as err:
        fn("hinge")
    assert all(name in str(err.value) for name in losses.NAMES)


def test_to_one_hot():
    oh = losses.to_one_hot(jnp.array([[0, 2], [1, 1]]), 3)
    assert oh.shape == (2, 2, 3) and oh.dtype == jnp.float32
    np.testing.assert_array_equal(oh[0, 1], [0.0, 0.0, 1.0])


# ------------------------------------------------------------------------------------------ check_labels

SPARSE = "sparse_categorical_crossentropy"
CAT = "categorical_crossentropy"
BIN = "binary_crossentropy"


@pytest.mark.parametrize(
    "name, labels, output_dim, logits_shape",
    [
        (SPARSE, np.array([0, 3, 9]), 10, (3, 10)),
        (SPARSE, jnp.array([[0, 1], [2, 0]], jnp.int32), 3, (2, 2, 3)),
        (SPARSE, np.array([], np.int64), 4, None),
        (SPARSE, np.array([0, 1], np.uint8), 2, None),
        (CAT, np.eye(4, dtype=np.float32)[[0, 3, 1]], 4, (3, 4)),
        (CAT, np.array([[0.2, 0.3, 0.5]], np.float32), 3, None),
        (BIN, np.array([0, 1, 1, 0]), 1, (4,)),
        (BIN, np.array([[0.0], [1.0]], np.float32), 1, (2, 1)),
        (BIN, np.array([True, False]), 1, None),
        (BIN, jnp.array([[0, 1, 1], [1, 0, 0]]), 3, (2, 3)),
        ("mse", np.array([[1.5, -2.0], [0.0, 3.0]]), 2, (2, 2)),
        ("mse", np.array([[1, 2]], np.int32), 2, None),
    ],
)
def test_check_labels_valid(name, labels, output_dim, logits_shape):
    assert losses.check_labels(name, labels, output_dim, logits_shape) is None


@pytest.mark.parametrize(
    "name, labels, output_dim, logits_shape, match",
    [
        # sparse: dtype, range, shape
        (SPARSE, np.array([0.0, 1.0]), 3, None, r"must be integers in \[0, 2\], got dtype float64"),
        (SPARSE, np.eye(3, dtype=np.float32), 3, None, "integers.*one-hot.*categorical_crossentropy"),
        (SPARSE, np.array([True, False]), 3, None, "must be integers.*bool"),
        (SPARSE, np.array([0, 5, 12]), 10, None, r"must be integers in \[0, 9\], found values in \[0, 12\]"),
        (SPARSE, np.array([-1, 3]), 10, None, r"integers in \[0, 9\], found values in \[-1, 3\]"),
        (SPARSE, np.array([0, 1, 2]), 3, (3, 4), "logits shape.*output_dim=3"),
        (
            SPARSE,
            np.array([[0], [1]]),
            3,
            (2, 3),
            r"labels shape \(2, 1\) does not match logits shape \(2, 3\)",
        ),
        (SPARSE, jnp.array([0, 10]), 10, None, r"found values in \[0, 10\]"),
        # binary: values, NaN, shape
        (BIN, np.array([0, 1, 2]), 1, None, r"must be 0 or 1, found other values \[2\]"),
        (BIN, np.array([-1, 0, 1]), 1, None, r"must be 0 or 1, found other values \[-1\]"),
        (BIN, np.array([0.0, 0.5, 1.0]), 1, None, r"must be 0 or 1.*0\.5"),
        (BIN, np.array([0.0, np.nan]), 1, None, "NaN/Inf"),
        (BIN, np.array([0, 1, 1]), 1, (3, 1), r"labels shape \(3,\) does not match.*labels\[\.\.\., None\]"),
        (BIN, np.array([[0, 1]]), 3, None, "output_dim=3"),
        # categorical: dtype, last axis, values, row sums, NaN, shape
        (CAT, np.array([0, 2, 1]), 3, None, "float one-hot.*dtype int.*sparse_categorical_crossentropy"),
        (CAT, np.eye(3, dtype=np.float32), 4, None, r"last axis must have size output_dim=4.*\(3, 3\)"),
        (
            CAT,
            np.array([[1.5, -0.5]], np.float32),
            2,
            None,
            r"probabilities in \[0, 1\], found values in \[-0.5",
        ),
        (CAT, np.array([[0.5, 0.2, 0.1]], np.float32), 3, None, r"rows must sum to 1.*row sums in \[0.8"),
        (CAT, np.array([[1.0, 1.0]], np.float32), 2, None, r"rows must sum to 1.*\[2, 2\]"),
        (CAT, np.array([[np.inf, 0.0]], np.float32), 2, None, "NaN/Inf"),
        (
            CAT,
            np.eye(3, dtype=np.float32),
            3,
            (4, 3),
            r"labels shape \(3, 3\) does not match logits shape \(4, 3\)",
        ),
        # mse: NaN/Inf, last axis, shape
        ("mse", np.array([[1.0, np.nan]]), 2, None, r"mse: labels contain NaN/Inf \(1 of 2"),
        ("mse", np.array([[1.0, -np.inf]]), 2, None, "NaN/Inf"),
        ("mse", np.zeros((4, 3)), 2, None, r"last axis must have size output_dim=2.*\(4, 3\)"),
        ("mse", np.zeros((4, 2)), 2, (5, 2), r"labels shape \(4, 2\) does not match logits shape \(5, 2\)"),
        # anything: non-numeric, bad output_dim
        ("mse", np.array([["a", "b"]]), 2, None, "numeric"),
        (SPARSE, np.array([0]), 0, None, "output_dim must be a positive integer"),
    ],
)
def test_check_labels_errors(name, labels, output_dim, logits_shape, match):
    with pytest.raises(ValueError, match=match) as err:
        losses.check_labels(name, labels, output_dim, logits_shape)
    assert str(err.value).startswith(name)


def test_check_labels_under_jit_raises_type_error():
    with pytest.raises(TypeError, match="concrete"):
        jax.jit(lambda y: losses.check_labels(SPARSE, y, 3))(jnp.array([0, 1]))


# ------------------------------------------------------------------------------- labels_for / fit_logits


def test_labels_for_each_loss():
    y = np.array([0, 2, 1], np.int32)
    np.testing.assert_array_equal(losses.labels_for("sparse_categorical_crossentropy", y, 3, "multiclass"), y)
    np.testing.assert_array_equal(losses.labels_for("categorical_crossentropy", y, 3, "multiclass"),
                                  np.eye(3, dtype=np.float32)[y])
    np.testing.assert_array_equal(losses.labels_for("mse", y, 3, "multiclass"), np.eye(3, dtype=np.float32)[y])
    b = np.array([0, 1, 1], np.int32)
    out = losses.labels_for("binary_crossentropy", b, 1, "binary")
    assert out.dtype == np.float32 and out.shape == (3,)
    mse_binary = losses.labels_for("mse", b, 1, "binary")
    assert mse_binary.shape == (3, 1) and mse_binary.dtype == np.float32
    t = np.array([[0.5], [1.5]], np.float64)
    assert losses.labels_for("mse", t, 1, "regression").dtype == np.float32
    with pytest.raises(ValueError, match="binary_crossentropy needs a binary task"):
        losses.labels_for("binary_crossentropy", y, 3, "multiclass")
    with pytest.raises(ValueError, match=r"integers in \[0, 2\]"):
        losses.labels_for("categorical_crossentropy", np.array([0, 3]), 3, "multiclass")


def test_fit_logits_drops_only_a_binary_unit_axis():
    z1 = jnp.zeros((4, 1))
    assert losses.fit_logits("binary_crossentropy", z1, jnp.zeros((4,))).shape == (4,)
    assert losses.fit_logits("binary_crossentropy", z1, jnp.zeros((4, 1))).shape == (4, 1)
    assert losses.fit_logits("sparse_categorical_crossentropy", jnp.zeros((4, 3)), jnp.zeros((4,))).shape == (4, 3)
    assert losses.fit_logits("mse", z1, jnp.zeros((4,))).shape == (4, 1)


def test_the_suite_raises_on_rank_promotion():
    """tests/conftest.py turns implicit rank promotion into an error ([N] + [N, 1] must not broadcast)."""
    with pytest.raises(ValueError, match="rank_promotion"):
        jnp.zeros((3,)) + jnp.zeros((3, 1))
