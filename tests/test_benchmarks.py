"""The benchmark suite (benchmarks/): analytic FLOP / parameter counts, the plan, a tiny in-process run whose
results file follows the contract, and (when PyTorch is installed) the PyTorch twins of the models.

The suite's numbers are not checked here (they depend on the machine); ``make bench`` produces them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is not an installed package; `python -m pytest` has it anyway
    sys.path.insert(0, str(ROOT))

from benchmarks import CONTENDERS, RECORD_KEYS, WORKLOAD_NAMES, WORKLOADS, Config, report, run  # noqa: E402
from benchmarks.__main__ import parse_args  # noqa: E402
from benchmarks.report import speed_targets  # noqa: E402
from benchmarks.suite import make_plan, median_record  # noqa: E402
from benchmarks.workloads import ALL_ACTIVATIONS, load_data  # noqa: E402
from jaxnets import activations  # noqa: E402
from jaxnets.models import CNN, MLP, RNN  # noqa: E402


def _flax_model(wl):
    common = {"output_dim": wl.output_dim, "activation": "relu", "kernel_init": "glorot_uniform"}
    if wl.kind == "mlp":
        return MLP(hidden=wl.hidden, **common)
    if wl.kind == "cnn":
        return CNN(channels=wl.hidden, dense=wl.dense, **common)
    return RNN(hidden=wl.hidden, cell=wl.cell, **common)


@pytest.mark.parametrize("name", WORKLOAD_NAMES)
def test_parameter_count_matches_the_flax_model(name):
    """The analytic count is the Flax model's; for a workload of several architectures, their mean."""
    wl = WORKLOADS[name]
    counts = []
    for hidden in wl.hiddens or (wl.hidden,):
        one = dataclasses.replace(wl, hidden=hidden, hiddens=())
        shapes = jax.eval_shape(_flax_model(one).init, jax.random.key(0), jnp.zeros((1, *wl.input_shape)))
        counts.append(sum(math.prod(a.shape) for a in jax.tree.leaves(shapes)))
    assert sum(counts) / len(counts) == wl.param_count()


def test_flop_formula():
    digits = WORKLOADS["digits_mlp"]
    assert digits.macs_per_example() == 64 * 128 + 3 * 128 * 128 + 128 * 10
    assert digits.flops_per_model_step() == 3 * 2 * 128 * digits.macs_per_example()
    # conv 3x3 1->16 on 8x8, pool, conv 3x3 16->32 on 4x4, pool, dense 2*2*32 -> 64 -> 10
    assert WORKLOADS["digits_cnn"].macs_per_example() == 64 * 9 * 16 + 16 * 9 * 16 * 32 + 128 * 64 + 64 * 10
    # LSTM(32) on 2 inputs for 50 steps, then dense 32 -> 1
    assert WORKLOADS["adding_lstm"].macs_per_example() == 50 * 4 * 32 * (2 + 32) + 32
    rows = WORKLOADS["wine_mlp"].jaxnets_rows(5, steps=10, eval_every=5)
    assert {r["activation"] for r in rows} == {"relu", "tanh"} and {r["init"] for r in rows} == {
        "glorot_uniform", "he_normal"}
    assert [r["seed"] for r in rows] == list(range(5))


def test_wine_mlp_9act_mixes_all_nine_activations_for_jaxnets_only():
    assert ALL_ACTIVATIONS == activations.NAMES  # the plain-Python copy the planner uses
    wl, base = WORKLOADS["wine_mlp_9act"], WORKLOADS["wine_mlp"]
    assert (wl.hidden, wl.batch_size, wl.dataset, wl.param_count()) == (base.hidden, base.batch_size, base.dataset,
                                                                       base.param_count())
    rows = wl.jaxnets_rows(20, steps=10, eval_every=5)
    assert [r["activation"] for r in rows] == [activations.NAMES[i % 9] for i in range(20)]
    assert [r["init"] for r in rows[:9]] == ["glorot_uniform"] * 9 and rows[9]["init"] == "he_normal"
    # the one-activation contenders train the first activation, with the same initializers and seeds
    assert {wl.variant(i)["activation"] for i in range(20)} == {"sigmoid"} == set(wl.contender_activations())
    assert [(wl.variant(i)["init"], wl.variant(i)["seed"]) for i in range(20)] == [(r["init"], r["seed"])
                                                                                   for r in rows]
    assert base.contender_activations() == ("relu", "tanh") and base.variant(3) == base.jaxnets_variant(3)


def test_plan_skips_what_cannot_fit_and_missing_torch():
    cfg = Config(ns=(1, 1024))
    plan = make_plan(cfg, accelerator=False, peak_gflops=500.0, memory_bytes=8 * 2**30, torch_ok=False,
                     torch_on_accelerator=False)
    skipped = {(s["workload"], s["contender"], s["n"]): s["reason"] for s in plan.skipped}
    assert skipped[("digits_mlp_wide", "jaxnets", 1024)].startswith("memory")
    assert skipped[("wine_mlp", "torch_loop", 1)].startswith("torch not installed")
    ran = {(t["workload"], t["contender"], t["n"]) for t in plan.tasks}
    assert ("wine_mlp", "jaxnets", 1024) in ran and ("digits_mlp_wide", "jax_loop", 1024) in ran
    # an engine that splits oversized groups by itself is only held back by the time limit
    big = Config(ns=(64,), workloads=("digits_mlp_wide",), memory_fraction=0.05, max_record_s=1e9)
    kept = make_plan(big, False, 500.0, 8 * 2**30, False, False, engine_splits=True)
    assert [(t["contender"]) for t in kept.tasks] == ["jaxnets", "jax_loop", "jax_scan"]
    for t in plan.tasks:  # the same steps for every contender at one (workload, N), jaxnets at least its minimum
        first = next(u["steps"] for u in plan.tasks if (u["workload"], u["n"]) == (t["workload"], t["n"])
                     and u["contender"] != "jaxnets")
        if t["contender"] == "jaxnets":
            assert t["steps"] == max(first, cfg.jaxnets_min_steps) or t["steps"] == first
        else:
            assert t["steps"] == first


