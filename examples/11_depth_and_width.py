"""Depth x width x activation on the digits: every architecture in ONE compiled program.

Claim
    How deep and how wide an MLP should be is the first question of a course, and each architecture used to
    be its own compiled program. With ``mix_architectures = True`` the engine trains every ``hidden`` list
    of the sweep in one program at the padded shape (the deepest depth, the widest width), each variant
    masked to its own network and initialized with its own fan-in (``jaxnets.architectures``): the numbers
    are those of each network trained alone, to float32 rounding (tests/test_architectures.py). Measured
    here (default size, 96 variants, ~47 s on 2 shared cores):

    * wider is better at every depth and activation (width 16 -> 128: relu 0.950 -> 0.986 at depth 1,
      sigmoid 0.613 -> 0.942 at depth 4), while depth beyond one or two layers does not help on this small
      problem (relu: 0.986 at depth 1, 0.978 at depth 4; tanh peaks at 0.982, depth 3 width 64);
    * sigmoid is where depth hurts: the first layer's gradient at initialization shrinks about 4-5x per added
      layer (0.30-0.42 at depth 1, 0.004-0.006 at depth 4) and depth-4 sigmoid nets end lowest (61-94 %);
      relu and tanh lose at most about 2-4x of it over the same depths.

Sweep
    The digits, MLPs of depth 1-4 x width 16-128 (every hidden layer that wide) x activation (relu, tanh,
    sigmoid) x 2 seeds, Adam 1e-3, minibatch 64, 1000 steps: 96 variants, ONE ``engine.train`` call, one
    compiled program (the plan's padded [128] x 4).

Figure (figure.png)
    (a-c) final validation accuracy (mean over seeds) by depth and width, one panel per activation.
    (d-f) the gradient norm of the first layer at initialization (``history["grad_norm"][:, 0, 0]``, log
    scale) by depth and width: how much gradient reaches the input side before any training.

Table (table.csv)
    One row per (activation, depth, width): mean over seeds of the final validation loss and accuracy, the
    first layer's gradient norm at initialization and at the end, and the number of seeds.

Run: ``python examples/11_depth_and_width.py [--small] [--out DIR]``
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from jaxnets import data, engine  # noqa: E402

NAME = "11_depth_and_width"


def config(small: bool) -> dict:
    if small:
        return dict(depths=(1, 2), widths=(8, 16), activations=("relu", "tanh"), seeds=1, steps=20, eval_every=10)
    return dict(depths=(1, 2, 3, 4), widths=(16, 32, 64, 128), activations=("relu", "tanh", "sigmoid"), seeds=2,
                steps=1000, eval_every=50)


def variants(cfg: dict) -> tuple[list[dict], pd.DataFrame]:
    """The rows for ``engine.train`` and a frame of their labels (activation, depth, width, seed)."""
    rows, labels = [], []
    for act in cfg["activations"]:
        for depth in cfg["depths"]:
            for width in cfg["widths"]:
                for seed in range(cfg["seeds"]):
                    rows.append(dict(hidden=(width,) * depth, activation=act, optimizer="adam", learning_rate=1e-3,
                                     batch_size=64, steps=cfg["steps"], eval_every=cfg["eval_every"], seed=seed))
                    labels.append({"activation": act, "depth": depth, "width": width, "seed": seed})
    return rows, pd.DataFrame(labels)


def summarize(result, labels: pd.DataFrame) -> pd.DataFrame:
    grads = result.history["grad_norm"][:, :, 0]  # the first layer, every evaluation
    cols = {"final_val_loss": result.final("val_loss"), "val_accuracy": result.final("val_accuracy"),
            "grad_first_init": grads[:, 0], "grad_first_end": grads[:, -1]}
    frame = labels.assign(**cols)
    out = frame.groupby(["activation", "depth", "width"], sort=False)[list(cols)].mean().reset_index()
    return out.assign(n_seeds=frame.groupby(["activation", "depth", "width"], sort=False).size().to_numpy())


def grid(table: pd.DataFrame, act: str, column: str, cfg: dict) -> np.ndarray:
    t = table[table.activation == act]
    return np.array([[t[(t.depth == d) & (t.width == w)][column].item() for w in cfg["widths"]]
                     for d in cfg["depths"]])


def panel(ax: plt.Axes, values: np.ndarray, cfg: dict, title: str, fmt: str, norm=None, cmap="viridis"):
    im = ax.imshow(values, cmap=cmap, norm=norm, aspect="auto", origin="lower")
    for r in range(values.shape[0]):
        for c in range(values.shape[1]):
            light = np.isfinite(values[r, c]) and im.norm(values[r, c]) > 0.6
            ax.text(c, r, format(values[r, c], fmt), ha="center", va="center", fontsize=8,
                    color="black" if light else "white")
    ax.set_xticks(range(len(cfg["widths"])), [str(w) for w in cfg["widths"]])
    ax.set_yticks(range(len(cfg["depths"])), [str(d) for d in cfg["depths"]])
    ax.set_xlabel("width (units per hidden layer)")
    ax.set_ylabel("depth (hidden layers)")
    ax.set_title(title)
    return im


def plot(table: pd.DataFrame, cfg: dict, n_variants: int, n_programs: int, out: Path) -> None:
    acts = cfg["activations"]
    fig, axes = plt.subplots(2, len(acts), figsize=(6 * len(acts), 10), squeeze=False)
    grads = np.concatenate([grid(table, a, "grad_first_init", cfg).ravel() for a in acts])
    positive = grads[np.isfinite(grads) & (grads > 0)]
    norm = LogNorm(vmin=float(positive.min()), vmax=float(max(positive.max(), positive.min() * 1.01)))
    for k, act in enumerate(acts):
        panel(axes[0][k], grid(table, act, "val_accuracy", cfg), cfg, f"({'abc'[k]}) {act}: final val accuracy",
              ".3f", cmap="viridis")
        panel(axes[1][k], grid(table, act, "grad_first_init", cfg), cfg,
              f"({'def'[k]}) {act}: first layer's gradient norm at init", ".2g", norm=norm, cmap="magma")
    fig.suptitle(f"Depth x width x activation on digits: {n_variants} variants, {n_programs} compiled program(s), "
                 f"{cfg['steps']} steps, {cfg['seeds']} seed(s)")
    C.save_figure(fig, out)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = C.parser(__doc__, NAME).parse_args(argv)
    timer = C.Timer()
    cfg = config(args.small)
    ds = data.load("digits", seed=0)
    rows, labels = variants(cfg)
    with C.timed(f"engine.train: {len(rows)} variants, every architecture in one program"):
        result = engine.train(rows, ds, options=engine.Options(mix_architectures=True))
    table = summarize(result, labels)
    C.write_table(table, args.out)
    plot(table, cfg, len(rows), len(result.groups), args.out)
    C.finish(args.out, timer)
    return table


if __name__ == "__main__":
    main()
