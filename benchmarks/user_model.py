"""Users' own models: a linen MLP in the engine vs a hand-written ``jit(vmap(lax.scan(step)))`` (this module's
command), and the NNX CNN of the suite's ``user_cnn`` workload (:class:`UserCNN`, :func:`user_cnn`).

The command compares a user's linen model in the engine with the same model in a hand-written program.

Workload: wine (13 features, 3 classes), the user's own ``flax.linen`` MLP 13-32-32-3 (relu, Glorot uniform —
one activation and one initializer, which is all the hand-written program can do), Adam 1e-3, minibatches of
32 drawn with replacement per model and step, N models with seeds 0..N-1. Both are timed on a second call (the
first compiles): the engine with ``steps = eval_every = S`` (one chunk plus evaluations 0 and S, so the
engine's evaluation and diagnostics are *included* in its time), the hand-written program with ``S`` steps and
no evaluation at all. The ratio is hand-written time / engine time (> 1: the engine is faster).

Run: ``python -m benchmarks.user_model [--ns 64,256] [--steps 2000] [--out benchmarks/results/user_model-<cpu>.json]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxnets import data, engine


class UserMLP(nn.Module):
    """What a researcher writes: two hidden Dense layers and an output layer."""

    hp: object = None

    @nn.compact
    def __call__(self, x):
        init = nn.initializers.glorot_uniform()
        for _ in range(2):
            x = jax.nn.relu(nn.Dense(32, kernel_init=init)(x))
        return nn.Dense(3, kernel_init=init)(x)


class UserCNN(nnx.Module):
    """The CNN of Flax's NNX tutorial, for 8x8x1 digits: two 3x3 convolutions (32 and 64 channels, relu), each
    followed by 2x2 average pooling, then Linear(256) with relu and Linear(n_out); Flax's default
    initializers. The ``user_cnn`` workload of the suite (:mod:`benchmarks.workloads`)."""

    def __init__(self, rngs: nnx.Rngs, n_out: int = 10, size: int = 8):
        self.conv1 = nnx.Conv(1, 32, kernel_size=(3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(32, 64, kernel_size=(3, 3), rngs=rngs)
        self.linear1 = nnx.Linear((size // 4) ** 2 * 64, 256, rngs=rngs)
        self.linear2 = nnx.Linear(256, n_out, rngs=rngs)

    def __call__(self, x):
        x = nnx.avg_pool(nnx.relu(self.conv1(x)), window_shape=(2, 2), strides=(2, 2))
        x = nnx.avg_pool(nnx.relu(self.conv2(x)), window_shape=(2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        return self.linear2(nnx.relu(self.linear1(x)))


def user_cnn(hp, rngs: nnx.Rngs) -> UserCNN:
    """The ``user_cnn`` workload's factory, ``engine.train(rows, ds, model=user_cnn)``: the variants differ by
    seed (``rngs``) and learning rate (the optimizer's), so ``hp`` is not read (the one-at-a-time contender
    calls it with ``hp=None``)."""
    return UserCNN(rngs)


def hand_written(ds, n: int, steps: int, batch: int = 32):
    """The skilled user's program: ``jit(vmap(train))`` where ``train`` scans ``steps`` Adam steps."""
    model, tx = UserMLP(), optax.adam(1e-3)
    x, y = jnp.asarray(ds.x_train, jnp.float32), jnp.asarray(ds.y_train)

    def train(seed):
        key = jax.random.key(seed)
        params = model.init(key, x[:1])["params"]

        def step(carry, t):
            params, opt = carry
            idx = jax.random.randint(jax.random.fold_in(key, t), (batch,), 0, len(x))

            def loss(p):
                return optax.losses.softmax_cross_entropy_with_integer_labels(model.apply({"params": p}, x[idx]),
                                                                               y[idx]).mean()

            value, grads = jax.value_and_grad(loss)(params)
            updates, opt = tx.update(grads, opt, params)
            return (optax.apply_updates(params, updates), opt), value

        (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), jnp.arange(steps))
        return losses[-1]

    return jax.jit(jax.vmap(train))


def measure(n: int, steps: int) -> dict:
    ds = data.load("wine", seed=0)
    rows = [{"seed": s, "steps": steps, "eval_every": steps, "batch_size": 32, "learning_rate": 1e-3,
             "sampling": "replacement"}  # as the hand-written loop draws them
            for s in range(n)]
    factory = lambda hp: UserMLP(hp)  # noqa: E731
    engine.train(rows, ds, model=factory)  # compile (and warm up)
    t0 = time.perf_counter()
    res = engine.train(rows, ds, model=factory)
    t_engine = time.perf_counter() - t0
    fn = hand_written(ds, n, steps)
    seeds = jnp.arange(n)
    jax.block_until_ready(fn(seeds))
    t0 = time.perf_counter()
    last = jax.block_until_ready(fn(seeds))
    t_hand = time.perf_counter() - t0
    return {
        "workload": "wine_user_mlp", "n": n, "steps": steps,
        "engine_s": t_engine, "hand_written_s": t_hand, "ratio_hand_over_engine": t_hand / t_engine,
        "engine_model_steps_per_s": n * steps / t_engine, "hand_written_model_steps_per_s": n * steps / t_hand,
        "engine_final_val_loss_mean": float(np.mean(res.final("val_loss"))),
        "hand_written_final_train_loss_mean": float(np.mean(last)),
        "devices": [str(d) for d in jax.devices()],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ns", default="64,256", help="numbers of models, comma-separated")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    records = [measure(int(n), args.steps) for n in args.ns.split(",")]
    print(json.dumps(records, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(records, indent=2) + "\n")


if __name__ == "__main__":
    main()
