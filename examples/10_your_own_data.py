"""Your own data: a CSV file and two lines of config sweep it like a built-in data set.

Claim
    A table of your own needs no code to be swept: a CSV with a header row, numeric feature columns and a
    label column, and ``[data] path`` / ``target`` in the config instead of ``name``. jaxnets infers the task
    from the label column (two class names: binary, mapped to 0 / 1 in sorted order), picks the loss, splits
    the rows with the same seeded, stratified split as the built-in sets and standardizes the features with
    the training split's statistics (the raw columns here span five orders of magnitude), so the table
    trains as it is, with no preprocessing code.

Sweep
    scikit-learn's breast-cancer table (569 patients, 30 features whose scales span 1e-3 to 4e3), written to
    ``DIR/data/breast_cancer.csv`` with a text ``diagnosis`` column (``benign`` -> 0, ``malignant`` -> 1), and
    a config ``DIR/sweep.toml`` next to it with ``path = "data/breast_cancer.csv"`` (relative to the
    config's folder) and ``target = "diagnosis"``. An MLP [32, 32], Adam, 600 steps of minibatch 64; the
    grid: activation (sigmoid, tanh, relu) x learning rate (1e-3, 1e-2, 1e-1) x seed (0, 1, 2), 27 variants
    in one static group (one compiled program). The sweep runs through the command line,
    ``jaxnets sweep DIR/sweep.toml --out DIR/sweep`` (here ``jaxnets.cli.main``), which writes its own
    ``results.csv``, ``history.npz`` and plots in ``DIR/sweep``; run the example again and the sweep
    resumes from there instead of training again.

Figure (figure.png)
    (a) validation loss (binary cross-entropy) against the step, one line per activation and learning
    rate (mean over seeds; colour: activation, line style: learning rate); (b) final validation accuracy of
    each activation x learning rate (mean over seeds).

Table (table.csv)
    One row per activation x learning rate: final training and validation loss, best validation loss and
    final validation accuracy (means over seeds), the number of seeds and how many ended ``ok``.

Run: ``python examples/10_your_own_data.py [--small] [--out DIR]``
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from jaxnets import cli, data  # noqa: E402

NAME = "10_your_own_data"
LINESTYLES = ("-", "--", ":")

CONFIG = """\
# A sweep over your own CSV (written by examples/10_your_own_data.py).
[data]
path = "data/breast_cancer.csv"   # relative to this file's folder
target = "diagnosis"              # the label column: benign / malignant
seed = 0                          # the train / validation / test split

[model]
kind = "mlp"
hidden = [32, 32]

[train]
optimizer = "adam"
steps = {steps}
batch_size = 64
eval_every = {eval_every}

[sweep]
method = "grid"
metric = "val_loss"

[sweep.axes]
activation = {activations}
learning_rate = {learning_rates}
seed = {seeds}
"""


def config(small: bool) -> dict:
    if small:
        return dict(activations=["tanh", "relu"], learning_rates=[1e-2, 1e-1], seeds=[0], steps=20,
                    eval_every=10)
    return dict(activations=["sigmoid", "tanh", "relu"], learning_rates=[1e-3, 1e-2, 1e-1], seeds=[0, 1, 2],
                steps=600, eval_every=25)


def write_csv(path: Path) -> Path:
    """scikit-learn's breast-cancer table as a CSV: 30 numeric columns and a text ``diagnosis`` column."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    names = [str(n) for n in bunch.target_names]  # target 0 = malignant, 1 = benign
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([*map(str, bunch.feature_names), "diagnosis"])
        for row, label in zip(bunch.data, bunch.target, strict=True):
            writer.writerow([*(repr(float(v)) for v in row), names[label]])
    return path


def write_config(path: Path, cfg: dict) -> Path:
    def toml_list(values: list) -> str:
        return "[" + ", ".join(f'"{v}"' if isinstance(v, str) else repr(v) for v in values) + "]"

    path.write_text(CONFIG.format(steps=cfg["steps"], eval_every=cfg["eval_every"],
                                  activations=toml_list(cfg["activations"]),
                                  learning_rates=toml_list(cfg["learning_rates"]), seeds=toml_list(cfg["seeds"])))
    return path


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    metrics = ["final_train_loss", "final_val_loss", "best_val_loss", "val_accuracy"]
    grouped = results.groupby(["activation", "learning_rate"], sort=False)
    table = grouped[metrics].mean().reset_index()
    table["n_seeds"] = grouped.size().to_numpy()
    table["n_ok"] = grouped["status"].apply(lambda s: int((s == "ok").sum())).to_numpy()
    return table


def plot(results: pd.DataFrame, history: dict, cfg: dict, out: Path) -> None:
    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(12, 4.5))
    acts, lrs = cfg["activations"], cfg["learning_rates"]
    steps = history["step"]
    for act in acts:
        for lr, style in zip(lrs, LINESTYLES, strict=False):
            idx = results.index[(results.activation == act) & np.isclose(results.learning_rate, lr)].to_numpy()
            curves = history["val_loss"][idx][:, : len(steps)]
            C.mean_band(ax_a, steps, curves, label=f"{act}, lr {lr:g}", color=C.COLORS.get(act), ls=style)
    ax_a.set(xlabel="step", ylabel="validation loss (BCE)", yscale="log",
             title="(a) validation loss, mean over seeds (band: min-max)")
    C.label_lines(ax_a, ncol=len(acts))
    grid = np.array([[results.val_accuracy[(results.activation == a) & np.isclose(results.learning_rate, lr)].mean()
                      for lr in lrs] for a in acts])
    low = min(0.9, float(np.nanmin(grid)))
    im = ax_b.imshow(grid, cmap="viridis", vmin=low, vmax=1.0, aspect="auto")
    for (i, j), v in np.ndenumerate(grid):
        ax_b.text(j, i, f"{v:.3f}", ha="center", va="center", color="w" if v < (low + 1) / 2 else "k", fontsize=10)
    ax_b.set(xticks=range(len(lrs)), xticklabels=[f"{lr:g}" for lr in lrs], yticks=range(len(acts)),
             yticklabels=acts, xlabel="learning rate", title="(b) final validation accuracy, mean over seeds")
    fig.colorbar(im, ax=ax_b, fraction=0.046)
    fig.suptitle("A sweep over your own CSV: breast_cancer.csv, [data] path / target", fontsize=11)
    C.save_figure(fig, out)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = C.parser(__doc__, NAME).parse_args(argv)
    timer = C.Timer()
    cfg = config(args.small)
    csv_path = write_csv(args.out / "data" / "breast_cancer.csv")
    config_path = write_config(args.out / "sweep.toml", cfg)
    ds = data.load_file(csv_path, target="diagnosis")  # what the sweep will train on (sweep.plan loads the same)
    print(f"{csv_path}: {data.describe(ds)}")
    sweep_dir = args.out / "sweep"
    with C.timed("jaxnets sweep"):
        code = cli.main(["sweep", str(config_path), "--out", str(sweep_dir), "--quiet", "--force", "--top", "5"])
    if code != 0:
        raise SystemExit(f"jaxnets sweep failed with exit code {code}")
    results = pd.read_csv(sweep_dir / "results.csv")
    with np.load(sweep_dir / "history.npz") as f:
        history = {k: f[k] for k in f.files}
    table = summarize(results)
    C.write_table(table, args.out)
    plot(results, history, cfg, args.out)
    C.finish(args.out, timer)
    return table


if __name__ == "__main__":
    main()
