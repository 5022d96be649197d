"""Hyperparameter search: grid vs random vs Bayesian (TPE) at the same budget of trained variants.

Claim
    With a fixed budget of trained models, grid search wastes most of it: when only a few hyperparameters
    matter, a grid of ``k`` levels per dimension tries only ``k`` distinct values of the important one,
    however many models it trains. Random search tries a new value of every hyperparameter with every model
    and so finds good regions faster (Bergstra & Bengio, 2012). Bayesian optimization (here Optuna's TPE)
    uses the scores so far to propose the next batch and reaches good scores with even fewer models.

Sweep
    The digits, an MLP [64, 64] trained for 300 steps of SGD with momentum; a 4-D search space: learning
    rate (log 1e-4..1), momentum (0..0.99), init gain (log 0.1..10, on Glorot uniform) and L2 (log
    1e-6..1e-1). Budget: 81 variants per search. Grid: 3 levels per dimension (cell centres, in log space
    where the range is logarithmic), visited in a random order. Random: 81 independent draws. Bayesian: TPE
    (``optuna.samplers.TPESampler``, ask/tell) in 9 rounds of 9; every round's batch is trained as ONE
    ``engine.train`` call (the first round is TPE's random start-up). Each method runs with 3 search seeds;
    the grid and random searches of all seeds are trained together in one call (486 variants). Score: the
    final validation loss (cross-entropy; a diverged variant scores 10).

Figure (figure.png)
    (a) best validation loss found so far against the number of variants trained (line: mean over search
    seeds, band: min-max); (b) every variant's validation loss against its learning rate: the grid's
    variants stack on 3 learning rates, random and TPE spread over the range and TPE piles up near the
    best; (c) TPE's scores round by round.

Table (table.csv; curve.csv holds panel (a)'s data)
    One row per (method, search seed): best validation loss and that variant's validation accuracy, its
    hyperparameters, the number of variants needed to reach it, and the best loss after the first round
    (9 variants) and after a third of the budget.

Run: ``python examples/08_search.py [--small] [--out DIR]``
"""

from __future__ import annotations

import itertools
import logging
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optuna  # noqa: E402
import pandas as pd  # noqa: E402

from jaxnets import data, engine  # noqa: E402

NAME = "08_search"
FAIL = 10.0  # score of a variant that diverged (chance is ln 10 = 2.3)

#: name -> (low, high, log scale)
SPACE: dict[str, tuple[float, float, bool]] = {
    "learning_rate": (1e-4, 1.0, True),
    "momentum": (0.0, 0.99, False),
    "init_scale": (0.1, 10.0, True),
    "l2": (1e-6, 1e-1, True),
}
METHODS = ("grid", "random", "bayesian")


def config(small: bool) -> dict:
    if small:
        return dict(levels=2, batch=8, seeds=1, steps=20, eval_every=10)
    return dict(levels=3, batch=9, seeds=3, steps=300, eval_every=100)


def budget(cfg: dict) -> int:
    return cfg["levels"] ** len(SPACE)


def to_value(name: str, u: float) -> float:
    """Map u in [0, 1] to the range of ``name`` (log-uniformly where the range is logarithmic)."""
    lo, hi, log = SPACE[name]
    return float(math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))) if log else float(lo + u * (hi - lo))


def grid(cfg: dict, rng: np.random.Generator) -> list[dict]:
    k = cfg["levels"]
    centres = [(j + 0.5) / k for j in range(k)]
    points = [dict(zip(SPACE, (to_value(n, u) for n, u in zip(SPACE, us, strict=True)), strict=True))
              for us in itertools.product(centres, repeat=len(SPACE))]
    return [points[i] for i in rng.permutation(len(points))]


def random_points(n: int, rng: np.random.Generator) -> list[dict]:
    return [{name: to_value(name, rng.random()) for name in SPACE} for _ in range(n)]


def variant(hp: dict, cfg: dict, seed: int) -> dict:
    return dict(kind="mlp", hidden=(64, 64), activation="relu", init="glorot_uniform", optimizer="momentum",
                batch_size=64, steps=cfg["steps"], eval_every=cfg["eval_every"], seed=seed, **hp)


def scores(result) -> tuple[np.ndarray, np.ndarray]:
    loss = result.final("val_loss")
    ok = np.isfinite(loss) & (result.status != "diverged")
    return np.where(ok, np.minimum(loss, FAIL), FAIL), np.where(ok, result.final("val_accuracy"), np.nan)


def run_grid_and_random(cfg: dict, ds) -> list[dict]:
    """Every seed's grid and random search, trained in one engine call."""
    trials, rows = [], []
    for seed in range(cfg["seeds"]):
        rng = np.random.default_rng([seed, 8])
        for method, points in (("grid", grid(cfg, rng)), ("random", random_points(budget(cfg), rng))):
            for n, hp in enumerate(points):
                trials.append({"method": method, "seed": seed, "n": n + 1, **hp})
                rows.append(variant(hp, cfg, seed))
    with C.timed(f"engine.train: grid + random, {len(rows)} variants"):
        result = engine.train(rows, ds)
    loss, acc = scores(result)
    for t, l_, a in zip(trials, loss, acc, strict=True):
        t.update(val_loss=float(l_), val_accuracy=float(a), round=0)
    return trials


