"""ANN vs CNN vs RNN: the same digits three ways, and the adding problem that needs memory over time.

Claim
    The architecture should match the structure of the data. On the 8x8 digits, a plain MLP on the 64
    pixels, a CNN on the 8x8 image and an RNN reading the image row by row (8 steps of 8 pixels) all reach
    high accuracy; they differ in parameter count and cost per step (the CNN shares its 3x3 filters over
    the image, the RNN shares its cell over the rows and must run the rows one after another). On the adding
    problem (Hochreiter & Schmidhuber) — 50 time steps of (value, marker), target: the sum of the two
    marked values — a recurrent network learns the rule (test MSE ~1e-3), while an MLP on the flattened
    sequence, with no notion of "the same operation at every step", memorizes its training set (training
    MSE ~1e-6) and does no better than predicting the constant 1 on new sequences (MSE ~1/6).

Sweep
    Digits (same examples and split for all three, see ``jaxnets.data``): MLP [64, 64]; CNN with 16 and 32
    3x3 filters, 2x2 max-pooling, a 64-unit dense layer; GRU with 64 units. Adam 1e-3, batch 128, 1000 steps,
    3 seeds each. Adding problem (T = 50, 3000 sequences): MLP [128, 128] (Adam 1e-3, batch 128) and GRU
    with 32 units (Adam 3e-3, batch 64), 1500 steps, 3 seeds each. One ``engine.train`` call per data set;
    the seeds of a model train together in one program. ``--adding-cnn`` adds a CNN that reads the sequence
    as a [T, 1, 2] image (slow: ~2 minutes more).

Figure (figure.png)
    (a) digits: validation accuracy against the training step; (b) digits: test accuracy per model with its
    parameter count and milliseconds per training step (one model alone, and the engine's 3 seeds at once);
    (c) adding problem: validation MSE (solid) and training MSE (dashed) against the step, with the MSE of
    always predicting 1 (dotted); (d) adding problem: predicted vs true sum on the test set (seed 0).

Table (table.csv)
    One row per (task, model): parameters, validation and test accuracy (digits) or MSE (adding), training
    MSE, milliseconds per training step of one model alone (plain ``jit`` of an Adam step, no ``vmap``) and
    of the engine's program for all seeds together (evaluations included: the engine times whole chunks),
    compile time; the adding rows include the constant-1 baseline.

Run: ``python examples/01_ann_cnn_rnn.py [--small] [--out DIR] [--adding-cnn]``
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import pandas as pd  # noqa: E402

from jaxnets import data, engine, losses  # noqa: E402

NAME = "01_ann_cnn_rnn"


def config(small: bool) -> dict:
    if small:
        return dict(seeds=1, digit_steps=20, digit_eval=10, mlp=(16,), cnn=(4,), cnn_dense=(), rnn=(8,),
                    adding_length=10, adding_samples=400, adding_steps=20, adding_eval=10, adding_mlp=(16,),
                    adding_rnn=(8,))
    return dict(seeds=3, digit_steps=1000, digit_eval=100, mlp=(64, 64), cnn=(16, 32), cnn_dense=(64,),
                rnn=(64,), adding_length=50, adding_samples=3000, adding_steps=1500, adding_eval=150,
                adding_mlp=(128, 128), adding_rnn=(32,))


def digit_runs(cfg: dict) -> list[tuple[str, str, dict]]:
    common = dict(optimizer="adam", learning_rate=1e-3, batch_size=128, steps=cfg["digit_steps"],
                  eval_every=cfg["digit_eval"])
    return [
        ("MLP", "digits", dict(kind="mlp", hidden=cfg["mlp"], activation="relu", **common)),
        ("CNN", "digits_image", dict(kind="cnn", hidden=cfg["cnn"], dense=cfg["cnn_dense"], activation="relu",
                                     **common)),
        ("RNN", "digits_sequence", dict(kind="rnn", cell="gru", hidden=cfg["rnn"], activation="tanh", **common)),
    ]


def adding_runs(cfg: dict, with_cnn: bool) -> list[tuple[str, str, dict]]:
    common = dict(steps=cfg["adding_steps"], eval_every=cfg["adding_eval"], optimizer="adam")
    runs = [
        ("MLP", "adding", dict(kind="mlp", hidden=cfg["adding_mlp"], activation="relu", learning_rate=1e-3,
                               batch_size=128, **common)),
        ("RNN", "adding", dict(kind="rnn", cell="gru", hidden=cfg["adding_rnn"], activation="tanh",
                               learning_rate=3e-3, batch_size=64, **common)),
    ]
    if with_cnn:
        runs.append(("CNN", "adding_image", dict(kind="cnn", hidden=(16, 32), dense=(64,), activation="relu",
                                                 learning_rate=1e-3, batch_size=128, **common)))
    return runs


def as_image(ds: data.Dataset) -> data.Dataset:
    """Sequences [N, T, F] as images [N, T, 1, F] (a CNN then convolves over time)."""
    return dataclasses.replace(ds, name=ds.name + "_image", **{
        f"x_{s}": getattr(ds, f"x_{s}")[:, :, None, :] for s in ("train", "val", "test")})


def train(task: str, runs: list[tuple[str, str, dict]], sets: dict, seeds: int) -> dict:
    """One engine call per data set; returns {model: (result, indices, dataset)}."""
    out = {}
    for model, ds_name, row in runs:
        rows = [dict(row, seed=s) for s in range(seeds)]
        with C.timed(f"engine.train: {task} {model} on {ds_name}, {len(rows)} variants"):
            result = engine.train(rows, sets[ds_name])
        out[model] = (result, sets[ds_name])
    return out


def single_step_ms(row: dict, ds: data.Dataset, batch: int, n: int = 30) -> float:
    """Milliseconds per Adam step of ONE model (plain ``jit``, no ``vmap``) on a fixed minibatch."""
    model = engine.model(row, ds)
    x = jnp.asarray(ds.x_train[:batch])
    y = jnp.asarray(C.labels_for(row["loss"], ds.y_train[:batch], ds))
    loss_fn = losses.get(row["loss"])
    params = model.init(jax.random.key(0), x[:1])["params"]
    opt = optax.adam(row["learning_rate"])

    @jax.jit
    def step(params, state):
        def objective(p):
            z = model.apply({"params": p}, x)
            return jnp.mean(loss_fn(z[..., 0] if row["loss"] == "binary_crossentropy" else z, y))

        grads = jax.grad(objective)(params)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    state = opt.init(params)
    params, state = jax.block_until_ready(step(params, state))  # compile
    t0 = time.perf_counter()
    for _ in range(n):
        params, state = step(params, state)
    jax.block_until_ready(params)
    return 1000 * (time.perf_counter() - t0) / n


def summarize(task: str, runs: dict, cfg: dict) -> list[dict]:
    rows = []
    for model, (result, ds) in runs.items():
        test = C.evaluate(result, ds, "test")
        g = result.groups[0]
        regression = ds.task == "regression"
        rows.append({
            "task": task,
            "model": model,
            "data": ds.name,
            "input_shape": "x".join(map(str, ds.input_shape)),
            "n_params": C.n_params(result.params(0)),
            "val_accuracy": np.nan if regression else float(np.mean(result.final("val_accuracy"))),
            "test_accuracy": np.nan if regression else float(test.test_accuracy.mean()),
            "train_mse": float(np.mean(result.final("train_loss"))) if regression else np.nan,
            "val_mse": float(np.mean(result.final("val_loss"))) if regression else np.nan,
            "test_mse": float(test.test_loss.mean()) if regression else np.nan,
            "ms_per_step_engine": 1000 * g.run_s / g.spec.steps,
            "ms_per_step_single": single_step_ms(result.rows[0], ds, g.spec.batch_size),
            "compile_s": g.compile_s,
            "n_seeds": len(result),
        })
    return rows


def plot(digits: dict, adding: dict, table: pd.DataFrame, baseline: float, out: Path) -> None:
    fig, axes = plt.subplots(2, 2, figsize=(13, 9.5))
    ax = axes[0][0]
    for model, (result, ds) in digits.items():
        C.mean_band(ax, result.eval_steps, result.history["val_accuracy"], color=C.COLORS[model],
                    label=f"{model} on {ds.name} {list(ds.input_shape)}")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("training step")
    ax.set_ylabel("validation accuracy")
    ax.set_title("(a) digits: three views of the same examples")
    C.label_lines(ax)
    ax = axes[0][1]
    t = table[table.task == "digits"].reset_index(drop=True)
    ax.bar(range(len(t)), t.test_accuracy, color=[C.COLORS[m] for m in t.model])
    for k, r in t.iterrows():
        ax.text(k, r.test_accuracy - 0.02, f"{r.test_accuracy:.3f}\n{r.n_params:,} params\n"
                f"{r.ms_per_step_single:.2f} ms/step alone\n"
                f"{r.ms_per_step_engine:.2f} ms/step, {r.n_seeds} in engine", ha="center", va="top", fontsize=7,
                color="white")
    ax.set_xticks(range(len(t)), [f"{m}\n{d}" for m, d in zip(t.model, t.data, strict=True)])
    ax.set_ylim(min(0.8, float(t.test_accuracy.min()) - 0.05), 1.0)
    ax.set_ylabel("test accuracy (mean over seeds)")
    ax.set_title("(b) digits: accuracy, parameters, time per step")
    ax = axes[1][0]
    for model, (result, _) in adding.items():
        C.mean_band(ax, result.eval_steps, result.history["val_loss"], color=C.COLORS[model], log=True,
                    label=f"{model}: validation")
        C.mean_band(ax, result.eval_steps, np.maximum(result.history["train_loss"], 1e-7), log=True,
                    color=C.COLORS[model], linestyle="--", label=f"{model}: training")
    ax.axhline(baseline, color="grey", ls=":", label=f"predict 1 ({baseline:.3f})")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("mean squared error")
    ax.set_title("(c) adding problem: the RNN learns the rule, the MLP memorizes")
    C.label_lines(ax)
    ax = axes[1][1]
    for model, (result, ds) in adding.items():
        pred = np.asarray(C.apply_fn(engine.model(result.rows[0], ds))(result.params(0), ds.x_test))[:, 0]
        ax.scatter(ds.y_test[:, 0], pred, s=6, alpha=0.5, color=C.COLORS[model], label=model)
    ax.plot([0, 2], [0, 2], "k--", lw=0.8)
    ax.set_xlabel("true sum of the two marked values")
    ax.set_ylabel("prediction")
    ax.set_title("(d) adding problem: test-set predictions (seed 0)")
    C.label_lines(ax)
    fig.suptitle("ANN vs CNN vs RNN")
    fig.tight_layout()
    C.save_figure(fig, out)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    p = C.parser(__doc__, NAME)
    p.add_argument("--adding-cnn", action="store_true", help="also train a CNN on the adding problem")
    args = p.parse_args(argv)
    timer = C.Timer()
    cfg = config(args.small)
    sets = {name: data.load(name, seed=0) for name in ("digits", "digits_image", "digits_sequence")}
    sets["adding"] = data.load("adding", seed=0, length=cfg["adding_length"], n_samples=cfg["adding_samples"])
    sets["adding_image"] = as_image(sets["adding"])
    digits = train("digits", digit_runs(cfg), sets, cfg["seeds"])
    adding = train("adding", adding_runs(cfg, args.adding_cnn), sets, cfg["seeds"])
    baseline = float(np.mean((sets["adding"].y_test - 1.0) ** 2))
    rows = summarize("digits", digits, cfg) + summarize("adding", adding, cfg)
    rows.append({"task": "adding", "model": "constant 1", "data": "adding", "input_shape": "-", "n_params": 0,
                 "val_accuracy": np.nan, "test_accuracy": np.nan,
                 "train_mse": float(np.mean((sets["adding"].y_train - 1.0) ** 2)),
                 "val_mse": float(np.mean((sets["adding"].y_val - 1.0) ** 2)), "test_mse": baseline,
                 "ms_per_step_engine": np.nan, "ms_per_step_single": np.nan, "compile_s": np.nan, "n_seeds": 0})
    table = pd.DataFrame(rows)
    C.write_table(table, args.out)
    plot(digits, adding, table, baseline, args.out)
    C.finish(args.out, timer)
    return table


if __name__ == "__main__":
    main()
