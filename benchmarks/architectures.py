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
"""

from __future__ import annotations

import argparse
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


def main(argv: list[str] | None = None) -> None:
    """Print, per N, each round's wall and compile seconds of the mixed and the split call, and auto's pick."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ns", type=int, nargs="+", default=[32, 128])
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=2, help="mixed, split alternations per N (default 2)")
    args = p.parse_args(argv)
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
