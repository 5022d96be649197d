"""Many processes on JAX's distributed runtime (jaxnets.launch, the engine and the CLI under several processes).

Every multi-process run here is a set of subprocesses on 127.0.0.1, each with a bounded lifetime (``timeout=``)
and killed in a ``finally``:

* ``jaxnets launch -n 2`` with 2 emulated CPU devices per process gives the same ``results.csv`` and
  ``history.npz``, bit for bit, as one process with 4 devices (mixed activations and inits, diverging and
  early-stopped variants);
* the Python API: two processes calling ``jax.distributed.initialize`` then ``engine.train`` both hold the
  whole, identical ``Result`` (and PRNG-key leaves survive the gathering), in blocks or not;
* killing one of two processes mid-sweep (process 1, or process 0: the coordinator) makes the launch exit
  non-zero, with one line from the survivor and no native stack trace, well within 60 s; the same launch again
  resumes and ends with the uninterrupted table; an ``asha`` unit stopped after a rung
  resumes from its checkpoint under two processes;
* a coordinator nobody answers gives a one-line error, not a hang; bad options are refused before JAX starts.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jaxnets import launch

# Two static groups (hidden sizes), the unit of resume; learning rate 3 early-stops, 1e12 diverges (vmapped
# keys: the same static group as the others).
CONFIG = """\
[data]
name = "iris"

[model]
hidden = [8]

[train]
optimizer = "sgd"
steps = 20
batch_size = 16
eval_every = 4
early_stopping_patience = 1

[sweep]
method = "grid"
mix_architectures = false  # two static groups: hidden [8] and [4] train apart

[sweep.axes]
hidden = [[8], [4]]
activation = ["tanh", "relu"]
init = ["glorot_uniform", "he_normal"]
learning_rate = [0.1, 3.0, 1e12]
"""

TIMEOUT_S = 240  # any one subprocess
#: The pieces of gloo's own connection note on stderr ("[Gloo] Rank 1 is connected to 1 peer ranks. Expected
#: number of connected peer ranks is : 1"). Two of its threads can write one at the same time, piece by piece, so
#: the pieces of two notes may interleave across lines: only the pieces themselves are allowed.
_GLOO_PIECES = re.compile(r"\[Gloo\]|Rank|is connected to|peer ranks\.|Expected number of connected peer ranks is :"
                          r"|\d+|\s+")


def _env(devices: int) -> dict[str, str]:
    """The subprocesses' environment: ``devices`` emulated CPU devices per process (other XLA flags kept)."""
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
    env["XLA_FLAGS"] = " ".join([*flags, f"--xla_force_host_platform_device_count={devices}"])
    env.pop("JAX_NUM_CPU_DEVICES", None)
    for var in (launch.ENV_COORDINATOR, launch.ENV_NUM_PROCESSES, launch.ENV_PROCESS_ID):
        env.pop(var, None)
    return env


def _jaxnets(*args: str) -> list[str]:
    return [sys.executable, "-m", "jaxnets", *args]


def _run(argv: list[str], devices: int) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S, env=_env(devices))


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill a process started with ``start_new_session=True`` and everything it started."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _assert_same_results(a: Path, b: Path) -> None:
    ta = pd.read_csv(a / "results.csv").drop(columns="group_wall_s")
    tb = pd.read_csv(b / "results.csv").drop(columns="group_wall_s")
    pd.testing.assert_frame_equal(ta, tb, check_exact=True)
    with np.load(a / "history.npz") as za, np.load(b / "history.npz") as zb:
        assert set(za.files) == set(zb.files)
        for k in za.files:
            np.testing.assert_array_equal(za[k], zb[k], err_msg=k)


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "mixed.toml"
    path.write_text(CONFIG)
    return path


@pytest.fixture(scope="module")
def reference(config, tmp_path_factory) -> Path:
    """One process with 4 CPU devices."""
    out = tmp_path_factory.mktemp("runs") / "one-process"
    proc = _run(_jaxnets("sweep", str(config), "--out", str(out), "--quiet"), devices=4)
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(out / "results.csv")
    assert set(table["status"]) == {"ok", "diverged", "early_stopped"}, table["status"].value_counts()
    assert table["activation"].nunique() == 2 and table["init"].nunique() == 2
    return out


