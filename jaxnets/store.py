"""The results directory: what a sweep writes, how it is saved safely, and how a run resumes.

Layout of ``DIR``::

    config.toml          the config as run (its text, byte for byte)
    units/group-000.npz  one file per finished unit (static group, or Bayesian round): resume state
    results.csv          one row per variant (see jaxnets.sweep.assemble for the columns)
    history.npz          per-evaluation metrics, row i = variant in row i of results.csv
    plots/*.png          figures (jaxnets.plots)

Every file is written to a temporary name in the same folder, flushed to disk and renamed over its final
name (``os.replace`` is atomic on POSIX and Windows), so a reader sees either the old file or the new one,
never half of one; temporaries start with ``.`` and end in ``.tmp`` and are never read back. Killing the
process at any moment therefore loses only the unit in training.

:func:`open_run` decides what an existing directory means: the same config (compared as parsed TOML, so
comments and spacing do not matter) resumes from its saved units; a different config, or a non-empty
folder that is not a results directory, is refused with :class:`DirectoryError` unless ``force``, which
deletes this module's files only (never anything else in the folder).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import tomllib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from jaxnets.sweep import COLUMNS, HISTORY_METRICS, UnitResult

__all__ = [
    "CONFIG", "UNITS", "RESULTS", "HISTORY", "PLOTS", "DirectoryError", "atomic_write", "write_text",
    "save_npz", "open_run", "save_unit", "load_units", "write_results", "read_results", "read_config_text",
]

CONFIG = "config.toml"
UNITS = "units"
RESULTS = "results.csv"
HISTORY = "history.npz"
PLOTS = "plots"


class DirectoryError(RuntimeError):
    """The output directory cannot be used as asked (another config's results, or a foreign folder)."""


# ---------------------------------------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------------------------------------


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform / file system lets a directory be opened
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Write a file through ``write(binary file)`` to a temporary name, fsync it, rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Atomically write UTF-8 text."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def save_npz(path: str | Path, arrays: Mapping[str, np.ndarray]) -> Path:
    """Atomically write a ``.npz`` archive (uncompressed; readable without pickle)."""
    return atomic_write(path, lambda f: np.savez(f, **arrays))


# ---------------------------------------------------------------------------------------------------------
# Opening a directory (fresh, resume, refuse, force)
# ---------------------------------------------------------------------------------------------------------


def _diff(a: Any, b: Any, prefix: str = "") -> Iterator[str]:
    """Dotted keys where two parsed TOML documents differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            yield from _diff(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else k)
    elif a != b:
        yield prefix or "(top level)"


def _ours(out: Path) -> list[Path]:
    """The files this module writes in ``out`` (what ``force`` deletes)."""
    files = [out / CONFIG, out / RESULTS, out / HISTORY]
    files += sorted((out / UNITS).glob("*.npz")) + sorted((out / PLOTS).glob("*.png"))
    return [f for f in files if f.is_file()]


def _clear(out: Path) -> None:
    for f in _ours(out):
        f.unlink()


def read_config_text(out: str | Path) -> str:
    """The text of ``DIR/config.toml``; :class:`DirectoryError` if it is missing."""
    path = Path(out) / CONFIG
    if not path.is_file():
        raise DirectoryError(f"{str(out)!r} is not a jaxnets results directory (no {CONFIG})")
    return path.read_text(encoding="utf-8")


def open_run(out: str | Path, config_text: str, *, force: bool = False) -> dict[str, UnitResult]:
    """Make ``out`` ready for a run of ``config_text``; return the units already finished there.

    * missing or empty folder: created, ``config.toml`` written, nothing finished;
    * same config (as parsed TOML): resume, the saved units are returned (results and plots are redone);
    * another config, or a non-empty folder without ``config.toml``: :class:`DirectoryError` naming the
      differences, unless ``force``, which deletes the old results (this module's files only) first.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DirectoryError(f"--out {str(out)!r} is a file, not a directory")
    new = tomllib.loads(config_text)
    done: dict[str, UnitResult] = {}
    if (out / CONFIG).is_file():
        try:
            old = tomllib.loads(read_config_text(out))
        except tomllib.TOMLDecodeError:
            old = None
        if old == new:
            done = load_units(out)
        elif not force:
            changed = ", ".join(list(_diff(old, new))[:8]) if old is not None else "unreadable config.toml"
            raise DirectoryError(
                f"{str(out)!r} holds the results of a different config (differs in: {changed}). "
                "Use another --out, or --force to delete those results and start over."
            )
        else:
            _clear(out)
    elif out.is_dir() and any(out.iterdir()):
        if not force:
            raise DirectoryError(
                f"{str(out)!r} is not empty and is not a jaxnets results directory (no {CONFIG}). "
                "Use an empty or new folder for --out, or --force to write there anyway."
            )
        _clear(out)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / CONFIG).is_file():
        write_text(out / CONFIG, config_text)
    return done


# ---------------------------------------------------------------------------------------------------------
# Units (resume state)
# ---------------------------------------------------------------------------------------------------------


def save_unit(out: str | Path, res: UnitResult) -> Path:
    """Atomically save a finished unit as ``DIR/units/<key>.npz``."""
    meta = json.dumps({"key": res.key, "fingerprint": res.fingerprint, "points": res.points})
    arrays = {
        "meta": np.array(meta),
        "variant": res.variant,
        "group": res.group,
        "eval_step": res.eval_step,
        **{f"col_{k}": v for k, v in res.columns.items()},
        **{f"hist_{k}": v for k, v in res.history.items()},
    }
    return save_npz(Path(out) / UNITS / f"{res.key}.npz", arrays)


def load_unit(path: str | Path) -> UnitResult:
    """Read a unit saved by :func:`save_unit`."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        return UnitResult(
            key=meta["key"],
            fingerprint=meta["fingerprint"],
            variant=z["variant"],
            points=meta["points"],
            columns={k: z[f"col_{k}"] for k in COLUMNS},
            history={k: z[f"hist_{k}"] for k in HISTORY_METRICS},
            eval_step=z["eval_step"],
            group=z["group"],
        )


def load_units(out: str | Path) -> dict[str, UnitResult]:
    """Every readable saved unit in ``DIR/units``, by key (an unreadable file is skipped: retrained)."""
    units = {}
    for path in sorted((Path(out) / UNITS).glob("*.npz")):
        try:
            res = load_unit(path)
        except (OSError, ValueError, KeyError):
            continue
        units[res.key] = res
    return units


# ---------------------------------------------------------------------------------------------------------
# Final results
# ---------------------------------------------------------------------------------------------------------


def write_results(out: str | Path, table, history: Mapping[str, np.ndarray]) -> tuple[Path, Path]:
    """Atomically write ``results.csv`` (pandas; NaN as an empty cell) and ``history.npz``."""
    out = Path(out)
    csv = write_text(out / RESULTS, table.to_csv(index=False))
    npz = save_npz(out / HISTORY, history)
    return csv, npz


def read_results(out: str | Path):
    """``(table, history)`` of a results directory: a pandas DataFrame and a dict of arrays."""
    import pandas as pd

    out = Path(out)
    for name in (RESULTS, HISTORY):
        if not (out / name).is_file():
            raise DirectoryError(f"{str(out)!r} has no {name} (is the sweep finished? re-run it to resume)")
    table = pd.read_csv(out / RESULTS)
    with np.load(out / HISTORY, allow_pickle=False) as z:
        history = {k: z[k] for k in z.files}
    return table, history
