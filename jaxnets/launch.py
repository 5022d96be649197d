"""Many processes: join JAX's distributed runtime, share a sweep's run directory, and a local launcher.

One sweep can run as N processes (one per host of a cluster, or several on one machine) on JAX's own
distributed runtime: every process calls :func:`initialize` (``jax.distributed.initialize``) before anything
touches JAX, builds the same plan and runs the same compiled programs on the global mesh (every process's
devices), so the variant axis is sharded over all of them. Only process 0 writes the run directory.

* :func:`resolve` reads the ``jaxnets sweep`` options ``--coordinator HOST:PORT --num-processes N
  --process-id I`` (or ``JAXNETS_COORDINATOR``, ``JAXNETS_NUM_PROCESSES``, ``JAXNETS_PROCESS_ID``) and
  ``--distributed`` (let JAX detect a SLURM / Open MPI / TPU environment) into a :class:`Setup`.
* :func:`initialize` joins the runtime with bounded timeouts: a coordinator that cannot be reached (or peers
  that never come) gives a one-line error after :data:`INIT_TIMEOUT_S`; a process that dies makes the others
  fail within about :data:`HEARTBEAT_TIMEOUT_S` (at once when they are waiting for it in a collective).
* :func:`share_units` makes every process resume from exactly the units process 0 resumes from, and
  :func:`share_checkpoints` from exactly its ``asha`` / ``pbt`` checkpoints.
* :func:`launch` (``jaxnets launch -n N -- sweep CONFIG --out DIR``) starts N processes on 127.0.0.1 (loopback
  only, a free port), forwards their output line by line with a ``[process i]`` prefix, and stops the others
  a bounded time after one fails. JAX's client aborts a process natively (a ``Check failure stack trace``)
  within milliseconds of losing the coordinator, before any Python code can run: the launcher turns that
  report into one ``jaxnets: error:`` line. SIGTERM and SIGHUP are passed on to the processes, as Ctrl-C.

Example (two processes on this machine, two emulated CPU devices each)::

    XLA_FLAGS=--xla_force_host_platform_device_count=2 jaxnets launch -n 2 -- sweep my.toml --out runs/mine
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import ipaddress
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from jaxnets.sweep import UnitResult

__all__ = [
    "ENV_COORDINATOR", "ENV_NUM_PROCESSES", "ENV_PROCESS_ID", "INIT_TIMEOUT_S", "HEARTBEAT_TIMEOUT_S",
    "SHUTDOWN_TIMEOUT_S", "GRACE_S", "DistributedError", "Setup", "resolve", "initialize", "process_index",
    "share_units", "share_checkpoints", "barrier", "abort", "free_port", "launch",
]

ENV_COORDINATOR = "JAXNETS_COORDINATOR"
ENV_NUM_PROCESSES = "JAXNETS_NUM_PROCESSES"
ENV_PROCESS_ID = "JAXNETS_PROCESS_ID"

#: Seconds :func:`initialize` waits for every process to join (the coordinator to answer) before giving up.
INIT_TIMEOUT_S = 45
#: Seconds without a heartbeat after which JAX's runtime declares a process dead and stops the others.
HEARTBEAT_TIMEOUT_S = 30
#: Seconds a finishing process waits at the runtime's shutdown barrier for the others.
SHUTDOWN_TIMEOUT_S = 30
#: Seconds :func:`launch` lets the other processes end on their own once one has failed, before stopping them.
GRACE_S = 30.0

_DISTRIBUTED_FLAGS = ("--coordinator", "--num-processes", "--process-id", "--distributed")
_LOOPBACK = "127.0.0.1"


class DistributedError(RuntimeError):
    """The processes cannot work together as asked (bad options, unreachable coordinator, unshared ``--out``).

    The message is one line and says what to do.
    """


@dataclasses.dataclass(frozen=True)
class Setup:
    """How this process joins the distributed runtime.

    Attributes:
      coordinator: ``HOST:PORT`` of process 0's coordinator (``None``: detected, see ``auto``).
      num_processes: the number of processes (``None`` when detected).
      process_id: this process's index, ``0 <= process_id < num_processes`` (``None`` when detected).
      auto: ``--distributed``: let ``jax.distributed.initialize()`` detect SLURM / Open MPI / TPU.
    """

    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    auto: bool = False


# ---------------------------------------------------------------------------------------------------------
# Options -> Setup
# ---------------------------------------------------------------------------------------------------------


def _int(text: str, where: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise DistributedError(f"{where} must be an integer, got {text!r}") from None


def _check_address(address: str, where: str) -> str:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise DistributedError(f"{where} must be HOST:PORT (e.g. 10.0.0.1:12345), got {address!r}")
    return address


def resolve(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
            distributed: bool = False, environ: Mapping[str, str] | None = None) -> Setup | None:
    """The distributed setup asked for by the command-line options, or by the environment where they are unset.

    Args:
      coordinator: ``--coordinator HOST:PORT`` (else ``JAXNETS_COORDINATOR``).
      num_processes: ``--num-processes N`` (else ``JAXNETS_NUM_PROCESSES``).
      process_id: ``--process-id I`` (else ``JAXNETS_PROCESS_ID``).
      distributed: ``--distributed``: detect the cluster (SLURM, Open MPI, TPU); then none of the three may be
        set.
      environ: the environment (default ``os.environ``).

    Returns:
      the :class:`Setup`, or ``None`` for a single process (nothing set).

    Raises:
      DistributedError: only some of the three are set, ``--distributed`` is combined with them, or a value is
        malformed (``process_id`` outside ``[0, num_processes)``, a coordinator that is not ``HOST:PORT``).

    Example::

        >>> resolve("127.0.0.1:1234", 2, 1, environ={})
        Setup(coordinator='127.0.0.1:1234', num_processes=2, process_id=1, auto=False)
        >>> resolve(environ={}) is None
        True
    """
    env = os.environ if environ is None else environ
    given: dict[str, tuple[Any, str]] = {}
    for name, flag, value, var in (("coordinator", "--coordinator", coordinator, ENV_COORDINATOR),
                                   ("num_processes", "--num-processes", num_processes, ENV_NUM_PROCESSES),
                                   ("process_id", "--process-id", process_id, ENV_PROCESS_ID)):
        if value is not None:
            given[name] = (value, flag)
        elif env.get(var, "").strip():
            given[name] = (env[var].strip(), var)
    if distributed:
        if given:
            names = ", ".join(where for _, where in given.values())
            raise DistributedError(f"--distributed detects the cluster by itself; do not combine it with {names} "
                                   "(unset it, or drop --distributed and give all three)")
        return Setup(auto=True)
    if not given:
        return None
    if len(given) < 3:
        missing = [f for n, f in (("coordinator", "--coordinator"), ("num_processes", "--num-processes"),
                                  ("process_id", "--process-id")) if n not in given]
        raise DistributedError(f"--coordinator, --num-processes and --process-id go together (or "
                               f"{ENV_COORDINATOR}, {ENV_NUM_PROCESSES}, {ENV_PROCESS_ID}); missing: "
                               f"{', '.join(missing)}")
    address = _check_address(str(given["coordinator"][0]).strip(), given["coordinator"][1])
    n = _int(str(given["num_processes"][0]), given["num_processes"][1])
    i = _int(str(given["process_id"][0]), given["process_id"][1])
    if n < 1:
        raise DistributedError(f"{given['num_processes'][1]} must be at least 1, got {n}")
    if not 0 <= i < n:
        raise DistributedError(f"{given['process_id'][1]} must be in 0..{n - 1} for {n} process(es), got {i}")
    return Setup(address, n, i)


# ---------------------------------------------------------------------------------------------------------
# Joining the runtime
# ---------------------------------------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _say(text: str) -> None:
    print(f"jaxnets: error: {text}", file=sys.stderr, flush=True)


def initialize(setup: Setup, *, timeout_s: float | None = None) -> None:
    """Join JAX's distributed runtime (``jax.distributed.initialize``); call it before anything touches JAX.

    The runtime's heartbeat and shutdown timeouts are :data:`HEARTBEAT_TIMEOUT_S` and
    :data:`SHUTDOWN_TIMEOUT_S`, so a dead process makes the others fail instead of hanging. The preemption
    service is turned off, so SIGTERM ends a process as usual. A loopback coordinator address binds the
    coordinator to that address only (not to every interface). When the processes have not all joined within
    ``timeout_s`` (the coordinator cannot be reached, or a peer never started), this prints one
    ``jaxnets: error:`` line and ends the process with exit code 2: JAX's runtime would abort it instead.

    Args:
      setup: from :func:`resolve`.
      timeout_s: seconds to wait for every process (default :data:`INIT_TIMEOUT_S`).

    Raises:
      DistributedError: the coordinator cannot start (e.g. its port is in use), ``--distributed`` found no
        cluster environment, or JAX is already running.
    """
    import jax

    timeout_s = INIT_TIMEOUT_S if timeout_s is None else timeout_s
    jax.config.update("jax_enable_preemption_service", False)
    kwargs: dict[str, Any] = {
        "initialization_timeout": int(timeout_s) + 30,  # the watchdog below answers first, with a clear line
        "heartbeat_timeout_seconds": HEARTBEAT_TIMEOUT_S,
        "shutdown_timeout_seconds": SHUTDOWN_TIMEOUT_S,
    }
    if setup.auto:
        where = "the detected coordinator"
    else:
        kwargs |= {"coordinator_address": setup.coordinator, "num_processes": setup.num_processes,
                   "process_id": setup.process_id, "cluster_detection_method": "deactivate"}
        if _is_loopback(setup.coordinator.rpartition(":")[0]):
            kwargs["coordinator_bind_address"] = setup.coordinator
        where = f"the coordinator at {setup.coordinator}"

    def timed_out() -> None:
        if setup.process_id == 0:
            _say(f"process 0: not all {setup.num_processes} processes joined {where} within {timeout_s:g} s; "
                 "start every process with the same --coordinator and --num-processes")
        else:
            who = "" if setup.process_id is None else f"process {setup.process_id}: "
            _say(f"{who}cannot reach {where} within {timeout_s:g} s (is process 0 running there, and is the "
                 "address one every process can reach?)")
        os._exit(2)

    watchdog = threading.Timer(timeout_s, timed_out)
    watchdog.daemon = True
    watchdog.start()
    try:
        jax.distributed.initialize(**kwargs)
    except (RuntimeError, ValueError, TypeError) as e:
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if setup.auto:
            raise DistributedError(f"--distributed: no cluster environment (SLURM, Open MPI, TPU) detected or it "
                                   f"is incomplete ({text}); give --coordinator, --num-processes and "
                                   "--process-id instead") from None
        if "RPC server" in text:
            raise DistributedError(f"process 0 cannot start the coordinator on {setup.coordinator} ({text}); is "
                                   "the port in use? pick another one") from None
        raise DistributedError(f"cannot join the distributed runtime at {setup.coordinator}: {text}") from None
    finally:
        watchdog.cancel()


def process_index() -> int:
    """This process's index in the distributed runtime (0 without one); starts JAX's backend."""
    import jax

    return jax.process_index()


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def abort(e: BaseException) -> NoReturn:
    """End this process after an unexpected error in a distributed run: one ``jaxnets: error:`` line (and the
    traceback, unless it is the runtime reporting a lost peer), then exit code 1 at once.

    Exiting at once (``os._exit``) skips the runtime's shutdown barrier, which would wait for processes that are
    waiting for this one; they then see the connection close and stop too.

    Args:
      e: the exception.
    """
    import jax

    i = jax.process_index()
    text = _first_line(e)
    runtime = isinstance(e, jax.errors.JaxRuntimeError) or "Gloo" in text or "coordination" in text.lower()
    if not runtime:
        traceback.print_exception(e, file=sys.stderr)
    what = "the JAX distributed runtime failed" if runtime else "unexpected error"
    hint = "; another process has probably stopped, see its output" if runtime else ""
    _say(f"process {i}: {what}: {text}{hint}. Finished units are saved: run the same command again to resume")
    sys.stdout.flush()
    os._exit(1)


# ---------------------------------------------------------------------------------------------------------
# The run directory across processes
# ---------------------------------------------------------------------------------------------------------


def _digest(done: Mapping[str, UnitResult]) -> bytes:
    """SHA-256 of saved units (keys, fingerprints and every array), to compare what processes resume from."""
    return _digest_arrays({key: (res.fingerprint, {
        "variant": res.variant, "group": res.group, "eval_step": res.eval_step,
        **{f"col_{k}": v for k, v in res.columns.items()}, **{f"hist_{k}": v for k, v in res.history.items()}})
        for key, res in done.items()})


def _digest_arrays(entries: Mapping[str, tuple[str, Mapping[str, Any]]]) -> bytes:
    """SHA-256 of ``{key: (fingerprint, {name: array})}``: keys, fingerprints, names, dtypes, shapes, bytes."""
    import numpy as np

    h = hashlib.sha256()
    for key in sorted(entries):
        fingerprint, arrays = entries[key]
        h.update(f"\0{key}\0{fingerprint}\0".encode())
        for name in sorted(arrays):
            a = np.ascontiguousarray(arrays[name])
            h.update(f"\0{name}\0{a.dtype.str}\0{a.shape}\0".encode())
            h.update(a.tobytes())
    return h.digest()


def share_checkpoints(out: str | Path, partial: Mapping[str, tuple[str, Mapping[str, Any]]]
                      ) -> dict[str, tuple[str, Mapping[str, Any]]]:
    """Make every process resume its ``asha`` / ``pbt`` units from the checkpoints process 0 resumes from (a
    collective: every process calls it, after :func:`share_units`).

    Args:
      out: the results directory.
      partial: on process 0, the checkpoints :func:`jaxnets.store.load_checkpoints` returned (ignored
        elsewhere).

    Returns:
      ``{unit key: (fingerprint, state)}``, the same on every process.

    Raises:
      DistributedError: some process does not see process 0's checkpoints (``out`` is not shared).
    """
    from jaxnets import store

    return _share(out, partial, False, _digest_arrays, store.load_checkpoints, "checkpoints")


def share_units(out: str | Path, done: Mapping[str, UnitResult], failed: bool) -> dict[str, UnitResult]:
    """Make every process resume from the units process 0 resumes from (a collective: every process calls it).

    Process 0 has opened the run directory (:func:`jaxnets.store.open_run`, giving ``done``, or ``failed``);
    the others then read the saved units from the same directory and every process checks that they are the
    same as process 0's (a shared file system, or one machine).

    Args:
      out: the results directory.
      done: on process 0, the saved units :func:`jaxnets.store.open_run` returned (ignored elsewhere).
      failed: on process 0, whether opening the directory failed (ignored elsewhere).

    Returns:
      the saved units to resume from, the same on every process (``{}`` on every process when process 0
      failed: process 0 reports its own error).

    Raises:
      DistributedError: process 0 could not open the directory (on the other processes), or some process does
        not see process 0's saved units (``out`` is not shared).
    """
    from jaxnets import store

    return _share(out, done, failed, _digest, store.load_units, "saved units")


def _share(out: str | Path, mine: Mapping[str, Any], failed: bool, digest: Callable[[Mapping[str, Any]], bytes],
           load: Callable[[str | Path], dict[str, Any]], what: str) -> dict[str, Any]:
    """Process 0's ``mine`` on every process: process 0 broadcasts ``failed`` and ``digest(mine)``, the others
    ``load(out)`` (unless process 0 has nothing), and every process checks that its copy has that digest."""
    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    me = jax.process_index()
    message = np.zeros(33, np.uint8)  # [failed, sha256 of process 0's entries]
    if me == 0:
        message[0] = failed
        message[1:] = np.frombuffer(digest(mine), np.uint8)
    message = np.asarray(multihost_utils.broadcast_one_to_all(message))
    if message[0]:
        if me == 0:
            return {}
        raise DistributedError(f"process {me}: process 0 could not open the results directory {str(out)!r} "
                               "(see its error)")
    wanted = bytes(message[1:])
    if me == 0:
        got = dict(mine)
    elif wanted == digest({}):
        got = {}
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # process 0 reports damaged files
            got = load(out)
    same = np.asarray(multihost_utils.process_allgather(np.int32(digest(got) == wanted)))
    if not same.all():
        bad = ", ".join(str(i) for i in np.flatnonzero(same == 0))
        raise DistributedError(f"process(es) {bad} do not see the {what} that process 0 resumes from in "
                               f"{str(out)!r}: --out must be the same folder for every process (a shared file "
                               "system)")
    return got


def barrier(name: str) -> None:
    """Wait until every process gets here (a collective over every device)."""
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)


# ---------------------------------------------------------------------------------------------------------
# The local launcher
# ---------------------------------------------------------------------------------------------------------


def free_port(host: str = _LOOPBACK) -> int:
    """A TCP port that is free on ``host`` (loopback) right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class _TextSink:
    """A text stream seen as a binary one (for a ``sys.stdout`` replaced by one without ``.buffer``)."""

    def __init__(self, stream: IO[str]):
        self.stream = stream

    def write(self, data: bytes) -> None:
        self.stream.write(data.decode("utf-8", "replace"))

    def flush(self) -> None:
        self.stream.flush()


