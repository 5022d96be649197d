"""Your own data files: the ``.csv`` and ``.npz`` readers behind :func:`jaxnets.data.load_file`, and
:class:`DataError`, the one error bad user data raises (one line naming the file, column / array and row).

The readers return raw arrays (``{"x": ..., "y": ...}`` and, for an ``.npz``, the splits it holds);
:func:`jaxnets.data.load_file` checks, splits and standardizes them as :func:`jaxnets.data.from_arrays` does.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FILE_SUFFIXES", "NPZ_ARRAYS", "FILE_HELP", "DataError", "show", "read_npz", "read_csv"]

FILE_SUFFIXES: tuple[str, ...] = (".csv", ".npz")
"""File types :func:`load_file` reads."""

NPZ_ARRAYS: tuple[str, ...] = ("x", "y", "x_val", "y_val", "x_test", "y_test")
FILE_HELP = (".csv (a header row, numeric feature columns, target= names the label column) or "
              ".npz (arrays x, y and optionally x_val, y_val, x_test, y_test)")


class DataError(ValueError):
    """Bad user data (:func:`from_arrays`, :func:`load_file`): one line naming what is wrong and where.

    The message starts with the file (``source: ``) when there is one. The fields say the same for programs.

    Attributes:
      reason: the message without the ``source: `` prefix.
      source: the file at fault (its path as a string), or ``None`` for arrays passed in.
      column: the CSV column or the array (``"x"``, ``"y_val"``, ...) at fault, or ``None``.
      row: where the first bad value is: for a CSV the 1-based data row (row 1 is the line after the
        header), for an array the index along its first axis; ``None`` when no single row is at fault.
    """

    def __init__(self, reason: str, *, source: str | os.PathLike | None = None, column: str | None = None,
                 row: int | None = None):
        self.reason = reason
        self.source = None if source is None else str(source)
        self.column = column
        self.row = row
        super().__init__(reason if source is None else f"{source}: {reason}")


def show(values: Sequence[Any], limit: int = 5) -> str:
    """``'0.0, 1.0, 2.0'`` (at most ``limit`` values, then ``', ...'``)."""
    shown = [repr(v.item() if isinstance(v, np.generic) else v) for v in values[:limit]]
    return ", ".join(shown) + (", ..." if len(values) > limit else "")


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` (``allow_pickle=False``): ``x``, ``y`` and optionally the given splits."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - whatever numpy raises on a damaged file, it is one line
        raise DataError(f"not a readable .npz archive ({e}); save one with np.savez(path, x=..., y=...)",
                        source=path) from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise DataError("holds a single array (.npy), not an .npz archive; save one with "
                        "np.savez(path, x=..., y=...)", source=path)
    with loaded:
        keys = list(loaded.files)
        unknown = [k for k in keys if k not in NPZ_ARRAYS]
        if unknown:
            raise DataError(f"unknown array(s) {show(unknown, 10)}; an .npz for jaxnets holds x, y and optionally "
                            "x_val, y_val, x_test, y_test", source=path, column=unknown[0])
        missing = [k for k in ("x", "y") if k not in keys]
        if missing:
            raise DataError(f"no array {' or '.join(map(repr, missing))}: an .npz for jaxnets holds x, y and "
                            f"optionally x_val, y_val, x_test, y_test; this one holds {show(keys, 10) or 'nothing'}",
                            source=path, column=missing[0])
        out = {}
        for k in keys:
            try:
                out[k] = loaded[k]
            except Exception as e:  # noqa: BLE001 - a damaged entry (header, flags, CRC) or pickled data
                raise DataError(f"array {k!r} cannot be read ({type(e).__name__}: {e}); save numeric arrays",
                                source=path, column=k) from None
    return out


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_csv_rows(path: Path, target: str | None) -> tuple[list[str], list[list[str]], list[int]]:
    """Header, data rows (as text) and each row's line number; checks ``target`` against the header."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            if not header:
                raise DataError("the file is empty; a CSV needs a header row naming the columns", source=path)
            columns = show(header, 20)
            if all(_looks_numeric(h) for h in header):
                columns += " (the first line looks like data: a CSV needs a header row naming the columns)"
            if target is None:
                raise DataError(f"a CSV needs target= naming the label column; columns: {columns}", source=path)
            if target not in header:
                raise DataError(f"no column {target!r} (the target); columns: {columns}", source=path,
                                column=target)
            seen = set()
            for h in header:
                if h in seen:
                    raise DataError(f"column {h!r} appears twice in the header", source=path, column=h)
                seen.add(h)
            rows, lines = [], []
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue  # blank line
                if len(row) != len(header):
                    raise DataError(f"row {len(rows) + 1} (line {reader.line_num}) has {len(row)} field(s); the "
                                    f"header has {len(header)}", source=path, row=len(rows) + 1)
                rows.append(row)
                lines.append(reader.line_num)
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text ({e.reason} at byte {e.start})", source=path) from None
    except csv.Error as e:
        raise DataError(f"not a valid CSV file: {e}", source=path) from None
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror}", source=path) from None
    if not rows:
        raise DataError("no data rows after the header", source=path)
    return header, rows, lines


