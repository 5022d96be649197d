"""Figures of a sweep's results (matplotlib, object-oriented API: no pyplot, no global backend state).

Each ``*_figure`` function takes the results table (``results.csv`` as a pandas DataFrame) and/or the
history (``history.npz`` as a dict) and returns a :class:`matplotlib.figure.Figure`; :func:`save_all`
writes the PNGs of a results directory.

* ``loss_curves.png``: validation loss against step, one line per variant, panels and colours by the swept
  axes (panel: the first axis when two or more vary; colour: the others; seeds share a colour);
* ``grad_norm.png``: heatmap of log10 gradient norm per layer (rows, input side on top) and variant group
  (columns: variants with equal swept values except ``seed``, averaged), at initialization and at the end —
  vanishing gradients show as dark input-side rows, exploding ones as bright cells;
* ``activation_health.png``: the same layout for the fraction of dead units (no positive activation on the
  evaluation batch: dead ReLUs) and of saturated units (sigmoid / tanh in their flat tails);
* ``best_so_far.png`` (random / Bayesian search): the metric of every trial in order, and the best so far;
* ``landscape.png`` and ``importance.png`` (:func:`landscape`, :func:`importance`, drawn by
  :mod:`jaxnets.landscape`): the ranking metric over the swept axes, and each axis's fANOVA importance.

Plots scale with the sweep: with more than :data:`AGGREGATE_ABOVE` variants the loss curves are drawn as the
median and 10-90 % band per value (or bin) of the most important axis (:func:`most_important`), and with
more than :data:`MAX_COLUMNS` variant groups the heatmaps' columns are the values (or bins) of that axis,
each the median over its variants: a bounded number of artists at 65,536 variants as at 8.
:func:`jaxnets.report.save` writes all of them and ``report.html``.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure

from jaxnets import landscape as land
from jaxnets import store
from jaxnets.sweep import rank

__all__ = [
    "MAX_COLUMNS", "AGGREGATE_ABOVE", "CURVE_GROUPS", "most_important", "axis_groups", "variant_groups",
    "loss_curves_figure", "aggregated_loss_curves_figure", "grad_norm_figure", "activation_health_figure",
    "best_so_far_figure", "landscape",
    "importance", "save_all",
]

MAX_COLUMNS = 40
#: Above this many variants, loss curves are aggregated (median and band per group), not one line each.
AGGREGATE_ABOVE = 64
#: Groups (lines with bands) of the aggregated loss curves.
CURVE_GROUPS = 8
_MAX_COLOURS = 10


def _label_axes(axes: Sequence[str]) -> list[str]:
    return [a for a in axes if a != "seed"]


def _names(axes: Sequence) -> list[str]:
    """Axis names from names or :class:`jaxnets.config.Axis` objects."""
    return [a if isinstance(a, str) else a.name for a in axes]


def _labels(table, names: Sequence[str]) -> list[str]:
    """One label per row: the values of ``names`` joined by ``/`` ("all" when there are none)."""
    if not names:
        return ["all"] * len(table)
    joined = table[names[0]].astype(str)
    for n in names[1:]:
        joined = joined + "/" + table[n].astype(str)
    return joined.tolist()


def most_important(table, axes: Sequence, importance: Mapping[str, float] | None = None) -> str | None:
    """The axis to group many variants by: the most important by ``importance`` other than ``seed`` (the
    first varying swept axis when ``importance`` is ``None`` or names none), ``seed`` when nothing else
    varies, else ``None``."""
    varying = [n for n in _names(axes) if table[n].nunique(dropna=False) > 1]
    ranked = [n for n in (importance or {}) if n in varying] + varying
    return next((n for n in ranked if n != "seed"), ranked[0] if ranked else None)


def axis_groups(table, axes: Sequence, by: str | None, n_max: int) -> list[tuple[str, np.ndarray]]:
    """At most ``n_max`` groups of rows by the values of the axis ``by``.

    Args:
      table: the results table.
      axes: the swept axes (names or :class:`jaxnets.config.Axis`; ``by``'s gives its log scale).
      by: the axis (``None``: one group, ``"all"``).
      n_max: most groups: more values than that are binned (numeric: equal widths, in log on a log axis;
        categories: the first ``n_max - 1`` and ``other``).

    Returns:
      ``(label, row indices)`` per non-empty group, in the axis's order; labels are values (``0.1``,
      ``tanh``) or bins (``0.001-0.00316``), without the axis's name.
    """
    info = next((i for i in land.describe(table, [a for a in axes if by in (a, getattr(a, "name", None))])), None)
    if info is None:
        return [("all", np.arange(len(table)))]
    if not info.numeric and len(info.values) > n_max:
        keep = {v: k for k, v in enumerate(info.values[:n_max - 1])}
        index = np.array([keep.get(v, n_max - 1) for v in table[by].astype(str)])
        labels = [str(v) for v in info.values[:n_max - 1]] + ["other"]
    else:
        if len(info.values) > n_max:  # a numeric grid with more values than groups: bin it
            info = dataclasses.replace(info, lattice=False)
        index, _, labels = land.bins(info, table[by], n_max)
    order = np.argsort(index, kind="stable")
    starts = np.searchsorted(index[order], np.arange(len(labels) + 1))
    return [(labels[k], order[starts[k]:starts[k + 1]]) for k in range(len(labels)) if starts[k + 1] > starts[k]]


def variant_groups(table, axes: Sequence, metric: str, goal: str,
                   by: str | None = None) -> list[tuple[str, np.ndarray]]:
    """Columns for the heatmaps: variant groups, or groups by one axis when there are too many.

    Args:
      table: the results table.
      axes: the swept axes (names or :class:`jaxnets.config.Axis`).
      metric: the ranking column (unused; kept for callers).
      goal: ``"min"`` or ``"max"`` (unused; kept for callers).
      by: the axis to group by when there are more than :data:`MAX_COLUMNS` groups (default:
        :func:`most_important` without importances: the first varying axis other than ``seed``).

    Returns:
      ``(label, row indices)`` per combination of the swept values except ``seed`` (in order of first
      appearance), or, when there are more combinations than :data:`MAX_COLUMNS`, per value or bin of
      ``by`` (:func:`axis_groups`).
    """
    del metric, goal
    return _columns(table, axes, by)[0]


def _columns(table, axes: Sequence, by: str | None) -> tuple[list[tuple[str, np.ndarray]], str]:
    """:func:`variant_groups` and what the columns are (an x-axis label)."""
    names = _label_axes(_names(axes))
    codes, unique = _factorize(_labels(table, names))
    if len(unique) <= MAX_COLUMNS:
        return [(u, np.flatnonzero(codes == k)) for k, u in enumerate(unique)], "/".join(names)
    by = by or most_important(table, axes)
    return axis_groups(table, axes, by, MAX_COLUMNS), f"{by} (median over the other axes)"


def _factorize(labels: list[str]) -> tuple[np.ndarray, list[str]]:
    import pandas as pd

    codes, unique = pd.factorize(pd.Series(labels), sort=False)
    return codes, list(unique)


def _last_index(history) -> np.ndarray:
    """Index of each variant's last real (not padded) evaluation, [V]."""
    return np.sum(np.isfinite(history["eval_step"]), axis=1) - 1