def test_plan_rounds_and_jaxnets_minimum_chunk():
    """``repeats`` rounds of each (workload, N)'s contenders, interleaved; jaxnets' timed chunk at least
    ``jaxnets_min_steps`` where the plan sizes steps and the record stays under ``max_record_s``."""
    cfg = Config(workloads=("adding_lstm", "wine_mlp"), contenders=("jaxnets", "jax_scan"), ns=(8, 64), repeats=3)
    plan = make_plan(cfg, False, 300.0, 8 * 2**30, False, False)
    order = [(t["workload"], t["n"], t["round"], t["contender"]) for t in plan.tasks]
    assert order == [(w, n, r, c) for w in cfg.workloads for n in cfg.ns for r in range(3) for c in cfg.contenders]
    steps = {(t["workload"], t["n"], t["contender"]): t["steps"] for t in plan.tasks}
    lstm64 = steps[("adding_lstm", 64, "jax_scan")]
    assert lstm64 < cfg.jaxnets_min_steps and steps[("adding_lstm", 64, "jaxnets")] == cfg.jaxnets_min_steps
    assert steps[("wine_mlp", 64, "jaxnets")] == steps[("wine_mlp", 64, "jax_scan")] > cfg.jaxnets_min_steps
    single = make_plan(Config(workloads=cfg.workloads, contenders=cfg.contenders, ns=cfg.ns), False, 300.0,
                       8 * 2**30, False, False)
    assert len(plan.tasks) == 3 * len(single.tasks) and plan.estimated_s == pytest.approx(3 * single.estimated_s)
    # fixed --steps are every contender's; a longer chunk that would pass max_record_s keeps the planned steps
    fixed = make_plan(Config(workloads=("adding_lstm",), ns=(64,), steps=5), False, 300.0, None, False, False)
    assert {t["steps"] for t in fixed.tasks} == {5}
    tight = Config(workloads=("adding_lstm",), contenders=("jaxnets",), ns=(64,), max_record_s=10.0)
    assert make_plan(tight, False, 300.0, None, False, False).tasks[0]["steps"] == lstm64
    with pytest.raises(ValueError, match="repeats"):
        make_plan(Config(repeats=0), False, 300.0, None, False, False)


def test_median_record_keeps_the_median_round():
    def rec(rate, comp, timed=1.0):
        return {"workload": "wine_mlp", "contender": "jaxnets", "n": 8, "model_steps_per_s": rate,
                "compile_s": comp, "timed_s": timed, "steps": 10}

    one = rec(5.0, 2.0)
    assert median_record([one]) == {**one, "repeats": 1}
    med = median_record([rec(300.0, 3.0, 0.3), rec(100.0, 5.0, 0.1), rec(200.0, 4.0, 0.2)])
    assert med["model_steps_per_s"] == 200.0 and med["timed_s"] == 0.2  # the median round's own fields
    assert med["compile_s"] == 4.0 and med["repeats"] == 3
    assert [s["model_steps_per_s"] for s in med["samples"]] == [300.0, 100.0, 200.0]  # run order
    even = median_record([rec(4.0, 9.0), rec(1.0, 1.0), rec(3.0, 2.0), rec(2.0, 5.0)])
    assert (even["model_steps_per_s"], even["compile_s"]) == (2.0, 2.0)  # the lower middle of each
    with pytest.raises(ValueError):
        median_record([])


def test_median_record_keeps_the_blocks_of_its_rounds():
    def rec(rate):
        return {"workload": "digits_cnn", "contender": "jaxnets", "n": 8, "model_steps_per_s": rate,
                "compile_s": 2.0, "timed_s": 1.0, "n_blocks": 8}

    med = median_record([rec(100.0), rec(300.0), rec(200.0)])
    assert med["model_steps_per_s"] == 200.0 and "block_trial_s" not in med  # the timed trial is gone
    assert [s["n_blocks"] for s in med["samples"]] == [8, 8, 8] and "block_trial_s" not in med["samples"][0]


