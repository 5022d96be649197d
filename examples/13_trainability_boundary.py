"""The boundary of trainability is fractal: a 256 x 256 grid of per-layer learning rates, 65,536 networks in
one program (after Sohl-Dickstein 2024, "The boundary of neural network trainability is fractal").

Claim
    Training is an iterated map, like the one that draws the Mandelbrot set: whether full-batch gradient
    descent on a small network converges or diverges depends on its learning rates, and the boundary between
    the two regions, plotted over a (layer-1, layer-2) learning-rate plane, is not a smooth curve but a
    fractal: it stays ragged when one zooms in, and its box-counting dimension lies between 1 (a smooth curve)
    and 2 (a filled area). The paper reports dimensions of about 1.2 to 2 across its configurations. Here
    the experiment is one ``engine.train`` call per picture: every grid point is one variant, with its own
    two learning rates (your own optimizer, ``optax.multi_transform`` over the two layers), trained from the
    same initial parameters on the same data. Measured at the default size: over the full nine decades the
    boundary is, to box counting, a curve (dimension 1.03); in a 16x zoom into its roughest window it is a
    band of interleaved converged and divergent cells with dimension 1.60, inside the paper's range — with
    the caveats in examples/README.md (the window is chosen for its roughness; one zoom level).

Sweep
    A network ``f(x) = (1/n) W2 tanh(sqrt(2/d) W1 x)`` (mean-field output scale ``1/n``; the input scale and
    the ``sqrt(2)`` gain as in the paper's code), width ``n = 16``, input dimension ``d = 16``, no biases,
    ``W1`` [16, 16] and ``W2`` [16, 1] drawn from N(0, 1) with seed 0 for EVERY variant (the same initial
    parameters at every grid point, as in the paper). Data: ``--points`` (default 16) inputs x ~ N(0, I_16)
    with targets y ~ N(0, 1) (numpy seed 0), not standardized; loss: mean squared error. Full-batch gradient
    descent (``batch_size`` = the number of points, so each step takes every example), plain SGD with the
    rate ``lr1`` on ``W1`` and ``lr2`` on ``W2``, 500 steps, an evaluation every 25 steps. Grid: 256 x 256
    log-spaced rates, ``lr1`` and ``lr2`` from 1e-3 to 1e6 (the range of the paper's notebook) — 65,536
    variants in one call — then a second call of 256 x 256 variants inside a window on the boundary 1/16 of
    the grid wide in each direction (0.56 decades), the window of the first grid that holds the most
    boundary. ``--small``: 32 x 32, a 16 x 16 zoom, 100 steps.

    Departures from the paper, stated: the paper's notebook trains in float64, here float32; it uses as many
    training points as the network has parameters (272; ``--points 272`` does that, ~17x the compute per
    step: 104-120 s per 16,384-variant grid on 2 cores, so ~7-8 minutes per 65,536-variant grid), here 16
    by default; it tracks the loss at every step,
    here at every 25th step.

    A variant counts as converged when its loss stayed finite and the mean of its last four evaluated
    training losses (steps 425-500; 25 is odd, so a period-2 oscillation is sampled in both phases) is below
    its step-0 loss — the paper's rule (the mean of the last 20 normalized losses below 1). A finite run
    whose loss did not fall counts as not converged, as in the paper. The rows set ``divergence_factor = 0``:
    the engine then marks a variant ``diverged`` (and freezes it) only when its loss or parameters become
    non-finite, not when its loss passes 1000x its step-0 loss at an evaluation (the default rule). Near the
    boundary many runs first blow up and then train (a "catapult"): at ``lr1 = 1e-3, lr2 = 195`` the loss
    rises to 2,700x its start by step ~10 and ends at 1.6 % of it, converged by the paper's rule; the
    1000x rule would call it diverged when it happens to be checked at the peak, so the picture would
    depend on ``eval_every``.

Figure (figure.png)
    (a) the full grid: blue = converged (darker: the loss fell faster; rank of the mean normalized loss over
    the evaluations), red = not converged (darker: diverged sooner; rank of the mean of loss_0 / loss up to
    divergence); log axes; the box marks the zoom window. (b) the zoom window, coloured the same way.
    (c) box counting: the number N(s) of s x s boxes (s = 1, 2, 4, ... grid cells) that hold a piece of the
    boundary (a 2 x 2 block of cells holding both classes), against 1/s, for both grids, with the fitted
    slope (the box-counting dimension) and reference slopes 1 and 2.

Table (table.csv)
    One row per grid (full, zoom): its learning-rate window, resolution and number of variants, how many
    converged, diverged (engine status: a non-finite loss) and stayed finite without converging, the number
    of boundary pieces, the box-counting dimension (least-squares slope of log N(s) against log(1/s) over
    all box sizes) and the median of the local slopes between successive box sizes (the paper's estimator,
    which the paper takes over a whole sequence of zoomed images), and the seconds
    ``engine.train`` took. ``boxcount.csv``: N(s) per grid and box size. ``grids.npz``: both grids'
    learning rates, classes and colour measures, to redraw the figure.

Run: ``python examples/13_trainability_boundary.py [--small] [--points N] [--out DIR]``
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import flax.linen as nn  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402

from jaxnets import data, engine  # noqa: E402

NAME = "13_trainability_boundary"
WIDTH = 16  # hidden units n
DIM = 16  # input dimension d
LOG_RANGE = (-3.0, 6.0)  # log10 learning rates of the full grid, both axes (the paper's notebook)
ZOOM_FRACTION = 16  # the zoom window is 1/16 of the full grid wide in each direction
LAST = 4  # evaluations averaged for the convergence rule
KEYS = {"lr1": "vmapped", "lr2": "vmapped"}


class MeanFieldNet(nn.Module):
    """``(1/n) W2 tanh(sqrt(2) W1 x / sqrt(d))``: one hidden tanh layer, no biases, weights N(0, 1)."""

    hp: object

    @nn.compact
    def __call__(self, x):
        init = nn.initializers.normal(1.0)
        z = nn.Dense(WIDTH, use_bias=False, kernel_init=init, name="layer1")(x) / np.sqrt(x.shape[-1])
        h = jnp.tanh(np.sqrt(2.0) * z)
        self.sow("intermediates", "act", h)
        return nn.Dense(1, use_bias=False, kernel_init=init, name="layer2")(h) / WIDTH


def per_layer_sgd(hp):
    """Plain gradient descent with the variant's ``lr1`` on layer 1 and ``lr2`` on layer 2."""
    return optax.multi_transform({"layer1": optax.sgd(hp["lr1"]), "layer2": optax.sgd(hp["lr2"])},
                                 lambda params: {name: name for name in params})


