"""How long keeping what was trained takes: save, load and predict with 10^4 variants of an MLP [64, 64].

Run ``python -m benchmarks.saving [--variants 10000] [--out DIR]``: trains ``--variants`` variants of an MLP
[64, 64] on digits for a few steps (not timed), then times ``Result.save(DIR)`` (one safetensors file, every
leaf stacked [V, ...], checksummed, fsynced), ``jaxnets.load(DIR)`` (read + checksum), reading ONE variant's
parameters without jaxnets (``safe_open`` + one slice per leaf) and ``predict_all`` on raw inputs. Prints one
JSON line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> dict:
    """Run the measurement; return (and print) ``{"variants", "bytes", "save_s", "load_s", ...}``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    import numpy as np
    from safetensors import safe_open

    import jaxnets
    from jaxnets import data, engine

    ds = data.load("digits")
    rows = [{"hidden": [64, 64], "seed": s, "learning_rate": 10 ** (-4 + 3 * (s % 97) / 96), "steps": 10,
             "eval_every": 10, "batch_size": 32} for s in range(args.variants)]
    t = time.perf_counter()
    result = engine.train(rows, ds)
    train_s = time.perf_counter() - t
    out = args.out or Path(tempfile.mkdtemp(prefix="jaxnets-saving-"))
    t = time.perf_counter()
    path = result.save(out)
    save_s = time.perf_counter() - t
    t = time.perf_counter()
    run = jaxnets.load(out)
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    with safe_open(str(path), framework="np") as f:
        j = list(f.get_tensor("g0/variant")).index(args.variants - 1)
        one = {k: f.get_slice(k)[j] for k in f.keys() if k.startswith("g0/params/")}
    one_s = time.perf_counter() - t
    x_raw = ds.x_test[:32] * ds.x_std + ds.x_mean
    t = time.perf_counter()
    outs = run.predict_all(x_raw)
    predict_s = time.perf_counter() - t
    same = float(np.max(np.abs(outs - result.predict_all(x_raw))))
    report = {"variants": args.variants, "bytes": path.stat().st_size, "train_s": round(train_s, 2),
              "save_s": round(save_s, 2), "load_s": round(load_s, 2), "read_one_variant_s": round(one_s, 3),
              "predict_all_s": round(predict_s, 2), "leaves": len(one), "max_abs_diff_vs_in_process": same}
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
