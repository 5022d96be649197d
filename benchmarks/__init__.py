"""jaxnets benchmarks: the vectorized engine against one-model-at-a-time JAX and PyTorch.

Run ``python -m benchmarks`` (or ``make bench``); ``python -m benchmarks --help`` lists the flags and
benchmarks/README.md explains the contenders, the FLOP count and the results file.
"""

from benchmarks.suite import RECORD_KEYS, SCHEMA, Config, quick_config, run
from benchmarks.worker import CONTENDERS
from benchmarks.workloads import WORKLOAD_NAMES, WORKLOADS

__all__ = ["CONTENDERS", "RECORD_KEYS", "SCHEMA", "WORKLOADS", "WORKLOAD_NAMES", "Config", "quick_config", "run"]