def run_bayesian(cfg: dict, ds) -> list[dict]:
    """TPE with ask/tell: each round asks ``batch`` trials per seed; all seeds' trials train as ONE call."""
    optuna.logging.set_verbosity(logging.WARNING)
    studies = [optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=cfg["batch"], multivariate=True, constant_liar=True))
        for seed in range(cfg["seeds"])]
    dists = {name: optuna.distributions.FloatDistribution(lo, hi, log=log) for name, (lo, hi, log) in SPACE.items()}
    trials = []
    n_rounds = -(-budget(cfg) // cfg["batch"])
    for r in range(n_rounds):
        size = min(cfg["batch"], budget(cfg) - r * cfg["batch"])
        asked = [(seed, study.ask(dists)) for seed, study in enumerate(studies) for _ in range(size)]
        rows = [variant(dict(t.params), cfg, seed) for seed, t in asked]
        with C.timed(f"engine.train: TPE round {r + 1}/{n_rounds}, {len(rows)} variants"):
            result = engine.train(rows, ds)
        loss, acc = scores(result)
        for (seed, t), l_, a in zip(asked, loss, acc, strict=True):
            studies[seed].tell(t, float(l_))
            n = sum(1 for x in trials if x["seed"] == seed) + 1
            trials.append({"method": "bayesian", "seed": seed, "n": n, **t.params, "val_loss": float(l_),
                           "val_accuracy": float(a), "round": r + 1})
    return trials


def curves(trials: pd.DataFrame) -> pd.DataFrame:
    out = trials.sort_values(["method", "seed", "n"]).copy()
    out["best_val_loss"] = out.groupby(["method", "seed"]).val_loss.cummin()
    return out[["method", "seed", "n", "val_loss", "best_val_loss"]]


def summarize(trials: pd.DataFrame, cfg: dict) -> pd.DataFrame:
    rows = []
    third = max(budget(cfg) // 3, 1)
    for (method, seed), t in trials.groupby(["method", "seed"], sort=False):
        t = t.sort_values("n")
        best = t.loc[t.val_loss.idxmin()]
        rows.append({
            "method": method,
            "seed": int(seed),
            "n_trained": len(t),
            "best_val_loss": float(best.val_loss),
            "best_val_accuracy": float(best.val_accuracy),
            **{f"best_{name}": float(best[name]) for name in SPACE},
            "n_to_best": int(best.n),
            f"best_after_{cfg['batch']}": float(t.val_loss.iloc[:cfg["batch"]].min()),
            f"best_after_{third}": float(t.val_loss.iloc[:third].min()),
            "distinct_learning_rates": int(t.learning_rate.round(12).nunique()),
        })
    return pd.DataFrame(rows)


def plot(trials: pd.DataFrame, curve: pd.DataFrame, cfg: dict, out: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2))
    ax = axes[0]
    for method in METHODS:
        c = curve[curve.method == method].pivot(index="seed", columns="n", values="best_val_loss")
        C.mean_band(ax, c.columns.to_numpy(), c.to_numpy(), label=method, color=C.COLORS[method])
    ax.set_yscale("log")
    ax.set_ylim(0.9 * float(curve.best_val_loss.min()), 1.0)
    ax.set_xlabel("variants trained")
    ax.set_ylabel("best validation loss so far")
    ax.set_title(f"(a) best score vs budget ({cfg['seeds']} search seeds)")
    C.label_lines(ax)
    ax = axes[1]
    for method, marker in zip(METHODS, ("s", "o", "^"), strict=True):
        t = trials[trials.method == method]
        ax.scatter(t.learning_rate, t.val_loss, s=14, marker=marker, alpha=0.55, color=C.COLORS[method],
                   label=method)
    ax.axhline(np.log(10), color="grey", lw=0.8, ls=":", label="chance (ln 10)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel(f"final validation loss (diverged = {FAIL:g})")
    ax.set_title("(b) every variant: where each method looked")
    C.label_lines(ax)
    ax = axes[2]
    t = trials[trials.method == "bayesian"]
    for seed, ts in t.groupby("seed"):
        ax.scatter(ts["round"] + 0.08 * (seed - (cfg["seeds"] - 1) / 2), ts.val_loss, s=12, alpha=0.6,
                   label=f"seed {seed}")
    med = t.groupby("round").val_loss.median()
    ax.plot(med.index, med.values, "k-", lw=1.5, label="median")
    ax.set_yscale("log")
    ax.set_xlabel("TPE round (round 1 = random start-up)")
    ax.set_ylabel("validation loss")
    ax.set_title(f"(c) Bayesian: each round's {cfg['batch']} proposals per seed")
    C.label_lines(ax)
    fig.suptitle(f"Hyperparameter search on the digits: {budget(cfg)} variants per search")
    fig.tight_layout()
    C.save_figure(fig, out)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = C.parser(__doc__, NAME).parse_args(argv)
    timer = C.Timer()
    cfg = config(args.small)
    ds = data.load("digits", seed=0)
    trials = pd.DataFrame(run_grid_and_random(cfg, ds) + run_bayesian(cfg, ds))
    curve = curves(trials)
    table = summarize(trials, cfg)
    args.out.mkdir(parents=True, exist_ok=True)
    curve.to_csv(args.out / "curve.csv", index=False)
    C.write_table(table, args.out)
    plot(trials, curve, cfg, args.out)
    C.finish(args.out, timer)
    return table


if __name__ == "__main__":
    main()
