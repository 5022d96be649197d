"""Plan and run the suite: machine info, matmul peak, then every workload x N x contender, then the peak
again; write the JSON / Markdown / plot.

The orchestrating process imports neither JAX nor PyTorch: each task runs in a fresh worker process
(:mod:`benchmarks.worker`), so every record's peak memory is its own, a crash or an out-of-memory kill
loses one record, and no process holds an accelerator while another measures. Records run interleaved —
for each workload, for each N, every contender in turn (``repeats`` rounds of them) — so slow drifts of a
shared machine hit all contenders alike; with ``repeats`` > 1 each record is the median of its rounds
(:func:`median_record`), so one slow spell does not decide a ratio. ``isolate="none"`` runs everything in
this process instead (fast; for tests); then ``peak_rss_mb`` is the process's peak so far and ``rss_scope``
says so. ``isolate="torch"`` (``--quick``)
runs the JAX records here and only the PyTorch ones (and the peak, which uses PyTorch too) in fresh
processes: PyTorch's OpenMP threads sharing a process with XLA's thread pool stall badly.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.jax_contenders import LOOP_MIN_STEPS
from benchmarks.machine import available_memory_bytes
from benchmarks.worker import CONTENDERS, TORCH_CONTENDERS
from benchmarks.workloads import ARCHITECTURE_CONTENDERS, WORKLOAD_NAMES, WORKLOADS, Workload

SCHEMA = "jaxnets-benchmarks/1"
RECORD_KEYS: tuple[str, ...] = ("workload", "contender", "n", "model_steps_per_s", "gflops", "peak_fraction",
                                "compile_s", "peak_rss_mb")
CPU_NS: tuple[int, ...] = (1, 8, 64, 256, 1024)
ACCELERATOR_NS: tuple[int, ...] = (1, 8, 64, 256, 1024, 4096, 16384)
VECTORIZED: tuple[str, ...] = ("jaxnets", "jax_vmap", "torch_func", *ARCHITECTURE_CONTENDERS)
#: The contenders that train through ``jaxnets.engine.train`` (which splits a group too big for memory itself).
ENGINE_CONTENDERS: tuple[str, ...] = ("jaxnets", *ARCHITECTURE_CONTENDERS)
#: Compile seconds the plan assumes for ``jaxnets_split``'s programs, one per architecture (a small MLP's init
#: and chunk programs: about 2.5 s on the 2-core CPU), and for ``jaxnets_mixed``'s one program at the padded
#: architecture (4.0-4.7 s there): these contenders time the compilation, so their estimates include it.
ARCH_PROGRAM_COMPILE_S = 2.5
ARCH_MIXED_COMPILE_S = 4.5
#: Fewest steps in jaxnets' timed chunk (when the plan sizes the steps): its rate is the difference of a
#: K-step and a 1-step chunk that both hold one evaluation, so a K of 5 (the plan's floor for big models) leaves
#: the evaluation's noise divided by only 4 (adding_lstm N=64: 4 steps of 0.13 s against a 0.57 s evaluation).
#: The one-at-a-time contenders likewise train at least ``LOOP_MIN_STEPS`` per model.
JAXNETS_MIN_STEPS = 20
REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


@dataclasses.dataclass
class Config:
    """A suite run. ``ns=None``: :data:`CPU_NS` on a CPU host, :data:`ACCELERATOR_NS` on an accelerator (a
    workload with its own ``ns``, e.g. ``digits_mlp_archs`` at N = 32 and 128, runs at those).

    target_s: seconds each measurement aims at (steps are sized from the measured peak; loop contenders
      time models until they spent this long). steps: fixed steps per model for every record (overrides
      the sizing). max_record_s: skip a record whose estimated time exceeds this. memory_fraction: skip a
      record whose estimated memory exceeds this share of the available host (or device) memory.
      torch_threads: ``torch.set_num_threads`` for the PyTorch contenders (default: one per core).
      isolate: ``"all"``, ``"torch"`` or ``"none"`` (see the module docstring). subtract_eval: time jaxnets
        a second time with 1-step chunks to subtract the evaluation (see ``run_jaxnets``).
      engine_options: extra ``jaxnets.engine.Options`` fields for the jaxnets contender (default none: the
        engine as a user gets it), e.g. ``{"max_variants_per_program": 32}`` to try chunking.
      repeats: rounds of every (workload, N)'s contenders, interleaved; each record is then the median of its
        rounds (:func:`median_record`). jaxnets_min_steps: fewest steps of jaxnets' timed chunk when the
        steps are planned (see :data:`JAXNETS_MIN_STEPS`; kept under ``max_record_s``).
    """

    workloads: Sequence[str] = WORKLOAD_NAMES
    contenders: Sequence[str] = CONTENDERS
    ns: Sequence[int] | None = None
    target_s: float = 1.0
    steps: int | None = None
    min_steps: int = 5
    max_steps: int = 5000
    max_record_s: float = 180.0
    memory_fraction: float = 0.6
    isolate: str = "all"  # "all": a fresh process per record; "torch": only PyTorch ones; "none": none
    subtract_eval: bool = True
    timeout_s: float = 900.0
    torch_threads: int | None = None
    engine_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    repeats: int = 1
    jaxnets_min_steps: int = JAXNETS_MIN_STEPS
    quick: bool = False
    out: str | None = None
    plot: bool = True


def quick_config(**overrides: Any) -> Config:
    """``--quick``: N = 1, 8, tiny measurements, JAX records in this process and PyTorch ones in their own
    processes: two to three minutes on 2 cores (mostly compilation)."""
    base = dict(ns=(1, 8), target_s=0.1, max_steps=500, min_steps=3, max_record_s=10.0, isolate="torch",
                quick=True, jaxnets_min_steps=1)
    return Config(**{**base, **overrides})


# --------------------------------------------------------------------------------------------------------
# Running tasks
# --------------------------------------------------------------------------------------------------------


class TaskFailed(RuntimeError):
    pass


def _isolation(isolate: str | bool) -> str:
    mode = {True: "all", False: "none"}.get(isolate, isolate)  # type: ignore[arg-type]
    if mode not in ("all", "torch", "none"):
        raise ValueError(f"isolate must be 'all', 'torch' or 'none', got {isolate!r}")
    return mode


def _fresh_process(task: dict[str, Any], isolate: str | bool) -> bool:
    mode = _isolation(isolate)
    if mode == "torch":
        return task["task"] == "peak" or task.get("contender") in TORCH_CONTENDERS
    return mode == "all"


def run_task(task: dict[str, Any], isolate: str | bool, timeout_s: float) -> dict[str, Any]:
    """Run one worker task in a fresh process or in this one, as ``isolate`` says (see :class:`Config`)."""
    if not _fresh_process(task, isolate):
        from benchmarks.worker import execute

        try:
            out = execute(task)
        except Exception as e:  # noqa: BLE001 - one broken record must not end the run
            raise TaskFailed(f"{type(e).__name__}: {e}") from e
        if task["task"] == "record":
            out["rss_scope"] = "process"
        return out
    with tempfile.TemporaryDirectory(prefix="jaxnets-bench-") as tmp:
        task_path, out_path = Path(tmp, "task.json"), Path(tmp, "out.json")
        task_path.write_text(json.dumps(task))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        if _isolation(isolate) != "all":  # this process may hold the accelerator: do not grab all its memory
            env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        try:
            proc = subprocess.run([sys.executable, "-m", "benchmarks.worker", str(task_path), str(out_path)],
                                  cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as e:
            raise TaskFailed(f"timed out after {timeout_s:.0f} s") from e
        if proc.returncode != 0 or not out_path.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            why = "killed (out of memory?)" if proc.returncode in (-9, 137) else f"exit {proc.returncode}"
            raise TaskFailed(f"{why}: {' | '.join(tail)}")
        out = json.loads(out_path.read_text())
        if task["task"] == "record":
            out["rss_scope"] = "record"
        return out


# --------------------------------------------------------------------------------------------------------
# Planning: steps per (workload, N), and what to skip
# --------------------------------------------------------------------------------------------------------


def _nice(x: float) -> int:
    """Round to two significant digits (at least 1)."""
    if x < 1:
        return 1
    mag = 10 ** max(0, int(math.floor(math.log10(x))) - 1)
    return int(round(x / mag) * mag)


#: Share of the matmul peak assumed when sizing steps and estimating durations (2-core CPU measurements:
#: batched MLP dots reach 15-30%, the CNN about 5.5%, the LSTM about 7%).
_EFFICIENCY = {"mlp": 0.15, "cnn": 0.055, "rnn": 0.07}


def _step_seconds(wl: Workload, n: int, peak_gflops: float, accelerator: bool, vectorized: bool) -> float:
    """A rough guess of one training step's time, used only to size step counts, skip hopeless records and
    estimate the duration: a fixed per-step cost plus the matmul work at a typical share of the peak."""
    fixed = (3e-4 if accelerator else 3e-5) if vectorized else (4e-4 if accelerator else 1e-4)
    models = n if vectorized else 1
    return fixed + models * wl.flops_per_model_step() / (_EFFICIENCY[wl.kind] * peak_gflops * 1e9)


def _eval_seconds(wl: Workload, n: int, peak_gflops: float, accelerator: bool) -> float:
    """A rough guess of one jaxnets evaluation (forward on the validation split, a gradient on 32 examples)."""
    flops = 2.0 * wl.macs_per_example() * (wl.n_val + 3 * 32) * n
    return (3e-4 if accelerator else 3e-5) + flops / (_EFFICIENCY[wl.kind] * peak_gflops * 1e9)


def plan_steps(wl: Workload, n: int, cfg: Config, peak_gflops: float, accelerator: bool) -> int:
    """Steps per model for every contender at (workload, N): about ``target_s`` of vectorized training."""
    if cfg.steps is not None:
        return cfg.steps
    s = cfg.target_s / _step_seconds(wl, n, peak_gflops, accelerator, vectorized=True)
    return max(cfg.min_steps, min(cfg.max_steps, _nice(s)))


def _architectures_seconds(wl: Workload, contender: str, n: int, steps: int, peak_gflops: float,
                           on_accelerator: bool) -> float:
    """A rough guess of ``jaxnets_mixed`` / ``jaxnets_split``'s one timed ``engine.train`` call, compilation
    included: the mixed one compiles one program and computes the padded architecture for every variant;
    the split one compiles one program per architecture and pays the fixed per-step cost in each (the same
    for both when the first ``n`` variants have one architecture)."""
    programs = wl.n_architectures(n)
    mixed = contender == "jaxnets_mixed" and programs > 1  # one architecture: one plain program either way
    programs = 1 if mixed else programs
    waste = wl.padded_macs_per_example() / wl.macs_per_example() if mixed else 1.0
    fixed = 3e-4 if on_accelerator else 3e-5
    work = n * waste * wl.flops_per_model_step() / (_EFFICIENCY[wl.kind] * peak_gflops * 1e9)
    evals = 2 * waste * _eval_seconds(wl, n, peak_gflops, on_accelerator)  # at step 0 and at the end
    compile_s = ARCH_MIXED_COMPILE_S if mixed else programs * ARCH_PROGRAM_COMPILE_S
    return compile_s + steps * (programs * fixed + work) + evals


def estimate_seconds(wl: Workload, contender: str, n: int, steps: int, cfg: Config, peak_gflops: float,
                     on_accelerator: bool) -> float:
    """A rough guess of a record's measuring time (compilation and process start not included, except for
    ``jaxnets_mixed`` / ``jaxnets_split``, which time their compilation)."""
    if contender in ARCHITECTURE_CONTENDERS:
        return _architectures_seconds(wl, contender, n, steps, peak_gflops, on_accelerator)
    vectorized = contender in VECTORIZED
    step = _step_seconds(wl, n, peak_gflops, on_accelerator, vectorized)
    if contender == "jaxnets":  # init, a warm-up chunk and the timed one (3 evaluations); again with 1-step chunks
        ev = _eval_seconds(wl, n, peak_gflops, on_accelerator)
        return 2 * step * steps + 3 * ev + ((2 * step + 3 * ev) if cfg.subtract_eval else 0.0)
    if contender == "jax_vmap":  # a warm-up call, then calls until target_s is spent
        return step * steps + max(cfg.target_s, step * steps)
    if contender == "torch_func":
        return min(step * steps, max(cfg.target_s, 5 * step))
    # one-at-a-time: time-boxed, at least two models of at least LOOP_MIN_STEPS steps
    return max(cfg.target_s, min(n, 2) * step * max(steps, LOOP_MIN_STEPS))


def _not_implemented(wl: Workload, contender: str) -> str:
    """Why ``contender`` skips ``wl`` (which does not run it, :meth:`Workload.runs`)."""
    if wl.contenders is not None:
        return f"not implemented: {wl.name} runs only {', '.join(wl.contenders)}"
    named = [w.name for w in WORKLOADS.values() if w.contenders is not None and contender in w.contenders]
    return f"not implemented: {contender} runs only {', '.join(named)}"


@dataclasses.dataclass
class Plan:
    tasks: list[dict[str, Any]]
    skipped: list[dict[str, Any]]
    ns: tuple[int, ...]
    estimated_s: float


def make_plan(cfg: Config, accelerator: bool, peak_gflops: float, memory_bytes: float | None, torch_ok: bool,
              torch_on_accelerator: bool, host_memory_bytes: float | None = None,
              engine_splits: bool = False) -> Plan:
    """Every (workload, N, contender) to run, in run order, with its steps; and what is skipped and why.

    A record is skipped when the contender does not implement the workload (:meth:`Workload.runs`), when
    its estimated memory exceeds ``cfg.memory_fraction`` of what is available
    (except the engine's contenders, :data:`ENGINE_CONTENDERS`, when ``engine_splits``: the engine then trains
    an oversized group in chunks of variants that fit) or its estimated time exceeds ``cfg.max_record_s``.
    """
    ns = tuple(cfg.ns) if cfg.ns else (ACCELERATOR_NS if accelerator else CPU_NS)
    if cfg.repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {cfg.repeats}")
    tasks, skipped, total = [], [], 0.0
    mode = _isolation(cfg.isolate)
    for w in cfg.workloads:
        wl = WORKLOADS[w]
        for n in (ns if cfg.ns else wl.ns or ns):
            planned = plan_steps(wl, n, cfg, peak_gflops, accelerator)
            group: list[dict[str, Any]] = []
            for c in cfg.contenders:
                on_acc = accelerator and (c not in TORCH_CONTENDERS or torch_on_accelerator)
                peak = peak_gflops if (on_acc or not accelerator) else 100.0  # CPU PyTorch on a GPU host
                base = {"workload": w, "contender": c, "n": n}
                need = (n if c in VECTORIZED else 1) * wl.train_bytes_per_model()
                mem = memory_bytes if (on_acc or not accelerator) else host_memory_bytes
                steps = planned
                if c == "jaxnets" and cfg.steps is None and planned < cfg.jaxnets_min_steps:
                    longer = estimate_seconds(wl, c, n, cfg.jaxnets_min_steps, cfg, peak, on_acc)
                    steps = cfg.jaxnets_min_steps if longer <= cfg.max_record_s else planned
                est = estimate_seconds(wl, c, n, steps, cfg, peak, on_acc)
                if not wl.runs(c):
                    why = _not_implemented(wl, c)
                elif c in TORCH_CONTENDERS and not torch_ok:
                    why = "torch not installed (pip install -e '.[bench]')"
                elif (mem is not None and need > cfg.memory_fraction * mem
                      and not (c in ENGINE_CONTENDERS and engine_splits)):
                    why = (f"memory: needs about {need / 2**30:.1f} GiB; {cfg.memory_fraction:.0%} of the "
                           f"available {mem / 2**30:.1f} GiB is the limit")
                elif est > cfg.max_record_s:
                    why = f"time: estimated {est:.0f} s > max_record_s {cfg.max_record_s:.0f} s"
                else:
                    why = None
                if why:
                    skipped.append({**base, "reason": why})
                    continue
                compile_guess = {"jaxnets": 7.0, "jax_loop": 1.5, "jax_scan": 1.5, "jax_vmap": 2.0,
                                 "jaxnets_mixed": 0.0, "jaxnets_split": 0.0}.get(c, 0.3)  # in est for these
                startup = 2.0 if _fresh_process({"task": "record", "contender": c}, mode) else 0.0
                calls = 2 if (c == "jaxnets" and cfg.subtract_eval) else 1
                total += cfg.repeats * (startup + calls * compile_guess / 2 + est)
                group.append({"task": "record", **base, "steps": steps, "target_s": cfg.target_s,
                              "torch_threads": cfg.torch_threads, "engine_options": dict(cfg.engine_options),
                              "subtract_eval": cfg.subtract_eval,
                              "estimated_s": round(est, 2)})
            tasks += [{**t, "round": r} for r in range(cfg.repeats) for t in group]
    return Plan(tasks, skipped, ns, total)


def median_record(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One record from ``samples``, the records of one (workload, contender, N) from several rounds.

    The sample whose ``model_steps_per_s`` is the median (the lower middle one for an even count), with
    ``compile_s`` the median of the rounds' compile times (the lower middle one likewise); ``repeats`` (the
    count) and ``samples`` (each round's ``model_steps_per_s``, ``compile_s``, ``timed_s`` and, for the
    engine's contenders, ``n_blocks``, and ``wall_s`` for ``jaxnets_mixed`` / ``jaxnets_split``, in run
    order) are added. One sample is returned as it is, with ``repeats`` = 1.
    """
    if not samples:
        raise ValueError("median_record needs at least one sample")
    if len(samples) == 1:
        return {**samples[0], "repeats": 1}
    by_rate = sorted(samples, key=lambda r: r["model_steps_per_s"])
    mid = (len(samples) - 1) // 2
    compile_s = sorted(r["compile_s"] for r in samples)[mid]
    kept = ("model_steps_per_s", "compile_s", "timed_s", "n_blocks", "wall_s")
    return {**by_rate[mid], "compile_s": compile_s, "repeats": len(samples),
            "samples": [{k: r[k] for k in kept if k in r} for r in samples]}


