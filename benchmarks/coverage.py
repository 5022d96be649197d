"""Rounds that mix activations and stages differently (a Bayesian search's), with and without a coverage
(``engine.Options(cover=...)``, benchmarks/README.md).

Draws ``--rounds`` rounds of ``--batch`` digits MLPs (hidden [32]; activation from tanh / relu / gelu / elu,
dropout 0 or 0.2, log-uniform learning rate, seeded), as a Bayesian search's rounds ask for them, and trains
them one ``engine.train`` call per round, from an empty program cache, twice: each round compiled for its own
mix (no coverage: a new program whenever the mix or the activation counts change) and compiled for the
search's coverage (one program). Prints the total wall and compile seconds of each way.

    python -m benchmarks.coverage [--rounds 5] [--batch 8] [--steps 100]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

ACTIVATIONS = ("tanh", "relu", "gelu", "elu")


def rounds(n_rounds: int, batch: int, steps: int, seed: int = 0) -> list[list[dict[str, Any]]]:
    """The rounds' rows (seeded)."""
    rng = np.random.default_rng(seed)
    return [[{"hidden": [32], "activation": str(rng.choice(ACTIVATIONS)), "dropout": float(rng.choice([0.0, 0.2])),
              "learning_rate": float(10 ** rng.uniform(-4, -1)), "seed": r * batch + i, "steps": steps,
              "eval_every": max(steps // 2, 1)} for i in range(batch)] for r in range(n_rounds)]


def measure(all_rows: list[list[dict[str, Any]]], cover: Any) -> tuple[float, float]:
    """``(wall seconds, compile seconds)`` of training every round, one call each, from an empty cache."""
    from jaxnets import data, engine

    ds = data.load("digits")
    engine.clear_cache()
    wall = compile_s = 0.0
    for rows in all_rows:
        t = time.perf_counter()
        result = engine.train(rows, ds, options=engine.Options(cover=cover))
        wall += time.perf_counter() - t
        compile_s += sum(g.compile_s for g in result.groups)
    return wall, compile_s


def main(argv: list[str] | None = None) -> None:
    """Print each way's total wall and compile seconds."""
    from jaxnets import engine

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=100)
    args = p.parse_args(argv)
    all_rows = rounds(args.rounds, args.batch, args.steps)
    cover = engine.Coverage(activations=ACTIVATIONS, dropout=True)
    for label, c in (("own mix per round", None), ("covered", cover), ("own mix per round", None),
                     ("covered", cover)):
        wall, compile_s = measure(all_rows, c)
        print(f"{args.rounds} rounds of {args.batch}, {args.steps} steps, {label}: {wall:.2f} s wall, "
              f"{compile_s:.2f} s compiling", flush=True)


if __name__ == "__main__":
    main()
