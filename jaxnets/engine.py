"""The engine: train a heterogeneous batch of variants in one compiled, sharded program per static group.

Data path for one group (see :mod:`jaxnets.variants` for how rows become groups)::

    rows ─► stack() ─► hyper {key: [V]} ─► pad V to a multiple of the device count, shard the variant axis
         ─► split into blocks of variants (memory; on the CPU, cache-sized blocks: Options.block_bytes)
         ─► init:  parameters per variant (seed, init id, init scale, ...) -> TrainState [V, ...]
         ─► chunk: vmap( lax.scan(step, eval_every steps) ; evaluate ) — jitted once, buffers donated,
                   called once per evaluation (Python runs per chunk, never per step); called with
                   train=False first, for evaluation 0

Inside the program, per variant:

* minibatches are drawn on device, ``batch_size`` indices uniformly with replacement from
  ``fold_in(key(seed), 1)`` folded with the step, so each variant's data order follows its seed;
* dropout masks come from ``fold_in(key(seed), 2)`` folded with the step; init from ``fold_in(key(seed), 0)``;
* loss = mean data loss + ``l2 / 2 * sum(kernel ** 2)`` (biases are not penalized); decoupled weight decay,
  clipping and the optimizer's hyperparameters are per-variant optimizer state (:mod:`jaxnets.optimizers`);
* a step whose loss, gradients or new parameters are not finite marks the variant *diverged* and the update
  is discarded: its parameters stay at their last finite values and never change again; so does an
  evaluation whose training loss exceeds ``divergence_factor`` (default 1000, 0: off) times the variant's
  training loss at evaluation 0 (a finite blow-up);
* at each evaluation, with ``early_stopping_patience > 0``, a variant whose validation loss has not improved
  for ``early_stopping_patience`` evaluations is *early-stopped*: its parameters go back to its best ones
  and stop changing;
* nothing mixes variants, so every variant's numbers are what training it alone would give.

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

import collections
import dataclasses
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxnets import activations, diagnostics, events, initializers, losses, optimizers
from jaxnets import variants as variants_lib
from jaxnets.data import Dataset
from jaxnets.models import CNN, MLP, RNN, small_kernel_dot_general
from jaxnets.result import METRICS, STATUS_NAMES, GroupResult, Result

OK, DIVERGED, EARLY_STOPPED = (STATUS_NAMES.index(s) for s in ("ok", "diverged", "early_stopped"))

ProgressFn = Callable[[events.Event], None]


class Footprint(NamedTuple):
    """Estimated bytes of one variant (see :meth:`_GroupProgram.footprint`)."""

    memory: int  # device memory it needs, evaluation included
    step: int  # working set of one training step


class TrainState(NamedTuple):
    """One variant's training state (a leading [V] axis on every leaf once vmapped).

    ``best_params`` is ``None`` unless early stopping is on. ``last`` holds the metrics of the latest
    evaluation (repeated once the variant stops changing); ``loss0`` the training loss at evaluation 0 (for
    the ``divergence_factor`` rule).
    """

    params: Any
    opt_state: Any
    step: jax.Array
    status: jax.Array
    stopped_step: jax.Array
    best_val: jax.Array
    bad_evals: jax.Array
    best_params: Any
    last: dict[str, jax.Array]
    loss0: jax.Array


# --------------------------------------------------------------------------------------------------------
# Input checks (eager, before any compute)
# --------------------------------------------------------------------------------------------------------


def _check_data(ds: Dataset, spec: variants_lib.GroupSpec) -> None:
    for split in ("train", "val"):
        x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        if len(x) != len(y):
            raise ValueError(f"{ds.name}: x_{split} has {len(x)} examples but y_{split} has {len(y)}")
        if len(x) == 0:
            raise ValueError(f"{ds.name}: the {split} split is empty")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{ds.name}: x_{split} contains NaN or Inf")
    if ds.x_val.shape[1:] != ds.x_train.shape[1:]:
        raise ValueError(f"{ds.name}: x_val examples have shape {ds.x_val.shape[1:]}, "
                         f"x_train examples {ds.x_train.shape[1:]}")
    need = {"cnn": 4, "rnn": 3}.get(spec.kind)
    if need and ds.x_train.ndim != need:
        layout = "images [N, H, W, C]" if spec.kind == "cnn" else "sequences [N, T, F]"
        raise ValueError(f"model kind {spec.kind!r} needs {layout}; data set {ds.name!r} has x of shape "
                         f"{ds.x_train.shape} (try the '_image' / '_sequence' variant of the data set)")
    if ds.sequence_output and spec.kind != "rnn":
        raise ValueError(f"data set {ds.name!r} has a label per time step; only kind 'rnn' can fit it")
    if spec.batch_size > len(ds.x_train):
        raise ValueError(f"batch_size {spec.batch_size} is larger than the {len(ds.x_train)} training examples")
    for split in ("train", "val"):
        y = _labels(spec.loss, getattr(ds, f"y_{split}"), ds)
        losses.check_labels(spec.loss, y, ds.output_dim)


def _labels(loss: str, y: np.ndarray, ds: Dataset) -> np.ndarray:
    """``ds``'s labels ``y`` in the form ``loss`` takes (:func:`jaxnets.losses.labels_for`)."""
    try:
        return losses.labels_for(loss, y, ds.output_dim, ds.task)
    except ValueError as e:
        raise ValueError(f"{e} (data set {ds.name!r})") from None


