"""Block sizes chosen by a timed trial, once per machine.

On the CPU the engine trains a large group in blocks of variants, one block after another
(:class:`jaxnets.engine.Options`). Which block size trains fastest depends on the CPU as much as on the
model, so a rule that reads shapes cannot be right everywhere. Measured with the engine's train program
alone, in model-steps/s:

- adding_lstm (LSTM 64, batch 64): on a 2-core AMD EPYC (Zen 5) 671 one variant per program, 515-545 in
  blocks of 8; on a 2-core Intel Xeon 221 one at a time, 344 in blocks of 16;
- digits_cnn: on the same EPYC 1,030 one at a time, 758 in blocks of 8.

So before a CPU group trains, the engine (:func:`jaxnets.engine.train`, see ``Options.block_trial``) times
its candidate block sizes and keeps the faster one:

- the candidates are the shape rule's block size and one variant per device (when these differ; groups
  whose variants are too small to fill the cores, and built-in MLPs, keep the rule's blocks untried:
  ``jaxnets.engine.TRIAL_MIN_STEP_BYTES`` and ``UNTRIED_KINDS``);
- each candidate's training steps (:data:`TRIAL_STEPS` unguarded steps of the group's own step program,
  at that block size, on the group's first variants) are compiled, run once to warm up, then timed
  :data:`TRIAL_ROUNDS` times, alternating between the candidates; a candidate's time is its fastest round
  times the number of blocks the group would run in;
- the smaller blocks win only when faster by more than :data:`MARGIN` (fewer blocks also mean fewer
  evaluations and host round trips, which the trial does not time);
- in a run of many processes every process runs the trial (the programs span all of them) and process 0's
  choice is used everywhere.

Block sizes change results in float32 rounding (kernels accumulate in another order), so the choice is
remembered under a key naming the machine (:func:`machine`: CPU model, cores, devices, JAX version, XLA
flags) and the program (the group's static settings but its step counts, parameter and data shapes, the
rule's block size): later calls train in the same blocks, and the same config and seed give the same
numbers. Choices live in this process's memory and, once :func:`enable` has been called, in a JSON file
(:data:`FILE_NAME`) in an owner-only directory, so later runs on the machine skip the trial.
:func:`jaxnets.compilation_cache.enable` (which the CLI calls unless ``JAXNETS_COMPILE_CACHE=0`` /
``--no-compile-cache``) enables it in the compilation cache's directory. The engine runs the trial by
default only when a file is enabled (``Options.block_trial``): without one, block sizes follow the shape
rule, which is the same in every process.

Example::

    from jaxnets import blocks, engine
    blocks.enable()                   # ~/.cache/jaxnets/jax/jaxnets-blocks.json
    result = engine.train(variants, ds)   # the first call on this machine times the candidates
    result.groups[0].n_blocks, result.groups[0].trial_s
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["FILE_NAME", "MARGIN", "TRIAL_ROUNDS", "TRIAL_STEPS", "Candidate", "choose", "disable", "enable",
           "forget", "lookup", "machine", "path", "record"]

#: Name of the choices file inside the directory given to :func:`enable`.
FILE_NAME = "jaxnets-blocks.json"

#: Training steps in one timed call of a candidate (the scan length of its trial program).
TRIAL_STEPS = 8

#: Timed calls of each candidate after one warm-up call; the fastest counts (the host is noisy).
TRIAL_ROUNDS = 5

#: The smaller blocks must be this much faster (estimated group time ratio below ``1 - MARGIN``) to win.
MARGIN = 0.05

_FORMAT = 1
_file: Path | None = None
_memory: dict[str, int] = {}


def enable(directory: str | os.PathLike[str] | None = None) -> Path:
    """Remember block-size choices in ``directory / FILE_NAME`` (read by every later group of this process).

    The directory is created owner-only (mode ``0o700``) if missing and must be owned by this user and not
    writable by group or others, as the compilation cache's
    (:func:`jaxnets.compilation_cache.enable`, which calls this in its own directory).

    Args:
      directory: where the file goes; ``None``: :func:`jaxnets.compilation_cache.default_dir`.

    Returns:
      The file's path (it is written at the first trial).

    Raises:
      jaxnets.compilation_cache.UnsafeCacheDirError: the directory is not safe or cannot be created.
    """
    from jaxnets import compilation_cache

    global _file
    target = (Path(directory).expanduser() if directory is not None else compilation_cache.default_dir()).absolute()
    if not target.exists():
        compilation_cache._make(target)
    compilation_cache._check(target)
    _file = target / FILE_NAME
    return _file


def disable() -> None:
    """Stop reading and writing the choices file (choices made in this process stay in its memory)."""
    global _file
    _file = None


def path() -> Path | None:
    """The enabled choices file, or ``None``."""
    return _file


def forget() -> None:
    """Forget the choices held in this process's memory (the file, if any, is left as it is)."""
    _memory.clear()