def _layer_names(n: int, with_output: bool) -> list[str]:
    names = [f"layer {i}" for i in range(n - 1 if with_output else n)]
    return names + ["output"] if with_output else names


# ---------------------------------------------------------------------------------------------------------
# Loss curves
# ---------------------------------------------------------------------------------------------------------


def _is_numeric(values) -> bool:
    return all(isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)
               for v in values)


def _value(v) -> str:
    """An axis value for a title: numbers in short form (1e+06, not 1000000.0)."""
    return f"{v:g}" if isinstance(v, float | np.floating) else str(v)


def _continuous(table, name: str) -> bool:
    """A numeric axis with more distinct values than a legend can hold (e.g. a sampled learning rate)."""
    return table[name].nunique() > _MAX_COLOURS and _is_numeric(table[name].tolist())


def _colour_map(table, names: Sequence[str]):
    """``(colour of each row, legend entries or None, (norm, cmap, label) for a colour bar or None)``.

    One continuous axis among ``names`` colours by its value on a colour bar (log scale when positive and
    spanning more than 20x); otherwise each combination of the values of ``names`` gets its own colour.
    """
    from matplotlib import colormaps

    continuous = [n for n in names if _continuous(table, n)]
    if continuous:
        values = table[continuous[0]].to_numpy(dtype=float)
        wide = np.all(values > 0) and values.max() / values.min() > 20
        norm = LogNorm(values.min(), values.max()) if wide else Normalize(values.min(), values.max())
        cmap = colormaps["viridis"]
        return [cmap(norm(v)) for v in values], None, (norm, cmap, continuous[0])
    labels = _labels(table, names)
    unique = list(dict.fromkeys(labels))
    if len(unique) <= _MAX_COLOURS:
        colour = {u: colormaps["tab10"](k) for k, u in enumerate(unique)}
        return [colour[lab] for lab in labels], [(u, colour[u]) for u in unique], None
    cmap = colormaps["turbo"]
    colour = {u: cmap(k / (len(unique) - 1)) for k, u in enumerate(unique)}
    return [colour[lab] for lab in labels], None, None


