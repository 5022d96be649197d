"""Overfitting: on a small training set a big network memorizes; L2, dropout and early stopping hold it back.

Claim
    With far more parameters than training examples, a network drives its training loss down by
    memorizing the training set — its noise included — while its validation loss, after an early minimum,
    climbs again, and it does worse on new data. Regularization narrows the gap between training and
    validation loss and improves test accuracy: an L2 penalty keeps weights small (a smoother function),
    dropout trains an ensemble of thinned networks, early stopping keeps the weights from the validation
    minimum.

Sweep
    The two-spirals data (noise 0.3) with only 200 training examples, 20% of whose labels are flipped (the
    validation and test labels are clean; label noise is what a memorizing network fits and a regularized one
    ignores, so the harm shows in accuracy, not only in the loss). An MLP with two hidden layers of 256 units
    (~67k parameters), Adam 1e-3, minibatch 32, 3000 steps, 5 seeds, four methods: none, L2 (1e-3),
    dropout (0.5), early stopping (patience 10 evaluations of 25 steps; the weights go back to the best
    validation loss). One engine call: two static groups (early stopping changes the program), everything
    else per-variant values. Test loss and accuracy are computed with the model from the final (for early
    stopping: best) weights.

Figure (figure.png)
    Top: training loss and validation loss of each method against the step (mean over seeds, band
    min-max; early stopping's curves end where it stopped), and test accuracy / test loss per method (bars:
    mean, dots: seeds). Bottom: the decision regions each method learned (seed 0) with the training points
    (X: a flipped label): without regularization the boundary bends around flipped points, the regularized
    ones are smoother.

Table (table.csv)
    One row per method: final training and validation loss, best validation loss, the gap between them,
    the step training stopped, test loss and test accuracy (mean and std over seeds).

Run: ``python examples/07_overfitting.py [--small] [--out DIR]``
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from jaxnets import data, engine  # noqa: E402

NAME = "07_overfitting"
METHODS: dict[str, dict] = {
    "none": {},
    "L2 1e-3": {"l2": 1e-3},
    "dropout 0.5": {"dropout": 0.5},
    "early stopping": {"early_stopping_patience": 10},
}
METHOD_COLORS = dict(zip(METHODS, ("tab:red", "tab:blue", "tab:green", "tab:purple"), strict=True))


def config(small: bool) -> dict:
    if small:
        return dict(n_train=40, label_noise=0.2, hidden=(16, 16), seeds=1, steps=40, eval_every=10,
                    early_stopping_patience=2)
    return dict(n_train=200, label_noise=0.2, hidden=(256, 256), seeds=5, steps=3000, eval_every=25,
                early_stopping_patience=10)


def load(cfg: dict):
    """Spirals with ``n_train`` training examples, ``label_noise`` of their labels flipped (seeded)."""
    ds = data.load("spirals", seed=0, n_train=cfg["n_train"], noise=0.3)
    clean = ds.y_train.copy()
    flip = np.random.default_rng(1).random(ds.n_train) < cfg["label_noise"]
    noisy = np.where(flip, 1 - clean, clean).astype(np.int32)
    return dataclasses.replace(ds, y_train=noisy), clean


def variants(cfg: dict) -> tuple[list[dict], list[str]]:
    rows, names = [], []
    for name, extra in METHODS.items():
        key = "early_stopping_patience"
        extra = {k: (cfg[key] if k == key else v) for k, v in extra.items()}
        for seed in range(cfg["seeds"]):
            rows.append(dict(kind="mlp", hidden=cfg["hidden"], activation="relu", optimizer="adam",
                             learning_rate=1e-3, batch_size=32, steps=cfg["steps"],
                             eval_every=cfg["eval_every"], seed=seed, **extra))
            names.append(name)
    return rows, names


def summarize(result, names: np.ndarray, test: pd.DataFrame) -> pd.DataFrame:
    out = []
    for name in METHODS:
        idx = np.flatnonzero(names == name)
        final_train = result.final("train_loss")[idx]
        final_val = result.final("val_loss")[idx]
        best_val = result.best_val_loss[idx]
        out.append({
            "method": name,
            "final_train_loss": float(np.mean(final_train)),
            "final_val_loss": float(np.mean(final_val)),
            "best_val_loss": float(np.mean(best_val)),
            "val_minus_train": float(np.mean(final_val - final_train)),
            "stopped_step": float(np.mean(result.stopped_step[idx])),
            "test_loss": float(test.test_loss[idx].mean()),
            "test_accuracy": float(test.test_accuracy[idx].mean()),
            "test_accuracy_std": float(test.test_accuracy[idx].std(ddof=0)),
            "n_seeds": len(idx),
        })
    return pd.DataFrame(out)


def boundary(ax: plt.Axes, result, i: int, ds, clean_y: np.ndarray, title: str) -> None:
    lo = np.minimum(ds.x_train.min(0), ds.x_val.min(0)) - 0.3
    hi = np.maximum(ds.x_train.max(0), ds.x_val.max(0)) + 0.3
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
    grid = jnp.asarray(np.stack([gx.ravel(), gy.ravel()], axis=1), jnp.float32)
    logits = C.apply_fn(engine.model(result.rows[i], ds))(result.params(i), grid)
    prob = np.asarray(jax.nn.sigmoid(logits[:, 0])).reshape(gx.shape)
    ax.contourf(gx, gy, prob, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.6)
    ax.contour(gx, gy, prob, levels=[0.5], colors="k", linewidths=0.8)
    flipped = ds.y_train != clean_y
    for label, color in ((0, "tab:blue"), (1, "tab:red")):
        keep = (ds.y_train == label) & ~flipped
        ax.scatter(ds.x_train[keep, 0], ds.x_train[keep, 1], color=color, edgecolors="white", s=18, lw=0.5)
        keep = (ds.y_train == label) & flipped
        ax.scatter(ds.x_train[keep, 0], ds.x_train[keep, 1], color=color, edgecolors="k", marker="X", s=40,
                   lw=0.6)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)


def plot(result, names: np.ndarray, test: pd.DataFrame, ds, clean_y: np.ndarray, cfg: dict, out: Path) -> None:
    fig, axes = plt.subplots(2, 4, figsize=(18, 9))
    steps = result.eval_steps
    for ax, metric, title in ((axes[0][0], "train_loss", "(a) training loss"),
                              (axes[0][1], "val_loss", "(b) validation loss")):
        for name in METHODS:
            idx = np.flatnonzero(names == name)
            ys = np.array(result.history[metric][idx], np.float64)
            for row, i in enumerate(idx):  # hide the repeated values after an early stop
                if result.status[i] == "early_stopped":
                    ys[row, steps > result.stopped_step[i]] = np.nan
            C.mean_band(ax, steps, ys, label=name, color=METHOD_COLORS[name], log=metric == "train_loss")
        ax.set_yscale("log")
        ax.set_xlabel("training step")
        ax.set_ylabel(metric.replace("_", " "))
        ax.set_title(title)
        C.label_lines(ax)
    for ax, col, title in ((axes[0][2], "test_accuracy", "(c) test accuracy"),
                           (axes[0][3], "test_loss", "(d) test loss")):
        for k, name in enumerate(METHODS):
            idx = np.flatnonzero(names == name)
            vals = test[col].to_numpy()[idx]
            ax.bar(k, vals.mean(), color=METHOD_COLORS[name], alpha=0.7)
            ax.plot(np.full(len(vals), k), vals, "k.", ms=5)
            ax.text(k, vals.mean(), f"{vals.mean():.3f}", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(METHODS)), list(METHODS), fontsize=8)
        if col == "test_accuracy":
            ax.set_ylim(max(0.0, float(test[col].min()) - 0.1), 1.0)
        ax.set_title(title)
    for ax, name in zip(axes[1], METHODS, strict=True):
        i = int(np.flatnonzero(names == name)[0])
        acc = test.test_accuracy.to_numpy()[i]
        boundary(ax, result, i, ds, clean_y, f"{name} (seed 0): test accuracy {acc:.3f}")
    n_params = C.n_params(result.params(0))
    fig.suptitle(f"Overfitting: MLP {list(cfg['hidden'])} ({n_params:,} parameters) on {ds.n_train} "
                 f"two-spiral training points, {cfg['label_noise']:.0%} of their labels flipped (X); "
                 "validation and test labels clean")
    fig.tight_layout()
    C.save_figure(fig, out)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = C.parser(__doc__, NAME).parse_args(argv)
    timer = C.Timer()
    cfg = config(args.small)
    ds, clean_y = load(cfg)
    rows, names = variants(cfg)
    names = np.array(names)
    with C.timed(f"engine.train: {len(rows)} variants"):
        result = engine.train(rows, ds)
    test = C.evaluate(result, ds, "test")
    table = summarize(result, names, test)
    C.write_table(table, args.out)
    plot(result, names, test, ds, clean_y, cfg, args.out)
    C.finish(args.out, timer)
    return table


if __name__ == "__main__":
    main()