def _cpu() -> dict[str, str]:
    fields = {"model name": "", "cpu family": "", "model": "", "cache size": ""}
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            name, _, value = line.partition(":")
            name = name.strip()
            if name in fields and not fields[name]:
                fields[name] = value.strip()
            if not line.strip() and fields["model name"]:
                break
    if not fields["model name"]:
        fields["model name"] = platform.processor() or platform.machine()
    return fields


def machine() -> dict[str, Any]:
    """What a choice depends on besides the program: CPU model, usable cores, device kind and count, JAX and
    jaxlib versions, ``XLA_FLAGS``."""
    import jax
    import jaxlib

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    device = jax.devices()[0]
    return {"cpu": _cpu(), "cores": cores, "platform": device.platform, "device_kind": device.device_kind,
            "devices": jax.device_count(), "processes": jax.process_count(), "jax": jax.__version__,
            "jaxlib": jaxlib.__version__, "xla_flags": os.environ.get("XLA_FLAGS", "")}


def _digest(key: Mapping[str, Any]) -> str:
    text = json.dumps(key, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _read(file: Path) -> dict[str, Any]:
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError):  # missing, unreadable or corrupt: no choices (the next write replaces it)
        return {}
    if not isinstance(data, dict) or data.get("format") != _FORMAT or not isinstance(data.get("choices"), dict):
        return {}
    return data["choices"]


def lookup(key: Mapping[str, Any]) -> int | None:
    """The block size chosen for ``key`` (this process's memory first, then the file), or ``None``."""
    digest = _digest(key)
    if digest in _memory:
        return _memory[digest]
    if _file is not None:
        entry = _read(_file).get(digest)
        if isinstance(entry, dict) and isinstance(entry.get("size"), int) and entry["size"] > 0:
            _memory[digest] = entry["size"]
            return entry["size"]
    return None


def record(key: Mapping[str, Any], size: int, seconds: Mapping[int, float]) -> None:
    """Remember ``size`` for ``key`` in memory and, if enabled, in the file (with the candidates' estimated
    group times ``seconds`` and the key itself, for whoever reads it). The file is replaced atomically; a
    file that cannot be written leaves the choice in memory only."""
    digest = _digest(key)
    _memory[digest] = int(size)
    if _file is None:
        return
    choices = _read(_file)
    choices[digest] = {"size": int(size), "group_s": {str(k): v for k, v in seconds.items()},
                       "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "key": json.loads(json.dumps(key, default=str))}
    text = json.dumps({"format": _FORMAT, "choices": choices}, indent=1, sort_keys=True)
    with contextlib.suppress(OSError):
        fd, tmp = tempfile.mkstemp(dir=_file.parent, prefix=".blocks-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.chmod(tmp, 0o600)
            os.replace(tmp, _file)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


class Candidate(NamedTuple):
    """One block size under trial.

    Attributes:
      size: the block size (variants per program call).
      n_blocks: how many times one ``run`` the group's training would take at this size (the blocks it would
        run in, when ``run`` trains one block; fractional when ``run`` covers several).
      run: runs the candidate's trial program once and waits for its results.
    """

    size: int
    n_blocks: float
    run: Callable[[], Any]


def choose(candidates: list[Candidate], *, rounds: int = TRIAL_ROUNDS, margin: float = MARGIN
           ) -> tuple[int, dict[int, float]]:
    """Time the candidates and pick one.

    Args:
      candidates: the shape rule's size first, then the smaller ones.
      rounds: timed calls of each (alternating, after one warm-up call each).
      margin: a later candidate must beat the best earlier one's estimated group time by this fraction.

    Returns:
      ``(size, group_s)``: the chosen size, and each candidate's estimated group time for
      :data:`TRIAL_STEPS` steps (fastest round times ``n_blocks``), by size.
    """
    for c in candidates:
        c.run()
    best = {c.size: math.inf for c in candidates}
    for _ in range(rounds):
        for c in candidates:
            t = time.perf_counter()
            c.run()
            best[c.size] = min(best[c.size], time.perf_counter() - t)
    group_s = {c.size: best[c.size] * c.n_blocks for c in candidates}
    pick = candidates[0].size
    for c in candidates[1:]:
        if group_s[c.size] < (1 - margin) * group_s[pick]:
            pick = c.size
    return pick, group_s