def loss_curves_figure(table, history, axes: Sequence, by: str | None = None) -> Figure:
    """Validation loss against step: one line per variant, or aggregates when there are many.

    Up to :data:`AGGREGATE_ABOVE` variants, one line each. Panels: the first swept axis with at most 8
    values, when another axis is left to colour by; colour: a continuous axis (colour bar), else the
    combination of the remaining axes (legend). Seeds share a colour, so their spread shows as a band.
    Above, :func:`aggregated_loss_curves_figure`.

    Args:
      table: the results table.
      history: the history (``val_loss`` and ``eval_step`` [V, E]).
      axes: the swept axes (names or :class:`jaxnets.config.Axis`).
      by: with many variants, the axis to group by (default: :func:`most_important` without importances).

    Returns:
      the figure.
    """
    if len(table) > AGGREGATE_ABOVE:
        return aggregated_loss_curves_figure(table, history, axes, by or most_important(table, axes))
    names = _label_axes(_names(axes))
    facets = [n for n in names if table[n].nunique() <= 8 and not _continuous(table, n)]
    facet = facets[0] if facets and len(names) >= 2 else None
    colour_by = [n for n in names if n != facet]
    panels = list(dict.fromkeys(table[facet])) if facet else [None]
    colours, legend, bar = _colour_map(table, colour_by)
    loss, steps = history["val_loss"], history["eval_step"]
    diverged = (table["status"] == "diverged").to_numpy()
    finite = loss[np.isfinite(loss)]
    fig = Figure(figsize=(min(4.2 * len(panels), 17), 3.8), layout="constrained")
    axs = fig.subplots(1, len(panels), sharex=True, sharey=True, squeeze=False)[0]
    for ax, panel in zip(axs, panels, strict=True):
        rows = range(len(table)) if panel is None else np.flatnonzero((table[facet] == panel).to_numpy())
        for i in rows:
            ax.plot(steps[i], loss[i], color=colours[i], lw=1.2, alpha=0.8)
            ok = np.flatnonzero(np.isfinite(loss[i]))
            if diverged[i] and ok.size:  # its curve may be a single point: mark where it was last finite
                ax.plot(steps[i][ok[-1]], loss[i][ok[-1]], "x", color=colours[i], ms=8, mew=2)
        ax.set_title(f"{facet} = {_value(panel)}" if facet else "validation loss")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axs[0].set_ylabel("validation loss")
    if finite.size and finite.min() > 0:
        axs[0].set_yscale("log")
    if finite.size:
        axs[0].set_ylim(top=float(np.percentile(finite, 99.5)) * 1.2)
    handles, labels = [], []
    if legend:
        handles = [axs[0].plot([], [], color=c, lw=2)[0] for _, c in legend]
        labels = [lab for lab, _ in legend]
    if diverged.any():
        handles.append(axs[0].plot([], [], "x", color="gray", ms=8, mew=2)[0])
        labels.append("diverged (last finite value)")
    if handles:
        fig.legend(handles, labels, title="/".join(colour_by) if legend else None, loc="outside right")
    if bar:
        norm, cmap, label = bar
        from matplotlib.cm import ScalarMappable

        fig.colorbar(ScalarMappable(norm, cmap), ax=list(axs), label=label)
    fig.suptitle("Validation loss" + (f" by {', '.join(names)}" if names else ""))
    return fig


