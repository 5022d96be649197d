"""Tests for jaxnets.sweep: grid / random / Bayesian search on tiny configs, resume logic, assembly, plots."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from jaxnets import config, engine, plots, sweep
from jaxnets import events as jaxnets_events
from jaxnets.sweep import UnitResult

TINY = {
    "data": {"name": "iris"},
    "model": {"hidden": [8]},
    "train": {"optimizer": "sgd", "learning_rate": 0.1, "steps": 20, "batch_size": 16, "eval_every": 10},
}


def _cfg(sweep_table: dict, **overrides) -> config.Config:
    raw = copy.deepcopy(TINY)
    raw["sweep"] = sweep_table
    raw.update(overrides)
    return config.parse(raw)


class Events(list):
    """Collects sweep events."""

    def __call__(self, event):
        self.append(event)

    def kinds(self, kind):
        return [e for e in self if isinstance(e, kind)]


def _assert_same_results(a: list[UnitResult], b: list[UnitResult]) -> None:
    assert [r.key for r in a] == [r.key for r in b]
    for x, y in zip(a, b, strict=True):
        assert x.fingerprint == y.fingerprint and x.points == y.points
        np.testing.assert_array_equal(x.variant, y.variant)
        for k in sweep.COLUMNS:
            np.testing.assert_array_equal(x.columns[k], y.columns[k])
        for k in sweep.HISTORY_METRICS:
            np.testing.assert_array_equal(x.history[k], y.history[k])


# ------------------------------------------------------------------------------------------ pure parts


def test_grid_points_cartesian_product_last_axis_fastest():
    cfg = _cfg({"axes": {"activation": ["tanh", "relu"], "hidden": [[8], [4, 4]], "seed": [0, 1]}})
    points = sweep.grid_points(cfg.axes)
    assert len(points) == 8
    assert points[0] == {"activation": "tanh", "hidden": [8], "seed": 0}
    assert points[1] == {"activation": "tanh", "hidden": [8], "seed": 1}
    assert points[-1] == {"activation": "relu", "hidden": [4, 4], "seed": 1}
    assert sweep.grid_points(()) == [{}]


def test_random_points_are_seeded_and_typed():
    cfg = _cfg({"method": "random", "trials": 30, "axes": {
        "learning_rate": {"low": 1e-4, "high": 1e-1, "log": True},
        "steps": {"low": 10, "high": 20},
        "hidden": [[8], [4, 4]],
        "activation": ["tanh", "relu"],
    }})
    a = sweep.random_points(cfg.axes, 30, seed=0)
    assert a == sweep.random_points(cfg.axes, 30, seed=0)
    assert a != sweep.random_points(cfg.axes, 30, seed=1)
    for p in a:
        assert 1e-4 <= p["learning_rate"] <= 1e-1
        assert isinstance(p["steps"], int) and 10 <= p["steps"] <= 20
        assert p["hidden"] in ([8], [4, 4]) and p["activation"] in ("tanh", "relu")
    lrs = np.log10([p["learning_rate"] for p in a])
    assert lrs.min() < -3 and lrs.max() > -2  # log-uniform spreads over the decades


def test_static_axes_split_units_like_the_engine():
    cfg = _cfg({"axes": {"hidden": [[8], [4]], "activation": ["tanh", "relu"]}, "mix_architectures": False})
    p = sweep.plan(cfg)
    assert [u.key for u in p.units] == ["group-000", "group-001"]
    assert [u.variant_ids for u in p.units] == [(0, 1), (2, 3)]
    assert p.units[1].rows[0]["hidden"] == [4] and p.evals == 2 * 2
    assert p.units[0].fingerprint != p.units[1].fingerprint


def _fake_unit(key, ids, n_evals, n_layers, status="ok"):
    n = len(ids)
    hist = {m: np.ones((n, n_evals)) for m in ("train_loss", "val_loss", "val_accuracy", "learning_rate")}
    hist["grad_norm"] = np.ones((n, n_evals, n_layers + 1))
    for m in ("act_mean", "act_std", "dead_fraction", "saturated_fraction"):
        hist[m] = np.ones((n, n_evals, n_layers))
    cols = {"status": np.array([status] * n), "stopped_step": np.full(n, 10)}
    cols.update({k: np.arange(n, dtype=float) + ids[0] for k in sweep.COLUMNS[2:]})
    return UnitResult(key, "f", np.array(ids), [{"seed": i} for i in ids], cols, hist,
                      np.tile(np.arange(n_evals, dtype=float) * 5, (n, 1)), np.zeros(n, int))


def test_assemble_orders_variants_and_nan_pads_histories():
    cfg = _cfg({"axes": {"seed": [0, 1, 2]}})
    units = [_fake_unit("group-001", [2], n_evals=5, n_layers=3), _fake_unit("group-000", [0, 1], 3, 1)]
    table, history = sweep.assemble(units, cfg)
    assert table["variant"].tolist() == [0, 1, 2] and table["seed"].tolist() == [0, 1, 2]
    assert table["unit"].tolist() == ["group-000", "group-000", "group-001"]
    assert history["val_loss"].shape == (3, 5) and history["grad_norm"].shape == (3, 5, 4)
    assert np.isnan(history["val_loss"][0, 3:]).all() and np.isfinite(history["val_loss"][2]).all()
    assert np.isnan(history["dead_fraction"][0, :, 1:]).all()
    np.testing.assert_array_equal(history["step"], [0, 5, 10, 15, 20])
    assert np.isnan(history["eval_step"][1, 3])


def test_rank_puts_nan_last_and_breaks_ties_by_variant():
    import pandas as pd

    t = pd.DataFrame({"variant": [0, 1, 2, 3], "m": [0.5, np.nan, 0.2, 0.5]})
    assert sweep.rank(t, "m", "min")["variant"].tolist() == [2, 0, 3, 1]
    assert sweep.rank(t, "m", "max")["variant"].tolist() == [0, 3, 2, 1]


# ------------------------------------------------------------------------------------- each method, tiny


def test_grid_trains_each_group_and_resumes_without_training(monkeypatch):
    cfg = _cfg({"axes": {"activation": ["tanh", "relu"], "seed": [0, 1]}})
    p = sweep.plan(cfg)
    events = Events()
    results = sweep.run(p, on_event=events)
    assert [type(e) for e in events][:2] == [jaxnets_events.SweepStarted, jaxnets_events.UnitStarted]
    assert len(events.kinds(jaxnets_events.Evaluated)) == p.evals == 2
    table, history = sweep.assemble(results, cfg)
    assert list(table.columns[:3]) == ["variant", "activation", "seed"]
    for col in ("status", "stopped_step", "final_train_loss", "final_val_loss", "best_val_loss",
                "val_accuracy", "group_wall_s"):
        assert col in table.columns
    assert set(table["status"]) <= {"ok", "diverged", "early_stopped"}
    assert table["activation"].tolist() == ["tanh", "tanh", "relu", "relu"]
    assert history["step"].tolist() == [0, 10, 20]
    assert history["val_loss"].shape == (4, 3) and history["grad_norm"].shape == (4, 3, 2)
    assert history["dead_fraction"].shape == (4, 3, 1)
    assert table["val_accuracy"].between(0, 1).all()

    # Resume: a saved unit with the same fingerprint is reused, nothing is trained.
    def no_training(*args, **kwargs):
        raise AssertionError("a finished unit was trained again")

    monkeypatch.setattr(sweep, "train_unit", no_training)
    again = Events()
    resumed = sweep.run(p, done={r.key: r for r in results}, on_event=again)
    assert again.kinds(jaxnets_events.Evaluated) == [] and again.kinds(jaxnets_events.UnitDone)[0].resumed
    _assert_same_results(results, resumed)

    # A saved unit from other variants (stale fingerprint) is retrained, never silently reused.
    calls = []
    monkeypatch.setattr(sweep, "train_unit", lambda unit, ds, emit, **kw: calls.append(unit.key) or results[0])
    stale = copy.copy(results[0])
    stale.fingerprint = "0" * 16
    events = Events()
    sweep.run(p, done={stale.key: stale}, on_event=events)
    assert calls == ["group-000"] and events.kinds(jaxnets_events.UnitStarted)[0].stale


def test_random_search_and_its_plots(tmp_path):
    cfg = _cfg({"method": "random", "trials": 4, "metric": "val_accuracy",
                "axes": {"learning_rate": {"low": 1e-3, "high": 1.0, "log": True}, "seed": [0, 1]}}, seed=3)
    p = sweep.plan(cfg)
    assert p.n_units == 1 and p.n_variants == 4
    table, history = sweep.assemble(sweep.run(p), cfg)
    assert table["learning_rate"].between(1e-3, 1.0).all() and table["seed"].isin([0, 1]).all()
    assert cfg.goal == "max" and table["val_accuracy"].notna().all()
    paths = plots.save_all(tmp_path, table, history, ["learning_rate", "seed"], cfg.metric, cfg.goal,
                           cfg.method)
    assert sorted(p.name for p in paths) == ["activation_health.png", "best_so_far.png", "grad_norm.png",
                                             "loss_curves.png"]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_bayesian_rounds_are_one_program_each_and_replay_exactly(monkeypatch):
    cfg = _cfg({"method": "bayesian", "trials": 4, "batch": 2, "axes": {
        "learning_rate": {"low": 1e-3, "high": 1.0, "log": True},
        "hidden": [[8], [4]],
    }}, seed=7)
    p = sweep.plan(cfg)
    assert p.units is None and p.n_units == 2
    calls = []
    real_train = sweep.engine.train

    def spy(checked, **kwargs):
        calls.append(checked.n_variants)
        return real_train(checked, **kwargs)

    monkeypatch.setattr(sweep.engine, "train", spy)
    results = sweep.run(p)
    assert calls == [2, 2], "each round must be ONE engine.train call with all its trials"
    assert [r.key for r in results] == ["round-000", "round-001"]
    assert [r.variant.tolist() for r in results] == [[0, 1], [2, 3]]
    table, _ = sweep.assemble(results, cfg)
    assert table["hidden"].isin(["[8]", "[4]"]).all() and table["learning_rate"].between(1e-3, 1).all()

    # Resume: replaying the saved rounds through ask/tell asks exactly the same trials, trains nothing.
    monkeypatch.setattr(sweep.engine, "train", lambda *a, **k: pytest.fail("replay trained a round"))
    replayed = sweep.run(p, done={r.key: r for r in results})
    _assert_same_results(results, replayed)
    assert json.dumps(replayed[1].points) == json.dumps(results[1].points)


def test_rows_are_checked_once_per_run(monkeypatch):
    """The plan checks every variant (and builds each static group's program) once; running it checks
    nothing again, and engine.train of a checked call neither."""
    cfg = _cfg({"method": "grid", "axes": {"hidden": [[8], [4]], "activation": ["tanh", "relu"]},
                "mix_architectures": False})
    p = sweep.plan(cfg)
    assert [u.checked.n_variants for u in p.units] == [2, 2]
    assert all(u.checked.programs[0].indices == (0, 1) for u in p.units)
    fail = lambda *a, **k: pytest.fail("checked again")  # noqa: E731
    monkeypatch.setattr(sweep.engine, "check", fail)
    monkeypatch.setattr(sweep.engine, "prepare", fail)
    monkeypatch.setattr(sweep.engine, "build_programs", fail)
    results = sweep.run(p)
    assert [r.variant.tolist() for r in results] == [[0, 1], [2, 3]]
    with pytest.raises(TypeError, match="leave out ds"):
        engine.train(p.units[0].checked, p.dataset)
