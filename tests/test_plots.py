"""Tests for the pictures of a sweep (jaxnets.landscape, jaxnets.plots, jaxnets.report): what they draw, that
they draw aggregates (a bounded number of artists) at 65,536 variants, the self-contained report.html (parsed,
and in headless Chromium when one is installed), and ``jaxnets show DIR --plots``."""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection, PolyCollection, QuadMesh
from matplotlib.colors import to_hex
from matplotlib.lines import Line2D

from jaxnets import cli, landscape, plots, report, store
from jaxnets.config import Axis

METRIC = "final_val_loss"
GRID_TOML = """\
[data]
name = "iris"

[model]
hidden = [4]

[train]
steps = 20
batch_size = 16

[sweep]
method = "grid"
metric = "val_loss"

[sweep.axes]
learning_rate = {lr}
init_scale = {scale}
"""


def synthetic(n_side: int = 256, n_eval: int = 11, n_layers: int = 3, seed: int = 0):
    """An ``n_side`` x ``n_side`` grid of learning rate x init scale (both log-spaced): a results table and a
    history as a sweep writes them. The loss falls with the learning rate; variants beyond a curved boundary
    diverge (their curves turn NaN half-way)."""
    rng = np.random.default_rng(seed)
    lr, scale = np.meshgrid(np.geomspace(1e-3, 10, n_side), np.geomspace(0.1, 10, n_side), indexing="ij")
    lr, scale = lr.ravel(), scale.ravel()
    v = lr.size
    diverged = np.log10(lr) + 0.5 * np.log10(scale) + 0.3 * np.sin(7 * np.log10(lr * scale)) > 0.2
    final = np.exp(-np.log10(lr) - 3) * (1 + 0.1 * rng.random(v)) + 0.05
    table = pd.DataFrame({
        "variant": np.arange(v), "learning_rate": lr, "init_scale": scale,
        "status": np.where(diverged, "diverged", "ok"), "stopped_step": 100, "final_train_loss": rng.random(v),
        METRIC: final, "best_val_loss": final, "val_accuracy": 1 / (1 + final), "test_loss": final,
        "test_accuracy": 1 / (1 + final), "group_wall_s": 1.0, "unit": "group-000", "group": "group-000/0"})
    steps = np.arange(n_eval) * 10.0
    decay = np.exp(-np.outer(lr, steps) / 20)
    loss = 1.1 * decay + final[:, None] * (1 - decay)
    loss[diverged, n_eval // 2:] = np.nan
    history = {"val_loss": loss, "train_loss": loss, "eval_step": np.tile(steps, (v, 1)),
               "step": steps.astype(np.int64), "variant": np.arange(v),
               "grad_norm": np.exp(rng.normal(size=(v, n_eval, n_layers))),
               "dead_fraction": rng.random((v, n_eval, n_layers - 1)) * 0.2,
               "saturated_fraction": rng.random((v, n_eval, n_layers - 1)) * 0.2}
    return table, history


LOG_AXES = [Axis("learning_rate", values=tuple(np.geomspace(1e-3, 10, 4))),
            Axis("init_scale", values=tuple(np.geomspace(0.1, 10, 4)))]


def _artists(fig, kind) -> list:
    """The artists of type ``kind`` in the figure's visible plot panels (not in its colour bars)."""
    return [a for a in fig.findobj(kind)
            if a.axes is not None and a.axes.get_visible() and not hasattr(a.axes, "_colorbar")]


# ---------------------------------------------------------------------------------------------- the axes


def test_describe_tells_numeric_log_and_lattice_axes_apart():
    table = pd.DataFrame({"lr": [1e-3, 1e-2, 1e-1, 1.0] * 2, "lin": [0.1, 0.2, 0.3, 0.4] * 2,
                          "steps": [10, 20, 40, 80] * 2, "act": ["tanh"] * 4 + ["relu"] * 4, "fixed": 1.0,
                          "flag": [True, False] * 4})
    infos = {i.name: i for i in landscape.describe(table, ["lr", "lin", "steps", "act", "fixed", "flag"])}
    assert "fixed" not in infos, "an axis with one value is not drawn"
    assert (infos["lr"].numeric, infos["lr"].log, infos["lr"].lattice) == (True, True, True)
    assert (infos["lin"].numeric, infos["lin"].log) == (True, False)
    assert infos["steps"].log, "powers of two are spaced evenly in log"
    assert (infos["act"].numeric, infos["act"].values) == (False, ("tanh", "relu"))
    assert not infos["flag"].numeric, "booleans are categories"
    # a range's own `log` wins over the inference: a linear range of positive values stays linear
    wide = pd.DataFrame({"lr": np.linspace(0.001, 1, 500)})
    assert landscape.describe(wide, ["lr"])[0].log and not landscape.describe(wide, ["lr"])[0].lattice
    assert not landscape.describe(wide, [Axis("lr", low=0.001, high=1.0)])[0].log
    assert landscape.describe(wide, [Axis("lr", low=0.001, high=1.0, log=True)])[0].log


def test_bins_put_each_value_in_its_cell_and_bin_a_continuous_axis_in_log():
    x = pd.Series([0.001, 0.01, 0.1, 0.01])
    info = landscape.describe(pd.DataFrame({"x": x}), ["x"])[0]
    index, edges, labels = landscape.bins(info, x)
    assert index.tolist() == [0, 1, 2, 1] and labels == ["0.001", "0.01", "0.1"]
    assert np.allclose(edges[1:-1], [np.sqrt(0.001 * 0.01), np.sqrt(0.01 * 0.1)]), "geometric midpoints"
    sampled = pd.Series(np.geomspace(1e-4, 1, 1000))
    info = landscape.describe(pd.DataFrame({"x": sampled}), ["x"])[0]
    index, edges, _ = landscape.bins(info, sampled, 4)
    assert np.allclose(edges, [1e-4, 1e-3, 1e-2, 1e-1, 1]) and np.bincount(index).tolist() == [250] * 4
    assert np.all((edges[index] <= sampled) & (sampled <= edges[index + 1]))


def test_cell_stats_take_medians_over_the_variants_that_did_not_diverge():
    table = pd.DataFrame({"a": [0, 0, 0, 1, 1, 1], "status": ["ok", "ok", "diverged", "diverged", "diverged", "ok"],
                          METRIC: [1.0, 3.0, 0.0, 0.0, 0.0, np.inf]})
    stats = landscape.cell_stats(table, METRIC, [table["a"].to_numpy()], (3,))
    assert stats["median"][0] == 2.0, "the diverged variant's (repeated last) value is left out"
    assert np.isnan(stats["median"][1]) and np.isnan(stats["median"][2]), "no finite value / no variant"
    assert stats["count"].tolist() == [3, 3, 0]
    assert np.allclose(stats["diverged"], [1 / 3, 2 / 3, 0])


def test_importances_rank_the_axis_that_decides_the_metric_first():
    table, _ = synthetic(n_side=24)
    table["noise"] = np.random.default_rng(1).choice(["a", "b"], len(table))
    scores = landscape.importances(table, [*LOG_AXES, "noise"], METRIC, "min")
    assert list(scores)[0] == "learning_rate" and scores["learning_rate"] > 0.6
    assert scores["noise"] < 0.05 and abs(sum(scores.values()) - 1) < 1e-6
    assert landscape.importances(table.assign(**{METRIC: 1.0, "status": "ok"}), LOG_AXES, METRIC, "min") == {}
    # subsampled above max_trials, reproducibly
    assert landscape.importances(table, LOG_AXES, METRIC, "min", max_trials=200) == \
        landscape.importances(table, LOG_AXES, METRIC, "min", max_trials=200)


# ----------------------------------------------------------------------------------------- the landscape


def test_landscape_of_two_log_axes_is_a_log_heatmap_with_the_diverged_cells_in_red():
    table, _ = synthetic(n_side=16)
    fig = landscape.landscape_figure(table, LOG_AXES, METRIC, "min")
    ax = fig.axes[0]
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    assert ax.get_xlabel().startswith("learning_rate") and ax.get_ylabel().startswith("init_scale")
    metric_mesh, diverged_mesh = _artists(fig, QuadMesh)
    assert metric_mesh.get_array().shape == (16, 16)
    red = diverged_mesh.get_array()
    expected = (table["status"] == "diverged").to_numpy().reshape(16, 16).T  # rows: init_scale
    assert np.array_equal(~np.ma.getmaskarray(red), expected), "exactly the diverged cells are red"
    assert to_hex(diverged_mesh.cmap(1.0)) == landscape.DIVERGED_COLOUR
    # the metric's median per cell, best is bright: lower loss at higher learning rate (the columns)
    medians = metric_mesh.get_array()
    assert medians[0, 0] > medians[0, 5]


def test_a_categorical_third_axis_makes_small_multiples():
    table, _ = synthetic(n_side=8)
    table = pd.concat([table.assign(act="tanh"), table.assign(act="relu", variant=table["variant"] + 64)])
    fig = landscape.landscape_figure(table, [*LOG_AXES, "act"], METRIC, "min")
    titles = sorted(ax.get_title() for ax in fig.axes if ax.get_title())
    assert titles == ["act = relu", "act = tanh"]
    assert len(_artists(fig, QuadMesh)) == 4  # metric + diverged per panel


def test_a_small_random_search_is_drawn_as_points_not_as_sparse_cells():
    rng = np.random.default_rng(0)
    lr, momentum = 10 ** rng.uniform(-4, 0, 200), rng.uniform(0, 0.99, 200)
    table = pd.DataFrame({"variant": np.arange(200), "learning_rate": lr, "momentum": momentum,
                          "status": np.where(lr > 0.3, "diverged", "ok"), METRIC: rng.random(200)})
    axes = [Axis("learning_rate", low=1e-4, high=1.0, log=True), Axis("momentum", low=0.0, high=0.99)]
    assert not any(i.lattice for i in landscape.describe(table, axes)), "sampled ranges are not grids"
    fig = landscape.landscape_figure(table, axes, METRIC, "min")
    assert not _artists(fig, QuadMesh)
    ok, bad = _artists(fig, PathCollection)
    assert len(ok.get_offsets()) == (lr <= 0.3).sum() and len(bad.get_offsets()) == (lr > 0.3).sum()
    assert fig.axes[0].get_xscale() == "log" and fig.axes[0].get_yscale() == "linear"


def test_one_axis_is_a_median_line_with_a_quantile_band():
    table, _ = synthetic(n_side=8)  # 8 learning rates x 8 init scales: init_scale aggregated as a band
    fig = landscape.landscape_figure(table, [LOG_AXES[0]], METRIC, "min")
    ax = fig.axes[0]
    line = next(a for a in ax.lines if len(a.get_xdata()))
    x, y = np.asarray(line.get_xdata()), np.asarray(line.get_ydata())
    ok = table[table["status"] == "ok"]
    expected = ok.groupby("learning_rate")[METRIC].median()
    assert np.allclose(x, expected.index) and np.allclose(y, expected.to_numpy())
    assert ax.get_xscale() == "log" and len(_artists(fig, PolyCollection)) >= 2  # band + diverged shading


def test_two_categorical_axes_are_a_heatmap_with_the_values_written_in():
    table = pd.DataFrame({"act": ["tanh", "relu"] * 4, "init": ["normal"] * 4 + ["he"] * 4,
                          "seed": [0, 0, 1, 1] * 2, "status": "ok", METRIC: [1.0, 2.0, 3.0, 4.0, 5, 6, 7, 8]})
    fig = landscape.landscape_figure(table, ["act", "init", "seed"], METRIC, "min")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["tanh", "relu"]
    assert sorted(t.get_text() for t in ax.texts) == ["2", "3", "6", "7"]  # medians over the seeds
    assert "median over seed" in fig._suptitle.get_text()


# --------------------------------------------------------------------------------- aggregation, at scale


def test_few_variants_still_get_one_line_each():
    table, history = synthetic(n_side=4)
    fig = plots.loss_curves_figure(table, history, LOG_AXES)
    assert len([ln for ln in _artists(fig, Line2D) if len(ln.get_xdata()) > 1]) == 16


def test_many_variants_are_grouped_by_the_most_important_axis():
    table, history = synthetic(n_side=16)  # 256 variants
    by = plots.most_important(table, LOG_AXES, {"init_scale": 0.9, "learning_rate": 0.1})
    assert by == "init_scale"
    seeded = table.assign(seed=table["variant"] % 2)
    assert plots.most_important(seeded, ["seed", *LOG_AXES], {"seed": 0.9}) == "learning_rate"
    assert plots.most_important(seeded, ["seed"], None) == "seed"
    groups = plots.axis_groups(table, LOG_AXES, "learning_rate", plots.CURVE_GROUPS)
    assert len(groups) == plots.CURVE_GROUPS and sum(len(i) for _, i in groups) == len(table)
    fig = plots.loss_curves_figure(table, history, LOG_AXES, "learning_rate")
    curves = [ln for ln in _artists(fig, Line2D) if len(ln.get_xdata()) > 1]
    assert len(curves) == plots.CURVE_GROUPS
    label, idx = groups[0]
    mid = np.nanmedian(history["val_loss"][idx[table["status"].to_numpy()[idx] == "ok"]], axis=0)
    assert np.allclose(curves[0].get_ydata(), mid), "the line is the group's median curve"
    cols = plots.variant_groups(table, LOG_AXES, METRIC, "min", by="learning_rate")
    assert len(cols) == 16, "256 combinations: one column per learning rate"


def test_every_picture_at_65536_variants_draws_aggregates(tmp_path, monkeypatch):
    """The whole pipeline (report.save: landscape, importance, loss curves, heatmaps, report.html) on a
    256 x 256 grid: a bounded number of artists per figure, never one per variant. The time is printed
    (pytest -s), not asserted: ~10 s on a 2-core machine."""
    table, history = synthetic(n_side=256)
    figures = {}
    real_save = plots._save

    def spy(fig, path):
        figures[Path(path).name] = fig
        return real_save(fig, path)

    monkeypatch.setattr(plots, "_save", spy)
    start = time.perf_counter()
    paths = report.save(tmp_path, table, history, LOG_AXES, METRIC, "min", "grid")
    print(f"\nreport.save at {len(table):,} variants: {time.perf_counter() - start:.1f} s")
    assert [p.name for p in paths] == ["loss_curves.png", "grad_norm.png", "activation_health.png",
                                       "landscape.png", "importance.png", "report.html"]
    for name, fig in figures.items():
        assert len(fig.findobj()) < 2000, f"{name}: {len(fig.findobj())} artists"
    curves = [ln for ln in _artists(figures["loss_curves.png"], Line2D) if len(ln.get_xdata()) > 1]
    assert len(curves) <= plots.CURVE_GROUPS
    assert all(len(im.get_array()[0]) <= plots.MAX_COLUMNS for im in figures["grad_norm.png"].axes[0].images)
    assert [m.get_array().shape for m in _artists(figures["landscape.png"], QuadMesh)] == [(256, 256)] * 2
    page = (tmp_path / "report.html").read_text()
    data = _data(page)
    assert len(data["rows"]) == report.MAX_POINTS and data["total"] == len(table)
    assert page.count("<tr class=") == report.MAX_ROWS


# --------------------------------------------------------------------------------------------- the page


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.attrs, self.scripts, self._script = [], [], [], None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.append((tag, dict(attrs)))
        if tag == "script":
            self._script = dict(attrs)

    def handle_data(self, data):
        if self._script is not None:
            self.scripts.append((self._script, data))

    def handle_endtag(self, tag):
        if tag == "script":
            self._script = None


def _data(page: str) -> dict:
    parser = _Page()
    parser.feed(page)
    return json.loads(next(d for a, d in parser.scripts if a.get("id") == "data"))


def _small_run(tmp_path) -> Path:
    table, history = synthetic(n_side=6)
    table["act"] = np.where(table["variant"] % 2, "tanh", "</script><b>relu")  # must not break the page
    axes = [*LOG_AXES, "act"]
    report.save(tmp_path, table, history, axes, METRIC, "min", "grid")
    return tmp_path / report.REPORT


def test_the_report_is_one_self_contained_page(tmp_path):
    page = _small_run(tmp_path).read_text()
    parser = _Page()
    parser.feed(page)
    parser.close()
    assert parser.tags[0] == "html" and "table" in parser.tags and "svg" in parser.tags
    for tag, attrs in parser.attrs:
        for key in ("src", "href"):
            assert not attrs.get(key, "").startswith(("http:", "https:", "//")), (tag, attrs)
        if tag == "script":
            assert "src" not in attrs, "scripts are inline"
        if tag == "link":
            pytest.fail("no external stylesheet")
    images = [a for t, a in parser.attrs if t == "img"]
    assert [a["alt"] for a in images] == ["landscape.png", "importance.png", "loss_curves.png", "grad_norm.png",
                                          "activation_health.png"]
    assert all(a["src"].startswith("data:image/png;base64,iVBORw0KGgo") for a in images)
    data = _data(page)
    assert data["columns"] == ["variant", "learning_rate", "init_scale", "act", "status", METRIC]
    assert len(data["rows"]) == 36 and "</script><b>relu" in {r[3] for r in data["rows"]}
    assert [int(a) for a in _column(page, "rank")] == list(range(1, 37))
    values = [float(v) for v in _column(page, METRIC)]
    assert values == sorted(values), "ranked best first"
    assert [float(v) for v in _column(page, "final_train_loss")] != sorted(values)


def _column(page: str, name: str) -> list[str]:
    """The column ``name`` of the ranked table's body, in page order."""
    import re

    head = page[page.index("<thead>"):page.index("</thead>")]
    k = re.findall(r"<th(?: [^>]*)?>(.*?)</th>", head).index(name)
    body = page[page.index("<tbody>"):page.index("</tbody>")]
    return [re.findall(r"<td>(.*?)</td>", row)[k] for row in body.split("<tr")[1:]]


def _chromium() -> str | None:
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
                None)


