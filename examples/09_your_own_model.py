"""Your own model: a residual MLP with LayerNorm, written here in linen and in NNX, trained by the engine.

Claim
    A model written in Flax — linen or NNX — trains in the vectorized engine exactly like the built-in ones:
    a sweep of learning rates x seeds x activations of one architecture is ONE compiled program, each variant
    gets its own activation, initializer, learning rate and data order, and the two Flax APIs give the same
    curves for the same variants (the same architecture, trained the same way; their parameters start from
    different random draws, so the curves agree in distribution, not digit for digit). The model sees the
    variant's hyperparameters through ``hp``: ``hp.activation`` and ``hp.kernel_init`` make one module
    heterogeneous with one line each.

Sweep
    Digits (8x8, 10 classes). ``ResMLP``: a Dense stem to width 64, two residual blocks
    ``x + Dense(act(LayerNorm(x)))`` (a submodule), LayerNorm, Dense(10); the same model in linen
    (``LinenResMLP``) and in NNX (``NnxResMLP``). Adam, batch 64, 400 steps; 4 learning rates (1e-4, 1e-3,
    3e-3, 1e-2) x 4 seeds x 2 activations (relu, gelu): 32 variants, one ``engine.train`` call (one compiled
    program) per API.

Figure (figure.png)
    (a) final validation loss against the learning rate, one line per activation and API (mean over seeds,
    band: min-max); (b) per-layer gradient norms at the last evaluation (mean over variants), for the
    parameter-holding submodules the engine found, input side first.

Table (table.csv)
    One row per API x activation x learning rate: final validation loss and accuracy, test accuracy (means
    over seeds), and the number of seeds.

Widths (widths.csv)
    Your own model's sizes as data: ``LinenWideMLP`` has one hidden layer whose width is the variant's
    vmapped key ``width`` (16, 32 or 64): ``jaxnets.models.MaskedDense`` masks a 64-unit layer to the
    variant's units and ``hp.masked_kernel_init`` initializes the real block with the real fan-in / fan-out
    (architectures as data, README). Widths x activations x seeds: ONE program. One row per width and
    activation: final validation loss and accuracy (means over seeds).

Run: ``python examples/09_your_own_model.py [--small] [--out DIR]``
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import flax.linen as nn  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from flax import nnx  # noqa: E402

from jaxnets import data, engine  # noqa: E402
from jaxnets.models import MaskedDense  # noqa: E402

NAME = "09_your_own_model"
WIDTH = 64


class LinenBlock(nn.Module):
    """``x + Dense(act(LayerNorm(x)))`` (linen)."""

    hp: object

    @nn.compact
    def __call__(self, x):
        h = self.hp.activation(nn.LayerNorm()(x))
        self.sow("intermediates", "act", h)  # one line: the engine's activation diagnostics see it
        return x + nn.Dense(WIDTH, kernel_init=self.hp.kernel_init)(h)


class LinenResMLP(nn.Module):
    """Stem -> residual blocks -> LayerNorm -> Dense(n_out) (linen)."""

    hp: object
    n_out: int = 10
    blocks: int = 2

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(WIDTH, kernel_init=self.hp.kernel_init)(x)
        for _ in range(self.blocks):
            x = LinenBlock(self.hp)(x)
        return nn.Dense(self.n_out, kernel_init=self.hp.kernel_init)(nn.LayerNorm()(x))


class NnxBlock(nnx.Module):
    """``x + Linear(act(LayerNorm(x)))`` (NNX)."""

    def __init__(self, hp, rngs: nnx.Rngs):
        self.norm = nnx.LayerNorm(WIDTH, rngs=rngs)
        self.dense = nnx.Linear(WIDTH, WIDTH, kernel_init=hp.kernel_init, rngs=rngs)
        self.activation_fn = hp.activation

    def __call__(self, x):
        h = self.activation_fn(self.norm(x))
        self.sow(nnx.Intermediate, "act", h)
        return x + self.dense(h)


class NnxResMLP(nnx.Module):
    """The same model in NNX."""

    def __init__(self, hp, rngs: nnx.Rngs, n_in: int = 64, n_out: int = 10, blocks: int = 2):
        self.stem = nnx.Linear(n_in, WIDTH, kernel_init=hp.kernel_init, rngs=rngs)
        self.blocks = nnx.List([NnxBlock(hp, rngs) for _ in range(blocks)])
        self.final_norm = nnx.LayerNorm(WIDTH, rngs=rngs)
        self.head = nnx.Linear(WIDTH, n_out, kernel_init=hp.kernel_init, rngs=rngs)

    def __call__(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(self.final_norm(x))


class LinenWideMLP(nn.Module):
    """x -> act(MaskedDense(x)) -> MaskedDense(10): one hidden layer of ``hp["width"]`` real units (a vmapped
    key) inside ``max_width``; the recorded unit mask makes the diagnostics count the real units only."""

    hp: object
    max_width: int = 64

    @nn.compact
    def __call__(self, x, train: bool = False):
        n = self.hp["width"].astype(jnp.int32)  # this variant's width (traced)
        on = jnp.arange(self.max_width) < n
        d = x.shape[-1]
        h = MaskedDense(self.max_width, self.hp.masked_kernel_init)(x, jnp.ones(d, bool), on, d, n)
        h = jnp.where(on[None, :], self.hp.activation(h), 0.0)
        self.sow("intermediates", "act", h)
        self.sow("intermediates", "units", on)
        return MaskedDense(10, self.hp.masked_kernel_init)(h, on, jnp.ones(10, bool), n, 10)


def widths_table(ds, cfg: dict, out: Path) -> None:
    """Widths x activations x seeds of :class:`LinenWideMLP` in ONE program; writes widths.csv."""
    rows = [{"width": w, "activation": a, "seed": s, "init": "he_normal", "batch_size": 64, "steps": cfg["steps"],
             "eval_every": cfg["eval_every"], "learning_rate": 3e-3}
            for w in (16, 32, 64) for a in cfg["activations"] for s in cfg["seeds"]]
    with C.timed(f"widths: {len(rows)} variants of your own masked model"):
        res = engine.train(rows, ds, model=lambda hp: LinenWideMLP(hp), extra_keys={"width": "vmapped"})
    print(f"widths 16, 32, 64 trained in {len(res.groups)} program(s)")
    df = res.to_dataframe()
    table = df.groupby(["width", "activation"], sort=False)[["final_val_loss", "val_accuracy"]].mean().reset_index()
    C.write_table(table, out, "widths.csv")


FACTORIES = {
    "linen": lambda hp: LinenResMLP(hp),
    "nnx": lambda hp, rngs: NnxResMLP(hp, rngs),
}


def config(small: bool) -> dict:
    if small:
        return dict(learning_rates=[1e-3, 1e-2], seeds=[0], activations=["relu", "gelu"], steps=20, eval_every=10)
    return dict(learning_rates=[1e-4, 1e-3, 3e-3, 1e-2], seeds=[0, 1, 2, 3], activations=["relu", "gelu"],
                steps=400, eval_every=50)


def variants(cfg: dict) -> list[dict]:
    return [{"activation": a, "learning_rate": lr, "seed": s, "init": "he_normal", "optimizer": "adam",
             "batch_size": 64, "steps": cfg["steps"], "eval_every": cfg["eval_every"]}
            for a in cfg["activations"] for lr in cfg["learning_rates"] for s in cfg["seeds"]]


def main() -> None:
    args = C.parser(__doc__, NAME).parse_args()
    cfg, out, timer = config(args.small), args.out, C.Timer()
    ds = data.load("digits", seed=0)
    rows = variants(cfg)
    tables, grads = [], {}
    for api, factory in FACTORIES.items():
        with C.timed(f"{api}: {len(rows)} variants, one program"):
            res = engine.train(rows, ds, model=factory)
        df = res.to_dataframe()
        df["api"] = api
        tables.append(df)
        grads[api] = (res.layer_names(0), np.nanmean(res.history["grad_norm"][:, -1], axis=0))
    results = pd.concat(tables, ignore_index=True)
    grouped = results.groupby(["api", "activation", "learning_rate"], sort=False)
    table = grouped[["final_val_loss", "val_accuracy", "test_accuracy"]].mean().reset_index()
    table["n_seeds"] = grouped.size().to_numpy()
    C.write_table(table, out)
    widths_table(ds, cfg, out)

    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(13, 4.5))
    for (api, act), part in results.groupby(["api", "activation"], sort=False):
        lrs = sorted(part.learning_rate.unique())
        losses = np.array([part.final_val_loss[np.isclose(part.learning_rate, lr)].to_numpy() for lr in lrs])
        style = "-" if api == "linen" else "--"
        ax_a.plot(lrs, losses.mean(axis=1), style, marker="o", color=C.COLORS.get(act), label=f"{api}, {act}")
        ax_a.fill_between(lrs, losses.min(axis=1), losses.max(axis=1), color=C.COLORS.get(act), alpha=0.12)
    ax_a.set(xscale="log", yscale="log", xlabel="learning rate", ylabel="final validation loss",
             title="(a) linen and NNX: the same curve per activation")
    ax_a.legend(fontsize=8)
    labels = [" / ".join(pair) for pair in zip(*(names for names, _ in grads.values()), strict=True)]
    for api, (_, norms) in grads.items():
        ax_b.plot(range(len(norms)), norms, "-o" if api == "linen" else "--s", label=api)
    ax_b.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=7)
    ax_b.set(yscale="log", ylabel="gradient norm (last evaluation, mean)",
             title="(b) per-layer gradient norms, input side first")
    ax_b.legend()
    C.save_figure(fig, out)
    C.finish(out, timer)


if __name__ == "__main__":
    main()
