"""Atomic writes: a file is written to a temporary name in its folder, flushed, fsynced and renamed into place,
so a reader sees the old file or the new one, never a part; a refused write is a :class:`StorageError` naming
the file, what was being done and what to do about it. Used by :mod:`jaxnets.store` (every file of a results
directory) and by :meth:`jaxnets.result.Result.save`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["TMP_SUFFIX", "StorageError", "atomic_write", "writing"]

TMP_SUFFIX = ".tmp"  # the suffix of atomic_write's temporaries (their names start with ".")

_HINTS = {getattr(errno, name): hint for name, hint in (  # not every platform has every errno
    ("ENOSPC", "the disk is full: free some space (or use another --out)"),
    ("EDQUOT", "the disk quota is exceeded: free some space (or use another --out)"),
    ("EFBIG", "the file is too large for this file system: use another --out"),
    ("EROFS", "the file system is read-only: use another --out"),
    ("EACCES", "permission denied: fix the permissions of the results directory (or use another --out)"),
    ("EPERM", "operation not permitted: fix the permissions of the results directory (or use another --out)"),
    ("ENOENT", "a folder on its path is missing or was deleted: check --out"),
    ("ENOTDIR", "a part of its path is a file, not a folder: check --out"),
) if hasattr(errno, name)}


class StorageError(OSError):
    """The machine refused a write to the results directory (disk full, read-only file system, no permission).

    Attributes:
      path: The file or folder being written.
      errno: The operating system's error number (``errno.ENOSPC``, ``errno.EROFS``, ``errno.EACCES``, ...).
      strerror: The operating system's text for it.
      doing: What was being done, in a few words (e.g. ``"write"``, ``"create the lock"``).
      hint: What to do about it, in a few words.
    """

    def __init__(self, path: str | Path, code: int | None, strerror: str, doing: str):
        super().__init__(code, strerror, str(path))
        self.path, self.doing = Path(path), doing
        self.hint = _HINTS.get(code, "check the disk and the results directory")

    def __str__(self) -> str:
        return f"cannot {self.doing} {self.path}: {self.strerror}; {self.hint}"


@contextlib.contextmanager
def writing(path: str | Path, doing: str) -> Iterator[None]:
    """Turn an :class:`OSError` raised in the body into a :class:`StorageError` (``path``, ``doing``)."""
    try:
        yield
    except StorageError:
        raise
    except OSError as e:
        raise StorageError(path, e.errno, e.strerror or str(e), doing) from e


def _fsync_dir(folder: Path) -> None:
    """fsync a folder (its entries: a rename into it survives a crash), where the platform allows it."""
    with contextlib.suppress(OSError):  # not every platform / file system lets a directory be opened
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Write a file through ``write(binary file)`` to a temporary name, fsync it, rename it into place.

    Args:
      path: The final file name (its folder is created if missing).
      write: Called once with the temporary file, open for binary writing.

    Returns:
      ``path``, as a :class:`~pathlib.Path`.

    Raises:
      StorageError: The machine refused the write (disk full, read-only, no permission); no temporary is left.
    """
    path = Path(path)
    with writing(path, "write"):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
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