# ------------------------------------------------------------------------------------------ the launcher


def test_launch_two_processes_equals_one_process(reference, config, tmp_path):
    out = tmp_path / "two-processes"
    proc = _run(_jaxnets("launch", "-n", "2", "--", "sweep", str(config), "--out", str(out)), devices=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_same_results(reference, out)
    # process 0 prints the plan, the progress and the table; process 1 trains silently
    assert "[process 0] grid search on iris: 24 variants" in proc.stderr
    assert "[process 0]" in proc.stdout and "top 10 of 24 variants" in proc.stdout
    from_1 = [line[len("[process 1] "):] for line in (proc.stdout + proc.stderr).splitlines()
              if line.startswith("[process 1] ")]
    assert not _GLOO_PIECES.sub("", "".join(from_1)), from_1
    assert sorted(p.name for p in (out / "units").iterdir()) == ["group-000.npz", "group-001.npz"]
    assert not (out / ".lock").exists()


POPULATION = """\
[data]
name = "iris"

[model]
hidden = [8]

[train]
optimizer = "sgd"
steps = 36
batch_size = 16
eval_every = 4

[sweep]
method = "{method}"
trials = 18
{extra}

[sweep.axes]
learning_rate = {{low = 1e-3, high = 1.0, log = true}}
activation = ["tanh", "relu"]
"""


@pytest.mark.parametrize(("method", "extra"), [
    ("asha", "min_steps = 4"), pytest.param("pbt", "interval = 2", marks=pytest.mark.slow)])
def test_population_methods_under_two_processes_equal_one_process(method, extra, tmp_path):
    """ASHA's pruning (survivors re-blocked into reused programs) and PBT's in-program copies, with the
    variants sharded over 2 processes x 2 devices: the one-process (4 devices) table and history, bit for bit."""
    cfg = tmp_path / f"{method}.toml"
    cfg.write_text(POPULATION.format(method=method, extra=extra))
    one, two = tmp_path / "one", tmp_path / "two"
    proc = _run(_jaxnets("sweep", str(cfg), "--out", str(one), "--quiet"), devices=4)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = _run(_jaxnets("launch", "-n", "2", "--", "sweep", str(cfg), "--out", str(two)), devices=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_same_results(one, two)
    status = pd.read_csv(one / "results.csv")["status"]
    assert (status == "pruned").sum() == (16 if method == "asha" else 0)


def test_kill_one_process_then_resume(reference, config, tmp_path):
    out = tmp_path / "killed"
    first = out / "units" / "group-000.npz"
    log = tmp_path / "launch.log"
    with open(log, "w") as f:
        proc = subprocess.Popen(_jaxnets("launch", "-n", "2", "--", "sweep", str(config), "--out", str(out),
                                         "--quiet"),
                                stdout=f, stderr=subprocess.STDOUT, env=_env(2), start_new_session=True)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not first.exists():
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "no unit saved in time"
            time.sleep(0.01)
        pids = re.search(r"pids (\d+) (\d+)", log.read_text())
        assert pids, log.read_text()
        killed_at = time.monotonic()
        os.kill(int(pids.group(2)), signal.SIGKILL)  # process 1; the second group needs a compile
        rc = proc.wait(timeout=60)
        took = time.monotonic() - killed_at
    finally:
        _kill_group(proc)
    text = log.read_text()
    assert rc != 0 and took < 60, (rc, took)
    assert "jaxnets launch: process 1 was killed by SIGKILL" in text
    assert re.search(r"\[process 0\] jaxnets: error: process 0: .*run the same command again to resume", text), text
    assert not (out / "units" / "group-001.npz").exists() and not (out / "results.csv").exists()
    saved_at = first.stat().st_mtime_ns

    again = _run(_jaxnets("launch", "-n", "2", "--", "sweep", str(config), "--out", str(out)), devices=2)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resumed" in again.stderr
    assert first.stat().st_mtime_ns == saved_at, "a finished unit was trained again"
    _assert_same_results(reference, out)


def test_kill_the_coordinator_then_resume(reference, config, tmp_path):
    """Process 0 (the coordinator, the writer) killed mid-sweep: JAX's client in process 1 aborts natively within
    milliseconds (its error-polling RPC fails), with a "Check failure stack trace"; the launcher turns that report
    into one line, so process 1 ends with exactly one ``jaxnets: error:`` line and no native trace, well within
    60 s; the same launch then resumes (after deleting any temporary a killed write left) to the uninterrupted
    table."""
    out = tmp_path / "coordinator-killed"
    first = out / "units" / "group-000.npz"
    log = tmp_path / "launch.log"
    with open(log, "w") as f:
        proc = subprocess.Popen(_jaxnets("launch", "-n", "2", "--", "sweep", str(config), "--out", str(out),
                                         "--quiet"),
                                stdout=f, stderr=subprocess.STDOUT, env=_env(2), start_new_session=True)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not first.exists():
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "no unit saved in time"
            time.sleep(0.01)
        pids = re.search(r"pids (\d+) (\d+)", log.read_text())
        assert pids, log.read_text()
        killed_at = time.monotonic()
        os.kill(int(pids.group(1)), signal.SIGKILL)  # process 0
        rc = proc.wait(timeout=60)
        took = time.monotonic() - killed_at
    finally:
        _kill_group(proc)
    text = log.read_text()
    assert rc != 0 and took < 60, (rc, took)
    assert "jaxnets launch: process 0 was killed by SIGKILL" in text, text
    from_1 = [line for line in text.splitlines() if line.startswith("[process 1] ")
              and _GLOO_PIECES.sub("", line[len("[process 1] "):])]
    assert len(from_1) == 1, text[-3000:]
    assert re.fullmatch(r"\[process 1\] jaxnets: error: process 1: .*run the same command again to resume",
                        from_1[0]), from_1
    assert "Check failure" not in text and "Traceback" not in text and " @ " not in text, text[-3000:]
    assert not (out / "results.csv").exists()

    again = _run(_jaxnets("launch", "-n", "2", "--", "sweep", str(config), "--out", str(out)), devices=2)
    assert again.returncode == 0, again.stderr[-3000:]
    assert not list(out.rglob(".*.tmp"))
    _assert_same_results(reference, out)


FAKE_PROCESS = """\
import os, signal, sys

i = int(sys.argv[sys.argv.index("--process-id") + 1])
if i == 2:  # a process that says its own error line, then is aborted all the same
    sys.stderr.write("jaxnets: error: process 2: said first\\n")
if i in (1, 2):  # what JAX's client writes when it loses the coordinator, then abort()
    sys.stderr.write("E1203 21:17:14.933969   12115 coordination_service_agent.cc:289] Polled an error\\n"
                     "F1203 21:17:14.934022   12115 client.h:80] Terminating process because the JAX distributed "
                     "service detected fatal errors. absl::Status: UNAVAILABLE: Failed to send RPC to coordination "
                     "service. Either the leader task was preempted\\n"
                     "Additional GRPC error information from remote target coordination_service\\n"
                     ":UNKNOWN:Error received from peer  {grpc_message:\\"Socket closed\\", grpc_status:14}\\n"
                     "*** Check failure stack trace: ***\\n"
                     "    @     0x7f02d1740634  absl::log_internal::LogMessage::SendToLog()\\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGABRT)
sys.stderr.write("W1203 21:17:14.000001   12115 some_file.cc:12] an unrelated native warning\\n")
sys.stderr.write("a normal line\\n")
sys.stderr.write("F1203 21:17:14.000002   12115 other.cc:34] Check failed: a real bug\\n")
sys.stderr.write("    @     0x7f02d1740634  somewhere()\\n")
sys.exit(3)
"""


def test_the_launcher_condenses_a_lost_peer_native_abort_and_nothing_else(tmp_path, capfd):
    """A process aborted by JAX's runtime for a lost peer (native "F... JAX distributed service" report and stack
    trace) shows as one ``jaxnets: error:`` line (none more when it said its own already); any other native
    output (a warning, a real check failure) passes through unchanged and in order."""
    fake = tmp_path / "fake_python.py"
    fake.write_text(FAKE_PROCESS)
    script = tmp_path / "python"
    script.write_text(f"#!/bin/sh\nexec {sys.executable} {fake} \"$@\"\n")
    script.chmod(0o755)
    rc = launch.launch(3, ["--", "sweep", "x.toml", "--out", str(tmp_path / "out")], grace_s=5, python=str(script))
    assert rc in (3, 128 + signal.SIGABRT)
    err = capfd.readouterr().err
    from_1 = [line for line in err.splitlines() if line.startswith("[process 1] ")]
    assert from_1 == ["[process 1] jaxnets: error: process 1: the JAX distributed runtime ended this process: it "
                      "lost another process (UNAVAILABLE: Failed to send RPC to coordination service); see the other "
                      "processes' output. Finished units are saved: run the same command again to resume"], err
    assert [line for line in err.splitlines() if line.startswith("[process 2] ")] == [
        "[process 2] jaxnets: error: process 2: said first"], err
    from_0 = [line for line in err.splitlines() if line.startswith("[process 0] ")]
    assert [line[len("[process 0] "):] for line in from_0] == [
        "W1203 21:17:14.000001   12115 some_file.cc:12] an unrelated native warning", "a normal line",
        "F1203 21:17:14.000002   12115 other.cc:34] Check failed: a real bug", "    @     0x7f02d1740634  somewhere()"]


PATIENT_PROCESS = """\
import signal, sys, time

def stop(signum, frame):
    print(f"got {signal.Signals(signum).name}", flush=True)
    sys.exit(128 + signum)

signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGHUP, stop)
print("ready", flush=True)
time.sleep(60)
"""

LAUNCHER = """\
import sys
from jaxnets import launch
sys.exit(launch.launch(2, ["sweep", "x.toml", "--out", "out"], grace_s=5, python=sys.argv[1]))
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_or_sighup_to_the_launcher_is_passed_on_as_ctrl_c_is(tmp_path, signum):
    """A scheduler's SIGTERM (or a SIGHUP) sent to ``jaxnets launch`` alone reaches every process (which then ends
    as on Ctrl-C: one line, units kept), and the launcher exits 128 + N with one line of its own."""
    fake = tmp_path / "patient.py"
    fake.write_text(PATIENT_PROCESS)
    script = tmp_path / "python"
    script.write_text(f"#!/bin/sh\nexec {sys.executable} {fake} \"$@\"\n")
    script.chmod(0o755)
    proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        ready = [proc.stdout.readline() for _ in range(2)]
        assert sorted(ready) == ["[process 0] ready\n", "[process 1] ready\n"], ready
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        _kill_group(proc)
    name = signal.Signals(signum).name
    assert proc.returncode == 128 + signum, err
    assert sorted(out.splitlines()) == [f"[process 0] got {name}", f"[process 1] got {name}"], out
    assert err.splitlines()[-1] == f"jaxnets launch: stopped by {name}; stopping the processes (Ctrl-C again: kill " \
        "them)", err
    assert "Traceback" not in err


INTERRUPT_AT_FIRST_CHECKPOINT = """\
import sys
from jaxnets import cli, store

save = store.save_checkpoint


def save_then_stop(*args, **kwargs):
    save(*args, **kwargs)
    raise KeyboardInterrupt


store.save_checkpoint = save_then_stop
sys.exit(cli.main(sys.argv[1:]))
"""


def test_population_unit_resumes_from_its_checkpoint_under_two_processes(tmp_path):
    """An asha unit stopped after its first rung (one process, 4 devices) resumes under 2 processes x 2
    devices from process 0's checkpoint, on both processes, and ends with the uninterrupted table."""
    cfg = tmp_path / "asha.toml"
    cfg.write_text(POPULATION.format(method="asha", extra="min_steps = 4"))
    one, out = tmp_path / "one", tmp_path / "resumed"
    proc = _run(_jaxnets("sweep", str(cfg), "--out", str(one), "--quiet"), devices=4)
    assert proc.returncode == 0, proc.stderr[-3000:]
    script = tmp_path / "interrupt.py"
    script.write_text(INTERRUPT_AT_FIRST_CHECKPOINT)
    proc = _run([sys.executable, str(script), "sweep", str(cfg), "--out", str(out), "--quiet"], devices=4)
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["population-000.npz"]
    assert not (out / "units").exists() or not any((out / "units").iterdir())
    proc = _run(_jaxnets("launch", "-n", "2", "--", "sweep", str(cfg), "--out", str(out)), devices=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[process 0] resuming population-000 from its checkpoint" in proc.stderr
    _assert_same_results(one, out)
    assert not any((out / "checkpoints").iterdir())  # dropped once the unit is saved


# ------------------------------------------------------------------------------------------ the Python API

API_SCRIPT = """\
import json, sys
import jax

port, pid = sys.argv[1], int(sys.argv[2])
jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=pid,
                           coordinator_bind_address=f"127.0.0.1:{port}", initialization_timeout=60,
                           heartbeat_timeout_seconds=30, shutdown_timeout_seconds=30)
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from jaxnets import data, engine
from jaxnets.engine import transfer

ds = data.load("wine")
variants = [{"activation": a, "init": i, "seed": s, "hidden": [8], "batch_size": 32, "steps": 12,
             "eval_every": 4, "early_stopping_patience": 1, "learning_rate": lr}
            for a in ("tanh", "relu") for i in ("glorot_uniform", "he_normal") for s, lr in ((0, 1e-2), (1, 1e12))]
result = engine.train(variants, ds)
table = result.to_dataframe().drop(columns="group_wall_s")
params = [float(sum(np.sum(np.asarray(x, np.float64)) for x in jax.tree.leaves(result.params(i))))
          for i in range(len(result))]
# PRNG-key leaves (an NNX model's rng state) gathered across processes come back as the same keys
mesh = jax.make_mesh((4,), ("variants",))
keys = jax.jit(lambda: jax.random.split(jax.random.key(7), 8), out_shardings=NamedSharding(mesh, P("variants")))()
back = transfer.to_host({"rng": keys})["rng"]
same_keys = bool(jax.dtypes.issubdtype(back.dtype, jax.dtypes.prng_key)) and np.array_equal(
    jax.random.key_data(back), jax.random.key_data(jax.random.split(jax.random.key(7), 8)))
# every dtype the engine's trees hold travels bit for bit (packed into one all-gather), whatever the sharding
rows = NamedSharding(mesh, P("variants"))
host = {"bool": np.arange(24).reshape(8, 3) % 3 == 0, "int8": np.arange(-4, 4, dtype=np.int8),
        "bf16": np.linspace(-1, 1, 16).reshape(8, 2).astype(jnp.bfloat16), "u32": np.arange(8, dtype=np.uint32) << 28,
        "f32": np.array([np.nan, -np.inf, np.inf, -0.0, 1e-45, 3.0, -2.5, 1e38], np.float32),
        "empty": np.zeros((8, 0), np.float32)}
tree = {k: transfer.to_device(v, rows) for k, v in host.items()}
host |= {"columns": np.arange(16, dtype=np.float32).reshape(2, 8), "replicated": np.arange(3, dtype=np.int32)}
tree |= {"columns": transfer.to_device(host["columns"], NamedSharding(mesh, P(None, "variants"))),  # not packed
         "replicated": transfer.to_device(host["replicated"], NamedSharding(mesh, P()))}
back = transfer.to_host(tree)
same_bits = all(back[k].dtype == v.dtype and back[k].shape == v.shape and back[k].tobytes() == v.tobytes()
                for k, v in host.items())
# blocks of 4 (two blocks, each spanning both processes): the same variants, the same statuses
fours = engine.train(variants, ds, options=engine.Options(max_variants_per_program=4))
blocked = [fours.groups[0].n_blocks, fours.status.tolist() == result.status.tolist(),
           bool(np.allclose(fours.history["val_loss"], result.history["val_loss"], rtol=1e-5, equal_nan=True))]
print("RESULT " + json.dumps({"devices": [jax.local_device_count(), jax.device_count()],
                              "table": table.to_json(), "history": result.history["val_loss"].tolist(),
                              "params": params, "same_keys": same_keys, "same_bits": same_bits, "blocked": blocked}))
"""


def test_python_api_under_two_processes(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(API_SCRIPT)
    port = str(launch.free_port())
    env = _env(2)
    procs = [subprocess.Popen([sys.executable, str(script), port, str(i)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for i in range(2)]
    try:
        outs = [p.communicate(timeout=TIMEOUT_S) for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait()
    results = []
    for p, (stdout, stderr) in zip(procs, outs, strict=True):
        assert p.returncode == 0, stderr[-3000:]
        line = next(line for line in stdout.splitlines() if line.startswith("RESULT "))
        results.append(json.loads(line[len("RESULT "):]))
    a, b = results
    assert a["devices"] == b["devices"] == [2, 4]
    assert a == b
    assert a["same_keys"] and a["same_bits"]
    assert a["blocked"] == [2, True, True]
    table = pd.read_json(io.StringIO(a["table"]))
    assert len(table) == 8 and {"ok", "diverged"} <= set(table["status"])
    assert np.isfinite(a["params"]).all()


# ------------------------------------------------------------------------------------------ failures and options


def test_an_unreachable_coordinator_is_a_one_line_error(tmp_path, config):
    port = launch.free_port()  # nobody listens there
    code = textwrap.dedent(f"""\
        import sys
        from jaxnets import cli, launch
        launch.INIT_TIMEOUT_S = 3
        sys.exit(cli.main(["sweep", {str(config)!r}, "--out", {str(tmp_path / "out")!r},
                           "--coordinator", "127.0.0.1:{port}", "--num-processes", "2", "--process-id", "1"]))
        """)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=_env(1))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert time.monotonic() - t0 < 30
    errors = [line for line in proc.stderr.splitlines() if line.startswith("jaxnets: error:")]
    assert len(errors) == 1 and f"cannot reach the coordinator at 127.0.0.1:{port} within 3 s" in errors[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_resolve_reads_options_then_the_environment():
    assert launch.resolve(environ={}) is None
    env = {launch.ENV_COORDINATOR: "10.0.0.1:1234", launch.ENV_NUM_PROCESSES: "4", launch.ENV_PROCESS_ID: "3"}
    assert launch.resolve(environ=env) == launch.Setup("10.0.0.1:1234", 4, 3)
    assert launch.resolve(process_id=0, environ=env) == launch.Setup("10.0.0.1:1234", 4, 0)
    assert launch.resolve(distributed=True, environ={}) == launch.Setup(auto=True)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"coordinator": "127.0.0.1:1234"}, "missing: --num-processes, --process-id"),
    ({"coordinator": "127.0.0.1", "num_processes": 2, "process_id": 0}, "must be HOST:PORT"),
    ({"coordinator": "127.0.0.1:99999", "num_processes": 2, "process_id": 0}, "must be HOST:PORT"),
    ({"coordinator": "127.0.0.1:1234", "num_processes": 2, "process_id": 2}, "must be in 0..1"),
    ({"coordinator": "127.0.0.1:1234", "num_processes": 0, "process_id": 0}, "at least 1"),
    ({"distributed": True, "coordinator": "127.0.0.1:1234"}, "do not combine it with --coordinator"),
])
def test_resolve_refuses_bad_options(kwargs, message):
    with pytest.raises(launch.DistributedError, match=re.escape(message)):
        launch.resolve(**kwargs, environ={})
    with pytest.raises(launch.DistributedError, match="JAXNETS_PROCESS_ID must be an integer"):
        launch.resolve(environ={launch.ENV_COORDINATOR: "h:1", launch.ENV_NUM_PROCESSES: "2",
                                launch.ENV_PROCESS_ID: "one"})


def test_bad_options_exit_2_before_jax_starts(config, tmp_path, capsys):
    from jaxnets import cli

    out = str(tmp_path / "out")
    assert cli.main(["sweep", str(config), "--out", out, "--coordinator", "127.0.0.1:1234"]) == 2
    assert "go together" in capsys.readouterr().err
    assert cli.main(["launch", "-n", "2", "--", "show", out]) == 2
    assert "jaxnets launch runs a sweep" in capsys.readouterr().err
    assert cli.main(["launch", "-n", "2", "--", "sweep", str(config), "--out", out, "--process-id", "1"]) == 2
    assert "sets the distributed options itself" in capsys.readouterr().err
    assert not Path(out).exists()
