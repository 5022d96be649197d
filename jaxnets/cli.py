"""The ``jaxnets`` command: run sweeps from config files, the bundled demo, and show results.

Usage::

    jaxnets sweep CONFIG.toml --out DIR [--quiet] [--force] [--top K] [--dry-run]
    jaxnets demo [--out DIR] [--quiet] [--force] [--top K]     # the bundled config, DIR = runs/demo
    jaxnets demo --print-config > my_sweep.toml                # a start for your own sweep
    jaxnets show DIR [--top K] [--metric NAME] [--plots]          # --plots: redraw plots/ and report.html
    jaxnets sweep CONFIG.toml --out DIR --coordinator HOST:PORT --num-processes N --process-id I
    jaxnets sweep CONFIG.toml --out DIR --distributed          # SLURM / Open MPI / TPU: detected by JAX
    jaxnets launch -n N -- sweep CONFIG.toml --out DIR         # N local processes on 127.0.0.1

``sweep`` checks the whole config (and every variant, with the engine's rules) before any compute, trains
the variants unit by unit (a static group, or a Bayesian round) with a progress bar on stderr, saves each
finished unit atomically in ``DIR/units``, then writes ``results.csv``, ``history.npz`` and ``plots/*.png``
and prints the top of the ranked table. Running the same command again resumes: finished units are read
back, not retrained, and the final table is the one an uninterrupted run gives. A damaged unit file is
reported as one ``jaxnets: warning:`` line and retrained. A DIR holding another config's results is refused
unless ``--force``; a DIR another run is writing (its ``.lock`` held by a live process) is refused, even with
``--force``; a stale lock (its process is gone) is taken over with a warning.

Exit codes (:data:`EXIT_CODES`): 0 done; 1 unexpected error (a bug: with a traceback); 2 bad input (config,
options, an unusable or damaged output directory); 74 the machine refused a write (disk full, read-only file
system, no permission: the message says which file and what to do); 128 + N stopped by signal N: 130 Ctrl-C
(SIGINT), 129 SIGHUP, 143 SIGTERM. After 74 or 128 + N the finished units are kept and the lock is released:
run the same command again to resume.

This is the only module that knows about the command line, progress bars and the terminal; the work is in
:mod:`jaxnets.config`, :mod:`jaxnets.sweep`, :mod:`jaxnets.store` and :mod:`jaxnets.plots`.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jaxnets import __version__

if TYPE_CHECKING:
    from jaxnets.config import Config
    from jaxnets.sweep import Plan, UnitResult

DEMO_CONFIG = "demo.toml"
DEFAULT_DEMO_OUT = "runs/demo"
_HIDDEN_COLUMNS = ("group_wall_s",)  # in results.csv, not in the printed table

EXIT_OK = 0
EXIT_BUG = 1
EXIT_USAGE = 2
EXIT_STORAGE = 74  # sysexits.h EX_IOERR
#: What each exit code of ``jaxnets`` means (128 + N: stopped by signal N; POSIX numbers).
EXIT_CODES = {
    EXIT_OK: "done",
    EXIT_BUG: "unexpected error (a bug; a traceback is printed)",
    EXIT_USAGE: "bad input: config, options, or an unusable or damaged output directory",
    EXIT_STORAGE: "the machine refused a write (disk full, read-only, no permission): fix it, re-run to resume",
    129: "stopped by SIGHUP: re-run to resume",
    130: "stopped by Ctrl-C (SIGINT): re-run to resume",
    143: "stopped by SIGTERM: re-run to resume",
}
#: Handled as Ctrl-C is (SIGINT: KeyboardInterrupt); SIGHUP does not exist on Windows.
_STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class UsageError(Exception):
    """A problem the user can fix (bad config, unusable output directory): printed without a traceback."""


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: raised in the main thread, handled as Ctrl-C is.

    Attributes:
      signum: The signal's number (exit code ``128 + signum``).
    """

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


def _signum(e: KeyboardInterrupt) -> int:
    return e.signum if isinstance(e, Stopped) else int(signal.SIGINT)


def _interrupted_how(e: KeyboardInterrupt) -> str:
    n = _signum(e)
    return "interrupted" if n == signal.SIGINT else f"stopped by {signal.Signals(n).name}"


