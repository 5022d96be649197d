"""ASHA vs. training every variant fully, and PBT vs. fixed hyperparameters, on digits (a script, not a test).

Setup: a 243-variant random search (seed 0) over the learning rate (log-uniform 1e-4 .. 1), the initializer
and the activation; MLP 2x64, Adam, batch 128, ``--steps`` steps (default 729), evaluations every 27 steps.
ASHA: eta 3, first rung 27 steps (rungs 27, 81, 243). PBT: 32 variants, SGD with momentum (where a
learning-rate schedule matters), interval 3, against the same 32 initial variants with fixed
hyperparameters and the same steps (equal compute).

Usage::

    python -m benchmarks.population [--steps 729] [--trials 243]

Writes ``benchmarks/results/population-<machine>.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks import machine
from jaxnets import data, engine, population, sweep
from jaxnets.config import Axis


def _rows(trials: int, steps: int, **extra) -> list[dict]:
    axes = (Axis("learning_rate", low=1e-4, high=1.0, log=True),
            Axis("init", values=("uniform", "glorot_uniform", "he_normal")),
            Axis("activation", values=("tanh", "relu", "gelu")))
    base = {"hidden": (64, 64), "steps": steps, "eval_every": 27, "batch_size": 128, **extra}
    return [{**base, **p} for p in sweep.random_points(axes, trials, 0)]


def _timed(fn):
    t = time.perf_counter()
    r = fn()
    return r, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=729)
    ap.add_argument("--trials", type=int, default=243)
    args = ap.parse_args()
    ds = data.load("digits")
    rows = _rows(args.trials, args.steps)
    full, full_s = _timed(lambda: engine.train(rows, ds))
    asha, asha_s = _timed(lambda: engine.train(rows, ds, policy=population.ASHA(min_steps=27, eta=3)))
    pbt_rows = _rows(32, args.steps, optimizer="momentum")
    fixed, fixed_s = _timed(lambda: engine.train(pbt_rows, ds))
    pol = population.PBT(interval=3, spaces={"learning_rate": ("range", 1e-4, 1.0, True)}, resample=0.25)
    pbt, pbt_s = _timed(lambda: engine.train(pbt_rows, ds, policy=pol))
    suffix = "" if (args.trials, args.steps) == (243, 729) else f"-{args.trials}x{args.steps}"
    best = lambda r: float(np.nanmin(r.final("val_loss")))  # noqa: E731
    out = {
        "machine": machine.info(),
        "setup": {"trials": args.trials, "steps": args.steps, "eval_every": 27, "data": "digits",
                  "model": "mlp 2x64", "asha": {"eta": 3, "min_steps": 27}, "pbt": {"trials": 32, "interval": 3}},
        "asha": {"model_steps": asha.model_steps, "wall_s": asha_s, "best_val_loss": best(asha)},
        "full": {"model_steps": full.model_steps, "wall_s": full_s, "best_val_loss": best(full)},
        "pbt": {"model_steps": pbt.model_steps, "wall_s": pbt_s, "best_val_loss": best(pbt)},
        "fixed": {"model_steps": fixed.model_steps, "wall_s": fixed_s, "best_val_loss": best(fixed)},
    }
    name = out["machine"]["machine"]["name"]
    path = Path(__file__).parent / "results" / f"population-{name}{suffix}.json"
    path.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "machine"}, indent=2))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
