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
* ``best_so_far.png`` (random / Bayesian search): the metric of every trial in order, and the best so far.

With more than :data:`MAX_COLUMNS` variant groups (e.g. a continuous learning-rate axis), the heatmaps show
:data:`MAX_COLUMNS` single variants spread evenly over the ranking instead, labelled by variant id.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure

from jaxnets import store
from jaxnets.sweep import rank

__all__ = [
    "MAX_COLUMNS", "variant_groups", "loss_curves_figure", "grad_norm_figure", "activation_health_figure",
    "best_so_far_figure", "save_all",
]

MAX_COLUMNS = 40
_MAX_COLOURS = 10


def _nanmean(a: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices (padding) stay NaN
        return np.nanmean(a, axis=axis)


def _label_axes(axes: Sequence[str]) -> list[str]:
    return [a for a in axes if a != "seed"]


def _labels(table, names: Sequence[str]) -> list[str]:
    """One label per row: ``name=value`` pairs of ``names`` ("all" when there are none)."""
    if not names:
        return ["all"] * len(table)
    if len(names) == 1:
        return [str(v) for v in table[names[0]]]
    return ["/".join(str(table[n].iloc[i]) for n in names) for i in range(len(table))]


def variant_groups(table, axes: Sequence[str], metric: str, goal: str) -> list[tuple[str, np.ndarray]]:
    """Columns for the heatmaps: variant groups, or single variants when there are too many groups.

    Args:
      table: the results table.
      axes: the swept axis names.
      metric: the column the ranking uses (when there are more than :data:`MAX_COLUMNS` groups).
      goal: ``"min"`` or ``"max"``.

    Returns:
      ``(label, row indices)`` per combination of the swept values except ``seed`` (in order of first
      appearance), or at most :data:`MAX_COLUMNS` single variants spread over the ranking by ``metric``
      (labelled ``#<variant id>``) when there are more combinations than that.
    """
    labels = _labels(table, _label_axes(axes))
    unique = list(dict.fromkeys(labels))
    if len(unique) <= MAX_COLUMNS:
        return [(u, np.array([i for i, lab in enumerate(labels) if lab == u])) for u in unique]
    ranked = rank(table, metric, goal)["variant"].to_numpy()
    row_of = {v: i for i, v in enumerate(table["variant"])}
    picks = ranked[np.unique(np.linspace(0, len(ranked) - 1, MAX_COLUMNS).round().astype(int))]
    return [(f"#{v}", np.array([row_of[v]])) for v in picks]


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


def loss_curves_figure(table, history, axes: Sequence[str]) -> Figure:
    """Validation loss against step per variant.

    Panels: the first swept axis with at most 8 values, when another axis is left to colour by; colour:
    a continuous axis (colour bar), else the combination of the remaining axes (legend). Seeds share a
    colour, so their spread shows as a band.

    Args:
      table: the results table.
      history: the history (``val_loss`` and ``eval_step`` [V, E]).
      axes: the swept axis names.

    Returns:
      the figure.
    """
    names = _label_axes(axes)
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


# ---------------------------------------------------------------------------------------------------------
# Heatmaps: layer x variant group
# ---------------------------------------------------------------------------------------------------------


def _at(history, metric: str, when: str) -> np.ndarray:
    """Per-layer values [V, L] at the first (``"init"``) or each variant's last (``"end"``) evaluation."""
    h = history[metric]
    if when == "init":
        return h[:, 0]
    return h[np.arange(len(h)), _last_index(history)]


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


def _outline():
    from matplotlib import patheffects

    return [patheffects.withStroke(linewidth=1.5, foreground="black")]


def _group_means(values: np.ndarray, groups) -> np.ndarray:
    """[L, G]: the mean over each group's variants of [V, L] values."""
    return np.stack([_nanmean(values[idx], axis=0) for _, idx in groups], axis=1)


def grad_norm_figure(table, history, axes: Sequence[str], metric: str, goal: str) -> Figure:
    """log10 of the gradient norm per layer (rows) and variant group (columns), at init and at the end.

    Args:
      table: the results table.
      history: the history (``grad_norm`` [V, E, L] and ``eval_step``).
      axes: the swept axis names.
      metric: the ranking column, for :func:`variant_groups`.
      goal: ``"min"`` or ``"max"``, for :func:`variant_groups`.

    Returns:
      the figure.
    """
    groups = variant_groups(table, axes, metric, goal)
    cols = [lab for lab, _ in groups]
    with np.errstate(divide="ignore"):
        panels = {w: np.log10(_group_means(_at(history, "grad_norm", w), groups)) for w in ("init", "end")}
    finite = np.concatenate([p[np.isfinite(p)] for p in panels.values()])
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 1.0)
    norm = Normalize(lo, max(hi, lo + 1e-6))
    n_layers = panels["init"].shape[0]
    fig = Figure(figsize=(min(3 + 0.55 * len(cols), 18), 1.6 + 0.45 * n_layers * 2), layout="constrained")
    axs = fig.subplots(2, 1, sharex=True)
    for ax, (when, values) in zip(axs, panels.items(), strict=True):
        im = _heatmap(ax, values, _layer_names(n_layers, True), cols, norm, "viridis",
                      lambda v: "zero" if np.isneginf(v) else f"{v:.1f}")
        ax.set_title("at initialization (step 0)" if when == "init" else "at the end of training")
    fig.colorbar(im, ax=list(axs), label="log10 gradient norm ('zero': exactly 0)")
    fig.suptitle("Gradient norm per layer (input side on top): dark rows near the input = vanishing")
    return fig


