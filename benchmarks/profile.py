"""Where a jaxnets training step spends its time: the measurements behind the notes in benchmarks/README.md.

Two reports, each timed best-of-``--reps`` in this process (run it on a quiet machine)::

    python -m benchmarks.profile step wine_mlp 256     # one engine block: full step vs its parts
    python -m benchmarks.profile dots                  # XLA batched dots at the workloads' shapes
    python -m benchmarks.profile compile digits_cnn 64 # one group's compile: phases, XLA's vs the engine's options

``step`` builds the engine's per-variant program for ``N`` variants of a workload (all in one vmapped
block, as the engine runs a block; for ``N`` = 1 plain arrays without ``vmap``, as the engine runs a block of
one) and times ``--steps`` steps inside ``lax.scan`` of:

* ``full``: the engine's training step (minibatch gather, forward, backward, Adam, divergence mask);
* ``fwd+bwd``: forward and backward only (parameters nudged by the gradient so nothing is dead code);
* ``fwd``: the forward pass and loss only;
* ``adam``: the optimizer update alone, on fixed gradients.

``dots`` times the three matmuls of a dense layer's training step under a leading variant axis —
forward ``vbi,vio->vbo``, input gradient ``vbo,vio->vbi``, weight gradient ``vbi,vbo->vio`` — and the weight
gradient as a fused multiply-and-sum (what :func:`jaxnets.models.small_kernel_dot_general` uses for small
kernels), plus a 1024^3 matmul for the machine's reachable peak.

``compile`` builds one block of ``N`` variants of a workload (the program built with
:data:`jaxnets.engine.CPU_TUNING`, as the engine builds it on the CPU) and times the phases of its compile —
tracing and lowering the init and chunk programs, compiling each (the chunk as one program with its steps in
a ``lax.scan``, :func:`jaxnets.engine.chunk.chunk`; ``engine.train`` compiles its two halves as two,
overlapping, see :func:`jaxnets.engine.chunk.stages`, or a convolution's steps as a host loop) — once with
XLA's default options and once with ``CPU_TUNING``'s (:meth:`jaxnets.engine.Tuning.options`: the chunk with
``compiler_options``, the init of a small model with ``small_init_options``, as
:func:`jaxnets.engine.compile.compile_block` does), then the chunk's run time (``--steps`` steps, best of
``--reps``) under each: the measurement behind ``CPU_TUNING``'s option sets.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from benchmarks.machine import _best_time

DOT_SHAPES: tuple[tuple[int, int, int, int], ...] = (
    # (variants, batch, inputs, outputs)
    (256, 32, 13, 32), (256, 32, 32, 32), (256, 32, 32, 3),  # wine_mlp, one block of 256
    (8, 128, 64, 128), (8, 128, 128, 128), (8, 128, 128, 10),  # digits_mlp, one CPU block of 8
    (256, 128, 128, 128),  # digits_mlp as one block of 256 (out of cache)
)


def best_time(fn: Callable[..., Any], *args: Any, reps: int = 5, inner: int = 1) -> float:
    """Seconds per call of ``fn(*args)``: the best of ``reps`` (or more, see :func:`machine._best_time`) runs
    of ``inner`` back-to-back calls, blocked on the last, so dispatch overlaps for microsecond kernels."""
    import jax

    def run() -> None:
        for _ in range(inner):
            out = fn(*args)
        jax.block_until_ready(out)

    return _best_time(run, reps) / inner


def step_parts(workload: str, n: int, steps: int) -> dict[str, Callable[[Any], Any]]:
    """Jitted ``state -> state`` functions running ``steps`` steps of each part (see the module docstring),
    and the initial state under ``"state"``."""
    import jax
    import jax.numpy as jnp

    from benchmarks.workloads import WORKLOADS, load_data
    from jaxnets import engine
    from jaxnets.engine import chunk

    wl = WORKLOADS[workload]
    ds = load_data(wl)
    prog = engine.program(wl.jaxnets_rows(n, steps, steps), ds, n_eval_train=32, model=_factory(wl))
    hp = {k: jnp.asarray(v) for k, v in prog.stack().items()}
    data = {k: jnp.asarray(v) for k, v in prog.data.items()}
    state = jax.jit(prog.init_batch)(hp, data)
    idx = jnp.swapaxes(jax.vmap(prog.batch_indices, in_axes=(None, 0))(jnp.int32(0), hp), 0, 1)  # [K, V, B]

    def loss_of(params, hp1, i):
        return prog.data_loss(prog.apply(params, {}, hp1, data["x_train"][i]), data["y_train"][i])

    def lift(fn: Callable[..., Any], batched: int) -> Callable[..., Any]:
        """``fn`` over the block, as the engine lifts it (:func:`jaxnets.engine.chunk.lift`: ``vmap``, or plain
        arrays for one variant); its first ``batched`` arguments carry the variant axis."""
        return chunk.lift(fn, n, batched)

    def full(s):
        step = lift(lambda s, hp1, i, data: prog.step(s, hp1, data, i), 3)
        return jax.lax.scan(lambda s, i: (step(s, hp, i, data), None), s, idx)[0]

    def fwd_bwd(s):
        grad = lift(jax.grad(loss_of), 3)

        def body(p, i):
            return jax.tree.map(lambda a, g: a - 1e-9 * g, p, grad(p, hp, i)), None

        return jax.lax.scan(body, s.params, idx)[0]

    def fwd(s):
        loss = lift(loss_of, 3)

        def body(p, i):
            total = jnp.sum(loss(p, hp, i))
            return jax.tree.map(lambda a: a + 1e-9 * total, p), None

        return jax.lax.scan(body, s.params, idx)[0]

    def adam(s):
        def one(params, opt, hp1):
            updates, opt = prog.optimizer(hp1, params).update(params, opt, params)
            return jax.tree.map(jnp.add, params, updates), opt

        update = lift(one, 3)
        return jax.lax.scan(lambda c, _: (update(*c, hp), None), (s.params, s.opt_state), None, length=steps)[0]

    parts = {"full": full, "fwd+bwd": fwd_bwd, "fwd": fwd, "adam": adam}
    return {"state": state, **{k: jax.jit(f) for k, f in parts.items()}}


def report_step(workload: str, n: int, steps: int, reps: int) -> None:
    """Print ms per step and model-steps/s of each part of one block's training step."""
    parts = step_parts(workload, n, steps)
    state = parts.pop("state")
    for name, fn in parts.items():
        t = best_time(fn, state, reps=reps)
        print(f"{workload} N={n}: {name:8s} {t / steps * 1e3:7.3f} ms/step  {n * steps / t:12,.0f} model-steps/s")


