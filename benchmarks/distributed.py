"""Scaling over processes: one group of ``digits_mlp`` variants, 1 process vs 2 processes on this machine.

``python -m benchmarks.distributed`` trains the same ``N`` variants (default 256, one static group) as

* 1 process x 1 CPU device (the baseline),
* 1 process x 2 CPU devices (emulated, for comparison: the same devices without the distributed runtime),
* 2 processes x 1 CPU device, on JAX's distributed runtime over 127.0.0.1 (:func:`jaxnets.launch.initialize`),

each in fresh subprocesses: one untimed run (compilation), then the best of ``--reps`` timed runs. It reports
model-steps/s (``N * steps`` over the wall time of ``engine.train``, every evaluation's fetch included) and the
time the engine spends fetching results to the host per evaluation (:func:`jaxnets.engine.transfer.to_host`:
``jax.device_get`` in one process, an all-gather over the processes with several), measured on arrays that are
already computed.
The figures go to ``benchmarks/results/distributed-<cpu>.json`` (e.g. ``cpu-intel-xeon-processor-2core``) with
the machine's load average, since a busy machine slows every run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
SETUPS = ((1, 1), (1, 2), (2, 1))  # (processes, devices per process)


def _worker(args: argparse.Namespace) -> None:
    """One process of one setup: train twice untimed-then-timed, print one ``RESULT {json}`` line."""
    if args.processes > 1:
        from jaxnets import launch

        launch.initialize(launch.Setup(f"127.0.0.1:{args.port}", args.processes, args.process_id))
    import jax
    import numpy as np

    from benchmarks.workloads import WORKLOADS, load_data
    from jaxnets import engine
    from jaxnets.engine import loop as engine_loop

    wl = WORKLOADS[args.workload]
    ds = load_data(wl)
    rows = wl.jaxnets_rows(args.n, steps=args.steps, eval_every=args.eval_every)
    engine.train(rows, ds)  # compiles; the timed runs reuse the compiled programs
    # the training loop's own name for jaxnets.engine.transfer.to_host (it imports the function): timing it there
    # times every fetch of a train call
    fetch = engine_loop.to_host
    calls: list[tuple[str, float, int]] = []
    last: dict[str, Any] = {}

    def timed(tree: Any) -> Any:
        jax.block_until_ready(tree)  # time the transfer, not this process's computation it would wait for
        if isinstance(tree, dict):
            last["metrics"] = tree
        t = time.perf_counter()
        out = fetch(tree)
        calls.append(("metrics" if isinstance(tree, dict) else "final", time.perf_counter() - t,
                      sum(int(np.asarray(x).nbytes) for x in jax.tree.leaves(out) if hasattr(x, "nbytes"))))
        return out

    engine_loop.to_host = timed
    walls, per_call = [], []
    try:
        for _ in range(args.reps):
            calls.clear()
            t = time.perf_counter()
            result = engine.train(rows, ds)
            walls.append(time.perf_counter() - t)
            per_call.append(list(calls))
    finally:
        engine_loop.to_host = fetch
    # The fetches above also wait for the slowest process's computation; the gathering itself, on arrays every
    # process has computed: the same metrics fetched again and again (each call synchronizes the processes).
    fetch(last["metrics"])
    t = time.perf_counter()
    for _ in range(args.fetch_reps):
        fetch(last["metrics"])
    fetch_alone = (time.perf_counter() - t) / args.fetch_reps
    best = int(np.argmin(walls))
    metrics = [c for c in per_call[best] if c[0] == "metrics"]
    final = [c for c in per_call[best] if c[0] == "final"]
    n_blocks = int(sum(g.n_blocks for g in result.groups))
    n_evals = len(metrics) // max(n_blocks, 1)
    record = {
        "process_id": jax.process_index(), "processes": jax.process_count(), "devices": jax.device_count(),
        "local_devices": jax.local_device_count(), "wall_s": walls[best], "walls_s": walls,
        "model_steps_per_s": args.n * args.steps / walls[best], "n_blocks": n_blocks, "n_evals": n_evals,
        "fetch_metrics_s_per_call": float(np.mean([c[1] for c in metrics])) if metrics else None,
        "fetch_metrics_s_per_eval": float(sum(c[1] for c in metrics)) / max(n_evals, 1),
        "gather_s_per_call": fetch_alone, "gather_s_per_eval": fetch_alone * n_blocks,
        "fetch_metrics_bytes_per_call": metrics[0][2] if metrics else None,
        "fetch_final_s": float(sum(c[1] for c in final)), "fetch_total_s": float(sum(c[1] for c in per_call[best])),
        "status_ok": int(np.sum(result.columns()["status"] == "ok")),
    }
    print("RESULT " + json.dumps(record), flush=True)


def _free_port() -> int:
    from jaxnets.launch import free_port

    return free_port()


def _run_setup(processes: int, devices: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env.pop("JAX_NUM_CPU_DEVICES", None)
    env.setdefault("JAXNETS_COMPILE_CACHE", "0")
    port = str(_free_port())
    argv = [sys.executable, "-m", "benchmarks.distributed", "--worker", "--processes", str(processes),
            "--port", port, "--n", str(args.n), "--steps", str(args.steps), "--eval-every", str(args.eval_every),
            "--reps", str(args.reps), "--fetch-reps", str(args.fetch_reps), "--workload", args.workload]
    procs = [subprocess.Popen([*argv, "--process-id", str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for i in range(processes)]
    try:
        outs = [p.communicate(timeout=args.timeout) for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait()
    records = []
    for i, (p, (stdout, stderr)) in enumerate(zip(procs, outs, strict=True)):
        lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
        if p.returncode != 0 or not lines:
            raise RuntimeError(f"{processes} x {devices}: process {i} failed ({p.returncode}):\n{stderr[-3000:]}")
        records.append(json.loads(lines[-1][len("RESULT "):]))
    return records


def main(argv: list[str] | None = None) -> int:
    """Run the three setups and write the results JSON; returns the exit code."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.distributed", description=__doc__.splitlines()[0])
    p.add_argument("--workload", default="digits_mlp")
    p.add_argument("--n", type=int, default=256, help="variants (one static group)")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--reps", type=int, default=2, help="timed runs per setup (the best counts)")
    p.add_argument("--fetch-reps", type=int, default=50, help="repeated fetches of computed metrics")
    p.add_argument("--timeout", type=float, default=900, help="seconds per setup")
    p.add_argument("--out", type=Path, default=None, help="results JSON (default benchmarks/results/...)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--processes", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--process-id", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        _worker(args)
        return 0

    from benchmarks.machine import _cpu_model, cores, slug

    name = f"cpu-{slug(re.sub(r'[(](R|TM)[)]', '', _cpu_model()))}-{cores()}core"  # cpu-intel-xeon-processor-2core
    load_start = os.getloadavg()
    t0 = time.perf_counter()
    runs = []
    for processes, devices in SETUPS:
        records = _run_setup(processes, devices, args)
        slowest = max(records, key=lambda r: r["wall_s"])
        runs.append({"processes": processes, "devices_per_process": devices, "records": records,
                     "wall_s": slowest["wall_s"], "model_steps_per_s": args.n * args.steps / slowest["wall_s"],
                     "fetch_metrics_ms_per_eval": 1e3 * max(r["fetch_metrics_s_per_eval"] for r in records),
                     "fetch_metrics_ms_per_call": 1e3 * max(r["fetch_metrics_s_per_call"] for r in records),
                     "gather_ms_per_call": 1e3 * max(r["gather_s_per_call"] for r in records),
                     "gather_ms_per_eval": 1e3 * max(r["gather_s_per_eval"] for r in records),
                     "n_blocks": records[0]["n_blocks"], "n_evals": records[0]["n_evals"]})
        print(f"{processes} process(es) x {devices} device(s): {runs[-1]['model_steps_per_s']:,.0f} model-steps/s "
              f"(wall {slowest['wall_s']:.2f} s, {records[0]['n_blocks']} block(s)); per evaluation: fetch "
              f"{runs[-1]['fetch_metrics_ms_per_eval']:.1f} ms in training, {runs[-1]['gather_ms_per_eval']:.1f} ms "
              f"alone ({runs[-1]['gather_ms_per_call']:.2f} ms per block)", flush=True)
    base = runs[0]
    speedup = {f"{r['processes']}x{r['devices_per_process']}": r["model_steps_per_s"] / base["model_steps_per_s"]
               for r in runs}
    two = next(r for r in runs if r["processes"] == 2)
    one_dev = {(r["processes"], r["devices_per_process"]): r for r in runs}[(1, 1)]
    overhead = {  # 2 processes x 1 device vs 1 process x 1 device, per evaluation (all blocks)
        "gather_alone_ms_per_eval": two["gather_ms_per_eval"] - one_dev["gather_ms_per_eval"],
        "gather_alone_ms_per_block": two["gather_ms_per_call"] - one_dev["gather_ms_per_call"],
        "fetch_in_training_ms_per_eval": two["fetch_metrics_ms_per_eval"] - one_dev["fetch_metrics_ms_per_eval"],
    }
    load_end = os.getloadavg()
    doc = {
        "schema": "jaxnets-distributed-bench/1",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"name": name, "cores": cores(), "load_avg_start": [round(x, 2) for x in load_start],
                    "load_avg_end": [round(x, 2) for x in load_end],
                    "busy": max(load_start[0], load_end[0]) > cores()},
        "workload": args.workload, "n_variants": args.n, "steps": args.steps, "eval_every": args.eval_every,
        "reps": args.reps, "runs": runs, "speedup_vs_1x1": speedup,
        "multi_process_fetch_overhead": overhead,
        "notes": "fetch in training: jaxnets.engine.transfer.to_host after each evaluation, arrays computed on "
                 "this process "
                 "(with several processes it also waits for the slowest one); alone: the same fetch repeated "
                 "on computed arrays (the all-gather itself). busy: load average above the core count.",
        "duration_s": time.perf_counter() - t0,
    }
    out = args.out or RESULTS / f"distributed-{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print("speedup vs 1x1: " + ", ".join(f"{k} {v:.2f}x" for k, v in speedup.items()))
    print(f"multi-process gathering per evaluation vs device_get: +{overhead['gather_alone_ms_per_eval']:.1f} ms "
          f"(+{overhead['gather_alone_ms_per_block']:.2f} ms per block); in training (waits for the slower "
          f"process too) +{overhead['fetch_in_training_ms_per_eval']:.1f} ms "
          f"(load average {load_start[0]:.1f} -> {load_end[0]:.1f} on {cores()} cores)")
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