def _binary(stream: Any) -> Any:
    buffer = getattr(stream, "buffer", None)
    return buffer if buffer is not None else _TextSink(stream)


#: A line of native (C++, absl) logging: ``F1203 21:17:14.934022   12115 client.h:80] ...``.
_NATIVE_LOG = re.compile(rb"^[FEWI]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ \S+:\d+\] ")
#: What may follow a native log line in the same report (gRPC details, a stack trace, blank lines).
_NATIVE_MORE = re.compile(rb"^(\*\*\* Check failure stack trace|\s+@\s+0x|Additional GRPC error information|:UNKNOWN:"
                          rb"|\s*$)")
_HELD_MAX = 200  # native lines held back at most, before they are written anyway


class _NativeCrash:
    """Condenses the native crash report of a process that JAX's distributed runtime ends because another one
    died (``F... Terminating process because the JAX distributed service detected fatal errors``, gRPC details
    and a ``Check failure stack trace``) into one ``jaxnets: error:`` line, written when the process's stderr
    ends. The runtime's client does this within milliseconds of losing the coordinator (its error-polling RPC
    fails when process 0's socket closes), before anything in Python can run, so the launcher rewrites it.
    Other output passes unchanged: native log lines are held back only until a line shows that they do not
    start such a report. A process that has said its own ``jaxnets: error:`` line gets no second one.
    """

    def __init__(self, index: int):
        self.index = index
        self.held: list[bytes] = []
        self.fatal: bytes | None = None
        self.said = False

    def feed(self, line: bytes) -> list[bytes]:
        """The lines to write now for the child's ``line``."""
        if self.fatal is not None:
            return []  # the rest of the report
        native = _NATIVE_LOG.match(line)
        if native and line.startswith(b"F") and (b"distributed service" in line or b"coordination service" in line):
            self.fatal, self.held = line, []
            return []
        if (native or (self.held and _NATIVE_MORE.match(line))) and len(self.held) < _HELD_MAX:
            self.held.append(line)
            return []
        self.said = self.said or line.startswith(b"jaxnets: error:")
        out, self.held = [*self.held, line], []
        return out

    def end(self) -> list[bytes]:
        """The lines to write once the child's stream has ended."""
        if self.fatal is None:
            out, self.held = self.held, []
            return out
        if self.said:
            return []
        status = re.search(rb"absl::Status: ([^.\n]*)", self.fatal)
        why = f" ({status.group(1).decode('utf-8', 'replace').strip()})" if status else ""
        return [f"jaxnets: error: process {self.index}: the JAX distributed runtime ended this process: it lost "
                f"another process{why}; see the other processes' output. Finished units are saved: run the same "
                "command again to resume\n".encode()]


