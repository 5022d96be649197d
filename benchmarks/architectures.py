"""Architectures as data (issue 27): the ``digits_mlp_archs`` workload, one mixed program vs one group per
architecture (benchmarks/README.md).

The grid hidden in {[16], [32], [64], [16, 16], [32, 32], [64, 64], [32, 32, 32], [64, 64, 64]} x activation
{relu, tanh} x seeds on digits (N = 16 x seeds variants), trained with ``mix_architectures`` True and False,
alternated, each from an empty program cache: wall time (compile + train) of the whole call, its compile
seconds, and what ``"auto"`` picks (:func:`jaxnets.architectures.worth_mixing`).

    python -m benchmarks.architectures [--ns 32 128] [--steps 1000]
"""

from __future__ import annotations

import argparse
import time

from jaxnets import architectures, data, engine

HIDDEN = ((16,), (32,), (64,), (16, 16), (32, 32), (64, 64), (32, 32, 32), (64, 64, 64))


def rows(n: int, steps: int) -> list[dict]:
    """The ``digits_mlp_archs`` grid with ``n // 16`` seeds (n a multiple of 16)."""
    return [{"hidden": h, "activation": a, "seed": s, "steps": steps}
            for h in HIDDEN for a in ("relu", "tanh") for s in range(n // 16)]


def measure(rs: list[dict], ds, mix: bool) -> tuple[float, float]:
    """``(wall seconds, compile seconds)`` of one ``engine.train`` call from an empty program cache."""
    engine.clear_cache()
    t = time.perf_counter()
    result = engine.train(rs, ds, options=engine.Options(mix_architectures=mix))
    return time.perf_counter() - t, sum(g.compile_s for g in result.groups)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ns", type=int, nargs="+", default=[32, 128])
    p.add_argument("--steps", type=int, default=1000)
    args = p.parse_args()
    ds = data.load("digits")
    auto = architectures.worth_mixing(HIDDEN, 64, 10)
    print(f"digits_mlp_archs, {args.steps} steps; 'auto' {'mixes' if auto else 'splits'} this grid")
    for n in args.ns:
        rs = rows(n, args.steps)
        for mix in (True, False, True, False):
            wall, compile_s = measure(rs, ds, mix)
            print(f"N={n} {'mixed (1 program)' if mix else 'split (8 programs)'}: {wall:.1f} s wall, "
                  f"{compile_s:.1f} s compiling")


if __name__ == "__main__":
    main()