def test_repeated_suite_reports_medians(tmp_path, monkeypatch):
    """The run with ``repeats``: each record is the median of its rounds, a failed round is listed and the
    others still count, the ratios and the Markdown use the medians (no compute: the worker is faked)."""
    from benchmarks import suite

    rates = {"jaxnets": [300.0, 100.0, 200.0], "jax_scan": [150.0, 120.0, None]}
    seen: list[tuple[str, int]] = []

    def fake(task, isolate, timeout_s):
        if task["task"] == "info":
            return {"machine": {"cpu_model": "test", "cpu_family": "", "cpu_isa": [], "cores": 2, "memory_gb": 1,
                                "platform": "cpu", "device_kind": "cpu", "device_count": 1, "name": "cpu-test"},
                    "versions": {"jax": jax.__version__}, "date": "today"}
        if task["task"] == "peak":
            return {"peak_gflops": 100.0, "detail": {"jax": 100.0}, "sizes": []}
        assert "round" not in task  # the worker gets the task without the plan's bookkeeping
        c = task["contender"]
        seen.append((c, task["steps"]))
        rate = rates[c][sum(1 for s in seen if s[0] == c) - 1]
        if rate is None:
            raise suite.TaskFailed("boom")
        return {"workload": task["workload"], "contender": c, "n": task["n"], "model_steps_per_s": rate,
                "compile_s": rate / 100, "timed_s": 1.0, "steps": task["steps"], "n_timed": task["n"],
                "extrapolated": False, "peak_rss_mb": 1.0}

    monkeypatch.setattr(suite, "run_task", fake)
    out = tmp_path / "cpu-test.json"
    res = run(Config(workloads=("wine_mlp",), contenders=("jaxnets", "jax_scan"), ns=(8,), repeats=3,
                     out=str(out), plot=False), log=lambda msg: None)
    assert [c for c, _ in seen] == ["jaxnets", "jax_scan"] * 3  # interleaved rounds
    recs = {r["contender"]: r for r in res["records"]}
    assert recs["jaxnets"]["model_steps_per_s"] == 200.0 and recs["jaxnets"]["repeats"] == 3
    assert recs["jax_scan"]["model_steps_per_s"] == 120.0 and recs["jax_scan"]["repeats"] == 2
    assert res["failed"] == [{"workload": "wine_mlp", "contender": "jax_scan", "n": 8, "error": "boom", "round": 2}]
    assert res["ratios"][0]["jaxnets_over_contender"] == pytest.approx(200.0 / 120.0)
    md = out.with_suffix(".md").read_text()
    assert "median of 3 interleaved rounds" in md and "| 100-300 | 1.00-3.00 |" in md


def test_cli_flags():
    cfg, dry = parse_args(["--quick", "--workloads", "wine_mlp,digits_cnn", "--contenders", "jaxnets,jax_scan",
                           "--ns", "1,4", "--out", "x.json", "--engine-option", "max_variants_per_program=32"])
    assert cfg.quick and cfg.isolate == "torch" and cfg.subtract_eval and not dry
    assert cfg.workloads == ("wine_mlp", "digits_cnn") and cfg.contenders == ("jaxnets", "jax_scan")
    assert cfg.ns == (1, 4) and cfg.out == "x.json" and cfg.engine_options == {"max_variants_per_program": 32}
    assert parse_args([])[0].isolate == "all" and parse_args(["--quick", "--in-process"])[0].isolate == "none"
    with pytest.raises(SystemExit):
        parse_args(["--workloads", "mnist"])
    cfg, _ = parse_args(["--workloads", "digits_mlp_archs", "--contenders", "jaxnets_mixed,jaxnets_split"])
    assert cfg.workloads == ("digits_mlp_archs",) and cfg.contenders == ("jaxnets_mixed", "jaxnets_split")
    cfg, _ = parse_args(["--workloads", "wine_mlp_9act", "--contenders", "jaxnets,jax_vmap"])
    assert cfg.workloads == ("wine_mlp_9act",) and cfg.contenders == ("jaxnets", "jax_vmap")
    assert cfg.repeats == 1 and parse_args(["--repeats", "3"])[0].repeats == 3
    with pytest.raises(SystemExit):
        parse_args(["--repeats", "0"])


def _check_results_file(path: Path, contenders: set[str], ns: tuple[int, ...]) -> dict:
    res = json.loads(path.read_text())
    assert set(res) >= {"machine", "versions", "peak_gflops", "records"}
    assert isinstance(res["peak_gflops"], float) and res["peak_gflops"] > 0
    assert res["machine"]["name"].startswith(("cpu-", "gpu", "tpu", "nvidia")) and res["machine"]["cores"] >= 1
    assert res["versions"]["jax"] == jax.__version__
    assert {(r["contender"], r["n"]) for r in res["records"]} == {(c, n) for c in contenders for n in ns}
    for r in res["records"]:
        assert list(r)[: len(RECORD_KEYS)] == list(RECORD_KEYS)
        assert r["workload"] in WORKLOAD_NAMES and r["contender"] in CONTENDERS
        for k in ("model_steps_per_s", "gflops", "peak_fraction", "compile_s", "peak_rss_mb"):
            assert isinstance(r[k], float) and math.isfinite(r[k]) and r[k] >= 0, (k, r)
        assert r["model_steps_per_s"] > 0 and r["peak_rss_mb"] > 0
        flops = WORKLOADS[r["workload"]].flops_per_model_step()
        assert r["gflops"] == pytest.approx(r["model_steps_per_s"] * flops / 1e9)
        assert r["peak_fraction"] == pytest.approx(r["gflops"] / res["peak_gflops"])
    assert {(q["contender"], q["n"]) for q in res["ratios"]} == {(c, n) for c in contenders - {"jaxnets"}
                                                                 for n in ns}
    md = path.with_suffix(".md").read_text()
    assert "| N | jaxnets |" in md and "## Targets" in md
    assert "| (a) wine_mlp_9act per-step time" in md and "| (d) jaxnets compile_s" in md
    return res


