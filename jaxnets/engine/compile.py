"""Lowering and compiling a block's programs, and the compiled-program cache.

A block of ``size`` variants has up to three programs: ``init`` (its training states), a chunk (``eval_every``
steps, then an evaluation: :mod:`jaxnets.engine.chunk`) and, under an exploiting population policy, ``adopt``
(copy a parent's state). Compilation overlaps tracing (XLA compiles without holding the GIL): the init program
and the chunk's training half compile on background threads while the evaluation half is traced and lowered.
Every program is compiled with the XLA options of the platform's :class:`jaxnets.engine.Tuning`.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import time
import types
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding

from jaxnets.engine import chunk as chunk_lib
from jaxnets.engine.options import Tuning
from jaxnets.engine.programs import Program, n_params
from jaxnets.engine.transfer import to_device

__all__ = ["Compiled", "HostChunk", "Staged", "cached", "clear_cache", "code_key", "compile_adopt",
           "compile_block", "programs", "signature"]


class Compiled(NamedTuple):
    """A block's compiled programs: ``init(hp, data) -> state`` (``None`` when not asked for) and ``chunk(state,
    hp, data, train, final, first_step) -> (state, metrics)`` (``train``, ``final``: host bools)."""

    init: Any
    chunk: Any


class Staged:
    """A chunk whose steps run in the compiled program (:func:`jaxnets.engine.chunk.stages`, compiled as two
    programs), called as one."""

    def __init__(self, train_stage: Any, eval_stage: Any):
        self.train_stage, self.eval_stage = train_stage, eval_stage

    def __call__(self, state: Any, hp: Any, data: Any, train: Any, final: Any, first_step: Any) -> tuple[Any, Any]:
        state, was_ok = self.train_stage(state, hp, data, train, first_step)
        return self.eval_stage(state, hp, was_ok, data, np.logical_not(train), final)


class HostChunk:
    """A chunk whose steps run as a host loop: ``n_steps`` calls of one compiled, buffer-donating step
    (:func:`jaxnets.engine.chunk.host_step`), then the evaluation program."""

    def __init__(self, step: Any, eval_stage: Any, n_steps: int, all_ok: Any):
        self.step, self.eval_stage, self.n_steps, self.all_ok = step, eval_stage, n_steps, all_ok

    def __call__(self, state: Any, hp: Any, data: Any, train: Any, final: Any, first_step: Any) -> tuple[Any, Any]:
        was_ok = self.all_ok  # evaluation 0 / a test pass: no steps, and was_ok is not read
        if train:
            for i in range(self.n_steps):
                state, ok = self.step(state, hp, data, np.int32(first_step + i))
                was_ok = ok if i == 0 else was_ok
        return self.eval_stage(state, hp, was_ok, data, np.logical_not(train), final)


#: Compiled programs by what they depend on (:func:`signature` and the program's kind), so a second ``train``
#: call with the same static group, data shapes, block size and devices (e.g. the next round of a Bayesian
#: search, or a population policy's next segment) skips compilation. It only saves time: programs are pure
#: functions of their arguments, so results do not depend on it.
_CACHE: collections.OrderedDict[tuple, Any] = collections.OrderedDict()
_CACHE_SIZE = 32

_COMPILER = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="jaxnets-compile")


def clear_cache() -> None:
    """Forget every compiled program (the next ``train`` call compiles again)."""
    _CACHE.clear()


def cached(key: tuple, make: Callable[[], Any]) -> tuple[Any, bool]:
    """``(the program cached under key, False)``, or ``(make(), True)`` after caching it."""
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key], False
    _CACHE[key] = value = make()
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return value, True


def _code_id(code: types.CodeType) -> tuple:
    """A code object by what it computes: its bytecode, names, constants (nested code objects recursively)."""
    consts = tuple(_code_id(c) if isinstance(c, types.CodeType) else (type(c).__name__, repr(c))
                   for c in code.co_consts)
    return (code.co_code, code.co_names, code.co_varnames, consts)


def _global_names(code: types.CodeType) -> set[str]:
    """Every name ``code`` (and the code objects it holds) may read from its globals."""
    names = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names |= _global_names(c)
    return names


def code_key(fn: Any) -> Any:
    """A cache key for your factory, loss or metric ``fn`` that a NEW function object with the same code, the
    same closure values, defaults and global objects gets too (a lambda re-created in a loop or a notebook
    cell compiles once); ``fn`` itself (its identity) when any of those cannot be hashed.

    The key holds the *objects* the function reads from its globals (a class redefined in a notebook is a new
    object, so a new key) and its closure's values, so two functions with equal keys trace the same program.
    """
    code = getattr(fn, "__code__", None)
    if not isinstance(code, types.CodeType) or not isinstance(fn, types.FunctionType):
        return fn
    try:
        g = fn.__globals__
        seen = tuple((n, g[n]) for n in sorted(_global_names(code)) if n in g)
        cells = tuple(c.cell_contents for c in (fn.__closure__ or ()))
        key = ("code", fn.__module__, fn.__qualname__, _code_id(code), fn.__defaults__, cells, seen,
               tuple(sorted((fn.__kwdefaults__ or {}).items())))
        hash(key)
    except (TypeError, ValueError):  # unhashable closure values, defaults or globals: the function itself
        return fn
    return key


def signature(prog: Program, size: int, devices: Sequence[Any], strategy: str) -> tuple:
    """Everything a block's compiled programs depend on: the group's static settings, data shapes, model,
    loss, metric and optimizer factory, the activation layout, the tuning and the XLA options it gives (they
    leave out what the environment's ``XLA_FLAGS`` sets), the block size, the devices and the loop strategy.
    Which architectures a mixed group holds is data (``hp["widths"]``): only that it mixes counts."""
    shapes = tuple((k, v.shape, v.dtype.str) for k, v in sorted(prog.data.items()))
    options = tuple(sorted((prog.tuning.options() or {}).items()))
    spec = dataclasses.replace(prog.spec, architectures=()) if prog.spec.mixed else prog.spec
    return (spec, prog.spec.mixed, prog.output_dim, prog.many_to_many, prog.n_train, shapes, size,
            tuple(d.id for d in devices), code_key(prog.adapter.factory) if prog.custom else None,
            code_key(prog.user_loss), code_key(prog.user_metric), code_key(prog.user_optimizer), prog.layout,
            prog.tuning, options, strategy)


def _compile_lowered(lowered: Any, options: dict[str, Any] | None, fallback: dict[str, Any] | None) -> Any:
    """``lowered.compile(options)``; with ``fallback`` when this XLA does not know one of ``options``."""
    try:
        return lowered.compile(options)
    except jax.errors.JaxRuntimeError as e:
        if options == fallback or "No such compile option" not in str(e):
            raise
        return lowered.compile(fallback)


def _sharded_like(tree: Any, shard: NamedSharding) -> Any:
    """``tree``'s shapes and dtypes with every leaf sharded by ``shard``."""
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=shard), tree)


