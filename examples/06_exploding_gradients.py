"""Exploding gradients: a large recurrent init makes backprop-through-time gradients grow exponentially;
clipping the gradient norm keeps training stable.

Claim
    Backpropagation through time multiplies, once per time step, by the recurrent Jacobian
    ``diag(tanh'(.)) U``. With recurrent weights of gain ``g`` (all singular values of ``U`` equal to ``g``)
    the gradient reaching early time steps shrinks geometrically for ``g < 1`` (vanishing) and grows
    geometrically for ``g > 1`` (exploding): over 100 steps, by many orders of magnitude. Plain SGD then
    takes enormous steps: the loss spikes, the weights are thrown into saturation or to NaN, and the
    network does not learn. ``optax.clip_by_global_norm`` rescales any gradient longer than a threshold,
    which bounds each step and lets the same network train.

Task
    The *sum task* on long sequences: ``x_t ~ N(0, 1)`` for ``T = 100`` steps, target
    ``sum_t x_t / sqrt(T)`` (variance 1, so predicting 0 gives a mean squared error of 1). Every step
    matters equally, so the gradient must travel through all 100 steps.

Sweep
    (1) With the Flax model directly: the gradient of the loss with respect to each hidden state,
    ``||dL/dh_t||`` for t = 1..T, at initialization, for recurrent gains 0.5 to 3 (orthogonal init times the
    gain), several seeds vmapped. (2) With the engine: simple tanh RNNs (32 units) trained with plain SGD,
    gains 1.0 / 1.5 / 2.0, learning rates 0.01 and 0.1, with and without ``clip_by_global_norm(1.0)``, 3
    seeds: 36 variants in ONE engine program (gain, learning rate and clipping threshold are per-variant
    values).

Figure (figure.png)
    (a) ``||dL/dh_t||`` against the time step at init (log scale): it falls by many orders of magnitude
    towards t = 1 for gain 0.5, by ~1e-4 for gain 1 (tanh' < 1), and rises by orders of magnitude for gain
    >= 1.5 (~5e5 over 100 steps for gain 2). (b) Global gradient norm and (c) validation loss during training
    for gain 1.5 at learning rate 0.1, clipped vs not (x: the step where the run diverged to NaN/inf).
    (d) Final validation loss of every configuration (bars: mean over the seeds that did not diverge; the
    number of diverged seeds is written above; dashed line: the MSE of predicting 0).

Table (table.csv; bptt.csv holds panel (a)'s curves)
    One row per (gain, learning rate, clipping): the ratio ``||dL/dh_1|| / ||dL/dh_T||`` at init, gradient
    norm at init, largest gradient norm seen at an evaluation, final and best validation loss (means over
    the seeds that did not diverge), number of diverged seeds.

Run: ``python examples/06_exploding_gradients.py [--small] [--out DIR]``
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from jaxnets import data, engine, initializers  # noqa: E402
from jaxnets.models import RNN  # noqa: E402

NAME = "06_exploding_gradients"
GAIN_COLORS = {0.5: "tab:purple", 1.0: "tab:blue", 1.5: "tab:orange", 2.0: "tab:red", 3.0: "tab:brown"}


def config(small: bool) -> dict:
    if small:
        return dict(length=20, n_samples=300, hidden=8, profile_gains=(0.5, 1.0, 2.0), profile_seeds=2,
                    gains=(1.0, 2.0), panel_gain=2.0, lrs=(0.1,), clips=(math.inf, 1.0), seeds=1, steps=20,
                    eval_every=10)
    return dict(length=100, n_samples=3000, hidden=32, profile_gains=(0.5, 1.0, 1.5, 2.0, 3.0),
                profile_seeds=4, gains=(1.0, 1.5, 2.0), panel_gain=1.5, lrs=(0.01, 0.1),
                clips=(math.inf, 1.0), seeds=3, steps=1500, eval_every=50)


def sum_task(length: int, n_samples: int, seed: int = 0) -> data.Dataset:
    """x [N, T, 1] ~ N(0, 1), y [N, 1] = sum over time / sqrt(T); 60/20/20 split."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_samples, length, 1)).astype(np.float32)
    y = (x[:, :, 0].sum(axis=1) / np.sqrt(length)).astype(np.float32)[:, None]
    a, b = int(0.6 * n_samples), int(0.8 * n_samples)
    return data.Dataset(name=f"sum_task_T{length}", x_train=x[:a], y_train=y[:a], x_val=x[a:b], y_val=y[a:b],
                        x_test=x[b:], y_test=y[b:], task="regression", n_classes=0, output_dim=1,
                        sequence_output=False, default_loss="mse")


