"""``DIR/report.html``: one self-contained page of a sweep, and :func:`save`, which writes every picture.

The page needs no network and no other file: the figures are inlined as base64 PNG data URIs, the script
and the style are inline, and the data is an embedded JSON block. It holds

* the ranked table (the best :data:`MAX_ROWS` variants; click a column header to sort by it, again to
  reverse; ``report.html#sort=COLUMN`` or ``#sort=-COLUMN`` opens it sorted);
* an interactive scatter of the metric against a chosen axis, coloured by another axis or by status
  (diverged in red), drawn as inline SVG by the page's script from the embedded table: every variant up to
  :data:`MAX_POINTS`, above that the best tenth of them and a seeded random sample of the rest; hover a
  point for its values;
* the figures of ``DIR/plots`` (landscape, importance, loss curves, gradient norms, activation health, ...).

Check it in a headless browser without network: ``chromium --headless --no-sandbox --screenshot=shot.png
--window-size=1280,2400 file://$PWD/DIR/report.html``; ``--dump-dom`` instead prints the page after its
script ran (``<body data-ready="1">``, one ``<circle>`` per point of the scatter).
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxnets import landscape as land
from jaxnets import plots, store
from jaxnets.sweep import rank

__all__ = ["REPORT", "MAX_ROWS", "MAX_POINTS", "FIGURES", "save", "render", "write"]

REPORT = store.REPORT  # the file name (store.py lists it among its files)
#: Rows of the ranked table on the page (the best ones).
MAX_ROWS = 500
#: Points of the scatter: every variant up to this many, else the best tenth and a random sample of the rest.
MAX_POINTS = 2000
#: The figures the page shows, in this order, when ``DIR/plots`` has them.
FIGURES: tuple[str, ...] = ("landscape.png", "importance.png", "loss_curves.png", "grad_norm.png",
                            "activation_health.png", "best_so_far.png", "pbt_lineage.png")
_HIDDEN = ("group_wall_s", "unit", "group")


def save(out: str | Path, table, history, axes: Sequence, metric: str, goal: str, method: str) -> list[Path]:
    """Write every picture of a results directory: ``plots/*.png`` (:func:`jaxnets.plots.save_all`,
    ``landscape.png``, ``importance.png``) and ``report.html``.

    Args:
      out: the results directory.
      table: the results table.
      history: the history.
      axes: the swept axes (:class:`jaxnets.config.Axis`, or names: log scales are then inferred).
      metric: the ranking column.
      goal: ``"min"`` or ``"max"``.
      method: the search method (see :func:`jaxnets.plots.save_all`).

    Returns:
      the paths written: the PNGs (those of :func:`jaxnets.plots.save_all` first), then ``report.html``.

    Raises:
      jaxnets.store.StorageError: the machine refused a write.
    """
    folder = Path(out) / store.PLOTS
    scores = land.importances(table, axes, metric, goal)
    paths = plots.save_all(out, table, history, axes, metric, goal, method, importance=scores)
    paths += [plots.landscape(table, axes, metric, goal, folder / "landscape.png", scores),
              plots.importance(table, axes, metric, goal, folder / "importance.png", scores)]
    return paths + [write(out, table, axes, metric, goal, scores)]


def write(out: str | Path, table, axes: Sequence, metric: str, goal: str,
          importance: Mapping[str, float] | None = None) -> Path:
    """Write ``DIR/report.html`` from the table and the PNGs already in ``DIR/plots``.

    Args:
      out: the results directory.
      table: the results table.
      axes: the swept axes (names or :class:`jaxnets.config.Axis`).
      metric: the ranking column.
      goal: ``"min"`` or ``"max"``.
      importance: :func:`jaxnets.landscape.importances`, listed on the page.

    Returns:
      the path of ``report.html``.
    """
    folder = Path(out) / store.PLOTS
    figures = {name: (folder / name).read_bytes() for name in FIGURES if (folder / name).is_file()}
    page = render(table, axes, metric, goal, figures, importance=importance, title=Path(out).resolve().name)
    return store.atomic_write(Path(out) / REPORT, lambda f: f.write(page.encode("utf-8")))


def _cell(v: Any) -> str:
    if isinstance(v, float | np.floating):
        return "" if math.isnan(v) else f"{v:.6g}"
    return str(v)


def _table_html(ranked, names: list[str], metric: str) -> str:
    cols = ["rank", "variant", *names, "status"]
    cols += [c for c in ranked.columns if c not in cols and c not in _HIDDEN]
    head = "".join(f'<th data-col="{k}"{" class=metric" if c == metric else ""}>{html.escape(c)}</th>'
                   for k, c in enumerate(cols))
    body = []
    for r, row in enumerate(ranked.head(MAX_ROWS).itertuples(index=False)):
        values = dict(zip(ranked.columns, row, strict=True))
        values["rank"] = r + 1
        cells = "".join(f"<td>{html.escape(_cell(values[c]))}</td>" for c in cols)
        body.append(f'<tr class="{html.escape(str(values["status"]))}">{cells}</tr>')
    return (f'<table id="ranked"><thead><tr>{head}</tr></thead><tbody>\n' + "\n".join(body)
            + "\n</tbody></table>")


def _points(table, names: list[str], metric: str, goal: str) -> dict[str, Any]:
    """The scatter's data: at most :data:`MAX_POINTS` rows (the best tenth and a seeded sample of the rest)."""
    ranked = rank(table, metric, goal)
    if len(ranked) > MAX_POINTS:
        best = MAX_POINTS // 10
        rest = np.random.default_rng(0).choice(np.arange(best, len(ranked)), MAX_POINTS - best, replace=False)
        ranked = ranked.iloc[np.sort(np.concatenate([np.arange(best), rest]))]
    rows = []
    for row in ranked[["variant", *names, "status", metric]].itertuples(index=False):
        rows.append([_json_value(v) for v in row])
    return {"columns": ["variant", *names, "status", metric], "rows": rows, "total": len(table)}


def _json_value(v: Any) -> Any:
    if isinstance(v, bool | np.bool_):
        return str(bool(v))
    if isinstance(v, int | np.integer):
        return int(v)
    if isinstance(v, float | np.floating):
        return float(v) if math.isfinite(v) else None
    return str(v)


def render(table, axes: Sequence, metric: str, goal: str, figures: Mapping[str, bytes], *,
           importance: Mapping[str, float] | None = None, title: str = "sweep") -> str:
    """The page's HTML text (see the module docstring).

    Args:
      table: the results table.
      axes: the swept axes (names or :class:`jaxnets.config.Axis`).
      metric: the ranking column.
      goal: ``"min"`` or ``"max"``.
      figures: PNG bytes by file name, shown in this order.
      importance: axis importances to list (optional).
      title: the page's title (the results directory's name).

    Returns:
      the HTML document, self-contained (no external URL).
    """
    names = [a if isinstance(a, str) else a.name for a in axes]
    infos = {i.name: i for i in land.describe(table, axes)}
    spec = [{"name": n, "numeric": bool(infos[n].numeric) if n in infos else False,
             "log": bool(infos[n].log) if n in infos else False} for n in names]
    ranked = rank(table, metric, goal)
    data = {"metric": metric, "goal": goal, "axes": spec, **_points(table, names, metric, goal)}
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    status = table["status"].value_counts().to_dict()
    summary = ", ".join(f"{n:,} {s}" for s, n in status.items())
    imp = ""
    if importance:
        imp = "<p>fANOVA importance for {}: {}</p>".format(html.escape(metric), ", ".join(
            f"<b>{html.escape(k)}</b> {v:.2f}" for k, v in importance.items()))
    figs = "\n".join(
        f'<figure><img alt="{html.escape(n)}" src="data:image/png;base64,{base64.b64encode(b).decode()}">'
        f"<figcaption>{html.escape(n)}</figcaption></figure>" for n, b in figures.items())
    shown = min(len(ranked), MAX_ROWS)
    return _PAGE.format(
        title=html.escape(title), metric=html.escape(metric), goal=html.escape(goal),
        n=f"{len(table):,}", axes=html.escape(", ".join(names) or "none"), summary=html.escape(summary),
        importance=imp, shown=f"{shown:,}", table=_table_html(ranked, names, metric), figures=figs,
        data=payload, style=_STYLE, script=_SCRIPT)


_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1400px}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;font-size:12px}th,td{border:1px solid #ccc;padding:2px 6px;text-align:right}
th{background:#eee;cursor:pointer;position:sticky;top:0}th.metric{background:#dde8f5}
th.asc::after{content:" \\25B2"}th.desc::after{content:" \\25BC"}
tr.diverged td{color:#d62728}.scroll{max-height:420px;overflow:auto;display:inline-block}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #ddd}figcaption{font-size:12px;color:#666}
#scatter{border:1px solid #ccc;background:#fff}.controls label{margin-right:1em;font-size:13px}
#tip{font-size:12px;color:#444;min-height:1.2em}
"""

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>jaxnets sweep: {title}</title>
<style>{style}</style></head>
<body>
<h1>jaxnets sweep: {title}</h1>
<p>{n} variants over {axes}; ranked by <b>{metric}</b> ({goal}); status: {summary}.</p>
{importance}
<h2>Ranked variants</h2>
<p>The best {shown} of {n}; click a column header to sort.</p>
<div class="scroll">{table}</div>
<h2>{metric} against the axes</h2>
<div class="controls"><label>x: <select id="xsel"></select></label>
<label>colour: <select id="csel"></select></label>
<label><input type="checkbox" id="ylog"> log {metric}</label></div>
<svg id="scatter" width="900" height="420" role="img" aria-label="scatter of {metric}"></svg>
<div id="tip">hover a point</div>
<p id="npoints"></p>
<h2>Figures</h2>
{figures}
<script type="application/json" id="data">{data}</script>
<script>{script}</script>
</body></html>
"""

_SCRIPT = r"""
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const NS = "http://www.w3.org/2000/svg";
const col = name => D.columns.indexOf(name);
function sortTable(th, asc) {
  const table = th.closest("table"), body = table.tBodies[0], k = th.cellIndex;
  table.querySelectorAll("th").forEach(h => h.classList.remove("asc", "desc"));
  th.classList.add(asc ? "asc" : "desc");
  const key = tr => { const t = tr.cells[k].textContent.trim(), v = Number(t);
    return t === "" ? null : (isNaN(v) ? t : v); };
  const rows = Array.from(body.rows).map(tr => [key(tr), tr]);
  rows.sort((a, b) => {
    if (a[0] === null) return b[0] === null ? 0 : 1;
    if (b[0] === null) return -1;
    const c = typeof a[0] === "number" && typeof b[0] === "number" ? a[0] - b[0]
      : String(a[0]).localeCompare(String(b[0]));
    return asc ? c : -c; });
  rows.forEach(r => body.appendChild(r[1]));
}
document.querySelectorAll("#ranked th").forEach(th =>
  th.addEventListener("click", () => sortTable(th, !th.classList.contains("asc"))));
function sortFromHash() {  // #sort=COLUMN (ascending) or #sort=-COLUMN: a link to a sorted table
  const m = /^#sort=(-?)(.+)$/.exec(decodeURIComponent(location.hash));
  if (!m) return;
  const th = Array.from(document.querySelectorAll("#ranked th")).find(h => h.textContent === m[2]);
  if (th) sortTable(th, m[1] !== "-");
}
function el(tag, attrs, parent) {
  const e = document.createElementNS(NS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(e);
  return e;
}
function scale(values, log, lo, hi) {
  const f = log ? Math.log10 : (v => v);
  const vs = values.filter(v => v !== null && (!log || v > 0)).map(f);
  let a = Math.min(...vs), b = Math.max(...vs);
  if (!isFinite(a)) { a = 0; b = 1; }
  if (a === b) { a -= 0.5; b += 0.5; }
  const s = v => lo + (f(v) - a) / (b - a) * (hi - lo);
  const decades = [];
  for (let d = Math.ceil(a); log && d <= Math.floor(b); d++) decades.push(d);
  s.ticks = decades.length >= 2 ? decades.map(d => [s(Math.pow(10, d)), Math.pow(10, d)])
    : [0, 0.25, 0.5, 0.75, 1].map(t => { const v = a + t * (b - a); return [lo + t * (hi - lo),
      log ? Math.pow(10, v) : v]; });
  return s;
}
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
                 "#17becf"];
function colourOf(name) {
  const k = col(name);
  if (name === "status") return r => r[k] === "diverged" ? "#d62728" : (r[k] === "ok" ? "#1f77b4" : "#7f7f7f");
  const ax = D.axes.find(a => a.name === name);
  if (ax && ax.numeric) {
    const s = scale(D.rows.map(r => r[k]), ax.log, 0, 1);
    return r => `hsl(${260 - 200 * s(r[k])},70%,45%)`;
  }
  const levels = [...new Set(D.rows.map(r => String(r[k])))];
  return r => PALETTE[levels.indexOf(String(r[k])) % PALETTE.length];
}
function draw() {
  const svg = document.getElementById("scatter");
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const W = +svg.getAttribute("width"), H = +svg.getAttribute("height"), L = 70, R = 20, T = 15, B = 45;
  const xname = document.getElementById("xsel").value, ylog = document.getElementById("ylog").checked;
  const ax = D.axes.find(a => a.name === xname) || {numeric: true, log: false};
  const xi = col(xname), yi = col(D.metric), si = col("status");
  let xs, levels = null;
  if (ax.numeric) xs = scale(D.rows.map(r => r[xi]), ax.log, L, W - R);
  else { levels = [...new Set(D.rows.map(r => String(r[xi])))];
    const step = (W - L - R) / levels.length;
    xs = v => L + step * (levels.indexOf(String(v)) + 0.5); }
  const ys = scale(D.rows.map(r => r[yi]), ylog, H - B, T), colour = colourOf(document.getElementById("csel").value);
  el("line", {x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#888"}, svg);
  el("line", {x1: L, y1: T, x2: L, y2: H - B, stroke: "#888"}, svg);
  const fmt = v => Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-2 && v !== 0) ? v.toExponential(1)
    : (+v.toPrecision(3)).toString();
  ys.ticks.forEach(([p, v]) => { el("text", {x: L - 5, y: p + 4, "text-anchor": "end", "font-size": 11}, svg)
    .textContent = fmt(v); });
  if (levels) levels.forEach(v => { el("text", {x: xs(v), y: H - B + 16, "text-anchor": "middle",
    "font-size": 11}, svg).textContent = v; });
  else xs.ticks.forEach(([p, v]) => { el("text", {x: p, y: H - B + 16, "text-anchor": "middle", "font-size": 11},
    svg).textContent = fmt(v); });
  el("text", {x: (L + W - R) / 2, y: H - 8, "text-anchor": "middle", "font-size": 12}, svg).textContent =
    xname + (ax.log ? " (log)" : "");
  el("text", {x: 14, y: (T + H - B) / 2, "text-anchor": "middle", "font-size": 12,
    transform: `rotate(-90 14 ${(T + H - B) / 2})`}, svg).textContent = D.metric;
  const tip = document.getElementById("tip");
  let drawn = 0;
  D.rows.forEach(r => {
    const x = r[xi], y = r[yi];
    if (x === null || (ax.log && x <= 0) || (ax.numeric && typeof x !== "number")) return;
    const yv = y === null || (ylog && y <= 0) ? T : ys(y);
    const jitter = levels ? (Math.random() - 0.5) * (W - L - R) / levels.length * 0.5 : 0;
    const dot = el("circle", {cx: xs(x) + jitter, cy: yv, r: 3.2, fill: colour(r), "fill-opacity": 0.75}, svg);
    if (r[si] === "diverged") { dot.setAttribute("stroke", "#d62728"); dot.setAttribute("stroke-width", 1.5); }
    dot.addEventListener("mouseenter", () => { tip.textContent = D.columns.map((c, k) => `${c}=${r[k]}`).join("  "); });
    drawn += 1;
  });
  document.getElementById("npoints").textContent =
    `${drawn} points` + (D.total > D.rows.length ? ` (a sample of the ${D.total} variants: the best ` +
    `tenth and a random rest)` : "") + "; diverged variants outlined in red.";
}
(function init() {
  const xsel = document.getElementById("xsel"), csel = document.getElementById("csel");
  const names = D.axes.map(a => a.name);
  (names.length ? names : ["variant"]).forEach(n => xsel.add(new Option(n, n)));
  ["status", ...names].forEach(n => csel.add(new Option(n, n)));
  const ys = D.rows.map(r => r[col(D.metric)]).filter(v => v !== null);
  const lo = Math.min(...ys), hi = Math.max(...ys);
  document.getElementById("ylog").checked = ys.length > 0 && lo > 0 && hi / lo > 20;
  [xsel, csel, document.getElementById("ylog")].forEach(e => e.addEventListener("change", draw));
  draw();
  sortFromHash();
  window.addEventListener("hashchange", sortFromHash);
  document.body.setAttribute("data-ready", "1");
})();
"""
