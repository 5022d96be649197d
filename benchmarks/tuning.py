"""What each field of the engine's CPU tuning buys: an A/B of ``jaxnets.engine.CPU_TUNING`` against the same
record with one field switched off, on the workloads the field is for.

Every measurement is one ``engine.train`` call (the suite's jaxnets call: ``2 * chunk`` steps, an evaluation
every ``chunk``) in a fresh process (no compiled program carries over), the arms alternating A, B, A, B ...
for ``--rounds`` rounds; the table shows each arm's median wall time (compile included), compile time and
model-steps/s, and B's wall time over A's (above 1: the field helps)::

    JAXNETS_COMPILE_CACHE=0 python -m benchmarks.tuning                 # every field, 3 rounds
    python -m benchmarks.tuning --fields block_bytes --rounds 5 --n 64

A field earns its place in ``Tuning`` with a gain of 10 % or more of some workload's wall time
(benchmarks/README.md, "Tuning"); run this on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from typing import Any

#: Each field, its "off" value and the workloads (and N) it was added for.
FIELDS: dict[str, tuple[Any, tuple[tuple[str, int], ...]]] = {
    "compiler_options": ({}, (("wine_mlp", 64), ("digits_mlp", 64), ("digits_cnn", 64), ("adding_lstm", 64))),
    "small_init_params": (-1, (("wine_mlp", 64), ("digits_cnn", 64), ("adding_lstm", 64))),
    "small_eval_bytes": (-1, (("wine_mlp", 64), ("wine_mlp_9act", 64))),
    "flat_optimizer_params": (0, (("wine_mlp", 64), ("digits_cnn", 64), ("adding_lstm", 8), ("adding_lstm", 64))),
    "block_bytes": (0, (("digits_mlp", 64), ("digits_cnn", 64), ("digits_mlp", 256), ("digits_mlp_wide", 8))),
    "small_kernel_dot": (False, (("wine_mlp", 64), ("digits_mlp", 64))),
    "conv_impl": ("xla", (("digits_cnn", 64),)),
}

#: Steps between evaluations per workload (a measurement runs two such chunks).
CHUNKS = {"wine_mlp": 2000, "wine_mlp_9act": 2000, "digits_mlp": 200, "digits_cnn": 200, "adding_lstm": 100,
          "digits_mlp_wide": 20}


def measure(workload: str, n: int, field: str | None) -> dict[str, Any]:
    """One ``engine.train`` call of ``workload`` at ``n`` variants, ``field`` off (``None``: the tuning as
    shipped), in this process."""
    import dataclasses

    from benchmarks.jax_contenders import N_EVAL_TRAIN
    from benchmarks.workloads import WORKLOADS, load_data
    from jaxnets import engine

    tuning = engine.CPU_TUNING if field is None else dataclasses.replace(engine.CPU_TUNING, **{field: FIELDS[field][0]})
    wl = WORKLOADS[workload]
    chunk = CHUNKS[workload]
    result = engine.train(wl.jaxnets_rows(n, steps=2 * chunk, eval_every=chunk), load_data(wl),
                          options=engine.Options(n_eval_train=N_EVAL_TRAIN, tuning=tuning))
    g = result.groups[0]
    return {"workload": workload, "n": n, "field": field, "wall_s": g.wall_s, "compile_s": g.compile_s,
            "model_steps_per_s": g.model_steps / g.run_s, "n_blocks": g.n_blocks}


def _fresh(workload: str, n: int, field: str | None) -> dict[str, Any]:
    code = (f"import json; from benchmarks.tuning import measure; "
            f"print(json.dumps(measure({workload!r}, {n}, {field!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "JAXNETS_COMPILE_CACHE": "0"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Run the A/B and print the table (and write ``--out`` JSON)."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.tuning", description=__doc__.split("\n\n")[0])
    ap.add_argument("--fields", default=",".join(FIELDS), help=f"comma-separated subset of {', '.join(FIELDS)}")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=None, help="only this number of variants")
    ap.add_argument("--out", default=None, help="JSON file for every measurement")
    args = ap.parse_args(argv)
    records = []
    for field in args.fields.split(","):
        for workload, n in FIELDS[field][1]:
            if args.n is not None and n != args.n:
                continue
            arms: dict[str, list[dict[str, Any]]] = {"A": [], "B": []}
            for _ in range(args.rounds):
                arms["A"].append(_fresh(workload, n, None))
                arms["B"].append(_fresh(workload, n, field))
            records += arms["A"] + arms["B"]
            med = {a: {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "compile_s", "model_steps_per_s")}
                   for a, rs in arms.items()}
            print(f"{field:18s} {workload:16s} N={n:<4d} A wall {med['A']['wall_s']:6.2f} s compile "
                  f"{med['A']['compile_s']:5.2f} s {med['A']['model_steps_per_s']:9.0f}/s | B wall "
                  f"{med['B']['wall_s']:6.2f} s compile {med['B']['compile_s']:5.2f} s "
                  f"{med['B']['model_steps_per_s']:9.0f}/s | B/A wall {med['B']['wall_s'] / med['A']['wall_s']:.2f}",
                  flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(records, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