def test_tiny_suite_writes_the_contract(tmp_path):
    contenders = ("jaxnets", "jax_loop", "jax_scan", "jax_vmap")
    out = tmp_path / "cpu-test.json"
    cfg = Config(workloads=("wine_mlp",), contenders=contenders, ns=(2,), steps=5, target_s=0.02,
                 isolate="none", quick=True, out=str(out), plot=False)
    run(cfg, log=lambda msg: None)
    res = _check_results_file(out, set(contenders), (2,))
    jx = next(r for r in res["records"] if r["contender"] == "jaxnets" and r["n"] == 2)
    assert jx["n_timed"] == 2 and not jx["extrapolated"] and jx["steps"] == 5 and jx["eval_subtracted"] in (True, False)
    loop = next(r for r in res["records"] if r["contender"] == "jax_loop" and r["n"] == 2)
    assert loop["steps"] >= 50 and 1 <= loop["n_timed"] <= 2
    vm = next(r for r in res["records"] if r["contender"] == "jax_vmap")
    assert vm["n_timed"] == 2 and not vm["extrapolated"] and vm["steps"] == 5 and vm["n_calls"] >= 1
    assert (vm["activation"], vm["init"]) == ("relu", "glorot_uniform")


def test_jax_vmap_trains_n_different_models():
    """The hand-written jit(vmap(scan)) program: every model's loss goes down, and N models are N different
    trainings (own init and minibatch keys), all with the workload's first activation and initializer."""
    from benchmarks.jax_contenders import run_jax_vmap, vmap_program

    wl, n, steps = WORKLOADS["wine_mlp"], 4, 80
    program, (params, opt_state, x, y, keys) = vmap_program(wl, load_data(wl), n, steps)
    first = np.asarray(params["output"]["kernel"])
    assert first.shape == (n, 32, 3) and len({a.tobytes() for a in first}) == n  # n different inits
    params, opt_state, losses = program(params, opt_state, x, y, keys)
    losses = np.asarray(losses)
    assert losses.shape == (n, steps) and np.isfinite(losses).all()
    assert (losses[:, -10:].mean(axis=1) < 0.5 * losses[:, :10].mean(axis=1)).all()  # every model learns
    assert len({round(float(v), 6) for v in losses[:, -1]}) == n  # n different minibatch streams / results
    final = np.asarray(params["output"]["kernel"])
    assert all(not np.allclose(final[i], final[j]) for i in range(n) for j in range(i))
    assert int(opt_state[0].count[0]) == steps  # Adam's own step count, per model

    rec = run_jax_vmap(wl, n, 20, target_s=0.01)
    assert rec["model_steps_per_s"] > 0 and rec["compile_s"] > 0 and rec["n_timed"] == n
    assert rec["loss_last"] < rec["loss_first"] and not rec["extrapolated"]


def _rec(workload: str, contender: str, n: int, rate: float, compile_s: float = 1.0) -> dict:
    return {"workload": workload, "contender": contender, "n": n, "model_steps_per_s": rate, "compile_s": compile_s}


def test_speed_targets_from_hand_made_records():
    good = [
        _rec("wine_mlp", "jaxnets", 1, 5_000), _rec("wine_mlp", "jax_loop", 1, 10_000),  # N < 8: not judged
        _rec("wine_mlp", "jaxnets", 8, 8_000, 3.0), _rec("wine_mlp", "jax_loop", 8, 1_000),
        _rec("wine_mlp", "jaxnets", 64, 64_000), _rec("wine_mlp", "jax_vmap", 64, 50_000),
        _rec("wine_mlp_9act", "jaxnets", 8, 7_500), _rec("wine_mlp_9act", "jaxnets", 64, 60_000, 4.5),
        _rec("wine_mlp_9act", "jax_vmap", 64, 30_000),
    ]
    a, b, c, d = speed_targets(good)
    assert [t["met"] for t in (a, b, c, d)] == [True, True, True, True]
    assert a["value"] == pytest.approx(64_000 / 60_000) and "N=8 1.07x" in a["display"]
    assert b["value"] == pytest.approx(64_000 / 50_000) and "3 pairs" in b["display"]
    assert c["value"] == pytest.approx(64_000 / 50_000) and "wine_mlp N=64 vs jax_vmap" in c["display"]
    assert d["value"] == 4.5 and "wine_mlp_9act N=64" in d["display"]

    bad = [r for r in good if not (r["workload"] == "wine_mlp_9act" and r["n"] == 64)] + [
        _rec("wine_mlp_9act", "jaxnets", 64, 50_000, 6.0),  # 1.28x the per-step time; compiles for 6 s
        _rec("wine_mlp", "torch_func", 8, 9_000),  # faster than jaxnets at N = 8
        _rec("wine_mlp_9act", "jax_vmap", 64, 70_000),  # faster than jaxnets at N = 64
    ]
    a, b, c, d = speed_targets(bad)
    assert [t["met"] for t in (a, b, c, d)] == [False, False, False, False]
    assert a["value"] == pytest.approx(1.28) and a["failures"] == [{"n": 64, "slowdown": pytest.approx(1.28)}]
    assert {(f["workload"], f["n"], f["contender"]) for f in b["failures"]} == {
        ("wine_mlp", 8, "torch_func"), ("wine_mlp_9act", 64, "jax_vmap")}
    assert [(f["workload"], f["contender"]) for f in c["failures"]] == [("wine_mlp_9act", "jax_vmap")]
    assert c["value"] == pytest.approx(50_000 / 70_000) and d["value"] == 6.0 and "1 over" in d["display"]

    for t in speed_targets([_rec("digits_mlp", "jaxnets", 1, 100.0)])[:3]:  # nothing to compare
        assert t["met"] is None and t["value"] is None and t["display"] == "not measured"