# --------------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------------


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def run(cfg: Config, log: Callable[[str], None] = _log, dry_run: bool = False) -> dict[str, Any]:
    """Run the suite; write ``cfg.out`` (+ ``.md``, ``.png``); return the results dict.

    ``dry_run``: measure the peak, print the plan (steps, skips, estimated duration) and stop.
    """
    for w in cfg.workloads:
        if w not in WORKLOADS:
            raise ValueError(f"unknown workload {w!r}; valid: {', '.join(WORKLOAD_NAMES)}")
    for c in cfg.contenders:
        if c not in CONTENDERS:
            raise ValueError(f"unknown contender {c!r}; valid: {', '.join(CONTENDERS)}")
    t_start = time.perf_counter()
    load_start = _load()
    meta = run_task({"task": "info"}, cfg.isolate, cfg.timeout_s)
    machine = meta["machine"]
    accelerator = machine["platform"] != "cpu"
    torch_ok = importlib.util.find_spec("torch") is not None
    torch_version = str(meta["versions"].get("torch") or "")
    torch_on_acc = accelerator and torch_ok and bool(torch_version) and "+cpu" not in torch_version
    log(f"machine: {machine['name']} ({machine['cpu_model']}, {machine['cores']} cores, "
        f"{machine['platform']} {machine['device_kind']} x{machine['device_count']}); load average {load_start}")
    if load_start and load_start[0] > 0.5 * machine["cores"]:
        log(f"WARNING: the machine is busy (load {load_start[0]} on {machine['cores']} cores): rates will be "
            "low and noisy, multi-threaded PyTorch especially")
    peaks = [run_task({"task": "peak", "quick": cfg.quick}, cfg.isolate, cfg.timeout_s)]
    log(f"matmul peak: {peaks[0]['peak_gflops']:.0f} GFLOP/s "
        + ", ".join(f"{k} {v:.0f}" for k, v in peaks[0]["detail"].items()))
    host_memory = available_memory_bytes()
    memory = (machine.get("device_memory_gb", 0) * 2**30 or None) if accelerator else host_memory
    plan = make_plan(cfg, accelerator, peaks[0]["peak_gflops"], memory, torch_ok, torch_on_acc, host_memory,
                     engine_splits=bool(meta.get("engine_splits_by_memory")))
    for s in plan.skipped:
        log(f"  {s['workload']:16s} N={s['n']:<6d} {s['contender']:11s} skipped: {s['reason']}")
    rounds = f" ({cfg.repeats} rounds, each record the median)" if cfg.repeats > 1 else ""
    log(f"{len(plan.tasks)} records to run{rounds}, about {plan.estimated_s / 60:.0f} min (a rough guess)")
    if dry_run:
        for t in plan.tasks:
            log(f"  {t['workload']:16s} N={t['n']:<6d} {t['contender']:11s} steps {t['steps']:<6d} "
                f"~{t['estimated_s']:.1f} s" + (f"  round {t['round'] + 1}" if cfg.repeats > 1 else ""))
        return {"plan": plan}

    samples: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    failed: list[dict[str, Any]] = []
    for task in plan.tasks:
        w, c, n = task["workload"], task["contender"], task["n"]
        round_ = f"  round {task['round'] + 1}" if cfg.repeats > 1 else ""
        try:
            rec = run_task({k: v for k, v in task.items() if k not in ("estimated_s", "round")}, cfg.isolate,
                           cfg.timeout_s)
        except (TaskFailed, MemoryError) as e:
            failed.append({"workload": w, "contender": c, "n": n, "error": str(e)} |
                          ({"round": task["round"]} if cfg.repeats > 1 else {}))
            log(f"  {w:16s} N={n:<6d} {c:11s} FAILED: {e}{round_}")
            continue
        samples.setdefault((w, c, n), []).append(rec)
        extra = f"  (timed {rec['n_timed']} of {n} models)" if rec.get("extrapolated") else ""
        if "wall_s" in rec:  # jaxnets_mixed / jaxnets_split: the rate is wall-inclusive
            extra += (f"  wall {rec['wall_s']:.2f} s, {rec['n_programs']} program(s), auto "
                      f"{'mixes' if rec['auto_mixes'] else 'splits'}")
        log(f"  {w:16s} N={n:<6d} {c:11s} {rec['model_steps_per_s']:12,.0f} model-steps/s  "
            f"compile {rec['compile_s']:5.2f} s  steps {rec['steps']}{extra}{round_}")
    records = [median_record(recs) for recs in samples.values()]
    peaks.append(run_task({"task": "peak", "quick": cfg.quick}, cfg.isolate, cfg.timeout_s))
    peak = max(p["peak_gflops"] for p in peaks)
    log(f"matmul peak (best of start and end): {peak:.0f} GFLOP/s")

    for rec in records:
        flops = WORKLOADS[rec["workload"]].flops_per_model_step()
        rec["gflops"] = rec["model_steps_per_s"] * flops / 1e9
        rec["peak_fraction"] = rec["gflops"] / peak
    records = [{**{k: rec[k] for k in RECORD_KEYS}, **{k: v for k, v in rec.items() if k not in RECORD_KEYS}}
               for rec in records]
    machine = {**machine, "load_avg_start": load_start, "load_avg_end": _load()}
    results = {
        "schema": SCHEMA,
        "machine": machine,
        "versions": meta["versions"],
        "date": meta["date"],
        "peak_gflops": peak,
        "peak": {"measurements": peaks, "how": "best float32 matmul rate of JAX / NumPy / PyTorch on square "
                                               "matrices, measured at the start and the end of the run"},
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()
                   if k != "out"} | {"ns": list(plan.ns)},
        "workloads": {w: {"description": WORKLOADS[w].description,
                          "flops_per_model_step": WORKLOADS[w].flops_per_model_step(),
                          "params_per_model": WORKLOADS[w].param_count(),
                          "batch_size": WORKLOADS[w].batch_size} for w in cfg.workloads},
        "records": records,
        "ratios": report.ratios(records),
        "skipped": plan.skipped,
        "failed": failed,
        "duration_s": time.perf_counter() - t_start,
    }
    out = Path(cfg.out) if cfg.out else RESULTS / f"{machine['name']}.json"
    report.write(results, out, plot=cfg.plot)
    log(f"wrote {out}, {out.with_suffix('.md')}" + (f", {out.with_suffix('.png')}" if cfg.plot else "")
        + f" in {results['duration_s'] / 60:.1f} min")
    return results