class _Forwarder(threading.Thread):
    """Copies a child's stream to ``sink`` line by line (``\\n`` or ``\\r``: progress bars), each line
    prefixed; through ``crash`` (:class:`_NativeCrash`, for stderr) when given."""

    def __init__(self, stream: IO[bytes], sink: Any, prefix: bytes, lock: threading.Lock,
                 crash: _NativeCrash | None = None):
        super().__init__(daemon=True)
        self.stream, self.sink, self.prefix, self.lock, self.crash = stream, sink, prefix, lock, crash

    def _emit(self, line: bytes) -> None:
        for out in (self.crash.feed(line) if self.crash is not None else [line]):
            self._write(out)

    def _write(self, line: bytes) -> None:
        with self.lock:
            try:
                self.sink.write(line if line == b"\r" else self.prefix + line)
                self.sink.flush()
            except (OSError, ValueError):  # our own output is gone: keep draining the child
                pass

    def run(self) -> None:
        pending = b""
        while chunk := self.stream.read1(65536):
            pending += chunk
            start = 0
            for i, byte in enumerate(pending):
                if byte in (10, 13):  # \n, \r
                    self._emit(pending[start:i + 1])
                    start = i + 1
            pending = pending[start:]
        if pending:
            self._emit(pending + b"\n")
        for line in self.crash.end() if self.crash is not None else []:
            self._write(line)
        self.stream.close()


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _stop(procs: Sequence[subprocess.Popen], grace_s: float) -> None:
    """Let running processes end within ``grace_s``, then SIGTERM them, then SIGKILL them 5 s later."""
    deadline = time.monotonic() + grace_s
    for sig, wait in ((None, grace_s), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        alive = [p for p in procs if p.poll() is None]
        if not alive:
            return
        if sig is not None:
            for p in alive:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(sig)
            deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(p.poll() is None for p in alive):
            time.sleep(0.05)


def _watch(procs: Sequence[subprocess.Popen], grace_s: float, lock: threading.Lock) -> int | None:
    """Wait for every process; once one fails, stop the others (:func:`_stop`). Returns the index of the
    first one that failed, or ``None``. When several are found ended at once, one killed by a signal is
    named first: the others' errors are most likely their reaction to losing it (a busy host can delay this
    loop past both ends)."""
    while True:
        failed = sorted((i for i, p in enumerate(procs) if p.poll() not in (None, 0)),
                        key=lambda i: (procs[i].returncode >= 0, i))
        if failed:
            with lock:
                print(f"jaxnets launch: process {failed[0]} {_describe_exit(procs[failed[0]].returncode)}; "
                      f"stopping the others (they get {grace_s:g} s to end on their own)", file=sys.stderr,
                      flush=True)
            _stop(procs, grace_s)
            return failed[0]
        if all(p.poll() is not None for p in procs):
            return None
        time.sleep(0.05)


def _interrupt(procs: Sequence[subprocess.Popen], grace_s: float, signum: int = signal.SIGINT) -> None:
    """After Ctrl-C (or SIGTERM / SIGHUP: ``signum``): the processes got it too when it was sent to the process
    group (the terminal, a scheduler); otherwise pass it on. Then :func:`_stop` them."""
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline and any(p.poll() is None for p in procs):
        time.sleep(0.05)
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signum)
    _stop(procs, grace_s)