# --------------------------------------------------------------------------------------------------------
# One variant: model, init, step, evaluation (vmapped and jitted by `_GroupProgram`)
# --------------------------------------------------------------------------------------------------------


def _build(kind: str, hidden: Sequence[int], dense: Sequence[int], cell: str, many_to_many: bool,
           platform: str | None, **common: Any):
    """An MLP, CNN or RNN of the given structure. ``platform="cpu"`` picks the implementations that are fast
    under ``vmap`` on XLA's CPU backend (same numbers up to float rounding); ``None``: the plain ones."""
    on_cpu = platform == "cpu"
    # vmapped weight gradients of small kernels are slow batched dots on XLA's CPU backend
    dot_general = small_kernel_dot_general if on_cpu else None
    if kind == "mlp":
        return MLP(hidden=tuple(hidden), dot_general=dot_general, **common)
    if kind == "cnn":
        # vmapped per-variant convolutions are grouped convolutions: slow on XLA's CPU backend, fine on GPU
        conv_impl = "matmul" if on_cpu else "xla"
        return CNN(channels=tuple(hidden), dense=tuple(dense), conv_impl=conv_impl, dot_general=dot_general,
                   **common)
    return RNN(hidden=tuple(hidden), cell=cell, many_to_many=many_to_many, **common)


def _model(spec: variants_lib.GroupSpec, hp: Mapping[str, jax.Array], output_dim: int, many_to_many: bool,
           platform: str):
    return _build(
        spec.kind, spec.hidden, spec.dense, spec.cell, many_to_many, platform,
        output_dim=output_dim,
        activation=hp["activation"],
        activation_names=spec.activations,
        kernel_init=initializers.by_index(hp["init"], hp["init_scale"], spec.initializers),
        dropout=hp["dropout"] if spec.use_dropout else 0.0,
    )


def model(row: Mapping[str, Any], ds: Dataset):
    """The Flax model the engine trains for variant ``row`` on ``ds``, with the activation and initializer
    by name (a plain model: no per-variant switch).

    ``row``: a variant (missing keys take the defaults), e.g. ``result.rows[i]``. With
    ``result.params(i)`` it gives variant ``i``'s predictions::

        m = engine.model(result.rows[i], ds)
        logits = m.apply({"params": result.params(i)}, ds.x_test)   # [B, output_dim] ([B, T, output_dim])

    Dropout (the variant's rate) is applied only when called with ``train=True`` and a ``"dropout"`` rng.
    """
    row = variants_lib.normalize(row, 0, ds.default_loss)
    return _build(
        row["kind"], row["hidden"], row["dense"], row["cell"], ds.sequence_output, None,
        output_dim=ds.output_dim,
        activation=row["activation"],
        kernel_init=initializers.get(row["init"], row["init_scale"]),
        dropout=row["dropout"],
    )


