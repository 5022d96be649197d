"""The benchmark suite (benchmarks/): analytic FLOP / parameter counts, the plan, a tiny in-process run whose
results file follows the contract, and (when PyTorch is installed) the PyTorch twins of the models.

The suite's numbers are not checked here (they depend on the machine); ``make bench`` produces them.
"""

from __future__ import annotations

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

from benchmarks import CONTENDERS, RECORD_KEYS, WORKLOAD_NAMES, WORKLOADS, Config, run  # noqa: E402
from benchmarks.__main__ import parse_args  # noqa: E402
from benchmarks.suite import make_plan  # noqa: E402
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
    wl = WORKLOADS[name]
    shapes = jax.eval_shape(_flax_model(wl).init, jax.random.key(0), jnp.zeros((1, *wl.input_shape)))
    assert sum(math.prod(a.shape) for a in jax.tree.leaves(shapes)) == wl.param_count()


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
    for t in plan.tasks:  # the same steps for every contender at one (workload, N)
        assert t["steps"] == next(u["steps"] for u in plan.tasks if (u["workload"], u["n"]) == (t["workload"], t["n"]))


def test_cli_flags():
    cfg, dry = parse_args(["--quick", "--workloads", "wine_mlp,digits_cnn", "--contenders", "jaxnets,jax_scan",
                           "--ns", "1,4", "--out", "x.json", "--engine-option", "max_variants_per_program=32"])
    assert cfg.quick and cfg.isolate == "torch" and cfg.subtract_eval and not dry
    assert cfg.workloads == ("wine_mlp", "digits_cnn") and cfg.contenders == ("jaxnets", "jax_scan")
    assert cfg.ns == (1, 4) and cfg.out == "x.json" and cfg.engine_options == {"max_variants_per_program": 32}
    assert parse_args([])[0].isolate == "all" and parse_args(["--quick", "--in-process"])[0].isolate == "none"
    with pytest.raises(SystemExit):
        parse_args(["--workloads", "mnist"])


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
    return res


def test_tiny_suite_writes_the_contract(tmp_path):
    contenders = ("jaxnets", "jax_loop", "jax_scan")
    out = tmp_path / "cpu-test.json"
    cfg = Config(workloads=("wine_mlp",), contenders=contenders, ns=(2,), steps=5, target_s=0.02,
                 isolate="none", quick=True, out=str(out), plot=False)
    run(cfg, log=lambda msg: None)
    res = _check_results_file(out, set(contenders), (2,))
    jx = next(r for r in res["records"] if r["contender"] == "jaxnets" and r["n"] == 2)
    assert jx["n_timed"] == 2 and not jx["extrapolated"] and jx["steps"] == 5 and jx["eval_subtracted"] in (True, False)
    loop = next(r for r in res["records"] if r["contender"] == "jax_loop" and r["n"] == 2)
    assert loop["steps"] >= 50 and 1 <= loop["n_timed"] <= 2


def test_torch_twins_match_the_workloads():
    torch = pytest.importorskip("torch")
    from benchmarks.torch_contenders import build_model

    for name in WORKLOAD_NAMES:
        wl = WORKLOADS[name]
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
        rec = execute({"task": "record", "workload": "wine_mlp", "contender": contender, "n": 4, "steps": 5,
                       "target_s": 0.01, "torch_threads": 1})
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