def _csv_column(path: Path, name: str, values: list[str], lines: list[int]) -> np.ndarray:
    """A numeric column, float64 ``[N]``; empty cells become NaN; the first non-number raises."""
    try:
        return np.array(values, dtype=np.float64)
    except ValueError:
        pass
    out = np.empty(len(values))
    for i, v in enumerate(values):
        if v == "":
            out[i] = np.nan
            continue
        try:
            out[i] = float(v)
        except ValueError:
            raise DataError(f"column {name!r} is not numeric: row {i + 1} (line {lines[i]}) holds {v!r}",
                            source=path, column=name, row=i + 1) from None
    return out


def _csv_target(path: Path, name: str, values: list[str], lines: list[int], task: Any) -> np.ndarray:
    """The label column: int64 if every cell is an integer, float64 if numeric, else class names -> ids."""
    try:
        return np.array(values, dtype=np.int64)
    except (ValueError, OverflowError):
        pass
    numeric = [_looks_numeric(v) for v in values]
    if any(numeric) or task == "regression":
        for i, v in enumerate(values):
            if v != "" and not numeric[i]:
                what = "mixes numbers and text" if any(numeric) else "is not numeric (task=\"regression\")"
                raise DataError(f"column {name!r} {what}: row {i + 1} (line {lines[i]}) holds {v!r}",
                                source=path, column=name, row=i + 1)
        return _csv_column(path, name, values, lines)
    empty = [i for i, v in enumerate(values) if v == ""]
    if empty:
        raise DataError(f"column {name!r} has {len(empty)} empty label(s) (first in row {empty[0] + 1}, line "
                        f"{lines[empty[0]]})", source=path, column=name, row=empty[0] + 1)
    _, ids = np.unique(np.array(values, dtype=str), return_inverse=True)  # class names -> ids, sorted names
    return ids.astype(np.int64)


def read_csv(path: Path, target: str | None, task: Any) -> dict[str, np.ndarray]:
    header, rows, lines = _read_csv_rows(path, target)
    cells = [[cell.strip() for cell in col] for col in zip(*rows, strict=True)]
    features = [i for i, h in enumerate(header) if h != target]
    if not features:
        raise DataError(f"no feature columns: the file holds only the target {target!r}", source=path)
    x = np.stack([_csv_column(path, header[i], cells[i], lines) for i in features], axis=1)
    y = _csv_target(path, target, cells[header.index(target)], lines, task)
    bad = [(header[i], np.flatnonzero(~np.isfinite(x[:, j]))) for j, i in enumerate(features)]
    if y.dtype.kind == "f":
        bad.append((target, np.flatnonzero(~np.isfinite(y))))
    bad = [(col, idx) for col, idx in bad if len(idx)]
    if bad:
        total = sum(len(idx) for _, idx in bad)
        where = ", ".join(f"{col!r} {len(idx)} (first in row {idx[0] + 1}, line {lines[idx[0]]})"
                          for col, idx in bad[:5])
        more = f", and {len(bad) - 5} more column(s)" if len(bad) > 5 else ""
        raise DataError(f"{total} missing / NaN / Inf value(s) in column(s) {where}{more}; drop or fill them",
                        source=path, column=bad[0][0], row=int(bad[0][1][0]) + 1)
    return {"x": x, "y": y}
