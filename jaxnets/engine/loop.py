"""THE training loop: every static group's blocks, segment by segment, with or without a population policy.

A *segment* is the evaluations between two boundaries. Without a policy a group is one segment (init,
evaluation 0, then every chunk to the last evaluation), group after group. With a policy
(:class:`jaxnets.population.Policy`) every group runs up to the next boundary, side by side, then the policy
sees every variant (:class:`jaxnets.population.View`) and its :class:`jaxnets.population.Decision` prunes
variants or makes them copy others before the next segment::

    every group: init + evaluation 0 ─► chunks up to the next boundary (blocks of the active variants)
      ─► state to the host ─► policy.decide(View) ─► prune / pending copies ─► checkpoint(snapshot)
      ─► next segment (survivors re-blocked; pending copies applied on device first) ─► ...
      ─► final evaluation (test split) ─► a test pass for the variants that stopped earlier

Everything a decision uses is on the host and deterministic, so a run resumed from a snapshot (``resume=``)
ends with the same numbers as an uninterrupted one. Python runs per chunk (or per step, with the host loop
strategy), never inside a compiled program.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxnets import events
from jaxnets.engine import compile as compile_lib
from jaxnets.engine import plan as plan_lib
from jaxnets.engine.options import Options, Tuning
from jaxnets.engine.programs import OK, PRUNED, Program
from jaxnets.engine.transfer import data_to_keys, keys_to_data, take, to_device, to_host
from jaxnets.population import View
from jaxnets.result import METRICS, STATUS_NAMES, TEST_METRICS, GroupResult, Result

__all__ = ["run"]

ProgressFn = Callable[[events.Event], None]
Snapshot = dict[str, np.ndarray]


@dataclasses.dataclass
class _Call:
    """What every group of one call shares: the mesh, the tuning, the policy, the progress callback."""

    devices: Sequence[Any]
    shard: NamedSharding
    replicated: NamedSharding
    tuning: Tuning
    options: Options
    report: ProgressFn
    policy: Any
    keys: tuple[str, ...]  # the hyperparameters an exploiting policy explores

    @property
    def exploits(self) -> bool:
        return self.policy is not None and self.policy.exploits


class _Group:
    """One static group's host-side state during a call: hyperparameters, training state, histories."""

    def __init__(self, prog: Program, gi: int, call: _Call, budget: int | None):
        self.prog, self.gi = prog, gi
        self.v = len(prog.rows)
        self.hyper = {k: np.array(a) for k, a in prog.stack().items()}
        missing = [k for k in call.keys if k not in self.hyper]
        if missing:
            raise ValueError(f"the policy explores {missing}, which are not vmapped hyperparameters")
        n_dev = len(call.devices)
        fp = plan_lib.footprint(prog, {k: a[:1] for k, a in self.hyper.items()}, prog.data)
        self.small_eval = fp.eval <= call.tuning.small_eval_bytes
        self.strategy = call.options.loop or plan_lib.loop_strategy(fp, call.devices[0].platform)
        if call.exploits:
            self.size0 = -(-self.v // n_dev) * n_dev  # one block: the whole group is ranked together
        else:
            budget = budget or plan_lib.memory_budget(call.devices)
            self.size0 = plan_lib.block_size(self.v, n_dev, fp, budget, call.options.max_variants_per_program,
                                             call.tuning, self.strategy)
        self.data = to_device(prog.data, call.replicated)
        n_evals, keys = prog.spec.n_evals, call.keys
        self.state: Any = None  # TrainState of [v, ...] NumPy arrays (key leaves as key data) once initialized
        self.impls: list[Any] = []  # the key implementation of each state leaf (transfer.keys_to_data)
        self.hist: dict[str, np.ndarray] = {}
        self.test = {k: np.full(self.v, np.nan, np.float32) for k in TEST_METRICS}
        self.tested = np.zeros(self.v, bool)
        self.parent = np.full((self.v, n_evals), -1, np.int64)
        self.hp_hist = {k: np.full((self.v, n_evals), np.nan) for k in keys}
        self.pending: tuple[np.ndarray, dict, dict] | None = None
        self.model_steps = 0
        self.compile_s = self.run_s = self.wall_s = 0.0
        self.n_blocks = 0
        self.shapes: list[tuple[int, Any]] = []  # (block size, activation layout) of each compiled chunk program

    def template(self) -> Any:
        """The [1]-stacked training state's shapes (its tree structure)."""
        hp1 = {k: a[:1] for k, a in self.hyper.items()}
        return jax.eval_shape(self.prog.init_batch, hp1, self.prog.data_shapes())

    def store(self, host: Any, rows: np.ndarray, keep: np.ndarray) -> None:
        """``state[rows] = host[keep]`` (``host``: a block's state on the host)."""
        host, impls = keys_to_data(host)
        if self.state is None:
            self.state = jax.tree.map(lambda x: np.empty((self.v, *x.shape[1:]), x.dtype), host)
            self.impls = impls
        for d, x in zip(jax.tree.leaves(self.state), jax.tree.leaves(host), strict=True):
            d[rows] = x[keep]

    def rows_on_device(self, where: np.ndarray, shard: NamedSharding) -> Any:
        """The training state of the variants ``where`` on ``shard``."""
        return to_device(data_to_keys(take(where, self.state), self.impls), shard)

    def record(self, m: Mapping[str, np.ndarray], e: int, rows: np.ndarray, keep: np.ndarray) -> None:
        """Evaluation ``e``'s metrics ``m`` (a block's, [size]) of the variants ``rows`` (its real positions
        ``keep``)."""
        if not self.hist:
            n_evals = self.prog.spec.n_evals
            self.hist = {k: np.full((self.v, n_evals, *m[k].shape[1:]), np.nan, np.float32) for k in METRICS}
        for k in METRICS:
            self.hist[k][rows, e] = m[k][keep]
        if e == self.prog.spec.n_evals - 1:
            for k in TEST_METRICS:
                self.test[k][rows] = m[k][keep]
            self.tested[rows] = True

    def result(self, exploits: bool) -> GroupResult:
        """The group's :class:`jaxnets.result.GroupResult`."""
        history = dict(self.hist)
        if exploits:
            history["parent"] = self.parent
            history |= {f"hp_{k}": a for k, a in self.hp_hist.items()}
        state = data_to_keys(self.state, self.impls)
        prog = self.prog
        return GroupResult(
            spec=prog.spec, indices=np.asarray(prog.indices), rows=list(prog.rows), params=state.params,
            status=state.status, stopped_step=state.stopped_step, best_val_loss=state.best_val, history=history,
            eval_steps=prog.spec.eval_steps, compile_s=self.compile_s, run_s=self.run_s, wall_s=self.wall_s,
            n_blocks=self.n_blocks, model_state=state.model_state, test=self.test,
            layer_names=list(prog.layer_names), program=prog, model_steps=self.model_steps, loop=self.strategy,
        )


def _block_plan(G: _Group, rows: np.ndarray, call: _Call, train: bool = True) -> plan_lib.BlockPlan:
    """Where ``rows`` train (:func:`jaxnets.engine.plan.reblock`: in blocks of a program this group has
    compiled already when that wastes little, else in a new program's blocks). A covered group
    (``Options.cover``) and a population that exploits order no variants by activation."""
    n_act = 1 if call.exploits or G.prog.spec.covered else len(G.prog.spec.activations)
    return plan_lib.reblock(G.hyper["activation"], rows, G.size0, len(call.devices), n_act, G.shapes,
                            call.tuning.reuse_padding if train else None)


def _programs(G: _Group, prog: Program, hp: Any, call: _Call, init: bool) -> compile_lib.Compiled:
    """The block's compiled programs (from the cache, else compiled now: a ``Compiling`` event first)."""
    def compiling() -> None:
        call.report(events.Compiling(group=G.gi, n_variants=G.v))

    compiled, seconds = compile_lib.programs(prog, hp, G.data, call.shard, call.tuning, call.devices, init=init,
                                             strategy=G.strategy, small_eval=G.small_eval, on_compile=compiling)
    G.compile_s += seconds
    size = len(hp["seed"])
    if (size, prog.layout) not in G.shapes:
        G.shapes.append((size, prog.layout))
    return compiled


def _adopt(G: _Group, prog: Program, where: np.ndarray, keep: np.ndarray, state: Any, e: int,
           call: _Call) -> tuple[Any, Any]:
    """Apply the group's pending copies to a block (its variants ``where``) before evaluation ``e``'s chunk:
    the explored hyperparameters are decided here, on the host (:meth:`jaxnets.population.Policy.explore`),
    the copy runs on device. Returns the block's ``(state, hp)`` on device."""
    par, fac, val = G.pending
    size = len(where)
    pos = np.empty(G.v, np.int64)
    pos[where[::-1]] = np.arange(size)[::-1]  # a row's first position in the block
    moved = par[where] != where
    parent = pos[par[where]].astype(np.int32)
    new = {k: (a[where] if k == "seed" else a[par[where]]) for k, a in G.hyper.items()}
    for k in call.keys:
        explored = call.policy.explore(k, new[k], fac[k][where], val[k][where]).astype(new[k].dtype)
        new[k] = np.where(moved, explored, new[k])
    for k, a in new.items():
        G.hyper[k][where[keep]] = a[keep]
    mv = keep[moved[keep]]
    G.parent[where[mv], e] = np.asarray(G.prog.indices)[where[parent[mv]]]
    hp = to_device(new, call.shard)
    sig = compile_lib.signature(prog, size, call.devices, G.strategy)
    adopt, _ = compile_lib.cached((sig, "adopt", call.keys),
                                  lambda: compile_lib.compile_adopt(prog, call.keys, hp, call.shard, call.tuning))
    return adopt(state, hp, to_device(parent, call.shard)), hp


def _train_block(G: _Group, plan: plan_lib.BlockPlan, start: int, where: np.ndarray, keep: np.ndarray, a: int,
                 b: int, call: _Call) -> None:
    """Evaluations ``a + 1 .. b`` of one block (``a = -1``: init and evaluation 0 first)."""
    spec = G.prog.spec
    prog = G.prog.laid_out(plan.layout)
    hp = to_device({k: arr[where] for k, arr in G.hyper.items()}, call.shard)
    programs = _programs(G, prog, hp, call, init=a < 0)
    tr = time.perf_counter()
    state = programs.init(hp, G.data) if a < 0 else G.rows_on_device(where, call.shard)
    if a >= 0 and G.pending is not None:
        state, hp = _adopt(G, prog, where, keep, state, a + 1, call)
    rows = where[keep]
    for e in range(a + 1, b + 1):
        first_step = np.int32(spec.eval_steps[e - 1] if e > 0 else 0)
        state, m = programs.chunk(state, hp, G.data, np.bool_(e > 0), np.bool_(e == spec.n_evals - 1), first_step)
        m = to_host(m)
        G.record(m, e, rows, keep)
        for k in call.keys:
            G.hp_hist[k][rows, e] = G.hyper[k][rows]
        if e > 0:
            G.model_steps += len(keep) * spec.eval_every
            call.report(events.Evaluated(group=G.gi, block_start=start, eval=e, n_evals=spec.n_evals,
                                         step=int(spec.eval_steps[e]), val_loss=m["val_loss"][keep], n_variants=G.v))
    if call.policy is None:  # nothing trains on: keep only what the result holds
        state = state._replace(opt_state=None, best_params=None, last=None)
    G.store(to_host(state), rows, keep)
    G.run_s += time.perf_counter() - tr


def _segment(G: _Group, a: int, b: int, call: _Call) -> None:
    """Evaluations ``a + 1 .. b`` of group ``G`` (``a = -1``: init and evaluation 0 first), block by block."""
    tw = time.perf_counter()
    every = a < 0 or call.exploits  # an exploiting policy's group is one block of every variant
    rows = np.arange(G.v) if every else np.flatnonzero(G.state.status == OK)
    if len(rows):
        plan = _block_plan(G, rows, call)
        G.n_blocks = max(G.n_blocks, plan.n_blocks)
        for start, where, keep in plan.blocks():
            _train_block(G, plan, start, where, keep, a, b, call)
        G.pending = None
    inactive = np.setdiff1d(np.arange(G.v), rows)
    for e in range(max(a + 1, 1), b + 1):  # stopped variants repeat their last values
        for k in METRICS:
            G.hist[k][inactive, e] = G.hist[k][inactive, e - 1]
        for k in call.keys:
            G.hp_hist[k][inactive, e] = G.hp_hist[k][inactive, e - 1]
    G.wall_s += time.perf_counter() - tw


def _test_pass(G: _Group, call: _Call) -> None:
    """Test metrics of the variants that stopped before the last evaluation, from their final parameters."""
    rows = np.flatnonzero(~G.tested)
    if not len(rows):
        return
    spec = G.prog.spec
    plan = _block_plan(G, rows, call, train=False)
    for _, where, keep in plan.blocks():
        prog = G.prog.laid_out(plan.layout)
        hp = to_device({k: arr[where] for k, arr in G.hyper.items()}, call.shard)
        programs = _programs(G, prog, hp, call, init=False)
        _, m = programs.chunk(G.rows_on_device(where, call.shard), hp, G.data, np.bool_(False), np.bool_(True),
                              np.int32(spec.eval_steps[-2]))
        m = to_host(m)
        for k in TEST_METRICS:
            G.test[k][where[keep]] = m[k][keep]


# --------------------------------------------------------------------------------------------------------
# A population policy's side: views, decisions, snapshots
# --------------------------------------------------------------------------------------------------------


class _Population:
    """Every group of a call under a policy, and the variant order of the call (``back``: call order ->
    position in the groups' concatenation)."""

    def __init__(self, groups: Sequence[_Group], n_variants: int):
        self.groups = groups
        self.index = np.concatenate([np.asarray(G.prog.indices) for G in groups])
        self.group = np.concatenate([np.full(G.v, G.gi) for G in groups])
        self.local = np.concatenate([np.arange(G.v) for G in groups])
        self.back = np.empty(n_variants, np.int64)
        self.back[self.index] = np.arange(len(self.index))
        self.n_variants = n_variants

    def _cat(self, get: Callable[[_Group], np.ndarray]) -> np.ndarray:
        return np.concatenate([get(G) for G in self.groups])[self.back]

    def view(self, e: int) -> View:
        """Every variant at evaluation ``e``, in call order (a :class:`jaxnets.population.View`)."""
        spec0 = self.groups[0].prog.spec
        metrics = {k: self._cat(lambda G, k=k: G.hist[k][:, e]) for k in ("train_loss", "val_loss", "val_accuracy")}
        metrics |= {f"final_{k}": metrics[k] for k in ("train_loss", "val_loss")}
        metrics["best_val_loss"] = self._cat(lambda G: G.state.best_val)
        hp_keys = sorted(set.intersection(*(set(G.hyper) for G in self.groups)))
        return View(e=e, step=int(spec0.eval_steps[e]), steps=int(spec0.steps),
                    group=self._cat(lambda G: np.full(G.v, G.gi)),
                        status=np.array(STATUS_NAMES)[self._cat(lambda G: G.state.status)], metrics=metrics,
                        hp={k: self._cat(lambda G, k=k: G.hyper[k]) for k in hp_keys})

    def apply(self, e: int, d: Any, exploits: bool, keys: Sequence[str]) -> None:
        """Carry out decision ``d`` taken after evaluation ``e``: prune now, copy at the next segment."""
        n, eval_steps = self.n_variants, self.groups[0].prog.spec.eval_steps
        if d.keep is not None:
            keep = np.asarray(d.keep, bool)[self.index]  # concatenation order
            for G in self.groups:
                prune = ~keep[self.group == G.gi] & (G.state.status == OK)
                G.state.status[prune] = PRUNED
                G.state.stopped_step[prune] = eval_steps[e]
        if d.parent is None or not np.any(np.asarray(d.parent) >= 0):
            return
        if not exploits:
            raise ValueError("the decision copies variants (parent), but the policy's exploits is False")
        parent = np.asarray(d.parent, np.int64)
        for G in self.groups:
            mine = np.asarray(G.prog.indices)
            par = parent[mine]
            copy = par >= 0
            if np.any(self.group[self.back[par[copy]]] != G.gi):
                raise ValueError("a decision copies a variant of another static group; copies stay in a group")
            local = np.where(copy, self.local[self.back[np.maximum(par, 0)]], np.arange(G.v))
            fac = {k: np.where(copy, np.asarray(d.factor.get(k, np.ones(n)))[mine], 1.0) for k in keys}
            val = {k: np.where(copy, np.asarray(d.value.get(k, np.full(n, np.nan)))[mine], np.nan) for k in keys}
            if np.any(copy):  # applied on device before the next chunk (status included: the parent's)
                G.pending = (local, fac, val)

    def snapshot(self, e: int) -> Snapshot:
        """Everything a resumed call needs to go on after evaluation ``e`` (flat ``{name: array}``)."""
        out: Snapshot = {"e": np.int64(e)}
        for G in self.groups:
            p = f"g{G.gi}."
            for i, leaf in enumerate(jax.tree.leaves(G.state)):
                out[f"{p}state.{i}"] = leaf
            out |= {f"{p}hp.{k}": a for k, a in G.hyper.items()}
            out |= {f"{p}hist.{k}": a for k, a in G.hist.items()}
            out |= {f"{p}hphist.{k}": a for k, a in G.hp_hist.items()}
            out[f"{p}parent"] = G.parent
            out[f"{p}model_steps"] = np.int64(G.model_steps)
            out[f"{p}shapes"] = np.array(json.dumps(G.shapes))  # the programs' blocks: a resumed run plans the same
            if G.pending is not None:
                par, fac, val = G.pending
                out[f"{p}pending.parent"] = par
                out |= {f"{p}pending.factor.{k}": a for k, a in fac.items()}
                out |= {f"{p}pending.value.{k}": a for k, a in val.items()}
        return {k: np.array(a) for k, a in out.items()}  # copies: the run goes on changing its own arrays

    def restore(self, snap: Mapping[str, np.ndarray]) -> int:
        """Load a :meth:`snapshot`; returns its evaluation."""
        try:
            for G in self.groups:
                self._restore_group(G, snap)
            return int(snap["e"])
        except KeyError as e:
            raise ValueError(f"resume= is not a snapshot of this call (checkpoint=): it has no {e.args[0]!r}"
                             ) from None

    @staticmethod
    def _restore_group(G: _Group, snap: Mapping[str, np.ndarray]) -> None:
        p = f"g{G.gi}."
        treedef = jax.tree.structure(G.template())
        G.state = jax.tree.unflatten(treedef, [np.array(snap[f"{p}state.{i}"]) for i in range(treedef.num_leaves)])
        G.impls = [None] * treedef.num_leaves
        G.hyper = {k: np.array(snap[f"{p}hp.{k}"]) for k in G.hyper}
        G.hist = {k: np.array(snap[f"{p}hist.{k}"]) for k in METRICS}
        G.hp_hist = {k: np.array(snap[f"{p}hphist.{k}"]) for k in G.hp_hist}
        G.parent = np.array(snap[f"{p}parent"])
        G.model_steps = int(snap[f"{p}model_steps"])
        G.shapes = [(int(size), None if layout is None else tuple((int(k), int(c)) for k, c in layout))
                    for size, layout in json.loads(str(snap[f"{p}shapes"]))]
        if f"{p}pending.parent" in snap:
            G.pending = (np.array(snap[f"{p}pending.parent"]),
                         {k: np.array(snap[f"{p}pending.factor.{k}"]) for k in G.hp_hist},
                         {k: np.array(snap[f"{p}pending.value.{k}"]) for k in G.hp_hist})


def _boundaries(progs: Sequence[Program], policy: Any) -> list[int]:
    """The evaluations after which ``policy`` decides (every group must share one schedule)."""
    schedules = {(p.spec.steps, p.spec.eval_every) for p in progs}
    if len(schedules) > 1:
        raise ValueError(f"a population policy needs the same steps and eval_every in every static group; got "
                         f"(steps, eval_every) = {sorted(schedules)}")
    spec0 = progs[0].spec
    return sorted(e for e in policy.boundaries(spec0) if 0 < e < spec0.n_evals - 1)


def _run_policy(groups: Sequence[_Group], call: _Call, bounds: Sequence[int], n_variants: int,
                checkpoint: Callable[[Snapshot], None] | None, resume: Mapping[str, np.ndarray] | None) -> None:
    """Every group segment by segment, side by side, with the policy's decisions at ``bounds``."""
    pop = _Population(groups, n_variants)
    done = pop.restore(resume) if resume is not None else -1
    n_evals = groups[0].prog.spec.n_evals
    for s in [s for s in [*bounds, n_evals - 1] if s > done]:
        for G in groups:
            _segment(G, done, s, call)
            if G.state is not None and any(impl is not None for impl in G.impls):
                raise ValueError("population policies do not support models with PRNG-key state (NNX rngs)")
        if s in bounds:
            pop.apply(s, call.policy.decide(pop.view(s)), call.exploits, call.keys)
            if checkpoint is not None:
                checkpoint(pop.snapshot(s))
        done = s
    for G in groups:
        _test_pass(G, call)


def run(progs: Sequence[Program], *, n_variants: int, options: Options, progress: ProgressFn | None = None,
        policy: Any = None, checkpoint: Callable[[Snapshot], None] | None = None,
        resume: Mapping[str, np.ndarray] | None = None) -> Result:
    """Train the static groups ``progs`` (checked, from :func:`jaxnets.engine.checks.build_programs`): what
    :func:`jaxnets.engine.train` runs. Arguments as there; returns the :class:`jaxnets.result.Result`."""
    devices = list(options.devices or jax.devices())
    if policy is None and (checkpoint is not None or resume is not None):
        raise ValueError("checkpoint= and resume= go with a population policy (policy=)")
    bounds = _boundaries(progs, policy) if policy is not None else []
    if policy is not None and policy.exploits and any(p.spec.mixed for p in progs):
        raise ValueError("a policy that copies parameters between variants (PBT) needs groups of one architecture "
                         "each: train with engine.Options(mix_architectures=False) (or 'auto')")
    mesh = jax.make_mesh((len(devices),), ("variants",), devices=devices, axis_types=(AxisType.Auto,))
    keys = tuple(policy.hp_keys) if policy is not None and policy.exploits else ()
    call = _Call(devices=devices, shard=NamedSharding(mesh, P("variants")), replicated=NamedSharding(mesh, P()),
                 tuning=options.tuning_on(devices[0].platform), options=options,
                 report=progress or (lambda event: None), policy=policy, keys=keys)
    budget = options.memory_budget_bytes or plan_lib.memory_budget(devices)
    groups = [_Group(prog, gi, call, budget) for gi, prog in enumerate(progs)]
    if policy is None:
        for G in groups:
            _segment(G, -1, G.prog.spec.n_evals - 1, call)
    else:
        _run_policy(groups, call, bounds, n_variants, checkpoint, resume)
    return Result.from_groups([G.result(call.exploits) for G in groups], n_variants=n_variants)