@pytest.mark.skipif(_chromium() is None, reason="no headless Chromium installed (apt-get install chromium)")
def test_the_report_renders_in_headless_chromium(tmp_path):
    path = _small_run(tmp_path / "run")
    flags = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", f"{path.as_uri()}#sort=-final_train_loss"], capture_output=True,
                         text=True, timeout=120).stdout
    assert 'data-ready="1"' in dom, "the page's script ran to its end"
    assert dom.count("<circle") == 36, "one point per variant in the scatter"
    values = [float(v) for v in _column(dom, "final_train_loss")]
    assert values == sorted(values, reverse=True), "#sort=-COLUMN sorted the table, descending"
    assert [float(v) for v in _column(dom, METRIC)] != sorted(values, reverse=True)
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1280,2000", path.as_uri()],
                   capture_output=True, timeout=120, check=True)
    assert shot.read_bytes()[:4] == b"\x89PNG" and shot.stat().st_size > 50_000


# ----------------------------------------------------------------------------------------------- the CLI


def _results_dir(out: Path, n_side: int = 5) -> Path:
    """A finished results directory (config, results, manifest) of an ``n_side`` x ``n_side`` grid."""
    table, history = synthetic(n_side=n_side)
    values = {n: sorted(set(table[n].round(12))) for n in ("learning_rate", "init_scale")}
    table = table.assign(**{n: table[n].round(12) for n in values})
    out.mkdir(parents=True)
    (out / store.CONFIG).write_text(GRID_TOML.format(lr=values["learning_rate"], scale=values["init_scale"]))
    store.write_results(out, table, history)
    return out


