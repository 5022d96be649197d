"""Population policies (successive halving, PBT): decisions, frozen pruned variants, counted compute, the
in-program copy, lineage, determinism and resume after a kill."""

import jax
import numpy as np
import pytest

from jaxnets import config, data, engine, events, population, sweep
from jaxnets.engine import chunk

LRS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0, 10.0)
BASE = {"hidden": (8,), "steps": 90, "eval_every": 10, "batch_size": 16, "activation": "tanh"}


@pytest.fixture(scope="module")
def ds():
    return data.load("iris")


@pytest.fixture(scope="module")
def asha_run(ds):
    rows = [{**BASE, "learning_rate": lr} for lr in LRS]
    snaps = []
    result = engine.train(rows, ds, policy=population.ASHA(min_steps=10, eta=3), checkpoint=snaps.append)
    return rows, result, snaps


def test_asha_survivors_are_the_top_third_at_every_rung(asha_run):
    rows, r, snaps = asha_run
    alive = np.arange(len(rows))
    for rung in (10, 30):
        e = rung // 10
        cost = r.history["val_loss"][alive, e]
        top = alive[np.lexsort((alive, cost))][:len(alive) // 3]
        pruned_here = alive[~np.isin(alive, top)]
        assert set(np.flatnonzero(r.stopped_step == rung)) == set(pruned_here)
        assert all(r.status[i] == "pruned" for i in pruned_here)
        alive = top
    assert list(r.status[alive]) == ["ok"] and r.stopped_step[alive[0]] == 90
    assert [int(s["e"]) for s in snaps] == [1, 3]


def test_asha_counts_the_model_steps_of_the_rungs(asha_run):
    _, r, _ = asha_run
    assert r.model_steps == 9 * 10 + 3 * (30 - 10) + 1 * (90 - 30)


def test_hyperband_brackets_halve_each_bracket_on_its_own_rungs(ds):
    """brackets = 2: variants i % 2 == 0 have rungs 10, 30; the others start later, at rung 30 only."""
    rows = [{**BASE, "learning_rate": lr, "seed": s} for lr in LRS for s in range(2)]
    r = engine.train(rows, ds, policy=population.ASHA(min_steps=10, eta=3, brackets=2))
    bracket = np.arange(len(rows)) % 2
    for b, rungs in ((0, (10, 30)), (1, (30,))):
        alive = np.flatnonzero(bracket == b)
        for rung in rungs:
            cost = r.history["val_loss"][alive, rung // 10]
            top = alive[np.lexsort((alive, cost))][:len(alive) // 3]
            assert set(np.flatnonzero((r.stopped_step == rung) & (bracket == b))) == set(alive) - set(top)
            alive = top
        assert np.all(r.status[alive] == "ok") and np.all(r.stopped_step[alive] == 90)
    assert r.model_steps == (9 * 10 + 3 * 20 + 1 * 60) + (9 * 30 + 3 * 60)


def test_asha_reuses_compiled_blocks_within_the_padding_bound(ds):
    """32 variants (two activations, one block): 10 survivors reuse the 32-block program (2x a tight block of
    16), 3 survivors get a new 4-block program (the 32-block would be 8x), the last one reuses it (4x); the
    survivor's numbers are those of training it without a policy."""
    rows = [{**BASE, "steps": 270, "activation": ("tanh", "relu")[i % 2], "learning_rate": lr, "seed": i}
            for i, lr in enumerate(np.geomspace(1e-3, 0.3, 32))]
    engine.clear_cache()
    seen = []
    options = engine.Options(max_variants_per_program=32)
    r = engine.train(rows, ds, policy=population.ASHA(min_steps=10, eta=3), progress=seen.append, options=options)
    assert sum(isinstance(e, events.Compiling) for e in seen) == 2
    assert [(r.stopped_step == s).sum() for s in (10, 30, 90)] == [22, 7, 2]
    best = int(np.flatnonzero(r.status == "ok")[0])
    alone = engine.train([rows[best]], ds)
    np.testing.assert_allclose(r.history["val_loss"][best], alone.history["val_loss"][0], rtol=1e-5)


def test_pruned_variants_are_frozen(asha_run, ds):
    rows, r, snaps = asha_run
    early = np.flatnonzero(r.stopped_step == 10)
    # histories repeat after the rung; parameters equal those of training for exactly the rung's steps
    h = r.history["val_loss"][early]
    assert np.array_equal(h[:, 1:], np.repeat(h[:, 1:2], h.shape[1] - 1, axis=1))
    short = engine.train([{**row, "steps": 10} for row in rows], ds)
    for i in early:
        for a, b in zip(jax.tree.leaves(r.params(int(i))), jax.tree.leaves(short.params(int(i))), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    # the step counters in the snapshot of the second rung stayed at the first rung
    prog = engine.program(rows, ds)
    hp1 = {k: v[:1] for k, v in prog.stack().items()}
    treedef = jax.tree.structure(jax.eval_shape(prog.init_batch, hp1, prog.data_shapes()))
    state = jax.tree.unflatten(treedef, [snaps[1][f"g0.state.{i}"] for i in range(treedef.num_leaves)])
    assert np.all(state.step[early] == 10)


def test_asha_rejects_a_bad_schedule(ds):
    rows = [{**BASE, "learning_rate": lr} for lr in LRS[:3]]
    with pytest.raises(ValueError, match="multiple of eval_every"):
        engine.train(rows, ds, policy=population.ASHA(min_steps=15))
    with pytest.raises(ValueError, match="same steps and eval_every"):
        engine.train([*rows, {**BASE, "steps": 50}], ds, policy=population.ASHA(min_steps=10))
    with pytest.raises(ValueError, match=r"resume= is not a snapshot of this call \(checkpoint=\): it has no 'g0\."):
        engine.train(rows, ds, policy=population.ASHA(min_steps=10), resume={"e": 1})


def _pbt_rows():
    rows = [{**BASE, "optimizer": "sgd", "learning_rate": lr, "seed": i} for i, lr in enumerate(LRS[2:8])]
    rows.append({**BASE, "optimizer": "sgd", "learning_rate": 1e6, "seed": 9})  # diverges at once
    rows.append({**BASE, "optimizer": "sgd", "learning_rate": 0.05, "seed": 10})
    return rows


PBT = population.PBT(interval=2, spaces={"learning_rate": ("range", 1e-3, 1.0, True)}, fraction=0.25)


@pytest.fixture(scope="module")
def pbt_run(ds):
    snaps = []
    r = engine.train(_pbt_rows(), ds, policy=PBT, checkpoint=snaps.append)
    return r, snaps


def test_pbt_changes_hyperparameters_only_for_exploited_variants_by_the_factors(pbt_run):
    r, _ = pbt_run
    parent, lr = r.history["parent"].astype(int), r.history["hp_learning_rate"]
    assert np.all(parent[:, :3] == -1) and np.any(parent >= 0)
    for e in range(1, lr.shape[1]):
        same = parent[:, e] < 0
        np.testing.assert_array_equal(lr[same, e], lr[same, e - 1])
        for v in np.flatnonzero(~same):
            ratio = lr[v, e] / lr[parent[v, e], e - 1]
            assert min(abs(ratio - f) for f in (0.8, 1.25)) < 1e-6
            assert (e - 1) % 2 == 0  # copies happen right after a boundary (every 2 evaluations)


def test_pbt_replaces_a_diverged_variant(pbt_run):
    r, _ = pbt_run
    nan = 6  # learning rate 1e6
    h = r.history["val_loss"][nan]
    assert h[1] == h[0] and h[2] == h[0]  # diverged at once: its last finite values repeat
    assert r.history["parent"][nan, 3] >= 0  # copied right after the first interval
    assert r.status[nan] == "ok" and np.isfinite(r.final("val_loss")[nan])


def test_pbt_is_deterministic_and_resumes_exactly(pbt_run, ds):
    r, snaps = pbt_run
    again = engine.train(_pbt_rows(), ds, policy=PBT, resume=snaps[0])
    for k in ("parent", "hp_learning_rate", "val_loss", "train_loss"):
        np.testing.assert_array_equal(again.history[k], r.history[k])
    np.testing.assert_array_equal(again.status, r.status)
    for a, b in zip(jax.tree.leaves(again.groups[0].params), jax.tree.leaves(r.groups[0].params), strict=True):
        np.testing.assert_array_equal(a, b)


def test_adopt_copies_the_parent_exactly_on_device(ds):
    rows = _pbt_rows()[:4]
    prog = engine.program(rows, ds)
    hp = {k: jax.numpy.asarray(v) for k, v in prog.stack().items()}
    data_ = jax.device_put(prog.data)
    state = jax.jit(prog.init_batch)(hp, data_)
    state, _ = jax.jit(jax.vmap(prog.chunk, in_axes=(0, 0, None, None, None, None)))(
        state, hp, data_, True, False, np.int32(0))
    fn = jax.jit(chunk.adopt(("learning_rate",)))
    parent = np.array([0, 1, 2, 0], np.int32)
    policy = population.PBT(interval=1, spaces={"learning_rate": ("range", 1e-4, 1.0, True)})
    host_hp = prog.stack()
    new_hp = {k: (a if k == "seed" else a[parent]) for k, a in host_hp.items()}
    explored = policy.explore("learning_rate", new_hp["learning_rate"], np.array([1, 1, 1, 1.25], np.float32),
                              np.full(4, np.nan, np.float32))
    new_hp["learning_rate"] = np.where(parent != np.arange(4), explored, new_hp["learning_rate"])
    before = jax.device_get(state)
    new = fn(state, {k: jax.numpy.asarray(v) for k, v in new_hp.items()}, parent)
    for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(before.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a)[3], np.asarray(b)[0])
        np.testing.assert_array_equal(np.asarray(a)[:3], np.asarray(b)[:3])
    inner_new, inner_old = jax.tree.leaves(new.opt_state.inner_state), jax.tree.leaves(before.opt_state.inner_state)
    for a, b in zip(inner_new, inner_old, strict=True):
        np.testing.assert_array_equal(np.asarray(a)[3], np.asarray(b)[0])
    lr = np.asarray(new_hp["learning_rate"])
    np.testing.assert_allclose(lr, [rows[0]["learning_rate"], rows[1]["learning_rate"], rows[2]["learning_rate"],
                                    rows[0]["learning_rate"] * 1.25], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(new.opt_state.hyperparams["learning_rate"]), lr)
    assert np.asarray(new_hp["seed"])[3] == rows[3]["seed"]


def test_policy_explore_resamples_perturbs_and_clips():
    """A resample takes the value; a perturbation multiplies the parent's value in float32; both are clipped
    to the key's bounds and come back in the parent's dtype."""
    pbt = population.PBT(interval=1, spaces={"dropout": ("range", 0.0, 0.9, False)})
    parent = np.array([0.5, 0.5, 0.9, 0.1], np.float32)
    out = pbt.explore("dropout", parent, np.array([1.25, 1.0, 1.25, 0.8], np.float32),
                      np.array([np.nan, 0.3, np.nan, np.nan], np.float32))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.float32([0.625, 0.3, 0.99, np.float32(0.1) * np.float32(0.8)]))


def _cfg(method: str, extra: dict) -> config.Config:
    return config.parse({
        "data": {"name": "iris"}, "model": {"hidden": [8], "activation": "tanh"},
        "train": {"steps": 90, "eval_every": 10, "batch_size": 16, "optimizer": "sgd"},
        "sweep": {"method": method, "trials": 9, **extra,
                  "axes": {"learning_rate": {"low": 1e-3, "high": 1.0, "log": True}}},
    })


@pytest.mark.parametrize("method,extra", [("asha", {"min_steps": 10}), ("pbt", {"interval": 3})])
def test_kill_mid_unit_and_rerun_gives_the_uninterrupted_table(method, extra):
    cfg = _cfg(method, extra)
    p = sweep.plan(cfg)
    assert [u.key for u in p.units] == ["population-000"]
    full, _ = sweep.assemble(sweep.run(p), cfg)
    saved = {}

    def killer(event):
        if isinstance(event, events.Checkpoint):
            saved[event.unit] = (event.fingerprint, event.state)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweep.run(p, on_event=killer)
    resumed, history = sweep.assemble(sweep.run(p, partial=saved), cfg)
    cols = [c for c in full.columns if c != "group_wall_s"]
    assert full[cols].equals(resumed[cols])
    if method == "asha":
        assert (full["status"] == "pruned").sum() == 8
    else:
        assert "parent" in history and "hp_learning_rate" in history


def test_population_config_keys_are_checked():
    with pytest.raises(config.ConfigError, match="eta"):
        _cfg("asha", {"min_steps": 10, "eta": 1})
    with pytest.raises(config.ConfigError, match="min_steps"):
        _cfg("asha", {})
    with pytest.raises(config.ConfigError, match="applies to method"):
        _cfg("random", {"eta": 3})
    with pytest.raises(config.ConfigError, match="multiple of eval_every"):
        sweep.plan(_cfg("asha", {"min_steps": 15}))
    assert _cfg("pbt", {}).population == {"interval": 1, "fraction": 0.25, "perturb": [0.8, 1.25], "resample": 0.0}