def _compile_steps(prog: Program, size: int, state: Any, hp: Any, data: Any, shard: NamedSharding,
                   strategy: str, options: dict[str, Any] | None) -> tuple[concurrent.futures.Future, Any]:
    """The chunk's training half, compiling in the background: ``(future of the compiled program, shapes of
    the state it returns)``."""
    if strategy == "host":
        lowered = jax.jit(chunk_lib.host_step(prog, size), donate_argnums=0, out_shardings=shard).lower(
            state, hp, data, jnp.int32(0))
    else:
        lowered = jax.jit(chunk_lib.stages(prog, size)[0], donate_argnums=0, out_shardings=shard).lower(
            state, hp, data, jnp.bool_(True), jnp.int32(0))
    return _COMPILER.submit(lowered.compile, options), lowered.out_info


def compile_block(prog: Program, hp: Any, data: Any, shard: NamedSharding, tuning: Tuning, *, init: bool,
                  chunk: bool = True, strategy: str, small_eval: bool) -> Compiled:
    """Lower and compile a block's init (when ``init``) and chunk (when ``chunk``) programs for the [size]
    variants ``hp`` sharded by ``shard``. ``strategy``: ``"scan"`` or ``"host"`` (:mod:`jaxnets.engine.chunk`,
    :func:`jaxnets.engine.plan.loop_strategy`); ``small_eval``: compile the evaluation with the tuning's
    small-evaluation options."""
    size = len(hp["seed"])
    options = tuning.options()
    init_lowered = jax.jit(prog.init_batch, out_shardings=shard).lower(hp, data)
    state = _sharded_like(init_lowered.out_info, shard)
    pending = None
    if init:
        small = n_params(init_lowered.out_info.params, stacked=True) <= tuning.small_init_params
        pending = _COMPILER.submit(_compile_lowered, init_lowered, tuning.options(small_init=small), options)
    if not chunk:
        return Compiled(pending.result() if pending else None, None)
    train_pending, trained = _compile_steps(prog, size, state, hp, data, shard, strategy, options)
    eval_stage = chunk_lib.stages(prog, size)[1]
    was_ok = jax.ShapeDtypeStruct((size,), jnp.bool_, sharding=shard)
    evaluation = _compile_lowered(jax.jit(eval_stage, donate_argnums=0, out_shardings=shard).lower(
        _sharded_like(trained[0], shard), hp, was_ok, data, jnp.bool_(True),
        jnp.bool_(True)), tuning.options(small_eval=small_eval), options)
    if strategy == "host":
        run = HostChunk(train_pending.result(), evaluation, prog.spec.eval_every, to_device(np.ones(size, bool), shard))
    else:
        run = Staged(train_pending.result(), evaluation)
    return Compiled(pending.result() if pending else None, run)


