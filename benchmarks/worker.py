"""Run one benchmark task; by default in a fresh process (``python -m benchmarks.worker TASK.json OUT.json``).

Tasks: ``{"task": "info"}``, ``{"task": "peak", "quick": bool}``, and ``{"task": "record", "workload",
"contender", "n", "steps", "target_s"}`` (a contender runs as ``run_<contender>`` of
:mod:`benchmarks.torch_contenders` or :mod:`benchmarks.jax_contenders`). A record's ``peak_rss_mb`` is the
worker process's peak resident set size (``VmHWM``; see :func:`_rss_mb`), so with one process per record it
is that record's peak, libraries included; ``baseline_rss_mb`` is the same figure just before the contender
started (interpreter, JAX / PyTorch and the data loaded), so ``peak_rss_mb - baseline_rss_mb`` is what the
training itself added.
On an accelerator ``peak_device_mb`` is the device allocator's peak.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any

from benchmarks.workloads import ARCHITECTURE_CONTENDERS

#: Every contender; ``jaxnets_mixed`` and ``jaxnets_split`` (:data:`ARCHITECTURE_CONTENDERS`) run only the
#: workloads that name them (``digits_mlp_archs``).
CONTENDERS: tuple[str, ...] = ("jaxnets", "jax_loop", "jax_scan", "jax_vmap", "torch_loop", "torch_func",
                               *ARCHITECTURE_CONTENDERS)
TORCH_CONTENDERS: tuple[str, ...] = ("torch_loop", "torch_func")


def _rss_mb() -> float:
    """This process's peak resident set size so far, in MiB.

    Linux: ``VmHWM`` from /proc/self/status (the high-water mark of this process's own memory map).
    ``getrusage``'s ``ru_maxrss`` would be wrong in a worker: Linux carries the parent's peak over
    ``fork`` + ``exec``, so a worker started by a big parent would report the parent's peak.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024 if sys.platform != "darwin" else r / 2**20  # KiB on Linux, bytes on macOS


def _contender(name: str):
    if name in TORCH_CONTENDERS:
        from benchmarks import torch_contenders as m
    else:
        from benchmarks import jax_contenders as m
    return getattr(m, f"run_{name}")


def _device_peak_mb() -> float | None:
    import jax

    d = jax.devices()[0]
    if d.platform == "cpu":
        return None
    stats = d.memory_stats() or {}
    return stats["peak_bytes_in_use"] / 2**20 if "peak_bytes_in_use" in stats else None


def run_record(task: dict[str, Any]) -> dict[str, Any]:
    from benchmarks.workloads import WORKLOADS, load_data

    wl = WORKLOADS[task["workload"]]
    fn = _contender(task["contender"])
    load_data(wl)  # warm the data set (and the import of its loader) outside the measurement
    if task["contender"] in TORCH_CONTENDERS:  # the library is part of the baseline, not of the training
        import torch

        torch.zeros(1)
    else:
        import jax

        jax.devices()
    baseline = _rss_mb()
    t0 = time.perf_counter()
    out = fn(wl, task["n"], task["steps"], task["target_s"], torch_threads=task.get("torch_threads"),
             engine_options=task.get("engine_options") or {}, subtract_eval=task.get("subtract_eval", True))
    out.update(
        workload=wl.name,
        contender=task["contender"],
        n=task["n"],
        record_wall_s=time.perf_counter() - t0,
        peak_rss_mb=_rss_mb(),
        baseline_rss_mb=baseline,
    )
    if task["contender"] not in TORCH_CONTENDERS:
        import jax

        out["device"] = jax.devices()[0].platform
        out["peak_device_mb"] = _device_peak_mb()
    elif out.get("device") == "cuda":
        import torch

        out["peak_device_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def execute(task: dict[str, Any]) -> dict[str, Any]:
    kind = task["task"]
    if kind == "info":
        from benchmarks.machine import info

        return info()
    if kind == "peak":
        from benchmarks.machine import measure_peak

        return measure_peak(quick=task.get("quick", False))
    if kind == "record":
        return run_record(task)
    raise ValueError(f"unknown task {kind!r}")


def main(argv: list[str]) -> int:
    task_path, out_path = argv
    with open(task_path) as f:
        task = json.load(f)
    result = execute(task)
    with open(out_path, "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