def report_dots(reps: int) -> None:
    """Print microseconds and GFLOP/s of each dense-layer matmul at :data:`DOT_SHAPES`."""
    import jax
    import jax.numpy as jnp

    forms: dict[str, Callable[..., Any]] = {
        "fwd": lambda x, w, dz: jnp.einsum("vbi,vio->vbo", x, w),
        "dx": lambda x, w, dz: jnp.einsum("vbo,vio->vbi", dz, w),
        "dW dot": lambda x, w, dz: jnp.einsum("vbi,vbo->vio", x, dz),
        "dW mul-sum": lambda x, w, dz: jnp.sum(x[..., :, None] * dz[..., None, :], axis=1),
    }
    for v, b, i, o in DOT_SHAPES:
        x, w, dz = jnp.ones((v, b, i)), jnp.ones((v, i, o)), jnp.ones((v, b, o))
        flops = 2 * v * b * i * o
        cells = []
        for name, f in forms.items():
            t = best_time(jax.jit(f), x, w, dz, reps=reps, inner=20)
            cells.append(f"{name} {t * 1e6:7.0f} us {flops / t / 1e9:6.1f} GF/s")
        print(f"V={v:4d} B={b:4d} {i:4d}x{o:<4d} | " + " | ".join(cells))
    a = jnp.ones((1024, 1024))
    t = best_time(jax.jit(lambda a: a @ a), a, reps=reps, inner=5)
    print(f"1024x1024x1024 matmul: {2 * 1024**3 / t / 1e9:.1f} GFLOP/s")


