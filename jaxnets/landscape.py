"""Pictures of a sweep, not of its variants: the ranking metric over the swept axes, and each axis's importance.

Both read the results table (``results.csv``: one row per variant, a column per swept axis, ``status`` and the
metric columns) and draw aggregates, so they cost the same few artists at 8 variants and at 65,536:

* :func:`landscape_figure` (``plots/landscape.png``): the metric over the swept axes, where each cell or point
  is the median over the variants that share it (seeds, and any axes not drawn). Two numeric axes: a heatmap
  (log-scaled where the axis is log: ``log = true``, or positive values spaced evenly in log); a further
  categorical (or few-valued) axis: small multiples; one axis: a line with its 10-90 % band; two categorical
  axes: a heatmap with the values written in. Cells where most variants diverged are drawn in their own
  colour (red): the trainability boundary. Axes with more distinct values than :data:`MAX_CELLS` (a sampled
  learning rate) are binned; a random search with few trials is drawn as points instead.
* :func:`importance_figure` (``plots/importance.png``): each axis's share of the variance of the ranking
  by fANOVA (Hutter et al., 2014), computed by Optuna's ``FanovaImportanceEvaluator`` (a random forest of
  :data:`FANOVA_TREES` trees of depth :data:`FANOVA_DEPTH`, seed 0) on an in-memory study built from the
  table (:func:`importances`: at most :data:`IMPORTANCE_TRIALS` variants), fitted to the variants' ranks
  by the metric (so that a few huge losses do not dominate the variance); diverged variants rank last
  (tied), so an axis that decides trainability ranks high.

Example::

    >>> import pandas as pd
    >>> table = pd.DataFrame({"lr": [0.01, 0.1, 1.0] * 2, "act": ["tanh"] * 3 + ["relu"] * 3,
    ...                       "status": ["ok"] * 5 + ["diverged"], "final_val_loss": [0.9, 0.3, 0.2, 0.8, 0.2, 9]})
    >>> [(a.name, a.numeric, a.log) for a in describe(table, ["lr", "act"])]
    [('lr', True, True), ('act', False, False)]
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.colors import ListedColormap, LogNorm, Normalize
from matplotlib.figure import Figure

__all__ = [
    "MAX_CELLS", "BINS", "MAX_PANELS", "MAX_POINTS", "IMPORTANCE_TRIALS", "FANOVA_TREES", "FANOVA_DEPTH",
    "DIVERGED_COLOUR", "AxisInfo",
    "describe", "bins", "cell_stats", "importances", "landscape_figure", "importance_figure",
]

#: A numeric axis with at most this many distinct values is drawn value by value (a grid); above, binned.
MAX_CELLS = 256
#: Bins per binned numeric axis (heatmaps; a line uses :data:`BINS` too).
BINS = 48
#: Most small multiples (panels) in the landscape; values of the panel axis beyond these are left out.
MAX_PANELS = 12
#: A sweep with a binned axis and at most this many variants is drawn as points (one artist), not cells.
MAX_POINTS = 3000
#: fANOVA fits on at most this many variants (a seeded random subsample above).
IMPORTANCE_TRIALS = 2000
#: The fANOVA forest: trees, and their depth (Optuna's defaults, 64 and 64, cost ~30 s at 2000 variants;
#: depth 8 gives the same importances to ~0.01 on a 256 x 256 grid, and 16 trees instead of 64 to ~0.001:
#: 2.3 -> 0.4 s on the 2-core Xeon, benchmarks/README.md "10^5 variants").
FANOVA_TREES, FANOVA_DEPTH = 16, 8
DIVERGED_COLOUR = "#d62728"
_QUANTILES = (0.1, 0.9)


@dataclasses.dataclass(frozen=True)
class AxisInfo:
    """How one swept axis is drawn.

    Attributes:
      name: the axis (a column of the results table).
      numeric: its values are numbers (not booleans): a continuous position; else categories.
      log: numeric, positive and log-spaced (a ``log = true`` range, or values evenly spaced in log).
      values: the distinct values: sorted numbers, or categories in order of first appearance.
      lattice: grid values, few enough (:data:`MAX_CELLS`) to draw one cell per value: a list of values
        (at most 16, or each value shared by two variants or more on average), or an integer range; a
        sampled range is binned.
    """

    name: str
    numeric: bool
    log: bool
    values: tuple[Any, ...]
    lattice: bool


def _is_numeric(column) -> bool:
    from pandas.api import types

    return types.is_numeric_dtype(column) and not types.is_bool_dtype(column)


def _log_spaced(values: np.ndarray) -> bool:
    """Positive values that span > 20x, or at least 3 values more evenly spaced in log than linearly."""
    if values.size < 2 or values.min() <= 0:
        return False
    if values.max() / values.min() > 20:
        return True
    if values.size < 3:
        return False
    lin, log = np.diff(values), np.diff(np.log(values))
    return bool(np.std(log) / np.mean(log) < np.std(lin) / np.mean(lin) - 0.1)


def describe(table, axes: Sequence[Any]) -> list[AxisInfo]:
    """How to draw each swept axis that varies in ``table``.

    Args:
      table: the results table.
      axes: the swept axes: names, or :class:`jaxnets.config.Axis` (whose ``log`` is then used; a linear
        range stays linear).

    Returns:
      one :class:`AxisInfo` per axis with at least two distinct values, in the order given.
    """
    out = []
    for axis in axes:
        name = axis if isinstance(axis, str) else axis.name
        column = table[name]
        if column.nunique(dropna=False) < 2:
            continue
        numeric = _is_numeric(column)
        if numeric:
            values = np.unique(column.to_numpy(dtype=float))
            sampled = not isinstance(axis, str) and getattr(axis, "is_range", False)
            log = bool(axis.log) if sampled else _log_spaced(values)
            # a grid's values (few, or repeated across the other axes), not a sampled range's
            grid = values.size <= 16 or len(column) >= 2 * values.size
            lattice = values.size <= MAX_CELLS and (getattr(axis, "integer", False) if sampled else grid)
            out.append(AxisInfo(name, True, log, tuple(values.tolist()), lattice))
        else:
            values = tuple(dict.fromkeys(column.astype(str)))
            out.append(AxisInfo(name, False, False, values, True))
    return out


def _midpoints(v: np.ndarray, log: bool) -> np.ndarray:
    """Cell edges around sorted centres ``v`` (geometric midpoints on a log axis)."""
    t = np.log(v) if log else v.astype(float)
    if t.size == 1:
        inner, ends = np.empty(0), (t[0] - 0.5, t[0] + 0.5)
    else:
        inner = (t[1:] + t[:-1]) / 2
        ends = (t[0] - (inner[0] - t[0]), t[-1] + (t[-1] - inner[-1]))
    edges = np.concatenate([[ends[0]], inner, [ends[1]]])
    return np.exp(edges) if log else edges


def bins(info: AxisInfo, column, n_bins: int = BINS) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Assign each row to a cell of ``info``'s axis.

    Args:
      info: the axis.
      column: its values, one per row.
      n_bins: bins for a numeric axis that is not a lattice (equal width, in log on a log axis).

    Returns:
      ``(index [V] int, edges [n + 1], labels [n])``: the cell of each row; cell edges in data units (numeric
      axes) or ``-0.5 .. n - 0.5`` (categories); a short label per cell.
    """
    if not info.numeric:
        codes = {v: k for k, v in enumerate(info.values)}
        index = np.array([codes[v] for v in column.astype(str)]) if len(codes) > 1 else np.zeros(len(column), int)
        return index, np.arange(len(info.values) + 1) - 0.5, list(info.values)
    x = column.to_numpy(dtype=float)
    if info.lattice:
        centres = np.asarray(info.values, dtype=float)
        index = np.searchsorted(centres, x)
        return index, _midpoints(centres, info.log), [f"{c:g}" for c in centres]
    lo, hi = min(info.values), max(info.values)
    edges = np.geomspace(lo, hi, n_bins + 1) if info.log else np.linspace(lo, hi, n_bins + 1)
    index = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, n_bins - 1)
    return index, edges, [f"{a:.3g}-{b:.3g}" for a, b in zip(edges[:-1], edges[1:], strict=True)]


