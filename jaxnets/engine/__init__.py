"""The engine: train a heterogeneous batch of variants in one compiled, sharded program per static group.

Data path (one module per step)::

    rows ─► checks   validate variants, data, model, loss ONCE; one Program per static group
         ─► program  the pure per-variant functions: init, training steps, evaluation (stateless)
         ─► plan     footprint → block size, activation layout, loop strategy: from shapes, names and the
                     platform's Tuning, never from a timing
         ─► compile  jit(vmap(program)) per block: init, chunk (eval_every steps + an evaluation), cached
         ─► loop     segments between evaluation boundaries, block by block; a population policy adds
                     boundaries and decisions to the same loop (policy=None: plain training)
         ─► transfer host <-> device, whole on every process   ─► Result

A group's variant axis is padded to a multiple of the device count and sharded over the devices; a large group
runs in blocks of variants, one after another (memory; on the CPU, cache-sized blocks). A block's chunk runs
its ``eval_every`` steps inside the program (``lax.scan``) or, for a program XLA:CPU runs slowly in a loop
body (a convolution), as a host loop over one compiled, buffer-donating step: same numbers either way.
Python runs per chunk (or per step in the host loop), never inside a compiled program. Same config and seed on
the same kind of machine give the same numbers, however busy the machine is: nothing here reads a clock to
decide what to compute.

Example::

    from jaxnets import data, engine
    ds = data.load("digits")
    variants = [{"activation": a, "init": i, "seed": s, "steps": 200}
                for a in ("tanh", "relu") for i in ("glorot_uniform", "he_normal") for s in range(4)]
    result = engine.train(variants, ds)
    print(result.to_dataframe())
    logits = engine.model(result.rows[0], ds).apply({"params": result.params(0)}, ds.x_test)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from jaxnets import events
from jaxnets.data import Dataset
from jaxnets.engine import loop
from jaxnets.engine.checks import LossFn, ModelFactory, OptimizerFactory, build_programs, prepare
from jaxnets.engine.compile import clear_cache
from jaxnets.engine.options import CPU_TUNING, DEFAULT_TUNING, Options, Tuning, tuning_for
from jaxnets.engine.plan import Footprint, footprint, memory_budget
from jaxnets.engine.programs import DIVERGED, EARLY_STOPPED, OK, PRUNED, Program, TrainState, model
from jaxnets.result import GroupResult, Result
from jaxnets.variants import Coverage

__all__ = ["CPU_TUNING", "DEFAULT_TUNING", "DIVERGED", "EARLY_STOPPED", "OK", "PRUNED", "Checked", "Coverage",
           "Footprint", "GroupResult", "LossFn", "ModelFactory", "OptimizerFactory", "Options", "Program",
           "ProgressFn", "Result", "TrainState", "Tuning", "check", "clear_cache", "footprint", "memory_budget",
           "model", "prepare", "program", "train", "tuning_for"]

ProgressFn = Callable[[events.Event], None]


@dataclasses.dataclass(frozen=True)
class Checked:
    """A call's variants checked against its data, model and loss, with the :class:`Program` of each static
    group: what :func:`train` trains. Build it once with :func:`check` and pass it to :func:`train` to train
    without checking (or tracing your model) again.

    Attributes:
      programs: one :class:`Program` per static group, in order of first appearance; ``program.indices`` place
        its variants among the call's.
      n_variants: the number of variants of the call.
      n_eval_train: training examples of the evaluation-time train loss and diagnostics.
      tuning: the :class:`Tuning` the programs were built for.
    """

    programs: tuple[Program, ...]
    n_variants: int
    n_eval_train: int
    tuning: Tuning

    @property
    def evals(self) -> int:
        """The evaluations after step 0, summed over the groups (a progress total)."""
        return sum(p.spec.n_evals - 1 for p in self.programs)

    def group(self, i: int) -> Checked:
        """Static group ``i`` alone, as a call of its own (its variants in their order)."""
        prog = self.programs[i]
        return Checked((prog.reindexed(range(len(prog.rows))),), len(prog.rows), self.n_eval_train, self.tuning)


def check(variants: Sequence[Mapping[str, Any]], ds: Dataset, *, model: ModelFactory | None = None,
          loss: str | LossFn | None = None, metric: LossFn | None = None,
          extra_keys: Mapping[str, str] | None = None, options: Options | None = None,
          optimizer: OptimizerFactory | None = None, mix_architectures: str | bool | None = None,
          cover: Coverage | None = None) -> Checked:
    """Check every variant, the data, your model factory and loss, and build each static group's
    :class:`Program`, before any compute (arguments as :func:`train`'s; ``mix_architectures`` and ``cover``,
    when given, override ``options.mix_architectures`` and ``options.cover``).

    Returns:
      the :class:`Checked` call, for :func:`train`.

    Raises:
      ValueError: as :func:`train`.
    """
    options = options or Options()
    tuning = options.tuning_on((options.devices or jax.devices())[0].platform)
    progs = build_programs(variants, ds, model=model, loss=loss, metric=metric, extra_keys=extra_keys,
                           n_eval_train=options.n_eval_train, tuning=tuning, optimizer=optimizer,
                           mix_architectures=(options.mix_architectures if mix_architectures is None
                                              else mix_architectures),
                           cover=options.cover if cover is None else cover)
    return Checked(tuple(progs), len(variants), options.n_eval_train, tuning)


def program(variants: Sequence[Mapping[str, Any]], ds: Dataset, *, model: ModelFactory | None = None,
            loss: str | LossFn | None = None, metric: LossFn | None = None,
            extra_keys: Mapping[str, str] | None = None, n_eval_train: int = 1024,
            tuning: Tuning | None = None, optimizer: OptimizerFactory | None = None) -> Program:
    """The pure per-variant :class:`Program` (``init``, ``train_chunk``, ``evaluate``) of ONE static group.

    Args:
      variants: rows that form one static group (same model structure, optimizer kind, loss, batch size,
        steps, ...); :meth:`Program.stack` gives their ``hp`` arrays.
      ds: the data set; :attr:`Program.data` holds its arrays in the form the functions read them.
      model, loss, metric, extra_keys, optimizer: as in :func:`train`.
      n_eval_train: training examples of the evaluation-time train loss and diagnostics.
      tuning: the :class:`Tuning` of the platform the functions will run on (the CPU's picks CPU-friendly
        kernels); default: that of ``jax.devices()[0]``'s platform.

    Returns:
      the group's :class:`Program`.

    Raises:
      ValueError: bad input (as :func:`train`), or variants that form more than one static group.
    """
    tuning = tuning or tuning_for(jax.devices()[0].platform)
    progs = build_programs(variants, ds, model=model, loss=loss, metric=metric, extra_keys=extra_keys,
                           n_eval_train=n_eval_train, tuning=tuning, optimizer=optimizer)
    if len(progs) != 1:
        raise ValueError(f"the variants form {len(progs)} static groups; program() takes the variants of one "
                         "(split them with engine.prepare(...), or use engine.train)")
    return progs[0]


def train(variants: Sequence[Mapping[str, Any]] | Checked, ds: Dataset | None = None, *,
          model: ModelFactory | None = None,
          loss: str | LossFn | None = None, metric: LossFn | None = None,
          extra_keys: Mapping[str, str] | None = None, options: Options | None = None,
          progress: ProgressFn | None = None, policy: Any = None,
          checkpoint: Callable[[dict[str, np.ndarray]], None] | None = None,
          resume: Mapping[str, np.ndarray] | None = None, optimizer: OptimizerFactory | None = None) -> Result:
    """Train every variant on ``ds``; one compiled program per static group, the variant axis sharded.

    Args:
      variants: rows of hyperparameters (see :data:`jaxnets.variants.KEYS`; missing keys take
        :data:`jaxnets.variants.DEFAULTS`), or a :class:`Checked` call from :func:`check` (then ``ds``,
        ``model``, ``loss``, ``metric``, ``extra_keys`` and ``optimizer`` are the ones it was checked with:
        leave them out).
      ds: a :class:`jaxnets.data.Dataset` (your own arrays: :func:`jaxnets.data.from_arrays`).
      model: your own model factory, ``factory(hp) -> flax.linen.Module`` or ``factory(hp, rngs) ->
        flax.nnx.Module`` (see :mod:`jaxnets.adapters` for the calling convention and :mod:`jaxnets.hyper`
        for ``hp``); ``None``: the built-in MLP / CNN / RNN of each variant's ``kind``.
      loss: a loss name (for rows that set none), or your own ``loss(outputs, labels) -> [B]`` per-example
        loss; labels are then the data set's (int32 classes or float32 targets).
      metric: with a loss callable, an accuracy-like ``metric(outputs, labels) -> [B]`` reported as
        ``val_accuracy`` / ``test_accuracy``.
      extra_keys: your own hyperparameters, ``{name: "vmapped" | "static"}``: vmapped ones are numbers that
        become [V] arrays in ``hp``, static ones any hashable value that splits static groups.
      options: :class:`Options`.
      optimizer: your own optimizer factory, ``factory(hp) -> optax.GradientTransformation``, called inside
        the traced step with the variant's ``hp`` (as the model factory's: built-in keys and your
        ``extra_keys`` as traced scalars, ``hp.learning_rate_schedule``), e.g. per-layer learning rates with
        ``optax.multi_transform``; ``None``: the built-in optimizer each row names (``optimizer`` key). The
        rows may then not set ``optimizer``.
      progress: called with a :class:`jaxnets.events.Compiling` before a group compiles and a
        :class:`jaxnets.events.Evaluated` after every evaluation of a block of variants.
      policy: a population policy (:class:`jaxnets.population.Policy`, e.g. ``population.ASHA`` or
        ``population.PBT``) deciding at evaluation boundaries which variants continue (the rest are
        ``pruned``) and which copy whom; every group must then have the same ``steps`` and ``eval_every``.
        ``None``: every variant trains to the end, group after group.
      checkpoint: with a policy, called after every boundary's decision with a snapshot (``{name: array}``)
        that ``resume`` continues from.
      resume: with a policy, a snapshot from ``checkpoint`` of the same call: training continues after it and
        ends with the numbers of an uninterrupted run.

    Returns:
      a :class:`jaxnets.result.Result` with rows in the order of ``variants``.

    Raises:
      ValueError: on any bad variant, data, model factory or loss, before anything is compiled
        (:class:`jaxnets.variants.VariantError` names the variants); a policy that does not fit the groups.
    """
    options = options or Options()
    if isinstance(variants, Checked):
        given = [k for k, v in (("ds", ds), ("model", model), ("loss", loss), ("metric", metric),
                                ("extra_keys", extra_keys), ("optimizer", optimizer)) if v is not None]
        if given:
            raise TypeError(f"train(checked, ...) trains what check() was given; leave out {', '.join(given)}")
        checked = variants
        tuning = options.tuning_on((options.devices or jax.devices())[0].platform)
        if (checked.tuning, checked.n_eval_train) != (tuning, options.n_eval_train):
            raise ValueError("options= asks for another tuning or n_eval_train than check() built the programs "
                             "for; pass the same options to check()")
    elif ds is None:
        raise TypeError("train() needs the data set: engine.train(variants, ds)")
    else:
        # a policy that copies parameters between variants (PBT) needs each group to hold one architecture
        mix = False if getattr(policy, "exploits", False) and options.mix_architectures == "auto" else None
        checked = check(variants, ds, model=model, loss=loss, metric=metric, extra_keys=extra_keys, options=options,
                        optimizer=optimizer, mix_architectures=mix)
    return loop.run(checked.programs, n_variants=checked.n_variants, options=options, progress=progress,
                    policy=policy, checkpoint=checkpoint, resume=resume)
