"""What the numbers were measured on: machine, device, library versions; and the matmul peak.

:func:`info` and :func:`measure_peak` import JAX (and PyTorch when installed), so the suite runs them in a
worker process, never in the orchestrating one (which must not grab a GPU).
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import re
import sys
import time
from typing import Any


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_isa() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return sorted(f for f in flags if f in ("avx", "avx2", "fma", "avx512f", "avx512_bf16",
                                                              "amx_tile", "amx_bf16"))
    except OSError:
        pass
    return []


def _cpu_family() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line and line.strip())
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        return f"family {fields.get('cpu family')} model {fields.get('model')} stepping {fields.get('stepping')}"
    except (OSError, ValueError):
        return None


def _memory_gb() -> float | None:
    try:
        import psutil

        return round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        try:
            return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
        except (ValueError, OSError):
            return None


def available_memory_bytes() -> float | None:
    """Host memory available now (psutil, else /proc/meminfo)."""
    try:
        import psutil

        return float(psutil.virtual_memory().available)
    except ImportError:
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return float(line.split()[1]) * 1024
        except OSError:
            pass
    return None


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def machine_name(m: dict[str, Any]) -> str:
    """``cpu-<cpu model>-<cores>core`` on a CPU host (e.g. ``cpu-intel-xeon-processor-2core``: the same core
    count on another CPU model gives other figures), else a slug of the accelerator name (``-x<count>`` if
    several)."""
    if m["platform"] == "cpu":
        model = slug(re.sub(r"\((r|tm)\)", "", m.get("cpu_model") or "", flags=re.I))
        return f"cpu-{model}-{m['cores']}core" if model else f"cpu-{m['cores']}core"
    name = slug(m["device_kind"])
    return name if m["device_count"] == 1 else f"{name}-x{m['device_count']}"


def info() -> dict[str, Any]:
    """Machine and versions; imports JAX (initializes its default backend)."""
    import jax

    devices = jax.devices()
    machine = {
        "cpu_model": _cpu_model(),
        "cpu_family": _cpu_family(),
        "cpu_isa": _cpu_isa(),
        "cores": cores(),
        "memory_gb": _memory_gb(),
        "platform": devices[0].platform,
        "device_kind": devices[0].device_kind,
        "device_count": len(devices),
        "os": platform.platform(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
    if devices[0].platform != "cpu":
        stats = devices[0].memory_stats() or {}
        if "bytes_limit" in stats:
            machine["device_memory_gb"] = round(stats["bytes_limit"] / 2**30, 1)
    machine["name"] = machine_name(machine)
    versions = {"python": sys.version.split()[0]}
    for dist in ("jax", "jaxlib", "flax", "optax", "numpy", "torch", "jaxnets"):
        versions[dist] = _version(dist)
    try:  # the working tree may not be pip-installed
        import jaxnets

        versions["jaxnets"] = versions["jaxnets"] or getattr(jaxnets, "__version__", None)
    except ImportError:
        pass
    if versions["torch"] is None:
        try:
            import torch

            versions["torch"] = torch.__version__
        except ImportError:
            pass
    try:  # does the engine split a group that does not fit in memory by itself?
        from jaxnets import engine

        auto_split = "memory_budget_bytes" in getattr(engine.Options, "__dataclass_fields__", {})
    except ImportError:
        auto_split = False
    return {"machine": machine, "versions": versions, "engine_splits_by_memory": auto_split,
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}


def _best_time(fn, reps: int, min_s: float = 0.3) -> float:
    """Best wall time of ``fn()`` over ``reps`` repetitions (at least ``min_s`` spent in total)."""
    fn()
    best, spent, i = float("inf"), 0.0, 0
    while i < reps or spent < min_s:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best, spent, i = min(best, dt), spent + dt, i + 1
        if i >= 50 * reps:
            break
    return best


def measure_peak(quick: bool = False) -> dict[str, Any]:
    """The best float32 matmul rate (GFLOP/s) on the device JAX uses, from a few square sizes.

    On a CPU host: JAX (XLA's CPU dot), NumPy (its BLAS) and PyTorch (when installed, with one thread per
    core); the peak is the best of all. On an accelerator: JAX at its default matmul precision (the one the
    models train with; on NVIDIA GPUs that allows TF32) and, for reference, at ``HIGHEST`` precision; the
    peak is the default-precision figure.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    on_cpu = jax.devices()[0].platform == "cpu"
    sizes = ((1024,) if quick else (1024, 2048)) if on_cpu else ((4096,) if quick else (4096, 8192))
    reps = 3 if quick else 5
    detail: dict[str, float] = {}

    def record(key: str, n: int, seconds: float) -> None:
        detail[key] = max(detail.get(key, 0.0), 2.0 * n**3 / seconds / 1e9)

    rng = np.random.default_rng(0)
    for n in sizes:
        a_np = rng.standard_normal((n, n), dtype=np.float32)
        b_np = rng.standard_normal((n, n), dtype=np.float32)
        a, b = jnp.asarray(a_np), jnp.asarray(b_np)
        mm = jax.jit(jnp.matmul)
        min_s = 0.05 if quick else 0.3
        record("jax", n, _best_time(lambda: mm(a, b).block_until_ready(), reps, min_s))  # noqa: B023
        if not on_cpu:
            hi = jax.jit(lambda x, y: jnp.matmul(x, y, precision=jax.lax.Precision.HIGHEST))
            record("jax_highest", n, _best_time(lambda: hi(a, b).block_until_ready(), reps, min_s))  # noqa: B023
        if on_cpu:
            record("numpy", n, _best_time(lambda: a_np @ b_np, reps, min_s))  # noqa: B023
            try:
                import torch

                torch.set_num_threads(cores())
                at, bt = torch.from_numpy(a_np), torch.from_numpy(b_np)
                record("torch", n, _best_time(lambda: at @ bt, reps, min_s))  # noqa: B023
            except ImportError:
                pass
    keys = ("jax", "numpy", "torch") if on_cpu else ("jax",)
    peak = max(detail[k] for k in keys if k in detail)
    return {"peak_gflops": peak, "detail": detail, "sizes": list(sizes)}
