"""End-to-end tests of the ``jaxnets`` command (jaxnets.cli); the results directory's own tests (jaxnets.store)
are in tests/test_store.py.

The sweeps here are tiny (iris, hidden [8], 20 steps) and run as subprocesses, as a user would run them: one
uninterrupted reference run, and one run killed with SIGKILL right after its first group was saved, then
resumed; the resumed table and histories must equal the reference's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tiny import TINY_TOML

from jaxnets import cli, store

CONTRACT_COLUMNS = ["variant", "hidden", "activation", "seed", "status", "stopped_step", "final_train_loss",
                    "final_val_loss", "best_val_loss", "val_accuracy", "test_loss", "test_accuracy", "group_wall_s"]
HISTORY_KEYS = {"step", "train_loss", "val_loss", "val_accuracy", "grad_norm", "act_std", "dead_fraction",
                "saturated_fraction"}


def _jaxnets(*args: str, **kwargs) -> list[str]:
    return [sys.executable, "-m", "jaxnets", *args]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(_jaxnets(*args), capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def reference(tiny_config, tmp_path_factory) -> Path:
    """An uninterrupted run of the tiny config."""
    out = tmp_path_factory.mktemp("runs") / "reference"
    proc = _run("sweep", str(tiny_config), "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "top 8 of 8 variants by final_val_loss" in proc.stdout and "results.csv" in proc.stdout
    return out


# ------------------------------------------------------------------------------------------ end to end


def test_sweep_writes_the_contract_files(reference, tiny_config):
    assert (reference / "config.toml").read_text() == tiny_config.read_text()
    table = pd.read_csv(reference / "results.csv")
    assert list(table.columns[: len(CONTRACT_COLUMNS)]) == CONTRACT_COLUMNS
    assert table["variant"].tolist() == list(range(8))
    assert table["hidden"].tolist() == ["[8]"] * 4 + ["[4]"] * 4
    assert table["status"].isin(["ok", "diverged", "early_stopped"]).all()
    with np.load(reference / "history.npz") as z:
        history = {k: z[k] for k in z.files}
    assert HISTORY_KEYS <= set(history)
    assert history["step"].tolist() == [0, 10, 20]
    assert history["val_loss"].shape == (8, 3) and history["grad_norm"].shape == (8, 3, 2)
    assert history["dead_fraction"].shape == (8, 3, 1)
    np.testing.assert_allclose(history["val_loss"][:, -1], table["final_val_loss"], rtol=0, atol=0)
    assert sorted(p.name for p in (reference / "units").iterdir()) == ["group-000.npz", "group-001.npz"]
    for name in ("loss_curves.png", "grad_norm.png", "activation_health.png"):
        png = reference / "plots" / name
        assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 5000, name
    assert not list(reference.rglob(".*.tmp")), "temporary files left behind"


def test_the_same_config_gives_the_same_numbers_on_a_busy_machine(reference, tiny_config, tmp_path):
    """Nothing the engine computes depends on the clock: the same config, run while another process keeps
    every core busy and with a fresh compilation-cache folder, gives the reference's table (all but the wall
    times) and histories bit for bit."""
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
    try:
        env = {**os.environ, "JAXNETS_COMPILE_CACHE": str(tmp_path / "fresh-cache")}
        proc = subprocess.run(_jaxnets("sweep", str(tiny_config), "--out", str(tmp_path / "busy"), "--quiet"),
                              capture_output=True, text=True, timeout=300, env=env)
    finally:
        for p in busy:
            p.kill()
            p.wait()
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "fresh-cache").is_dir()
    want, got = (pd.read_csv(d / "results.csv").drop(columns="group_wall_s") for d in (reference, tmp_path / "busy"))
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    with np.load(reference / "history.npz") as a, np.load(tmp_path / "busy" / "history.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_a_config_that_is_not_utf8_is_a_one_line_error(tmp_path, reference):
    """A binary blob or a Latin-1 config file, and a damaged DIR/config.toml: one line, exit 2, no traceback;
    --force replaces the damaged directory's results."""
    for name, blob in (("latin1.toml", TINY_TOML.replace("iris", "ïris").encode("latin-1")),
                       ("blob.toml", bytes(range(256)))):
        path = tmp_path / name
        path.write_bytes(blob)
        proc = _run("sweep", str(path), "--out", str(tmp_path / "out"), "--quiet")
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "is not UTF-8 text" in proc.stderr and name in proc.stderr
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "config.toml").write_bytes(b"[data]\nname = \"\xff\"\n")
    proc = _run("show", str(damaged))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "not UTF-8 text" in proc.stderr, proc.stderr


