"""The engine's settings: :class:`Options` (what a caller chooses) and :class:`Tuning` (how programs are built
and compiled on a platform, one record per platform).

Neither changes what is computed beyond float32 rounding, and neither is ever read from a clock: the same
options and tuning on the same kind of machine give the same numbers, however busy the machine is.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

from jaxnets.variants import Coverage

__all__ = ["CPU_TUNING", "DEFAULT_TUNING", "Options", "Tuning", "tuning_for"]


@dataclasses.dataclass(frozen=True)
class Tuning:
    """How the engine builds and compiles programs on one platform: the one place its tuning knobs live.

    Every field is a rule of shapes and names (never of a timing), so a variant's numbers never depend on
    load. The measurements behind each value are in ``benchmarks/README.md`` ("Tuning").

    The three option sets are given as mappings and kept as sorted ``(name, value)`` tuples (hashable).

    Attributes:
      compiler_options: XLA options for every program (``{}``: XLA's defaults). Options that the environment's
        ``XLA_FLAGS`` sets are left out (the user's flags win).
      small_init_options: options for the init program of a model of at most ``small_init_params``
        parameters per variant (init runs once: its compile time is what counts).
      small_init_params: see ``small_init_options`` (``-1``: never).
      small_eval_options: options for the evaluation program when one variant's evaluation records at most
        ``small_eval_bytes`` of activations.
      small_eval_bytes: see ``small_eval_options`` (``-1``: never).
      flat_optimizer_params: parameters per variant up to which the optimizer updates one flat vector
        (``optax.flatten``) instead of each leaf (``0``: never).
      block_bytes: the most training-step working set of the variants one device trains at once
        (:func:`jaxnets.engine.plan.block_size`; ``0``: no limit).
      min_block: fewest variants per device in a block that ``block_bytes`` limits (unless one variant's step
        alone exceeds it, on one device: then it trains alone).
      small_kernel_dot: the built-in models' dense layers compute small kernels' weight gradients as a fused
        multiply-and-sum (:func:`jaxnets.models.small_kernel_dot_general`) instead of a batched dot.
      conv_impl: the built-in CNN's convolution, ``"matmul"`` (patches times a matrix) or ``"xla"``.
      reuse_padding: a population policy's survivors train in the blocks of an already compiled program when
        those hold at most this many times the positions of a new, tighter program's blocks, else a new
        program is compiled (:func:`jaxnets.engine.plan.reblock`).
      compile_macs: what compiling one more program costs, in multiply-accumulates of training on this
        platform: the price ``mix_architectures = "auto"`` weighs against the padding's wasted work
        (:func:`jaxnets.architectures.worth_mixing`). A constant per platform, never a timing.
    """

    compiler_options: Mapping[str, Any] | tuple = ()
    small_init_options: Mapping[str, Any] | tuple = ()
    small_init_params: int = -1
    small_eval_options: Mapping[str, Any] | tuple = ()
    small_eval_bytes: int = -1
    flat_optimizer_params: int = 0
    block_bytes: int = 0
    min_block: int = 1
    small_kernel_dot: bool = False
    conv_impl: str = "xla"
    reuse_padding: float = 4.0
    compile_macs: float = 1e12

    def __post_init__(self) -> None:
        for name in ("compiler_options", "small_init_options", "small_eval_options"):  # hashable: a cache key
            object.__setattr__(self, name, tuple(sorted(dict(getattr(self, name)).items())))
        if self.conv_impl not in ("matmul", "xla"):
            raise ValueError(f"Tuning.conv_impl = {self.conv_impl!r}: use 'matmul' or 'xla'")

    def options(self, *, small_init: bool = False, small_eval: bool = False) -> dict[str, Any] | None:
        """The XLA options of a program (``None``: XLA's): ``small_init`` for the init program of a small
        model, ``small_eval`` for a small evaluation, else :attr:`compiler_options`. Options the
        environment's ``XLA_FLAGS`` already sets are left out."""
        chosen = (self.small_init_options if small_init else self.small_eval_options if small_eval
                  else self.compiler_options)
        flags = os.environ.get("XLA_FLAGS", "")
        return {k: v for k, v in dict(chosen).items() if k not in flags} or None


_LEVEL_1 = {"xla_backend_optimization_level": 1}

#: The CPU's tuning (XLA:CPU).
CPU_TUNING = Tuning(
    compiler_options=_LEVEL_1,
    small_init_options={"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False},
    small_init_params=2**14,
    small_eval_options={**_LEVEL_1, "xla_cpu_use_fusion_emitters": False},
    small_eval_bytes=2**20,
    flat_optimizer_params=2**14,
    block_bytes=16 * 2**20,
    min_block=8,
    small_kernel_dot=True,
    conv_impl="matmul",
    compile_macs=4.5e10,
)

#: Accelerators' tuning: XLA's defaults, one block of every variant that fits in memory.
DEFAULT_TUNING = Tuning()


def tuning_for(platform: str) -> Tuning:
    """The tuning the engine uses on ``platform`` (``"cpu"``, ``"gpu"``, ``"tpu"``, ...) unless
    :attr:`Options.tuning` says otherwise."""
    return CPU_TUNING if platform == "cpu" else DEFAULT_TUNING


@dataclasses.dataclass(frozen=True)
class Options:
    """Engine settings that do not change results beyond float32 rounding (a block size changes the order in
    which XLA's kernels accumulate); the same settings on the same kind of machine give the same numbers.

    Attributes:
      max_variants_per_program: most variants one compiled program trains at once; larger groups run in
        blocks of this size, one after another (one compilation per group). ``None``: set by the tuning's
        ``block_bytes`` and the memory budget.
      devices: devices to shard the variant axis over (default: all of ``jax.devices()``).
      n_eval_train: training examples used for the evaluation-time train loss and diagnostics.
      memory_budget_bytes: memory one device may use; a group whose estimated need (shapes only, see
        :func:`jaxnets.engine.plan.footprint`) exceeds it is split into blocks automatically. ``None``: half
        of the device's memory (:func:`jaxnets.engine.memory_budget`).
      block_bytes: overrides the tuning's ``block_bytes`` (``0``: no limit).
      tuning: the :class:`Tuning` record; ``None``: :func:`tuning_for` the devices' platform.
      loop: how a segment's steps run: ``"scan"`` (inside the compiled program, a ``lax.scan`` of
        ``eval_every`` steps), ``"host"`` (a Python loop over one compiled, buffer-donating step) or
        ``None``: chosen per program by :func:`jaxnets.engine.plan.loop_strategy` (host where XLA:CPU runs
        the program's convolutions slowly inside a loop). Both give the same numbers to float32 rounding.
      mix_architectures: ``"auto"`` (default), ``True`` or ``False``: whether built-in MLP, RNN or CNN variants
        whose static keys differ only in ``hidden`` train in ONE program at the padded architecture, each
        masked to its own (:mod:`jaxnets.architectures`; ``"auto"``: when one padded program is estimated to
        cost less, compilations included, than one per architecture). Each variant's numbers are its own
        network's to float32 rounding either way.
      cover: a :class:`jaxnets.variants.Coverage`: every group's program is compiled for those activations,
        initializers and stages as well as its own, so calls mixing them differently (a Bayesian search's
        rounds) share one compiled program; ``None``: each group's own.
    """

    max_variants_per_program: int | None = None
    devices: Sequence[Any] | None = None
    n_eval_train: int = 1024
    memory_budget_bytes: int | None = None
    block_bytes: int | None = None
    tuning: Tuning | None = None
    loop: str | None = None
    mix_architectures: str | bool = "auto"
    cover: Coverage | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.mix_architectures, bool) or self.mix_architectures == "auto"):
            raise ValueError(f"Options.mix_architectures = {self.mix_architectures!r}: use 'auto', True or False")
        if self.cover is not None and not isinstance(self.cover, Coverage):
            raise TypeError(f"Options.cover must be a jaxnets.variants.Coverage, got {type(self.cover).__name__}")
        if self.loop not in (None, "scan", "host"):
            raise ValueError(f"Options.loop = {self.loop!r}: use 'scan', 'host' or None (the program's own)")

    def tuning_on(self, platform: str) -> Tuning:
        """The tuning in force on ``platform``: :attr:`tuning` or the platform's, with :attr:`block_bytes`."""
        t = self.tuning or tuning_for(platform)
        return t if self.block_bytes is None else dataclasses.replace(t, block_bytes=self.block_bytes)
