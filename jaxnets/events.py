"""Progress events: one typed family for the engine, the sweep and whoever listens (the CLI, your code).

Every event is a frozen dataclass deriving from :class:`Event`; listeners dispatch on the type::

    def on_event(event: events.Event) -> None:
        match event:
            case events.Compiling(group=g):
                print(f"compiling group {g}")
            case events.Evaluated(step=step, val_loss=v):
                print(f"step {step}: best val loss {np.nanmin(v):.3g}")

The engine (:func:`jaxnets.engine.train`, its ``progress`` argument) emits :class:`Compiling` before a group
compiles and :class:`Evaluated` after every evaluation. A sweep (:func:`jaxnets.sweep.run`, its ``on_event``
argument) emits :class:`SweepStarted`, then for each unit :class:`UnitStarted`, the engine's events of that
unit, and :class:`UnitDone`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

__all__ = ["Event", "Compiling", "Evaluated", "SweepStarted", "UnitStarted", "UnitDone", "Checkpoint"]


@dataclasses.dataclass(frozen=True)
class Event:
    """Base class of every progress event."""


@dataclasses.dataclass(frozen=True)
class Compiling(Event):
    """A static group is about to compile (the first call of a group's programs).

    Attributes:
      group: the group's index among the call's static groups.
      n_variants: variants in the group.
    """

    group: int
    n_variants: int


@dataclasses.dataclass(frozen=True)
class Evaluated(Event):
    """A block of variants finished an evaluation (evaluation 0, at step 0, is not reported).

    Attributes:
      group: the group's index among the call's static groups.
      block_start: index, within the group, of the block's first variant.
      eval: the evaluation's number, ``1 .. n_evals - 1``.
      n_evals: evaluations of the group, evaluation 0 included.
      step: the training step of this evaluation.
      val_loss: [variants in the block] validation losses (NaN where diverged).
      n_variants: variants in the group (the blocks' ``val_loss`` together; 0: not given), so a listener can
        count a group's evaluation once over its blocks.
    """

    group: int
    block_start: int
    eval: int
    n_evals: int
    step: int
    val_loss: np.ndarray
    n_variants: int = 0


@dataclasses.dataclass(frozen=True)
class SweepStarted(Event):
    """A sweep starts.

    Attributes:
      n_variants: variants (trials) in the sweep.
      n_units: units (static groups or Bayesian rounds) it trains.
      evals: evaluations after step 0 over all units (the progress total).
      exact: False when ``evals`` is an estimate (Bayesian search).
    """

    n_variants: int
    n_units: int
    evals: int
    exact: bool


@dataclasses.dataclass(frozen=True)
class UnitStarted(Event):
    """A unit starts (or is read back from a saved result).

    Attributes:
      unit: the unit's key (e.g. ``"group-000"``).
      index: its position among the sweep's units.
      n_units: units in the sweep.
      n_variants: variants in the unit.
      evals: evaluations after step 0 of the unit.
      resumed: True when a saved result is reused (nothing is trained).
      stale: True when a saved result exists but belongs to other variants (it is retrained).
    """

    unit: str
    index: int
    n_units: int
    n_variants: int
    evals: int
    resumed: bool
    stale: bool


@dataclasses.dataclass(frozen=True)
class UnitDone(Event):
    """A unit finished; save ``result`` now to lose nothing if the process is killed.

    Attributes:
      unit: the unit's key.
      result: the :class:`jaxnets.sweep.UnitResult`.
      resumed: True when it was read back, not trained.
    """

    unit: str
    result: Any
    resumed: bool


@dataclasses.dataclass(frozen=True)
class Checkpoint(Event):
    """An ``asha`` / ``pbt`` unit passed a rung / interval; save ``state`` now to resume from here after a kill.

    Attributes:
      unit: the unit's key.
      fingerprint: the unit's fingerprint (resume only the same variants).
      eval: the evaluation the decision was taken at.
      state: the engine's snapshot (``{name: array}``, see :func:`jaxnets.population.run`).
    """

    unit: str
    fingerprint: str
    eval: int
    state: dict