def _factory(wl: Any) -> Any:
    """The workload's user model factory (``None``: the built-in model of its kind)."""
    return wl.factory() if wl.model is not None else None


#: ``compile``'s two option sets: XLA's defaults (no options) and the CPU tuning's.
OPTION_SETS: tuple[str, ...] = ("XLA default", "CPU_TUNING")


def report_compile(workload: str, n: int, steps: int, reps: int) -> None:
    """Print the compile phases and the chunk's run time with XLA's default options and ``CPU_TUNING``'s."""
    import time

    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import AxisType, NamedSharding
    from jax.sharding import PartitionSpec as P

    from benchmarks.workloads import WORKLOADS, load_data
    from jaxnets import engine
    from jaxnets.engine import chunk as chunk_lib
    from jaxnets.engine.programs import n_params
    from jaxnets.engine.transfer import to_device

    wl = WORKLOADS[workload]
    tuning = engine.CPU_TUNING
    prog = engine.program(wl.jaxnets_rows(n, steps, steps), load_data(wl), model=_factory(wl), tuning=tuning)
    devices = jax.devices()[:1]
    mesh = jax.make_mesh((1,), ("variants",), devices=devices, axis_types=(AxisType.Auto,))
    shard, replicated = NamedSharding(mesh, P("variants")), NamedSharding(mesh, P())
    hp, data = to_device(prog.stack(), shard), to_device(prog.data, replicated)
    for label in OPTION_SETS:
        t0 = time.perf_counter()
        init_lowered = jax.jit(prog.init_batch, out_shardings=shard).lower(hp, data)
        t1 = time.perf_counter()
        state = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=shard), init_lowered.out_info)
        chunk_lowered = jax.jit(chunk_lib.chunk(prog, n), donate_argnums=0, out_shardings=shard).lower(
            state, hp, data, jnp.bool_(True), jnp.bool_(False), jnp.int32(0))
        t2, c2 = time.perf_counter(), time.process_time()
        if label == "XLA default":
            options = init_options = None
        else:  # as jaxnets.engine.compile.compile_block picks them
            small = n_params(init_lowered.out_info.params, stacked=True) <= tuning.small_init_params
            options, init_options = tuning.options(), tuning.options(small_init=small)
        init = init_lowered.compile(init_options)
        t3, c3 = time.perf_counter(), time.process_time()
        chunk = chunk_lowered.compile(options)
        t4, c4 = time.perf_counter(), time.process_time()
        state = init(hp, data)

        def run(state=state, chunk=chunk):
            copy = jax.tree.map(lambda a: a.copy(), state)  # the chunk donates its state
            return chunk(copy, hp, data, np.bool_(True), np.bool_(False), np.int32(0))

        t = best_time(run, reps=reps)
        print(f"{workload} N={n} {label:11s} ({options}; init {init_options}): lower init {t1 - t0:5.2f} s, "
              f"lower chunk {t2 - t1:5.2f} s, compile init {t3 - t2:5.2f} s ({c3 - c2:.2f} CPU s), compile chunk "
              f"{t4 - t3:5.2f} s ({c4 - c3:.2f} CPU s: XLA compiles on several threads); chunk of {steps} steps "
              f"{t * 1e3:8.1f} ms ({n * steps / t:,.0f} model-steps/s, evaluation included)")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("step", help="time the parts of one block's training step")
    s.add_argument("workload")
    s.add_argument("n", type=int, help="variants in the block")
    s.add_argument("--steps", type=int, default=100)
    sub.add_parser("dots", help="time dense-layer matmuls at the workloads' shapes")
    c = sub.add_parser("compile", help="time one group's compile phases, XLA's default vs CPU_TUNING's options")
    c.add_argument("workload")
    c.add_argument("n", type=int, help="variants in the block")
    c.add_argument("--steps", type=int, default=100)
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args(argv)
    if args.what == "step":
        report_step(args.workload, args.n, args.steps, args.reps)
    elif args.what == "compile":
        report_compile(args.workload, args.n, args.steps, args.reps)
    else:
        report_dots(args.reps)


if __name__ == "__main__":
    main()
