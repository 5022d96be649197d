"""Output activation and loss: pair sigmoid with binary cross-entropy and softmax with categorical cross-entropy.

Claim
    The output activation and the loss come in pairs. Binary problems: one sigmoid unit + binary
    cross-entropy. Multi-class problems: softmax + categorical cross-entropy, where *categorical* (one-hot
    labels) and *sparse categorical* (integer labels) are the same loss with the same gradients — they differ
    only in the labels' memory (``N * C`` floats vs ``N`` integers). A mismatched pair fails in a telling way:
    softmax over a single unit is constantly 1, so the loss is constant and the gradient exactly 0 (nothing
    learns); sigmoid outputs fed to a softmax (or a second sigmoid) squash the logits into [0, 1], so the
    loss cannot go below a floor (0.55 for 3 classes) and the "probabilities" are wrong even when the
    argmax is right; independent sigmoids on a multi-class problem classify but their outputs do not sum
    to 1.

Sweep
    (1) With the Flax MLP and Optax directly (the engine only builds matched pairs): a 32-unit ReLU MLP,
    full-batch Adam (1e-2), 5 seeds vmapped, for 7 (output, loss) pairs: 3 on breast_cancer (binary), 4 on
    wine (3 classes). (2) With the engine: wine with categorical vs sparse categorical cross-entropy, same
    seeds (two static groups); their histories and final parameters are compared, and the gradients of the
    two losses are compared directly at the same parameters.

Figure (figure.png)
    (a, c) the training loss each pair minimizes, with its theoretical floor (dashed) — the mismatched
    pairs flatten at their floor or never move; (b, d) validation accuracy; (e) the engine's categorical
    and sparse categorical training curves lie on top of each other; (f) label memory for wine and at
    ImageNet scale (1.28M examples, 1000 classes).

Table (table.csv)
    One row per pair: data set, output activation, loss, label format and bytes, final training loss and
    its floor, validation accuracy, validation negative log-likelihood of the probabilities the pair
    outputs, mean sum of the class probabilities, output-layer gradient norm at init; for the categorical
    row, the largest difference from sparse categorical in the engine's loss histories, final parameters and
    the directly computed gradients.

Run: ``python examples/05_output_and_loss.py [--small] [--out DIR]``
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
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
from jaxnets.models import MLP  # noqa: E402

NAME = "05_output_and_loss"
EPS = 1e-7  # probability clipping, as Keras does for losses on probabilities


@dataclasses.dataclass(frozen=True)
class Pair:
    """One (output activation, loss) pair: how it turns logits into a loss and into class probabilities."""

    key: str
    dataset: str
    output: str
    loss: str
    labels: str  # "binary", "onehot" or "sparse"
    units: int
    loss_fn: Callable  # (logits [N, units], labels) -> [N]
    probs_fn: Callable  # logits -> [N, n_classes] the probabilities the pair outputs
    matched: bool


def _bce_on_probs(p, y):
    p = jnp.clip(p, EPS, 1 - EPS)
    return -(y * jnp.log(p) + (1 - y) * jnp.log(1 - p))


def _two(p1):
    return jnp.stack([1 - p1, p1], axis=-1)


PAIRS: tuple[Pair, ...] = (
    Pair("sigmoid + BCE", "breast_cancer", "sigmoid (1 unit)", "binary cross-entropy", "binary", 1,
         lambda z, y: optax.sigmoid_binary_cross_entropy(z[:, 0], y),
         lambda z: _two(jax.nn.sigmoid(z[:, 0])), True),
    Pair("softmax(1 unit) + BCE", "breast_cancer", "softmax (1 unit)", "binary cross-entropy", "binary", 1,
         lambda z, y: _bce_on_probs(jax.nn.softmax(z, axis=-1)[:, 0], y),
         lambda z: _two(jax.nn.softmax(z, axis=-1)[:, 0]), False),
    Pair("sigmoid + BCE-from-logits", "breast_cancer", "sigmoid (1 unit)", "BCE expecting logits (2nd sigmoid)",
         "binary", 1,
         lambda z, y: optax.sigmoid_binary_cross_entropy(jax.nn.sigmoid(z[:, 0]), y),
         lambda z: _two(jax.nn.sigmoid(jax.nn.sigmoid(z[:, 0]))), False),
    Pair("softmax + categorical CE", "wine", "softmax (3 units)", "categorical cross-entropy", "onehot", 3,
         lambda z, y: losses.categorical_crossentropy(z, y), lambda z: jax.nn.softmax(z, axis=-1), True),
    Pair("softmax + sparse categorical CE", "wine", "softmax (3 units)", "sparse categorical cross-entropy",
         "sparse", 3, lambda z, y: losses.sparse_categorical_crossentropy(z, y),
         lambda z: jax.nn.softmax(z, axis=-1), True),
    Pair("sigmoid + softmax CE", "wine", "sigmoid (3 units)", "softmax cross-entropy on the sigmoids", "onehot",
         3, lambda z, y: losses.categorical_crossentropy(jax.nn.sigmoid(z), y),
         lambda z: jax.nn.softmax(jax.nn.sigmoid(z), axis=-1), False),
    Pair("sigmoid + per-class BCE", "wine", "sigmoid (3 units)", "binary cross-entropy per class", "onehot", 3,
         lambda z, y: jnp.mean(optax.sigmoid_binary_cross_entropy(z, y), axis=-1),
         lambda z: jax.nn.sigmoid(z), False),
)


def config(small: bool) -> dict:
    if small:
        return dict(seeds=2, steps=20, record_every=10, engine_steps=20, engine_eval_every=10)
    return dict(seeds=5, steps=500, record_every=10, engine_steps=500, engine_eval_every=25)


def labels(kind: str, y: np.ndarray, n_classes: int) -> np.ndarray:
    if kind == "binary":
        return y.astype(np.float32)
    if kind == "onehot":
        return np.eye(n_classes, dtype=np.float32)[y]
    return y.astype(np.int32)


def loss_floor(pair: Pair, y: np.ndarray, n_classes: int) -> float:
    """The lowest mean training loss the pair can reach on labels ``y`` (0 for matched pairs)."""
    if pair.key == "softmax(1 unit) + BCE":  # p == 1 always: loss -log(EPS) on every negative example
        return float(np.mean(y == 0) * -np.log(EPS))
    if pair.key == "sigmoid + BCE-from-logits":  # p = sigmoid(s), s in (0, 1)
        return float(np.mean(y == 1) * -np.log(jax.nn.sigmoid(1.0)) + np.mean(y == 0) * np.log(2.0))
    if pair.key == "sigmoid + softmax CE":  # best: s_true -> 1, others -> 0
        return float(-np.log(np.e / (np.e + n_classes - 1)))
    return 0.0


def decide(pair: Pair, z: jax.Array) -> jax.Array:
    """The class the user reads off the outputs: argmax, or "the output unit's value above 0.5"."""
    if pair.units > 1:
        return jnp.argmax(pair.probs_fn(z), axis=-1)
    out = jax.nn.sigmoid(z[:, 0]) if pair.output.startswith("sigmoid") else jax.nn.softmax(z, axis=-1)[:, 0]
    return (out > 0.5).astype(jnp.int32)


def train_pairs(pairs: list[Pair], ds, cfg: dict) -> dict[str, dict[str, np.ndarray]]:
    """Full-batch Adam on each pair's loss; every (pair, seed) at once: ``vmap`` over both, the pair chosen
    with ``lax.switch`` (one compiled program per data set), the steps in a ``scan``. Metrics [S, E]."""
    units = pairs[0].units
    model = MLP(hidden=(32,), output_dim=units, activation="relu", kernel_init="glorot_uniform")
    x, xv = jnp.asarray(ds.x_train), jnp.asarray(ds.x_val)
    y_layouts = {k: jnp.asarray(labels(k, ds.y_train, ds.n_classes)) for k in ("binary", "onehot", "sparse")
                 if k != "binary" or units == 1}
    yv = jnp.asarray(ds.y_val)
    opt = optax.adam(1e-2)

    def branch(pair):
        def objective(params):
            return jnp.mean(pair.loss_fn(model.apply({"params": params}, x), y_layouts[pair.labels]))

        def metrics(params):
            loss, grads = jax.value_and_grad(objective)(params)
            zv = model.apply({"params": params}, xv)
            p = pair.probs_fn(zv)
            p_true = jnp.take_along_axis(p, yv[:, None], axis=-1)[:, 0]
            return {
                "train_loss": loss,
                "val_accuracy": jnp.mean(decide(pair, zv) == yv),
                "val_nll": -jnp.mean(jnp.log(jnp.clip(p_true, EPS, 1.0))),
                "prob_sum": jnp.mean(jnp.sum(p, axis=-1)) if units > 1 else jnp.float32(1.0),
                "output_grad_norm": optax.global_norm(grads["output"]),
            }

        return jax.grad(objective), metrics

    branches = [branch(pair) for pair in pairs]

    def run(pair_id, seed):
        grad_fn = lambda p: jax.lax.switch(pair_id, [b[0] for b in branches], p)  # noqa: E731
        metrics = lambda p: jax.lax.switch(pair_id, [b[1] for b in branches], p)  # noqa: E731
        params = model.init(jax.random.key(seed), x[:1])["params"]
        state = opt.init(params)

        def step(carry, _):
            params, state = carry
            updates, state = opt.update(grad_fn(params), state, params)
            return (optax.apply_updates(params, updates), state), None

        def chunk(carry, _):
            carry = jax.lax.scan(step, carry, None, length=cfg["record_every"])[0]
            return carry, metrics(carry[0])

        m0 = metrics(params)
        _, ms = jax.lax.scan(chunk, (params, state), None, length=cfg["steps"] // cfg["record_every"])
        return jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), m0, ms)

    pair_ids = jnp.repeat(jnp.arange(len(pairs)), cfg["seeds"])
    seeds = jnp.tile(jnp.arange(cfg["seeds"]), len(pairs))
    out = jax.jit(jax.vmap(run))(pair_ids, seeds)
    out = {k: np.asarray(v).reshape(len(pairs), cfg["seeds"], -1) for k, v in out.items()}
    return {pair.key: {k: v[j] for k, v in out.items()} for j, pair in enumerate(pairs)}


def categorical_vs_sparse(wine, cfg: dict) -> dict:
    """Engine runs of both losses with the same seeds, and a direct gradient comparison."""
    base = dict(kind="mlp", hidden=(32,), learning_rate=1e-2, batch_size=64, steps=cfg["engine_steps"],
                eval_every=cfg["engine_eval_every"])
    rows = [dict(base, loss=loss, seed=s) for loss in ("categorical_crossentropy",
                                                        "sparse_categorical_crossentropy")
            for s in range(cfg["seeds"])]
    with C.timed(f"engine.train: categorical vs sparse, {len(rows)} variants"):
        result = engine.train(rows, wine)
    n = cfg["seeds"]
    cat, sparse = np.arange(n), np.arange(n, 2 * n)
    param_diff = max(
        float(jnp.max(jnp.abs(a - b)))
        for i, j in zip(cat, sparse, strict=True)
        for a, b in zip(jax.tree.leaves(result.params(int(i))), jax.tree.leaves(result.params(int(j))),
                        strict=True)
    )
    # Direct check: the gradients of the two losses at the same parameters.
    model = MLP(hidden=(32,), output_dim=3, activation="relu")
    params = model.init(jax.random.key(0), wine.x_train[:1])["params"]
    x = jnp.asarray(wine.x_train)
    onehot, ints = jnp.asarray(labels("onehot", wine.y_train, 3)), jnp.asarray(wine.y_train)
    grad = lambda fn, y: jax.grad(lambda p: jnp.mean(fn(model.apply({"params": p}, x), y)))(params)  # noqa: E731
    g1, g2 = grad(losses.categorical_crossentropy, onehot), grad(losses.sparse_categorical_crossentropy, ints)
    grad_diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2),
                                                                     strict=True))
    return {
        "result": result, "cat": cat, "sparse": sparse,
        "loss_diff": float(np.max(np.abs(result.history["train_loss"][cat] - result.history["train_loss"][sparse]))),
        "val_loss_diff": float(np.max(np.abs(result.history["val_loss"][cat] - result.history["val_loss"][sparse]))),
        "param_diff": param_diff, "grad_diff": grad_diff,
    }


def label_bytes(kind: str, n: int, n_classes: int) -> int:
    return 4 * n * (n_classes if kind == "onehot" else 1)


def summarize(runs: dict, sets: dict, identity: dict) -> pd.DataFrame:
    rows = []
    for pair in PAIRS:
        ds = sets[pair.dataset]
        m = runs[pair.key]
        row = {
            "pair": pair.key,
            "dataset": pair.dataset,
            "output": pair.output,
            "loss": pair.loss,
            "matched": pair.matched,
            "labels": pair.labels,
            "label_bytes_train": label_bytes(pair.labels, ds.n_train, ds.n_classes),
            "final_train_loss": float(np.mean(m["train_loss"][:, -1])),
            "loss_floor": loss_floor(pair, ds.y_train, ds.n_classes),
            "val_accuracy": float(np.mean(m["val_accuracy"][:, -1])),
            "val_nll": float(np.mean(m["val_nll"][:, -1])),
            "prob_sum": float(np.mean(m["prob_sum"][:, -1])),
            "output_grad_norm_init": float(np.mean(m["output_grad_norm"][:, 0])),
            "engine_max_loss_diff_vs_sparse": np.nan,
            "engine_max_param_diff_vs_sparse": np.nan,
            "grad_max_diff_vs_sparse": np.nan,
        }
        if pair.key == "softmax + categorical CE":
            row["engine_max_loss_diff_vs_sparse"] = max(identity["loss_diff"], identity["val_loss_diff"])
            row["engine_max_param_diff_vs_sparse"] = identity["param_diff"]
            row["grad_max_diff_vs_sparse"] = identity["grad_diff"]
        rows.append(row)
    return pd.DataFrame(rows)


PAIR_COLORS = ("tab:blue", "tab:red", "tab:orange", "tab:blue", "tab:cyan", "tab:red", "tab:purple")


def plot(runs: dict, sets: dict, identity: dict, table: pd.DataFrame, cfg: dict, out: Path) -> None:
    steps = np.arange(cfg["steps"] // cfg["record_every"] + 1) * cfg["record_every"]
    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    for col, name in enumerate(("breast_cancer", "wine")):
        ax_loss, ax_acc = axes[col][0], axes[col][1]
        for pair, color in zip(PAIRS, PAIR_COLORS, strict=True):
            if pair.dataset != name:
                continue
            m = runs[pair.key]
            style = "-" if pair.matched else "--"
            C.mean_band(ax_loss, steps, np.maximum(m["train_loss"], 1e-6), label=pair.key, color=color,
                        linestyle=style, log=True)
            floor = loss_floor(pair, sets[name].y_train, sets[name].n_classes)
            if floor > 0:
                ax_loss.axhline(floor, color=color, lw=0.8, ls=":")
            C.mean_band(ax_acc, steps, m["val_accuracy"], label=pair.key, color=color, linestyle=style)
        ax_loss.set_yscale("log")
        ax_loss.set_xlabel("training step (full batch)")
        ax_loss.set_ylabel("training loss the pair minimizes")
        ax_loss.set_title(f"({'ac'[col]}) {name}: loss (dotted: the pair's floor)")
        C.label_lines(ax_loss)
        ax_acc.set_xlabel("training step (full batch)")
        ax_acc.set_ylabel("validation accuracy")
        ax_acc.set_ylim(0, 1.02)
        ax_acc.set_title(f"({'bd'[col]}) {name}: validation accuracy")
        C.label_lines(ax_acc)
    ax = axes[0][2]
    res = identity["result"]
    for idx, label, style in ((identity["cat"], "categorical (one-hot labels)", "-"),
                              (identity["sparse"], "sparse categorical (integer labels)", "--")):
        for k, i in enumerate(idx):
            ax.plot(res.eval_steps, res.history["train_loss"][i], style, color="tab:blue" if style == "-" else
                    "tab:orange", label=label if k == 0 else None, lw=2 if style == "-" else 1.2)
    ax.set_xlabel("training step (engine, minibatch 64)")
    ax.set_ylabel("training loss")
    ax.set_title(f"(e) wine: categorical vs sparse, {len(identity['cat'])} seeds\n"
                 f"max |diff|: loss {max(identity['loss_diff'], identity['val_loss_diff']):.1g}, "
                 f"params {identity['param_diff']:.1g}, grads {identity['grad_diff']:.1g}")
    C.label_lines(ax)
    ax = axes[1][2]
    wine = sets["wine"]
    bars = {
        f"wine\none-hot\n{wine.n_train}x{wine.n_classes} f32": label_bytes("onehot", wine.n_train, 3),
        f"wine\ninteger\n{wine.n_train} i32": label_bytes("sparse", wine.n_train, 3),
        "ImageNet\none-hot\n1.28M x 1000 f32": label_bytes("onehot", 1_281_167, 1000),
        "ImageNet\ninteger\n1.28M i32": label_bytes("sparse", 1_281_167, 1000),
    }
    ax.bar(range(len(bars)), list(bars.values()), color=["tab:blue", "tab:orange"] * 2)
    for k, v in enumerate(bars.values()):
        ax.text(k, v, _human(v), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(bars)), list(bars), fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("label memory (bytes)")
    ax.set_title("(f) label memory: categorical vs sparse")
    fig.suptitle("Output activation and loss pairs (solid: matched, dashed: mismatched)")
    fig.tight_layout()
    C.save_figure(fig, out)


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} TB"


def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = C.parser(__doc__, NAME).parse_args(argv)
    timer = C.Timer()
    cfg = config(args.small)
    sets = {name: data.load(name, seed=0) for name in ("breast_cancer", "wine")}
    runs = {}
    with C.timed(f"{len(PAIRS)} pairs x {cfg['seeds']} seeds (Flax + Optax, vmapped)"):
        for name, ds in sets.items():
            runs.update(train_pairs([p for p in PAIRS if p.dataset == name], ds, cfg))
    identity = categorical_vs_sparse(sets["wine"], cfg)
    table = summarize(runs, sets, identity)
    C.write_table(table, args.out)
    plot(runs, sets, identity, table, cfg, args.out)
    C.finish(args.out, timer)
    return table


if __name__ == "__main__":
    main()
