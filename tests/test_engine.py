"""The engine: vectorized == sequential, determinism, divergence isolation, one compile per group,
chunking, sharding over emulated devices, early stopping, and eager errors."""

import dataclasses
import json
import math
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxnets import data, engine, variants
from jaxnets import events as jaxnets_events
from jaxnets.engine import chunk as chunk_lib
from jaxnets.engine import compile as compile_lib
from jaxnets.engine import plan, transfer
from jaxnets.engine import programs as program_lib
from jaxnets.result import METRICS

DIGITS = data.load("digits")
BASE = {"hidden": (32, 32), "steps": 100, "eval_every": 25, "batch_size": 32}

MIXED = [
    {**BASE, "activation": "relu", "init": "he_normal", "seed": 0},
    {**BASE, "activation": "tanh", "init": "glorot_uniform", "seed": 1, "learning_rate": 3e-3},
    {**BASE, "activation": "sigmoid", "init": "uniform", "seed": 2, "weight_decay": 1e-2},
    {**BASE, "activation": "elu", "init": "lecun_normal", "seed": 3, "l2": 1e-3},
    {**BASE, "activation": "gelu", "init": "orthogonal", "seed": 4, "dropout": 0.2},
    {**BASE, "activation": "leaky_relu", "init": "he_uniform", "seed": 5, "init_scale": 0.5, "clip_norm": 1.0},
    {**BASE, "activation": "silu", "init": "glorot_normal", "seed": 6, "b1": 0.8},
    {**BASE, "activation": "softplus", "init": "lecun_uniform", "seed": 7, "learning_rate": 1e-2},
]


def _params_close(a, b, rtol):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=1e-6)


@pytest.fixture(scope="module")
def mixed_result():
    return engine.train(MIXED, DIGITS)


def _assert_each_alone(together, rows, metrics):
    """Each variant of ``together`` (trained as ``rows``) has the metrics and parameters it gets alone."""
    for i, v in enumerate(rows):
        alone = engine.train([v], DIGITS)
        for k in metrics:
            np.testing.assert_allclose(together.history[k][i], alone.history[k][0], rtol=1e-4, err_msg=k)
        _params_close(together.params(i), alone.params(0), rtol=1e-4)


def test_vectorized_equals_sequential(mixed_result):
    assert len(mixed_result.groups) == 1
    _assert_each_alone(mixed_result, MIXED, ("train_loss", "val_loss", "val_accuracy"))


def test_training_lowers_the_loss(mixed_result):
    h = mixed_result.history["val_loss"]
    assert np.all(h[:, -1] < h[:, 0])
    assert np.all(mixed_result.status == "ok")
    np.testing.assert_array_equal(mixed_result.eval_steps, [0, 25, 50, 75, 100])
    assert mixed_result.history["grad_norm"].shape == (8, 5, 3)
    assert mixed_result.history["act_std"].shape == (8, 5, 2)


def test_same_inputs_same_numbers(mixed_result):
    again = engine.train(MIXED, DIGITS)
    for k in METRICS:
        np.testing.assert_array_equal(again.history[k], mixed_result.history[k])


@pytest.fixture(params=["test-flags", "users-options"])
def compiler_options(request, monkeypatch):
    """Both ways programs compile here: with the test suite's fast-compile ``XLA_FLAGS`` (conftest.py), and
    with the options users get (the platform's Tuning in full: XLA_FLAGS cleared)."""
    if request.param == "users-options":
        monkeypatch.setenv("XLA_FLAGS", "")
    return request.param


def test_vectorized_equals_sequential_with_the_users_options(compiler_options):
    rows = [MIXED[0], MIXED[4], MIXED[6]]  # relu / he; gelu / orthogonal with dropout; a third activation
    _assert_each_alone(engine.train(rows, DIGITS), rows, ("train_loss", "val_loss", "grad_norm"))


def test_divergence_is_isolated_and_bit_identical(compiler_options):
    good = [{**BASE, "activation": a, "seed": s} for a in ("relu", "tanh") for s in range(3)]
    bad = {**BASE, "activation": "relu", "seed": 9, "optimizer": "sgd", "learning_rate": 1e12}
    clean = engine.train(good, DIGITS)
    mixed = engine.train(good[:3] + [bad] + good[3:], DIGITS)
    assert mixed.status[3] == "diverged"
    assert 0 <= mixed.stopped_step[3] < BASE["steps"]
    assert np.all(np.isfinite(jax.tree.leaves(mixed.params(3))[0]))  # frozen at last finite values
    others = [0, 1, 2, 4, 5, 6]
    for k in METRICS:
        np.testing.assert_array_equal(mixed.history[k][others], clean.history[k])
    for j, i in enumerate(others):
        for x, y in zip(jax.tree.leaves(mixed.params(i)), jax.tree.leaves(clean.params(j)), strict=True):
            np.testing.assert_array_equal(x, y)
    # the history of the diverged variant repeats its last values after it stopped
    h = mixed.history["train_loss"][3]
    np.testing.assert_equal(h[-1], h[-2])  # NaN-aware


