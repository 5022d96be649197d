"""Dying ReLU: at a large learning rate many ReLU units die for good; leaky ReLU keeps every unit alive.

Claim
    A ReLU unit whose pre-activation is negative on every input outputs 0 and gets a zero gradient, so once
    a large update pushes it there it never comes back ("dead"). The larger the learning rate, the more
    units die and the worse the network does. Leaky ReLU (slope 0.01 below 0) always passes some gradient,
    so its units cannot die; ELU's negative side also passes gradient (``exp(z)``), but saturates: a unit
    pushed far below zero gets almost none, and in float32 JAX none at all (``jax.nn.elu``'s derivative is
    computed as ``expm1(z) + 1``, which is exactly 0 for z below about -17), so it is just as dead.

Sweep
    MLPs with 3 hidden layers of 128 units on the digits (He-uniform init, Adam), ReLU / leaky ReLU / ELU at
    learning rates 1e-3, 1e-2 and 3e-2, 3 seeds each: 27 variants in ONE engine program. At every
    evaluation the engine records, per layer, the fraction of *dead* units: units whose activation has a
    zero derivative on every one of 1024 training examples. After training, the example also measures with
    the model directly the fraction of *inactive* units (pre-activation below 0 on every training example),
    which for leaky ReLU / ELU are units that are "off" but still receive gradient.

Figure (figure.png)
    (a) fraction of dead units (mean over the 3 layers) during training, per activation and learning rate;
    (b) dead and inactive fractions after training against the learning rate; (c) validation accuracy
    against the learning rate; (d) dead fraction per layer after training at the largest learning rate.

Table (table.csv)
    One row per (activation, learning rate): dead fraction at init and after training (mean over layers
    and seeds, and the worst layer), inactive fraction after training, final validation accuracy, number of
    diverged seeds.

Run: ``python examples/04_dying_relu.py [--small] [--out DIR]``
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from jaxnets import data, engine  # noqa: E402

NAME = "04_dying_relu"
STYLES = ("-", "--", ":")


def config(small: bool) -> dict:
    if small:
        return dict(hidden=(16, 16), activations=("relu", "leaky_relu", "elu"), lrs=(1e-3, 3e-2), seeds=1,
                    steps=20, eval_every=10)
    return dict(hidden=(128, 128, 128), activations=("relu", "leaky_relu", "elu"), lrs=(1e-3, 1e-2, 3e-2),
                seeds=3, steps=1500, eval_every=50)


def variants(cfg: dict) -> list[dict]:
    return [
        dict(kind="mlp", hidden=cfg["hidden"], activation=act, init="he_uniform", optimizer="adam",
             learning_rate=lr, batch_size=64, steps=cfg["steps"], eval_every=cfg["eval_every"], seed=seed)
        for act in cfg["activations"] for lr in sorted(cfg["lrs"], reverse=True) for seed in range(cfg["seeds"])
    ]


def inactive_fraction(result, ds) -> np.ndarray:
    """[V, L]: fraction of each layer's units whose pre-activation is <= 0 on every training example."""
    x = jnp.asarray(ds.x_train)
    out = []
    for i, row in enumerate(result.rows):
        model = engine.model(row, ds)
        _, rec = model.apply({"params": result.params(i)}, x, mutable=["intermediates"])
        pre = rec["intermediates"]["preact"]
        out.append([float(jnp.mean(jnp.all(z <= 0, axis=0))) for z in pre])
    return np.array(out)


def summarize(result, inactive: np.ndarray, cfg: dict) -> pd.DataFrame:
    dead = result.history["dead_fraction"]  # [V, E, L]
    acc = result.final("val_accuracy")
    rows = []
    for act in cfg["activations"]:
        for lr in cfg["lrs"]:
            idx = [i for i, r in enumerate(result.rows) if r["activation"] == act and r["learning_rate"] == lr]
            rows.append({
                "activation": act,
                "learning_rate": lr,
                "dead_fraction_init": float(np.mean(dead[idx, 0, :])),
                "dead_fraction_final": float(np.mean(dead[idx, -1, :])),
                "dead_fraction_worst_layer": float(np.max(np.mean(dead[idx, -1, :], axis=0))),
                "inactive_fraction_final": float(np.mean(inactive[idx])),
                "val_accuracy": float(np.nanmean(acc[idx])),
                "n_diverged": int(np.sum(result.status[idx] == "diverged")),
                "n_seeds": len(idx),
            })
    return pd.DataFrame(rows)