def aggregated_loss_curves_figure(table, history, axes: Sequence, by: str | None) -> Figure:
    """Validation loss against step as the median and 10-90 % band of each group of variants.

    Groups: the values, or at most :data:`CURVE_GROUPS` bins, of the axis ``by`` (:func:`axis_groups`);
    two artists per group whatever the number of variants. Diverged variants are left out of the bands and
    counted in the legend.

    Args:
      table: the results table.
      history: the history (``val_loss`` and ``eval_step`` [V, E]).
      axes: the swept axes (names or :class:`jaxnets.config.Axis`).
      by: the axis to group by (``None``: one group).

    Returns:
      the figure.
    """
    from matplotlib import colormaps

    groups = axis_groups(table, axes, by, CURVE_GROUPS)
    numeric = bool(by) and land.describe(table, [by])[0].numeric
    loss, steps = history["val_loss"], history["eval_step"]
    diverged = (table["status"] == "diverged").to_numpy()
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    ax = fig.subplots()
    for k, (label, idx) in enumerate(groups):
        colour = colormaps["viridis"](k / max(len(groups) - 1, 1) * 0.9) if numeric else colormaps["tab10"](k % 10)
        ok = idx[~diverged[idx]]
        share = 1 - ok.size / idx.size
        text = f"{label} (n={idx.size:,}" + (f", {share:.0%} diverged)" if share else ")")
        if ok.size == 0:
            ax.plot([], [], color=colour, label=text)
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (padding) stay NaN
            x = np.nanmedian(steps[ok], axis=0)
            lo, mid, hi = np.nanquantile(loss[ok], [0.1, 0.5, 0.9], axis=0)
        ax.fill_between(x, lo, hi, color=colour, alpha=0.15, lw=0)
        ax.plot(x, mid, color=colour, lw=1.8, label=text)
    finite = loss[~diverged][np.isfinite(loss[~diverged])]
    if finite.size and finite.min() > 0:
        ax.set_yscale("log")
    if finite.size:
        ax.set_ylim(top=float(np.percentile(finite, 99.5)) * 1.2)
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss")
    ax.grid(alpha=0.3)
    fig.legend(loc="outside right", fontsize=7, title=by)
    fig.suptitle(f"Validation loss of {len(table):,} variants: median and 10-90 % band"
                 + (f" by {by}" if by else ""))
    return fig


# ---------------------------------------------------------------------------------------------------------
# Heatmaps: layer x variant group
# ---------------------------------------------------------------------------------------------------------


def _at(history, metric: str, when: str) -> np.ndarray:
    """Per-layer values [V, L] at the first (``"init"``) or each variant's last (``"end"``) evaluation."""
    h = history[metric]
    if when == "init":
        return h[:, 0]
    return h[np.arange(len(h)), _last_index(history)]


def output_last(values: np.ndarray) -> np.ndarray:
    """Per-layer values [V, L + 1] (hidden layers, then the output layer, then NaN past a shallower variant's
    depth) with each variant's output value moved to the last column, so that a column is one layer for
    every variant: [V, L + 1], NaN where a variant has no such hidden layer."""
    v = np.array(values, dtype=float, copy=True)
    real = ~np.isnan(v)
    n = v.shape[-1]
    last = n - 1 - np.argmax(real[:, ::-1], axis=1)  # each row's last non-NaN entry: its output layer
    move = np.flatnonzero(real.any(axis=1) & (last < n - 1))
    v[move, n - 1] = v[move, last[move]]
    v[move, last[move]] = np.nan
    return v


def _heatmap(ax, values: np.ndarray, rows: list[str], cols: list[str], norm, cmap: str,
             text: Callable[[float], str]) -> object:
    """Draw [rows, cols] values (``-inf`` at the bottom of the colour scale), with ``text(value)`` written
    in each cell when the grid is small enough."""
    shown = np.where(np.isneginf(values), norm.vmin, values)
    im = ax.imshow(shown, aspect="auto", cmap=cmap, norm=norm, interpolation="nearest")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right", fontsize=7 if len(cols) > 12 else 8)
    if values.size <= 300:
        for (r, c), v in np.ndenumerate(values):
            label = text(v) if not math.isnan(v) else ""
            if label:
                ax.text(c, r, label, ha="center", va="center", fontsize=6, color="white",
                        path_effects=_outline())
    return im