def _counting_compiles(progress: list) -> int:
    return sum(isinstance(e, jaxnets_events.Compiling) for e in progress)


def test_one_compilation_for_a_mixed_grid(monkeypatch):
    """4 activations x 4 initializers x 4 seeds: one group, compiled once, the step traced once (guarded or
    not by a traced flag, :func:`jaxnets.engine.chunk.stages`)."""
    engine.clear_cache()
    traces = {"step": 0}
    real_step = engine.Program._step

    def counting_step(self, *args, **kwargs):
        traces["step"] += 1
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(engine.Program, "_step", counting_step)
    acts = ["sigmoid", "tanh", "relu", "elu"]
    inits = ["uniform", "glorot_uniform", "he_normal", "orthogonal"]
    grid = [{"hidden": (8,), "steps": 4, "eval_every": 2, "batch_size": 16, "activation": a, "init": i,
             "seed": s} for a in acts for i in inits for s in range(4)]
    progress = []
    result = engine.train(grid, DIGITS, progress=progress.append)
    assert len(result.groups) == 1 and result.groups[0].n_blocks == 1
    assert result.groups[0].spec.activations == ("sigmoid", "tanh", "relu", "elu")
    assert traces == {"step": 1} and _counting_compiles(progress) == 1
    assert np.all(result.status == "ok")
    # each variant got its own activation: the recorded activation means differ by activation
    means = result.history["act_mean"][:, 0, 0].reshape(4, 16)
    assert np.all(means[0] > 0)  # sigmoid outputs are positive


def test_compiled_programs_are_reused_across_calls(mixed_result):
    engine.train(MIXED, DIGITS)  # compiled now, unless the fixture's programs are still cached
    again = engine.train(MIXED, DIGITS)
    assert again.groups[0].compile_s == 0.0
    np.testing.assert_array_equal(again.history["val_loss"], mixed_result.history["val_loss"])
    other_seeds = engine.train([{**v, "seed": v["seed"] + 100} for v in MIXED], DIGITS)
    assert other_seeds.groups[0].compile_s == 0.0  # seeds are data, not program
    assert not np.array_equal(other_seeds.history["val_loss"], mixed_result.history["val_loss"])
    np.testing.assert_array_equal(mixed_result.eval_step, np.tile(mixed_result.eval_steps, (8, 1)))


def test_progress_reports_compiling_then_every_evaluation():
    engine.clear_cache()
    events = []
    engine.train([{**BASE, "hidden": (4,), "steps": 20, "eval_every": 10}], DIGITS, progress=events.append)
    assert [type(e) for e in events] == [jaxnets_events.Compiling, jaxnets_events.Evaluated, jaxnets_events.Evaluated]
    assert [e.step for e in events[1:]] == [10, 20]
    assert [e.eval for e in events[1:]] == [1, 2] and events[1].val_loss.shape == (1,)


def test_blocks_give_the_same_results(mixed_result):
    chunked = engine.train(MIXED, DIGITS, options=engine.Options(max_variants_per_program=3))
    assert chunked.groups[0].n_blocks >= 3  # 8 variants, at most 3 a block (ordered by activation: 4 of 2)
    for k in METRICS:
        np.testing.assert_allclose(chunked.history[k], mixed_result.history[k], rtol=1e-5)


def test_groups_too_big_for_memory_are_split_into_blocks(mixed_result):
    prog = engine.program(MIXED, DIGITS, tuning=engine.CPU_TUNING)
    hyper = prog.stack()
    per_variant = engine.footprint(prog, {k: a[:1] for k, a in hyper.items()}, prog.data).memory
    assert per_variant > 4 * sum(a.size * 4 for a in jax.tree.leaves(mixed_result.params(0)))
    chunked = engine.train(MIXED, DIGITS, options=engine.Options(memory_budget_bytes=4 * per_variant + 1))
    assert chunked.groups[0].n_blocks == 2
    for k in METRICS:
        np.testing.assert_allclose(chunked.history[k], mixed_result.history[k], rtol=1e-5)


