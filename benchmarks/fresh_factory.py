"""Compile time of a round that re-creates its model factory (issue 26): a hand-driven Bayesian search makes a
new ``lambda hp: Net(hp)`` every round; the engine keys its compiled programs by the factory's code, closure
values and the global objects it reads, so rounds after the first compile nothing.

    python -m benchmarks.fresh_factory

Prints each round's ``compile_s`` and ``wall_s`` (summed over groups): 3 rounds of 4 variants of a user MLP on
digits, 200 steps, the same activations each round, learning rates drawn per round.
"""

from __future__ import annotations

import flax.linen as nn
import numpy as np

from jaxnets import data, engine


class Net(nn.Module):
    """A two-layer MLP heterogeneous through ``hp`` (activation, initializer)."""

    hp: object

    @nn.compact
    def __call__(self, x, train: bool = False):
        h = self.hp.activation(nn.Dense(64, kernel_init=self.hp.kernel_init)(x))
        return nn.Dense(10)(self.hp.activation(nn.Dense(64)(h)))


def main(rounds: int = 3) -> None:
    ds = data.load("digits")
    rng = np.random.default_rng(0)
    for r in range(rounds):
        rows = [{"steps": 200, "eval_every": 50, "learning_rate": float(lr), "activation": a}
                for lr, a in zip(10 ** rng.uniform(-4, -1, 4), ("tanh", "relu", "tanh", "relu"), strict=True)]
        res = engine.train(rows, ds, model=lambda hp: Net(hp))  # a new lambda every round
        compile_s = sum(g.compile_s for g in res.groups)
        print(f"round {r}: compile_s {compile_s:.2f}, wall_s {sum(g.wall_s for g in res.groups):.2f}")


if __name__ == "__main__":
    main()
