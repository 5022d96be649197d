"""``python -m benchmarks``: run the benchmark suite and write benchmarks/results/<machine-name>.{json,md,png}."""

from __future__ import annotations

import argparse
import json
import sys

from benchmarks.suite import Config, quick_config, run
from benchmarks.worker import CONTENDERS
from benchmarks.workloads import WORKLOAD_NAMES


def _names(valid: tuple[str, ...], what: str):
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(t.strip() for t in text.split(",") if t.strip())
        bad = [n for n in names if n not in valid]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"unknown {what} {bad}; valid: {', '.join(valid)}")
        return names

    return parse


def _ints(text: str) -> tuple[int, ...]:
    try:
        ns = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from e
    if not ns or min(ns) < 1:
        raise argparse.ArgumentTypeError("N must be positive integers")
    return ns


def _option(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        parsed: object = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return key.strip(), parsed


def parse_args(argv: list[str] | None = None) -> tuple[Config, bool]:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark jaxnets' vectorized engine against one-at-a-time JAX (Python loop, lax.scan), "
                    "a hand-written jit(vmap(scan)) of N models of one activation (jax_vmap) and PyTorch (loop, "
                    "torch.func ensembles) on its workloads (one of them a user's own NNX model, user_cnn) and "
                    "N = 1..1024 models (more on an accelerator); and, on digits_mlp_archs (MLPs of eight "
                    "architectures), one engine call mixing them in one program (jaxnets_mixed) against one "
                    "program per architecture (jaxnets_split), wall time with compilation. "
                    "Writes JSON, Markdown and a plot.")
    p.add_argument("--quick", action="store_true",
                   help="tiny run (N = 1, 8; ~0.1 s measurements; JAX records in this process, PyTorch ones "
                        "in their own): two to three minutes, mostly compilation")
    p.add_argument("--workloads", type=_names(WORKLOAD_NAMES, "workload"),
                   help=f"comma-separated subset of {', '.join(WORKLOAD_NAMES)}")
    p.add_argument("--contenders", type=_names(CONTENDERS, "contender"),
                   help=f"comma-separated subset of {', '.join(CONTENDERS)} (jaxnets_mixed and jaxnets_split "
                        "run only digits_mlp_archs, which runs only them)")
    p.add_argument("--ns", type=_ints, help="comma-separated numbers of models (default 1,8,64,256,1024 on CPU, "
                                            "up to 16384 on an accelerator)")
    p.add_argument("--out", help="results JSON path (default benchmarks/results/<machine-name>.json; the .md "
                                 "and .png go beside it)")
    p.add_argument("--target-s", type=float, help="seconds per measurement (default 1.0; --quick 0.1)")
    p.add_argument("--steps", type=int, help="fixed steps per model for every record (default: sized per "
                                             "workload and N from the measured peak to take about --target-s)")
    p.add_argument("--max-record-s", type=float, help="skip records estimated to take longer (default 180)")
    p.add_argument("--timeout-s", type=float, help="kill a record's worker after this long (default 900)")
    iso = p.add_mutually_exclusive_group()
    iso.add_argument("--isolate", dest="isolate", action="store_const", const="all", default=None,
                     help="one fresh process per record, so peak RSS is per record (default; --quick isolates "
                          "only the PyTorch records)")
    iso.add_argument("--in-process", dest="isolate", action="store_const", const="none",
                     help="run everything in this process (faster; peak RSS is then the process's so far; "
                          "PyTorch next to XLA's threads can stall)")
    p.add_argument("--torch-threads", type=int,
                   help="torch.set_num_threads for the PyTorch contenders (default: the number of cores; on a "
                        "busy shared machine 1 avoids OpenMP stalls)")
    p.add_argument("--engine-option", action="append", default=[], metavar="KEY=VALUE", type=_option,
                   help="extra jaxnets.engine.Options field for the engine's contenders (jaxnets, jaxnets_mixed, "
                        "jaxnets_split; the latter two set mix_architectures themselves), e.g. "
                        "max_variants_per_program=32 or loop=scan (repeatable; default: the engine as users get "
                        "it)")
    p.add_argument("--repeats", type=int, help="rounds of every (workload, N)'s contenders, interleaved; each "
                                               "record is then the median of its rounds (default 1)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG plot")
    p.add_argument("--plan", action="store_true",
                   help="measure the matmul peak, print the plan (steps, skips, estimated time) and stop")
    a = p.parse_args(argv)
    overrides = {k: v for k, v in {
        "workloads": a.workloads, "contenders": a.contenders, "ns": a.ns, "out": a.out, "target_s": a.target_s,
        "steps": a.steps, "max_record_s": a.max_record_s, "timeout_s": a.timeout_s, "isolate": a.isolate,
        "torch_threads": a.torch_threads, "engine_options": dict(a.engine_option) or None, "repeats": a.repeats,
    }.items() if v is not None}
    if a.repeats is not None and a.repeats < 1:
        p.error(f"--repeats must be at least 1, got {a.repeats}")
    overrides["plot"] = not a.no_plot
    return (quick_config(**overrides) if a.quick else Config(**overrides)), a.plan


def main(argv: list[str] | None = None) -> int:
    cfg, dry_run = parse_args(argv)
    run(cfg, dry_run=dry_run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