def programs(prog: Program, hp: Any, data: Any, shard: NamedSharding, tuning: Tuning, devices: Sequence[Any], *,
             init: bool, strategy: str, small_eval: bool, on_compile: Callable[[], None]
             ) -> tuple[Compiled, float]:
    """A block's compiled programs, from the cache or compiled now (``on_compile()`` first): ``(programs,
    seconds spent compiling)``. Arguments as :func:`compile_block`'s."""
    sig = signature(prog, len(hp["seed"]), devices, strategy)
    todo = {what for what, wanted in (("chunk", True), ("init", init)) if wanted and (sig, what) not in _CACHE}
    seconds = 0.0
    if todo:
        on_compile()
        t0 = time.perf_counter()
        compiled = compile_block(prog, hp, data, shard, tuning, init="init" in todo, chunk="chunk" in todo,
                                 strategy=strategy, small_eval=small_eval)
        seconds = time.perf_counter() - t0
        for what in todo:
            cached((sig, what), lambda what=what: getattr(compiled, what))
    return Compiled(cached((sig, "init"), _missing)[0] if init else None, cached((sig, "chunk"), _missing)[0]), seconds


def _missing() -> Any:
    raise KeyError("evicted from the compiled-program cache while in use")


def compile_adopt(prog: Program, keys: Sequence[str], hp: Any, shard: NamedSharding, tuning: Tuning) -> Any:
    """The compiled :func:`jaxnets.engine.chunk.adopt` program of a block of [size] variants ``hp``."""
    size = len(hp["seed"])
    state = _sharded_like(jax.eval_shape(prog.init_batch, hp, prog.data_shapes()), shard)
    parent = jax.ShapeDtypeStruct((size,), jnp.int32, sharding=shard)
    lowered = jax.jit(chunk_lib.adopt(keys), donate_argnums=0, out_shardings=shard).lower(state, hp, parent)
    return _compile_lowered(lowered, tuning.options(), tuning.options())
