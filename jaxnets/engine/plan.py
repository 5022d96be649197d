"""The plan of a call: which variants train together, in which order, in blocks of what size, and how a
segment's steps run — a pure function of shapes, names and the machine's type, never of a timing.

Block sizes change results in float32 rounding only (XLA's kernels accumulate in another order), and since
they come from shapes alone, the same call on the same kind of machine always trains in the same blocks.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np

from jaxnets import activations
from jaxnets.engine.options import Tuning
from jaxnets.engine.programs import Program

__all__ = ["BlockPlan", "Footprint", "block_order", "block_size", "fit_order", "footprint", "loop_strategy",
           "memory_budget", "plan_blocks", "reblock"]


class Footprint(NamedTuple):
    """Estimated bytes of one variant (see :func:`footprint`)."""

    memory: int  # device memory it needs, evaluation included
    step: int  # working set of one training step
    eval: int = 0  # activations an evaluation records (train-eval and validation batches, forward)
    convolution: bool = False  # the model's forward pass holds a convolution (lax.conv_general_dilated)


def footprint(prog: Program, hp1: Mapping[str, np.ndarray], data: Mapping[str, Any]) -> Footprint:
    """Estimated bytes one variant needs, from shapes only (nothing runs or compiles).

    ``hp1``: hyperparameters of ONE variant, as [1] arrays. ``memory`` counts the training state
    (parameters, optimizer state, best parameters) five times over (new values, gradients, updates,
    buffers being donated, the chunk-start copy :func:`jaxnets.engine.chunk.stages` can rerun from) and the
    activations of an evaluation (train-eval batch with its backward pass, and the validation batch) three
    times over. ``step`` is what one training step touches: the state, the gradients and a minibatch's
    recorded activations twice (forward values and their cotangents). ``eval`` is the evaluation's recorded
    activations once (a measure of its work: :attr:`Tuning.small_eval_bytes`). ``convolution``: whether the
    forward pass (traced on a minibatch's shapes) holds a convolution.
    """
    state = jax.eval_shape(prog.init_batch, hp1, data)
    row = jax.tree.map(lambda a: a[0], hp1)
    params = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), state.params)
    model_state = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), state.model_state)

    def forward(p, s, x):
        return prog.adapter.apply(p, s, prog.hyper(row), x, train=False, record=True)

    acts = [jax.eval_shape(forward, params, model_state, data[k]) for k in ("x_eval", "x_val")]
    batch = jax.ShapeDtypeStruct((prog.spec.batch_size,) + data["x_train"].shape[1:], jnp.float32)
    jaxpr, batch_acts = jax.make_jaxpr(forward, return_shape=True)(params, model_state, batch)
    nbytes = lambda tree: sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(tree))  # noqa: E731
    return Footprint(memory=5 * nbytes(state) + 3 * nbytes(acts),
                     step=nbytes((state.params, state.opt_state)) + nbytes(params) + 2 * nbytes(batch_acts),
                     eval=nbytes(acts), convolution="conv_general_dilated" in set(_primitives(jaxpr.jaxpr)))


def _primitives(jaxpr: Any) -> Iterator[str]:
    """Names of every primitive in ``jaxpr`` and the jaxprs nested in its equations (scan, cond, jit, ...)."""
    for eqn in jaxpr.eqns:
        yield eqn.primitive.name
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            yield from _primitives(sub)


def memory_budget(devices: Sequence[Any]) -> int:
    """Bytes one device may use for a program: half of an accelerator's memory limit, or on the CPU half of
    the host's available memory shared by this process's emulated CPU devices.

    Only this process's devices among ``devices`` are queried (another host's cannot be). When ``devices``
    span several processes, the budget is the smallest over the processes, so that every process picks the
    same block size: then every process must call this function at the same point (a collective).

    Args:
      devices: the devices a program runs on (e.g. every device of the mesh).

    Returns:
      the budget in bytes.
    """
    me = jax.process_index()
    local = [d for d in devices if d.process_index == me] or jax.local_devices()
    stats = local[0].memory_stats() if local[0].platform != "cpu" else None
    if stats and "bytes_limit" in stats:
        budget = int(stats["bytes_limit"] * 0.5)
    else:
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
        budget = int(available * 0.5 / len(local))
    if any(d.process_index != me for d in devices):
        from jax.experimental import multihost_utils

        mib = multihost_utils.process_allgather(np.int32(min(budget // 2**20, 2**31 - 1)))  # [processes]
        budget = int(np.min(mib)) * 2**20
    return budget


def block_size(v: int, n_dev: int, footprint: Footprint, budget: int, max_variants: int | None, tuning: Tuning,
               strategy: str = "scan") -> int:
    """Variants per program call; always a multiple of the device count.

    With the ``"host"`` loop strategy (:func:`loop_strategy`: a convolution on the CPU) and no
    ``max_variants``, one variant per device: a convolution whose kernel differs per variant becomes a grouped
    convolution under ``vmap``, which XLA:CPU runs several times slower than the same convolutions one
    variant at a time (benchmarks/README.md, ``user_cnn``).

    All ``v`` of them, unless fewer fit in ``budget`` bytes per device, or ``max_variants`` says fewer, or
    (when ``max_variants`` is None) a block of variants' training-step working set would exceed
    ``tuning.block_bytes`` per device: then ``tuning.min_block`` per device or more, except that on one
    device a variant whose step alone exceeds ``block_bytes`` trains alone (its operations already fill the
    cores, and a block of one is a plain program without ``vmap``). With several devices a block of one per
    device would still be a vmapped program, so ``min_block`` stays. The variants are then split into equal
    blocks (the last one padded).
    """
    fit = max(1, budget // max(footprint.memory, 1)) * n_dev
    if max_variants is None and strategy == "host":
        max_variants = n_dev
    if max_variants is None and tuning.block_bytes:
        per_device = tuning.block_bytes // max(footprint.step, 1)
        max_variants = (1 if per_device == 0 and n_dev == 1 else max(tuning.min_block, per_device)) * n_dev
    size = min(v, max_variants or v, fit)
    size = -(-v // -(-v // size))  # equal blocks: ceil(v / number of blocks)
    return -(-size // n_dev) * n_dev


def block_order(ids: np.ndarray, size: int, n_dev: int, n_activations: int
                 ) -> tuple[np.ndarray, np.ndarray, activations.Layout | None, int]:
    """Which variant sits where in the blocks, so that each activation is applied to its own variants only.

    Args:
      ids: [V] each variant's activation id.
      size: variants per block from the memory / cache rules (a multiple of ``n_dev``).
      n_dev: devices the variant axis is sharded over.
      n_activations: activations of the group.

    Returns:
      ``(order, real, layout, block)``: ``order`` [n_blocks * block] the variant at each position (padding
      repeats a variant of the same activation), ``real`` [same] False on padding, the
      :data:`jaxnets.activations.Layout` of every device's share (the same for every block and device, so one
      compiled program serves all blocks; ``None`` for one activation, one variant, or when ordering would pad
      the blocks by more than half: then each block computes every activation), and the block size.
    """
    v = len(ids)
    n_blocks = -(-v // size)
    plain = (*fit_order(ids, None, size, n_dev), None, size)
    if n_activations == 1 or size == 1:
        return plain
    counts = {int(k): int(np.sum(ids == k)) for k in np.unique(ids)}
    shares = n_blocks * n_dev  # device shares of the variant axis, over all blocks: grow until a block fits
    while sum(-(-c // shares) for c in counts.values()) * n_dev > size:
        if shares >= max(counts.values()):  # one slot per activation is still too big: no layout
            return plain
        shares += n_dev
    layout = tuple((k, -(-c // shares)) for k, c in counts.items())
    order, real = fit_order(ids, layout, size, n_dev)
    if len(order) > 1.5 * len(plain[0]):
        return plain
    return order, real, layout, sum(c for _, c in layout) * n_dev


def fit_order(ids: np.ndarray, layout: activations.Layout | None, size: int, n_dev: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """``(order, real)`` as :func:`block_order` returns them, for a given ``layout`` (``None``: blocks of
    ``size`` in the given order) and as few blocks as hold every variant.

    Padding repeats a variant of the slot's activation (the first variant where the batch has none of it:
    padding's results are discarded). Raises ``ValueError`` when a variant's activation is not in ``layout``.
    """
    v = len(ids)
    if layout is None:
        n = -(-v // size) * size
        return np.concatenate([np.arange(v), np.full(n - v, v - 1)]), np.arange(n) < v
    members = {k: np.flatnonzero(ids == k) for k, _ in layout}
    if sum(len(m) for m in members.values()) != v:
        raise ValueError(f"activation ids {sorted(set(np.unique(ids)) - set(members))} are not in the layout")
    shares = max(-(-len(members[k]) // count) for k, count in layout)
    shares = -(-shares // n_dev) * n_dev
    order, real = [], []
    for s in range(shares):
        for k, count in layout:
            take = members[k][s * count:(s + 1) * count]
            pad = members[k][-1] if len(members[k]) else 0
            order += [*take, *([pad] * (count - len(take)))]
            real += [True] * len(take) + [False] * (count - len(take))
    return np.asarray(order, np.int64), np.asarray(real, bool)




@dataclasses.dataclass(frozen=True)
class BlockPlan:
    """Where a group's variants sit in its blocks (see :func:`block_order`).

    Attributes:
      order: [n_blocks * size] the group's variant (row of the group) at each position; padding repeats one.
      real: [same] False on padding.
      layout: the activation layout of every block (``None``: none assumed).
      size: variants per block.
    """

    order: np.ndarray
    real: np.ndarray
    layout: activations.Layout | None
    size: int

    @property
    def n_blocks(self) -> int:
        """The number of blocks."""
        return len(self.order) // self.size

    def blocks(self) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """``(start, where, keep)`` of each block: its first position, the variants at its positions [size],
        and the positions that are real (not padding)."""
        for start in range(0, len(self.order), self.size):
            yield (start, self.order[start:start + self.size],
                   np.flatnonzero(self.real[start:start + self.size]))


def plan_blocks(ids: np.ndarray, rows: np.ndarray, size: int, n_dev: int, n_activations: int) -> BlockPlan:
    """The :class:`BlockPlan` of the variants ``rows`` (of a group whose activation ids are ``ids`` [V]) in
    blocks of about ``size`` (:func:`block_order`); ``order`` holds rows of the group."""
    order, real, layout, size = block_order(ids[rows], size, n_dev, n_activations)
    return BlockPlan(rows[order], real, layout, size)


def reblock(ids: np.ndarray, rows: np.ndarray, size0: int, n_dev: int, n_activations: int,
            compiled: Sequence[tuple[int, activations.Layout | None]], reuse_padding: float | None) -> BlockPlan:
    """Where a group's variants ``rows`` train (e.g. a population policy's survivors): in the blocks of a
    program the group has compiled already (``compiled``: their ``(size, layout)``) when those hold at most
    ``reuse_padding`` times the positions of a new program's blocks (``None``: any number, for a pass without
    training), else in a new program's blocks of at most ``size0`` (a power of two, so few sizes are ever
    compiled). A rule of sizes only: every run, and every process, plans the same."""
    size = min(size0, -(-_pow2(len(rows)) // n_dev) * n_dev)
    best = plan_blocks(ids, rows, size, n_dev, n_activations)
    if (best.size, best.layout) in compiled:
        return best
    limit = np.inf if reuse_padding is None else reuse_padding * len(best.order)
    for old_size, old_layout in compiled:
        try:
            order, real = fit_order(ids[rows], old_layout, old_size, n_dev)
        except ValueError:  # an activation the old layout has no slot for
            continue
        if len(order) <= limit:
            limit = len(order)
            best = BlockPlan(rows[order], real, old_layout, old_size)
    return best


def _pow2(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def loop_strategy(footprint: Footprint, platform: str) -> str:
    """How a segment's steps run: ``"host"`` (a Python loop over one compiled, buffer-donating step) when the
    model holds a convolution (``footprint.convolution``) on the CPU — XLA:CPU runs a convolution inside a
    loop body on a slow path (jax#12868) — else ``"scan"`` (the steps inside the compiled program). It reads
    the program's shapes and operations, never a timing."""
    return "host" if platform == "cpu" and footprint.convolution else "scan"