def test_show_plots_redraws_every_picture_from_the_saved_results(tmp_path, capsys):
    out = _results_dir(tmp_path / "run")
    assert cli.main(["show", str(out), "--top", "3", "--plots"]) == 0
    printed = capsys.readouterr().out
    assert "top 3 of 25 variants" in printed and f"report:  {out / 'report.html'}" in printed
    for name in ("landscape.png", "importance.png", "loss_curves.png", "grad_norm.png", "activation_health.png"):
        assert (out / "plots" / name).read_bytes()[:4] == b"\x89PNG", name
    assert "landscape.png" in (out / "report.html").read_text()
    assert cli.main(["show", str(out)]) == 0 and "report:" not in capsys.readouterr().out


def test_show_plots_when_the_disk_refuses_is_one_line(tmp_path, capsys, monkeypatch):
    out = _results_dir(tmp_path / "run")

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.os, "replace", full)
    assert cli.main(["show", str(out), "--plots"]) == cli.EXIT_STORAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("jaxnets: error: cannot write") and "loss_curves.png" in err[0]
    assert "No space left on device" in err[0] and "untouched" in err[0]
    assert not list(out.rglob(".*.tmp")), "no temporary file left behind"


def test_a_two_axis_grid_sweep_writes_the_landscape_and_the_report(tmp_path, capsys):
    config = tmp_path / "grid.toml"
    config.write_text(GRID_TOML.format(lr=[0.01, 0.1, 1.0, 10.0], scale=[0.5, 1.0, 2.0]))
    assert cli.main(["sweep", str(config), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert "report:" in capsys.readouterr().out
    plots_dir = tmp_path / "out" / "plots"
    assert {"landscape.png", "importance.png"} <= {p.name for p in plots_dir.iterdir()}
    page = (tmp_path / "out" / "report.html").read_text()
    assert len(_data(page)["rows"]) == 12


def test_output_last_puts_every_variants_output_layer_in_the_last_row():
    from jaxnets import plots as plots_lib

    nan = np.nan
    values = np.array([[1.0, 2.0, 3.0],     # two hidden layers, output
                       [4.0, 5.0, nan],     # one hidden layer, output
                       [nan, nan, nan]])    # nothing recorded
    out = plots_lib.output_last(values)
    np.testing.assert_array_equal(out, [[1.0, 2.0, 3.0], [4.0, nan, 5.0], [nan, nan, nan]])
    np.testing.assert_array_equal(values[1], [4.0, 5.0, nan])  # the input is left alone
