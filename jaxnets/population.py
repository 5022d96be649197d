"""Population policies: successive halving (ASHA) and population-based training (PBT) at evaluation boundaries.

The engine has ONE hook for both (``engine.train(..., policy=...)``): a :class:`Policy` names the evaluations
where it acts (:meth:`Policy.boundaries`) and, at each, sees every variant of the call (:class:`View`: metrics,
status, static group, vmapped hyperparameters) and returns a :class:`Decision`:

* ``keep`` [V] bool: the variants still training that are not kept get status ``pruned``, ``stopped_step`` =
  that evaluation's step, and stop changing (their parameters and step counters are frozen). Pruned variants
  stop costing compute: between chunks the survivors are compacted into fewer blocks — of a program compiled
  already while its padding stays within :data:`REUSE_PADDING` times a tight block's, else of a new program
  for a power-of-two block — so a sweep compiles few programs (each is cached);
* ``parent`` [V] int (-1: unchanged): the variant copies the parameters, optimizer state and training state
  of ``parent`` (a variant of the same static group) and takes its hyperparameters, except its own ``seed``;
  ``factor`` / ``value`` (per key, [V]) then set each explored hyperparameter to ``value`` where it is finite
  (a resample), else to the parent's value times ``factor`` (a perturbation). The copy (a gather along the
  variant axis) and the arithmetic on the hyperparameters (``hp`` and the optimizer's injected
  ``opt_state.hyperparams``) run inside the compiled chunk that trains the next steps.

Data path with a policy (see :func:`run`)::

    every group: init + evaluation 0 ─► segment of chunks up to the next boundary (blocks of active variants)
      ─► state to the host ─► policy.decide(View) ─► prune / pending exploit ─► checkpoint(snapshot)
      ─► next segment (survivors re-blocked; an exploiting policy's first chunk applies the copy) ─► ...
      ─► final evaluation (test split) ─► a test pass for the variants that stopped earlier

Groups are run segment by segment side by side, so a decision sees every group at the same evaluation: every
group must have the same ``steps`` and ``eval_every``. Everything the decisions use is on the host and
deterministic, so a run resumed from a snapshot (``resume=``) ends with the same numbers as an uninterrupted
one.

Example::

    from jaxnets import data, engine, population
    ds = data.load("iris")
    rows = [{"hidden": (8,), "learning_rate": lr, "steps": 90, "eval_every": 10, "batch_size": 16}
            for lr in (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0, 10.0)]
    result = engine.train(rows, ds, policy=population.ASHA(min_steps=10, eta=3))
    result.status            # 6 pruned at step 10, 2 more at step 30, one trained to step 90
    result.model_steps       # 9 * 10 + 3 * 20 + 1 * 60 = 210 (vs 9 * 90 = 810)
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxnets import events
from jaxnets.result import METRICS, STATUS_NAMES, TEST_METRICS, GroupResult, Result

__all__ = ["View", "Decision", "Policy", "ASHA", "PBT", "PRUNED", "PERTURB_KEYS", "run"]

OK, PRUNED = STATUS_NAMES.index("ok"), STATUS_NAMES.index("pruned")

#: Vmapped hyperparameters PBT may explore (floats that can change during training), with the bounds a
#: perturbed value is clipped to.
PERTURB_KEYS: dict[str, tuple[float, float]] = {
    "learning_rate": (0.0, math.inf), "weight_decay": (0.0, math.inf), "l2": (0.0, math.inf),
    "dropout": (0.0, 0.99), "momentum": (0.0, 0.9999), "b1": (0.0, 0.9999), "b2": (0.0, 0.9999),
    "rho": (0.0, 0.9999), "clip_norm": (0.0, math.inf),
}

Snapshot = dict[str, np.ndarray]
CheckpointFn = Callable[[Snapshot], None]


@dataclasses.dataclass(frozen=True)
class View:
    """Every variant of a ``train`` call at one evaluation, as a policy sees it (arrays are [V], call order).

    Attributes:
      e: the evaluation's index (0 is step 0).
      step: the evaluation's training step.
      steps: the training steps of every variant (the same for all).
      group: [V] each variant's static group.
      status: [V] each variant's status name (``ok``, ``diverged``, ``early_stopped``, ``pruned``).
      metrics: ``train_loss``, ``val_loss``, ``val_accuracy`` (also as ``final_*``) at this evaluation and
        ``best_val_loss`` so far, each [V].
      hp: the vmapped hyperparameters in effect, ``{key: [V]}``.
    """

    e: int
    step: int
    steps: int
    group: np.ndarray
    status: np.ndarray
    metrics: dict[str, np.ndarray]
    hp: dict[str, np.ndarray]

    def score(self, metric: str, goal: str) -> np.ndarray:
        """[V] ``metric`` as a cost (lower is better; negated for ``goal == "max"``), +inf where not finite."""
        v = np.asarray(self.metrics[metric], np.float64)
        s = v if goal == "min" else -v
        return np.where(np.isfinite(s), s, np.inf)


@dataclasses.dataclass(frozen=True)
class Decision:
    """What happens after an evaluation (see the module docstring).

    Attributes:
      keep: [V] bool, ``None``: every variant continues. Variants still training and not kept are pruned.
      parent: [V] int, -1 where unchanged; ``None``: no copies.
      factor: ``{key: [V]}`` multipliers of the parent's value for the copying variants (1: unchanged).
      value: ``{key: [V]}`` new values for the copying variants, NaN where ``factor`` applies instead.
    """

    keep: np.ndarray | None = None
    parent: np.ndarray | None = None
    factor: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    value: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


class Policy:
    """A population policy: subclass and implement :meth:`boundaries` and :meth:`decide`.

    Attributes:
      exploits: True when decisions copy variants (``parent``): each static group then runs as ONE block (so
        the whole group is ranked together) and its blocks compute every activation (a copy may change a
        variant's activation).
      hp_keys: the hyperparameters a decision may change (``factor`` / ``value`` keys); their values per
        evaluation are recorded as ``hp_<key>`` histories, with ``parent``.
    """

    exploits: bool = False
    hp_keys: tuple[str, ...] = ()

    def boundaries(self, spec: Any) -> set[int]:
        """The evaluation indices (1 .. n_evals - 2) after which :meth:`decide` is called.

        Args:
          spec: the static part of the groups (:class:`jaxnets.variants.GroupSpec`; ``steps``, ``eval_every``).

        Returns:
          the evaluation indices.

        Raises:
          ValueError: the policy's settings do not fit the training schedule.
        """
        raise NotImplementedError

    def decide(self, view: View) -> Decision:
        """The decision after evaluation ``view.e``.

        Args:
          view: every variant's metrics, status, group and hyperparameters.

        Returns:
          the :class:`Decision`.
        """
        raise NotImplementedError


def _ranked(idx: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """``idx`` sorted best first by ``cost`` (lower is better), ties by index."""
    return idx[np.lexsort((idx, cost[idx]))]


@dataclasses.dataclass(frozen=True)
class ASHA(Policy):
    """Successive halving over evaluation rungs (``brackets > 1``: Hyperband's brackets).

    Bracket ``b`` (variant ``i`` is in bracket ``i % brackets``) has rungs at ``min_steps * eta ** (b + k)``
    steps, k = 0, 1, ... below ``steps``. At a rung, of the bracket's variants still training (status
    ``ok``), the best ``max(1, n // eta)`` by ``metric`` continue (not-finite values rank last, ties by
    variant index); the others are pruned. With everything in lockstep, asynchronous successive halving makes
    the same decisions as synchronous successive halving.

    Attributes:
      min_steps: the first rung, in steps (a multiple of ``eval_every``, below ``steps``).
      eta: the reduction factor (an integer >= 2).
      brackets: the number of brackets.
      metric: the :class:`View` metric ranked (e.g. ``val_loss``, ``best_val_loss``, ``val_accuracy``).
      goal: ``"min"`` or ``"max"``.
    """

    min_steps: int
    eta: int = 3
    brackets: int = 1
    metric: str = "val_loss"
    goal: str = "min"

    def rungs(self, steps: int, bracket: int = 0) -> list[int]:
        """The rungs (in steps) of ``bracket`` for ``steps`` training steps."""
        out, r = [], self.min_steps * self.eta ** bracket
        while r < steps:
            out.append(r)
            r *= self.eta
        return out

    def boundaries(self, spec: Any) -> set[int]:
        if not isinstance(self.eta, int) or self.eta < 2:
            raise ValueError(f"ASHA: eta = {self.eta!r} must be an integer >= 2")
        if not isinstance(self.brackets, int) or self.brackets < 1:
            raise ValueError(f"ASHA: brackets = {self.brackets!r} must be a positive integer")
        if not isinstance(self.min_steps, int) or self.min_steps < 1 or self.min_steps % spec.eval_every:
            raise ValueError(f"ASHA: min_steps = {self.min_steps!r} must be a positive multiple of eval_every "
                             f"({spec.eval_every}), so that every rung is an evaluation")
        if self.min_steps >= spec.steps:
            raise ValueError(f"ASHA: min_steps = {self.min_steps} must be below steps ({spec.steps})")
        return {r // spec.eval_every for b in range(self.brackets) for r in self.rungs(spec.steps, b)}

    def decide(self, view: View) -> Decision:
        n = len(view.group)
        keep = np.ones(n, bool)
        cost = view.score(self.metric, self.goal)
        bracket = np.arange(n) % self.brackets
        for b in range(self.brackets):
            if view.step not in self.rungs(view.steps, b):
                continue
            alive = np.flatnonzero((bracket == b) & (view.status == "ok"))
            survivors = _ranked(alive, cost)[:max(1, len(alive) // self.eta)]
            keep[alive] = False
            keep[survivors] = True
        return Decision(keep=keep)


Space = tuple  # ("range", low, high, log) or ("choice", values)


@dataclasses.dataclass(frozen=True)
class PBT(Policy):
    """Population-based training: every ``interval`` evaluations, per static group, the bottom ``fraction``
    (by ``metric``; diverged variants always) copy a top-``fraction`` member chosen at random and explore.

    Exploring: each key of ``spaces`` is resampled from its space with probability ``resample``, else
    multiplied by a factor drawn from ``perturb`` (clipped to :data:`PERTURB_KEYS`' bounds). The draws come
    from ``numpy.random.default_rng([seed, e, group])``: same seed, same lineage.

    Attributes:
      interval: evaluations between decisions.
      spaces: ``{key: ("range", low, high, log) | ("choice", values)}`` for each explored hyperparameter
        (keys of :data:`PERTURB_KEYS`).
      fraction: the share of a group that is replaced (and that it copies from), in (0, 0.5].
      perturb: the factors a perturbation draws from.
      resample: the probability of a resample instead of a perturbation.
      metric: the :class:`View` metric ranked.
      goal: ``"min"`` or ``"max"``.
      seed: the seed of the draws.
    """

    interval: int
    spaces: Mapping[str, Space]
    fraction: float = 0.25
    perturb: tuple[float, ...] = (0.8, 1.25)
    resample: float = 0.0
    metric: str = "val_loss"
    goal: str = "min"
    seed: int = 0

    exploits = True

    @property
    def hp_keys(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(self.spaces)

    def boundaries(self, spec: Any) -> set[int]:
        if not isinstance(self.interval, int) or self.interval < 1:
            raise ValueError(f"PBT: interval = {self.interval!r} must be a positive number of evaluations")
        if not 0 < self.fraction <= 0.5:
            raise ValueError(f"PBT: fraction = {self.fraction!r} must be in (0, 0.5]")
        if not 0 <= self.resample <= 1:
            raise ValueError(f"PBT: resample = {self.resample!r} must be a probability in [0, 1]")
        if not self.perturb or any(not f > 0 for f in self.perturb):
            raise ValueError(f"PBT: perturb = {list(self.perturb)!r} must be a list of positive factors")
        bad = [k for k in self.spaces if k not in PERTURB_KEYS]
        if bad or not self.spaces:
            raise ValueError(f"PBT explores {bad or 'no keys'}; it explores keys of: {', '.join(PERTURB_KEYS)}")
        n_evals = spec.n_evals
        return set(range(self.interval, n_evals - 1, self.interval))

    def _draw(self, rng: np.random.Generator, key: str) -> float:
        space = self.spaces[key]
        if space[0] == "choice":
            return float(space[1][rng.integers(len(space[1]))])
        _, low, high, log = space
        return float(np.exp(rng.uniform(np.log(low), np.log(high)))) if log else float(rng.uniform(low, high))

    def decide(self, view: View) -> Decision:
        n = len(view.group)
        parent = np.full(n, -1, np.int64)
        factor = {k: np.ones(n) for k in self.spaces}
        value = {k: np.full(n, np.nan) for k in self.spaces}
        cost = view.score(self.metric, self.goal)
        for g in np.unique(view.group):
            rng = np.random.default_rng([self.seed, view.e, int(g)])
            members = np.flatnonzero(view.group == g)
            q = int(len(members) * self.fraction)
            ranked = _ranked(members, cost)
            top = [i for i in ranked[:max(q, 1)] if np.isfinite(cost[i])]
            if not top or len(members) < 2:
                continue
            bottom = set(ranked[len(ranked) - q:].tolist()) if q else set()
            bottom |= {int(i) for i in members if not np.isfinite(cost[i]) or view.status[i] == "diverged"}
            for i in sorted(bottom - set(top)):
                parent[i] = top[rng.integers(len(top))]
                for k in self.spaces:
                    if rng.random() < self.resample:
                        value[k][i] = self._draw(rng, k)
                    else:
                        factor[k][i] = self.perturb[rng.integers(len(self.perturb))]
        return Decision(parent=parent, factor=factor, value=value)


# --------------------------------------------------------------------------------------------------------
# The engine's loop with a policy
# --------------------------------------------------------------------------------------------------------


#: A segment's survivors train in the blocks of an already compiled program when those hold at most this
#: many times the positions (variants + padding) of a new, tighter program's blocks; else a new program
#: is compiled. Successive halving's rungs cost about the same model-steps each, so this bounds a rung's
#: wasted compute while a sweep compiles few programs (each costs seconds).
REUSE_PADDING = 4


def _pow2(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def _explore_fn(prog: Any, keys: Sequence[str], size: int) -> Callable:
    """The chunk of an exploiting policy: copy (``state[parent]``), set the explored hyperparameters in ``hp``
    and ``opt_state.hyperparams``, then the block's chunk (:meth:`engine.Program.block_chunk`); returns
    ``(state, metrics, hp)``."""
    chunk = prog.block_chunk(size)

    def fn(state, hp, data, train, final, first_step, parent, factor, value):
        moved = parent != jnp.arange(parent.shape[0], dtype=parent.dtype)
        state = jax.tree.map(lambda a: a[parent], state)
        new = {k: (v if k == "seed" else v[parent]) for k, v in hp.items()}
        for k in keys:
            lo, hi = PERTURB_KEYS[k]
            x = jnp.clip(jnp.where(jnp.isnan(value[k]), new[k] * factor[k], value[k]), lo, hi)
            new[k] = jnp.where(moved, x.astype(hp[k].dtype), new[k])
        opt = state.opt_state
        if hasattr(opt, "hyperparams"):
            injected = {k: (new[k].astype(v.dtype) if k in keys else v) for k, v in opt.hyperparams.items()}
            state = state._replace(opt_state=opt._replace(hyperparams=injected))
        state, m = chunk(state, new, data, train, final, first_step)
        return state, m, new

    return fn


def _scatter(dst: Any, src: Any, rows: np.ndarray, pos: np.ndarray) -> None:
    """``dst[rows] = src[pos]`` leaf by leaf (NumPy pytrees of the same structure)."""
    for d, x in zip(jax.tree.leaves(dst), jax.tree.leaves(src), strict=True):
        d[rows] = x[pos]


class _Group:
    """One static group's host-side state during a policy run."""

    def __init__(self, prog: Any, gi: int, size0: int, data: Any, n_evals: int, keys: Sequence[str],
                 small_eval: bool = False):
        self.prog, self.gi, self.size0, self.data = prog, gi, size0, data
        self.small_eval = small_eval  # the evaluation compiles as the engine's does (engine.SMALL_EVAL_BYTES)
        self.v = len(prog.rows)
        self.hyper = {k: np.array(a) for k, a in prog.stack().items()}
        self.state: Any = None  # TrainState of [v, ...] NumPy arrays once initialized
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


def _snapshot(groups: Sequence[_Group], e: int) -> Snapshot:
    out: Snapshot = {"e": np.int64(e)}
    for G in groups:
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


def _restore(groups: Sequence[_Group], snap: Mapping[str, np.ndarray], template: Callable[[_Group], Any]) -> int:
    for G in groups:
        p = f"g{G.gi}."
        treedef = jax.tree.structure(template(G))
        n = treedef.num_leaves
        G.state = jax.tree.unflatten(treedef, [np.array(snap[f"{p}state.{i}"]) for i in range(n)])
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
    return int(snap["e"])


def run(progs: Sequence[Any], policy: Policy, *, devices: Sequence[Any], max_variants: int | None,
        budget: int | None, block_bytes: int | None, progress: Callable[[events.Event], None] | None,
        n_variants: int, checkpoint: CheckpointFn | None = None, resume: Mapping[str, np.ndarray] | None = None
        ) -> Result:
    """Train every group's variants under ``policy`` (what ``engine.train(..., policy=...)`` runs).

    Args:
      progs: the static groups' :class:`jaxnets.engine.Program` s.
      policy: the :class:`Policy`.
      devices, max_variants, budget, block_bytes: as in :func:`jaxnets.engine.train` (``Options``).
      progress: receives :class:`jaxnets.events.Compiling` and :class:`jaxnets.events.Evaluated`.
      n_variants: the number of variants of the call.
      checkpoint: called after every boundary's decision with a snapshot (flat ``{name: array}``) from which
        ``resume`` continues.
      resume: a snapshot from ``checkpoint`` of the same call (same variants, data and policy).

    Returns:
      the :class:`jaxnets.result.Result`; ``GroupResult.model_steps`` counts the model-steps computed.

    Raises:
      ValueError: groups with different ``steps`` / ``eval_every``, a policy that does not fit the schedule,
        or a decision that copies across groups (or copies under a policy that does not exploit).
    """
    from jaxnets import engine

    schedules = {(p.spec.steps, p.spec.eval_every) for p in progs}
    if len(schedules) > 1:
        raise ValueError(f"a population policy needs the same steps and eval_every in every static group; got "
                         f"(steps, eval_every) = {sorted(schedules)}")
    spec0 = progs[0].spec
    n_evals, eval_steps, ee = spec0.n_evals, spec0.eval_steps, spec0.eval_every
    bounds = sorted(e for e in policy.boundaries(spec0) if 0 < e < n_evals - 1)
    keys = tuple(policy.hp_keys) if policy.exploits else ()
    report = progress or (lambda event: None)
    n_dev = len(devices)
    mesh = jax.make_mesh((n_dev,), ("variants",), devices=devices, axis_types=(AxisType.Auto,))
    shard, replicated = NamedSharding(mesh, P("variants")), NamedSharding(mesh, P())
    if block_bytes is None:
        block_bytes = engine.CPU_BLOCK_BYTES if devices[0].platform == "cpu" else 0
    groups = []
    for gi, prog in enumerate(progs):
        hyper = prog.stack()
        missing = [k for k in keys if k not in hyper]
        if missing:
            raise ValueError(f"the policy explores {missing}, which are not vmapped hyperparameters")
        v = len(prog.rows)
        small_eval = False  # PBT's explore program is one program, compiled with the engine's options
        if policy.exploits:
            size0 = -(-v // n_dev) * n_dev  # one block: the whole group is ranked together
        else:
            fp = prog.footprint({k: a[:1] for k, a in hyper.items()}, prog.data)
            size0 = engine._block_size(v, n_dev, fp, budget or engine.memory_budget(devices), max_variants,
                                       block_bytes)
            small_eval = engine._small_eval(fp)
        groups.append(_Group(prog, gi, size0, engine._to_device(prog.data, replicated), n_evals, keys, small_eval))
    g_index = np.concatenate([np.asarray(G.prog.indices) for G in groups])
    g_group = np.concatenate([np.full(G.v, G.gi) for G in groups])
    g_local = np.concatenate([np.arange(G.v) for G in groups])
    back = np.empty(n_variants, np.int64)
    back[g_index] = np.arange(len(g_index))  # call order -> position in the concatenation

    def template(G: _Group) -> Any:
        hp1 = {k: a[:1] for k, a in G.hyper.items()}
        return jax.eval_shape(G.prog.init_batch, hp1, G.prog._shapes(None))

    def programs_for(G: _Group, size: int, hp: Any, init: bool = False) -> Any:
        """The compiled chunk (and with ``init``, init) programs for blocks of ``size``: each compiled once,
        the init program only for the sizes that initialize (the first segment's)."""
        sig = engine._signature(G.prog, size, devices)
        key = (sig, "explore" if policy.exploits else "chunk", keys)
        init_key = (sig, "init")
        todo = [k for k, wanted in ((key, True), (init_key, init)) if wanted and k not in engine._CACHE]
        if todo:
            report(events.Compiling(group=G.gi, n_variants=G.v))
            tc = time.perf_counter()
            extra: dict[str, Any] = {}
            if policy.exploits:
                ident = jnp.arange(size, dtype=jnp.int32)
                fk = {k: jnp.ones(size, jnp.float32) for k in keys}
                extra = {"chunk_fn": _explore_fn(G.prog, keys, size), "chunk_args": (ident, fk, fk)}
            else:
                extra = {"small_eval": G.small_eval}
            compiled = engine._compile(G.prog, hp, G.data, shard, init=init_key in todo, chunk=key in todo, **extra)
            if compiled.chunk is not None:
                engine._CACHE[key] = compiled
            if compiled.init is not None:
                engine._CACHE[init_key] = compiled
            G.compile_s += time.perf_counter() - tc
            while len(engine._CACHE) > engine._CACHE_SIZE:
                engine._CACHE.popitem(last=False)
        if (size, G.prog.layout) not in G.shapes:
            G.shapes.append((size, G.prog.layout))
        for k in (init_key, key) if init else (key,):
            engine._CACHE.move_to_end(k)
        return engine._Compiled(engine._CACHE[init_key].init if init else None, engine._CACHE[key].chunk)

    def blocks(G: _Group, rows: np.ndarray, train: bool = True) -> tuple[np.ndarray, np.ndarray, int]:
        """Where ``rows`` sit in blocks (sets ``G.prog.layout``): in the blocks of a program this group has
        compiled already when their padding costs at most :data:`REUSE_PADDING` times the positions of a
        new program's blocks (any padding for a pass without training), else in a new program's blocks (a
        power-of-two block). A rule of sizes only, so every run (and every process) makes the same plan."""
        size = min(G.size0, -(-_pow2(len(rows)) // n_dev) * n_dev)
        n_act = 1 if policy.exploits else len(G.prog.spec.activations)
        ids = G.hyper["activation"][rows]
        order, real, layout, size = engine._block_order(ids, size, n_dev, n_act)
        if (size, layout) not in G.shapes:
            limit = REUSE_PADDING * len(order) if train else math.inf
            for old_size, old_layout in G.shapes:
                try:
                    fit = engine._fit_order(ids, old_layout, old_size, n_dev)
                except ValueError:  # an activation the old layout has no slot for
                    continue
                if len(fit[0]) <= limit:
                    limit = len(fit[0])
                    (order, real), size, layout = fit, old_size, old_layout
        G.prog.layout = layout
        return rows[order], real, size

    def chunk_call(G, programs, state, hp, where, e, first_chunk, train=None):
        train = np.bool_(e > 0 if train is None else train)
        final = np.bool_(e == n_evals - 1)
        first_step = np.int32(eval_steps[e - 1] if e > 0 else 0)
        if not policy.exploits:
            return (*programs.chunk(state, hp, G.data, train, final, first_step), None)
        size = len(where)
        parent, factor = np.arange(size, dtype=np.int32), {k: np.ones(size, np.float32) for k in keys}
        value = {k: np.full(size, np.nan, np.float32) for k in keys}
        moved = np.zeros(size, bool)
        if first_chunk and G.pending is not None:
            par, fac, val = G.pending
            pos = np.empty(G.v, np.int64)
            pos[where[::-1]] = np.arange(size)[::-1]  # a row's first position in the block
            moved = par[where] != where
            parent = pos[par[where]].astype(np.int32)
            factor = {k: fac[k][where].astype(np.float32) for k in keys}
            value = {k: val[k][where].astype(np.float32) for k in keys}
        out = programs.chunk(state, hp, G.data, train, final, first_step, engine._to_device(parent, shard),
                             engine._to_device(factor, shard), engine._to_device(value, shard))
        return out[0], out[1], (out[2], moved, parent)

    def segment(G: _Group, a: int, b: int) -> None:
        """Evaluations a+1 .. b of group G (a = -1: init and evaluation 0 first)."""
        tw = time.perf_counter()
        every = a < 0 or policy.exploits  # an exploiting policy's group is one block of every variant
        rows = np.arange(G.v) if every else np.flatnonzero(G.state.status == OK)
        if len(rows):
            where_all, real_all, size = blocks(G, rows)
            G.n_blocks = max(G.n_blocks, len(where_all) // size)
        else:
            where_all, real_all, size = rows, rows.astype(bool), 1
        for start in range(0, len(where_all), size):
            where, keep = where_all[start:start + size], np.flatnonzero(real_all[start:start + size])
            hp = engine._to_device({k: arr[where] for k, arr in G.hyper.items()}, shard)
            programs = programs_for(G, size, hp, init=a < 0)
            tr = time.perf_counter()
            if a < 0:
                state = programs.init(hp, G.data)
            else:
                state = engine._to_device(engine._take(where, G.state), shard)
            for e in range(a + 1, b + 1):
                state, m, extra = chunk_call(G, programs, state, hp, where, e, e == a + 1)
                m = engine._to_host(m)
                rows_real = where[keep]
                if e > 0:
                    G.model_steps += len(keep) * ee
                if not G.hist:
                    G.hist = {k: np.full((G.v, n_evals, *m[k].shape[1:]), np.nan, np.float32) for k in METRICS}
                for k in METRICS:
                    G.hist[k][rows_real, e] = m[k][keep]
                if extra is not None:
                    new_hp, moved, parent = extra
                    new_hp = engine._to_host(new_hp)
                    hp = engine._to_device(new_hp, shard)
                    for k, arr in new_hp.items():
                        G.hyper[k][rows_real] = arr[keep]
                    for k in keys:
                        G.hp_hist[k][rows_real, e] = new_hp[k][keep]
                    mv = keep[moved[keep]]
                    G.parent[where[mv], e] = np.asarray(G.prog.indices)[where[parent[mv]]]
                if e == n_evals - 1:
                    for k in TEST_METRICS:
                        G.test[k][rows_real] = m[k][keep]
                    G.tested[rows_real] = True
                if e > 0:
                    report(events.Evaluated(group=G.gi, block_start=start, eval=e, n_evals=n_evals,
                                            step=int(eval_steps[e]), val_loss=m["val_loss"][keep],
                                            n_variants=G.v))
            host = engine._to_host(state)
            G.run_s += time.perf_counter() - tr
            if G.state is None:
                if any(engine._is_key(x) for x in jax.tree.leaves(host)):
                    raise ValueError("population policies do not support models with PRNG-key state (NNX rngs)")
                G.state = jax.tree.map(lambda x: np.empty((G.v, *x.shape[1:]), x.dtype), host)
            _scatter(G.state, host, where[keep], keep)
        if G.pending is not None and len(rows):
            G.pending = None
        inactive = np.setdiff1d(np.arange(G.v), rows)
        for e in range(max(a + 1, 1), b + 1):  # stopped variants repeat their last values
            for k in METRICS:
                G.hist[k][inactive, e] = G.hist[k][inactive, e - 1]
            for k in keys:
                G.hp_hist[k][inactive, e] = G.hp_hist[k][inactive, e - 1]
        G.prog.layout = None
        G.wall_s += time.perf_counter() - tw

    def view(e: int) -> View:
        cat = lambda get: np.concatenate([get(G) for G in groups])[back]  # noqa: E731
        metrics = {k: cat(lambda G, k=k: G.hist[k][:, e]) for k in ("train_loss", "val_loss", "val_accuracy")}
        metrics |= {f"final_{k}": metrics[k] for k in ("train_loss", "val_loss")}
        metrics["best_val_loss"] = cat(lambda G: G.state.best_val)
        hp_keys = sorted(set.intersection(*(set(G.hyper) for G in groups)))
        return View(e=e, step=int(eval_steps[e]), steps=int(spec0.steps), group=cat(lambda G: np.full(G.v, G.gi)),
                    status=np.array(STATUS_NAMES)[cat(lambda G: G.state.status)],
                    metrics=metrics, hp={k: cat(lambda G, k=k: G.hyper[k]) for k in hp_keys})

    def apply(e: int, d: Decision) -> None:
        if d.keep is not None:
            keep = np.asarray(d.keep, bool)[g_index]  # concatenation order
            for G in groups:
                sel = keep[g_group == G.gi]
                prune = ~sel & (G.state.status == OK)
                G.state.status[prune] = PRUNED
                G.state.stopped_step[prune] = eval_steps[e]
        if d.parent is not None and np.any(np.asarray(d.parent) >= 0):
            if not policy.exploits:
                raise ValueError("the decision copies variants (parent), but the policy's exploits is False")
            parent = np.asarray(d.parent, np.int64)
            for G in groups:
                mine = np.asarray(G.prog.indices)
                par = parent[mine]
                copy = par >= 0
                if np.any(g_group[back[par[copy]]] != G.gi):
                    raise ValueError("a decision copies a variant of another static group; copies stay in a group")
                local = np.where(copy, g_local[back[np.maximum(par, 0)]], np.arange(G.v))
                fac = {k: np.where(copy, np.asarray(d.factor.get(k, np.ones(n_variants)))[mine], 1.0) for k in keys}
                val = {k: np.where(copy, np.asarray(d.value.get(k, np.full(n_variants, np.nan)))[mine], np.nan)
                       for k in keys}
                if np.any(copy):  # applied in-program by the next chunk (status included: the parent's)
                    G.pending = (local, fac, val)

    done = -1
    if resume is not None:
        done = _restore(groups, resume, template)
    syncs = [s for s in [*bounds, n_evals - 1] if s > done]
    for s in syncs:
        for G in groups:
            segment(G, done, s)
        if s in bounds:
            apply(s, policy.decide(view(s)))
            if checkpoint is not None:
                checkpoint(_snapshot(groups, s))
        done = s
    # variants that stopped before the last evaluation: their test metrics, from their final parameters
    for G in groups:
        rows = np.flatnonzero(~G.tested)
        if not len(rows):
            continue
        where_all, real_all, size = blocks(G, rows, train=False)
        for start in range(0, len(where_all), size):
            where, keep = where_all[start:start + size], np.flatnonzero(real_all[start:start + size])
            hp = engine._to_device({k: arr[where] for k, arr in G.hyper.items()}, shard)
            programs = programs_for(G, size, hp)
            state = engine._to_device(engine._take(where, G.state), shard)
            _, m, _ = chunk_call(G, programs, state, hp, where, n_evals - 1, False, train=False)
            m = engine._to_host(m)
            for k in TEST_METRICS:
                G.test[k][where[keep]] = m[k][keep]
        G.prog.layout = None
    results = []
    for G in groups:
        history = dict(G.hist)
        if policy.exploits:
            history["parent"] = G.parent
            history |= {f"hp_{k}": a for k, a in G.hp_hist.items()}
        results.append(GroupResult(
            spec=G.prog.spec, indices=np.asarray(G.prog.indices), rows=list(G.prog.rows), params=G.state.params,
            status=G.state.status, stopped_step=G.state.stopped_step, best_val_loss=G.state.best_val,
            history=history, eval_steps=eval_steps, compile_s=G.compile_s, run_s=G.run_s, wall_s=G.wall_s,
            n_blocks=G.n_blocks, model_state=G.state.model_state, test=G.test, layer_names=list(G.prog.layer_names),
            program=G.prog, model_steps=G.model_steps,
        ))
    return Result.from_groups(results, n_variants=n_variants)