def _scores(table, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """``(metric of the variants that did not diverge, NaN elsewhere [V], diverged [V] bool)``."""
    diverged = (table["status"] == "diverged").to_numpy()
    value = table[metric].to_numpy(dtype=float).copy()
    value[diverged | ~np.isfinite(value)] = np.nan
    return value, diverged


def cell_stats(table, metric: str, index: Sequence[np.ndarray], shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """The metric's median, 10 % and 90 % quantiles, variant count and diverged fraction per cell.

    Args:
      table: the results table.
      metric: the column to aggregate (over the variants that did not diverge, finite values only).
      index: per drawn axis, each row's cell (from :func:`bins`).
      shape: the number of cells per axis.

    Returns:
      ``{"median", "lo", "hi", "count", "diverged"}``, arrays of ``shape`` (NaN where a cell has no finite
      value; ``count`` 0 where it has no variant).
    """
    import pandas as pd

    value, diverged = _scores(table, metric)
    flat = np.ravel_multi_index(tuple(index), shape) if index else np.zeros(len(table), int)
    size = int(np.prod(shape))
    count = np.bincount(flat, minlength=size).astype(float)
    out = {"count": count, "diverged": np.bincount(flat, weights=diverged, minlength=size) / np.maximum(count, 1)}
    groups = pd.Series(value).groupby(flat)
    for key, q in (("median", 0.5), ("lo", _QUANTILES[0]), ("hi", _QUANTILES[1])):
        cells = np.full(size, np.nan)
        s = groups.quantile(q)
        cells[s.index.to_numpy()] = s.to_numpy()
        out[key] = cells
    return {k: v.reshape(shape) for k, v in out.items()}


# ---------------------------------------------------------------------------------------------------------
# Importance (fANOVA)
# ---------------------------------------------------------------------------------------------------------


def _distribution(info: AxisInfo, column):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if not info.numeric:
        return CategoricalDistribution(list(info.values)), column.astype(str).tolist()
    lo, hi = float(min(info.values)), float(max(info.values))
    from pandas.api import types

    if types.is_integer_dtype(column) and not (info.log and lo < 1):
        return IntDistribution(int(lo), int(hi), log=info.log), [int(v) for v in column]
    return FloatDistribution(lo, hi, log=info.log), [float(v) for v in column]


def importances(table, axes: Sequence[Any], metric: str, goal: str, *, max_trials: int = IMPORTANCE_TRIALS,
                seed: int = 0) -> dict[str, float]:
    """Each swept axis's fANOVA importance for the ranking by ``metric`` (Optuna's ``FanovaImportanceEvaluator``
    fitted to the variants' ranks).

    Args:
      table: the results table.
      axes: the swept axes (names or :class:`jaxnets.config.Axis`); those with one value are left out.
      metric: the column to explain.
      goal: ``"min"`` or ``"max"``: diverged variants (and non-finite values) rank last.
      max_trials: fit on a seeded random subsample of at most this many variants.
      seed: the subsample's and the forest's seed.

    Returns:
      ``{axis: importance}``, summing to 1, most important first; empty when there is nothing to explain
      (no varying axis, or the metric takes a single value).
    """
    import optuna

    infos = describe(table, axes)
    value, diverged = _scores(table, metric)
    finite = value[np.isfinite(value)]
    if not infos or finite.size == 0:
        return {}
    import pandas as pd

    worst = np.inf if goal == "min" else -np.inf
    rows = np.arange(len(table))
    if rows.size > max_trials:
        rows = np.sort(np.random.default_rng(seed).choice(rows.size, max_trials, replace=False))
    value = pd.Series(np.where(np.isfinite(value), value, worst)[rows]).rank(method="average").to_numpy()
    if np.ptp(value) == 0:
        return {}
    sub = table.iloc[rows]
    dists, params = {}, {}
    for info in infos:
        dists[info.name], params[info.name] = _distribution(info, sub[info.name])
    trials = [optuna.trial.create_trial(params={n: params[n][k] for n in params}, distributions=dists,
                                        value=float(value[k])) for k in range(rows.size)]
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study = optuna.create_study(direction="minimize" if goal == "min" else "maximize")
            study.add_trials(trials)
            result = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(
                    n_trees=FANOVA_TREES, max_depth=FANOVA_DEPTH, seed=seed))
    finally:
        optuna.logging.set_verbosity(level)
    return {k: float(v) for k, v in sorted(result.items(), key=lambda kv: -kv[1])}


def importance_figure(table, axes: Sequence[Any], metric: str, goal: str,
                      importance: Mapping[str, float] | None = None) -> Figure:
    """Horizontal bars: each axis's fANOVA importance for ``metric`` (see :func:`importances`).

    Args:
      table: the results table.
      axes: the swept axes.
      metric: the ranking column.
      goal: ``"min"`` or ``"max"``.
      importance: precomputed :func:`importances` (computed when ``None``).

    Returns:
      the figure.
    """
    if importance is None:
        importance = importances(table, axes, metric, goal)
    names = list(importance)[::-1]
    fig = Figure(figsize=(6.4, 1.4 + 0.4 * max(len(names), 1)), layout="constrained")
    ax = fig.subplots()
    used = min(len(table), IMPORTANCE_TRIALS)
    if names:
        ax.barh(names, [importance[n] for n in names], color="tab:blue")
        for k, n in enumerate(names):
            ax.text(importance[n], k, f" {importance[n]:.2f}", va="center", fontsize=8)
        ax.set_xlim(0, 1.1)
    else:
        ax.text(0.5, 0.5, "nothing to explain: no swept axis varies, or the metric is constant",
                ha="center", va="center", transform=ax.transAxes)
        ax.set_yticks([])
    ax.set_xlabel("fANOVA importance (share of the variance of the variants' ranks)")
    ax.set_title(f"Importance of each axis for {metric} ({goal}); Optuna fANOVA on {used:,} variants"
                 + (f" of {len(table):,}" if used < len(table) else ""), fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    return fig


# ---------------------------------------------------------------------------------------------------------
# Landscape
# ---------------------------------------------------------------------------------------------------------


def _layout(infos: list[AxisInfo], importance: Mapping[str, float] | None):
    """``(drawn axes: x [, y], panel axis or None, aggregated axes)``: the most important numeric axes are
    drawn, categorical ones preferred as panels; ``seed`` is always aggregated over."""
    rank = {n: k for k, n in enumerate(importance or {})}
    infos = sorted([i for i in infos if i.name != "seed"], key=lambda i: rank.get(i.name, len(rank)))
    numeric, cats = [i for i in infos if i.numeric], [i for i in infos if not i.numeric]
    if numeric:
        drawn = numeric[:2]
        rest = numeric[2:] + cats if len(numeric) >= 2 else cats[1:]
        colour = cats[0] if len(numeric) == 1 and cats and len(cats[0].values) <= 8 else None
        if len(numeric) == 1 and cats and colour is None:
            rest = cats
    else:
        drawn, rest, colour = cats[:2], cats[2:], None
    few = [i for i in rest if len(i.values) <= MAX_PANELS and (not i.numeric or i.lattice)]
    panel = next((i for i in few if not i.numeric), few[0] if few else None)
    return drawn, colour, panel, [i for i in rest if i is not panel]


def _norm(values: np.ndarray) -> Normalize:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return Normalize(0, 1)
    lo, hi = float(finite.min()), float(finite.max())
    if lo > 0 and hi / lo > 20:
        return LogNorm(lo, hi)
    return Normalize(lo, hi if hi > lo else lo + 1e-9)


def _set_scale(ax, info: AxisInfo, which: str) -> None:
    set_scale, set_label = (ax.set_xscale, ax.set_xlabel) if which == "x" else (ax.set_yscale, ax.set_ylabel)
    set_label(info.name + (" (log)" if info.log else ""))
    if info.log:
        set_scale("log")


def _ticks(ax, info: AxisInfo, labels: list[str], which: str) -> None:
    if info.numeric:
        return
    rotate = which == "x" and sum(len(s) for s in labels) > 40
    (ax.set_xticks if which == "x" else ax.set_yticks)(range(len(labels)), labels,
                                                       rotation=45 if rotate else 0, fontsize=8)


def _diverged_layer(ax, x_edges, y_edges, frac: np.ndarray) -> None:
    mask = np.ma.masked_where(~(frac > 0.5), np.ones_like(frac))
    ax.pcolormesh(x_edges, y_edges, mask, cmap=ListedColormap([DIVERGED_COLOUR]), vmin=0, vmax=1)


def _heat_panel(ax, table, x: AxisInfo, y: AxisInfo, metric: str, norm, cmap) -> Any:
    """Cells (or points, for a small random search) of the metric over ``x`` and ``y``; returns the mappable."""
    if (not x.lattice or not y.lattice) and len(table) <= MAX_POINTS:
        value, diverged = _scores(table, metric)
        xs = [bins(i, table[i.name])[0] if not i.numeric else table[i.name].to_numpy(float) for i in (x, y)]
        ok = ~diverged & np.isfinite(value)
        im = ax.scatter(xs[0][ok], xs[1][ok], c=value[ok], cmap=cmap, norm=norm, s=18, edgecolors="none")
        ax.scatter(xs[0][diverged], xs[1][diverged], marker="x", s=18, color=DIVERGED_COLOUR)
    else:
        (xi, xe, xl), (yi, ye, yl) = bins(x, table[x.name]), bins(y, table[y.name])
        stats = cell_stats(table, metric, [yi, xi], (len(xl), len(yl))[::-1])
        im = ax.pcolormesh(xe, ye, np.ma.masked_invalid(stats["median"]), cmap=cmap, norm=norm)
        _diverged_layer(ax, xe, ye, stats["diverged"])
        if stats["count"].size <= 120 and not x.numeric and not y.numeric:
            for (r, c), v in np.ndenumerate(stats["median"]):
                if np.isfinite(v) and stats["diverged"][r, c] <= 0.5:
                    ax.text(c, r, f"{v:.3g}", ha="center", va="center", fontsize=7, color="white",
                            path_effects=_outline())
    for info, which in ((x, "x"), (y, "y")):
        _set_scale(ax, info, which)
        _ticks(ax, info, list(info.values), which)
    return im


def _outline():
    from matplotlib import patheffects

    return [patheffects.withStroke(linewidth=1.5, foreground="black")]


def _line_panel(ax, table, x: AxisInfo, metric: str, colour, label: str | None) -> None:
    """Median of the metric over ``x`` with its 10-90 % band; diverged-majority cells shaded red."""
    index, edges, labels = bins(x, table[x.name], int(np.clip(len(table) // 10, 8, BINS)))
    stats = cell_stats(table, metric, [index], (len(labels),))
    centres = np.asarray(x.values, float) if x.numeric and x.lattice else (
        np.sqrt(edges[:-1] * edges[1:]) if x.log else (edges[:-1] + edges[1:]) / 2)
    if not x.numeric:
        centres = np.arange(len(labels), dtype=float)
    has = np.isfinite(stats["median"])
    ax.fill_between(centres[has], stats["lo"][has], stats["hi"][has], color=colour, alpha=0.25, lw=0)
    ax.plot(centres[has], stats["median"][has], "o-" if len(labels) <= 30 else "-", color=colour, ms=4,
            label=label)
    bad = stats["diverged"] > 0.5
    if bad.any():
        ax.fill_between(centres, 0, 1, where=bad, step="mid", color=DIVERGED_COLOUR, alpha=0.2,
                        transform=ax.get_xaxis_transform(), lw=0)
    _set_scale(ax, x, "x")
    _ticks(ax, x, labels, "x")


def _panel_rows(table, panel: AxisInfo | None) -> list[tuple[str, Any]]:
    if panel is None:
        return [("", table)]
    col = table[panel.name].astype(str) if not panel.numeric else table[panel.name]
    keys = panel.values if not panel.numeric else panel.values
    return [(f"{panel.name} = {v:g}" if isinstance(v, float) else f"{panel.name} = {v}", table[(col == v).to_numpy()])
            for v in keys[:MAX_PANELS]]


def landscape_figure(table, axes: Sequence[Any], metric: str, goal: str,
                     importance: Mapping[str, float] | None = None) -> Figure:
    """The ranking metric over the swept axes (see the module docstring for the layouts).

    Args:
      table: the results table.
      axes: the swept axes: names, or :class:`jaxnets.config.Axis` (for their ``log``).
      metric: the ranking column.
      goal: ``"min"`` or ``"max"`` (the colour map runs from worst, dark, to best, bright).
      importance: :func:`importances`, to draw the most important axes (config order when ``None``).

    Returns:
      the figure.
    """
    from matplotlib import colormaps
    from matplotlib.patches import Patch

    drawn, colour, panel, rest = _layout(describe(table, axes), importance)
    panels = _panel_rows(table, panel)
    ncols = min(len(panels), 4)
    nrows = -(-len(panels) // ncols)
    size = (5.2, 4.2) if len(drawn) == 2 else (5.2, 3.6)
    fig = Figure(figsize=(min(size[0] * ncols + 1.5, 20), size[1] * nrows + 0.6), layout="constrained")
    axs = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
    for ax in axs.ravel()[len(panels):]:
        ax.set_visible(False)
    value, diverged = _scores(table, metric)
    finite = value[np.isfinite(value)]
    cmap = colormaps["viridis_r" if goal == "min" else "viridis"]
    norm = _norm(np.percentile(finite, [0.5, 99.5]) if finite.size else finite)
    handles = [Patch(color=DIVERGED_COLOUR, alpha=1 if len(drawn) == 2 else 0.3,
                     label="diverged (most variants of the cell)")] if diverged.any() else []
    for ax, (title, rows) in zip(axs.ravel(), panels, strict=False):
        ax.set_facecolor("0.92")
        if len(drawn) == 2:
            im = _heat_panel(ax, rows, drawn[0], drawn[1], metric, norm, cmap)
        elif len(drawn) == 1:
            groups = _panel_rows(rows, colour) if colour else [("", rows)]
            for k, (label, sub) in enumerate(groups):
                _line_panel(ax, sub, drawn[0], metric, colormaps["tab10"](k), label or None)
            if finite.size and finite.min() > 0 and finite.max() / finite.min() > 20:
                ax.set_yscale("log")
            ax.set_ylabel(metric)
            ax.grid(alpha=0.3)
        else:
            ax.hist(finite, bins=40, histtype="stepfilled", color="tab:blue")
            ax.set_xlabel(metric)
        ax.set_title(title, fontsize=9)
    if len(drawn) == 2:
        cells = ", median per cell" if hasattr(im, "get_coordinates") else ""  # a QuadMesh, not points
        fig.colorbar(im, ax=list(axs.ravel()[:len(panels)]),
                     label=f"{metric}{cells} ({'lower' if goal == 'min' else 'higher'} is better)")
    if colour:
        handles += axs[0, 0].get_legend_handles_labels()[0]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), fontsize=8)
    over = " × ".join(i.name for i in drawn) or "(no swept axis varies)"
    spread = [i.name for i in rest] + (["seed"] if "seed" in table and table["seed"].nunique() > 1 else [])
    fig.suptitle(f"{metric} over {over}: {len(table):,} variants"
                 + (f"; median over {', '.join(spread)}" if spread else "")
                 + (", band 10-90 %" if len(drawn) == 1 else ""), fontsize=10)
    return fig
