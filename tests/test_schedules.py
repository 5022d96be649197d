"""Issue 25: learning-rate schedules as variant data, epoch sampling, your own optimizer factory.

Every schedule is compared with the ``optax.schedules`` function it claims to equal, every sampling rule with
its documented key derivation, and every variant trained with your own optimizer with a plain Optax loop.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxnets import data, engine, population, schedules, variants

IRIS = data.load("iris")  # 90 training examples
BASE = {"hidden": (8,), "steps": 40, "eval_every": 10, "batch_size": 16, "activation": "tanh"}


# ------------------------------------------------------------------------------------------------ schedules


def _ours(kind, hp, steps):
    return np.asarray(jax.jit(jax.vmap(lambda t: schedules.rate(kind, t, hp)))(np.asarray(steps)))


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(schedules.NAMES), lr=st.floats(1e-5, 10.0), warmup=st.integers(0, 300),
       extra=st.integers(1, 700), end=st.sampled_from([0.0, 0.01, 0.1, 0.5, 2.0]),
       rate=st.floats(0.05, 3.0))
def test_each_schedule_equals_its_optax_function_at_every_step(kind, lr, warmup, extra, end, rate):
    decay = warmup + extra
    hp = {"learning_rate": lr, "warmup_steps": warmup, "decay_steps": decay, "end_factor": end, "decay_rate": rate}
    steps = np.arange(0, decay + 50)
    ref = schedules.reference(kind, lr, warmup, decay, end, rate)
    want = np.asarray([ref(int(t)) for t in steps], np.float64)
    # float32 rounding of a rate up to max(lr, lr * end) (exponential growth: up to lr * rate ** (t / decay))
    scale = np.maximum(np.abs(want), lr)
    np.testing.assert_array_less(np.abs(_ours(kind, hp, steps) - want), 4e-6 * scale + 1e-12)


def test_warmup_without_warmup_steps_starts_at_the_peak():
    hp = {"learning_rate": 0.1, "warmup_steps": 0, "decay_steps": 100, "end_factor": 0.0, "decay_rate": 0.1}
    assert _ours("warmup_constant", hp, [0, 5])[0] == pytest.approx(0.1)
    assert _ours("warmup_cosine", hp, [0])[0] == pytest.approx(0.1)
    assert _ours("constant", hp, [0, 10**6]).tolist() == pytest.approx([0.1, 0.1])


def _grid():
    return [{**BASE, "steps": 300, "eval_every": 25, "schedule": "warmup_cosine", "warmup_steps": w,
             "learning_rate": lr, "end_factor": e}
            for w in (0, 50, 200) for lr in (1e-3, 3e-3, 1e-2) for e in (0.0, 0.1)]


def test_a_warmup_cosine_grid_is_one_program_and_reports_optax_rates():
    """The issue's grid: warmup {0, 50, 200} x peak {1e-3, 3e-3, 1e-2} x end_factor {0, 0.1}, one static group;
    the history's learning_rate is optax's warmup_cosine_decay_schedule at every evaluation step."""
    rows = _grid()
    r = engine.train(rows, IRIS)
    assert len(r.groups) == 1 and r.history["learning_rate"].shape == (18, 13)
    for i, row in enumerate(rows):
        lr = row["learning_rate"]
        ref = optax.schedules.warmup_cosine_decay_schedule(0.0, lr, row["warmup_steps"], 300, lr * row["end_factor"])
        want = np.asarray([ref(int(t)) for t in r.eval_steps])
        np.testing.assert_allclose(r.history["learning_rate"][i], want, rtol=1e-6, atol=1e-7 * lr)


def test_a_schedule_trains_as_optax_with_that_schedule():
    """The built-in optimizer under a schedule equals ``optax.adam(schedule)`` in a plain full-batch loop."""
    row = {**BASE, "batch_size": 90, "optimizer": "adam", "learning_rate": 0.05, "schedule": "warmup_cosine",
           "warmup_steps": 10, "end_factor": 0.1}
    r = engine.train([row], IRIS)
    ref = schedules.reference("warmup_cosine", 0.05, 10, 40, 0.1)
    params = _plain_loop(row, optax.adam(ref, eps=1e-8), steps=40)
    _assert_trees_close(r.params(0), params)


def test_schedule_checks():
    with pytest.raises(variants.VariantError, match="unknown schedule 'cos'; valid schedules: constant"):
        variants.normalize({"schedule": "cos"}, 0, "mse")
    with pytest.raises(variants.VariantError, match="warmup_steps = 100 has no effect with schedule = 'cosine'"):
        variants.normalize({"schedule": "cosine", "warmup_steps": 100}, 0, "mse")
    with pytest.raises(variants.VariantError, match="decay_rate = 0.5 has no effect with schedule = 'constant'"):
        variants.normalize({"decay_rate": 0.5}, 0, "mse")
    with pytest.raises(variants.VariantError, match=r"decay_steps \(100\) must exceed warmup_steps \(100\)"):
        variants.normalize({"schedule": "warmup_cosine", "warmup_steps": 100, "steps": 100}, 0, "mse")
    with pytest.raises(variants.VariantError, match="end_factor must be >= 0"):
        variants.normalize({"schedule": "linear", "end_factor": -0.5}, 0, "mse")
    with pytest.raises(variants.VariantError, match="unknown sampling 'shuffle'; valid: epoch, replacement"):
        variants.normalize({"sampling": "shuffle"}, 0, "mse")
    row = variants.normalize({"schedule": "cosine", "steps": 77}, 0, "mse")
    assert row["decay_steps"] == 77  # default: the variant's steps
    assert variants.normalize(row, 0, "mse") == row  # a normalized row normalizes to itself


# -------------------------------------------------------------------------------------------------- sampling


def _indices(row, first_step, n, ds=IRIS):
    prog = engine.program([row], ds)
    hp = {k: v[0] for k, v in prog.stack().items()}
    return np.asarray(jax.jit(prog.batch_indices, static_argnums=2)(jnp.int32(first_step), hp, n))


@pytest.mark.parametrize("seed", [0, 7])
def test_an_epoch_uses_every_training_example_once(seed):
    row = {**BASE, "batch_size": 16, "seed": seed}
    per = 90 // 16  # 5 steps per epoch, the last 10 of each order left out
    idx = _indices(row, 0, 3 * per)
    for e in range(3):
        epoch = idx[e * per:(e + 1) * per].ravel()
        assert len(np.unique(epoch)) == per * 16 and epoch.min() >= 0 and epoch.max() < 90
        # the documented derivation: permutation(fold_in(fold_in(key(seed), 1), epoch), N)
        key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), 1), e)
        np.testing.assert_array_equal(epoch, np.asarray(jax.random.permutation(key, 90))[:per * 16])
    assert not np.array_equal(np.sort(idx[:per].ravel()), np.sort(idx[per:2 * per].ravel())) or \
        not np.array_equal(idx[:per], idx[per:2 * per])  # a fresh order each epoch


def test_a_chunk_across_epochs_draws_what_single_steps_draw():
    row = {**BASE, "batch_size": 16, "seed": 3}
    chunk = _indices(row, 3, 13)  # steps 3..15: epochs 0, 1, 2 and 3
    steps = np.concatenate([_indices(row, t, 1) for t in range(3, 16)])
    np.testing.assert_array_equal(chunk, steps)


def test_full_batch_takes_every_example_in_order():
    idx = _indices({**BASE, "batch_size": 90}, 5, 4)
    np.testing.assert_array_equal(idx, np.tile(np.arange(90), (4, 1)))


def test_replacement_draws_as_documented():
    row = {**BASE, "batch_size": 16, "seed": 4, "sampling": "replacement"}
    idx = _indices(row, 10, 3)
    base = jax.random.fold_in(jax.random.key(4), 1)
    want = [np.asarray(jax.random.randint(jax.random.fold_in(base, t), (16,), 0, 90)) for t in (10, 11, 12)]
    np.testing.assert_array_equal(idx, np.stack(want))


def _loss_fn(row, ds):
    net = engine.model({k: v for k, v in row.items() if k in variants.KEYS}, ds)  # the built-in model

    def loss(params, x, y):
        logits = net.apply({"params": params}, x)
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))

    return loss


def _init(row, ds=IRIS, **kw):
    prog = engine.program([row], ds, **kw)
    return prog.init_params({k: v[0] for k, v in prog.stack().items()})[0]


def _plain_loop(row, tx, steps, ds=IRIS, batches=None, **kw):
    """A plain Optax loop from the engine's initial parameters: full batch, or the given minibatch indices."""
    params = _init(row, ds, **kw)
    loss = _loss_fn(row, ds)
    x, y = jnp.asarray(ds.x_train, jnp.float32), jnp.asarray(ds.y_train, jnp.int32)

    @jax.jit
    def step(params, opt_state, idx):
        g = jax.grad(loss)(params, x[idx], y[idx])
        updates, opt_state = tx.update(g, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    opt_state = tx.init(params)
    for t in range(steps):
        idx = jnp.arange(len(x)) if batches is None else batches[t]
        params, opt_state = step(params, opt_state, idx)
    return params


def _assert_trees_close(a, b, rtol=2e-5, atol=2e-6):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def test_full_batch_is_plain_gradient_descent():
    row = {**BASE, "batch_size": 90, "optimizer": "sgd", "learning_rate": 0.1, "steps": 30}
    r = engine.train([row], IRIS)
    _assert_trees_close(r.params(0), _plain_loop(row, optax.sgd(0.1), 30))


def test_a_variant_replays_outside_jaxnets_from_the_documented_keys():
    """Epoch sampling, minibatches of 16: a plain Optax loop drawing its batches as the README says."""
    seed, size, steps = 5, 16, 23
    row = {**BASE, "batch_size": size, "optimizer": "momentum", "learning_rate": 0.05, "steps": steps,
           "seed": seed, "eval_every": 23}
    per = 90 // size
    base = jax.random.fold_in(jax.random.key(seed), 1)
    batches = []
    for t in range(steps):
        perm = jax.random.permutation(jax.random.fold_in(base, t // per), 90)
        batches.append(perm[(t % per) * size:(t % per + 1) * size])
    r = engine.train([row], IRIS)
    _assert_trees_close(r.params(0), _plain_loop(row, optax.sgd(0.05, momentum=0.9), steps, batches=batches))


# ---------------------------------------------------------------------------------------- your own optimizer


def _per_layer(hp):
    """SGD with a learning rate per layer: lr1 for the hidden layer, lr2 for the output layer."""
    labels = lambda params: {name: ("first" if name == "layer_00" else "rest") for name in params}  # noqa: E731
    return optax.multi_transform({"first": optax.sgd(hp["lr1"]), "rest": optax.sgd(hp["lr2"])}, labels)


def test_per_layer_learning_rates_train_a_16x16_grid_in_one_program_as_plain_optax():
    lrs = np.geomspace(1e-3, 0.5, 16)
    rows = [{**BASE, "batch_size": 90, "steps": 20, "lr1": float(a), "lr2": float(b)} for a in lrs for b in lrs]
    seen = []
    r = engine.train(rows, IRIS, optimizer=_per_layer, extra_keys={"lr1": "vmapped", "lr2": "vmapped"},
                     progress=seen.append)
    assert len(r.groups) == 1 and sum(type(e).__name__ == "Compiling" for e in seen) == 1
    params = _init(rows[0], IRIS, extra_keys={"lr1": "vmapped", "lr2": "vmapped"})  # every variant: seed 0
    loss = _loss_fn(rows[0], IRIS)
    x, y = jnp.asarray(IRIS.x_train, jnp.float32), jnp.asarray(IRIS.y_train, jnp.int32)

    @jax.jit
    def plain(lr1, lr2):  # a plain Optax loop of the same chain, full batch
        tx = _per_layer({"lr1": lr1, "lr2": lr2})

        def body(_, carry):
            p, s = carry
            updates, s = tx.update(jax.grad(loss)(p, x, y), s, p)
            return optax.apply_updates(p, updates), s

        return jax.lax.fori_loop(0, 20, body, (params, tx.init(params)))[0]

    for i, row in enumerate(rows):
        _assert_trees_close(r.params(i), plain(np.float32(row["lr1"]), np.float32(row["lr2"])))
    # the two rates act on their own layers: a larger lr1 moves only the hidden layer further
    move = lambda i, layer: float(jnp.linalg.norm(r.params(i)[layer]["kernel"] - params[layer]["kernel"]))  # noqa: E731
    assert move(16 * 15, "layer_00") > 10 * move(0, "layer_00")  # lr1 0.5 vs 1e-3, lr2 1e-3
    assert move(15, "output") > 10 * move(0, "output")  # lr2 0.5 vs 1e-3, lr1 1e-3


def test_your_optimizer_sees_the_schedule_and_the_builtin_keys():
    row = {**BASE, "batch_size": 90, "learning_rate": 0.03, "schedule": "linear", "end_factor": 0.1, "b1": 0.8}
    r = engine.train([row], IRIS, optimizer=lambda hp: optax.adam(hp.learning_rate_schedule, b1=hp["b1"]))
    ref = optax.adam(schedules.reference("linear", 0.03, 0, 40, 0.1), b1=0.8, eps=1e-8)
    _assert_trees_close(r.params(0), _plain_loop(row, ref, 40), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(r.history["learning_rate"][0],
                               [schedules.reference("linear", 0.03, 0, 40, 0.1)(int(t)) for t in r.eval_steps],
                               rtol=1e-6)


def test_your_optimizer_is_checked_before_compute():
    with pytest.raises(variants.VariantError, match="sets 'optimizer' while optimizer= gives your own"):
        engine.train([{**BASE, "optimizer": "sgd"}], IRIS, optimizer=lambda hp: optax.sgd(0.1))
    with pytest.raises(variants.VariantError, match="the optimizer factory returned float"):
        engine.check([BASE], IRIS, optimizer=lambda hp: 0.1)
    with pytest.raises(variants.VariantError, match="the optimizer could not be initialized: KeyError"):
        engine.check([BASE], IRIS, optimizer=lambda hp: optax.sgd(hp["lr9"]))
    with pytest.raises(TypeError, match="optimizer= must be a callable"):
        engine.check([BASE], IRIS, optimizer="adam")


def test_your_optimizer_isolates_a_diverging_variant():
    rows = [{**BASE, "lr1": 0.05, "lr2": 0.05, "seed": s} for s in range(3)]
    bad = {**rows[1], "lr1": 1e7, "lr2": 1e7}
    kw = {"optimizer": _per_layer, "extra_keys": {"lr1": "vmapped", "lr2": "vmapped"}}
    clean, mixed = engine.train(rows, IRIS, **kw), engine.train([rows[0], bad, rows[2]], IRIS, **kw)
    assert mixed.status[1] == "diverged" and list(mixed.status[[0, 2]]) == ["ok", "ok"]
    for i in (0, 2):
        np.testing.assert_array_equal(mixed.history["val_loss"][i], clean.history["val_loss"][i])


def test_asha_with_your_optimizer_prunes_and_the_survivor_equals_training_alone():
    rows = [{**BASE, "steps": 90, "lr1": float(a), "lr2": 0.05, "seed": i}
            for i, a in enumerate(np.geomspace(1e-3, 0.3, 9))]
    kw = {"optimizer": _per_layer, "extra_keys": {"lr1": "vmapped", "lr2": "vmapped"}}
    r = engine.train(rows, IRIS, policy=population.ASHA(min_steps=10, eta=3), **kw)
    assert [(r.stopped_step == s).sum() for s in (10, 30)] == [6, 2] and (r.status == "ok").sum() == 1
    best = int(np.flatnonzero(r.status == "ok")[0])
    alone = engine.train([rows[best]], IRIS, **kw)
    np.testing.assert_allclose(r.history["val_loss"][best], alone.history["val_loss"][0], rtol=1e-5)


def test_pbt_explores_a_user_key_of_your_optimizer():
    rows = [{**BASE, "steps": 60, "lr1": float(a), "lr2": 0.05, "seed": i}
            for i, a in enumerate(np.geomspace(1e-3, 0.3, 8))]
    kw = {"optimizer": _per_layer, "extra_keys": {"lr1": "vmapped", "lr2": "vmapped"}}
    pbt = population.PBT(interval=2, spaces={"lr1": ("range", 1e-4, 1.0, True)}, fraction=0.25)
    snaps = []
    r = engine.train(rows, IRIS, policy=pbt, checkpoint=snaps.append, **kw)
    parent, lr1 = r.history["parent"].astype(int), r.history["hp_lr1"]
    assert np.any(parent >= 0)
    for e in range(1, lr1.shape[1]):
        for v in np.flatnonzero(parent[:, e] >= 0):
            ratio = lr1[v, e] / lr1[parent[v, e], e - 1]
            assert min(abs(ratio - f) for f in (0.8, 1.25)) < 1e-6
    again = engine.train(rows, IRIS, policy=pbt, resume=snaps[0], **kw)
    np.testing.assert_array_equal(again.history["val_loss"], r.history["val_loss"])
    with pytest.raises(ValueError, match="PBT explores \\['lr3'\\]"):
        engine.train(rows, IRIS, policy=population.PBT(interval=2, spaces={"lr3": ("range", 1e-4, 1.0, True)}),
                     **kw)


def test_your_optimizer_with_your_model():
    class Net(nn.Module):
        hp: object

        @nn.compact
        def __call__(self, x, train: bool = False):
            return nn.Dense(3)(jnp.tanh(nn.Dense(8)(x)))

    rows = [{**BASE, "learning_rate": lr} for lr in (1e-3, 1e-2)]
    r = engine.train(rows, IRIS, model=lambda hp: Net(hp),
                     optimizer=lambda hp: optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(hp["learning_rate"])))
    assert list(r.status) == ["ok", "ok"] and r.final("val_loss")[1] < r.final("val_loss")[0]


# --------------------------------------------------------------------------------------------- config, CLI


SCHEDULE_CONFIG = """
[data]
name = "iris"
[model]
hidden = [8]
[train]
steps = 60
eval_every = 20
batch_size = 16
schedule = "warmup_cosine"
[sweep.axes]
warmup_steps = [0, 10, 30]
learning_rate = [1e-3, 1e-2]
end_factor = [0.0, 0.1]
"""

OPTIMIZER_FILE = """
import optax

def make(hp):
    labels = lambda params: {name: ("first" if name == "layer_00" else "rest") for name in params}
    return optax.multi_transform({"first": optax.sgd(hp["lr1"]), "rest": optax.sgd(hp["lr2"])}, labels)
"""

OPTIMIZER_CONFIG = """
[data]
name = "iris"
[keys]
lr1 = "vmapped"
lr2 = "vmapped"
[model]
hidden = [8]
[train]
optimizer = "opt.py:make"
steps = 40
eval_every = 10
batch_size = 16
lr2 = 0.05
[sweep]
method = "pbt"
interval = 1
[sweep.axes]
lr1 = [0.001, 0.01, 0.1, 0.3]
seed = [0, 1]
"""


def test_a_schedule_grid_from_a_config_is_one_group_with_its_rates_in_history_npz(tmp_path, capsys):
    from jaxnets import cli, config, sweep

    (tmp_path / "s.toml").write_text(SCHEDULE_CONFIG)
    assert sweep.plan(config.load(tmp_path / "s.toml")).n_units == 1
    out = tmp_path / "out"
    assert cli.main(["sweep", str(tmp_path / "s.toml"), "--out", str(out), "--quiet"]) == 0
    import pandas as pd

    table = pd.read_csv(out / "results.csv")
    with np.load(out / "history.npz") as h:
        rates, steps = h["learning_rate"], h["step"]
    for i, row in table.iterrows():
        lr = row["learning_rate"]
        ref = optax.schedules.warmup_cosine_decay_schedule(0.0, lr, int(row["warmup_steps"]), 60,
                                                           lr * row["end_factor"])
        np.testing.assert_allclose(rates[i], [ref(int(t)) for t in steps], rtol=1e-6, atol=1e-7 * lr)
    capsys.readouterr()
    assert cli.main(["sweep", str(tmp_path / "s.toml"), "--out", str(tmp_path / "dry"), "--dry-run"]) == 0
    plan = capsys.readouterr()
    assert "12 variants, 1 static group(s)" in " ".join((plan.out + plan.err).split())


def test_your_optimizer_from_a_config_with_pbt_over_its_key(tmp_path):
    from jaxnets import cli, config

    (tmp_path / "opt.py").write_text(OPTIMIZER_FILE)
    (tmp_path / "s.toml").write_text(OPTIMIZER_CONFIG)
    cfg = config.load(tmp_path / "s.toml")
    assert cfg.optimizer == "opt.py:make" and "optimizer" not in cfg.base
    out = tmp_path / "out"
    assert cli.main(["sweep", str(tmp_path / "s.toml"), "--out", str(out), "--quiet"]) == 0
    with np.load(out / "history.npz") as h:
        assert "hp_lr1" in h.files and np.any(h["parent"] >= 0)
    bad = OPTIMIZER_CONFIG.replace('"opt.py:make"', '"missing.py:make"')
    with pytest.raises(config.ConfigError, match=r"\[train\] optimizer: no file"):
        from jaxnets import sweep

        sweep.plan(config.loads(bad, base_dir=tmp_path))
    with pytest.raises(config.ConfigError, match="only your own model or optimizer reads them"):
        config.loads(OPTIMIZER_CONFIG.replace('optimizer = "opt.py:make"', ""), base_dir=tmp_path)
