"""The results directory: what a sweep writes, how it is saved safely, and how a run resumes.

Layout of ``DIR``::

    config.toml          the config as run (its text, byte for byte)
    units/group-000.npz  one file per finished unit (static group, or Bayesian round): resume state
    params/group-000.safetensors  the unit's trained parameters and model state (jaxnets.paramfile)
    results.csv          one row per variant (see jaxnets.sweep.assemble for the columns)
    history.npz          per-evaluation metrics, row i = variant in row i of results.csv
    manifest.json        SHA-256 and row count of results.csv and history.npz, written last
    plots/*.png          figures (jaxnets.plots)

Every file is written to a temporary name in the same folder, flushed to disk and renamed over its final
name (``os.replace`` is atomic on POSIX and Windows), so a reader sees either the old file or the new one,
never half of one; temporaries start with ``.`` and end in ``.tmp`` and are never read back. Killing the
process at any moment therefore loses only the unit in training. Each unit also stores a SHA-256 checksum of
its arrays and metadata, so a unit damaged later (a truncated copy, a flipped bit) is detected on resume,
reported with :class:`CorruptUnitWarning` and retrained, never silently reused: *any* failure to read a unit
or a checkpoint (whatever the exception) is damage, never a crash. A unit's parameters file is written before
its unit file, which records the parameters' checksum: a missing or damaged parameters file makes its unit
damaged too (retrained). ``results.csv`` and ``history.npz`` are
covered by ``manifest.json`` (written last): :func:`read_results` refuses a damaged, incomplete or
unverifiable pair with :class:`CorruptResultsError` instead of returning a partial table. :func:`open_run`
removes the temporaries a killed write left behind. A write the machine refuses (disk full, read-only file
system, no permission) raises :class:`StorageError`, one typed error with the path and the ``errno``.

Only one run may write a directory at a time: :func:`lock` holds ``DIR/.lock`` (the owner's pid and host,
created with ``O_CREAT | O_EXCL``) for the whole run; a second run gets :class:`LockedError`. A lock left by
a process that no longer runs on this host (or an unreadable one) is stale and taken over, with a
:class:`StaleLockWarning`.

:func:`open_run` decides what an existing directory means: the same config (compared as parsed TOML, so
comments and spacing do not matter) resumes from its saved units; a different config, or a non-empty
folder that is not a results directory, is refused with :class:`DirectoryError` unless ``force``, which
deletes this module's files only (never anything else in the folder, and never the lock).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import secrets
import socket
import time
import tomllib
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxnets import paramfile
from jaxnets.atomic import TMP_SUFFIX, StorageError, atomic_write, writing
from jaxnets.result import COLUMNS, UnitResult
from jaxnets.result import METRICS as HISTORY_METRICS

__all__ = [
    "CONFIG", "UNITS", "RESULTS", "HISTORY", "PLOTS", "LOCK", "DirectoryError", "LockedError", "CorruptUnitError",
    "CorruptUnitWarning", "StaleLockWarning", "atomic_write", "write_text", "save_npz", "lock", "open_run",
    "save_unit", "load_unit", "load_units", "write_results", "read_results", "read_config_text", "CHECKPOINTS",
    "save_checkpoint", "load_checkpoints", "drop_checkpoint", "MANIFEST", "CorruptResultsError", "StorageError",
    "PARAMS", "params_path",
]

CONFIG = "config.toml"
UNITS = "units"
CHECKPOINTS = "checkpoints"
PARAMS = "params"
RESULTS = "results.csv"
HISTORY = "history.npz"
PLOTS = "plots"
MANIFEST = "manifest.json"
REPORT = "report.html"  # one self-contained page of the sweep (jaxnets.report)
LOCK = ".lock"
_LOCK_BREAK = ".lock.breaking"  # held for the instant a stale lock is replaced (two takers never both win)
_LOCK_GRACE_S = 10.0  # an unreadable lock (or break guard) younger than this may still be being written


class DirectoryError(RuntimeError):
    """The output directory cannot be used as asked (another config's results, or a foreign folder)."""


class LockedError(DirectoryError):
    """Another run holds the directory's lock.

    Attributes:
      path: The lock file, ``DIR/.lock``.
      pid: The holder's process id (``None`` if the lock is still being written).
      host: The holder's host name (``None`` if unknown).
    """

    def __init__(self, path: Path, pid: int | None, host: str | None):
        self.path, self.pid, self.host = Path(path), pid, host
        out = str(self.path.parent)
        if pid is None:
            who = "another jaxnets run that is starting now"
        elif host is not None and host != socket.gethostname():
            who = f"another jaxnets run (pid {pid} on host {host}; if it is gone, delete {self.path})"
        else:
            who = f"another jaxnets run (pid {pid}, lock file {self.path})"
        super().__init__(f"{out!r} is in use by {who}; wait for it to finish or stop it, or use another --out")


class CorruptUnitError(ValueError):
    """A saved unit file is damaged (unreadable, inconsistent, or failing its checksum).

    Attributes:
      path: The unit file.
      reason: Why it is considered damaged, in a few words (e.g. ``"truncated zip archive"``).
    """

    def __init__(self, path: str | Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"{self.path} is damaged ({reason})")


class CorruptUnitWarning(UserWarning):
    """:func:`load_units` skipped a damaged unit file (so the sweep retrains that unit).

    Attributes:
      path: The unit file.
      reason: Why it is considered damaged (see :class:`CorruptUnitError`).
    """

    def __init__(self, path: str | Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"{self.path} is damaged ({reason}); it is skipped and will be retrained")


class CorruptResultsError(DirectoryError):
    """``results.csv`` / ``history.npz`` cannot be trusted: damaged, incomplete, or without their manifest.

    Attributes:
      path: The file at fault (``results.csv``, ``history.npz`` or ``manifest.json``).
      reason: Why, in a few words.
    """

    def __init__(self, path: str | Path, reason: str):
        self.path, self.reason = Path(path), reason
        out = self.path.parent
        super().__init__(f"{self.path} is damaged or incomplete ({reason}); run the same `jaxnets sweep CONFIG "
                         f"--out {out}` again: it rebuilds the results from the saved units")


class StaleLockWarning(UserWarning):
    """:func:`lock` took over a stale lock (its process is gone, or the lock file was unreadable).

    Attributes:
      path: The lock file, ``DIR/.lock``.
      pid: The process id it named (``None`` if unreadable).
      reason: Why it is stale, in a few words.
    """

    def __init__(self, path: str | Path, pid: int | None, reason: str):
        self.path, self.pid, self.reason = Path(path), pid, reason
        super().__init__(f"took over the stale lock {self.path} ({reason})")


# ---------------------------------------------------------------------------------------------------------
# Atomic writes (jaxnets.atomic: atomic_write; here the formats)
# ---------------------------------------------------------------------------------------------------------


def write_text(path: str | Path, text: str) -> Path:
    """Atomically write UTF-8 text."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def save_npz(path: str | Path, arrays: Mapping[str, np.ndarray]) -> Path:
    """Atomically write a ``.npz`` archive (uncompressed; readable without pickle)."""
    return atomic_write(path, lambda f: np.savez(f, **arrays))


# ---------------------------------------------------------------------------------------------------------
# The directory lock (one writer at a time)
# ---------------------------------------------------------------------------------------------------------


def _read_lock(path: Path) -> dict[str, Any] | None:
    """The owner recorded in a lock file, or ``None`` if it cannot be read or parsed.

    Raises:
      FileNotFoundError: The lock file does not exist (any more).
    """
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, ValueError):
        return None
    ok = isinstance(info, dict) and type(info.get("pid")) is int and info["pid"] > 0 \
        and isinstance(info.get("host"), str)
    return info if ok else None


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (``os.kill(pid, 0)``; assumed alive where unsure)."""
    if os.name == "nt":  # os.kill would terminate the process on Windows: no safe probe in the standard library
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists but belongs to another user
        return True
    return True


def _age(path: Path) -> float:
    return time.time() - path.stat().st_mtime


def _stale(path: Path, info: dict[str, Any] | None) -> str | None:
    """Why the lock ``path`` (holding ``info``) is stale, or ``None`` while its owner may be alive."""
    if info is None:
        return "its content is unreadable" if _age(path) > _LOCK_GRACE_S else None
    if info["host"] != socket.gethostname():
        return None  # another machine's process cannot be checked from here
    return None if _pid_alive(info["pid"]) else f"pid {info['pid']} is no longer running"


def _break_stale(path: Path, seen: dict[str, Any] | None) -> None:
    """Delete the stale lock ``path`` if it still holds ``seen``, under a guard so that one taker wins."""
    guard = path.with_name(_LOCK_BREAK)
    try:
        os.close(os.open(guard, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except FileExistsError:
        with contextlib.suppress(OSError):  # a guard left by a crash in the middle of a takeover
            if _age(guard) > _LOCK_GRACE_S:
                guard.unlink()
        time.sleep(0.05)
        return
    try:
        try:
            now = _read_lock(path)
        except FileNotFoundError:
            return
        reason = _stale(path, now)
        if now != seen or reason is None:  # it changed hands meanwhile: look again
            return
        path.unlink(missing_ok=True)
        warnings.warn(StaleLockWarning(path, None if now is None else now["pid"], reason), stacklevel=2)
    finally:
        with contextlib.suppress(OSError):
            guard.unlink()


def _acquire(out: Path) -> tuple[Path, str]:
    """Create ``out/.lock`` for this process; return its path and this holder's token."""
    if out.exists() and not out.is_dir():
        raise DirectoryError(f"--out {str(out)!r} is a file, not a directory")
    with writing(out, "create the results directory"):
        out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK
    token = secrets.token_hex(8)
    text = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "token": token, "started": time.time()})
    info: dict[str, Any] | None = None
    for _ in range(200):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            pass
        except OSError as e:  # read-only, no permission, full
            raise StorageError(path, e.errno, e.strerror or str(e), "create the lock") from e
        else:
            try:
                with writing(path, "write the lock"), os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(text)
                    f.flush()
                    os.fsync(f.fileno())
            except BaseException:
                with contextlib.suppress(OSError):
                    path.unlink()
                raise
            return path, token
        try:
            info = _read_lock(path)
            if _stale(path, info) is None:
                break
            _break_stale(path, info)
        except FileNotFoundError:
            continue  # released in the meantime: try to create it again
    raise LockedError(path, None if info is None else info["pid"], None if info is None else info["host"])


def _release(path: Path, token: str) -> None:
    """Delete the lock ``path`` if it is still the one this holder created (``token``)."""
    with contextlib.suppress(OSError):
        info = _read_lock(path)
        if info is not None and info.get("token") == token:
            path.unlink()


@contextlib.contextmanager
def lock(out: str | Path) -> Iterator[Path]:
    """Hold the lock of the results directory ``out`` (created if missing) while the ``with`` body runs.

    The lock is ``out/.lock``, created atomically (``O_CREAT | O_EXCL``) and holding this process's pid and
    host name as JSON (``{"pid": 123, "host": "name", ...}``); it is deleted when the body ends, also by an
    exception or Ctrl-C (only if it is still this holder's). A lock left by a process
    that no longer runs on this host, or one whose content is unreadable (and older than a few seconds), is
    stale: it is taken over with a :class:`StaleLockWarning`. A live lock is never deleted, not even by
    ``open_run(..., force=True)``. Take it before :func:`open_run` and hold it until the last file is written.

    Args:
      out: The results directory.

    Yields:
      The lock file's path.

    Raises:
      LockedError: Another live process (or a process on another host) holds the lock.
      DirectoryError: ``out`` is a file.
      StorageError: ``out`` or its lock cannot be created (read-only file system, no permission, disk full).
    """
    path, token = _acquire(Path(out))
    try:
        yield path
    finally:
        _release(path, token)


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
    files = [out / CONFIG, out / RESULTS, out / HISTORY, out / MANIFEST, out / REPORT]
    files += sorted((out / UNITS).glob("*.npz")) + sorted((out / PLOTS).glob("*.png"))
    files += sorted((out / CHECKPOINTS).glob("*.npz")) + sorted((out / PARAMS).glob(f"*{paramfile.SUFFIX}"))
    return [f for f in files if f.is_file()]


def _clear(out: Path) -> None:
    for f in _ours(out):
        with writing(f, "delete"):
            f.unlink()


def _temporaries(out: Path) -> list[Path]:
    """The temporaries :func:`atomic_write` leaves when killed mid-write (``.<name>.<random>.tmp`` next to one
    of this module's files), in ``out`` and its ``units``, ``checkpoints`` and ``plots`` folders."""
    found = []
    for name in (CONFIG, RESULTS, HISTORY, MANIFEST, REPORT):
        found += out.glob(f".{name}.*{TMP_SUFFIX}")
    for folder, ext in ((UNITS, "npz"), (CHECKPOINTS, "npz"), (PLOTS, "png"), (PARAMS, paramfile.SUFFIX[1:])):
        found += (out / folder).glob(f".*.{ext}.*{TMP_SUFFIX}")
    return sorted(f for f in found if f.is_file())


def _tidy(out: Path) -> None:
    """Before a run (the lock held): delete stale temporaries; an empty folder where a unit or checkpoint file
    belongs is deleted with a :class:`CorruptUnitWarning` (it is retrained), a non-empty one is refused."""
    for f in _temporaries(out):
        with writing(f, "delete the stale temporary"):
            f.unlink(missing_ok=True)
    for folder in (UNITS, CHECKPOINTS):
        for path in sorted((out / folder).glob("*.npz")):
            if path.name.startswith(".") or path.is_file():
                continue
            if path.is_dir() and not any(path.iterdir()):
                warnings.warn(CorruptUnitWarning(path, "an empty folder, not a file"), stacklevel=3)
                with writing(path, "delete the empty folder"):
                    path.rmdir()
                continue
            raise DirectoryError(f"{str(path)!r} is not a file (a folder, or a special file) where jaxnets keeps a "
                                 f"{folder[:-1]}; move it out of {str(out / folder)!r}, then run the same command "
                                 "again")


def read_config_text(out: str | Path) -> str:
    """The text of ``DIR/config.toml``.

    Args:
      out: The results directory.

    Returns:
      The config's text.

    Raises:
      DirectoryError: ``config.toml`` is missing.
    """
    path = Path(out) / CONFIG
    if not path.is_file():
        raise DirectoryError(f"{str(out)!r} is not a jaxnets results directory (no {CONFIG})")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DirectoryError(f"{str(path)!r} is damaged (not UTF-8 text); re-run the sweep with --force, "
                             "or into another --out") from None
    except OSError as e:
        raise DirectoryError(f"{str(path)!r} cannot be read ({e.strerror or e}); fix its permissions, or re-run "
                             "the sweep into another --out") from None


def open_run(out: str | Path, config_text: str, *, force: bool = False, params: bool = False
             ) -> dict[str, UnitResult]:
    """Make ``out`` ready for a run of ``config_text``; return the units already finished there.

    * missing or empty folder: created, ``config.toml`` written, nothing finished;
    * same config (as parsed TOML): resume, the saved units are returned (results and plots are redone);
    * another config, or a non-empty folder without ``config.toml``: :class:`DirectoryError` naming the
      differences, unless ``force``, which deletes the old results (this module's files only) first.

    Damaged unit files are skipped with a :class:`CorruptUnitWarning` each (see :func:`load_units`), so the
    sweep retrains them. The lock file (:func:`lock`) does not make a folder non-empty and is never deleted.
    Temporaries a killed write left (``.<name>.<random>.tmp`` next to this module's files) are deleted first
    (take the lock before calling this), and so is an empty folder where a unit file belongs (with a
    :class:`CorruptUnitWarning`).

    Args:
      out: The results directory.
      config_text: The config's text, written to ``config.toml`` byte for byte.
      force: Delete another config's results (or write into a foreign non-empty folder) instead of refusing.
      params: Load the finished units with their saved parameters (:func:`load_unit`).

    Returns:
      The finished units by key (empty for a fresh directory).

    Raises:
      DirectoryError: ``out`` is a file, holds another config's results, or is a foreign non-empty folder; or
        something other than a file (a non-empty folder) stands where a unit file belongs.
      StorageError: The machine refused a write (disk full, read-only, no permission).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DirectoryError(f"--out {str(out)!r} is a file, not a directory")
    new = tomllib.loads(config_text)
    done: dict[str, UnitResult] = {}
    if out.is_dir():
        _tidy(out)
    if (out / CONFIG).is_file():
        try:
            old = tomllib.loads(read_config_text(out))
        except (tomllib.TOMLDecodeError, DirectoryError):  # damaged: a different config, for --force to replace
            old = None
        if old == new:
            done = load_units(out, params=params)
        elif not force:
            changed = ", ".join(list(_diff(old, new))[:8]) if old is not None else "unreadable config.toml"
            raise DirectoryError(
                f"{str(out)!r} holds the results of a different config (differs in: {changed}). "
                "Use another --out, or --force to delete those results and start over."
            )
        else:
            _clear(out)
    elif out.is_dir() and any(f.name not in (LOCK, _LOCK_BREAK) for f in out.iterdir()):
        if not force:
            raise DirectoryError(
                f"{str(out)!r} is not empty and is not a jaxnets results directory (no {CONFIG}). "
                "Use an empty or new folder for --out, or --force to write there anyway."
            )
        _clear(out)
    with writing(out, "create the results directory"):
        out.mkdir(parents=True, exist_ok=True)
    if not (out / CONFIG).is_file():
        write_text(out / CONFIG, config_text)
    return done


# ---------------------------------------------------------------------------------------------------------
# Units (resume state)
# ---------------------------------------------------------------------------------------------------------


_ARRAYS = ("variant", "group", "eval_step", *(f"col_{k}" for k in COLUMNS), *(f"hist_{k}" for k in HISTORY_METRICS))


def _checksum(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over the unit's metadata (canonical JSON, without the checksum) and arrays (name, dtype,
    shape, bytes in C order), in sorted name order."""
    h = hashlib.sha256()
    h.update(json.dumps({k: v for k, v in meta.items() if k != "sha256"}, sort_keys=True).encode("utf-8"))
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"\0{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def params_path(out: str | Path, key: str) -> Path:
    """The parameters file of unit ``key``: ``DIR/params/<key>.safetensors``."""
    return Path(out) / PARAMS / f"{key}{paramfile.SUFFIX}"


def save_unit(out: str | Path, res: UnitResult) -> Path:
    """Atomically save a finished unit as ``DIR/units/<key>.npz``, with a checksum in its metadata; first, when
    it was trained in this process (``res.trained``), its parameters as ``DIR/params/<key>.safetensors``, whose
    checksum the unit's metadata records (:mod:`jaxnets.paramfile`).

    Args:
      out: The results directory.
      res: The finished unit.

    Returns:
      The unit file's path.

    Raises:
      StorageError: The machine refused the write (disk full, read-only, no permission).
    """
    arrays = {
        "variant": np.asarray(res.variant),
        "group": np.asarray(res.group),
        "eval_step": np.asarray(res.eval_step),
        **{f"col_{k}": np.asarray(v) for k, v in res.columns.items()},
        **{f"hist_{k}": np.asarray(v) for k, v in res.history.items()},
    }
    meta = json.loads(json.dumps({"key": res.key, "fingerprint": res.fingerprint, "points": res.points}))
    if res.trained is not None:  # the engine's Result of the unit, its groups indexing the unit's variants
        try:
            data, meta["params"] = paramfile.encode(paramfile.of_groups(res.key, res.trained.groups, res.variant))
        except (ImportError, TypeError, ValueError) as e:  # no safetensors, or a tree it cannot hold: no params
            warnings.warn(paramfile.ParamsNotSavedWarning(res.key, str(e)), stacklevel=2)
        else:
            atomic_write(params_path(out, res.key), lambda f: f.write(data))
    meta["sha256"] = _checksum(meta, arrays)
    return save_npz(Path(out) / UNITS / f"{res.key}.npz", {"meta": np.array(json.dumps(meta)), **arrays})


def _why(e: BaseException, head: bytes) -> str:
    """A few words on why reading a unit failed with ``e`` (``head``: the file's first bytes): one line."""
    msg = " ".join(str(e).split())
    msg = msg if len(msg) <= 160 else msg[:157] + "..."
    if isinstance(e, zipfile.BadZipFile):
        if "CRC" in msg:  # zipfile checks each member's CRC-32 as it is read: a flipped bit
            return msg[:1].lower() + msg[1:]
        if "not a zip file" in msg and head.startswith(b"PK"):  # the end-of-archive record is gone
            return "truncated zip archive"
        return f"damaged zip archive: {msg}"
    if isinstance(e, EOFError):
        return "truncated file"
    if isinstance(e, json.JSONDecodeError):
        return "its metadata is not valid JSON"
    if isinstance(e, IsADirectoryError):
        return "a folder, not a file"
    if isinstance(e, OSError):
        return f"cannot be read: {e.strerror or msg}"
    if isinstance(e, MemoryError):
        return "an array header claims an impossible size"
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


@contextlib.contextmanager
def _reading(path: Path, head: bytes = b"PK") -> Iterator[None]:
    """Any exception raised in the body (other than :class:`CorruptUnitError`) becomes a
    :class:`CorruptUnitError` for ``path``: a file that cannot be read, whatever the reason, is damaged,
    never a crash (``head``: the file's first bytes, for the reason's words)."""
    try:
        yield
    except CorruptUnitError:
        raise
    except Exception as e:  # noqa: BLE001 - a damaged file can make zipfile / numpy raise almost anything
        raise CorruptUnitError(path, _why(e, head)) from e


def _read_npz(path: Path, required: Sequence[str] = (), data: bytes | None = None) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` archive ``path`` (or of its bytes ``data``, already read), read without
    pickle; :class:`CorruptUnitError` for any failure (see :func:`_reading`) or a missing ``required`` array."""
    with contextlib.ExitStack() as stack:
        with _reading(path, b""):
            if path.is_dir():
                raise CorruptUnitError(path, "a folder, not a file")
            # opened here, not by np.load, so that it is closed whatever happens
            f = io.BytesIO(data) if data is not None else stack.enter_context(open(path, "rb"))
            head = f.read(4)
            f.seek(0)
        if not head:
            raise CorruptUnitError(path, "empty file")
        if not head.startswith(b"PK"):
            raise CorruptUnitError(path, "not an .npz archive (no zip signature)")
        with _reading(path, head), np.load(f, allow_pickle=False) as z:
            missing = [n for n in required if n not in z.files]
            if missing:
                raise CorruptUnitError(path, f"missing array(s): {', '.join(missing[:4])}")
            return {n: z[n] for n in z.files}


def _read_unit(path: Path, params: bool = False) -> tuple[UnitResult, bool]:
    """Read and check a unit file (and its parameters file, when it records one); return it and whether it
    carried a checksum (``False``: unverified). ``params``: keep the parameters in ``UnitResult.params``."""
    arrays = _read_npz(path, ("meta", *_ARRAYS))
    with _reading(path):
        meta = json.loads(str(arrays.pop("meta")[()]))
        res, verified = _check_unit(path, meta, {n: arrays[n] for n in sorted(arrays)})
    if meta.get("params") is not None:
        ppath = params_path(path.parent.parent, res.key)
        try:
            trained, digest = paramfile.read(ppath)
        except paramfile.CorruptParamsError as e:
            raise CorruptUnitError(e.path, e.reason) from None
        if digest != meta["params"]:
            raise CorruptUnitError(ppath, f"not the parameters unit {res.key!r} was saved with (checksum differs)")
        res.params = trained if params else None
    return res, verified


def _check_unit(path: Path, meta: Any, arrays: dict[str, np.ndarray]) -> tuple[UnitResult, bool]:
    """Verify a unit's checksum (when it has one) and that its arrays fit its metadata."""

    def need(ok: bool, why: str) -> None:
        if not ok:
            raise CorruptUnitError(path, why)

    need(isinstance(meta, dict) and isinstance(meta.get("key"), str) and isinstance(meta.get("fingerprint"), str)
         and isinstance(meta.get("points"), list), "its metadata lacks key, fingerprint or points")
    need(meta["key"] == path.stem, f"it holds unit {meta['key']!r}, not {path.stem!r}")
    stored = meta.get("sha256")
    if stored is not None:
        need(stored == _checksum(meta, arrays), "checksum mismatch: its content changed after it was saved")
    n = len(meta["points"])
    for name in ("variant", "group", *(f"col_{k}" for k in COLUMNS)):
        need(arrays[name].shape == (n,), f"{name!r} has shape {arrays[name].shape}, expected ({n},) for {n} points")
    need(arrays["variant"].dtype.kind in "iu" and arrays["group"].dtype.kind in "iu", "non-integer variant/group ids")
    steps = arrays["eval_step"]
    need(steps.ndim == 2 and steps.shape[0] == n, f"'eval_step' has shape {steps.shape}, expected ({n}, E)")
    for k in HISTORY_METRICS:
        h = arrays[f"hist_{k}"]
        need(h.ndim in (2, 3) and h.shape[:2] == steps.shape,
             f"'hist_{k}' has shape {h.shape}, expected {steps.shape} (+ layers)")
    res = UnitResult(
        key=meta["key"],
        fingerprint=meta["fingerprint"],
        variant=arrays["variant"],
        points=meta["points"],
        columns={k: arrays[f"col_{k}"] for k in COLUMNS},
        history={k: arrays[f"hist_{k}"] for k in HISTORY_METRICS}
        | {n.removeprefix("hist_"): arrays[n] for n in arrays if n.startswith("hist_")
           and arrays[n].shape[:2] == steps.shape},  # asha / pbt lineage: parent, hp_<key>
        eval_step=steps,
        group=arrays["group"],
    )
    return res, stored is not None


def load_unit(path: str | Path, *, params: bool = False) -> UnitResult:
    """Read a unit saved by :func:`save_unit`, checking it.

    The file must be a readable ``.npz`` with every array, its arrays' shapes must fit its metadata (one row
    per point) and, when it has a checksum (units saved by this version), the checksum must match. A unit
    written before checksums existed has none: it loads unverified (its shapes are still checked). A unit
    that records a parameters file (``DIR/params/<key>.safetensors``) needs it intact and with the recorded
    checksum.

    Args:
      path: The unit file (``DIR/units/<key>.npz``).
      params: Keep its trained parameters in ``UnitResult.params`` (``None`` when it has none); otherwise
        they are checked, then dropped.

    Returns:
      The unit.

    Raises:
      CorruptUnitError: The file is damaged: truncated, not an archive, missing or ill-shaped arrays,
        unreadable metadata, a checksum mismatch, or it cannot be read at all (``reason`` says which); or its
        parameters file is missing or damaged (``path`` is then the parameters file). Any
        exception raised while reading it (zipfile's, numpy's, the operating system's) becomes this one.
    """
    return _read_unit(Path(path), params)[0]


def load_units(out: str | Path, *, params: bool = False) -> dict[str, UnitResult]:
    """Every intact saved unit in ``DIR/units``, by key.

    A damaged file (anything :func:`load_unit` rejects) is left out, so the sweep retrains that unit and
    overwrites it, and is reported with one :class:`CorruptUnitWarning` (``path``, ``reason``) per file;
    callers that show warnings their own way catch them with :func:`warnings.catch_warnings`. Temporaries
    (``.*.tmp``) are never read.

    Args:
      out: The results directory.
      params: Keep each unit's trained parameters (see :func:`load_unit`).

    Returns:
      The intact units by key.
    """
    return {res.key: res for res in _intact(Path(out) / UNITS, lambda path: load_unit(path, params=params))}


def _intact(directory: Path, load: Callable[[Path], Any]) -> Iterator[Any]:
    """``load(path)`` for every ``*.npz`` in ``directory`` in name order, temporaries (``.*``) skipped; a file
    ``load`` rejects with :class:`CorruptUnitError` is skipped with a :class:`CorruptUnitWarning` (attributed
    to the caller of the ``load_*`` function iterating)."""
    for path in sorted(directory.glob("*.npz")):
        if path.name.startswith("."):
            continue
        try:
            item = load(path)
        except CorruptUnitError as e:
            warnings.warn(CorruptUnitWarning(e.path, e.reason), stacklevel=3)
            continue
        yield item


def save_checkpoint(out: str | Path, key: str, fingerprint: str, state: Mapping[str, np.ndarray]) -> Path:
    """Atomically save an ``asha`` / ``pbt`` unit's mid-training state as ``DIR/checkpoints/<key>.npz``.

    Args:
      out: The results directory.
      key: The unit's key.
      fingerprint: The unit's fingerprint.
      state: The engine's snapshot (:class:`jaxnets.events.Checkpoint`).

    Returns:
      The checkpoint file's path.

    Raises:
      StorageError: The machine refused the write (disk full, read-only, no permission).
    """
    arrays = {f"s_{k}": np.asarray(v) for k, v in state.items()}
    meta = {"key": key, "fingerprint": fingerprint}
    meta["sha256"] = _checksum(meta, arrays)
    return save_npz(Path(out) / CHECKPOINTS / f"{key}.npz", {"meta": np.array(json.dumps(meta)), **arrays})


def load_checkpoints(out: str | Path) -> dict[str, tuple[str, dict[str, np.ndarray]]]:
    """Every intact checkpoint in ``DIR/checkpoints``: ``{unit key: (fingerprint, state)}``.

    A damaged one (any failure to read it, or its checksum does not match) is left out with a
    :class:`CorruptUnitWarning`: its unit then starts from the beginning.

    Args:
      out: The results directory.

    Returns:
      The checkpoints by unit key.
    """
    return dict(_intact(Path(out) / CHECKPOINTS, _load_checkpoint))


def _load_checkpoint(path: Path) -> tuple[str, tuple[str, dict[str, np.ndarray]]]:
    """``(unit key, (fingerprint, state))`` of one checkpoint file; :class:`CorruptUnitError` when it is
    unreadable or its checksum does not match."""
    arrays = _read_npz(path, ("meta",))
    with _reading(path):
        meta = json.loads(str(arrays.pop("meta")[()]))
        if meta.get("sha256") != _checksum({k: v for k, v in meta.items() if k != "sha256"}, arrays):
            raise CorruptUnitError(path, "checksum mismatch: its content changed after it was saved")
        if not isinstance(meta.get("key"), str) or not isinstance(meta.get("fingerprint"), str):
            raise CorruptUnitError(path, "its metadata lacks key or fingerprint")
        return meta["key"], (meta["fingerprint"], {n.removeprefix("s_"): a for n, a in arrays.items()})


def drop_checkpoint(out: str | Path, key: str) -> None:
    """Delete unit ``key``'s checkpoint (once the unit is saved), if there is one.

    Args:
      out: The results directory.
      key: The unit's key.
    """
    path = Path(out) / CHECKPOINTS / f"{key}.npz"
    with writing(path, "delete the checkpoint"):
        path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------------------
# Final results
# ---------------------------------------------------------------------------------------------------------


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def write_results(out: str | Path, table, history: Mapping[str, np.ndarray]) -> tuple[Path, Path]:
    """Atomically write ``results.csv`` (pandas; NaN as an empty cell), ``history.npz`` and, last,
    ``manifest.json`` (the SHA-256 of both files and the number of rows), so that :func:`read_results` can
    tell a complete, intact pair from a damaged or half-written one. The old manifest is deleted first.

    Args:
      out: The results directory.
      table: The results table (a pandas DataFrame, see :func:`jaxnets.sweep.assemble`).
      history: The history arrays by name.

    Returns:
      The paths of ``results.csv`` and ``history.npz``.

    Raises:
      StorageError: The machine refused a write (disk full, read-only, no permission).
    """
    out = Path(out)
    with writing(out / MANIFEST, "delete the old manifest"):
        (out / MANIFEST).unlink(missing_ok=True)
    files = {RESULTS: table.to_csv(index=False).encode("utf-8"), HISTORY: _npz_bytes(history)}
    for name, data in files.items():
        atomic_write(out / name, lambda f, data=data: f.write(data))
    manifest = {"format": 1, "rows": len(table),
                "files": {name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
                          for name, data in files.items()}}
    write_text(out / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return out / RESULTS, out / HISTORY


def _verified(out: Path) -> tuple[dict[str, bytes], int]:
    """The bytes of ``results.csv`` and ``history.npz`` and the row count, checked against ``manifest.json``;
    :class:`CorruptResultsError` when either differs from it, or the manifest is missing or damaged."""
    path = out / MANIFEST
    if not path.is_file():
        raise CorruptResultsError(path, "no manifest: the results were not completely written, or by an older "
                                  "jaxnets")
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
        rows = manifest["rows"]
        sums = {name: manifest["files"][name]["sha256"] for name in (RESULTS, HISTORY)}
        if type(rows) is not int or rows < 0 or not all(isinstance(v, str) for v in sums.values()):
            raise ValueError("ill-typed fields")
    except Exception as e:  # noqa: BLE001 - whatever is wrong with it, it cannot vouch for the results
        raise CorruptResultsError(path, f"unreadable manifest: {_why(e, b'')}") from e
    files = {}
    for name, want in sums.items():
        try:
            files[name] = (out / name).read_bytes()
        except OSError as e:
            raise CorruptResultsError(out / name, f"cannot be read: {e.strerror or e}") from e
        if hashlib.sha256(files[name]).hexdigest() != want:
            raise CorruptResultsError(out / name, "checksum mismatch with manifest.json")
    return files, rows


def read_results(out: str | Path):
    """Read the final results of a results directory, verified against its ``manifest.json``.

    Args:
      out: The results directory.

    Returns:
      ``(table, history)``: a pandas DataFrame and a dict of arrays.

    Raises:
      DirectoryError: ``results.csv`` or ``history.npz`` is missing (the sweep is not finished).
      CorruptResultsError: They are damaged or incomplete (a checksum differs from the manifest, the manifest
        is missing or damaged, a file cannot be parsed, the row counts disagree): never a partial table.
    """
    import pandas as pd

    out = Path(out)
    for name in (RESULTS, HISTORY):
        if not (out / name).is_file():
            raise DirectoryError(f"{str(out)!r} has no {name} (is the sweep finished? re-run it to resume)")
    files, rows = _verified(out)
    try:
        table = pd.read_csv(io.BytesIO(files[RESULTS]))
    except Exception as e:  # noqa: BLE001 - checksummed, so only a writer's bug gets here: still one line
        raise CorruptResultsError(out / RESULTS, f"cannot be parsed: {_why(e, b'')}") from e
    try:
        history = _read_npz(out / HISTORY, data=files[HISTORY])
    except CorruptUnitError as e:
        raise CorruptResultsError(out / HISTORY, e.reason) from e
    if len(table) != rows or any(a.ndim and a.shape[0] != rows for k, a in history.items() if k != "step"):
        raise CorruptResultsError(out / RESULTS, f"not the {rows} rows its manifest records")
    return table, history