def unrolled(params, x: jax.Array, eps: jax.Array) -> jax.Array:
    """The simple RNN of :class:`jaxnets.models.RNN` (one layer), written out so that a perturbation
    ``eps[t]`` can be added to each hidden state: d(loss)/d(eps[t]) = d(loss)/d(h_t)."""
    cell = params["layer_00"]["cell"]
    wi, bi, wh = cell["i"]["kernel"], cell["i"]["bias"], cell["h"]["kernel"]

    def step(h, inputs):
        xt, e = inputs
        h = jnp.tanh(xt @ wi + bi[None, :] + h @ wh) + e
        return h, None

    h0 = jnp.zeros((x.shape[0], wh.shape[0]), x.dtype)
    h, _ = jax.lax.scan(step, h0, (jnp.swapaxes(x, 0, 1), eps))
    return h @ params["output"]["kernel"] + params["output"]["bias"][None, :]


def bptt_profile(ds: data.Dataset, cfg: dict) -> pd.DataFrame:
    """||dL/dh_t|| (mean over examples) for t = 1..T at init, per gain and seed (seeds vmapped)."""
    x, y = jnp.asarray(ds.x_train[:256]), jnp.asarray(ds.y_train[:256])
    T, H = x.shape[1], cfg["hidden"]
    rows = []
    for gain in cfg["profile_gains"]:
        model = RNN(hidden=(H,), output_dim=1, cell="simple", activation="tanh",
                    kernel_init=initializers.get("orthogonal", gain))

        def norms(seed, model=model):
            params = model.init(jax.random.key(seed), x[:1])["params"]
            eps = jnp.zeros((T, x.shape[0], H))
            # sum (not mean) over examples, so each example's gradient is its own dL_i/dh_t
            g = jax.grad(lambda e: jnp.sum((unrolled(params, x, e) - y) ** 2))(eps)
            # check the unrolled network is the engine's model
            err = jnp.max(jnp.abs(unrolled(params, x, jnp.zeros_like(eps)) - model.apply({"params": params}, x)))
            return jnp.mean(jnp.linalg.norm(g, axis=-1), axis=1), err

        g, err = jax.jit(jax.vmap(norms))(jnp.arange(cfg["profile_seeds"]))
        assert float(jnp.max(err)) < 1e-3 * max(1.0, float(jnp.max(jnp.abs(y)))), "unrolled RNN != model"
        for seed in range(cfg["profile_seeds"]):
            for t in range(T):
                rows.append({"gain": gain, "seed": seed, "t": t + 1, "grad_norm_h": float(g[seed, t])})
    return pd.DataFrame(rows)


def variants(cfg: dict) -> list[dict]:
    return [
        dict(kind="rnn", cell="simple", hidden=(cfg["hidden"],), activation="tanh", init="orthogonal",
             init_scale=gain, optimizer="sgd", learning_rate=lr, clip_norm=clip, batch_size=64,
             steps=cfg["steps"], eval_every=cfg["eval_every"], seed=seed)
        for gain in cfg["gains"] for lr in cfg["lrs"] for clip in cfg["clips"] for seed in range(cfg["seeds"])
    ]


def global_grad_norm(result) -> np.ndarray:
    """[V, E] norm of the whole gradient from the engine's per-layer norms."""
    return np.sqrt(np.nansum(result.history["grad_norm"] ** 2, axis=-1))


def ratio_first_last(profile: pd.DataFrame) -> dict[float, float]:
    out = {}
    for gain, g in profile.groupby("gain"):
        first = g[g.t == g.t.min()].set_index("seed").grad_norm_h
        last = g[g.t == g.t.max()].set_index("seed").grad_norm_h
        with np.errstate(divide="ignore"):
            out[gain] = float(np.exp(np.mean(np.log(np.maximum(first / last, 1e-300)))))
    return out


def summarize(result, profile: pd.DataFrame, cfg: dict) -> pd.DataFrame:
    gn = global_grad_norm(result)
    ratios = ratio_first_last(profile)
    rows = []
    for gain in cfg["gains"]:
        for lr in cfg["lrs"]:
            for clip in cfg["clips"]:
                idx = [i for i, r in enumerate(result.rows)
                       if r["init_scale"] == gain and r["learning_rate"] == lr and r["clip_norm"] == clip]
                ok = [i for i in idx if result.status[i] != "diverged"]
                rows.append({
                    "gain": gain,
                    "learning_rate": lr,
                    "clip_norm": clip,
                    "bptt_ratio_first_last_init": ratios.get(gain, np.nan),
                    "grad_norm_init": float(np.exp(np.mean(np.log(gn[idx, 0])))),
                    "grad_norm_max": float(np.nanmax(np.where(np.isfinite(gn[idx]), gn[idx], np.nan))),
                    "final_val_loss": C.nanmean(result.final("val_loss")[ok]) if ok else np.nan,
                    "best_val_loss": C.nanmean(result.best_val_loss[ok]) if ok else np.nan,
                    "n_diverged": len(idx) - len(ok),
                    "n_seeds": len(idx),
                })
    return pd.DataFrame(rows)


