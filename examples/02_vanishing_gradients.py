"""Activations and vanishing gradients: sigmoid's gradient shrinks layer by layer, ReLU's does not.

Claim
    Backpropagation multiplies, layer by layer, by the activation's derivative. The sigmoid's derivative is
    at most 0.25 (tanh's at most 1), so in a deep sigmoid network the gradient reaching the first layers is
    orders of magnitude smaller than at the last ones and those layers barely learn; ReLU, leaky ReLU and
    GELU (derivative about 1 on the active side) keep the gradient at the same scale through 10 or 20
    layers and train.

Sweep
    Deep MLPs on the digits (10 and 20 hidden layers of 64 units, Glorot-uniform init, Adam 1e-3) with
    sigmoid, tanh, ReLU, leaky ReLU and GELU, 3 seeds each: 30 variants in two engine programs (one per
    depth). The engine records the full-batch gradient norm of every layer at every evaluation (the first
    one at step 0, before any update).

Figure (figure.png)
    Top row: gradient norm of each layer (input side left, ``out`` = output layer) at initialization, for 10
    and 20 layers, and after training for 20 layers (log scale; line = geometric mean over seeds, band =
    min-max). The dotted grey line falls by the factor 0.25 per layer, the bound on the sigmoid's derivative:
    the sigmoid's profile is a straight line of about that slope, i.e. its first layer gets ~1e-6 (10 layers)
    or ~1e-12 (20 layers) of the output layer's gradient. Bottom row: the first hidden layer's gradient norm
    during training, and the training loss for each depth; the sigmoid's loss stays at ln(10) = 2.3.

Table (table.csv)
    One row per (depth, activation): gradient norm of the first and last hidden layers at init,
    their ratio at init and at the end of training, the per-layer factor ``ratio ** (1 / (depth - 1))``,
    final training loss and validation accuracy (means over seeds).

Run: ``python examples/02_vanishing_gradients.py [--small] [--out DIR]``
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from jaxnets import data, engine  # noqa: E402

NAME = "02_vanishing_gradients"
ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "gelu")


def config(small: bool) -> dict:
    if small:
        return dict(depths=(4,), width=16, activations=("sigmoid", "relu"), seeds=1, steps=20, eval_every=10)
    return dict(depths=(10, 20), width=64, activations=ACTIVATIONS, seeds=3, steps=1000, eval_every=50)


def variants(cfg: dict) -> list[dict]:
    return [
        dict(kind="mlp", hidden=(cfg["width"],) * depth, activation=act, init="glorot_uniform",
             optimizer="adam", learning_rate=1e-3, batch_size=128, steps=cfg["steps"],
             eval_every=cfg["eval_every"], seed=seed)
        for depth in cfg["depths"] for act in cfg["activations"] for seed in range(cfg["seeds"])
    ]


def geo_mean(a: np.ndarray, axis: int = 0) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.exp(np.mean(np.log(np.maximum(a, 1e-300)), axis=axis))


def summarize(result, cfg: dict) -> pd.DataFrame:
    g = result.history["grad_norm"]  # [V, E, L+1], input side first, last = output layer
    rows = []
    for depth in cfg["depths"]:
        for act in cfg["activations"]:
            idx = [i for i, r in enumerate(result.rows) if len(r["hidden"]) == depth and r["activation"] == act]
            gi = g[idx][:, :, :depth + 1]
            first0, last0 = gi[:, 0, 0], gi[:, 0, depth - 1]
            ratio0 = geo_mean(first0 / last0)
            ratio_end = geo_mean(gi[:, -1, 0] / gi[:, -1, depth - 1])
            rows.append({
                "depth": depth,
                "activation": act,
                "grad_first_init": float(geo_mean(first0)),
                "grad_last_hidden_init": float(geo_mean(last0)),
                "grad_output_init": float(geo_mean(gi[:, 0, depth])),
                "ratio_first_last_init": float(ratio0),
                "per_layer_factor_init": float(ratio0 ** (1.0 / max(depth - 1, 1))),
                "ratio_first_last_end": float(ratio_end),
                "final_train_loss": float(np.nanmean(result.final("train_loss")[idx])),
                "val_accuracy": float(np.nanmean(result.final("val_accuracy")[idx])),
                "n_ok": int(np.sum(result.status[idx] == "ok")),
                "n_seeds": len(idx),
            })
    return pd.DataFrame(rows)


def plot(result, cfg: dict, out: Path) -> None:
    g = result.history["grad_norm"]
    steps = result.eval_steps
    depths = cfg["depths"]
    deepest = max(depths)
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))

    def members(depth, act):
        return [i for i, r in enumerate(result.rows) if len(r["hidden"]) == depth and r["activation"] == act]

    profile_panels = [(d, 0, "at init") for d in depths] + [(deepest, -1, f"after {steps[-1]} steps")]
    for ax, (depth, e, when) in zip(axes[0], profile_panels[:3], strict=False):
        layers = np.arange(1, depth + 2)
        for act in cfg["activations"]:
            ys = g[members(depth, act)][:, e, :depth + 1]
            C.mean_band(ax, layers, ys, label=act, color=C.COLORS.get(act), log=True, marker="o", ms=3)
        if e == 0 and "sigmoid" in cfg["activations"]:  # the 0.25-per-layer bound, anchored at the last layer
            anchor = geo_mean(g[members(depth, "sigmoid")][:, 0, depth - 1])
            ref = anchor * 0.25 ** (depth - np.arange(1, depth + 1))
            ax.plot(np.arange(1, depth + 1), ref, ":", color="grey", label="x0.25 per layer")
        ax.set_yscale("log")
        ax.set_xticks(layers, [str(i) for i in layers[:-1]] + ["out"], fontsize=7)
        ax.set_xlabel("layer (input side left)")
        ax.set_ylabel("gradient norm")
        ax.set_title(f"{depth} hidden layers: per-layer gradient {when}")
        C.label_lines(ax)
    for ax in axes[0][len(profile_panels):]:
        ax.axis("off")

    ax = axes[1][0]
    for depth, style in zip(depths, ("-", "--"), strict=False):
        for act in cfg["activations"]:
            C.mean_band(ax, steps, g[members(depth, act)][:, :, 0], log=True, color=C.COLORS.get(act),
                        linestyle=style, label=f"{act}, {depth} layers")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("first hidden layer gradient norm")
    ax.set_title("gradient reaching the first layer during training")
    C.label_lines(ax, ncol=2)
    loss = result.history["train_loss"]
    for ax, depth in zip(axes[1][1:], depths, strict=False):
        for act in cfg["activations"]:
            C.mean_band(ax, steps, loss[members(depth, act)], label=act, color=C.COLORS.get(act))
        ax.axhline(np.log(10), color="grey", lw=0.8, ls=":", label="ln 10 (chance)")
        ax.set_xlabel("training step")
        ax.set_ylabel("training loss (cross-entropy)")
        ax.set_title(f"{depth} hidden layers: training loss")
        C.label_lines(ax)
    for ax in axes[1][1 + len(depths):]:
        ax.axis("off")
    fig.suptitle("Vanishing gradients: deep MLPs on the digits, Glorot init, Adam")
    fig.tight_layout()
    C.save_figure(fig, out)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = C.parser(__doc__, NAME).parse_args(argv)
    timer = C.Timer()
    cfg = config(args.small)
    ds = data.load("digits", seed=0)
    with C.timed(f"engine.train: {len(variants(cfg))} variants"):
        result = engine.train(variants(cfg), ds)
    table = summarize(result, cfg)
    C.write_table(table, args.out)
    plot(result, cfg, args.out)
    C.finish(args.out, timer)
    return table


if __name__ == "__main__":
    main()
