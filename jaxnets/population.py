"""Population policies: successive halving (ASHA) and population-based training (PBT) at evaluation boundaries.

The engine has ONE hook for both (``engine.train(..., policy=...)``, run by :mod:`jaxnets.engine.loop`): a
:class:`Policy` names the evaluations where it acts (:meth:`Policy.boundaries`) and, at each, sees every variant
of the call (:class:`View`: metrics, status, static group, vmapped hyperparameters) and returns a
:class:`Decision`:

* ``keep`` [V] bool: the variants still training that are not kept get status ``pruned``, ``stopped_step`` =
  that evaluation's step, and stop changing (their parameters and step counters are frozen). Pruned variants
  stop costing compute: between chunks the survivors are compacted into fewer blocks — of a program compiled
  already while its padding stays within ``Tuning.reuse_padding`` times a tight block's, else of a new program
  for a power-of-two block — so a sweep compiles few programs (each is cached);
* ``parent`` [V] int (-1: unchanged): the variant copies the parameters, optimizer state and training state
  of ``parent`` (a variant of the same static group) and takes its hyperparameters, except its own ``seed``;
  ``factor`` / ``value`` (per key, [V]) then set each explored hyperparameter to ``value`` where it is finite
  (a resample), else to the parent's value times ``factor`` (a perturbation), clipped to the key's bounds
  (:meth:`Policy.explore`). The new values are decided on the host; the copy (a gather along the variant
  axis, and the new values into the optimizer's injected ``opt_state.hyperparams``) runs on device before the
  chunk that trains the next steps.

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
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxnets.result import STATUS_NAMES

__all__ = ["View", "Decision", "Policy", "ASHA", "PBT", "PRUNED", "PERTURB_KEYS"]

OK, PRUNED = STATUS_NAMES.index("ok"), STATUS_NAMES.index("pruned")

#: Vmapped hyperparameters PBT may explore (floats that can change during training), with the bounds a
#: perturbed value is clipped to.
PERTURB_KEYS: dict[str, tuple[float, float]] = {
    "learning_rate": (0.0, math.inf), "weight_decay": (0.0, math.inf), "l2": (0.0, math.inf),
    "dropout": (0.0, 0.99), "momentum": (0.0, 0.9999), "b1": (0.0, 0.9999), "b2": (0.0, 0.9999),
    "rho": (0.0, 0.9999), "clip_norm": (0.0, math.inf),
}



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

    def explore(self, key: str, parent: np.ndarray, factor: np.ndarray, value: np.ndarray) -> np.ndarray:
        """The explored values of hyperparameter ``key`` for copying variants: ``value`` where it is finite (a
        resample), else the ``parent`` 's value times ``factor`` (a perturbation), clipped to the key's
        bounds in :data:`PERTURB_KEYS` (a declared user key is not clipped) — in the parent's dtype (float32
        arithmetic, as on device).

        Args:
          key: the hyperparameter.
          parent: [n] the parents' values.
          factor: [n] multipliers.
          value: [n] new values, NaN where ``factor`` applies.

        Returns:
          the [n] new values.
        """
        lo, hi = PERTURB_KEYS.get(key, (-math.inf, math.inf))
        dtype = np.asarray(parent).dtype
        factor, value = np.asarray(factor, np.float32), np.asarray(value, np.float32)
        x = np.where(np.isnan(value), np.asarray(parent, np.float32) * factor, value)
        return np.clip(x, np.float32(lo), np.float32(hi)).astype(dtype)


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
        (keys of :data:`PERTURB_KEYS`, or declared vmapped user keys, ``extra_keys``: e.g. the per-layer
        learning rates of your own optimizer factory).
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
        own = tuple(getattr(spec, "vmapped_extra", ()))
        bad = [k for k in self.spaces if k not in PERTURB_KEYS and k not in own]
        if bad or not self.spaces:
            raise ValueError(f"PBT explores {bad or 'no keys'}; it explores keys of: "
                             f"{', '.join(tuple(PERTURB_KEYS) + own)}")
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
