"""Models: output shapes for every kind and cell, recorded values, the scanned RNN against a step-by-step
unroll of the same cell, ids vs names, and a few training steps lowering the loss on digits."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnets import activations, data, initializers, losses
from jaxnets.models import CELLS, CNN, MLP, RNN

KEY = jax.random.key(0)


def test_mlp_shapes_and_recorded_layers():
    x = jnp.ones((5, 64))
    model = MLP(hidden=(32, 16), output_dim=10)
    params = model.init(KEY, x)["params"]
    assert sorted(params) == ["layer_00", "layer_01", "output"]
    logits, rec = model.apply({"params": params}, x, mutable=["intermediates"])
    chex.assert_shape(logits, (5, 10))
    chex.assert_shape(rec["intermediates"]["preact"], [(5, 32), (5, 16)])
    chex.assert_shape(rec["intermediates"]["act"], [(5, 32), (5, 16)])
    # recording does not change outputs
    np.testing.assert_array_equal(model.apply({"params": params}, x), logits)


def test_cnn_shapes_on_digit_images():
    x = jnp.ones((3, 8, 8, 1))
    model = CNN(channels=(8, 16), dense=(32,), output_dim=10)
    params = model.init(KEY, x)["params"]
    assert sorted(params) == ["layer_00", "layer_01", "layer_02", "output"]
    logits, rec = model.apply({"params": params}, x, mutable=["intermediates"])
    chex.assert_shape(logits, (3, 10))
    chex.assert_shape(rec["intermediates"]["act"], [(3, 8, 8, 8), (3, 4, 4, 16), (3, 32)])


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("many_to_many", [False, True])
def test_rnn_shapes(cell, many_to_many):
    x = jnp.ones((4, 7, 3))
    model = RNN(hidden=(6,), output_dim=2, cell=cell, many_to_many=many_to_many)
    params = model.init(KEY, x)["params"]
    logits, rec = model.apply({"params": params}, x, mutable=["intermediates"])
    chex.assert_shape(logits, (4, 7, 2) if many_to_many else (4, 2))
    chex.assert_shape(rec["intermediates"]["act"], [(4, 7, 6)])


@pytest.mark.parametrize("cell", list(CELLS))
def test_scanned_rnn_equals_step_by_step_unroll(cell):
    x = jax.random.normal(jax.random.key(1), (4, 9, 3))
    model = RNN(hidden=(5,), output_dim=2, cell=cell, many_to_many=True, activation="tanh")
    params = model.init(KEY, x)["params"]
    got = model.apply({"params": params}, x)
    # the same Flax cell, applied one step at a time in Python
    cell_mod = CELLS[cell](features=5, activation_fn=jnp.tanh)
    cell_params = {"params": params["layer_00"]["cell"]}
    carry = cell_mod.initialize_carry(KEY, (4, 3))
    outs = []
    for t in range(x.shape[1]):
        carry, h = cell_mod.apply(cell_params, carry, x[:, t])
        outs.append(h)
    hs = jnp.stack(outs, axis=1)
    want = nn.Dense(2).apply({"params": params["output"]}, hs)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_lstm_is_lstmcell_with_fused_matmuls():
    """The "lstm" cell (Flax's OptimizedLSTMCell) has LSTMCell's parameters — names, shapes and initial values
    bit for bit — and its outputs; the gradients agree to float32 rounding."""
    x = jax.random.normal(jax.random.key(1), (4, 9, 3))
    fused, plain = nn.RNN(CELLS["lstm"](features=5)), nn.RNN(nn.LSTMCell(features=5))
    p_fused, p_plain = fused.init(KEY, x), plain.init(KEY, x)
    assert jax.tree.structure(p_fused) == jax.tree.structure(p_plain)
    for a, b in zip(jax.tree.leaves(p_fused), jax.tree.leaves(p_plain), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(fused.apply(p_plain, x), plain.apply(p_plain, x), rtol=1e-6, atol=1e-7)
    g_fused = jax.grad(lambda p: jnp.sum(fused.apply(p, x) ** 2))(p_plain)
    g_plain = jax.grad(lambda p: jnp.sum(plain.apply(p, x) ** 2))(p_plain)
    for a, b in zip(jax.tree.leaves(g_fused), jax.tree.leaves(g_plain), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_activation_and_init_by_id_equal_by_name():
    x = jax.random.normal(KEY, (6, 10))
    names = ("relu", "tanh")
    init_names = ("glorot_uniform", "he_normal")
    by_name = MLP(hidden=(8,), output_dim=3, activation="tanh", kernel_init=initializers.get("he_normal", 2.0))
    by_id = MLP(hidden=(8,), output_dim=3, activation=jnp.int32(1), activation_names=names,
                kernel_init=initializers.by_index(jnp.int32(1), jnp.float32(2.0), init_names))
    p1 = jax.jit(lambda k: by_name.init(k, x))(KEY)
    p2 = jax.jit(lambda k: by_id.init(k, x))(KEY)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(by_id.apply(p2, x), by_name.apply(p1, x), rtol=1e-6)


def test_dropout_rate_as_data():
    x = jnp.ones((64, 16))
    model = MLP(hidden=(256,), output_dim=2, dropout=jnp.float32(0.5))
    params = model.init(KEY, x)
    _, rec = model.apply(params, x, train=True, rngs={"dropout": KEY}, mutable=["intermediates"])
    # dropout applies after recording; outputs differ from eval mode, eval mode is deterministic
    a = model.apply(params, x, train=True, rngs={"dropout": KEY})
    b = model.apply(params, x)
    assert not np.allclose(a, b)
    zero = MLP(hidden=(256,), output_dim=2, dropout=jnp.float32(0.0))
    np.testing.assert_array_equal(zero.apply(params, x, train=True, rngs={"dropout": KEY}), b)


def test_unknown_cell_and_bad_shapes_raise():
    with pytest.raises(ValueError, match="unknown RNN cell 'rnn'"):
        RNN(hidden=(4,), output_dim=2, cell="rnn").init(KEY, jnp.ones((2, 3, 4)))
    with pytest.raises(ValueError, match="CNN expects images"):
        CNN(channels=(4,), output_dim=2).init(KEY, jnp.ones((2, 64)))


@pytest.mark.parametrize(
    "name, model",
    [
        ("digits", MLP(hidden=(32,), output_dim=10)),
        ("digits_image", CNN(channels=(8,), output_dim=10)),
        ("digits_sequence", RNN(hidden=(32,), output_dim=10, cell="gru")),
    ],
)
def test_a_few_steps_lower_the_loss(name, model):
    ds = data.load(name)
    x, y = jnp.asarray(ds.x_train[:256]), jnp.asarray(ds.y_train[:256])
    params = model.init(KEY, x)["params"]
    tx = optax.adam(1e-2)
    opt = tx.init(params)

    def loss(p):
        return jnp.mean(losses.sparse_categorical_crossentropy(model.apply({"params": p}, x), y))

    @jax.jit
    def step(p, o):
        value, g = jax.value_and_grad(loss)(p)
        u, o = tx.update(g, o, p)
        return optax.apply_updates(p, u), o, value

    first = float(loss(params))
    for _ in range(30):
        params, opt, _ = step(params, opt)
    assert float(loss(params)) < 0.7 * first


def test_activation_names_default_to_registry():
    assert MLP(hidden=(1,), output_dim=1).activation_names == activations.NAMES


@pytest.mark.parametrize("patches", ["one-hot matmul", "slices"])
@pytest.mark.parametrize("shape, kernel", [((2, 8, 8, 1), (3, 3, 1, 4)), ((3, 5, 4, 3), (3, 2, 3, 6))])
def test_matmul_conv_equals_xla_conv_values_and_grads(shape, kernel, patches, monkeypatch):
    from jaxnets.models import cnn
    from jaxnets.models.cnn import matmul_conv

    monkeypatch.setattr(cnn, "SHIFT_MATMUL_MAX_COST", 10**9 if patches == "one-hot matmul" else 0)
    monkeypatch.setattr(cnn, "SHIFT_MATMUL_MAX_POSITIONS", 10**9)
    x = jax.random.normal(jax.random.key(2), shape)
    w = jax.random.normal(jax.random.key(3), kernel)
    dn = ("NHWC", "HWIO", "NHWC")
    for padding in ("SAME", "VALID"):
        def ref(x, w, padding=padding):
            return jax.lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=dn)

        def ours(x, w, padding=padding):
            return matmul_conv(x, w, (1, 1), padding)

        np.testing.assert_allclose(ours(x, w), ref(x, w), rtol=1e-5, atol=1e-5)
        g_ref = jax.grad(lambda x, w: jnp.sum(jnp.sin(ref(x, w))), argnums=(0, 1))(x, w)
        g_ours = jax.grad(lambda x, w: jnp.sum(jnp.sin(ours(x, w))), argnums=(0, 1))(x, w)
        for a, b in zip(g_ours, g_ref, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_patch_matrix_picks_each_patch_entry():
    from jaxnets.models.cnn import patch_matrix

    h, w, kh, kw, pads = 3, 4, 2, 3, ((1, 0), (1, 1))
    m = patch_matrix(h, w, kh, kw, pads)
    oh, ow = h + 1 - kh + 1, w + 2 - kw + 1
    assert m.shape == (oh * ow * kh * kw, h * w)
    x = np.arange(1, h * w + 1, dtype=np.float32).reshape(h, w)
    xp = np.pad(x, pads)  # zero padding
    want = np.stack([xp[p + i, q + j] for p in range(oh) for q in range(ow) for i in range(kh) for j in range(kw)])
    np.testing.assert_array_equal(m @ x.ravel(), want)
    assert set(np.unique(m)) <= {0.0, 1.0} and (m.sum(axis=1) <= 1).all()


@pytest.mark.parametrize("shape, kernel, padding", [((5, 8, 8, 3), (3, 3, 3, 4), "SAME"),
                                                    ((2, 4, 4, 16), (3, 3, 16, 32), "SAME"),
                                                    ((2, 3, 7, 2), (2, 3, 2, 8), ((1, 0), (2, 1)))])
def test_matmul_conv_patch_forms_agree_bit_for_bit(shape, kernel, padding, monkeypatch):
    """The one-hot matmul and the shifted slices give the same outputs and kernel gradients bit for bit (the
    input gradient sums the same terms in another order), also vmapped over variants."""
    from jaxnets.models import cnn

    x = jax.random.normal(jax.random.key(4), (3, *shape))
    w = jax.random.normal(jax.random.key(5), (3, *kernel))

    def run(cost):
        monkeypatch.setattr(cnn, "SHIFT_MATMUL_MAX_COST", cost)
        monkeypatch.setattr(cnn, "SHIFT_MATMUL_MAX_POSITIONS", 10**9)
        f = lambda x, w: cnn.matmul_conv(x, w, (1, 1), padding)  # noqa: E731
        out = jax.vmap(f)(x, w)
        grads = jax.vmap(jax.grad(lambda x, w: jnp.sum(jnp.sin(f(x, w))), argnums=(0, 1)))(x, w)
        return out, grads

    (out_m, (gx_m, gw_m)), (out_s, (gx_s, gw_s)) = run(10**9), run(0)
    np.testing.assert_array_equal(out_m, out_s)
    np.testing.assert_array_equal(gw_m, gw_s)
    np.testing.assert_allclose(gx_m, gx_s, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("hw, out_channels, one_hot", [((8, 8), 16, True), ((4, 4), 32, True),
                                                       ((8, 8), 8, False), ((28, 28), 512, False)])
def test_matmul_conv_takes_the_one_hot_form_only_for_small_maps(hw, out_channels, one_hot):
    """One-hot patches when H * W <= SHIFT_MATMUL_MAX_COST * out channels and <= SHIFT_MATMUL_MAX_POSITIONS
    (the digits CNN's 8x8 -> 16 and 4x4 -> 32 layers); shifted slices otherwise (cost, or a 28x28 map)."""
    from jaxnets.models.cnn import matmul_conv

    x = jax.ShapeDtypeStruct((2, *hw, 3), jnp.float32)
    w = jax.ShapeDtypeStruct((3, 3, 3, out_channels), jnp.float32)
    jaxpr = str(jax.make_jaxpr(lambda x, w: matmul_conv(x, w, (1, 1), "SAME"))(x, w))
    assert ("concatenate" not in jaxpr) == one_hot
    assert jaxpr.count("dot_general") == (2 if one_hot else 1)


def test_cnn_conv_impls_agree():
    x = jax.random.normal(KEY, (3, 8, 8, 1))
    xla = CNN(channels=(4, 8), output_dim=5)
    mm = CNN(channels=(4, 8), output_dim=5, conv_impl="matmul")
    params = xla.init(KEY, x)
    np.testing.assert_allclose(mm.apply(params, x), xla.apply(params, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(32, 13, 32), (16, 32, 3), (4, 7, 40, 32), (8, 64, 64)])
def test_small_kernel_dot_general_matches_lax(shape):
    """Same values and gradients as lax.dot_general (small kernels take the multiply-and-sum gradient,
    (8, 64, 64) is above SMALL_KERNEL and falls through), also under vmap over variants."""
    from jaxnets.models import SMALL_KERNEL, small_kernel_dot_general

    *batch, i, o = shape
    kx, kw = jax.random.split(KEY)
    x = jax.random.normal(kx, (3, *batch, i))
    w = jax.random.normal(kw, (3, i, o))
    dims = (((x.ndim - 2,), (0,)), ((), ()))

    def loss(dot, x, w):
        out = dot(x, w, dims)
        return jnp.sum(jnp.tanh(out) * jnp.arange(o).reshape((1,) * (out.ndim - 1) + (o,)))

    ours = jax.vmap(jax.value_and_grad(lambda x, w: loss(small_kernel_dot_general, x, w), argnums=(0, 1)))(x, w)
    ref = jax.vmap(jax.value_and_grad(lambda x, w: loss(jax.lax.dot_general, x, w), argnums=(0, 1)))(x, w)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert (i * o <= SMALL_KERNEL) == (shape != (8, 64, 64))


def test_dense_layers_take_a_dot_general():
    from jaxnets.models import small_kernel_dot_general

    x = jax.random.normal(KEY, (5, 64))
    plain = MLP(hidden=(16, 16), output_dim=3)
    fast = MLP(hidden=(16, 16), output_dim=3, dot_general=small_kernel_dot_general)
    params = plain.init(KEY, x)["params"]
    g1 = jax.grad(lambda p: jnp.sum(plain.apply({"params": p}, x) ** 2))(params)
    g2 = jax.grad(lambda p: jnp.sum(fast.apply({"params": p}, x) ** 2))(params)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (3, 5, 7, 2), (1, 2, 2, 1)])
def test_max_pool_2x2_equals_flax_max_pool_values_and_grads(shape):
    """Bit for bit, ties included (relu zeros and integer values tie often): the gradient goes to the first
    maximum of each window, as ``reduce_window``'s ``select_and_scatter`` puts it; also under vmap."""
    import flax.linen as nn

    from jaxnets.models.cnn import max_pool_2x2

    ref = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2))  # noqa: E731
    for x in (jax.random.normal(KEY, shape), jnp.round(jax.random.normal(KEY, shape)),
              jax.nn.relu(jax.random.normal(KEY, shape))):
        np.testing.assert_array_equal(max_pool_2x2(x), ref(x))
        w = jax.random.normal(jax.random.key(5), ref(x).shape)
        g = jax.grad(lambda x, f, w=w: jnp.sum(jnp.sin(f(x)) * w), argnums=0)
        np.testing.assert_array_equal(g(x, max_pool_2x2), g(x, ref))
        xs = jnp.stack([x, -x])
        gv = jax.vmap(lambda x, g=g: g(x, max_pool_2x2))(xs)
        np.testing.assert_array_equal(gv, jax.vmap(lambda x, g=g: g(x, ref))(xs))