class _Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP reached the launcher: handled as Ctrl-C is (passed on to the processes)."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


_STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


def _terminated(signum: int, frame: Any) -> None:
    for sig in _STOP_SIGNALS:  # once: a second one while the processes are being stopped is ignored
        signal.signal(sig, signal.SIG_IGN)
    raise _Stopped(signum)


def _check_command(n: int, command: Sequence[str]) -> list[str]:
    """The ``jaxnets`` command line to run (a leading ``--`` dropped), after checking it and ``n``."""
    command = list(command)
    if command[:1] == ["--"]:
        command = command[1:]
    if n < 1:
        raise DistributedError(f"-n must be at least 1, got {n}")
    if not command or command[0] not in ("sweep", "demo"):
        raise DistributedError("jaxnets launch runs a sweep: jaxnets launch -n N -- sweep CONFIG --out DIR [...] "
                               f"(or demo [...]); got {' '.join(command) or 'nothing'}")
    clash = [a for a in command if a.split("=", 1)[0] in _DISTRIBUTED_FLAGS]
    if clash:
        raise DistributedError(f"jaxnets launch sets the distributed options itself; remove {', '.join(clash)}")
    return command


def _child_environ(env: Mapping[str, str] | None) -> dict[str, str]:
    """The processes' environment: ``env`` (or ``os.environ``) without the distributed variables, unbuffered."""
    environ = dict(os.environ if env is None else env)
    for var in (ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID):
        environ.pop(var, None)
    environ["PYTHONUNBUFFERED"] = "1"
    return environ


