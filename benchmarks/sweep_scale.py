"""What a 10^5-variant sweep costs outside training (issue 28): run ``jaxnets sweep`` on
``benchmarks/configs/iris_65k.toml`` (65,536 variants, one static group) in a subprocess and report the wall
time, the training time (the group's ``group_wall_s`` in ``results.csv``: compile, transfers and steps), the
rest (start-up, planning and checks, the results table, history, parameters, plots and report) as a share of
training, and the peak memory of the process.

    python -m benchmarks.sweep_scale [--config PATH] [--out DIR]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIG = Path(__file__).resolve().parent / "configs" / "iris_65k.toml"


def measure(config: Path, out: Path) -> dict[str, float]:
    """Run the sweep once (``--force``: from scratch) and return its figures."""
    import pandas as pd

    from jaxnets import config as config_lib

    steps = int(config_lib.load(config).base["steps"])
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "jaxnets", "sweep", str(config), "--out", str(out), "--quiet", "--force",
                    "--no-compile-cache"], check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    table = pd.read_csv(out / "results.csv")
    training = float(table.groupby("group")["group_wall_s"].first().sum())
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux -> MiB
    return {"variants": len(table), "wall_s": wall, "training_s": training, "other_s": wall - training,
            "other_share": (wall - training) / training, "peak_mib": peak,
            "model_steps_per_s": float(len(table) * steps / training)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--out", type=Path, default=None, help="results directory (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fig = measure(args.config, args.out or Path(tmp) / "out")
    print(f"{fig['variants']:,} variants: wall {fig['wall_s']:.1f} s, training {fig['training_s']:.1f} s "
          f"({fig['model_steps_per_s']:,.0f} model-steps/s), outside training {fig['other_s']:.1f} s = "
          f"{100 * fig['other_share']:.1f} % of training, peak memory {fig['peak_mib']:,.0f} MiB")


if __name__ == "__main__":
    main()