def test_torch_twins_match_the_workloads():
    torch = pytest.importorskip("torch")
    from benchmarks.torch_contenders import build_model

    for name in WORKLOAD_NAMES:
        wl = WORKLOADS[name]
        if not wl.runs("torch_loop"):  # user_cnn: jaxnets and jax_loop only
            continue
        model = build_model(wl, 3, "cpu")
        assert sum(p.numel() for p in model.parameters()) == wl.param_count(), name
        x = torch.zeros(2, *wl.input_shape)
        if wl.kind == "cnn":
            x = x.permute(0, 3, 1, 2)
        assert model(x).shape == (2, wl.output_dim)


def test_torch_contenders_run():
    pytest.importorskip("torch")
    from benchmarks.worker import execute

    for contender in ("torch_loop", "torch_func"):
        # target_s leaves room for two timed models even on a loaded machine (the loop times models until
        # target_s is spent; with 0.01 s a busy machine times one)
        rec = execute({"task": "record", "workload": "wine_mlp", "contender": contender, "n": 4, "steps": 5,
                       "target_s": 0.5, "torch_threads": 1})
        assert rec["model_steps_per_s"] > 0 and rec["device"] == "cpu" and rec["torch_threads"] == 1
        assert rec["n_ensembles"] == 2 if contender == "torch_func" else rec["n_timed"] >= 2


@pytest.mark.slow
def test_quick_command_in_fresh_processes(tmp_path):
    """``python -m benchmarks`` end to end, one worker process per record (as ``make bench`` runs it)."""
    out = tmp_path / "cpu-cli.json"
    contenders = ["jaxnets", "jax_loop", "jax_scan"]
    try:
        import torch  # noqa: F401

        contenders += ["torch_loop", "torch_func"]
    except ImportError:
        pass
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--isolate", "--workloads", "wine_mlp",
                           "--ns", "1,2", "--contenders", ",".join(contenders), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = _check_results_file(out, set(contenders), (1, 2))
    assert all(r["rss_scope"] == "record" for r in res["records"])
    assert out.with_suffix(".png").exists()


