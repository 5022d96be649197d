"""Helpers the example scripts share: command line, output folder, table, figure, evaluation, timing.

Every example is ``python examples/NN_name.py [--small] [--out DIR]``; it writes ``DIR/table.csv`` and
``DIR/figure.png`` (default ``DIR``: ``runs/examples/<name>/``) and prints the table. ``main(argv)`` returns
the table as a DataFrame, so the tests can call it in-process.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

try:  # run from a checkout without `pip install -e .`: put the repository root on the path
    import jaxnets  # noqa: F401
except ImportError:  # pragma: no cover - depends on how the examples are run
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import matplotlib

matplotlib.use("Agg")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from jaxnets import engine, losses  # noqa: E402
from jaxnets.data import Dataset  # noqa: E402

__all__ = [
    "COLORS", "Timer", "apply_fn", "divergence_eval", "evaluate", "finish", "label_lines", "labels_for",
    "mark_diverged", "mean_band", "n_params", "nanmean", "parser", "save_figure", "timed",
    "truncated", "write_table",
]

#: One color per name, stable across figures (activations, initializers, methods, models).
COLORS: dict[str, str] = {
    "sigmoid": "tab:red", "tanh": "tab:orange", "relu": "tab:blue", "leaky_relu": "tab:green",
    "gelu": "tab:purple", "elu": "tab:brown",
    "MLP": "tab:blue", "CNN": "tab:green", "RNN": "tab:red",
    "grid": "tab:blue", "random": "tab:orange", "bayesian": "tab:green",
}


def parser(doc: str | None, name: str) -> argparse.ArgumentParser:
    """An argument parser with ``--small`` and ``--out`` (default ``runs/examples/<name>``)."""
    first = (doc or "").strip().splitlines()[0] if doc else name
    p = argparse.ArgumentParser(description=first, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small", action="store_true",
                   help="a tiny smoke-test size (seconds of compute, numbers not meaningful)")
    p.add_argument("--out", type=Path, default=Path("runs") / "examples" / name,
                   help="output folder for table.csv and figure.png (default: %(default)s)")
    return p


def write_table(df: pd.DataFrame, out: Path, name: str = "table.csv") -> Path:
    """Write ``df`` to ``out/name`` and print it."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    df.to_csv(path, index=False)
    with pd.option_context("display.max_columns", None, "display.width", 200, "display.max_rows", 200,
                           "display.float_format", lambda v: f"{v:.4g}"):
        print(df.to_string(index=False))
    return path


def save_figure(fig: plt.Figure, out: Path, name: str = "figure.png") -> Path:
    """Save ``fig`` to ``out/name`` (and close it)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def finish(out: Path, timer: Timer) -> None:
    """Print where the outputs are and how long the example took."""
    print(f"\nwrote {out / 'table.csv'} and {out / 'figure.png'} in {timer.elapsed():.1f} s")


class Timer:
    """Wall-clock time since creation."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


@contextlib.contextmanager
def timed(label: str) -> Iterator[None]:
    """Print how long the block took."""
    t0 = time.perf_counter()
    yield
    print(f"[{label}: {time.perf_counter() - t0:.1f} s]", flush=True)


# ---------------------------------------------------------------------------------------------------------
# Models and evaluation outside the engine (test-set numbers, parameter counts, custom diagnostics)
# ---------------------------------------------------------------------------------------------------------


def n_params(params: Any) -> int:
    """Number of scalars in a parameter pytree."""
    return int(sum(np.size(a) for a in jax.tree.leaves(params)))


@functools.cache
def apply_fn(model):
    """``jit(model.apply)``, cached per model (Flax modules are hashable)."""
    return jax.jit(lambda params, x: model.apply({"params": params}, x))


def labels_for(loss_name: str, y: np.ndarray, ds: Dataset) -> np.ndarray:
    """Labels in the layout ``loss_name`` takes (:func:`jaxnets.losses.labels_for`)."""
    return losses.labels_for(loss_name, y, ds.output_dim, ds.task)


