"""Architectures as data (issue 27): the ``digits_mlp_archs`` workload, one mixed program vs one group per
architecture (benchmarks/README.md), outside the suite: several rounds in one process, any steps.

The grid hidden in {[16], [32], [64], [16, 16], [32, 32], [64, 64], [32, 32, 32], [64, 64, 64]} x activation
{relu, tanh} x seeds on digits (the workload's rows: :meth:`benchmarks.workloads.Workload.jaxnets_rows`),
trained with ``mix_architectures`` True and False (the suite's contenders ``jaxnets_mixed`` and
``jaxnets_split``, :func:`benchmarks.jax_contenders.run_jaxnets_mixed`), alternated, each from an empty program
cache: wall time (compile + train) of the whole call, its compile seconds, and what ``"auto"`` picks
(:func:`benchmarks.jax_contenders.auto_mixes`: ``engine.check`` builds the programs without compiling).
The suite measures the same, one record per process: ``python -m benchmarks --workloads digits_mlp_archs``.

    python -m benchmarks.architectures [--ns 32 128] [--steps 1000] [--rounds 2]

``--kinds`` checks the rule on the other kinds instead: an LSTM grid (hidden [8], [16], [32], [16, 16] on
digits_sequence) at 200 and 2000 steps and a CNN grid (channels [4, 8], [8, 16], [16, 32], [8, 8], dense [32]
on digits_image) at 100 and 1000 steps, 8 seeds each (N = 32), with the engine's defaults otherwise:

    python -m benchmarks.architectures --kinds
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from benchmarks.jax_contenders import auto_mixes, run_jaxnets_mixed, run_jaxnets_split
from benchmarks.workloads import WORKLOADS, load_data

WORKLOAD = WORKLOADS["digits_mlp_archs"]
HIDDEN = WORKLOAD.hiddens


def rows(n: int, steps: int) -> list[dict[str, Any]]:
    """The ``digits_mlp_archs`` grid's first ``n`` variants (variant ``i``: hidden ``HIDDEN[(i // 2) % 8]``,
    relu / tanh for ``i % 2``, seed ``i``), ``steps`` steps with one evaluation at the end."""
    return WORKLOAD.jaxnets_rows(n, steps=steps, eval_every=steps)


def auto_picks_mixing(n: int, steps: int) -> bool:
    """Whether ``mix_architectures="auto"`` trains :func:`rows` ``(n, steps)`` in one program."""
    return auto_mixes(rows(n, steps), load_data(WORKLOAD))


def measure(n: int, steps: int, mix: bool) -> dict[str, Any]:
    """The suite's record of ``jaxnets_mixed`` (``mix``) or ``jaxnets_split``: ``wall_s`` and ``compile_s`` of
    one ``engine.train`` call from an empty program cache, ``n_programs``, ``auto_mixes``, ..."""
    run = run_jaxnets_mixed if mix else run_jaxnets_split
    return run(WORKLOAD, n, steps, target_s=0.0)


#: ``--kinds``: (label, data set, rows of one seed, steps) per case; 8 seeds each.
KIND_GRIDS: tuple[tuple[str, str, list[dict[str, Any]], tuple[int, ...]], ...] = (
    ("LSTM [8], [16], [32], [16, 16]", "digits_sequence",
     [{"kind": "rnn", "cell": "lstm", "hidden": h} for h in ([8], [16], [32], [16, 16])], (200, 2000)),
    ("CNN [4, 8], [8, 16], [16, 32], [8, 8], dense [32]", "digits_image",
     [{"kind": "cnn", "hidden": h, "dense": [32]} for h in ([4, 8], [8, 16], [16, 32], [8, 8])], (100, 1000)),
)


def kinds() -> None:
    """Print, for each :data:`KIND_GRIDS` case, the mixed and the split call's wall and compile seconds (one
    ``engine.train`` each, from an empty program cache) and what ``"auto"`` picks."""
    from jaxnets import data, engine

    for label, name, grid, all_steps in KIND_GRIDS:
        ds = data.load(name)
        for steps in all_steps:
            vs = [{**row, "seed": s, "steps": steps} for row in grid for s in range(8)]
            auto = len(engine.check(vs, ds).programs) == 1
            figures = []
            for mix in (True, False):
                engine.clear_cache()
                t = time.perf_counter()
                result = engine.train(vs, ds, options=engine.Options(mix_architectures=mix))
                figures.append(f"{'mixed' if mix else 'split'} {time.perf_counter() - t:.1f} s "
                               f"({sum(g.compile_s for g in result.groups):.1f} s compiling, "
                               f"{len(result.groups)} program(s))")
            print(f"{label}, N={len(vs)}, {steps} steps: {'; '.join(figures)}; auto {'mixes' if auto else 'splits'}",
                  flush=True)


def main(argv: list[str] | None = None) -> None:
    """Print, per N, each round's wall and compile seconds of the mixed and the split call, and auto's pick."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ns", type=int, nargs="+", default=[32, 128])
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=2, help="mixed, split alternations per N (default 2)")
    p.add_argument("--kinds", action="store_true", help="check the rule on LSTM and CNN grids instead")
    args = p.parse_args(argv)
    if args.kinds:
        kinds()
        return
    print(f"digits_mlp_archs, {args.steps} steps")
    for n in args.ns:
        print(f"N={n}: 'auto' {'mixes' if auto_picks_mixing(n, args.steps) else 'splits'} this grid")
        for _ in range(args.rounds):
            for mix in (True, False):
                rec = measure(n, args.steps, mix)
                print(f"N={n} {'mixed' if mix else 'split'} ({rec['n_programs']} program"
                      f"{'s' * (rec['n_programs'] != 1)}): {rec['wall_s']:.1f} s wall, "
                      f"{rec['compile_s']:.1f} s compiling")


if __name__ == "__main__":
    main()