def squared_error(outputs, y):
    """Per-example squared error [B] (the mean over the batch is the paper's MSE)."""
    return jnp.mean((outputs - y) ** 2, axis=-1)


def config(small: bool, points: int) -> dict:
    if small:
        return dict(res=32, zoom_res=16, steps=100, eval_every=25, points=points)
    return dict(res=256, zoom_res=256, steps=500, eval_every=25, points=points)


def dataset(points: int) -> data.Dataset:
    """``points`` Gaussian inputs with Gaussian targets; validation and test are the training set itself
    (this experiment is about optimization, not generalization)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(points, DIM))
    y = rng.normal(size=(points,))
    return data.from_arrays(x, y, task="regression", standardize=False, x_val=x, y_val=y, x_test=x, y_test=y,
                            name=f"gaussian_{points}")


def train_grid(ds: data.Dataset, cfg: dict, lo1: float, hi1: float, lo2: float, hi2: float, res: int):
    """Train the ``res x res`` grid of log-spaced ``(lr1, lr2)`` in one ``engine.train`` call.

    Returns ``(lr1 [res], lr2 [res], result, seconds)``; variant ``i * res + j`` has ``lr2[i]``, ``lr1[j]``.
    """
    lr1, lr2 = np.logspace(lo1, hi1, res), np.logspace(lo2, hi2, res)
    rows = [{"lr1": float(a), "lr2": float(b), "steps": cfg["steps"], "eval_every": cfg["eval_every"],
             "batch_size": cfg["points"], "shared_data": True, "seed": 0, "divergence_factor": 0.0}
            for b in lr2 for a in lr1]
    timer = C.Timer()
    with C.timed(f"engine.train: {res} x {res} = {len(rows)} variants"):
        result = engine.train(rows, ds, model=lambda hp: MeanFieldNet(hp), optimizer=per_layer_sgd,
                              loss=squared_error, extra_keys=KEYS)
    return lr1, lr2, result, timer.elapsed()


def classify(result, res: int) -> dict[str, np.ndarray]:
    """Each grid point's class and colour measure, as [res, res] arrays (rows: lr2, columns: lr1).

    ``converged``: finite (not ``diverged``) and the mean of the last ``LAST`` evaluated losses below the
    step-0 loss. ``diverged``: the engine's status (with ``divergence_factor = 0``: a non-finite loss).
    ``measure``: for converged points the mean over evaluations of loss / loss_0 (small: trained fast);
    for the others the mean of loss_0 / loss up to divergence (small: diverged fast).
    """
    n = len(result.rows)
    loss = C.truncated(result, range(n), result.history["train_loss"])  # NaN after divergence
    ratio = loss / loss[:, :1]
    diverged = result.status == "diverged"
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN tails: variants diverged before them
        tail = np.nanmean(ratio[:, -LAST:], axis=1)
        converged = ~diverged & (tail < 1.0)
        inverse = np.where(np.isfinite(ratio), 1.0 / ratio, 0.0)
        measure = np.where(converged, np.nanmean(ratio, axis=1), np.mean(inverse, axis=1))
    shape = (res, res)
    return {"converged": converged.reshape(shape), "diverged": diverged.reshape(shape),
            "measure": measure.reshape(shape)}


def edges(converged: np.ndarray) -> np.ndarray:
    """The boundary at grid resolution: each 2 x 2 block of cells that holds both classes ([res-1, res-1])."""
    blocks = np.stack([converged[1:, 1:], converged[:-1, 1:], converged[1:, :-1], converged[:-1, :-1]])
    return blocks.any(axis=0) & ~blocks.all(axis=0)


def box_counts(edge: np.ndarray, res: int) -> pd.DataFrame:
    """N(s): the number of s x s boxes (s = 1, 2, 4, ... up to a quarter of the grid) holding a boundary piece."""
    out = []
    s = 1
    while s <= res // 4:
        h, w = -(-edge.shape[0] // s) * s, -(-edge.shape[1] // s) * s
        padded = np.zeros((h, w), bool)
        padded[: edge.shape[0], : edge.shape[1]] = edge
        boxes = padded.reshape(h // s, s, w // s, s).any(axis=(1, 3))
        out.append({"box_size": s, "n_boxes": int(boxes.sum())})
        s *= 2
    return pd.DataFrame(out)


def dimension(counts: pd.DataFrame) -> tuple[float, float]:
    """(least-squares slope of log N(s) against log(1/s), median of the local slopes); NaN without boundary."""
    c = counts[counts.n_boxes > 0]
    if len(c) < 2:
        return float("nan"), float("nan")
    x, y = np.log(1.0 / c.box_size.to_numpy(float)), np.log(c.n_boxes.to_numpy(float))
    slope = float(np.polyfit(x, y, 1)[0])
    local = np.diff(y) / np.diff(x)
    return slope, float(np.median(local))


def zoom_window(edge: np.ndarray, res: int, lo: float, hi: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """The window ``res / ZOOM_FRACTION`` cells wide (at least 2) holding the most boundary pieces, as
    ``((lo1, hi1), (lo2, hi2))`` in log10 learning rate (ties: the first in row-major order)."""
    w = max(2, res // ZOOM_FRACTION)
    sums = np.pad(edge.astype(np.int64), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    window = sums[w:, w:] - sums[:-w, w:] - sums[w:, :-w] + sums[:-w, :-w]  # [res-w, res-w]: top-left (i, j)
    i, j = np.unravel_index(int(np.argmax(window)), window.shape)
    step = (hi - lo) / (res - 1)
    # edge[i, j] lies between cells (i, j) and (i+1, j+1): the window spans cells i .. i+w
    return (lo + j * step, lo + (j + w) * step), (lo + i * step, lo + (i + w) * step)


def colours(grid: dict[str, np.ndarray]) -> np.ndarray:
    """An RGB image: blue shades for converged points, red shades for the others, by rank of ``measure``."""
    img = np.ones(grid["converged"].shape + (3,))
    for mask, cmap in ((grid["converged"], plt.get_cmap("Blues_r")), (~grid["converged"], plt.get_cmap("Reds_r"))):
        values = grid["measure"][mask]
        if values.size:
            ranks = np.argsort(np.argsort(values)) / max(values.size - 1, 1)
            img[mask] = cmap(0.1 + 0.6 * ranks)[:, :3]  # dark (fast) to light (slow), never white
    return img


def show(ax: plt.Axes, grid: dict[str, np.ndarray], extent: tuple[float, float, float, float], title: str) -> None:
    ax.imshow(colours(grid), origin="lower", extent=extent, aspect="auto", interpolation="nearest")
    ax.set_xlabel("layer-1 (input) learning rate, log10")
    ax.set_ylabel("layer-2 (output) learning rate, log10")
    ax.set_title(title, fontsize=10)


def plot(grids: dict[str, dict], counts: pd.DataFrame, table: pd.DataFrame, cfg: dict, out: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(19, 6))
    full, zoom = grids["full"], grids["zoom"]
    show(axes[0], full, full["extent"],
         f"(a) {cfg['res']} x {cfg['res']} = {cfg['res'] ** 2:,} networks, one engine.train call")
    x0, x1, y0, y1 = zoom["extent"]
    axes[0].add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="black", linewidth=1.5))
    axes[0].legend(handles=[Patch(color=plt.get_cmap("Blues_r")(0.3), label="converged (darker: faster)"),
                            Patch(color=plt.get_cmap("Reds_r")(0.3), label="not converged (darker: diverged sooner)")],
                   loc="lower left", fontsize=8, framealpha=0.9)
    show(axes[1], zoom, zoom["extent"],
         f"(b) zoom: the boxed window, {cfg['zoom_res']} x {cfg['zoom_res']} networks")
    ax = axes[2]
    for (name, part), color in zip(counts.groupby("grid", sort=False), ("tab:blue", "tab:red"), strict=False):
        row = table[table.grid == name].iloc[0]
        inv = 1.0 / part.box_size.to_numpy(float)
        n = part.n_boxes.to_numpy(float)
        ax.plot(inv, n, "o", color=color, label=f"{name}: dimension {row.dimension:.2f} "
                                                f"(median local slope {row.dimension_median_local:.2f})")
        keep = n > 0
        if keep.sum() >= 2:
            fit = np.polyfit(np.log(inv[keep]), np.log(n[keep]), 1)
            ax.plot(inv[keep], np.exp(np.polyval(fit, np.log(inv[keep]))), "-", color=color, alpha=0.6)
    ref_x = 1.0 / counts.box_size.unique().astype(float)
    top = counts.n_boxes.max()
    for slope, style in ((1, ":"), (2, "--")):
        ax.plot(ref_x, top * (ref_x / ref_x.max()) ** slope, style, color="grey", label=f"slope {slope}")
    ax.set(xscale="log", yscale="log", xlabel="1 / box size (grid cells)", ylabel="boxes holding boundary N(s)",
           title="(c) box counting: log N(s) against log(1/s)")
    ax.legend(fontsize=8)
    fig.suptitle(f"Trainability of f(x) = W2 tanh(W1 x)/n (n = {WIDTH}, {cfg['points']} points, full-batch GD, "
                 f"{cfg['steps']} steps) over per-layer learning rates", fontsize=11)
    C.save_figure(fig, out)


def summarize(name: str, grid: dict, res: int, seconds: float) -> tuple[dict, pd.DataFrame]:
    edge = edges(grid["converged"])
    counts = box_counts(edge, res)
    slope, median = dimension(counts)
    x0, x1, y0, y1 = grid["extent"]
    row = {"grid": name, "log10_lr1_min": x0, "log10_lr1_max": x1, "log10_lr2_min": y0, "log10_lr2_max": y1,
           "resolution": res, "n_variants": res * res, "n_converged": int(grid["converged"].sum()),
           "n_diverged": int(grid["diverged"].sum()),
           "n_finite_not_converged": int((~grid["converged"] & ~grid["diverged"]).sum()),
           "n_boundary": int(edge.sum()), "dimension": slope, "dimension_median_local": median,
           "train_seconds": seconds}
    return row, counts.assign(grid=name)[["grid", "box_size", "n_boxes"]]


def main(argv: list[str] | None = None) -> pd.DataFrame:
    p = C.parser(__doc__, NAME)
    p.add_argument("--points", type=int, default=16,
                   help="training points (default %(default)s; the paper's notebook: 272, as many as parameters)")
    args = p.parse_args(argv)
    timer = C.Timer()
    cfg = config(args.small, args.points)
    ds = dataset(cfg["points"])
    lo, hi = LOG_RANGE

    lr1, lr2, result, seconds = train_grid(ds, cfg, lo, hi, lo, hi, cfg["res"])
    full = classify(result, cfg["res"]) | {"extent": (lo, hi, lo, hi), "lr1": lr1, "lr2": lr2}
    del result
    (z1, z2) = zoom_window(edges(full["converged"]), cfg["res"], lo, hi)
    zlr1, zlr2, zresult, zseconds = train_grid(ds, cfg, *z1, *z2, cfg["zoom_res"])
    zoom = classify(zresult, cfg["zoom_res"]) | {"extent": (*z1, *z2), "lr1": zlr1, "lr2": zlr2}
    del zresult

    rows, counts = zip(summarize("full", full, cfg["res"], seconds),
                       summarize("zoom", zoom, cfg["zoom_res"], zseconds), strict=True)
    table = pd.DataFrame(list(rows))
    counts = pd.concat(counts, ignore_index=True)
    C.write_table(table, args.out)
    counts.to_csv(args.out / "boxcount.csv", index=False)
    np.savez_compressed(args.out / "grids.npz",
                        **{f"{name}_{key}": np.asarray(g[key]) for name, g in (("full", full), ("zoom", zoom))
                           for key in ("lr1", "lr2", "converged", "diverged", "measure", "extent")})
    plot({"full": full, "zoom": zoom}, counts, table, cfg, args.out)
    C.finish(args.out, timer)
    return table


if __name__ == "__main__":
    main()