def evaluate(result, ds: Dataset, split: str = "test") -> pd.DataFrame:
    """Loss and accuracy of every variant of an engine ``result`` on ``split`` (default: the test set).

    Uses each variant's final parameters (the best ones for early-stopped variants) and its own loss.
    Returns a DataFrame with columns ``variant, <split>_loss, <split>_accuracy`` (accuracy NaN for mse).
    """
    x = np.asarray(getattr(ds, f"x_{split}"), np.float32)
    y_raw = getattr(ds, f"y_{split}")
    rows = []
    for i, row in enumerate(result.rows):
        model = engine.model(row, ds)
        logits = apply_fn(model)(result.params(i), x)
        loss_name = row["loss"]
        y = jnp.asarray(labels_for(loss_name, y_raw, ds))
        z = losses.fit_logits(loss_name, logits, y)
        loss = float(jnp.mean(losses.get(loss_name)(z, y)))
        acc = float(jnp.mean(losses.accuracy(loss_name, z, y))) if losses.has_accuracy(loss_name) else np.nan
        rows.append({"variant": i, f"{split}_loss": loss, f"{split}_accuracy": acc})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------------
# Plotting
# ---------------------------------------------------------------------------------------------------------


def mean_band(ax: plt.Axes, x: np.ndarray, ys: np.ndarray, label: str | None = None, color: str | None = None,
              log: bool = False, **kw: Any) -> None:
    """Plot the mean of ``ys`` [n, len(x)] over its first axis with a min-max band (geometric if ``log``)."""
    ys = np.asarray(ys, np.float64)
    if ys.ndim == 1:
        ys = ys[None]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if log:
            safe = np.where(ys > 0, ys, np.nan)
            center = np.exp(np.nanmean(np.log(safe), axis=0))
        else:
            center = np.nanmean(ys, axis=0)
        lo, hi = np.nanmin(ys, axis=0), np.nanmax(ys, axis=0)
    (line,) = ax.plot(x, center, label=label, color=color, **kw)
    if len(ys) > 1:
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.15, linewidth=0)


def divergence_eval(result, i: int) -> int | None:
    """Index of the first evaluation at or after variant ``i`` diverged (None if it did not diverge)."""
    if result.status[i] != "diverged":
        return None
    steps = np.asarray(result.eval_steps)
    return int(min(np.searchsorted(steps, result.stopped_step[i]), len(steps) - 1))


def truncated(result, idx: Sequence[int], values: np.ndarray) -> np.ndarray:
    """``values`` [len(idx), E] with NaN after each diverged variant's divergence (the engine repeats the
    last evaluation's values, which for a diverged variant can be huge or NaN)."""
    out = np.array(values, np.float64)
    for row, i in enumerate(idx):
        k = divergence_eval(result, i)
        if k is not None:
            out[row, k + 1:] = np.nan
    return out


def mark_diverged(ax: plt.Axes, result, idx: Sequence[int], values: np.ndarray, color: str | None = None,
                  ymax: float | None = None) -> None:
    """Put an ``x`` where each diverged variant of ``idx`` diverged, at its last finite value of ``values``
    [len(idx), E] up to then (at ``ymax`` if that value is above it)."""
    steps = np.asarray(result.eval_steps)
    for row, i in enumerate(idx):
        k = divergence_eval(result, i)
        if k is None:
            continue
        h = np.asarray(values[row][: k + 1], np.float64)
        ok = np.flatnonzero(np.isfinite(h))
        if len(ok):
            y = h[ok[-1]] if ymax is None else min(h[ok[-1]], ymax)
            ax.plot(steps[k], y, "x", color=color, ms=9, mew=2, clip_on=False)


def nanmean(a: Any) -> float:
    """``np.nanmean`` that returns NaN quietly for an all-NaN input."""
    a = np.asarray(a, np.float64)
    return float(np.nanmean(a)) if np.any(~np.isnan(a)) else float("nan")


def label_lines(ax: plt.Axes, **kw: Any) -> None:
    """A small legend."""
    ax.legend(fontsize=7, frameon=False, **kw)