@pytest.mark.parametrize(
    "v, n_dev, memory, step, budget, max_variants, block_bytes, expected",
    [
        (256, 1, 1, 2_000_000, 10**12, None, 16 * 2**20, 8),  # digits-sized: blocks of 8 (the cache)
        (256, 1, 1, 60_000, 10**12, None, 16 * 2**20, 256),  # wine-sized: everything at once
        (256, 1, 1, 4_000_000, 10**12, None, 16 * 2**20, 8),  # 4 fit: never below min_block
        (256, 1, 1, 60_000_000, 10**12, None, 16 * 2**20, 1),  # one variant outgrows block_bytes: alone
        (256, 2, 1, 60_000_000, 10**12, None, 16 * 2**20, 2 * 8),  # ... unless vmapped anyway
        (20, 1, 1, 2 * 10**8, 10**12, None, 10**9, 7),  # 3 equal blocks of 7, not 8 + 8 + 4
        (256, 1, 1, 2_000_000, 10**12, 64, 16 * 2**20, 64),  # an explicit maximum replaces block_bytes
        (256, 1, 1, 2_000_000, 10**12, None, 0, 256),  # 0: no block limit
        (256, 1, 1000, 1, 10_000, None, 0, 10),  # memory: 10 fit -> 26 blocks of ceil(256 / 26) = 10
        (10, 4, 1, 1, 10**12, None, 0, 12),  # a multiple of the device count (padded)
        (256, 4, 1, 2_000_000, 10**12, None, 16 * 2**20, 32),  # blocks are per device
    ],
)
def test_block_size(v, n_dev, memory, step, budget, max_variants, block_bytes, expected):
    fp = engine.Footprint(memory=memory, step=step)
    tuning = dataclasses.replace(engine.CPU_TUNING, block_bytes=block_bytes)
    assert tuning.min_block == 8
    assert plan.block_size(v, n_dev, fp, budget, max_variants, tuning) == expected


def test_blocks_of_variants_give_the_same_results(mixed_result):
    """No block limit (block_bytes=0) gives the default's numbers, and the step footprint counts the state."""
    whole = engine.train(MIXED, DIGITS, options=engine.Options(block_bytes=0))
    assert whole.groups[0].n_blocks == 1
    for k in METRICS:
        np.testing.assert_allclose(whole.history[k], mixed_result.history[k], rtol=1e-5)
    prog = engine.program(MIXED, DIGITS, tuning=engine.CPU_TUNING)
    hyper = prog.stack()
    fp = engine.footprint(prog, {k: a[:1] for k, a in hyper.items()}, prog.data)
    params_bytes = sum(a.size * 4 for a in jax.tree.leaves(mixed_result.params(0)))
    assert fp.step >= 4 * params_bytes  # params, two Adam moments, gradients
    assert fp.memory > fp.step


def test_evaluation_zero_is_before_any_step(mixed_result):
    """Evaluation 0 comes from the chunk program with no steps: the validation loss of the initial parameters
    (``engine.model`` initialized from the variant's init key)."""
    import jax.numpy as jnp
    import optax

    for i in (0, 4):  # relu / he_normal; gelu / orthogonal with dropout 0.2
        row = mixed_result.rows[i]
        assert mixed_result.eval_steps[0] == 0
        model = engine.model(row, DIGITS)
        key = jax.random.fold_in(jax.random.key(row["seed"]), 0)
        params = model.init({"params": key, "dropout": key}, jnp.zeros((1, 64)))["params"]
        logits = model.apply({"params": params}, DIGITS.x_val)
        val_loss = float(jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, DIGITS.y_val)))
        np.testing.assert_allclose(mixed_result.history["val_loss"][i, 0], val_loss, rtol=1e-5)


def test_model_gives_each_variants_predictions(mixed_result):
    """engine.model(row, ds) with result.params(i) reproduces the engine's final validation metrics."""
    import optax

    for i, row in enumerate(mixed_result.rows):
        logits = engine.model(row, DIGITS).apply({"params": mixed_result.params(i)}, DIGITS.x_val)
        loss = float(np.mean(optax.softmax_cross_entropy_with_integer_labels(logits, DIGITS.y_val)))
        accuracy = float(np.mean(np.argmax(logits, -1) == DIGITS.y_val))
        np.testing.assert_allclose(mixed_result.history["val_loss"][i, -1], loss, rtol=1e-4)
        np.testing.assert_allclose(mixed_result.history["val_accuracy"][i, -1], accuracy, atol=1e-6)