@contextlib.contextmanager
def _stop_signals() -> Iterator[None]:
    """While the body runs (in the main thread), SIGTERM and SIGHUP raise :class:`Stopped` (once: a second
    one during the clean-up is ignored), so they end a run as Ctrl-C does; the old handlers come back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = []

    def handler(signum: int, _frame: Any) -> None:
        if not fired:
            fired.append(signum)
            raise Stopped(signum)

    previous = {sig: signal.signal(sig, handler) for sig in _STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# ---------------------------------------------------------------------------------------------------------
# Progress
# ---------------------------------------------------------------------------------------------------------


class Progress:
    """Turns :func:`jaxnets.sweep.run` events into a tqdm bar over evaluations (stderr) and saves each
    finished unit into the results directory the moment it arrives.

    The bar counts a group's evaluations (the sweep's ``evals``); the engine reports each evaluation once per
    block of variants, so a block's evaluation advances it by the block's share of its group's variants (a
    group trained in 4 blocks takes 4 events per evaluation), and a finished unit sets it to the unit's end.
    """

    def __init__(self, out: Path | None, metric: str, goal: str, quiet: bool):
        self.out, self.metric, self.goal, self.quiet = out, metric, goal, quiet
        self.bar: Any = None
        self.exact = True
        self.per_unit = 0.0
        self.best_live = math.inf
        self.best: float | None = None
        self.saved = 0
        self.done = 0.0  # evaluations done, with blocks' fractions
        self.unit_end = 0  # the bar's position once the current unit is done

    def __call__(self, event: Any) -> None:
        from jaxnets import events

        match event:
            case events.SweepStarted():
                from tqdm.auto import tqdm

                self.exact = event.exact
                self.per_unit = event.evals / max(event.n_units, 1)
                self.bar = tqdm(total=event.evals, unit="eval", disable=self.quiet, file=sys.stderr,
                                dynamic_ncols=True, desc="sweep")
            case events.UnitStarted():
                self._unit_start(event)
            case events.Compiling():
                self.bar.set_postfix_str("compiling")
            case events.Evaluated():
                finite = [v for v in event.val_loss.tolist() if math.isfinite(v)]
                self.best_live = min([self.best_live, *finite])
                self._postfix()
                block = len(event.val_loss)
                self._advance(self.done + block / max(event.n_variants, block))
            case events.UnitDone():
                self._unit_done(event)
            case events.Checkpoint() if self.out is not None:
                from jaxnets import store

                store.save_checkpoint(self.out, event.unit, event.fingerprint, event.state)

    def _unit_start(self, event: Any) -> None:
        i, n = event.index, event.n_units
        if not self.exact:
            # Bayesian rounds are estimated up front; correct the total once a round's size is known.
            remaining = (n - i - 1) * self.per_unit
            self.bar.total = max(int(round(self.bar.n + event.evals + remaining)), self.bar.n)
        state = "resumed" if event.resumed else f"{event.n_variants} variants"
        self.bar.set_description(f"{event.unit} ({i + 1}/{n}, {state})")
        if event.stale and not self.quiet:
            self.bar.write(f"{event.unit}: saved unit does not match this config's variants; retraining")
        self.unit_end = self.bar.n + event.evals
        if event.resumed:
            self._advance(self.unit_end)
        else:  # "compiling" once the engine says so (a Compiling event): a cached program starts at once
            self.bar.set_postfix_str("starting")

    def _advance(self, done: float) -> None:
        """Move the bar to ``done`` evaluations (whole ones shown), never past the current unit's end."""
        self.done = min(done, self.unit_end)
        step = int(self.done + 1e-9) - self.bar.n
        if step > 0:
            self.bar.update(step)

    def _unit_done(self, event: Any) -> None:
        from jaxnets import store

        self._advance(self.unit_end)
        res = event.result
        if not event.resumed and self.out is not None:
            store.save_unit(self.out, res)
            store.drop_checkpoint(self.out, res.key)
            self.saved += 1
        values = [v for v in res.columns[self.metric].tolist() if math.isfinite(v)]
        if values:
            pick = min if self.goal == "min" else max
            self.best = pick(values + ([] if self.best is None else [self.best]))
        self._postfix()

    def _postfix(self) -> None:
        post = {}
        if math.isfinite(self.best_live):
            post["val_loss"] = f"{self.best_live:.4g}"
        if self.best is not None:
            post[f"best {self.metric}"] = f"{self.best:.4g}"
        self.bar.set_postfix(post, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ---------------------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------------------


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def render_table(table, axes: Sequence[str], metric: str, goal: str, top: int) -> str:
    """The top ``top`` rows ranked by ``metric`` as text (rich), with status counts underneath."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from jaxnets.sweep import rank

    ranked = rank(table, metric, goal)
    shown = ranked.head(top) if top > 0 else ranked
    from jaxnets.result import COLUMNS

    shown_columns = [c for c in COLUMNS if c not in _HIDDEN_COLUMNS and c in ranked.columns]
    columns = ["variant", *[a for a in axes if a in ranked.columns], *shown_columns]
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False,
              title=f"top {len(shown)} of {len(ranked)} variants by {metric} ({goal})")
    t.add_column("rank", justify="right")
    for col in columns:
        t.add_column(col, justify="left" if col in axes or col == "status" else "right",
                     style="bold" if col == metric else None)
    for r, row in enumerate(shown.to_dict("records"), start=1):
        t.add_row(str(r), *[_fmt(row[c]) for c in columns])
    counts = ranked["status"].value_counts()
    console = Console(width=240, record=True, file=_Null())
    console.print(t)
    console.print("status: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return "\n".join(line.rstrip() for line in console.export_text().splitlines())


class _Null:
    """A write-only sink: rich records the text, :func:`render_table` returns it."""

    def write(self, _: str) -> int:
        return 0

    def flush(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------------------


def _quiet_libraries() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _describe_plan(p) -> str:
    cfg = p.config
    axes = ", ".join(f"{a.name} ({'range' if a.is_range else len(a.values)})" for a in cfg.axes) or "none"
    what = "round(s) of Optuna trials (rounds share their compiled programs)" if cfg.method == "bayesian" \
        else "static group(s), one compiled program each"
    shared = "".join(f"; {key} trains hidden {', '.join(str(list(h)) for h in archs)} in one program"
                     for key, archs in p.shared_architectures())
    return (f"{cfg.method} search on {p.dataset.name}: {p.n_variants} variants, {p.n_units} {what}; "
            f"axes: {axes}; metric {cfg.metric} ({cfg.goal}){shared}")


def _relative(path: Path, out: Path) -> str:
    try:
        return str(Path(path).relative_to(out))
    except ValueError:
        return str(path)


@contextlib.contextmanager
def _store_warnings(out: Path) -> Iterator[None]:
    """Print the store's warnings (a damaged unit, a stale lock) as one ``jaxnets: warning:`` line each, no
    traceback; other warnings are shown as usual."""
    from jaxnets import store

    with warnings.catch_warnings():
        warnings.simplefilter("always", store.CorruptUnitWarning)
        warnings.simplefilter("always", store.StaleLockWarning)
        show = warnings.showwarning

        def _show(message, category, filename, lineno, file=None, line=None):
            if isinstance(message, store.CorruptUnitWarning):
                text = f"{_relative(message.path, out)} is damaged ({message.reason}); retraining it"
            elif isinstance(message, store.StaleLockWarning):
                text = str(message)
            else:
                return show(message, category, filename, lineno, file, line)
            print(f"jaxnets: warning: {text}", file=sys.stderr)

        warnings.showwarning = _show
        yield


def run_sweep(config_path: Path, out: Path, *, quiet: bool, force: bool, top: int, dry_run: bool,
              compile_cache: bool = True, distributed: bool = False) -> int:
    """``jaxnets sweep``: check, plan, train (resuming), save, plot, print the ranked table.

    The directory's lock is held from before ``out`` is opened until the last file is written. With
    ``compile_cache``, :func:`jaxnets.compilation_cache.enable_from_env` turns on the persistent compilation
    cache before training (after the checks, so a dry run or a refused directory compiles and caches nothing).

    With ``distributed`` (this process is one of several, :func:`jaxnets.launch.initialize` done), every
    process builds the same plan and trains the same programs on the global mesh; only process 0 takes the
    lock, writes ``out`` and shows the plan and progress; the others resume from the units process 0 resumes
    from (:func:`jaxnets.launch.share_units`) and wait for it to finish writing.
    """
    from jaxnets import config, store, sweep

    writer = True
    if distributed:
        from jaxnets import launch

        writer = launch.process_index() == 0

    try:
        text = config.read_text(config_path)
    except config.ConfigError as e:
        raise UsageError(str(e)) from None
    try:
        cfg = config.loads(text, base_dir=config_path.parent)  # [data] path is relative to the config's folder
        _quiet_libraries()
        p = sweep.plan(cfg)
    except config.ConfigError as e:
        raise UsageError(f"{config_path}: {e}") from None
    if writer and (not quiet or dry_run):
        print(_describe_plan(p), file=sys.stderr)
    if dry_run:
        return 0
    with contextlib.ExitStack() as stack:
        stack.enter_context(_store_warnings(out))
        done: dict[str, UnitResult] = {}
        refused: UsageError | None = None
        if writer:
            try:
                stack.enter_context(store.lock(out))
                done = store.open_run(out, text, force=force)
            except store.DirectoryError as e:
                refused = UsageError(str(e))
        if distributed:
            done = launch.share_units(out, done, refused is not None)
        if refused is not None:
            raise refused
        # asha / pbt units resume mid-unit from process 0's checkpoints, on every process
        partial = store.load_checkpoints(out) if writer else {}
        if distributed:
            partial = launch.share_checkpoints(out, partial)
        if compile_cache:
            from jaxnets import compilation_cache

            try:
                compilation_cache.enable_from_env()
            except compilation_cache.UnsafeCacheDirError as e:
                raise UsageError(str(e)) from None
        if not writer:  # train the same programs; process 0 saves and writes everything
            try:
                sweep.run(p, done, partial=partial)
            except KeyboardInterrupt as e:
                return 128 + _signum(e)
            launch.barrier("jaxnets sweep: results written")
            return 0
        code = _train(p, cfg, out, done, partial, quiet=quiet, top=top)
        if distributed and code == 0:
            launch.barrier("jaxnets sweep: results written")
        return code


def _train(p: Plan, cfg: Config, out: Path, done: dict[str, UnitResult],
           partial: Mapping[str, tuple[str, Mapping[str, Any]]], *, quiet: bool, top: int) -> int:
    """Train (resuming from ``done`` and the ``asha`` / ``pbt`` checkpoints ``partial``), write the results
    and plots, print the ranked table (the lock held)."""
    from jaxnets import report, store, sweep

    progress = Progress(out, cfg.metric, cfg.goal, quiet)
    resuming = sorted(k for k in partial if k not in done)
    if resuming and not quiet:
        print(f"resuming {', '.join(resuming)} from {'its' if len(resuming) == 1 else 'their'} checkpoint "
              f"in {out}/{store.CHECKPOINTS}", file=sys.stderr)
    try:
        results = sweep.run(p, done, progress, partial)
    except KeyboardInterrupt as e:
        progress.close()
        print(f"jaxnets: {_interrupted_how(e)}: {_kept(out)}; run the same command again to resume",
              file=sys.stderr)
        return 128 + _signum(e)
    except store.StorageError as e:
        progress.close()
        return _storage_error(e, f"{_kept(out)}; once fixed, run the same command again to resume")
    finally:
        progress.close()
    table, history = sweep.assemble(results, cfg)
    try:
        csv, npz = store.write_results(out, table, history)
    except store.StorageError as e:
        return _storage_error(e, f"{_kept(out)}; once fixed, run the same command again to write the results")
    axes = [a.name for a in cfg.axes]
    try:
        *pngs, page = report.save(out, table, history, cfg.axes, cfg.metric, cfg.goal, cfg.method)
    except store.StorageError as e:
        return _storage_error(e, f"the results are written ({csv.name}, {npz.name}: jaxnets show {out}); once "
                              f"fixed, run the same command again, or jaxnets show {out} --plots, to redo the plots")
    print(render_table(table, axes, cfg.metric, cfg.goal, top))
    print(f"results: {csv}  {npz}")
    print(f"plots:   {'  '.join(str(p) for p in pngs)}")
    print(f"report:  {page}")
    print(f"ranked table again: jaxnets show {out}")
    return 0


def _kept(out: Path) -> str:
    """How many finished units are saved in ``out`` (for a message about a run that stopped)."""
    from jaxnets import store

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", store.CorruptUnitWarning)
        try:
            kept = len(store.load_units(out))
        except OSError:
            return f"the finished units are kept in {out}/{store.UNITS}"
    return f"{kept} finished unit(s) are saved in {out}/{store.UNITS}"


def _storage_error(e: Exception, then: str) -> int:
    """Print the one line for a write the machine refused (``e``, a :class:`jaxnets.store.StorageError`) and
    what is kept (``then``); return :data:`EXIT_STORAGE`."""
    print(f"jaxnets: error: {e}; {then}", file=sys.stderr)
    return EXIT_STORAGE


def run_show(out: Path, *, top: int, metric: str | None, draw: bool = False) -> int:
    """``jaxnets show``: print the ranked table of a finished results directory; with ``draw`` (``--plots``)
    also (re)draw ``plots/*.png`` and ``report.html`` from the saved results."""
    from jaxnets import config, store

    try:
        cfg = config.loads(store.read_config_text(out))
        table, history = store.read_results(out)
    except (store.DirectoryError, config.ConfigError) as e:
        raise UsageError(str(e)) from None
    goal = cfg.goal
    if metric is not None:
        if metric not in config.METRICS:
            raise UsageError(f"--metric {metric!r} is not valid; valid metrics: {', '.join(config.METRICS)}")
        goal = "max" if config.METRICS[metric] == "val_accuracy" else "min"
        metric = config.METRICS[metric]
    print(render_table(table, [a.name for a in cfg.axes], metric or cfg.metric, goal, top))
    return _draw(out, cfg, table, history, metric or cfg.metric, goal) if draw else 0


def _draw(out: Path, cfg: Config, table, history, metric: str, goal: str) -> int:
    """``jaxnets show --plots``: redraw the pictures and ``report.html`` of ``out`` ranked by ``metric``."""
    from jaxnets import report, store

    try:
        *pngs, page = report.save(out, table, history, cfg.axes, metric, goal, cfg.method)
    except store.StorageError as e:
        return _storage_error(e, f"the results in {out} are untouched; once fixed, run the same command again")
    print(f"plots:   {'  '.join(str(p) for p in pngs)}")
    print(f"report:  {page}")
    return 0


def demo_config() -> Path:
    """Path of the bundled demo config (package data ``jaxnets/configs/demo.toml``)."""
    return Path(str(resources.files("jaxnets") / "configs" / DEMO_CONFIG))


# ---------------------------------------------------------------------------------------------------------
# Argument parsing
# ---------------------------------------------------------------------------------------------------------


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or plan line")
    p.add_argument("--force", action="store_true",
                   help="discard results of a different config in --out instead of refusing (never breaks the "
                   "lock of a run in progress)")
    p.add_argument("--top", type=int, default=10, metavar="K", help="rows of the ranked table to print "
                   "(0: all; default 10)")
    p.add_argument("--no-compile-cache", action="store_true",
                   help="do not use the persistent compilation cache (default: on, in $XDG_CACHE_HOME/jaxnets/jax "
                   "or ~/.cache/jaxnets/jax; JAXNETS_COMPILE_CACHE=0 turns it off, =DIR picks the directory)")


def _add_distributed_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("many processes (one sweep across processes / hosts, JAX's distributed runtime)")
    g.add_argument("--coordinator", metavar="HOST:PORT", default=None,
                   help="process 0's address and a free port, the same for every process (env JAXNETS_COORDINATOR)")
    g.add_argument("--num-processes", type=int, metavar="N", default=None,
                   help="how many processes run this sweep (env JAXNETS_NUM_PROCESSES)")
    g.add_argument("--process-id", type=int, metavar="I", default=None,
                   help="this process's index, 0..N-1; process 0 writes --out (env JAXNETS_PROCESS_ID)")
    g.add_argument("--distributed", action="store_true",
                   help="let jax.distributed.initialize() detect a SLURM / Open MPI / TPU environment instead")


def build_parser() -> argparse.ArgumentParser:
    """The ``jaxnets`` argument parser (sub-commands ``sweep``, ``demo``, ``show``, ``launch``)."""
    parser = argparse.ArgumentParser(
        prog="jaxnets",
        description="Train hundreds of neural-network variants at once: sweeps from a TOML config.",
        epilog="exit codes: " + "; ".join(f"{code} {what}" for code, what in EXIT_CODES.items()) + ".",
    )
    parser.add_argument("--version", action="version", version=f"jaxnets {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("sweep", help="run a grid / random / Bayesian sweep from a config file",
                       description="Run a sweep; re-run the same command to resume after an interruption.")
    p.add_argument("config", type=Path, metavar="CONFIG.toml")
    p.add_argument("--out", "-o", type=Path, required=True, metavar="DIR", help="results directory")
    p.add_argument("--dry-run", action="store_true", help="check the config and print the plan; train nothing")
    _add_run_options(p)
    _add_distributed_options(p)

    p = sub.add_parser("demo", help="the bundled sweep: activation x initializer on a deep MLP (digits)",
                       description=f"Run the bundled demo config ({DEMO_CONFIG}).")
    p.add_argument("--out", "-o", type=Path, default=Path(DEFAULT_DEMO_OUT), metavar="DIR",
                   help=f"results directory (default {DEFAULT_DEMO_OUT})")
    p.add_argument("--print-config", action="store_true",
                   help="print the demo config (a start for your own sweep) and exit")
    _add_run_options(p)
    _add_distributed_options(p)

    p = sub.add_parser("show", help="print the ranked results table of a results directory")
    p.add_argument("dir", type=Path, metavar="DIR")
    p.add_argument("--top", type=int, default=20, metavar="K", help="rows to print (0: all; default 20)")
    p.add_argument("--metric", default=None, help="rank by this metric instead of the config's")
    p.add_argument("--plots", action="store_true",
                   help="also (re)draw DIR/plots/*.png (landscape, importance, ...) and DIR/report.html")

    from jaxnets.launch import GRACE_S

    p = sub.add_parser("launch", help="run a sweep as N processes on this machine (JAX's distributed runtime)",
                       description="Start N processes of one distributed sweep on 127.0.0.1 (a free port) and "
                       "forward their output with a [process i] prefix: jaxnets launch -n 2 -- sweep CONFIG "
                       "--out DIR. Emulated CPU devices per process: XLA_FLAGS="
                       "--xla_force_host_platform_device_count=K or JAX_NUM_CPU_DEVICES=K.")
    p.add_argument("-n", "--processes", type=int, required=True, metavar="N", help="number of processes")
    p.add_argument("--grace", type=float, default=GRACE_S, metavar="SECONDS",
                   help=f"once one process fails, how long the others may take to end (default {GRACE_S:g})")
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- sweep CONFIG --out DIR [...]",
                   help="the jaxnets command each process runs")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jaxnets`` console script; returns the exit code."""
    from jaxnets import launch

    args = build_parser().parse_args(argv)
    if args.command == "launch":
        try:
            return launch.launch(args.processes, args.argv, grace_s=args.grace)
        except launch.DistributedError as e:
            print(f"jaxnets: error: {e}", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:  # Ctrl-C again while the processes were being stopped: they are killed
            return 128 + signal.SIGINT
    state = {"distributed": False}
    with _stop_signals():
        code = _command(args, state)
    if state["distributed"] and code == EXIT_STORAGE:  # as launch.abort: end at once, the others see it and stop
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _command(args: argparse.Namespace, state: dict[str, bool]) -> int:
    """Run ``sweep`` / ``demo`` / ``show`` (SIGTERM and SIGHUP handled as Ctrl-C); the exit code. Sets
    ``state["distributed"]`` once this process has joined a distributed run."""
    from jaxnets import launch, store

    try:
        if args.command in ("sweep", "demo") and not getattr(args, "print_config", False):
            setup = launch.resolve(args.coordinator, args.num_processes, args.process_id, args.distributed)
            if setup is not None:
                launch.initialize(setup)  # before anything touches JAX
                state["distributed"] = True
        if args.command == "sweep":
            return run_sweep(args.config, args.out, quiet=args.quiet, force=args.force, top=args.top,
                             dry_run=args.dry_run, compile_cache=not args.no_compile_cache,
                             distributed=state["distributed"])
        if args.command == "demo" and args.print_config:
            print(demo_config().read_text(encoding="utf-8"), end="")
            return EXIT_OK
        if args.command == "demo":
            return run_sweep(demo_config(), args.out, quiet=args.quiet, force=args.force, top=args.top,
                             dry_run=False, compile_cache=not args.no_compile_cache, distributed=state["distributed"])
        return run_show(args.dir, top=args.top, metric=args.metric, draw=args.plots)
    except (UsageError, launch.DistributedError) as e:
        print(f"jaxnets: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except store.StorageError as e:
        return _storage_error(e, "no unit was trained in this run; once fixed, run the same command again")
    except KeyboardInterrupt as e:  # outside training (checks, opening the directory, writing the results)
        where = "; run the same command again to resume" if args.command != "show" else ""
        print(f"jaxnets: {_interrupted_how(e)}{where}", file=sys.stderr)
        return 128 + _signum(e)
    except Exception as e:
        if not state["distributed"]:
            raise
        launch.abort(e)  # one line, then exit 1 at once (the others see this process go)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
