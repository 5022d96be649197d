"""Tests of the results directory (jaxnets.store): atomic writes, opening / refusing / forcing a directory,
damaged unit files (detected, reported, retrained) and the directory lock.

The end-to-end cases run the ``jaxnets`` command in this process (``cli.main``) on a tiny config (iris,
hidden [8], 20 steps, two static groups); the unit-level cases use a small synthetic unit.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tiny import TINY_TOML

from jaxnets import cli, store
from jaxnets.sweep import COLUMNS, HISTORY_METRICS, UnitResult


def _copy(reference: Path, dest: Path) -> Path:
    shutil.copytree(reference, dest)
    return dest


def _sweep(config: Path, out: Path, *extra: str) -> int:
    return cli.main(["sweep", str(config), "--out", str(out), "--quiet", *extra])


def _assert_same_results(a: Path, b: Path) -> None:
    ta = pd.read_csv(a / "results.csv").drop(columns="group_wall_s")
    tb = pd.read_csv(b / "results.csv").drop(columns="group_wall_s")
    pd.testing.assert_frame_equal(ta, tb, check_exact=True)
    with np.load(a / "history.npz") as za, np.load(b / "history.npz") as zb:
        assert set(za.files) == set(zb.files)
        for k in za.files:
            np.testing.assert_array_equal(za[k], zb[k], err_msg=k)


def _warning_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("jaxnets: warning:")]


def _unit(key: str = "group-000", n: int = 2, evals: int = 3) -> UnitResult:
    """A small synthetic unit with every column and history."""
    rng = np.random.default_rng(0)
    columns = {k: rng.normal(size=n) for k in COLUMNS}
    columns["status"] = np.array(["ok", "diverged"][:n] + ["ok"] * (n - 2))
    columns["stopped_step"] = np.full(n, 20, dtype=np.int64)
    return UnitResult(
        key=key, fingerprint="f" * 16, variant=np.arange(n, dtype=np.int64),
        points=[{"seed": i, "lr": 0.1 * (i + 1)} for i in range(n)], columns=columns,
        history={k: rng.normal(size=(n, evals)) for k in HISTORY_METRICS},
        eval_step=np.tile(np.arange(evals, dtype=np.float64) * 10, (n, 1)), group=np.zeros(n, dtype=np.int64),
    )


def _assert_units_equal(a: UnitResult, b: UnitResult) -> None:
    assert (a.key, a.fingerprint, a.points) == (b.key, b.fingerprint, b.points)
    for x, y in [(a.variant, b.variant), (a.group, b.group), (a.eval_step, b.eval_step)]:
        np.testing.assert_array_equal(x, y)
    for k in COLUMNS:
        np.testing.assert_array_equal(a.columns[k], b.columns[k], err_msg=k)
    for k in HISTORY_METRICS:
        np.testing.assert_array_equal(a.history[k], b.history[k], err_msg=k)


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {i.filename: z.read(i) for i in z.infolist()}


def _write_members(path: Path, members: dict[str, bytes]) -> None:
    """Rewrite an archive (fresh, valid CRC-32s): only a content checksum can tell a change."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)


def _meta(path: Path) -> dict:
    with np.load(path) as z:
        return json.loads(str(z["meta"]))


def _resave(path: Path, meta: dict | None = None, /, **changes: np.ndarray | None) -> None:
    """Rewrite a unit with some arrays changed (or dropped: ``None``) and ``meta`` (default: the old one)."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    if meta is not None:
        arrays["meta"] = np.array(json.dumps(meta))
    for k, v in changes.items():
        if v is None:
            del arrays[k]
        else:
            arrays[k] = v
    path.unlink()
    np.savez(path, **arrays)


def _old_format(path: Path) -> None:
    """Rewrite a unit as units were saved before checksums: the same arrays, meta without ``sha256``."""
    meta = _meta(path)
    del meta["sha256"]
    _resave(path, meta)


def _flip_in_place(path: Path, member: str) -> None:
    """Flip one bit of the last data byte of ``member`` inside the file (the zip still opens)."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(member)
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26: info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    data[start + info.compress_size - 1] ^= 0x01
    path.write_bytes(bytes(data))


def _write_lock(out: Path, pid: int | None, host: str | None = None, text: str | None = None) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    lock = out / store.LOCK
    lock.write_text(text if text is not None else json.dumps({"pid": pid, "host": host or socket.gethostname()}))
    return lock