def _label_room(cols: list[str]) -> float:
    """Inches of figure height for the rotated column labels below the heatmaps."""
    return 0.06 * max((len(c) for c in cols), default=0)


def _outline():
    from matplotlib import patheffects

    return [patheffects.withStroke(linewidth=1.5, foreground="black")]


def _group_means(values: np.ndarray, groups) -> np.ndarray:
    """[L, G]: the mean over each group's variants of [V, L] values (the median with more than
    :data:`AGGREGATE_ABOVE` variants in all)."""
    many = sum(len(idx) for _, idx in groups) > AGGREGATE_ABOVE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices (padding) stay NaN
        average = np.nanmedian if many else np.nanmean
        return np.stack([average(values[idx], axis=0) for _, idx in groups], axis=1)


def grad_norm_figure(table, history, axes: Sequence, metric: str, goal: str,
                     by: str | None = None) -> Figure:
    """log10 of the gradient norm per layer (rows) and variant group (columns), at init and at the end.

    Args:
      table: the results table.
      history: the history (``grad_norm`` [V, E, L] and ``eval_step``).
      axes: the swept axis names.
      metric: the ranking column, for :func:`variant_groups`.
      goal: ``"min"`` or ``"max"``, for :func:`variant_groups`.
      by: with more than :data:`MAX_COLUMNS` groups, the axis whose values (bins) are the columns.

    Returns:
      the figure.
    """
    groups, xlabel = _columns(table, axes, by)
    cols = [lab for lab, _ in groups]
    with np.errstate(divide="ignore"):
        panels = {w: np.log10(_group_means(output_last(_at(history, "grad_norm", w)), groups))
                  for w in ("init", "end")}
    finite = np.concatenate([p[np.isfinite(p)] for p in panels.values()])
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 1.0)
    norm = Normalize(lo, max(hi, lo + 1e-6))
    n_layers = panels["init"].shape[0]
    fig = Figure(figsize=(min(3 + 0.55 * len(cols), 18), 1.6 + 0.45 * n_layers * 2 + _label_room(cols)),
                 layout="constrained")
    axs = fig.subplots(2, 1, sharex=True)
    for ax, (when, values) in zip(axs, panels.items(), strict=True):
        im = _heatmap(ax, values, _layer_names(n_layers, True), cols, norm, "viridis",
                      lambda v: "zero" if np.isneginf(v) else f"{v:.1f}")
        ax.set_title("at initialization (step 0)" if when == "init" else "at the end of training")
    axs[-1].set_xlabel(xlabel)
    fig.colorbar(im, ax=list(axs), label="log10 gradient norm ('zero': exactly 0)")
    fig.suptitle("Gradient norm per layer (input side on top)\ndark rows near the input = vanishing", fontsize=10)
    return fig