def test_kill_mid_sweep_then_resume_gives_the_same_table(reference, tiny_config, tmp_path):
    out = tmp_path / "killed"
    first = out / "units" / "group-000.npz"
    proc = subprocess.Popen(_jaxnets("sweep", str(tiny_config), "--out", str(out), "--quiet"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not first.exists():
            assert proc.poll() is None, "the sweep ended before its first group was saved"
            assert time.monotonic() < deadline, "no group saved in time"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)  # the second group needs a compile: it cannot have finished
    finally:
        proc.kill()
        proc.wait()
    assert not (out / "results.csv").exists() and not (out / "units" / "group-001.npz").exists()
    saved_at = first.stat().st_mtime_ns

    resumed = _run("sweep", str(tiny_config), "--out", str(out))
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed" in resumed.stderr
    assert first.stat().st_mtime_ns == saved_at, "a finished group was trained again"
    a = pd.read_csv(reference / "results.csv").drop(columns="group_wall_s")
    b = pd.read_csv(out / "results.csv").drop(columns="group_wall_s")
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    with np.load(reference / "history.npz") as za, np.load(out / "history.npz") as zb:
        assert set(za.files) == set(zb.files)
        for k in za.files:
            np.testing.assert_array_equal(za[k], zb[k], err_msg=k)


def test_sigterm_mid_sweep_is_one_line_no_lock_and_resumes_to_the_same_table(reference, tiny_config, tmp_path):
    """SIGTERM (what schedulers send before killing a job) once the first group is saved: exit 143, one line
    saying what is kept, no traceback, no lock; the same command then resumes to the uninterrupted table."""
    out = tmp_path / "terminated"
    first = out / "units" / "group-000.npz"
    proc = subprocess.Popen(_jaxnets("sweep", str(tiny_config), "--out", str(out), "--quiet"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not first.exists():
            assert proc.poll() is None, "the sweep ended before its first group was saved"
            assert time.monotonic() < deadline, "no group saved in time"
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM == 143, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("jaxnets: stopped by SIGTERM"), err
    assert "run the same command again to resume" in lines[0]
    assert not (out / ".lock").exists() and not list(out.rglob(".*.tmp"))

    resumed = _run("sweep", str(tiny_config), "--out", str(out), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    a = pd.read_csv(reference / "results.csv").drop(columns="group_wall_s")
    b = pd.read_csv(out / "results.csv").drop(columns="group_wall_s")
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    with np.load(reference / "history.npz") as za, np.load(out / "history.npz") as zb:
        assert set(za.files) == set(zb.files)
        for k in za.files:
            np.testing.assert_array_equal(za[k], zb[k], err_msg=k)


def test_show_prints_the_ranked_table(reference, capsys):
    assert cli.main(["show", str(reference), "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "top 3 of 8 variants by final_val_loss (min)" in out and "status:" in out
    table = pd.read_csv(reference / "results.csv")
    best = table.sort_values(["final_val_loss", "variant"]).iloc[0]
    first_row = next(line for line in out.splitlines() if line.strip().startswith("1 "))
    assert first_row.split()[1] == str(best["variant"])
    assert cli.main(["show", str(reference), "--metric", "val_accuracy", "--top", "0"]) == 0
    assert "top 8 of 8 variants by val_accuracy (max)" in capsys.readouterr().out
    assert cli.main(["show", str(reference), "--metric", "speed"]) == 2
    assert "valid metrics" in capsys.readouterr().err


def test_a_different_config_is_refused(reference, tiny_config, tmp_path, capsys):
    other = tmp_path / "other.toml"
    other.write_text(TINY_TOML.replace("steps = 20", "steps = 30"))
    before = (reference / "results.csv").read_bytes()
    assert cli.main(["sweep", str(other), "--out", str(reference), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "different config" in err and "train.steps" in err and "--force" in err
    assert (reference / "results.csv").read_bytes() == before
    # Comments and spacing do not make a config different: only the parsed TOML counts.
    assert store.open_run(reference, "# comment\n" + TINY_TOML) .keys() == {"group-000", "group-001"}


def test_bad_config_exits_2_before_any_compute(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY_TOML.replace('activation = ["tanh", "relu"]', 'activation = ["tanh", "rleu"]'))
    assert cli.main(["sweep", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "[sweep.axes] activation[1]" in err and "'rleu'" in err and "valid activations" in err
    assert not (tmp_path / "out").exists()
    assert cli.main(["sweep", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "out")]) == 2


def test_dry_run_plans_without_training(tiny_config, tmp_path, capsys):
    assert cli.main(["sweep", str(tiny_config), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "grid search on iris: 8 variants, 2 static group(s)" in err
    assert not (tmp_path / "out").exists()


def test_help_lists_the_commands():
    proc = _run("--help")
    assert proc.returncode == 0 and all(c in proc.stdout for c in ("sweep", "demo", "show"))


def test_demo_prints_its_bundled_config(capsys):
    assert cli.main(["demo", "--print-config"]) == 0
    assert capsys.readouterr().out == cli.demo_config().read_text()



def test_progress_bar_counts_a_groups_evaluations_once_over_its_blocks(tmp_path):
    """The engine reports an evaluation once per block of variants: a group of 4 variants in blocks of 2 with
    2 evaluations sends 4 events, and the bar (total: the group's 2 evaluations) advances by half of one per
    block, ending at its total, not at 4."""
    from types import SimpleNamespace

    from jaxnets import events

    prog = cli.Progress(tmp_path, "final_val_loss", "min", quiet=False)
    prog(events.SweepStarted(n_variants=4, n_units=1, evals=2, exact=True))
    prog(events.UnitStarted(unit="group-000", index=0, n_units=1, n_variants=4, evals=2, resumed=False, stale=False))
    seen = []  # no Compiling event: a group whose program is cached already sends none
    for start in (0, 2):  # block by block, each through every evaluation
        for e in (1, 2):
            prog(events.Evaluated(group=0, block_start=start, eval=e, n_evals=3, step=10 * e,
                                  val_loss=np.array([1.0, 2.0]), n_variants=4))
            seen.append(prog.bar.n)
    assert seen == [0, 1, 1, 2] and prog.bar.total == 2
    result = SimpleNamespace(columns={"final_val_loss": np.array([1.0, 2.0, 3.0, 4.0])}, key="group-000")
    prog(events.UnitDone(unit="group-000", result=result, resumed=True))
    assert prog.bar.n == 2 and prog.best == 1.0
    prog.close()