@pytest.fixture
def live_pid():
    """The pid of a live process (a sleeping Python) for the duration of a test."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ------------------------------------------------------------------------------------------ opening and writing


def test_open_run_refuses_a_foreign_folder_and_force_deletes_only_its_own_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(store.DirectoryError, match="not a jaxnets results directory"):
        store.open_run(tmp_path, TINY_TOML)
    assert store.open_run(tmp_path, TINY_TOML, force=True) == {}
    (tmp_path / "results.csv").write_text("old")
    with pytest.raises(store.DirectoryError, match="differs in: train.steps"):
        store.open_run(tmp_path, TINY_TOML.replace("steps = 20", "steps = 5"))
    store.open_run(tmp_path, TINY_TOML.replace("steps = 20", "steps = 5"), force=True)
    assert (tmp_path / "notes.txt").read_text() == "mine" and not (tmp_path / "results.csv").exists()
    assert "steps = 5" in (tmp_path / "config.toml").read_text()


def test_atomic_write_never_leaves_a_partial_file(tmp_path):
    target = tmp_path / "a.txt"
    store.write_text(target, "old")

    def broken(f):
        f.write(b"half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        store.atomic_write(target, broken)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


# ------------------------------------------------------------------------------------------ units


def test_load_units_skips_temporaries_and_unreadable_files(tmp_path):
    units = tmp_path / "units"
    units.mkdir()
    (units / ".group-000.npz.abc.tmp").write_bytes(b"partial")
    (units / "group-001.npz").write_bytes(b"not an npz")
    with pytest.warns(store.CorruptUnitWarning) as caught:
        assert store.load_units(tmp_path) == {}
    assert [w.message.path for w in caught] == [units / "group-001.npz"]  # the temporary is not even read
    assert "not an .npz archive" in caught[0].message.reason


def test_a_saved_unit_carries_a_checksum_and_loads_back_equal(tmp_path):
    res = _unit()
    path = store.save_unit(tmp_path, res)
    assert path == tmp_path / "units" / "group-000.npz"
    assert len(_meta(path)["sha256"]) == 64
    _assert_units_equal(store.load_unit(path), res)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert store.load_units(tmp_path).keys() == {"group-000"}


def test_an_old_unit_without_checksum_still_loads(tmp_path):
    res = _unit()
    path = store.save_unit(tmp_path, res)
    _old_format(path)
    assert "sha256" not in _meta(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # unverified is not damaged: no warning
        units = store.load_units(tmp_path)
    _assert_units_equal(units["group-000"], res)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_with_valid_crc(path: Path) -> None:
    members = _members(path)
    data = members["hist_val_loss.npy"]
    members["hist_val_loss.npy"] = data[:-1] + bytes([data[-1] ^ 0x01])
    _write_members(path, members)


def _bad_json(path: Path) -> None:
    meta = json.dumps(_meta(path))
    _resave(path, None, meta=np.array(meta[: len(meta) // 2]))


DAMAGES = {
    "truncated to half": (_truncate, "truncated zip archive"),
    "empty": (lambda p: p.write_bytes(b""), "empty file"),
    "not a zip": (lambda p: p.write_bytes(b"\x93NUMPY garbage"), "not an .npz archive"),
    "bit flip in place": (lambda p: _flip_in_place(p, "hist_val_loss.npy"), "bad CRC-32 for file 'hist_val_loss.npy'"),
    "bit flip, valid zip": (_flip_with_valid_crc, "checksum mismatch"),
    "changed array, old meta": (lambda p: _resave(p, col_final_val_loss=np.zeros(2)), "checksum mismatch"),
    "changed meta, old arrays": (lambda p: _resave(p, {**_meta(p), "fingerprint": "x" * 16}), "checksum mismatch"),
    "missing array": (lambda p: _resave(p, col_status=None), "missing array(s): col_status"),
    "metadata not JSON": (_bad_json, "not valid JSON"),
    "wrong shape (no checksum)": (lambda p: (_old_format(p), _resave(p, hist_val_loss=np.zeros((3, 3)))),
                                  "'hist_val_loss' has shape (3, 3), expected (2, 3)"),
    "fewer variants than points (no checksum)": (lambda p: (_old_format(p), _resave(p, variant=np.arange(1))),
                                                 "'variant' has shape (1,), expected (2,)"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_unit_is_rejected_with_its_reason(tmp_path, damage):
    spoil, reason = DAMAGES[damage]
    path = store.save_unit(tmp_path, _unit())
    spoil(path)
    with pytest.raises(store.CorruptUnitError) as info:
        store.load_unit(path)
    assert info.value.path == path and reason in info.value.reason, info.value.reason
    assert "\n" not in str(info.value)
    store.save_unit(tmp_path, _unit("group-001"))
    with pytest.warns(store.CorruptUnitWarning) as caught:
        units = store.load_units(tmp_path)
    assert units.keys() == {"group-001"}
    assert [(w.message.path, w.message.reason) for w in caught] == [(path, info.value.reason)]


def test_a_unit_under_another_name_is_rejected(tmp_path):
    path = store.save_unit(tmp_path, _unit())
    moved = path.rename(path.with_name("group-007.npz"))
    with pytest.raises(store.CorruptUnitError, match="holds unit 'group-000', not 'group-007'"):
        store.load_unit(moved)


def test_a_truncated_unit_is_reported_and_retrained_and_the_table_is_the_reference(reference, tiny_config,
                                                                                     tmp_path, capsys):
    out = _copy(reference, tmp_path / "damaged")
    (out / "results.csv").unlink()
    (out / "history.npz").unlink()
    _truncate(out / "units" / "group-000.npz")
    kept = (out / "units" / "group-001.npz").stat().st_mtime_ns

    assert _sweep(tiny_config, out) == 0
    err = capsys.readouterr().err
    assert _warning_lines(err) == [
        "jaxnets: warning: units/group-000.npz is damaged (truncated zip archive); retraining it"], err
    assert "Traceback" not in err
    assert (out / "units" / "group-001.npz").stat().st_mtime_ns == kept, "an intact unit was trained again"
    assert "sha256" in _meta(out / "units" / "group-000.npz")  # retrained and saved afresh
    store.load_unit(out / "units" / "group-000.npz")
    _assert_same_results(reference, out)
    assert not (out / store.LOCK).exists()


def test_a_changed_but_readable_unit_is_caught_by_its_checksum_and_retrained(reference, tiny_config,
                                                                               tmp_path, capsys):
    out = _copy(reference, tmp_path / "tampered")
    unit = out / "units" / "group-001.npz"
    with np.load(unit) as z:
        loss = z["col_final_val_loss"]
    _resave(unit, col_final_val_loss=loss + 0.5)  # a plausible table, the old meta (and its checksum)
    kept = (out / "units" / "group-000.npz").stat().st_mtime_ns

    assert _sweep(tiny_config, out) == 0
    lines = _warning_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "units/group-001.npz is damaged (checksum mismatch" in lines[0], lines
    assert lines[0].endswith("; retraining it")
    assert (out / "units" / "group-000.npz").stat().st_mtime_ns == kept
    _assert_same_results(reference, out)


# ------------------------------------------------------------------------------------------ the lock


def test_the_lock_is_held_inside_and_released_after_the_block_also_on_an_exception(tmp_path):
    out = tmp_path / "new" / "dir"
    with store.lock(out) as path:
        assert path == out / store.LOCK
        info = json.loads(path.read_text())
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
        with pytest.raises(store.LockedError) as second:  # not re-entrant: a second holder is refused
            with store.lock(out):
                pass
        assert second.value.pid == os.getpid() and second.value.path == path
        assert f"pid {os.getpid()}" in str(second.value) and "another --out" in str(second.value)
    assert not path.exists()
    with pytest.raises(KeyboardInterrupt):
        with store.lock(out):
            raise KeyboardInterrupt
    assert not path.exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(store.DirectoryError, match="is a file"):
        with store.lock(tmp_path / "file"):
            pass


def test_release_never_deletes_a_lock_that_is_not_ours(tmp_path, live_pid):
    with store.lock(tmp_path) as path:
        _write_lock(tmp_path, live_pid)  # someone else holds it now (e.g. took it over)
    assert json.loads(path.read_text())["pid"] == live_pid


def test_a_live_lock_is_never_broken(tmp_path, live_pid):
    lock = _write_lock(tmp_path, live_pid)
    with pytest.raises(store.LockedError) as info:
        with store.lock(tmp_path):
            pass
    assert info.value.pid == live_pid and info.value.path == lock
    assert isinstance(info.value, store.DirectoryError)
    # open_run(force=True) deletes this module's files only, never the lock
    (tmp_path / "notes.txt").write_text("mine")
    store.open_run(tmp_path, TINY_TOML, force=True)
    assert json.loads(lock.read_text())["pid"] == live_pid


def test_a_lock_on_another_host_is_not_broken(tmp_path):
    lock = _write_lock(tmp_path, 12345, host="elsewhere.invalid")
    with pytest.raises(store.LockedError, match="on host elsewhere.invalid; if it is gone, delete"):
        with store.lock(tmp_path):
            pass
    assert lock.exists()


def test_a_stale_lock_is_taken_over_with_a_warning(tmp_path, dead_pid):
    _write_lock(tmp_path, dead_pid)
    with pytest.warns(store.StaleLockWarning, match=f"pid {dead_pid} is no longer running") as caught:
        with store.lock(tmp_path) as path:
            assert json.loads(path.read_text())["pid"] == os.getpid()
    assert caught[0].message.pid == dead_pid and not path.exists()


def test_an_unreadable_lock_is_stale_once_it_is_old(tmp_path):
    lock = _write_lock(tmp_path, None, text="")
    with pytest.raises(store.LockedError) as info:  # a lock being written right now
        with store.lock(tmp_path):
            pass
    assert info.value.pid is None
    old = time.time() - 60
    os.utime(lock, (old, old))
    with pytest.warns(store.StaleLockWarning, match="unreadable"):
        with store.lock(tmp_path):
            pass
    assert not lock.exists()


def test_the_lock_file_does_not_make_a_fresh_folder_foreign(tmp_path):
    with store.lock(tmp_path / "fresh"):
        assert store.open_run(tmp_path / "fresh", TINY_TOML) == {}
    assert sorted(p.name for p in (tmp_path / "fresh").iterdir()) == ["config.toml"]


def test_a_second_sweep_into_a_locked_directory_exits_2_and_writes_nothing(tiny_config, reference, tmp_path,
                                                                            live_pid, capsys):
    fresh = tmp_path / "fresh"
    lock = _write_lock(fresh, live_pid)
    before = lock.read_text()
    for extra in ([], ["--force"]):
        assert _sweep(tiny_config, fresh, *extra) == 2
        err = capsys.readouterr().err
        assert err.startswith("jaxnets: error: ") and len(err.strip().splitlines()) == 1, err
        assert f"pid {live_pid}" in err and "another --out" in err
        assert [p.name for p in fresh.iterdir()] == [store.LOCK] and lock.read_text() == before

    done = _copy(reference, tmp_path / "done")
    _write_lock(done, live_pid)
    results = (done / "results.csv").read_bytes()
    assert _sweep(tiny_config, done, "--force") == 2
    assert f"pid {live_pid}" in capsys.readouterr().err
    assert (done / "results.csv").read_bytes() == results and (done / store.LOCK).exists()


def test_a_sweep_takes_over_a_stale_lock_and_releases_it(tiny_config, reference, tmp_path, dead_pid, capsys):
    out = _copy(reference, tmp_path / "stale")
    _write_lock(out, dead_pid)
    assert _sweep(tiny_config, out) == 0  # every unit is resumed: nothing to train
    assert _warning_lines(capsys.readouterr().err) == [
        f"jaxnets: warning: took over the stale lock {out / store.LOCK} (pid {dead_pid} is no longer running)"]
    assert not (out / store.LOCK).exists()
    _assert_same_results(reference, out)


def test_a_sweep_releases_the_lock_after_an_error_or_an_interrupt(tiny_config, tmp_path, monkeypatch, capsys):
    from jaxnets import sweep

    def fail(*_args, **_kwargs):
        raise RuntimeError("boom")

    def interrupt(*_args, **_kwargs):
        raise KeyboardInterrupt

    out = tmp_path / "out"
    monkeypatch.setattr(sweep, "run", fail)
    with pytest.raises(RuntimeError, match="boom"):
        _sweep(tiny_config, out)
    assert (out / "config.toml").exists() and not (out / store.LOCK).exists()
    monkeypatch.setattr(sweep, "run", interrupt)
    assert _sweep(tiny_config, out) == 130
    assert "interrupted: 0 finished unit(s)" in capsys.readouterr().err
    assert not (out / store.LOCK).exists()
