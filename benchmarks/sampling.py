"""What epoch sampling costs against sampling with replacement (issue 25; benchmarks/README.md).

One ``engine.train`` call per setting on digits, 400 steps, ``eval_every`` 100, each timed on its second call
(compiled already), the two samplings alternated twice; prints the run seconds (``GroupResult.run_s``).

    python -m benchmarks.sampling
"""

from __future__ import annotations

from jaxnets import data, engine

SETTINGS = (  # (variants, hidden, batch size): a small MLP, a larger one, full batch
    (64, (32, 32), 32),
    (64, (128,) * 4, 128),
    (16, (64,), None),
)


def main() -> None:
    ds = data.load("digits")
    for n, hidden, batch in SETTINGS:
        batch = batch or len(ds.x_train)
        for sampling in ("replacement", "epoch") * 2:
            rows = [{"hidden": hidden, "steps": 400, "eval_every": 100, "batch_size": batch, "seed": i,
                     "sampling": sampling} for i in range(n)]
            engine.train(rows, ds)
            run_s = sum(g.run_s for g in engine.train(rows, ds).groups)
            print(f"{n} variants, hidden {list(hidden)}, batch {batch}, {sampling}: {run_s:.2f} s")


if __name__ == "__main__":
    main()