def activation_health_figure(table, history, axes: Sequence, metric: str, goal: str,
                             by: str | None = None) -> Figure:
    """Dead-unit and saturated-unit fractions per hidden layer and variant group, at init and at the end.

    Args:
      table: the results table.
      history: the history (``dead_fraction`` and ``saturated_fraction`` [V, E, L], and ``eval_step``).
      axes: the swept axis names.
      metric: the ranking column, for :func:`variant_groups`.
      goal: ``"min"`` or ``"max"``, for :func:`variant_groups`.
      by: with more than :data:`MAX_COLUMNS` groups, the axis whose values (bins) are the columns.

    Returns:
      the figure.
    """
    groups, xlabel = _columns(table, axes, by)
    cols = [lab for lab, _ in groups]
    n_layers = history["dead_fraction"].shape[2]
    width = 2 * min(2 + 0.32 * len(cols), 9)
    fig = Figure(figsize=(width, 2.2 + 0.4 * n_layers * 2 + _label_room(cols)), layout="constrained")
    axs = fig.subplots(2, 2, sharex=True, sharey=True)
    norm = Normalize(0.0, 1.0)
    for c, (metric_name, title) in enumerate((("dead_fraction", "dead units (never active)"),
                                              ("saturated_fraction", "saturated units (flat tails)"))):
        for r, when in enumerate(("init", "end")):
            values = _group_means(_at(history, metric_name, when), groups)
            im = _heatmap(axs[r, c], values, _layer_names(n_layers, False), cols, norm, "magma",
                          lambda v: f"{v:.2f}" if v >= 0.005 else "")
            axs[r, c].set_title(f"{title}, {'step 0' if when == 'init' else 'end'}")
            if not np.isfinite(values).any():  # e.g. recurrent layers: they record no pre-activations
                axs[r, c].text(0.5, 0.5, "not recorded: the layers record\nno pre-activations (e.g. an RNN)",
                               ha="center", va="center", transform=axs[r, c].transAxes, fontsize=8)
    for ax in axs[-1]:
        ax.set_xlabel(xlabel)
    fig.colorbar(im, ax=axs.ravel().tolist(), label="fraction of units")
    fig.suptitle("Activation health per hidden layer (input side on top)")
    return fig


# ---------------------------------------------------------------------------------------------------------
# Search progress
# ---------------------------------------------------------------------------------------------------------


def best_so_far_figure(table, metric: str, goal: str) -> Figure:
    """Every trial's metric in trial order (crosses: diverged) and the best so far.

    Args:
      table: the results table.
      metric: the column to plot.
      goal: ``"min"`` or ``"max"``: what "best" means.

    Returns:
      the figure.
    """
    values = table[metric].to_numpy(dtype=float)
    trial = table["variant"].to_numpy()
    order = np.argsort(trial, kind="stable")
    values, trial = values[order], trial[order]
    status = table["status"].to_numpy()[order]
    filled = np.where(np.isfinite(values), values, np.inf if goal == "min" else -np.inf)
    best = np.minimum.accumulate(filled) if goal == "min" else np.maximum.accumulate(filled)
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    ok = status != "diverged"
    ax.scatter(trial[ok], values[ok], s=14, alpha=0.6, label="trial")
    if (~ok).any():
        ax.scatter(trial[~ok], values[~ok], s=20, marker="x", color="tab:red", label="diverged")
    ax.step(trial, np.where(np.isfinite(best), best, np.nan), where="post", color="black", lw=2,
            label="best so far")
    finite = values[np.isfinite(values)]
    if finite.size and finite.min() > 0 and finite.max() / finite.min() > 20:
        ax.set_yscale("log")
    ax.set_xlabel("trial")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"{metric} ({goal}) against trials")
    return fig


# ---------------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------------


def _save(fig: Figure, path: Path) -> Path:
    return store.atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))


def landscape(table, axes: Sequence, metric: str, goal: str, path: str | Path,
              importance: Mapping[str, float] | None = None) -> Path:
    """Write ``landscape.png``: the metric over the swept axes (:func:`jaxnets.landscape.landscape_figure`).

    Args:
      table: the results table.
      axes: the swept axes: names, or :class:`jaxnets.config.Axis` (their ``log`` sets the scales).
      metric: the ranking column.
      goal: ``"min"`` or ``"max"``.
      path: the PNG to write.
      importance: :func:`jaxnets.landscape.importances`, to pick the axes drawn (config order when ``None``).

    Returns:
      ``path``.

    Example::

        from jaxnets import config, plots, store
        cfg = config.loads(store.read_config_text("runs/demo"))
        table, _ = store.read_results("runs/demo")
        plots.landscape(table, cfg.axes, cfg.metric, cfg.goal, "landscape.png")
    """
    return _save(land.landscape_figure(table, axes, metric, goal, importance), Path(path))


def importance(table, axes: Sequence, metric: str, goal: str, path: str | Path,
               scores: Mapping[str, float] | None = None) -> Path:
    """Write ``importance.png``: each axis's fANOVA importance for the metric
    (:func:`jaxnets.landscape.importance_figure`; computed when ``scores`` is ``None``).

    Args:
      table: the results table.
      axes: the swept axes (names or :class:`jaxnets.config.Axis`).
      metric: the ranking column.
      goal: ``"min"`` or ``"max"``.
      path: the PNG to write.
      scores: precomputed :func:`jaxnets.landscape.importances`.

    Returns:
      ``path``.
    """
    return _save(land.importance_figure(table, axes, metric, goal, scores), Path(path))