def activation_health_figure(table, history, axes: Sequence[str], metric: str, goal: str) -> Figure:
    """Dead-unit and saturated-unit fractions per hidden layer and variant group, at init and at the end.

    Args:
      table: the results table.
      history: the history (``dead_fraction`` and ``saturated_fraction`` [V, E, L], and ``eval_step``).
      axes: the swept axis names.
      metric: the ranking column, for :func:`variant_groups`.
      goal: ``"min"`` or ``"max"``, for :func:`variant_groups`.

    Returns:
      the figure.
    """
    groups = variant_groups(table, axes, metric, goal)
    cols = [lab for lab, _ in groups]
    n_layers = history["dead_fraction"].shape[2]
    width = 2 * min(2 + 0.32 * len(cols), 9)
    fig = Figure(figsize=(width, 2.2 + 0.4 * n_layers * 2), layout="constrained")
    axs = fig.subplots(2, 2, sharex=True, sharey=True)
    norm = Normalize(0.0, 1.0)
    for c, (metric_name, title) in enumerate((("dead_fraction", "dead units (never active)"),
                                              ("saturated_fraction", "saturated units (flat tails)"))):
        for r, when in enumerate(("init", "end")):
            values = _group_means(_at(history, metric_name, when), groups)
            im = _heatmap(axs[r, c], values, _layer_names(n_layers, False), cols, norm, "magma",
                          lambda v: f"{v:.2f}" if v >= 0.005 else "")
            axs[r, c].set_title(f"{title}, {'step 0' if when == 'init' else 'end'}")
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


def save_all(out: str | Path, table, history, axes: Sequence[str], metric: str, goal: str,
             method: str) -> list[Path]:
    """Write every figure for a results directory into ``DIR/plots``.

    Args:
      out: the results directory.
      table: the results table.
      history: the history.
      axes: the swept axis names.
      metric: the ranking column.
      goal: ``"min"`` or ``"max"``.
      method: the search method; ``"random"`` and ``"bayesian"`` add ``best_so_far.png``.

    Returns:
      the paths of the PNGs written.
    """
    folder = Path(out) / store.PLOTS
    paths = [
        _save(loss_curves_figure(table, history, axes), folder / "loss_curves.png"),
        _save(grad_norm_figure(table, history, axes, metric, goal), folder / "grad_norm.png"),
        _save(activation_health_figure(table, history, axes, metric, goal), folder / "activation_health.png"),
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