def _tree_where(cond: jax.Array, a: Any, b: Any) -> Any:
    return jax.tree.map(lambda x, y: jnp.where(cond, x, y), a, b)


def _all_finite(tree: Any) -> jax.Array:
    """True when every element of ``tree`` is finite: ``sum(x * 0)`` is 0, or NaN if any x is NaN/Inf.

    One fused reduction per leaf (no boolean temporaries).
    """
    return jnp.isfinite(sum(jnp.sum(x * 0.0) for x in jax.tree.leaves(tree)))


class _GroupProgram:
    """The per-variant functions of one static group, and their vmapped, jitted, sharded versions."""

    def __init__(self, spec: variants_lib.GroupSpec, ds: Dataset, n_eval_train: int, *, platform: str):
        self.spec = spec
        self.platform = platform
        self.output_dim = ds.output_dim
        self.many_to_many = ds.sequence_output
        self.loss_fn = losses.get(spec.loss)
        self.has_accuracy = losses.has_accuracy(spec.loss)
        self.n_train = len(ds.x_train)
        self.x_sample = jnp.zeros((1,) + ds.x_train.shape[1:], jnp.float32)
        self.data = {
            "x_train": np.asarray(ds.x_train, np.float32),
            "y_train": _labels(spec.loss, ds.y_train, ds),
            "x_eval": np.asarray(ds.x_train[:n_eval_train], np.float32),
            "y_eval": _labels(spec.loss, ds.y_train[:n_eval_train], ds),
            "x_val": np.asarray(ds.x_val, np.float32),
            "y_val": _labels(spec.loss, ds.y_val, ds),
        }
        self.sat = activations.saturation_threshold(spec.activations)

    def model(self, hp: Mapping[str, jax.Array]):
        """The Flax model of one variant (activation and initializer ids from ``hp``)."""
        return _model(self.spec, hp, self.output_dim, self.many_to_many, self.platform)

    # -- pieces --------------------------------------------------------------------------------------
    def optimizer(self, hp: Mapping[str, jax.Array]):
        s = self.spec
        hyper = {k: hp[k] for k in optimizers.HYPERPARAMETERS}
        return optimizers.with_hyperparameters(s.optimizer, hyper, clip=s.use_clip, decay=s.use_weight_decay)

    def data_loss(self, logits: jax.Array, y: jax.Array) -> jax.Array:
        return jnp.mean(self.loss_fn(losses.fit_logits(self.spec.loss, logits, y), y))

    def accuracy(self, logits: jax.Array, y: jax.Array) -> jax.Array:
        if not self.has_accuracy:
            return jnp.float32(jnp.nan)
        return jnp.mean(losses.accuracy(self.spec.loss, losses.fit_logits(self.spec.loss, logits, y), y))

    # -- per variant ---------------------------------------------------------------------------------
    def init_params(self, hp: Mapping[str, jax.Array]) -> Any:
        """The variant's initial parameters, from ``fold_in(key(seed), 0)``."""
        model = self.model(hp)
        key = jax.random.fold_in(jax.random.key(hp["seed"]), 0)
        return model.init({"params": key, "dropout": key}, self.x_sample)["params"]

    def init(self, params: Any, hp: Mapping[str, jax.Array], data: Mapping[str, jax.Array]) -> TrainState:
        """A variant's training state before step 0, for initial ``params`` (evaluation 0 is the chunk
        program run with ``train=False``, so evaluation is compiled once)."""
        metrics = jax.eval_shape(self.evaluate, params, hp, data)
        return TrainState(
            params=params,
            opt_state=self.optimizer(hp).init(params),
            step=jnp.int32(0),
            status=jnp.int32(OK),
            stopped_step=jnp.int32(self.spec.steps),
            best_val=jnp.float32(jnp.inf),
            bad_evals=jnp.int32(0),
            best_params=params if self.spec.early_stopping_patience > 0 else None,
            last=jax.tree.map(lambda m: jnp.full(m.shape, jnp.nan, m.dtype), metrics),
            loss0=jnp.float32(jnp.nan),
        )

    def init_batch(self, hp: Mapping[str, jax.Array], data: Mapping[str, jax.Array]) -> TrainState:
        """Initialize a batch of variants ([V] hyperparameters): the [V]-stacked :class:`TrainState`.

        Parameters are created one variant after another (``lax.map``), the rest is vmapped. Two reasons:
        each variant then runs only its own initializer (a real ``lax.switch``, not all of them), and no
        batched LAPACK QR (the orthogonal initializer) is ever issued: jaxlib 0.10's CPU LAPACK kernels
        split a batch over XLA's intra-op thread pool and block waiting for it, which deadlocks when
        several run at once on a small pool (2 cores). Init runs once, so the loop costs little.
        """
        params = jax.lax.map(self.init_params, hp)
        return jax.vmap(self.init, in_axes=(0, 0, None))(params, hp, data)

    def footprint(self, hp1: Mapping[str, np.ndarray], data: Mapping[str, Any]) -> Footprint:
        """Estimated bytes one variant needs, from shapes only (nothing runs or compiles).

        ``hp1``: hyperparameters of ONE variant, as [1] arrays. ``memory`` counts the training state
        (parameters, optimizer state, best parameters) four times over (new values, gradients, updates,
        buffers being donated) and the activations of an evaluation (train-eval batch with its backward pass,
        and the validation batch) three times over. ``step`` is what one training step touches: the state,
        the gradients and a minibatch's recorded activations twice (forward values and their cotangents).
        """
        state = jax.eval_shape(self.init_batch, hp1, data)
        row = jax.tree.map(lambda a: a[0], hp1)
        model = self.model(row)
        params = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), state.params)

        def forward(p, x):
            return model.apply({"params": p}, x, mutable=["intermediates"])

        acts = [jax.eval_shape(forward, params, data[k]) for k in ("x_eval", "x_val")]
        batch = jax.ShapeDtypeStruct((self.spec.batch_size,) + data["x_train"].shape[1:], jnp.float32)
        batch_acts = jax.eval_shape(forward, params, batch)
        nbytes = lambda tree: sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(tree))  # noqa: E731
        return Footprint(memory=4 * nbytes(state) + 3 * nbytes(acts),
                         step=nbytes((state.params, state.opt_state)) + nbytes(params) + 2 * nbytes(batch_acts))

    def batch_indices(self, first_step: jax.Array, hp: Mapping[str, jax.Array]) -> jax.Array:
        """Minibatch indices [eval_every, batch_size] of steps ``first_step, first_step + 1, ...``.

        Step ``t`` draws ``batch_size`` indices uniformly with replacement from ``fold_in(fold_in(key(seed),
        1), t)``; a whole chunk's are drawn at once, before its ``lax.scan``, which is faster than one small
        draw per step.
        """
        base = jax.random.fold_in(jax.random.key(hp["seed"]), 1)
        steps = first_step + jnp.arange(self.spec.eval_every, dtype=jnp.int32)
        draw = lambda t: jax.random.randint(jax.random.fold_in(base, t), (self.spec.batch_size,), 0,  # noqa: E731
                                            self.n_train)
        return jax.vmap(draw)(steps)

    def step(self, state: TrainState, hp: Mapping[str, jax.Array], data: Mapping[str, jax.Array],
             idx: jax.Array) -> TrainState:
        """One training step on the minibatch ``idx`` [batch_size] of the training split."""
        spec = self.spec
        model = self.model(hp)
        base = jax.random.key(hp["seed"])
        xb, yb = data["x_train"][idx], data["y_train"][idx]
        rngs = {"dropout": jax.random.fold_in(jax.random.fold_in(base, 2), state.step)}

        def objective(params):
            logits = model.apply({"params": params}, xb, train=True, rngs=rngs)
            loss = self.data_loss(logits, yb)
            if spec.use_l2:
                kernels = [p["kernel"] for p in jax.tree.leaves(params, is_leaf=lambda t: "kernel" in t)
                           if isinstance(p, Mapping)]
                loss = loss + 0.5 * hp["l2"] * sum(jnp.sum(jnp.square(k)) for k in kernels)
            return loss

        loss, grads = jax.value_and_grad(objective)(state.params)
        tx = self.optimizer(hp)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = jax.tree.map(jnp.add, state.params, updates)
        finite = jnp.isfinite(loss) & _all_finite(grads) & _all_finite(params)
        active = (state.status == OK) & (state.step < spec.steps)
        take = active & finite
        diverged = active & ~finite
        # Only the parameters are masked: a frozen (diverged / stopped / finished) variant's optimizer
        # state may keep moving, but it never touches its parameters again. Masking the optimizer state
        # too would cost two more parameter-sized passes per step (Adam's moments).
        return state._replace(
            params=_tree_where(take, params, state.params),
            opt_state=opt_state,
            step=state.step + 1,
            status=jnp.where(diverged, DIVERGED, state.status),
            stopped_step=jnp.where(diverged, state.step, state.stopped_step),
        )

    def evaluate(self, params: Any, hp: Mapping[str, jax.Array], data: Mapping[str, jax.Array]) -> dict:
        model = self.model(hp)

        def train_loss(p):
            logits, rec = model.apply({"params": p}, data["x_eval"], mutable=["intermediates"])
            return self.data_loss(logits, data["y_eval"]), rec["intermediates"]

        (loss, recorded), grads = jax.value_and_grad(train_loss, has_aux=True)(params)
        val_logits = model.apply({"params": params}, data["x_val"])
        act_fn = lambda x: activations.by_index(hp["activation"], x, self.spec.activations)  # noqa: E731
        stats = diagnostics.activation_stats(recorded, act_fn, self.sat[hp["activation"]])
        return {
            "train_loss": loss,
            "val_loss": self.data_loss(val_logits, data["y_val"]),
            "val_accuracy": self.accuracy(val_logits, data["y_val"]),
            "grad_norm": diagnostics.grad_norms(grads),
            **stats,
        }

    def after_eval(self, state: TrainState, hp, data, was_ok: jax.Array, first: jax.Array
                   ) -> tuple[TrainState, dict]:
        """Evaluate, then apply divergence / early-stopping rules; report repeated values once stopped.

        ``was_ok``: the variant was training at the start of the chunk; ``first``: this is evaluation 0.
        """
        spec = self.spec
        m = self.evaluate(state.params, hp, data)
        ok = state.status == OK
        # a finite blow-up (training loss above divergence_factor x its evaluation-0 loss) counts as divergence
        factor = hp["divergence_factor"]
        blown = ~first & (factor > 0) & (m["train_loss"] > factor * state.loss0)
        finite = jnp.isfinite(m["val_loss"]) & jnp.isfinite(m["train_loss"]) & ~blown
        status = jnp.where(ok & ~finite, DIVERGED, state.status)
        stopped_step = jnp.where(ok & ~finite, jnp.minimum(state.step, spec.steps), state.stopped_step)
        improved = ok & finite & (m["val_loss"] < state.best_val)
        best_val = jnp.where(improved, m["val_loss"], state.best_val)
        params, best_params, bad = state.params, state.best_params, state.bad_evals
        if spec.early_stopping_patience > 0:
            best_params = _tree_where(improved, params, best_params)
            bad = jnp.where(improved, 0, jnp.where(ok, bad + 1, bad))
            stop = ok & finite & (bad >= spec.early_stopping_patience) & (state.step < spec.steps)
            status = jnp.where(stop, EARLY_STOPPED, status)
            stopped_step = jnp.where(stop, state.step, stopped_step)
            params = _tree_where(stop, best_params, params)
        # once a variant has stopped or diverged, and at the evaluation where it diverges, report its last
        # (finite) values again
        reported = _tree_where((was_ok & finite) | first, m, state.last)
        new = state._replace(params=params, status=status, stopped_step=stopped_step, best_val=best_val,
                             bad_evals=bad, best_params=best_params, last=reported,
                             loss0=jnp.where(first, m["train_loss"], state.loss0))
        return new, reported

    def chunk(self, state: TrainState, hp, data, train: jax.Array) -> tuple[TrainState, dict]:
        """``eval_every`` steps in a ``lax.scan`` (none when ``train`` is False), then one evaluation.

        ``train`` is one unbatched bool for all variants: ``False`` gives evaluation 0 from the same compiled
        program (a ``lax.cond``, so no steps are computed).
        """
        was_ok = state.status == OK

        def steps(s: TrainState) -> TrainState:
            idx = self.batch_indices(s.step, hp)
            return jax.lax.scan(lambda s, i: (self.step(s, hp, data, i), None), s, idx)[0]

        state = jax.lax.cond(train, steps, lambda s: s, state)
        return self.after_eval(state, hp, data, was_ok, first=~train)