def save_all(out: str | Path, table, history, axes: Sequence, metric: str, goal: str,
             method: str, *, importance: Mapping[str, float] | None = None) -> list[Path]:
    """Write the per-variant diagnostics figures of a results directory into ``DIR/plots`` (loss curves,
    gradient norms, activation health, search progress); :func:`jaxnets.report.save` adds the landscape,
    the importances and ``report.html``.

    Args:
      out: the results directory.
      table: the results table.
      history: the history.
      axes: the swept axes (names or :class:`jaxnets.config.Axis`).
      metric: the ranking column.
      goal: ``"min"`` or ``"max"``.
      method: the search method; ``"random"`` and ``"bayesian"`` add ``best_so_far.png``.
      importance: :func:`jaxnets.landscape.importances`: with many variants the plots group by the most
        important axis (default: the first varying axis other than ``seed``).

    Returns:
      the paths of the PNGs written.
    """
    folder = Path(out) / store.PLOTS
    by = most_important(table, axes, importance)
    paths = [
        _save(loss_curves_figure(table, history, axes, by), folder / "loss_curves.png"),
        _save(grad_norm_figure(table, history, axes, metric, goal, by), folder / "grad_norm.png"),
        _save(activation_health_figure(table, history, axes, metric, goal, by),
              folder / "activation_health.png"),
    ]
    if method in ("random", "bayesian", "asha"):
        paths.append(_save(best_so_far_figure(table, metric, goal), folder / "best_so_far.png"))
    if method == "pbt" and any(k.startswith("hp_") for k in history):
        paths.append(_save(lineage_figure(table, history, metric, goal), folder / "pbt_lineage.png"))
    return paths


def lineage(history, best: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The lineage of variant ``best`` through a PBT run: who it was at each evaluation, and the value of each
    explored hyperparameter then.

    Args:
      history: a PBT history (``parent`` [V, E] variant ids, -1 when unchanged; ``hp_<key>`` [V, E]).
      best: the variant (a row of the history).

    Returns:
      ``(who, values)``: ``who`` [E] the variant whose training the lineage follows at each evaluation,
      ``values`` ``{key: [E]}``.
    """
    parent = np.asarray(history["parent"])
    ids = list(np.asarray(history.get("variant", np.arange(len(parent)))).astype(int))
    row = ids.index(best) if best in ids else best
    n_e = parent.shape[1]
    who = np.zeros(n_e, np.int64)
    for e in range(n_e - 1, -1, -1):
        who[e] = row
        if parent[row, e] >= 0:
            row = ids.index(int(parent[row, e]))
    keys = [k for k in history if k.startswith("hp_")]
    return who, {k.removeprefix("hp_"): np.asarray(history[k])[who, np.arange(n_e)] for k in keys}


def lineage_figure(table, history, metric: str, goal: str) -> Figure:
    """The hyperparameter schedule PBT found: each explored key along the best final variant's lineage.

    Args:
      table: the results table.
      history: the PBT history (see :func:`lineage`).
      metric: the ranking column.
      goal: ``"min"`` or ``"max"``.

    Returns:
      the figure.
    """
    best = int(rank(table, metric, goal)["variant"].iloc[0])
    _, values = lineage(history, best)
    steps = np.asarray(history["step"])
    fig = Figure(figsize=(6, 2.5 * len(values)))
    axes = fig.subplots(len(values), 1, squeeze=False)
    for ax, (key, v) in zip(axes[:, 0], values.items(), strict=True):
        ax.step(steps[:len(v)], v, where="pre")
        ax.set_yscale("log" if np.all(v > 0) else "linear")
        ax.set_ylabel(key)
    axes[-1, 0].set_xlabel("step")
    axes[0, 0].set_title(f"PBT schedule of variant {best} (best {metric}), along its lineage")
    fig.tight_layout()
    return fig