def plot(result, profile: pd.DataFrame, table: pd.DataFrame, cfg: dict, out: Path) -> None:
    fig, axes = plt.subplots(2, 2, figsize=(14, 9.5))
    ax = axes[0][0]
    for gain, g in profile.groupby("gain"):
        ys = g.pivot(index="seed", columns="t", values="grad_norm_h").to_numpy()
        C.mean_band(ax, np.arange(1, ys.shape[1] + 1), ys, label=f"gain {gain:g}",
                    color=GAIN_COLORS.get(gain), log=True)
    ax.set_yscale("log")
    ax.set_xlabel("time step t (the loss is at t = T)")
    ax.set_ylabel("||dL/dh_t|| at init (mean over examples)")
    ax.set_title(f"(a) gradient through time, simple tanh RNN, T = {cfg['length']}")
    C.label_lines(ax)

    big, lr = cfg["panel_gain"], max(cfg["lrs"])
    gn = global_grad_norm(result)
    steps = result.eval_steps
    for ax, metric, ylabel in ((axes[0][1], None, "global gradient norm"), (axes[1][0], "val_loss",
                                                                            "validation MSE")):
        for clip, color in zip(cfg["clips"], ("tab:red", "tab:green"), strict=False):
            idx = [i for i, r in enumerate(result.rows)
                   if r["init_scale"] == big and r["learning_rate"] == lr and r["clip_norm"] == clip]
            name = "no clipping" if math.isinf(clip) else f"clip_by_global_norm({clip:g})"
            ys = gn[idx] if metric is None else result.history[metric][idx]
            ys = np.where(np.isfinite(ys) & (ys > 0), ys, np.nan)
            for k, y in enumerate(C.truncated(result, idx, ys)):
                ax.plot(steps, y, color=color, alpha=0.8, label=name if k == 0 else None)
            C.mark_diverged(ax, result, idx, ys, color)
        if metric == "val_loss":
            ax.axhline(1.0, color="grey", ls="--", lw=0.8, label="predict 0 (MSE 1)")
        ax.set_yscale("log")
        ax.set_xlabel("training step (SGD)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"({'b' if metric is None else 'c'}) gain {big:g}, lr {lr:g}: {ylabel} during training"
                     " (x: diverged)")
        C.label_lines(ax)

    ax = axes[1][1]
    labels, values, colors, notes = [], [], [], []
    for _, row in table.iterrows():
        clip = "no clip" if math.isinf(row.clip_norm) else f"clip {row.clip_norm:g}"
        labels.append(f"g {row.gain:g}\nlr {row.learning_rate:g}\n{clip}")
        values.append(row.final_val_loss if np.isfinite(row.final_val_loss) else 0.0)
        colors.append("tab:red" if math.isinf(row.clip_norm) else "tab:green")
        notes.append(f"{row.n_diverged}/{row.n_seeds} NaN" if row.n_diverged else "")
    ax.bar(range(len(values)), values, color=colors)
    for k, (v, note) in enumerate(zip(values, notes, strict=True)):
        if note:
            ax.text(k, v + 0.02, note, ha="center", va="bottom", fontsize=7, rotation=90)
    ax.axhline(1.0, color="grey", ls="--", lw=0.8)
    ax.set_xticks(range(len(values)), labels, fontsize=6)
    ax.set_ylabel("final validation MSE (seeds that did not diverge)")
    ax.set_title("(d) every configuration (red: no clipping, green: clipped)")
    fig.suptitle("Exploding gradients in a simple RNN on the sum task, and gradient clipping")
    fig.tight_layout()
    C.save_figure(fig, out)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = C.parser(__doc__, NAME).parse_args(argv)
    timer = C.Timer()
    cfg = config(args.small)
    ds = sum_task(cfg["length"], cfg["n_samples"])
    with C.timed("gradient through time at init"):
        profile = bptt_profile(ds, cfg)
    rows = variants(cfg)
    with C.timed(f"engine.train: {len(rows)} variants"):
        result = engine.train(rows, ds, options=engine.Options(n_eval_train=256))
    table = summarize(result, profile, cfg)
    args.out.mkdir(parents=True, exist_ok=True)
    profile.to_csv(args.out / "bptt.csv", index=False)
    C.write_table(table, args.out)
    plot(result, profile, table, cfg, args.out)
    C.finish(args.out, timer)
    return table


if __name__ == "__main__":
    main()