def test_profile_reports_every_part(capsys):
    """benchmarks.profile times the engine's step and its parts for a tiny block (rates are not checked)."""
    from benchmarks import profile

    parts = profile.step_parts("wine_mlp", 2, steps=3)
    state = parts.pop("state")
    assert set(parts) == {"full", "fwd+bwd", "fwd", "adam"}
    after = parts["full"](state)
    assert int(after.step[0]) == 3 and not np.allclose(after.params["output"]["kernel"],
                                                      state.params["output"]["kernel"])
    profile.main(["--reps", "1", "step", "wine_mlp", "2", "--steps", "3"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln.split(":")[1].split()[0] for ln in lines] == ["full", "fwd+bwd", "fwd", "adam"]
    # one variant runs as the engine runs a block of one (plain arrays, no vmap): variant 0's numbers
    one = profile.step_parts("wine_mlp", 1, steps=3)
    alone = one["full"](one.pop("state"))
    for a, b in zip(jax.tree.leaves(alone.params), jax.tree.leaves(after.params), strict=True):
        assert a.shape[0] == 1
        np.testing.assert_allclose(np.asarray(a)[0], np.asarray(b)[0], rtol=1e-5, atol=1e-6)


def test_profile_compile_times_both_option_sets(capsys, monkeypatch):
    """benchmarks.profile compile: one line per option set (XLA's defaults, CPU_TUNING's), with every phase
    (times are not checked)."""
    from benchmarks import profile
    from jaxnets import engine

    monkeypatch.setenv("XLA_FLAGS", "")  # so the tuning's options apply (conftest sets the level itself)
    assert engine.tuning_for("cpu") == engine.CPU_TUNING and engine.tuning_for("gpu").options() is None
    assert engine.CPU_TUNING.options() == dict(engine.CPU_TUNING.compiler_options)
    profile.main(["--reps", "1", "compile", "wine_mlp", "2", "--steps", "3"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and "XLA default (None; init None)" in lines[0]
    assert "CPU_TUNING" in lines[1] and "xla_backend_optimization_level" in lines[1]
    assert all("compile chunk" in ln and "CPU s" in ln and "model-steps/s" in ln for ln in lines)


def test_user_cnn_workload_runs_in_jaxnets_and_jax_loop():
    """user_cnn: a user's own NNX CNN, trained by the engine (model=factory) and one variant at a time in a
    Python loop of jitted steps; its counts describe that module, its variants differ by seed and rate."""
    from flax import nnx

    from benchmarks.user_model import UserCNN
    from benchmarks.worker import execute

    wl = WORKLOADS["user_cnn"]
    shapes = nnx.state(nnx.eval_shape(lambda: UserCNN(nnx.Rngs(0))), nnx.Param)
    assert sum(math.prod(a.shape) for a in jax.tree.leaves(shapes)) == wl.param_count()
    rows = wl.jaxnets_rows(4, steps=10, eval_every=5)
    assert [(r["seed"], r["learning_rate"]) for r in rows] == [(0, 1e-3), (1, 3e-3), (2, 1e-3), (3, 3e-3)]
    assert all(r["batch_size"] == 128 and "kind" not in r for r in rows)
    plan = make_plan(Config(workloads=("user_cnn",), ns=(2,)), False, 300.0, None, False, False)
    assert [t["contender"] for t in plan.tasks] == ["jaxnets", "jax_loop"]
    assert {s["contender"] for s in plan.skipped} == set(CONTENDERS) - {"jaxnets", "jax_loop"}
    for contender in ("jaxnets", "jax_loop"):
        rec = execute({"task": "record", "workload": "user_cnn", "contender": contender, "n": 2, "steps": 2,
                       "target_s": 0.01, "subtract_eval": False})
        assert rec["model_steps_per_s"] > 0 and rec["workload"] == "user_cnn", rec
    assert rec["n_timed"] >= 1 and rec["steps"] >= 2


def test_user_model_benchmark_runs_both_programs():
    from benchmarks import user_model

    rec = user_model.measure(2, 20)
    assert rec["n"] == 2 and rec["engine_model_steps_per_s"] > 0 and rec["hand_written_model_steps_per_s"] > 0
    assert np.isfinite(rec["engine_final_val_loss_mean"]) and np.isfinite(rec["hand_written_final_train_loss_mean"])


def test_tuning_ab_measures_one_field_off(monkeypatch):
    """benchmarks.tuning's measurement trains the suite's jaxnets call with one CPU_TUNING field off."""
    from benchmarks import tuning

    monkeypatch.setitem(tuning.CHUNKS, "wine_mlp", 2)
    on, off = tuning.measure("wine_mlp", 2, None), tuning.measure("wine_mlp", 2, "block_bytes")
    assert on["field"] is None and off["field"] == "block_bytes"
    assert on["model_steps_per_s"] > 0 and off["model_steps_per_s"] > 0 and on["n_blocks"] == off["n_blocks"] == 1


# --------------------------------------------------------------------------------------------------------
# digits_mlp_archs (issue 27): one mixed program vs one program per architecture
# --------------------------------------------------------------------------------------------------------

ARCH_HIDDENS = ((16,), (32,), (64,), (16, 16), (32, 32), (64, 64), (32, 32, 32), (64, 64, 64))


def _mlp_macs(hidden: tuple[int, ...]) -> int:
    sizes = (64, *hidden, 10)
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))


def test_digits_mlp_archs_rows_and_counts():
    """Variant i: hidden ARCH_HIDDENS[(i // 2) % 8], relu / tanh for i % 2, seed i, he_normal; 16 variants hold
    the 8 architectures x 2 activations; the analytic counts are the mean of the architectures'."""
    wl = WORKLOADS["digits_mlp_archs"]
    assert wl.hiddens == ARCH_HIDDENS and wl.hidden == (64, 64, 64)  # the padded architecture
    rows = wl.jaxnets_rows(40, steps=7, eval_every=7)
    for i, r in enumerate(rows):
        assert (r["hidden"], r["activation"], r["seed"], r["init"]) == (ARCH_HIDDENS[(i // 2) % 8],
                                                                        ("relu", "tanh")[i % 2], i, "he_normal")
        assert (r["kind"], r["batch_size"], r["learning_rate"], r["optimizer"], r["sampling"], r["steps"],
                r["eval_every"]) == ("mlp", 128, 1e-3, "adam", "replacement", 7, 7)
    assert {(r["hidden"], r["activation"]) for r in rows[:16]} == {(h, a) for h in ARCH_HIDDENS
                                                                   for a in ("relu", "tanh")}
    assert wl.variant(5) == wl.jaxnets_variant(5)  # no contender trains another mix
    mean_macs = sum(_mlp_macs(h) for h in ARCH_HIDDENS) / 8
    assert wl.macs_per_example() == mean_macs == 4912 and wl.padded_macs_per_example() == _mlp_macs((64, 64, 64))
    assert wl.flops_per_model_step() == 6 * 128 * mean_macs
    assert wl.param_count() == mean_macs + sum(sum(h) + 10 for h in ARCH_HIDDENS) / 8 == 5000
    assert wl.activation_floats_per_example() == 64 + 2 * sum(sum(h) + 10 for h in ARCH_HIDDENS) / 8
    assert [wl.n_architectures(n) for n in (1, 2, 8, 16, 1024)] == [1, 1, 4, 8, 8]
    assert WORKLOADS["digits_mlp"].n_architectures(64) == 1
    # only the two architecture contenders run it, and they run nothing else
    assert [c for c in CONTENDERS if wl.runs(c)] == ["jaxnets_mixed", "jaxnets_split"]
    assert not any(WORKLOADS[w].runs(c) for w in WORKLOAD_NAMES if w != wl.name
                   for c in ("jaxnets_mixed", "jaxnets_split"))


def test_digits_mlp_archs_plan():
    """The plan runs the two contenders at the same steps, counts the split one's 8 compilations, and skips
    every other contender (and these two elsewhere) with the reason."""
    cfg = Config(workloads=("digits_mlp_archs", "wine_mlp"), ns=(32, 128))
    plan = make_plan(cfg, False, 300.0, 8 * 2**30, True, False)
    arch = [t for t in plan.tasks if t["workload"] == "digits_mlp_archs"]
    assert [(t["n"], t["contender"]) for t in arch] == [(n, c) for n in (32, 128)
                                                        for c in ("jaxnets_mixed", "jaxnets_split")]
    assert all(len({t["steps"] for t in arch if t["n"] == n}) == 1 for n in (32, 128))
    est = {(t["n"], t["contender"]): t["estimated_s"] for t in arch}
    assert est[(32, "jaxnets_split")] > est[(32, "jaxnets_mixed")] and est[(32, "jaxnets_split")] >= 8 * 2.5
    assert not any(t["contender"] in ("jaxnets_mixed", "jaxnets_split") for t in plan.tasks
                   if t["workload"] == "wine_mlp")
    skipped = {(s["workload"], s["contender"], s["n"]): s["reason"] for s in plan.skipped}
    assert skipped[("digits_mlp_archs", "jaxnets", 32)].startswith("not implemented: digits_mlp_archs runs only")
    assert skipped[("wine_mlp", "jaxnets_split", 128)] == "not implemented: jaxnets_split runs only digits_mlp_archs"


def _arch_rec(contender: str, n: int, wall: float, compile_s: float, auto: bool | None) -> dict:
    rec = {"workload": "digits_mlp_archs", "contender": contender, "n": n, "model_steps_per_s": n * 100 / wall,
           "gflops": 1.0, "peak_fraction": 0.01, "compile_s": compile_s, "peak_rss_mb": 500.0, "steps": 100,
           "n_timed": n, "extrapolated": False, "timed_s": wall, "wall_s": wall,
           "n_programs": 1 if contender == "jaxnets_mixed" else 8}
    return rec if auto is None else {**rec, "auto_mixes": auto}


def _arch_recs(walls: dict[int, tuple[float, float]], auto: bool | None) -> list[dict]:
    return [r for n, (mixed, split) in walls.items() for r in (_arch_rec("jaxnets_mixed", n, mixed, 4.0, auto),
                                                               _arch_rec("jaxnets_split", n, split, 18.0, auto))]


def test_architecture_targets_met_not_met_and_not_measured():
    good = report.architecture_targets(_arch_recs({32: (5.0, 20.0), 128: (10.0, 25.0)}, auto=True))
    assert [t["target"] for t in good] == [report.ARCH_SPEEDUP_TARGET, report.ARCH_AUTO_TARGET]
    assert good[0]["target"] == "architectures mixed: >= 2x faster than split on 2 CPU cores (N=32, 128)"
    assert good[1]["target"] == "auto picks the faster"
    assert [t["met"] for t in good] == [True, True] and good[0]["value"] == pytest.approx(2.5)
    assert "min 2.50x at N=128" in good[0]["display"] and "N=32 4.00x" in good[0]["display"]
    assert good[1]["value"] == 1.0 and "the faster at 2 of 2" in good[1]["display"]

    # N=128 below 2x; auto splits although mixing is faster at both N
    bad = report.architecture_targets(_arch_recs({32: (5.0, 20.0), 128: (10.0, 15.0)}, auto=False))
    assert [t["met"] for t in bad] == [False, False] and bad[0]["value"] == pytest.approx(1.5)
    assert bad[0]["failures"] == [{"workload": "digits_mlp_archs", "n": 128, "split_over_mixed": 1.5}]
    assert bad[1]["value"] == 0.0 and [f["n"] for f in bad[1]["failures"]] == [32, 128]
    # split faster: auto is right to split; the speed target is judged on N=32 only (N=128 not measured)
    split_wins = report.architecture_targets(_arch_recs({32: (12.0, 10.0)}, auto=False))
    assert [t["met"] for t in split_wins] == [False, True] and "N=128 not measured" in split_wins[0]["display"]

    for recs in ([], _arch_recs({8: (5.0, 20.0)}, auto=None), [_rec("digits_mlp", "jaxnets", 64, 100.0)]):
        speed, auto = report.architecture_targets(recs)  # N=8 is not a target N; auto_mixes not recorded
        assert speed["met"] is None and speed["display"] == "not measured" and speed["value"] is None
        assert auto["met"] is None and auto["display"] == "not measured"


def test_architecture_report_section():
    """The Markdown report: the mixed / split table per N, both targets; jaxnets' ratios leave them out."""
    recs = _arch_recs({32: (5.0, 20.0), 128: (10.0, 15.0)}, auto=False) + [
        {**_rec("digits_mlp_archs", "jaxnets", 32, 1000.0), "gflops": 1.0, "peak_fraction": 0.01,
         "peak_rss_mb": 1.0, "steps": 100, "n_timed": 32, "timed_s": 1.0}]
    wl = WORKLOADS["digits_mlp_archs"]
    results = {"machine": {"name": "cpu-test", "cpu_model": "test", "cores": 2, "platform": "cpu",
                           "device_kind": "cpu", "device_count": 1}, "versions": {"jax": jax.__version__},
               "date": "today", "duration_s": 60.0, "peak_gflops": 100.0,
               "config": {"target_s": 1.0, "ns": [32, 128], "isolate": "all"},
               "workloads": {wl.name: {"description": wl.description, "flops_per_model_step": wl.flops_per_model_step(),
                                       "params_per_model": wl.param_count()}},
               "records": recs, "skipped": [], "failed": []}
    assert report.ratios(recs) == []  # the wall-inclusive contenders are no jaxnets ratio
    assert all(t["met"] is None for t in speed_targets(recs)[1:3])
    md = report.markdown(results)
    assert "5,000 parameters per model" in md
    assert "| N | steps | mixed wall s (compile s) | split wall s (compile s) | split / mixed |" in md
    assert "| 32 | 100 | 5.00 (4.00) | 20.00 (18.00) | 4.00x | 1, 8 | split | mixed | **no** |" in md
    assert "| 128 | 100 | 10.00 (4.00) | 15.00 (18.00) | 1.50x | 1, 8 | split | mixed | **no** |" in md
    assert (f"| {report.ARCH_SPEEDUP_TARGET} | min 1.50x at N=128 (N=32 4.00x, N=128 1.50x) | >= 2x (split wall "
            "/ mixed wall) | **not met** |") in md
    assert f"| {report.ARCH_AUTO_TARGET} | the faster at 0 of 2 (" in md
    assert "| jaxnets_mixed | jaxnets_split |" in md  # the summary table's columns


def test_architecture_contenders_run_in_the_suite(tmp_path):
    """A tiny real run of digits_mlp_archs through the suite (N=16, 3 steps, in this process): one program
    mixed, eight split, the record keys, auto's pick; every other contender is skipped."""
    from benchmarks import architectures

    out = tmp_path / "cpu-archs.json"
    res = run(Config(workloads=("digits_mlp_archs",), ns=(16,), steps=3, target_s=0.01, isolate="none", quick=True,
                     out=str(out), plot=False), log=lambda msg: None)
    recs = {r["contender"]: r for r in res["records"]}
    assert set(recs) == {"jaxnets_mixed", "jaxnets_split"}
    assert {s["contender"] for s in res["skipped"]} == set(CONTENDERS) - set(recs)
    assert (recs["jaxnets_mixed"]["n_programs"], recs["jaxnets_split"]["n_programs"]) == (1, 8)
    for c, r in recs.items():
        assert list(r)[: len(RECORD_KEYS)] == list(RECORD_KEYS)
        assert r["mix_architectures"] is (c == "jaxnets_mixed")
        assert (r["steps"], r["n_timed"], r["extrapolated"], r["n_diverged"]) == (3, 16, False, 0)
        assert 0 < r["compile_s"] < r["wall_s"] == r["timed_s"] <= r["total_s"]
        assert r["model_steps_per_s"] == pytest.approx(16 * 3 / r["wall_s"])
        assert r["n_blocks"] >= r["n_programs"] and isinstance(r["auto_mixes"], bool)
        for k in ("engine_run_s", "engine_wall_s", "auto_check_s", "model_steps_per_s_without_compile", "loop",
                  "engine_options", "peak_rss_mb", "eval_work_fraction"):
            assert k in r, k
    assert recs["jaxnets_mixed"]["auto_mixes"] == recs["jaxnets_split"]["auto_mixes"]
    assert recs["jaxnets_mixed"]["auto_mixes"] == architectures.auto_picks_mixing(16, 3)
    assert architectures.rows(16, 3) == WORKLOADS["digits_mlp_archs"].jaxnets_rows(16, steps=3, eval_every=3)
    targets = {t["target"]: t for t in json.loads(out.read_text())["targets"]}
    assert targets[report.ARCH_SPEEDUP_TARGET]["met"] is None  # N=16 is no target N
    assert targets[report.ARCH_AUTO_TARGET]["met"] is not None
    assert "| 16 | 3 |" in out.with_suffix(".md").read_text()


def test_coverage_benchmark_rounds_are_seeded_and_reuse_one_program():
    from benchmarks import coverage
    from jaxnets import engine

    a, b = coverage.rounds(2, 3, 4), coverage.rounds(2, 3, 4)
    assert a == b and len(a) == 2 and all(len(r) == 3 for r in a)
    assert {r["activation"] for rows in a for r in rows} <= set(coverage.ACTIVATIONS)
    cover = engine.Coverage(activations=coverage.ACTIVATIONS, dropout=True)
    wall, compile_s = coverage.measure(a, cover)
    assert wall > compile_s > 0


def test_one_architecture_is_nothing_to_pick():
    from benchmarks import report

    rec = {"workload": "digits_mlp_archs", "n": 1, "steps": 10, "timed_s": 1.0, "compile_s": 0.5, "n_programs": 1,
           "auto_mixes": True}
    comps = report.architecture_comparisons([{**rec, "contender": "jaxnets_mixed", "wall_s": 1.3},
                                             {**rec, "contender": "jaxnets_split", "wall_s": 1.2}])
    assert comps[0]["faster"] is None and comps[0]["auto_picks_faster"] is None
    auto = [t for t in report.architecture_targets([{**rec, "contender": "jaxnets_mixed", "wall_s": 1.3},
                                                    {**rec, "contender": "jaxnets_split", "wall_s": 1.2}])
            if t["target"] == report.ARCH_AUTO_TARGET][0]
    assert auto["met"] is None  # not measured: nothing to pick anywhere