def test_predictions_compile_once_per_input_shape(mixed_result):
    """Result.predict / predict_all give each variant's own outputs (engine.model's) and compile once per
    program and input shape, not at every call."""
    prog = mixed_result.groups[0].program
    one, many = prog.predict_fns
    x = DIGITS.x_val[:16]
    every = mixed_result.predict_all(x, standardized=True)  # the data set's arrays: already standardized
    for i, row in enumerate(mixed_result.rows):
        want = engine.model(row, DIGITS).apply({"params": mixed_result.params(i)}, x)
        np.testing.assert_allclose(mixed_result.predict(i, x, standardized=True), want, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(every[i], want, rtol=1e-5, atol=1e-5)
    mixed_result.predict(0, x, standardized=True)
    mixed_result.predict_all(x, standardized=True)
    assert prog.predict_fns == (one, many)  # built once
    assert one._cache_size() == 1 and many._cache_size() == 1
    mixed_result.predict(3, DIGITS.x_val[:5], standardized=True)  # a new shape: one more
    assert one._cache_size() == 2


def test_early_stopping_keeps_best_params():
    v = {"hidden": (64,), "steps": 400, "eval_every": 10, "batch_size": 32, "learning_rate": 0.05,
         "early_stopping_patience": 2, "seed": 0}
    ds = data.load("iris")
    res = engine.train([v, {**v, "early_stopping_patience": 0}], ds)
    assert res.status[0] == "early_stopped", res.status
    stop = res.stopped_step[0]
    assert 0 < stop < 400 and stop % 10 == 0
    e = list(res.eval_steps).index(stop)
    h = res.history["val_loss"][0]
    assert np.all(h[e:] == h[e])  # frozen after stopping
    assert res.best_val_loss[0] == pytest.approx(np.min(h[: e + 1]))
    # the best parameters are restored: evaluating them gives the best validation loss
    best_step = int(res.eval_steps[int(np.argmin(h[: e + 1]))])
    again = engine.train([{**v, "steps": best_step, "early_stopping_patience": 0}], ds)
    _params_close(res.params(0), again.params(0), rtol=1e-4)


@pytest.mark.parametrize(
    "variants, match",
    [
        ([], "empty"),
        ([{"activation": "relu6"}], "unknown activation 'relu6'"),
        ([{"init": "he"}], "unknown initializer"),
        ([{"optimizer": "adagrad"}], "unknown optimizer 'adagrad'"),
        ([{"lr": 0.1}], r"unknown key\(s\) \['lr'\]"),
        ([{"kind": "transformer"}], "unknown model kind"),
        ([{"kind": "cnn", "hidden": (8,)}], "needs images"),
        ([{"learning_rate": -1.0}], "learning_rate must be > 0"),
        ([{"dropout": 1.0}], "dropout must be in"),
        ([{"batch_size": 5000}], "variant 0: batch_size 5000 is larger than"),
        ([{"loss": "binary_crossentropy"}], "binary_crossentropy needs a binary task"),
    ],
)
def test_bad_variants_fail_before_compute(variants, match, monkeypatch):
    monkeypatch.setattr(engine.loop, "run", lambda *a, **k: pytest.fail("compute started"))
    with pytest.raises(ValueError, match=match):
        engine.train(variants, DIGITS)


def test_variant_errors_carry_index_and_reason(monkeypatch):
    monkeypatch.setattr(engine.loop, "run", lambda *a, **k: pytest.fail("compute started"))
    with pytest.raises(variants.VariantError) as info:
        engine.train([{}, {}, {"learning_rate": -1.0}], DIGITS)
    assert (info.value.index, info.value.reason) == (2, "learning_rate must be > 0, got -1.0")
    assert str(info.value) == "variant 2: learning_rate must be > 0, got -1.0"
    with pytest.raises(variants.VariantError) as info:  # a data mismatch names the whole static group
        engine.train([{"batch_size": 8}, {"batch_size": 5000}, {"batch_size": 5000, "seed": 1}], DIGITS)
    assert info.value.index == 1 and info.value.indices == (1, 2)
    assert info.value.reason.startswith("batch_size 5000 is larger than")
    assert str(info.value).startswith("variant(s) 1, 2: batch_size 5000")


def test_finite_blow_up_is_divergence_and_isolated():
    """SGD at learning rate 1e6 with tanh stays finite (bounded hidden units) but its loss explodes: the
    divergence_factor rule marks it diverged and freezes it; the other variants are bit-identical."""
    sgd = {**BASE, "optimizer": "sgd", "learning_rate": 0.05}  # one static group with the bad variant
    good = [{**sgd, "activation": a, "seed": s} for a in ("relu", "tanh") for s in range(2)]
    bad = {**sgd, "activation": "tanh", "seed": 9, "learning_rate": 1e6}
    benign = {**bad, "learning_rate": 0.05}  # the same batch without the blow-up
    clean = engine.train(good[:2] + [benign] + good[2:], DIGITS)
    mixed = engine.train(good[:2] + [bad] + good[2:], DIGITS)
    assert len(mixed.groups) == 1
    off = engine.train([{**bad, "divergence_factor": 0.0}], DIGITS)
    # without the rule it trains on, finite, to a loss far above its start (the case the rule is for)
    assert off.status[0] == "ok" and np.all(np.isfinite(off.history["train_loss"][0]))
    assert off.history["train_loss"][0, -1] > 1000 * off.history["train_loss"][0, 0]
    assert mixed.status[2] == "diverged" and 0 < mixed.stopped_step[2] < BASE["steps"]
    h = mixed.history["train_loss"][2]
    assert np.all(h <= 1000 * h[0])  # the blown-up evaluation reports the last sane values, then repeats
    e = int(np.searchsorted(mixed.eval_steps, mixed.stopped_step[2]))
    np.testing.assert_array_equal(h[e:], h[e])
    # frozen: its parameters are those at the evaluation that caught it
    stop = {**bad, "steps": int(mixed.stopped_step[2]), "divergence_factor": 0.0}
    # trained to that step in a group of the same size (the same block: at learning rate 1e6 the last steps
    # multiply float rounding differences by 1e6, so only the same program gives the same numbers)
    short = [{**row, "steps": int(mixed.stopped_step[2])} for row in good]
    _params_close(mixed.params(2), engine.train(short[:2] + [stop] + short[2:], DIGITS).params(2), rtol=1e-5)
    others = [0, 1, 3, 4]
    for k in METRICS:
        np.testing.assert_array_equal(mixed.history[k][others], clean.history[k][others])
    for i in others:
        for x, y in zip(jax.tree.leaves(mixed.params(i)), jax.tree.leaves(clean.params(i)), strict=True):
            np.testing.assert_array_equal(x, y)


def test_bad_data_fails_before_compute(monkeypatch):
    import dataclasses

    monkeypatch.setattr(engine.loop, "run", lambda *a, **k: pytest.fail("compute started"))
    x = DIGITS.x_train.copy()
    x[3, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        engine.train([{}], dataclasses.replace(DIGITS, x_train=x))
    y = DIGITS.y_train.copy()
    y[0] = 12
    with pytest.raises(ValueError, match="12"):
        engine.train([{}], dataclasses.replace(DIGITS, y_train=y))
    with pytest.raises(ValueError, match="examples"):
        engine.train([{}], dataclasses.replace(DIGITS, y_train=DIGITS.y_train[:-1]))


SHARDED = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from jaxnets import data, engine, variants
    ds = data.load("iris")
    vs = [{"hidden": (16,), "steps": 30, "eval_every": 10, "batch_size": 16, "activation": a, "seed": s}
          for a in ("relu", "tanh", "elu") for s in range(2)]
    r = engine.train(vs, ds)
    print(json.dumps({"devices": len(jax.devices()), "val_loss": r.history["val_loss"].tolist(),
                      "kernel": np.asarray(r.groups[0].params["output"]["kernel"]).tolist()}))
""")


def _run_sharded(n_devices: int) -> dict:
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "host_platform_device_count" not in f]
    env = {**os.environ, "XLA_FLAGS": " ".join([*flags, f"--xla_force_host_platform_device_count={n_devices}"]),
           "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", SHARDED], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_sharded_over_four_devices_equals_one_device():
    one, four = _run_sharded(1), _run_sharded(4)
    assert one["devices"] == 1 and four["devices"] == 4
    # 6 variants over 4 devices: padded to 8 and the padding dropped
    assert len(four["val_loss"]) == 6
    np.testing.assert_allclose(four["val_loss"], one["val_loss"], rtol=1e-5)
    np.testing.assert_allclose(four["kernel"], one["kernel"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("v, size, n_dev", [(36, 36, 1), (36, 12, 1), (37, 16, 2), (9, 4, 4), (8, 3, 1), (40, 3, 1)])
def test_block_order_puts_every_variant_once_in_activation_slices(v, size, n_dev):
    rng = np.random.default_rng(v)
    ids = rng.integers(0, 4, v)
    order, real, layout, block = plan.block_order(ids, size, n_dev, 4)
    assert len(order) % block == 0 and block % n_dev == 0 and block <= max(size, n_dev)
    np.testing.assert_array_equal(np.sort(order[real]), np.arange(v))  # each variant exactly once
    if layout is None:
        return
    share = sum(c for _, c in layout)
    expected = np.concatenate([np.full(c, k) for k, c in layout])
    for s in range(len(order) // share):  # every device's share of every block has the layout's slices
        np.testing.assert_array_equal(ids[order[s * share:(s + 1) * share]], expected)


def test_fit_order_reuses_a_layout_for_fewer_variants():
    """A layout built for 36 variants holds any subset in as few blocks as its slots allow (ASHA's survivors)."""
    ids = np.repeat(np.arange(3), 12)
    _, _, layout, block = plan.block_order(ids, 12, 1, 3)
    assert layout == ((0, 4), (1, 4), (2, 4)) and block == 12
    sub = np.array([0, 0, 0, 0, 0, 1, 2])  # five of activation 0: two blocks
    order, real = plan.fit_order(sub, layout, block, 1)
    assert len(order) == 24
    np.testing.assert_array_equal(np.sort(order[real]), np.arange(7))
    np.testing.assert_array_equal(sub[order[real]], [0, 0, 0, 0, 1, 2, 0])
    for s in range(2):  # each slot's variants (padding included, where the subset has any) have its activation
        np.testing.assert_array_equal(sub[order[s * 12:s * 12 + 4]], 0)
    with pytest.raises(ValueError, match="not in the layout"):
        plan.fit_order(np.array([3]), layout, block, 1)


def test_mixed_activations_in_blocks_one_compile_same_numbers(mixed_result):
    """8 activations split into blocks of activation slices: one compiled program, the one-block numbers."""
    engine.clear_cache()
    progress = []
    rows = MIXED + [{**v, "seed": v["seed"] + 10} for v in MIXED]
    res = engine.train(rows, DIGITS, options=engine.Options(max_variants_per_program=8), progress=progress.append)
    assert _counting_compiles(progress) == 1 and res.groups[0].n_blocks == 2
    for k in ("train_loss", "val_loss", "grad_norm", "act_std"):
        np.testing.assert_allclose(res.history[k][:8], mixed_result.history[k], rtol=1e-5, atol=1e-7)


def test_shared_data_gives_every_variant_the_same_minibatches():
    rows = [{**BASE, "shared_data": True, "data_seed": 3, "activation": a, "seed": s}
            for a in ("relu", "tanh") for s in range(2)]
    prog = engine.program(rows, DIGITS, tuning=engine.CPU_TUNING)
    hp = prog.stack()
    idx = jax.vmap(prog.batch_indices, in_axes=(None, 0))(jax.numpy.int32(25), hp)
    for i in range(1, len(rows)):
        np.testing.assert_array_equal(idx[i], idx[0])
    own = engine.program([{**BASE, "seed": s} for s in range(2)], DIGITS, tuning=engine.CPU_TUNING)
    own_idx = jax.vmap(own.batch_indices, in_axes=(None, 0))(jax.numpy.int32(25), own.stack())
    assert not np.array_equal(own_idx[0], own_idx[1])  # without it, each variant draws its own
    together = engine.train(rows, DIGITS)
    for i, v in enumerate(rows):  # vectorized == alone holds with shared minibatches too
        alone = engine.train([v], DIGITS)
        np.testing.assert_allclose(together.history["val_loss"][i], alone.history["val_loss"][0], rtol=1e-4)
    # the seed still sets the initialization: same data, different starts
    assert together.history["val_loss"][0, 0] != together.history["val_loss"][1, 0]


def _run_chunks(fn, state, hp, data_, n):
    out = []
    for e in range(n):
        state, m = fn(state, hp, data_, np.bool_(e > 0), np.bool_(e == n - 1), np.int32(0))
        out.append((jax.device_get(state), jax.device_get(m)))
    return out


@pytest.mark.parametrize("size", [1, 4])
def test_block_chunk_equals_the_guarded_chunk_bit_for_bit(size):
    """:func:`jaxnets.engine.chunk.chunk` (unguarded steps first, a guarded rerun when a variant's values are
    not finite) gives what the always-guarded vmapped :meth:`Program.chunk` gives: a variant diverging
    mid-chunk, chunks after it (a diverged variant in the block, its parameters frozen) and a last chunk ending
    mid-way (10 steps, chunks of 4). Only the frozen variant's optimizer state, which never reaches its
    parameters again, may differ. The same for its two halves compiled as two programs
    (:func:`~jaxnets.engine.chunk.stages`, called by ``compile.Staged``) and for the host loop over one
    compiled step (``compile.HostChunk``), as ``engine.train`` runs them."""
    base = {"hidden": (16,), "steps": 10, "eval_every": 4, "batch_size": 16, "optimizer": "sgd"}
    rows = [{**base, "activation": "relu", "seed": 0, "learning_rate": 0.05},
            {**base, "activation": "relu", "seed": 1, "learning_rate": 1e20},  # diverges within the first chunk
            {**base, "activation": "elu", "seed": 2, "learning_rate": 0.1},
            {**base, "activation": "relu", "seed": 3, "learning_rate": 0.02}][:size] if size > 1 else \
        [{**base, "activation": "relu", "seed": 1, "learning_rate": 1e20}]
    prog = engine.program(rows, DIGITS)
    hp = {k: jax.numpy.asarray(v) for k, v in prog.stack().items()}
    data_ = jax.device_put(prog.data)
    init = lambda: jax.jit(prog.init_batch)(hp, data_)  # noqa: E731
    reference = jax.jit(chunk_lib.lift(prog.chunk, size))
    fast = jax.jit(chunk_lib.chunk(prog, size))
    staged = compile_lib.Staged(*map(jax.jit, chunk_lib.stages(prog, size)))  # what engine.train compiles
    host = compile_lib.HostChunk(jax.jit(chunk_lib.host_step(prog, size)), jax.jit(chunk_lib.stages(prog, size)[1]),
                                 4, jnp.ones(size, bool))
    n = 1 + 3  # evaluation 0, then chunks of 4, 4 and 2 steps
    want = _run_chunks(reference, init(), hp, data_, n)
    assert (want[-1][0].status == engine.DIVERGED).sum() == 1
    assert 0 < want[-1][0].stopped_step[1 if size > 1 else 0] < 4  # diverged mid-chunk
    for got in (_run_chunks(fast, init(), hp, data_, n), _run_chunks(staged, init(), hp, data_, n),
                _run_chunks(host, init(), hp, data_, n)):
        for (ws, wm), (gs, gm) in zip(want, got, strict=True):
            for a, b in zip(jax.tree.leaves((ws._replace(opt_state=None), wm)),
                            jax.tree.leaves((gs._replace(opt_state=None), gm)), strict=True):
                np.testing.assert_array_equal(a, b)
            ok = np.asarray(ws.status) == engine.OK
            for a, b in zip(jax.tree.leaves(ws.opt_state), jax.tree.leaves(gs.opt_state), strict=True):
                np.testing.assert_array_equal(np.asarray(a)[ok], np.asarray(b)[ok])


def test_unguarded_steps_equal_guarded_ones_and_flag_what_is_not_finite():
    """The unguarded steps :func:`jaxnets.engine.chunk.stages` runs first give the guarded steps' state bit for bit
    when nothing diverges, and report a variant whose loss or parameters stopped being finite; a variant that
    was already frozen gets its parameters back and does not count."""
    base = {"hidden": (16,), "steps": 8, "eval_every": 4, "batch_size": 16, "optimizer": "sgd"}
    rows = [{**base, "activation": a, "seed": s, "learning_rate": lr}
            for a, s, lr in (("relu", 0, 0.05), ("relu", 1, 1e20), ("gelu", 2, 0.1))]
    prog = engine.program(rows, DIGITS)
    hp = {k: jax.numpy.asarray(v) for k, v in prog.stack().items()}
    data_ = jax.device_put(prog.data)
    state = jax.jit(prog.init_batch)(hp, data_)
    steps = lambda guard: jax.jit(chunk_lib.lift(lambda s, h, d: prog.steps(s, h, d, guard=guard), 3))  # noqa: E731
    unguarded, finite = steps(False)(state, hp, data_)
    guarded, _ = steps(True)(state, hp, data_)
    np.testing.assert_array_equal(finite, [True, False, True])
    assert np.asarray(guarded.status).tolist() == [engine.OK, engine.DIVERGED, engine.OK]
    for a, b in zip(jax.tree.leaves(unguarded.params), jax.tree.leaves(guarded.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a)[[0, 2]], np.asarray(b)[[0, 2]])
        assert not np.all(np.isfinite(np.asarray(a)[1])) and np.all(np.isfinite(np.asarray(b)[1]))
    # the next chunk: the diverged variant is frozen; unguarded, it drifts, gets its parameters back, counts
    again, finite = steps(False)(guarded, hp, data_)
    np.testing.assert_array_equal(finite, [True, True, True])
    for a, b in zip(jax.tree.leaves(again.params), jax.tree.leaves(guarded.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a)[1], np.asarray(b)[1])


def test_tuning_options_leave_out_what_xla_flags_set(monkeypatch):
    """A program's XLA options come from the platform's Tuning (the small-init and small-eval sets for small
    models), without those the environment's XLA_FLAGS already sets; accelerators use XLA's; an option this
    XLA does not know falls back."""
    monkeypatch.setenv("XLA_FLAGS", "")
    cpu = engine.tuning_for("cpu")
    assert cpu is engine.CPU_TUNING and engine.tuning_for("gpu") is engine.DEFAULT_TUNING
    assert cpu.options() == {"xla_backend_optimization_level": 1}
    assert cpu.options(small_init=True) == {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}
    assert cpu.options(small_eval=True) == {"xla_backend_optimization_level": 1, "xla_cpu_use_fusion_emitters": False}
    assert engine.DEFAULT_TUNING.options(small_init=True) is None and engine.DEFAULT_TUNING.options() is None
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=0")
    assert cpu.options(small_init=True) == {"xla_cpu_use_fusion_emitters": False} and cpu.options() is None
    hash(cpu)  # part of the compiled-program cache key
    with pytest.raises(ValueError, match="conv_impl"):
        engine.Tuning(conv_impl="fft")
    lowered = jax.jit(lambda x: 2 * x).lower(jnp.ones(3))
    compiled = compile_lib._compile_lowered(lowered, {"xla_no_such_option": True}, None)
    np.testing.assert_array_equal(compiled(jnp.ones(3)), 2 * np.ones(3))
    with pytest.raises(jax.errors.JaxRuntimeError, match="No such compile option"):
        compile_lib._compile_lowered(lowered, {"xla_no_such_option": True}, {"xla_no_such_option": True})


def test_a_small_evaluation_compiles_with_its_own_options(monkeypatch):
    """An evaluation that records at most ``small_eval_bytes`` per variant (the footprint's ``eval``) compiles
    with the small-eval options; the rule reads one variant's shapes, and the numbers are the default's to
    float rounding."""
    monkeypatch.setenv("XLA_FLAGS", "")  # the engine's options in full
    seen, real = [], compile_lib.compile_block
    monkeypatch.setattr(compile_lib, "compile_block", lambda *a, **k: seen.append(k.get("small_eval")) or real(*a, **k))
    rows = [{**BASE, "activation": a, "seed": i} for i, a in enumerate(("relu", "tanh", "relu", "gelu"))]
    prog = engine.program(rows, DIGITS)
    fp = engine.footprint(prog, {k: a[:1] for k, a in prog.stack().items()}, prog.data)
    n_eval = len(prog.data["x_eval"]) + len(prog.data["x_val"])
    assert fp.eval >= 4 * n_eval * sum(BASE["hidden"])  # at least the hidden units, float32, both batches
    tuned = lambda limit: engine.Options(tuning=dataclasses.replace(engine.CPU_TUNING, small_eval_bytes=limit))  # noqa: E731
    engine.clear_cache()
    small = engine.train(rows, DIGITS, options=tuned(fp.eval))
    default = engine.train(rows, DIGITS, options=tuned(fp.eval - 1))
    assert seen == [True, False]
    for k in ("train_loss", "val_loss", "val_accuracy", "grad_norm"):
        np.testing.assert_allclose(small.history[k], default.history[k], rtol=1e-5, atol=1e-7, err_msg=k)


@pytest.mark.parametrize("limit", [4000, 1000], ids=["small-init", "optimized-init"])
def test_initial_params_do_not_depend_on_the_block_size(limit, monkeypatch):
    """A variant's initial parameters are the same bit for bit alone and in a block of 8 whether its model is
    small (3,466 parameters, at most ``small_init_params``, though a block of 8 holds more) or not: the init
    options follow the model, not the block (the two options' initial values differ in rounding)."""
    monkeypatch.setenv("XLA_FLAGS", "")  # the engine's options in full
    tuning = dataclasses.replace(engine.CPU_TUNING, small_init_params=limit)
    rows = [{**BASE, "activation": ("relu", "tanh")[i % 2], "init": ("he_normal", "orthogonal")[i % 2], "seed": i}
            for i in range(8)]

    def initial(rows):
        prog = engine.program(rows, DIGITS, tuning=tuning)
        mesh = jax.make_mesh((1,), ("variants",), devices=jax.devices()[:1], axis_types=(AxisType.Auto,))
        shard = NamedSharding(mesh, P("variants"))
        hp, data = transfer.to_device(prog.stack(), shard), transfer.to_device(prog.data, NamedSharding(mesh, P()))
        return compile_lib.compile_block(prog, hp, data, shard, tuning, init=True, chunk=False, strategy="scan",
                                         small_eval=False).init(hp, data).params

    block = initial(rows)
    assert sum(np.asarray(a)[0].size for a in jax.tree.leaves(block)) == 3466
    for i in (0, 5):
        alone = initial(rows[i:i + 1])
        for a, b in zip(jax.tree.leaves(block), jax.tree.leaves(alone), strict=True):
            np.testing.assert_array_equal(np.asarray(a)[i], np.asarray(b)[0])


def test_a_small_model_trains_with_the_flat_optimizer_as_with_the_tree():
    """Up to ``Tuning.flat_optimizer_params`` parameters per variant the optimizer updates one flat vector
    (optax.flatten): the same training as leaf by leaf, to float rounding (clipping's global norm sums in
    another order)."""
    rows = [{**r, "steps": 50} for r in MIXED[3:7]]  # L2, dropout, clipping, a gain
    prog = engine.program(rows, DIGITS)
    state = jax.eval_shape(prog.init_batch, prog.stack(), prog.data_shapes())
    moments = {x.shape for x in jax.tree.leaves(state.opt_state.inner_state)}
    n_params = sum(math.prod(x.shape[1:]) for x in jax.tree.leaves(state.params))
    limit = engine.CPU_TUNING.flat_optimizer_params
    one = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), state.params)
    assert program_lib.flat_optimizer(one, limit) and not program_lib.flat_optimizer(one, n_params - 1)
    assert (len(rows), n_params) in moments and n_params <= limit
    flat = engine.train(rows, DIGITS, options=engine.Options(tuning=engine.CPU_TUNING))
    tree = engine.train(rows, DIGITS,
                        options=engine.Options(tuning=dataclasses.replace(engine.CPU_TUNING, flat_optimizer_params=0)))
    for k in ("train_loss", "val_loss", "grad_norm"):
        np.testing.assert_allclose(flat.history[k], tree.history[k], rtol=1e-4, err_msg=k)
    for i in range(len(rows)):
        _params_close(flat.params(i), tree.params(i), rtol=1e-4)