def _start(n: int, command: Sequence[str], coordinator: str, python: str | None, environ: Mapping[str, str],
           lock: threading.Lock, procs: list[subprocess.Popen], threads: list[_Forwarder]) -> None:
    """Start the ``n`` processes and their output forwarders, appending each to ``procs`` / ``threads``."""
    for i in range(n):
        argv = [python or sys.executable, "-m", "jaxnets", *command, "--coordinator", coordinator,
                "--num-processes", str(n), "--process-id", str(i)]
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                             env=environ)
        procs.append(p)
        prefix = f"[process {i}] ".encode()
        threads += [_Forwarder(p.stdout, _binary(sys.stdout), prefix, lock),
                    _Forwarder(p.stderr, _binary(sys.stderr), prefix, lock, _NativeCrash(i))]
        threads[-2].start()
        threads[-1].start()


def _reap(procs: Sequence[subprocess.Popen], threads: Sequence[_Forwarder]) -> None:
    """Kill the processes still running, wait for every one, and join the forwarders (5 s each at most)."""
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
        p.wait()
    for t in threads:
        t.join(timeout=5)


def launch(n: int, command: Sequence[str], *, grace_s: float = GRACE_S, python: str | None = None,
           env: Mapping[str, str] | None = None) -> int:
    """Run ``jaxnets COMMAND ...`` as ``n`` processes of one distributed run on this machine.

    Starts ``python -m jaxnets COMMAND ... --coordinator 127.0.0.1:PORT --num-processes n --process-id i``
    for ``i`` in ``0..n-1`` (a free loopback port; the coordinator binds to 127.0.0.1 only), forwards their
    stdout and stderr line by line with a ``[process i] `` prefix, and waits for all of them. When one fails,
    the others get ``grace_s`` seconds to end on their own (JAX's runtime stops them), then SIGTERM, then
    SIGKILL. Each process sees the launcher's environment: set ``XLA_FLAGS=--xla_force_host_platform_device_count=K``
    (or ``JAX_NUM_CPU_DEVICES=K``) for K emulated CPU devices per process.

    Args:
      n: the number of processes (at least 1).
      command: the ``jaxnets`` command line after ``--``: ``sweep CONFIG --out DIR [...]`` or ``demo [...]``.
      grace_s: seconds the others may take to end after one failed.
      python: the interpreter (default: this one).
      env: the processes' environment (default ``os.environ``).

    Returns:
      0 when every process succeeded, else the exit code of the first one that failed (128 + the signal
      number for one that was killed), 130 after Ctrl-C, 143 after SIGTERM, 129 after SIGHUP (passed on to
      the processes, which end as they do on Ctrl-C).

    Raises:
      DistributedError: ``n < 1``, a command other than ``sweep`` / ``demo``, or one that sets the distributed
        options itself.
    """
    command = _check_command(n, command)
    environ = _child_environ(env)
    port = free_port()
    coordinator = f"{_LOOPBACK}:{port}"
    lock = threading.Lock()
    procs: list[subprocess.Popen] = []
    threads: list[_Forwarder] = []
    in_main = threading.current_thread() is threading.main_thread()
    # SIGTERM / SIGHUP: stop the processes as Ctrl-C does
    previous = {sig: signal.signal(sig, _terminated) for sig in _STOP_SIGNALS} if in_main else {}
    try:
        _start(n, command, coordinator, python, environ, lock, procs, threads)
        with lock:
            print(f"jaxnets launch: {n} process(es), coordinator {coordinator}, pids "
                  f"{' '.join(str(p.pid) for p in procs)}", file=sys.stderr, flush=True)
        first = _watch(procs, grace_s, lock)
        if first is None:
            return 0
        rc = procs[first].returncode
        return 128 - rc if rc < 0 else rc
    except KeyboardInterrupt as e:
        signum = e.signum if isinstance(e, _Stopped) else int(signal.SIGINT)
        how = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
        with lock:
            print(f"jaxnets launch: {how}; stopping the processes (Ctrl-C again: kill them)", file=sys.stderr,
                  flush=True)
        _interrupt(procs, grace_s, signum)
        return 128 + signum
    finally:
        _reap(procs, threads)
        for sig, old in previous.items():
            signal.signal(sig, old)