def plot(result, table: pd.DataFrame, cfg: dict, out: Path) -> None:
    dead = result.history["dead_fraction"]
    steps = result.eval_steps
    lrs = sorted(cfg["lrs"], reverse=True)
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    ax = axes[0][0]
    for act in cfg["activations"]:
        for lr, style in zip(lrs, STYLES, strict=False):
            idx = [i for i, r in enumerate(result.rows) if r["activation"] == act and r["learning_rate"] == lr]
            C.mean_band(ax, steps, dead[idx].mean(axis=-1), label=f"{act}, lr {lr:g}",
                        color=C.COLORS.get(act), linestyle=style)
    ax.set_xlabel("training step")
    ax.set_ylabel("fraction of dead units (zero gradient on every example)")
    ax.set_title("(a) dead units during training")
    C.label_lines(ax, ncol=len(cfg["activations"]))
    ax = axes[0][1]
    for act in cfg["activations"]:
        t = table[table.activation == act].sort_values("learning_rate")
        ax.plot(t.learning_rate, t.dead_fraction_final, "o-", color=C.COLORS.get(act), label=f"{act}: dead")
        ax.plot(t.learning_rate, t.inactive_fraction_final, "s--", mfc="none", color=C.COLORS.get(act),
                label=f"{act}: inactive (z<=0 everywhere)")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (Adam)")
    ax.set_ylabel("fraction of units after training")
    ax.set_title("(b) dead vs inactive units after training")
    C.label_lines(ax)
    ax = axes[1][0]
    for act in cfg["activations"]:
        t = table[table.activation == act].sort_values("learning_rate")
        ax.plot(t.learning_rate, t.val_accuracy, "o-", color=C.COLORS.get(act), label=act)
    ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("learning rate (Adam)")
    ax.set_ylabel("validation accuracy")
    ax.set_title("(c) accuracy")
    C.label_lines(ax)
    ax = axes[1][1]
    top = max(cfg["lrs"])
    n_layers = dead.shape[-1]
    width = 0.8 / len(cfg["activations"])
    for k, act in enumerate(cfg["activations"]):
        idx = [i for i, r in enumerate(result.rows) if r["activation"] == act and r["learning_rate"] == top]
        ax.bar(np.arange(n_layers) + k * width, dead[idx, -1, :].mean(axis=0), width, color=C.COLORS.get(act),
               label=act)
    ax.set_xticks(np.arange(n_layers) + width * (len(cfg["activations"]) - 1) / 2,
                  [f"layer {i + 1}" for i in range(n_layers)])
    ax.set_ylabel("fraction of dead units after training")
    ax.set_title(f"(d) dead units per layer at lr {top:g}")
    C.label_lines(ax)
    fig.suptitle(f"Dying ReLU: MLP {list(cfg['hidden'])} on the digits, Adam, He-uniform init")
    fig.tight_layout()
    C.save_figure(fig, out)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = C.parser(__doc__, NAME).parse_args(argv)
    timer = C.Timer()
    cfg = config(args.small)
    ds = data.load("digits", seed=0)
    rows = variants(cfg)
    with C.timed(f"engine.train: {len(rows)} variants"):
        result = engine.train(rows, ds)
    inactive = inactive_fraction(result, ds)
    table = summarize(result, inactive, cfg)
    C.write_table(table, args.out)
    plot(result, table, cfg, args.out)
    C.finish(args.out, timer)
    return table


if __name__ == "__main__":
    main()
