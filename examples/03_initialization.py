"""Weight initialization: too small collapses the signal, too large explodes or saturates it, Xavier / He keep it.

Claim
    In a deep network each layer multiplies the activations' scale by about ``sqrt(fan_in) * std(w) *
    gain(activation)``. Weights that are too small (N(0, 0.01^2)) shrink the signal geometrically: by the
    last layer the activations are ~0 and so are the gradients. Weights that are too large (N(0, 1)) make
    ReLU activations grow geometrically and saturate tanh. The classic ``U[-1/sqrt(n), 1/sqrt(n)]``
    ("uniform") shrinks the signal by about 1/sqrt(3) per tanh layer. Xavier/Glorot (``var = 2 / (fan_in +
    fan_out)``) keeps tanh activations steady and He (``var = 2 / fan_in``) keeps ReLU activations steady, and
    those networks train.

Sweep
    10-hidden-layer MLPs (128 units) on the digits, tanh and ReLU, five initializations (too small, too
    large, uniform, Xavier/Glorot uniform, He normal), 3 seeds each, SGD with momentum (0.01, 0.9): 30
    variants in ONE engine program (activation, initializer and gain are all per-variant values).

Figure (figure.png)
    Top: standard deviation of each hidden layer's activations at initialization (log scale), tanh left,
    ReLU right. Flat lines are healthy; "too small" falls by ~10x per layer to ~1e-10 or less, ReLU "too
    large" climbs by ~8x per layer, tanh "too large" sits near 1 (saturated), "uniform" sags on tanh and
    ReLU. Bottom: training loss of each initialization (mean over seeds; diverged runs are marked).

Table (table.csv)
    One row per (activation, initialization): weight std of a 128x128 layer, activation std of the first and
    last hidden layer at init and their ratio, fraction of saturated tanh units at init, final training loss,
    validation accuracy and how many seeds diverged.

Run: ``python examples/03_initialization.py [--small] [--out DIR]``
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from jaxnets import data, engine, initializers  # noqa: E402

NAME = "03_initialization"

#: label -> (engine initializer name, gain). "normal" is N(0, 0.01^2) times the gain.
INITS: dict[str, tuple[str, float]] = {
    "too small N(0, 0.01^2)": ("normal", 1.0),
    "too large N(0, 1)": ("normal", 100.0),
    "uniform U(+-1/sqrt(n))": ("uniform", 1.0),
    "Xavier/Glorot uniform": ("glorot_uniform", 1.0),
    "He normal": ("he_normal", 1.0),
}
INIT_COLORS = dict(zip(INITS, ("tab:purple", "tab:red", "tab:orange", "tab:green", "tab:blue"), strict=True))


def config(small: bool) -> dict:
    if small:
        return dict(depth=4, width=16, activations=("tanh", "relu"), inits=tuple(INITS), seeds=1, steps=20,
                    eval_every=10)
    return dict(depth=10, width=128, activations=("tanh", "relu"), inits=tuple(INITS), seeds=3, steps=1500,
                eval_every=50)


def variants(cfg: dict) -> tuple[list[dict], list[str]]:
    rows, labels = [], []
    for act in cfg["activations"]:
        for label in cfg["inits"]:
            init, gain = INITS[label]
            for seed in range(cfg["seeds"]):
                rows.append(dict(kind="mlp", hidden=(cfg["width"],) * cfg["depth"], activation=act, init=init,
                                 init_scale=gain, optimizer="momentum", learning_rate=0.01, momentum=0.9,
                                 batch_size=128, steps=cfg["steps"], eval_every=cfg["eval_every"], seed=seed))
                labels.append(label)
    return rows, labels


def summarize(result, labels: list[str], cfg: dict) -> pd.DataFrame:
    std = result.history["act_std"]  # [V, E, L]
    sat = result.history["saturated_fraction"]
    labels = np.array(labels)
    out = []
    for act in cfg["activations"]:
        for label in cfg["inits"]:
            idx = np.flatnonzero((labels == label) & np.array([r["activation"] == act for r in result.rows]))
            init, gain = INITS[label]
            s0 = std[idx, 0, :]
            first, last = np.mean(s0[:, 0]), np.mean(s0[:, -1])
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = float(np.exp(np.mean(np.log(s0[:, -1] / s0[:, 0]))))
            out.append({
                "activation": act,
                "init": label,
                "initializer": init,
                "gain": gain,
                "weight_std": initializers.std_formula(init, cfg["width"], cfg["width"], gain),
                "act_std_first_init": float(first),
                "act_std_last_init": float(last),
                "ratio_last_first_init": ratio,
                "saturated_fraction_init": float(np.nanmean(sat[idx, 0, :])),
                "final_train_loss": C.nanmean(np.where(result.status[idx] == "diverged", np.nan,
                                                       result.final("train_loss")[idx])),
                "val_accuracy": C.nanmean(result.final("val_accuracy")[idx]),
                "n_diverged": int(np.sum(result.status[idx] == "diverged")),
                "n_seeds": len(idx),
            })
    return pd.DataFrame(out)


def plot(result, labels: list[str], cfg: dict, out: Path) -> None:
    std = result.history["act_std"]
    loss = result.history["train_loss"]
    steps = result.eval_steps
    labels = np.array(labels)
    acts = cfg["activations"]
    fig, axes = plt.subplots(2, len(acts), figsize=(6.5 * len(acts), 9), squeeze=False)
    layers = np.arange(1, cfg["depth"] + 1)
    for col, act in enumerate(acts):
        is_act = np.array([r["activation"] == act for r in result.rows])
        ax = axes[0][col]
        for label in cfg["inits"]:
            idx = np.flatnonzero((labels == label) & is_act)
            C.mean_band(ax, layers, std[idx, 0, :], label=label, color=INIT_COLORS[label], log=True,
                        marker="o", ms=3)
        ax.set_yscale("log")
        ax.set_xlabel("hidden layer (input side left)")
        ax.set_ylabel("activation std at init")
        ax.set_title(f"{act}: activation scale through {cfg['depth']} layers at init")
        C.label_lines(ax)
        ax = axes[1][col]
        for label in cfg["inits"]:
            idx = np.flatnonzero((labels == label) & is_act)
            n_div = int(np.sum(result.status[idx] == "diverged"))
            ys = C.truncated(result, idx, loss[idx])
            ys = np.where(np.isfinite(ys), ys, np.nan)
            tag = f" ({n_div}/{len(idx)} diverged: x)" if n_div else ""
            C.mean_band(ax, steps, ys, label=label + tag, color=INIT_COLORS[label], log=True)
            C.mark_diverged(ax, result, idx, loss[idx], INIT_COLORS[label], ymax=1e3)
        ax.axhline(np.log(10), color="grey", lw=0.8, ls=":", label="ln 10 (chance)")
        ax.set_yscale("log")
        ax.set_ylim(top=min(ax.get_ylim()[1], 1e3))
        ax.set_xlabel("training step")
        ax.set_ylabel("training loss")
        ax.set_title(f"{act}: which initializations train")
        C.label_lines(ax)
    fig.suptitle(f"Weight initialization: {cfg['depth']}-layer MLPs on the digits, SGD + momentum")
    fig.tight_layout()
    C.save_figure(fig, out)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = C.parser(__doc__, NAME).parse_args(argv)
    timer = C.Timer()
    cfg = config(args.small)
    ds = data.load("digits", seed=0)
    rows, labels = variants(cfg)
    with C.timed(f"engine.train: {len(rows)} variants"):
        result = engine.train(rows, ds)
    table = summarize(result, labels, cfg)
    C.write_table(table, args.out)
    plot(result, labels, cfg, args.out)
    C.finish(args.out, timer)
    return table


if __name__ == "__main__":
    main()