# --------------------------------------------------------------------------------------------------------
# A group: pad, shard, compile once, run chunk by chunk
# --------------------------------------------------------------------------------------------------------


def _pad(hyper: Mapping[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """Pad every [V] array to [size] by repeating the last variant (padding is dropped from results)."""
    return {k: np.concatenate([v, np.repeat(v[-1:], size - len(v))]) for k, v in hyper.items()}


class _Compiled(NamedTuple):
    init: Any
    chunk: Any


#: Compiled (init, chunk) programs by group signature, so a second ``train`` call with the same static
#: group, data shapes, block size and devices (e.g. the next round of a Bayesian search) skips compilation.
#: It only saves time: programs are pure functions of their arguments, so results do not depend on it.
_CACHE: collections.OrderedDict[tuple, _Compiled] = collections.OrderedDict()
_CACHE_SIZE = 16


def clear_cache() -> None:
    """Forget every compiled program (the next ``train`` call compiles again)."""
    _CACHE.clear()


def _signature(prog: _GroupProgram, size: int, devices: Sequence[Any]) -> tuple:
    shapes = tuple((k, v.shape, v.dtype.str) for k, v in sorted(prog.data.items()))
    return (prog.spec, prog.output_dim, prog.many_to_many, prog.n_train, shapes, size,
            tuple(d.id for d in devices))


def _unbatched(fn: Callable) -> Callable:
    """``fn(state, hp, data, train)`` of one variant applied to [1]-stacked ``state`` and ``hp``, without
    ``vmap``.

    A program of one variant then holds plain arrays: XLA:CPU runs a vmapped program whose variant axis has
    size 1 much slower (digits MLP 4x1024, one variant: 36 model-steps/s vmapped, 109 for a plain jitted
    step), and the activation and initializer switches become real branches.
    """

    def one(state, hp, data, train):
        first = lambda tree: jax.tree.map(lambda a: a[0], tree)  # noqa: E731
        return jax.tree.map(lambda a: a[None], fn(first(state), first(hp), data, train))

    return one


def _compile(prog: _GroupProgram, hp: Any, data: Any, shard: NamedSharding) -> _Compiled:
    """Lower and compile the init and chunk programs for [size] variants sharded by ``shard``."""
    init = jax.jit(prog.init_batch, out_shardings=shard).lower(hp, data).compile()
    size = len(hp["seed"])
    per_variant = _unbatched(prog.chunk) if size == 1 else jax.vmap(prog.chunk, in_axes=(0, 0, None, None))
    chunk = jax.jit(per_variant, donate_argnums=0, out_shardings=shard)
    return _Compiled(init, chunk.lower(init.out_info, hp, data, jnp.bool_(True)).compile())


def memory_budget(devices: Sequence[Any]) -> int:
    """Bytes one device may use for a program: half of an accelerator's memory limit, or on the CPU half of
    the host's available memory shared by the emulated CPU devices."""
    stats = devices[0].memory_stats() if devices[0].platform != "cpu" else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"] * 0.5)
    available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    return int(available * 0.5 / len(devices))


#: Default :attr:`Options.block_bytes` on the CPU: about half the last-level cache of a desktop / server core
#: complex. Batched matmuls whose operands outgrow the caches run at a fraction of their in-cache speed (digits
#: MLP 4x128, batch 128, 2-core EPYC: 256 variants in one program 2,492 model-steps/s; blocks of 8: 4,102).
CPU_BLOCK_BYTES = 16 * 2**20

#: Fewest variants per device in a block set by ``block_bytes``: below this, a program leaves cores idle
#: (digits MLP 4x1024, 16 variants on 2 cores: blocks of 1 give 34 model-steps/s, blocks of 8 give 102).
MIN_BLOCK = 8


def _block_size(v: int, n_dev: int, footprint: Footprint, budget: int, max_variants: int | None,
                block_bytes: int | None) -> int:
    """Variants per program call; always a multiple of the device count.

    All of them, unless fewer fit in ``budget`` bytes per device, or ``max_variants`` says fewer, or (when
    ``max_variants`` is None) a block of variants' training-step working set would exceed ``block_bytes``
    per device (but never fewer than :data:`MIN_BLOCK` per device). The variants are then split into equal
    blocks (the last one padded).
    """
    fit = max(1, budget // max(footprint.memory, 1)) * n_dev
    if max_variants is None and block_bytes:
        max_variants = max(MIN_BLOCK, block_bytes // max(footprint.step, 1)) * n_dev
    size = min(v, max_variants or v, fit)
    size = -(-v // -(-v // size))  # equal blocks: ceil(v / number of blocks)
    return -(-size // n_dev) * n_dev


def _run_group(group: variants_lib.Group, ds: Dataset, *, max_variants: int | None, devices: Sequence[Any],
               n_eval_train: int, budget: int | None, block_bytes: int | None, progress: ProgressFn | None,
               group_index: int) -> GroupResult:
    spec = group.spec
    t0 = time.perf_counter()
    report = progress or (lambda event: None)
    prog = _GroupProgram(spec, ds, n_eval_train, platform=devices[0].platform)
    n_dev = len(devices)
    mesh = jax.make_mesh((n_dev,), ("variants",), devices=devices, axis_types=(AxisType.Auto,))
    shard, replicated = NamedSharding(mesh, P("variants")), NamedSharding(mesh, P())
    v = len(group.rows)
    hyper = variants_lib.stack(spec, group.rows)
    footprint = prog.footprint({k: a[:1] for k, a in hyper.items()}, prog.data)
    if block_bytes is None:
        block_bytes = CPU_BLOCK_BYTES if devices[0].platform == "cpu" else 0
    size = _block_size(v, n_dev, footprint, budget or memory_budget(devices), max_variants, block_bytes)
    data = jax.device_put(prog.data, replicated)
    key = _signature(prog, size, devices)
    compile_s = run_s = 0.0
    parts: list[dict[str, Any]] = []
    for start in range(0, v, size):
        hp = jax.device_put(_pad({k: a[start:start + size] for k, a in hyper.items()}, size), shard)
        if key not in _CACHE:
            report(events.Compiling(group=group_index, n_variants=v))
            tc = time.perf_counter()
            _CACHE[key] = _compile(prog, hp, data, shard)
            compile_s += time.perf_counter() - tc
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
        _CACHE.move_to_end(key)
        programs = _CACHE[key]
        tr = time.perf_counter()
        state, m = programs.chunk(programs.init(hp, data), hp, data, np.bool_(False))
        history = [jax.device_get(m)]
        run_s += time.perf_counter() - tr
        for e in range(1, spec.n_evals):
            tr = time.perf_counter()
            state, m = programs.chunk(state, hp, data, np.bool_(True))
            history.append(jax.device_get(m))
            run_s += time.perf_counter() - tr
            report(events.Evaluated(group=group_index, block_start=start, eval=e, n_evals=spec.n_evals,
                                    step=int(spec.eval_steps[e]), val_loss=history[-1]["val_loss"][: v - start]))
        n = min(size, v - start)
        final = jax.device_get((state.params, state.status, state.stopped_step, state.best_val))
        parts.append({
            "params": jax.tree.map(lambda a, n=n: a[:n], final[0]),
            "status": final[1][:n], "stopped_step": final[2][:n], "best_val_loss": final[3][:n],
            "history": {k: np.stack([h[k] for h in history], axis=1)[:n] for k in METRICS},
        })
    cat = lambda *xs: np.concatenate(xs)  # noqa: E731
    return GroupResult(
        spec=spec,
        indices=np.asarray(group.indices),
        rows=list(group.rows),
        params=jax.tree.map(cat, *[p["params"] for p in parts]),
        status=cat(*[p["status"] for p in parts]),
        stopped_step=cat(*[p["stopped_step"] for p in parts]),
        best_val_loss=cat(*[p["best_val_loss"] for p in parts]),
        history={k: cat(*[p["history"][k] for p in parts]) for k in METRICS},
        eval_steps=spec.eval_steps,
        compile_s=compile_s,
        run_s=run_s,
        wall_s=time.perf_counter() - t0,
        n_blocks=-(-v // size),
    )


@dataclasses.dataclass(frozen=True)
class Options:
    """Engine settings that do not change results.

    max_variants_per_program: most variants one compiled program trains at once; larger groups run in
      blocks of this size, one after another (one compilation per group; results identical). ``None``: set
      by ``block_bytes`` and the memory budget.
    memory_budget_bytes: memory one device may use; a group whose estimated need (shapes only, see
      ``_GroupProgram.footprint``) exceeds it is split into blocks automatically. ``None``: half of the
      device's memory (:func:`memory_budget`).
    block_bytes: when ``max_variants_per_program`` is None, the most training-step working set (state,
      gradients and a minibatch's activations, estimated from shapes) of the variants one device trains at
      once (at least :data:`MIN_BLOCK`). On the CPU, keeping a block in cache is faster than one program over
      every variant.
      ``None``: :data:`CPU_BLOCK_BYTES` on the CPU, no limit on accelerators; ``0``: no limit.
    devices: devices to shard the variant axis over (default: all of ``jax.devices()``).
    n_eval_train: training examples used for the evaluation-time train loss and diagnostics.
    """

    max_variants_per_program: int | None = None
    devices: Sequence[Any] | None = None
    n_eval_train: int = 1024
    memory_budget_bytes: int | None = None
    block_bytes: int | None = None


def prepare(variants: Sequence[Mapping[str, Any]], ds: Dataset) -> list[variants_lib.Group]:
    """Validate every variant and the data, and split into static groups — all before any compute."""
    if not isinstance(ds, Dataset):
        raise TypeError(f"expected a jaxnets.data.Dataset, got {type(ds).__name__}")
    if len(variants) == 0:
        raise ValueError("no variants to train: the variant list is empty")
    rows = [variants_lib.normalize(v, i, ds.default_loss) for i, v in enumerate(variants)]
    groups = variants_lib.group(rows)
    for g in groups:
        try:
            _check_data(ds, g.spec)
        except ValueError as e:
            raise variants_lib.VariantError(g.indices[0], str(e), g.indices) from None
    return groups


def train(variants: Sequence[Mapping[str, Any]], ds: Dataset, *, options: Options | None = None,
          progress: ProgressFn | None = None) -> Result:
    """Train every variant on ``ds``; one compiled program per static group, the variant axis sharded.

    Args:
      variants: rows of hyperparameters (see :data:`jaxnets.variants.KEYS`; missing keys take
        :data:`jaxnets.variants.DEFAULTS`).
      ds: a :class:`jaxnets.data.Dataset`.
      options: :class:`Options`.
      progress: called with a :class:`jaxnets.events.Compiling` before a group compiles and a
        :class:`jaxnets.events.Evaluated` after every evaluation of a block of variants.

    Returns:
      a :class:`jaxnets.result.Result` with rows in the order of ``variants``.

    Raises:
      ValueError: on any bad variant or data, before anything is compiled.
    """
    options = options or Options()
    groups = prepare(variants, ds)
    devices = list(options.devices or jax.devices())
    results = [
        _run_group(g, ds, max_variants=options.max_variants_per_program, devices=devices,
                   n_eval_train=options.n_eval_train, budget=options.memory_budget_bytes,
                   block_bytes=options.block_bytes, progress=progress,
                   group_index=gi)
        for gi, g in enumerate(groups)
    ]
    return Result.from_groups(results, n_variants=len(variants))
