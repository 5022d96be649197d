"""A block of variants: the per-variant program (:class:`jaxnets.engine.programs.Program`) lifted to [size]
variants, as the functions the engine compiles.

A *chunk* is ``eval_every`` training steps followed by one evaluation. It runs one of two ways, with the same
numbers (to float32 rounding):

- ``scan``: the steps inside the compiled program, a ``lax.scan`` (:func:`stages`);
- ``host``: a Python loop over one compiled, buffer-donating step (:func:`host_step`), for programs XLA:CPU
  runs slowly inside a loop body (convolutions, jax#12868).

Either way the evaluation (divergence and early-stopping rules included) is its own program
(:func:`stages`' second half).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from jaxnets.engine.programs import OK, Program

__all__ = ["adopt", "chunk", "host_step", "lift", "stages"]


def lift(fn: Callable, size: int, batched: int = 2) -> Callable:
    """``fn`` of one variant applied to a block of ``size``: its first ``batched`` arguments are [size]-stacked,
    the rest shared — ``jax.vmap``, or for one variant plain arrays without ``vmap`` (XLA:CPU runs a vmapped
    program whose variant axis has size 1 much slower than a plain one, and the activation and initializer
    switches then become real branches)."""
    if size > 1:
        return lambda *args: jax.vmap(fn, in_axes=(0,) * batched + (None,) * (len(args) - batched))(*args)

    def one(*args):
        first = lambda tree: jax.tree.map(lambda a: a[0], tree)  # noqa: E731
        return jax.tree.map(lambda a: a[None], fn(*map(first, args[:batched]), *args[batched:]))

    return one


def stages(prog: Program, size: int) -> tuple[Callable, Callable]:
    """A chunk of ``size`` variants as two functions (compiled as two programs: XLA compiles the training half
    on a background thread while the evaluation half is traced):

    - ``train_stage(state, hp, data, train, first_step) -> (state, was_ok)``: the chunk's steps (none when
      ``train`` is False) and whether each variant was training at the chunk's start ([size]);
    - ``eval_stage(state, hp, was_ok, data, first, final) -> (state, metrics)``: the evaluation, divergence and
      early-stopping rules (:meth:`Program.after_eval`); ``first``: this is evaluation 0.

    Their results equal the vmapped :meth:`Program.chunk`'s bit for bit (parameters, metrics, statuses; only
    the optimizer state of an already frozen variant, which never reaches its parameters again, may differ).
    The divergence guard costs a parameter-sized check and a masked update per step, so when the chunk does
    not pass ``steps`` the steps first run unguarded, with one check of the losses and final parameters of the
    variants that were training (frozen ones get their parameters back); only if one was not finite does the
    block run the chunk again from its start, guarded (a ``lax.while_loop`` of at most two passes). A chunk
    that passes ``steps`` runs guarded directly.
    """
    spec = prog.spec
    run = lift(lambda s, hp, data, t0, guard: prog.steps(s, hp, data, t0, guard), size)
    finish = lift(lambda s, hp, was_ok, data, first, final: prog.after_eval(s, hp, data, was_ok, first, final),
                  size, batched=3)

    def train_stage(state, hp, data, train, first_step=None):
        was_ok = state.status == OK

        def train_steps(s):
            whole = jnp.all(s.step + spec.eval_every <= spec.steps)

            # attempt 0: unguarded if the chunk does not pass `steps`, else guarded; attempt 1 (guarded, from
            # the chunk's start) only if attempt 0 was unguarded and not all finite. A loop over one scan whose
            # guard is a traced flag: the step is compiled once.
            def attempt(carry):
                k = carry[0]
                new, finite = run(s, hp, data, first_step, (k > 0) | ~whole)
                return k + 1, new, finite

            again = lambda carry: (carry[0] == 0) | ((carry[0] == 1) & ~jnp.all(carry[2]))  # noqa: E731
            start = (jnp.int32(0), s, jnp.zeros(s.status.shape, bool))
            return jax.lax.while_loop(again, attempt, start)[1]

        return jax.lax.cond(train, train_steps, lambda s: s, state), was_ok

    return train_stage, finish


def chunk(prog: Program, size: int) -> Callable:
    """:func:`stages`' two halves as one function ``fn(state, hp, data, train, final, first_step) -> (state,
    metrics)`` on [size]-stacked ``state`` and ``hp``."""
    train_stage, eval_stage = stages(prog, size)

    def fn(state, hp, data, train, final=False, first_step=None):
        state, was_ok = train_stage(state, hp, data, train, first_step)
        return eval_stage(state, hp, was_ok, data, ~jnp.asarray(train), jnp.asarray(final))

    return fn


def host_step(prog: Program, size: int) -> Callable:
    """One guarded training step of ``size`` variants, ``fn(state, hp, data, step) -> (state, was_ok)``: the
    step the host loop calls ``eval_every`` times per chunk (``step``: the step's index as an unbatched scalar,
    for ``shared_data``'s minibatches; ``was_ok`` [size]: the variants training before it). Its minibatch is
    the one :meth:`Program.batch_indices` draws for that step inside a scan, so both loops train alike."""

    def one(state, hp, data, step):
        start = step if prog.spec.shared_data else state.step
        idx = prog.batch_indices(start, hp, 1)[0]
        return prog.step(state, hp, data, idx), state.status == OK

    return lift(one, size)


def adopt(keys: Sequence[str]) -> Callable:
    """What an exploiting population policy's decision does on device, ``fn(state, hp, parent) -> state`` on a
    block: each variant copies ``state[parent]`` (a gather along the variant axis; ``parent[i] == i``:
    unchanged) and puts its explored hyperparameters ``keys`` from ``hp`` (its new values, decided on the
    host) into its optimizer's injected hyperparameters. The block's next chunk then trains from there."""

    def fn(state, hp, parent):
        state = jax.tree.map(lambda a: a[parent], state)
        opt = state.opt_state
        if hasattr(opt, "hyperparams"):
            injected = {k: (hp[k].astype(v.dtype) if k in keys else v) for k, v in opt.hyperparams.items()}
            state = state._replace(opt_state=opt._replace(hyperparams=injected))
        return state

    return fn
