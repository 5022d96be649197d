"""The engine: train a heterogeneous batch of variants in one compiled, sharded program per static group.

Data path for one group (see :mod:`jaxnets.variants` for how rows become groups)::

    rows ─► stack() ─► hyper {key: [V]} ─► pad V to a multiple of the device count, shard the variant axis
         ─► split into blocks of variants (memory; on the CPU, cache-sized blocks: Options.block_bytes,
            or one variant per device where a timed trial, remembered per machine, finds it faster:
            Options.block_trial, :mod:`jaxnets.blocks`)
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
import concurrent.futures
import dataclasses
import functools
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxnets import activations, adapters, blocks, diagnostics, events, initializers, losses, optimizers
from jaxnets import variants as variants_lib
from jaxnets.data import Dataset
from jaxnets.hyper import Hyper
from jaxnets.models import CNN, MLP, OUTPUT, RNN, layer_name, small_kernel_dot_general
from jaxnets.result import METRICS, STATUS_NAMES, TEST_METRICS, GroupResult, Result

OK, DIVERGED, EARLY_STOPPED, PRUNED = (STATUS_NAMES.index(s) for s in ("ok", "diverged", "early_stopped", "pruned"))

ProgressFn = Callable[[events.Event], None]


class Footprint(NamedTuple):
    """Estimated bytes of one variant (see :meth:`_GroupProgram.footprint`)."""

    memory: int  # device memory it needs, evaluation included
    step: int  # working set of one training step
    eval: int = 0  # activations an evaluation records (train-eval and validation batches, forward)


class TrainState(NamedTuple):
    """One variant's training state (a leading [V] axis on every leaf once vmapped).

    ``model_state`` holds the model's non-parameter collections (e.g. BatchNorm's ``batch_stats``; ``{}``
    when it has none). ``best_params`` is ``None`` unless early stopping is on, else the best
    ``(params, model_state)``. ``last`` holds the metrics of the latest
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
    model_state: Any


# --------------------------------------------------------------------------------------------------------
# Input checks (eager, before any compute)
# --------------------------------------------------------------------------------------------------------


def _check_data(ds: Dataset, spec: variants_lib.GroupSpec, *, builtin_model: bool = True,
                builtin_loss: bool = True) -> None:
    splits = ("train", "val", "test") if len(ds.x_test) else ("train", "val")
    for split in splits:
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
    if ds.x_test.shape[1:] != ds.x_train.shape[1:] and len(ds.x_test):
        raise ValueError(f"{ds.name}: x_test examples have shape {ds.x_test.shape[1:]}, "
                         f"x_train examples {ds.x_train.shape[1:]}")
    if spec.batch_size > len(ds.x_train):
        raise ValueError(f"batch_size {spec.batch_size} is larger than the {len(ds.x_train)} training examples")
    if not builtin_loss:
        return
    for split in splits:
        y = _labels(spec.loss, getattr(ds, f"y_{split}"), ds)
        losses.check_labels(spec.loss, y, ds.output_dim)
    if not builtin_model:
        return
    need = {"cnn": 4, "rnn": 3}.get(spec.kind)
    if need and ds.x_train.ndim != need:
        layout = "images [N, H, W, C]" if spec.kind == "cnn" else "sequences [N, T, F]"
        raise ValueError(f"model kind {spec.kind!r} needs {layout}; data set {ds.name!r} has x of shape "
                         f"{ds.x_train.shape} (try the '_image' / '_sequence' variant of the data set)")
    if ds.sequence_output and spec.kind != "rnn":
        raise ValueError(f"data set {ds.name!r} has a label per time step; only kind 'rnn' can fit it")


def _labels(loss: str, y: np.ndarray, ds: Dataset) -> np.ndarray:
    """``ds``'s labels ``y`` in the form ``loss`` takes (:func:`jaxnets.losses.labels_for`)."""
    try:
        return losses.labels_for(loss, y, ds.output_dim, ds.task)
    except ValueError as e:
        raise ValueError(f"{e} (data set {ds.name!r})") from None


# --------------------------------------------------------------------------------------------------------
# One variant: model, init, step, evaluation (vmapped and jitted by `train`)
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
    common.pop("norm", None)  # validated: an RNN has norm "none"
    return RNN(hidden=tuple(hidden), cell=cell, many_to_many=many_to_many, **common)


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
        norm=row["norm"],
    )


def _is_key(x: Any) -> bool:
    return jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _tree_where(cond: jax.Array, a: Any, b: Any) -> Any:
    """``where(cond, a, b)`` leaf by leaf; PRNG-key leaves (an NNX model's rng streams) always take ``a``."""
    return jax.tree.map(lambda x, y: x if _is_key(x) else jnp.where(cond, x, y), a, b)


def _all_finite(tree: Any) -> jax.Array:
    """True when every floating element of ``tree`` is finite: ``sum(x * 0)`` is 0, or NaN if any x is
    NaN/Inf.

    One fused reduction per leaf (no boolean temporaries).
    """
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.isfinite(sum((jnp.sum(x * 0.0) for x in leaves), jnp.float32(0.0)))


#: Parameters per variant up to which the optimizer updates one flat vector (``optax.flatten``) instead of each
#: parameter leaf. XLA's CPU backend fuses no multi-output kernels, so an optimizer over a tree is three kernels
#: per leaf (Adam's two moments and the update); flat, it is three for the model plus one concatenation of the
#: gradients (a parameter-sized copy per step). 2-core Xeon, N=64, train program: adding_lstm 231 -> 204 kernels
#: and 5.1 -> 4.0-4.4 compile CPU s, digits_cnn 5.1-5.3 -> 3.9-4.2, at the same speed; wine_mlp 2-3 % faster.
#: A bigger model pays for the copy: digits_mlp (59 k parameters) compiles 0.9 CPU s faster flat but trains
#: 5-15 % slower (1,199-1,350 against 1,360-1,419 model-steps/s), so it keeps the tree. The rule reads the model,
#: never the block size.
FLAT_OPTIMIZER_PARAMS = 2**14


def flat_optimizer(params: Any) -> bool:
    """Whether a variant with parameters ``params`` (one variant's shapes) uses the flat optimizer: at most
    :data:`FLAT_OPTIMIZER_PARAMS` parameters, all of one floating dtype."""
    leaves = jax.tree.leaves(params)
    dtypes = {jnp.dtype(x.dtype) for x in leaves}
    return (len(leaves) > 1 and len(dtypes) == 1 and jnp.issubdtype(dtypes.pop(), jnp.floating)
            and _n_params(params) <= FLAT_OPTIMIZER_PARAMS)


def _n_params(params: Any, stacked: bool = False) -> int:
    """Parameters of one variant: the sizes of ``params``' leaves, without their leading [V] axis when
    ``stacked``."""
    return sum(math.prod(x.shape[1:] if stacked else x.shape) for x in jax.tree.leaves(params))


def _n_hidden(spec: variants_lib.GroupSpec) -> int:
    """Hidden layers of a built-in model (conv blocks and dense layers for the CNN)."""
    return len(spec.hidden) + (len(spec.dense) if spec.kind == "cnn" else 0)


def _builtin_factory(spec: variants_lib.GroupSpec, output_dim: int, many_to_many: bool, platform: str
                     ) -> Callable[[Hyper], Any]:
    """The built-in MLP / CNN / RNN of a group as a model factory, like a user's."""

    def factory(hp: Hyper):
        return _build(spec.kind, spec.hidden, spec.dense, spec.cell, many_to_many, platform,
                      output_dim=output_dim, activation=hp.activation, kernel_init=hp.kernel_init,
                      dropout=hp.dropout_rate, norm=spec.norm)

    return factory


def _raw_labels(y: np.ndarray, ds: Dataset) -> np.ndarray:
    """Labels for a user loss: as the data set holds them (int32 classes, float32 regression targets)."""
    return np.asarray(y, np.float32 if ds.task == "regression" else np.int32)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


class Program:
    """The pure per-variant functions of one static group: ``init``, ``train_chunk``, ``evaluate``.

    Everything here is a function of ONE variant (its hyperparameters ``hp``: a dict of scalars, one entry
    per vmapped key, as :meth:`stack` gives them with a leading [V] axis), so ``jax.jit(jax.vmap(...))``
    of it trains many; :func:`train` does exactly that (plus padding, sharding, blocks and the host loop).
    Build one with :func:`program`.

    Attributes:
      spec: the group's static part (:class:`jaxnets.variants.GroupSpec`).
      rows: the group's variants (normalized rows).
      data: the arrays the functions read, as NumPy: ``x_train``, ``y_train``, ``x_eval`` / ``y_eval`` (the
        first ``n_eval_train`` training examples, for the evaluation-time train loss and diagnostics),
        ``x_val``, ``y_val``, ``x_test``, ``y_test`` (labels in the form the loss takes).
      layer_names: the entries of ``grad_norm``, input side first (paths into the parameter tree).
      custom: True for a user model factory (False for the built-in MLP / CNN / RNN).

    Example (a hand-written loop over 8 variants, what :func:`train` does for you)::

        prog = engine.program(variants, ds)                 # one static group
        hp = prog.stack()                                   # {key: [8]}
        data = jax.device_put(prog.data)
        state = jax.jit(jax.vmap(prog.init))(hp)
        chunk = jax.jit(jax.vmap(prog.train_chunk, in_axes=(0, 0, None)))
        for _ in range(prog.spec.n_evals - 1):
            state, metrics = chunk(state, hp, data)        # eval_every steps, then one evaluation
    """

    def __init__(self, group: variants_lib.Group, ds: Dataset, *, model: Callable[..., Any] | None = None,
                 loss: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
                 metric: Callable[[jax.Array, jax.Array], jax.Array] | None = None, n_eval_train: int = 1024,
                 platform: str):
        spec = group.spec
        self.spec = spec
        self.rows = tuple(group.rows)
        self.indices = tuple(group.indices)
        self.platform = platform
        self.custom = model is not None
        self.many_to_many = ds.sequence_output
        self.output_dim = ds.output_dim
        if model is None:
            model = _builtin_factory(spec, ds.output_dim, ds.sequence_output, platform)
        self.adapter = adapters.adapter_for(model)
        self.user_loss, self.user_metric = loss, metric
        self.has_accuracy = metric is not None if loss is not None else losses.has_accuracy(spec.loss)
        self.n_train = len(ds.x_train)
        self.has_test = len(ds.x_test) > 0
        self.x_sample = jnp.zeros((1,) + ds.x_train.shape[1:], jnp.float32)
        labels = (lambda y: _raw_labels(y, ds)) if loss is not None else (lambda y: _labels(spec.loss, y, ds))
        self.data = {
            "x_train": np.asarray(ds.x_train, np.float32),
            "y_train": labels(ds.y_train),
            "x_eval": np.asarray(ds.x_train[:n_eval_train], np.float32),
            "y_eval": labels(ds.y_train[:n_eval_train]),
            "x_val": np.asarray(ds.x_val, np.float32),
            "y_val": labels(ds.y_val),
        }
        if self.has_test:
            self.data |= {"x_test": np.asarray(ds.x_test, np.float32), "y_test": labels(ds.y_test)}
        self.sat = activations.saturation_threshold(spec.activations)
        #: how the engine orders a block's variants by activation (:func:`jaxnets.activations.by_index`);
        #: ``None``: no ordering assumed (then a batch mixing activations computes all of them)
        self.layout: activations.Layout | None = None
        self._metric_shapes: dict[tuple, Any] = {}  # evaluate's output shapes, by its argument shapes
        self.layer_names = self._layer_names()

    # -- hyperparameters -----------------------------------------------------------------------------
    def stack(self, rows: Sequence[Mapping[str, Any]] | None = None) -> dict[str, np.ndarray]:
        """The vmapped keys of ``rows`` (default: the group's) as [V] arrays: the ``hp`` the functions take."""
        return variants_lib.stack(self.spec, self.rows if rows is None else rows)

    def hyper(self, hp: Mapping[str, jax.Array]) -> Hyper:
        """What a model factory sees: ``hp`` plus the group's static keys and the :class:`Hyper` helpers."""
        s = self.spec
        static = {k: getattr(s, k) for k in variants_lib.STATIC_KEYS}
        return Hyper({**static, **dict(s.static_extra), **hp}, s.activations, s.initializers, s.use_dropout,
                     layout=self.layout)

    def _layer_names(self) -> list[str]:
        if not self.custom:
            return [layer_name(i) for i in range(_n_hidden(self.spec))] + [OUTPUT]
        hp = {k: v[0] for k, v in self.stack(self.rows[:1]).items()}
        return self.adapter.layer_names(self.hyper(hp), jax.random.key(0), self.x_sample)

    # -- pieces --------------------------------------------------------------------------------------
    def optimizer(self, hp: Mapping[str, jax.Array], params: Any) -> optax.GradientTransformation:
        """The variant's optimizer (hyperparameters injected as state) for parameters shaped like ``params``
        (one variant's): on one flat vector (:func:`flat_optimizer`) for a small model, else leaf by leaf."""
        s = self.spec
        hyper = {k: hp[k] for k in optimizers.HYPERPARAMETERS}
        return optimizers.with_hyperparameters(s.optimizer, hyper, clip=s.use_clip, decay=s.use_weight_decay,
                                               flat=flat_optimizer(params))

    def per_example_loss(self, outputs: jax.Array, y: jax.Array) -> jax.Array:
        """The loss of each example: the user's ``loss(outputs, labels)``, or the built-in loss by name."""
        if self.user_loss is not None:
            return self.user_loss(outputs, y)
        return losses.get(self.spec.loss)(losses.fit_logits(self.spec.loss, outputs, y), y)

    def data_loss(self, outputs: jax.Array, y: jax.Array) -> jax.Array:
        """The mean loss of a batch."""
        return jnp.mean(self.per_example_loss(outputs, y))

    def accuracy(self, outputs: jax.Array, y: jax.Array) -> jax.Array:
        """The mean accuracy (or the user's metric) of a batch; NaN where none applies."""
        if not self.has_accuracy:
            return jnp.float32(jnp.nan)
        if self.user_loss is not None:
            return jnp.mean(self.user_metric(outputs, y)).astype(jnp.float32)
        return jnp.mean(losses.accuracy(self.spec.loss, losses.fit_logits(self.spec.loss, outputs, y), y))

    def apply(self, params: Any, model_state: Any, hp: Mapping[str, jax.Array], x: jax.Array) -> jax.Array:
        """The variant's outputs on ``x`` [B, ...] in evaluation mode (no dropout, running statistics)."""
        return self.adapter.apply(params, model_state, self.hyper(hp), x, train=False)[0]

    @functools.cached_property
    def predict_fns(self) -> tuple[Callable, Callable]:
        """``(one, many)``: :meth:`apply` jitted for one variant, and vmapped over [V]-stacked ``params``,
        ``model_state`` and ``hp`` (one ``x`` for all). Built once per program, so predictions compile once per
        input shape, not at every call (what :meth:`jaxnets.result.Result.predict` and ``predict_all`` use).
        The activation layout in force is the one at the first call (``None`` once training is over)."""
        return jax.jit(self.apply), jax.jit(jax.vmap(self.apply, in_axes=(0, 0, 0, None)))

    # -- per variant ---------------------------------------------------------------------------------
    def init_params(self, hp: Mapping[str, jax.Array]) -> tuple[Any, Any]:
        """The variant's initial ``(params, model_state)``, from ``fold_in(key(seed), 0)``."""
        key = jax.random.fold_in(jax.random.key(hp["seed"]), 0)
        return self.adapter.init(self.hyper(hp), key, self.x_sample)

    def init_state(self, variables: tuple[Any, Any], hp: Mapping[str, jax.Array],
                   data: Mapping[str, Any] | None = None) -> TrainState:
        """A variant's training state before step 0 for initial ``(params, model_state)``."""
        params, model_state = variables
        metrics = self.metric_shapes(params, hp, data, model_state)
        keep_best = self.spec.early_stopping_patience > 0
        return TrainState(
            params=params,
            opt_state=self.optimizer(hp, params).init(params),
            step=jnp.int32(0),
            status=jnp.int32(OK),
            stopped_step=jnp.int32(self.spec.steps),
            best_val=jnp.float32(jnp.inf),
            bad_evals=jnp.int32(0),
            best_params=(params, model_state) if keep_best else None,
            last=jax.tree.map(lambda m: jnp.full(m.shape, jnp.nan, m.dtype), metrics),
            loss0=jnp.float32(jnp.nan),
            model_state=model_state,
        )

    def metric_shapes(self, params: Any, hp: Mapping[str, Any], data: Mapping[str, Any] | None = None,
                      model_state: Any = None) -> dict[str, jax.ShapeDtypeStruct]:
        """The shapes of :meth:`evaluate`'s metrics for arguments of these shapes (arrays, tracers or
        ``ShapeDtypeStruct`` s of one variant): traced once per argument shapes, then remembered (tracing the
        model costs up to a second, and initialization needs only the shapes)."""
        like = lambda a: jax.ShapeDtypeStruct(jnp.shape(a), a.dtype)  # noqa: E731
        args = jax.tree.map(like, (params, dict(hp), self._shapes(data), model_state))
        leaves, tree = jax.tree.flatten(args)
        key = (tree, tuple((a.shape, a.dtype) for a in leaves))
        if key not in self._metric_shapes:
            self._metric_shapes[key] = jax.eval_shape(self.evaluate, *args)
        return self._metric_shapes[key]

    def init(self, hp: Mapping[str, jax.Array], data: Mapping[str, Any] | None = None) -> TrainState:
        """One variant's training state before step 0 (parameters from its seed, initializer and scale)."""
        return self.init_state(self.init_params(hp), hp, data)

    def _shapes(self, data: Mapping[str, Any] | None) -> Mapping[str, Any]:
        src = self.data if data is None else data
        return {k: jax.ShapeDtypeStruct(np.shape(v), v.dtype) for k, v in src.items()}

    def init_batch(self, hp: Mapping[str, jax.Array], data: Mapping[str, jax.Array]) -> TrainState:
        """Initialize a batch of variants ([V] hyperparameters): the [V]-stacked :class:`TrainState`.

        Parameters are created one variant after another (``lax.map``), the rest is vmapped. Two reasons:
        each variant then runs only its own initializer (a real ``lax.switch``, not all of them), and no
        batched LAPACK QR (the orthogonal initializer) is ever issued: jaxlib 0.10's CPU LAPACK kernels
        split a batch over XLA's intra-op thread pool and block waiting for it, which deadlocks when
        several run at once on a small pool (2 cores). Init runs once, so the loop costs little.
        """
        variables = jax.lax.map(self.init_params, hp)
        return jax.vmap(self.init_state, in_axes=(0, 0, None))(variables, hp, data)

    def footprint(self, hp1: Mapping[str, np.ndarray], data: Mapping[str, Any]) -> Footprint:
        """Estimated bytes one variant needs, from shapes only (nothing runs or compiles).

        ``hp1``: hyperparameters of ONE variant, as [1] arrays. ``memory`` counts the training state
        (parameters, optimizer state, best parameters) five times over (new values, gradients, updates,
        buffers being donated, the chunk-start copy :meth:`block_chunk` can rerun from) and the activations
        of an evaluation (train-eval batch with its backward pass, and the validation batch) three times over.
        ``step`` is what one training step touches: the state, the gradients and a minibatch's recorded
        activations twice (forward values and their cotangents). ``eval`` is the evaluation's recorded
        activations once (a measure of its work, see :data:`SMALL_EVAL_BYTES`).
        """
        state = jax.eval_shape(self.init_batch, hp1, data)
        row = jax.tree.map(lambda a: a[0], hp1)
        params = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), state.params)
        model_state = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), state.model_state)

        def forward(p, s, x):
            return self.adapter.apply(p, s, self.hyper(row), x, train=False, record=True)

        acts = [jax.eval_shape(forward, params, model_state, data[k]) for k in ("x_eval", "x_val")]
        batch = jax.ShapeDtypeStruct((self.spec.batch_size,) + data["x_train"].shape[1:], jnp.float32)
        batch_acts = jax.eval_shape(forward, params, model_state, batch)
        nbytes = lambda tree: sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(tree))  # noqa: E731
        return Footprint(memory=5 * nbytes(state) + 3 * nbytes(acts),
                         step=nbytes((state.params, state.opt_state)) + nbytes(params) + 2 * nbytes(batch_acts),
                         eval=nbytes(acts))

    def batch_indices(self, first_step: jax.Array, hp: Mapping[str, jax.Array], n: int | None = None
                      ) -> jax.Array:
        """Minibatch indices [n, batch_size] of steps ``first_step, first_step + 1, ...`` (``n``: default
        ``eval_every``).

        Step ``t`` draws ``batch_size`` indices uniformly with replacement from ``fold_in(fold_in(key(seed),
        1), t)`` — with ``shared_data``, from ``fold_in(fold_in(key(data_seed), 1), t)``, the same for every
        variant of the group (common random numbers); a whole chunk's are drawn at once, before its
        ``lax.scan``, which is faster than one small draw per step.
        """
        seed = self.spec.data_seed if self.spec.shared_data else hp["seed"]
        base = jax.random.fold_in(jax.random.key(seed), 1)
        steps = first_step + jnp.arange(self.spec.eval_every if n is None else n, dtype=jnp.int32)
        draw = lambda t: jax.random.randint(jax.random.fold_in(base, t), (self.spec.batch_size,), 0,  # noqa: E731
                                            self.n_train)
        return jax.vmap(draw)(steps)

    def step(self, state: TrainState, hp: Mapping[str, jax.Array], data: Mapping[str, jax.Array],
             idx: jax.Array) -> TrainState:
        """One training step on the minibatch ``idx`` [batch_size] of the training split, guarded: a step whose
        loss or new parameters are not finite marks the variant diverged and leaves its parameters as they
        were; a variant that is not training (stopped, diverged, finished) keeps its parameters."""
        return self._step(state, hp, data, idx, guard=True)[0]

    def _step(self, state: TrainState, hp: Mapping[str, jax.Array], data: Mapping[str, jax.Array],
              idx: jax.Array, guard: bool | jax.Array) -> tuple[TrainState, jax.Array]:
        """:meth:`step` with the divergence guard on (``guard`` True), or off: no check of the new parameters,
        no freezing of inactive variants, the new values are taken as they are. ``guard`` may be a traced
        unbatched bool (a ``lax.cond``: one compiled step for both). Returns ``(state, finite)``: whether the
        loss was finite."""
        spec = self.spec
        h = self.hyper(hp)
        base = jax.random.key(hp["seed"])
        xb, yb = data["x_train"][idx], data["y_train"][idx]
        rng = jax.random.fold_in(jax.random.fold_in(base, 2), state.step)

        def objective(params):
            out, model_state, _ = self.adapter.apply(params, state.model_state, h, xb, train=True, rng=rng)
            loss = self.data_loss(out, yb)
            if spec.use_l2:
                kernels = [p["kernel"] for p in jax.tree.leaves(params, is_leaf=lambda t: "kernel" in t)
                           if isinstance(p, Mapping)]
                loss = loss + 0.5 * hp["l2"] * sum(jnp.sum(jnp.square(k)) for k in kernels)
            return loss, model_state

        (loss, model_state), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
        tx = self.optimizer(hp, state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = jax.tree.map(jnp.add, state.params, updates)
        active = (state.status == OK) & (state.step < spec.steps)

        def guarded(params, model_state):
            # Non-finite gradients always reach the new parameters (NaN / inf through every optimizer, clipping
            # and decay stage: inf * 0, inf / inf and lr * NaN are NaN), so checking those covers both.
            finite = jnp.isfinite(loss) & _all_finite(params) & _all_finite(model_state)
            take = active & finite
            # Only the parameters (and the model's state, e.g. batch statistics) are masked: a frozen (diverged
            # / stopped / finished) variant's optimizer state may keep moving, but it never touches its
            # parameters again. Masking the optimizer state too would cost two more parameter-sized passes.
            return (_tree_where(take, params, state.params), _tree_where(take, model_state, state.model_state),
                    active & ~finite)

        def unguarded(params, model_state):
            return params, model_state, jnp.bool_(False)

        if guard is True or guard is False:
            params, model_state, diverged = (guarded if guard else unguarded)(params, model_state)
        else:
            params, model_state, diverged = jax.lax.cond(guard, guarded, unguarded, params, model_state)
        return state._replace(params=params, model_state=model_state, opt_state=opt_state, step=state.step + 1,
                              status=jnp.where(diverged, DIVERGED, state.status),
                              stopped_step=jnp.where(diverged, state.step, state.stopped_step)), jnp.isfinite(loss)

    def steps(self, state: TrainState, hp: Mapping[str, jax.Array], data: Mapping[str, jax.Array],
              first_step: jax.Array | None = None, guard: bool | jax.Array = True, n: int | None = None
              ) -> tuple[TrainState, jax.Array]:
        """``eval_every`` (or ``n``) training steps of one variant in a ``lax.scan``: ``(state, finite)``.

        ``guard`` True: every step is :meth:`step` (guarded) and ``finite`` is True. ``guard`` False: the steps
        run unguarded (no per-step parameter check, no masked update) and ``finite`` says whether every loss
        and the final parameters and model state are finite. A variant that was not training at the start
        (diverged, stopped) gets its parameters and model state back at the end, and counts as finite. When
        ``finite`` is True and the chunk does not pass ``steps``, the state equals the guarded steps' bit for
        bit, except a frozen variant's optimizer state (which never reaches its parameters again). ``guard``
        may be a traced unbatched bool. ``first_step``: see :meth:`chunk`.
        """
        start = first_step if self.spec.shared_data and first_step is not None else state.step
        idx = self.batch_indices(start, hp, n)

        def body(carry, i):
            s, ok = carry
            s, finite = self._step(s, hp, data, i, guard)
            return (s, ok & finite), None

        start_state = state
        (state, ok), _ = jax.lax.scan(body, (state, jnp.bool_(True)), idx)
        if guard is True:
            return state, jnp.bool_(True)
        # a variant that was not training (diverged, stopped) gets its parameters back: as if frozen throughout
        # (guarded steps leave them as they are, so this changes nothing there); its losses do not count
        training = start_state.status == OK
        state = state._replace(params=_tree_where(training, state.params, start_state.params),
                               model_state=_tree_where(training, state.model_state, start_state.model_state))
        return state, guard | ~training | (ok & _all_finite(state.params) & _all_finite(state.model_state))

    def evaluate(self, params: Any, hp: Mapping[str, jax.Array], data: Mapping[str, jax.Array],
                 model_state: Any = None) -> dict[str, jax.Array]:
        """Metrics of one variant's ``params``: ``train_loss`` (on ``x_eval``), ``val_loss``,
        ``val_accuracy`` (NaN without accuracy), ``grad_norm`` [L+1] and the activation statistics [L].

        ``model_state``: the model's non-parameter collections (``{}`` / ``None`` when it has none); read, not
        updated.
        """
        h = self.hyper(hp)
        model_state = {} if model_state is None else model_state

        def train_loss(p):
            out, _, rec = self.adapter.apply(p, model_state, h, data["x_eval"], train=False, record=True)
            return self.data_loss(out, data["y_eval"]), rec

        (loss, recorded), grads = jax.value_and_grad(train_loss, has_aux=True)(params)
        val_out = self.adapter.apply(params, model_state, h, data["x_val"], train=False)[0]
        stats = diagnostics.activation_stats(recorded, h.activation, self.sat[hp["activation"]])
        return {
            "train_loss": loss,
            "val_loss": self.data_loss(val_out, data["y_val"]),
            "val_accuracy": self.accuracy(val_out, data["y_val"]),
            "grad_norm": diagnostics.grad_norms(grads, self.layer_names),
            **stats,
        }

    def test_metrics(self, params: Any, model_state: Any, hp: Mapping[str, jax.Array],
                     data: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """``test_loss`` and ``test_accuracy`` (NaN without accuracy) of one variant; NaN without a test split."""
        if not self.has_test:
            return {"test_loss": jnp.float32(jnp.nan), "test_accuracy": jnp.float32(jnp.nan)}
        out = self.apply(params, model_state, hp, data["x_test"])
        return {"test_loss": self.data_loss(out, data["y_test"]).astype(jnp.float32),
                "test_accuracy": self.accuracy(out, data["y_test"]).astype(jnp.float32)}

    def after_eval(self, state: TrainState, hp, data, was_ok: jax.Array, first: jax.Array, final: jax.Array
                   ) -> tuple[TrainState, dict]:
        """Evaluate, then apply divergence / early-stopping rules; report repeated values once stopped.

        ``was_ok``: the variant was training at the start of the chunk; ``first``: this is evaluation 0;
        ``final``: the last evaluation (the test split is evaluated then, once).
        """
        spec = self.spec
        m = self.evaluate(state.params, hp, data, state.model_state)
        ok = state.status == OK
        # a finite blow-up (training loss above divergence_factor x its evaluation-0 loss) counts as divergence
        factor = hp["divergence_factor"]
        blown = ~first & (factor > 0) & (m["train_loss"] > factor * state.loss0)
        finite = jnp.isfinite(m["val_loss"]) & jnp.isfinite(m["train_loss"]) & ~blown
        status = jnp.where(ok & ~finite, DIVERGED, state.status)
        stopped_step = jnp.where(ok & ~finite, jnp.minimum(state.step, spec.steps), state.stopped_step)
        improved = ok & finite & (m["val_loss"] < state.best_val)
        best_val = jnp.where(improved, m["val_loss"], state.best_val)
        variables, best, bad = (state.params, state.model_state), state.best_params, state.bad_evals
        if spec.early_stopping_patience > 0:
            best = _tree_where(improved, variables, best)
            bad = jnp.where(improved, 0, jnp.where(ok, bad + 1, bad))
            stop = ok & finite & (bad >= spec.early_stopping_patience) & (state.step < spec.steps)
            status = jnp.where(stop, EARLY_STOPPED, status)
            stopped_step = jnp.where(stop, state.step, stopped_step)
            variables = _tree_where(stop, best, variables)
        # once a variant has stopped or diverged, and at the evaluation where it diverges, report its last
        # (finite) values again
        reported = _tree_where((was_ok & finite) | first, m, state.last)
        new = state._replace(params=variables[0], model_state=variables[1], status=status,
                             stopped_step=stopped_step, best_val=best_val, bad_evals=bad, best_params=best,
                             last=reported, loss0=jnp.where(first, m["train_loss"], state.loss0))
        nan = {"test_loss": jnp.float32(jnp.nan), "test_accuracy": jnp.float32(jnp.nan)}
        test = jax.lax.cond(final, lambda: self.test_metrics(new.params, new.model_state, hp, data), lambda: nan)
        return new, {**reported, **test}

    def chunk(self, state: TrainState, hp, data, train: jax.Array, final: jax.Array = False,
              first_step: jax.Array | None = None) -> tuple[TrainState, dict]:
        """``eval_every`` steps in a ``lax.scan`` (none when ``train`` is False), then one evaluation.

        ``train`` is one unbatched bool for all variants: ``False`` gives evaluation 0 from the same compiled
        program (a ``lax.cond``, so no steps are computed); ``final`` (unbatched bool) adds the test split's
        metrics (``test_loss``, ``test_accuracy``; NaN otherwise). ``first_step``: the chunk's first step as an
        unbatched scalar (every variant's ``state.step``; default: ``state.step``): with ``shared_data`` the
        minibatches then stay unbatched under ``vmap``, so the first layer of a block is one large matmul.
        """
        was_ok = state.status == OK
        state = jax.lax.cond(train, lambda s: self.steps(s, hp, data, first_step)[0], lambda s: s, state)
        return self.after_eval(state, hp, data, was_ok, first=~jnp.asarray(train), final=jnp.asarray(final))

    def block_chunk(self, size: int) -> Callable:
        """:meth:`chunk` for a block of ``size`` variants: ``fn(state, hp, data, train, final, first_step)`` on
        [size]-stacked ``state`` and ``hp`` (``vmap``; one variant: plain arrays, see :func:`_lift`).

        Its results equal the vmapped :meth:`chunk`'s bit for bit (parameters, metrics, statuses; only the
        optimizer state of an already frozen variant, which never reaches its parameters again, may differ);
        it is faster. The divergence guard costs a parameter-sized check and a masked update per step
        (digits_mlp_wide: 20 % of a step), so when the chunk does not pass ``steps`` the steps first run
        unguarded, with one check of the losses and final parameters of the variants that were training
        (frozen ones get their parameters back); only if one was not finite does the block run the chunk again
        from its start, guarded (a ``lax.while_loop`` of at most two passes: no cost otherwise). A chunk that
        passes ``steps`` runs guarded directly. It is :meth:`block_stages`' two halves, one after the other.
        """
        train_stage, eval_stage = self.block_stages(size)

        def chunk(state, hp, data, train, final=False, first_step=None):
            state, was_ok = train_stage(state, hp, data, train, first_step)
            return eval_stage(state, hp, was_ok, data, ~jnp.asarray(train), jnp.asarray(final))

        return chunk

    def block_stages(self, size: int) -> tuple[Callable, Callable]:
        """:meth:`block_chunk` as two functions, so the engine can compile them as two programs (XLA compiles
        the training half on a background thread while the evaluation half is traced):

        - ``train_stage(state, hp, data, train, first_step) -> (state, was_ok)``: the chunk's steps
          (none when ``train`` is False) and whether each variant was training at the chunk's start ([size]);
        - ``eval_stage(state, hp, was_ok, data, first, final) -> (state, metrics)``: the evaluation,
          divergence and early-stopping rules (:meth:`after_eval`); ``first``: this is evaluation 0.
        """
        spec = self.spec
        run = _lift(lambda s, hp, data, t0, guard: self.steps(s, hp, data, t0, guard), size)
        finish = _lift(lambda s, hp, was_ok, data, first, final: self.after_eval(s, hp, data, was_ok, first, final),
                       size, batched=3)

        def train_stage(state, hp, data, train, first_step=None):
            was_ok = state.status == OK

            def train_steps(s):
                whole = jnp.all(s.step + spec.eval_every <= spec.steps)

                # attempt 0: unguarded if the chunk does not pass `steps`, else guarded; attempt 1
                # (guarded, from the chunk's start) only if attempt 0 was unguarded and not all finite. A loop
                # over one scan whose guard is a traced flag: the step is compiled once.
                def attempt(carry):
                    k = carry[0]
                    new, finite = run(s, hp, data, first_step, (k > 0) | ~whole)
                    return k + 1, new, finite

                again = lambda carry: (carry[0] == 0) | ((carry[0] == 1) & ~jnp.all(carry[2]))  # noqa: E731
                start = (jnp.int32(0), s, jnp.zeros(s.status.shape, bool))
                return jax.lax.while_loop(again, attempt, start)[1]

            return jax.lax.cond(train, train_steps, lambda s: s, state), was_ok

        return train_stage, finish

    def train_chunk(self, state: TrainState, hp: Mapping[str, jax.Array], data: Mapping[str, jax.Array],
                    first_step: jax.Array | None = None) -> tuple[TrainState, dict]:
        """``eval_every`` training steps of one variant, then one evaluation: ``(new state, metrics)``
        (``first_step``: see :meth:`chunk`)."""
        return self.chunk(state, hp, data, True, False, first_step)

    def check(self) -> None:
        """Trace init, a training step and an evaluation from shapes only (nothing runs), so a bad model
        factory or loss fails before any compute with a message naming the problem.

        Raises:
          ValueError: the model, its outputs or the loss do not fit the data (the message says how).
        """
        hp1 = {k: v[:1] for k, v in self.stack(self.rows[:1]).items()}
        data = self._shapes(None)
        try:
            state = jax.eval_shape(self.init_batch, hp1, data)
        except Exception as e:  # noqa: BLE001 - the user's factory may raise anything: name it, don't crash
            raise ValueError(f"the model could not be initialized: {type(e).__name__}: {_first_line(e)}") from None
        row = jax.tree.map(lambda a: a[0], hp1)
        one = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), state)
        batch = jax.ShapeDtypeStruct((self.spec.batch_size,) + data["x_train"].shape[1:], jnp.float32)
        try:
            out = jax.eval_shape(lambda p, s, x: self.adapter.apply(p, s, self.hyper(row), x, train=True,
                                                                   rng=jax.random.key(0))[0],
                                 one.params, one.model_state, batch)
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"the model failed in training mode: {type(e).__name__}: {_first_line(e)}") from None
        y = self.data["y_train"][: self.spec.batch_size]
        if self.user_loss is None:
            fitted = jax.eval_shape(lambda o: losses.fit_logits(self.spec.loss, o, jnp.asarray(y)), out)
            try:
                losses.check_labels(self.spec.loss, y, self.output_dim,
                                    logits_shape=fitted.shape)
            except ValueError as e:
                raise ValueError(f"model output shape {tuple(out.shape)} does not fit the labels: {e}") from None
        else:
            try:
                per = jax.eval_shape(self.per_example_loss, out, jax.ShapeDtypeStruct(y.shape, y.dtype))
            except Exception as e:  # noqa: BLE001
                raise ValueError(f"the loss failed on outputs {tuple(out.shape)} and labels {y.shape}: "
                                 f"{type(e).__name__}: {_first_line(e)}") from None
            if tuple(per.shape) != tuple(y.shape[: max(per.ndim, 1)]) or per.ndim == 0:
                raise ValueError(f"the loss returned shape {tuple(per.shape)}; it must return one value per "
                                 f"example, shape {y.shape[:1]} (reduce over the other axes, not the batch)")
        try:
            jax.eval_shape(jax.vmap(self.chunk, in_axes=(0, 0, None, None, None, None)), state, hp1, data, True,
                           True, jnp.int32(0))
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"a training step failed: {type(e).__name__}: {_first_line(e)}") from None


# --------------------------------------------------------------------------------------------------------
# A group: pad, shard, compile once, run chunk by chunk
# --------------------------------------------------------------------------------------------------------


class _Compiled(NamedTuple):
    init: Any
    chunk: Any


class _Staged:
    """A chunk compiled as two programs (:meth:`Program.block_stages`), called as the one-program chunk is:
    ``chunk(state, hp, data, train, final, first_step) -> (state, metrics)`` (``train`` a host bool)."""

    def __init__(self, train_stage: Any, eval_stage: Any):
        self.train_stage, self.eval_stage = train_stage, eval_stage

    def __call__(self, state: Any, hp: Any, data: Any, train: Any, final: Any, first_step: Any) -> tuple[Any, Any]:
        state, was_ok = self.train_stage(state, hp, data, train, first_step)
        return self.eval_stage(state, hp, was_ok, data, np.logical_not(train), final)


#: Compiled (init, chunk) programs by group signature, so a second ``train`` call with the same static
#: group, data shapes, block size and devices (e.g. the next round of a Bayesian search) skips compilation.
#: It only saves time: programs are pure functions of their arguments, so results do not depend on it.
_CACHE: collections.OrderedDict[tuple, _Compiled] = collections.OrderedDict()
_CACHE_SIZE = 16


def clear_cache() -> None:
    """Forget every compiled program (the next ``train`` call compiles again)."""
    _CACHE.clear()


def _signature(prog: Program, size: int, devices: Sequence[Any]) -> tuple:
    shapes = tuple((k, v.shape, v.dtype.str) for k, v in sorted(prog.data.items()))
    return (prog.spec, prog.output_dim, prog.many_to_many, prog.n_train, shapes, size,
            tuple(d.id for d in devices), prog.adapter.factory if prog.custom else None, prog.user_loss,
            prog.user_metric, prog.layout)


def _lift(fn: Callable, size: int, batched: int = 2) -> Callable:
    """``fn`` of one variant applied to a block of ``size``: its first ``batched`` arguments are [size]-stacked,
    the rest shared — ``jax.vmap``, or for one variant plain arrays without ``vmap``.

    A program of one variant then holds plain arrays: XLA:CPU runs a vmapped program whose variant axis has
    size 1 much slower (digits MLP 4x1024, one variant: 36 model-steps/s vmapped, 109 for a plain jitted
    step), and the activation and initializer switches become real branches.
    """
    if size > 1:
        return lambda *args: jax.vmap(fn, in_axes=(0,) * batched + (None,) * (len(args) - batched))(*args)

    def one(*args):
        first = lambda tree: jax.tree.map(lambda a: a[0], tree)  # noqa: E731
        return jax.tree.map(lambda a: a[None], fn(*map(first, args[:batched]), *args[batched:]))

    return one


#: XLA options for the CPU backend's programs. LLVM optimization level 1 instead of XLA's default: the
#: programs' heavy work is in library calls (matmuls, convolutions), so the generated code's speed barely
#: changes while compilation gets 15-30 % faster (``benchmarks.profile compile``). Not applied when the
#: environment's ``XLA_FLAGS`` already sets the level.
CPU_COMPILER_OPTIONS: dict[str, Any] = {"xla_backend_optimization_level": 1}


#: XLA options for the init program of a small model on the CPU (see :data:`SMALL_INIT_PARAMS`): no LLVM
#: optimization and XLA's older elemental emitter. Init runs once per block, so its compile time is what counts:
#: wine_mlp, digits_cnn, adding_lstm at N=64 compile it with 0.5-1.2 CPU s instead of 1.3-2.2, and it then runs
#: 14-120 ms instead of 3-25 ms (``xla_cpu_use_fusion_emitters``, should a later XLA not know it, is left out).
CPU_SMALL_INIT_COMPILER_OPTIONS: dict[str, Any] = {"xla_backend_optimization_level": 0,
                                                   "xla_cpu_use_fusion_emitters": False}

#: Parameters per variant up to which the init program is compiled with :data:`CPU_SMALL_INIT_COMPILER_OPTIONS`.
#: Unoptimized code draws each value about 110 ns slower (2-core Xeon): at most 2 ms per variant, against ~0.4 s
#: of a group's compile saved. A bigger model (digits_mlp's 59 k parameters; digits_mlp_wide's 3.2 M: its init
#: at N=64 runs 3.2 s optimized, 22 s not) keeps :data:`CPU_COMPILER_OPTIONS`. The rule reads the model, never
#: the block size, because the two compilations' initial values differ in rounding: a variant's initial
#: parameters must not depend on how many variants it is trained with.
SMALL_INIT_PARAMS = 2**14

#: XLA options for the evaluation program of a small evaluation on the CPU (see :data:`SMALL_EVAL_BYTES`):
#: XLA's older elemental emitter, which compiles the evaluation with 40-45 % less CPU time.
CPU_SMALL_EVAL_COMPILER_OPTIONS: dict[str, Any] = {**CPU_COMPILER_OPTIONS, "xla_cpu_use_fusion_emitters": False}

#: Bytes of recorded activations per variant (:attr:`Footprint.eval`) up to which the evaluation program is
#: compiled with :data:`CPU_SMALL_EVAL_COMPILER_OPTIONS`. Such an evaluation (wine_mlp's: 13 features, 36
#: validation examples, 74 kB) takes about 2 ms for 64 variants with either emitter, so only its compile time
#: counts. Bigger ones keep :data:`CPU_COMPILER_OPTIONS`: the elemental emitter's code runs them up to 2x
#: slower (64 variants: digits_mlp 66 -> 84 ms, digits_cnn 365 -> 555 ms, adding_lstm 572 -> 1,135 ms). Like
#: the small-init rule, it reads one variant's shapes, never the block size.
SMALL_EVAL_BYTES = 2**20


def _small_eval(footprint: Footprint) -> bool:
    """Whether a variant's evaluation is small enough for the small-eval options (:data:`SMALL_EVAL_BYTES`)."""
    return footprint.eval <= SMALL_EVAL_BYTES


def compiler_options(platform: str, *, small_init: bool = False, small_eval: bool = False
                     ) -> dict[str, Any] | None:
    """The XLA compiler options the engine compiles its programs with on ``platform`` (``None``: XLA's).

    ``small_init``: the options for the init program of a model of at most :data:`SMALL_INIT_PARAMS`
    parameters; ``small_eval``: for the evaluation program of an evaluation that records at most
    :data:`SMALL_EVAL_BYTES` per variant. Options the environment's ``XLA_FLAGS`` already sets are left out.
    """
    if platform != "cpu":
        return None
    flags = os.environ.get("XLA_FLAGS", "")
    options = (CPU_SMALL_INIT_COMPILER_OPTIONS if small_init else CPU_SMALL_EVAL_COMPILER_OPTIONS if small_eval
               else CPU_COMPILER_OPTIONS)
    return {k: v for k, v in options.items() if k not in flags} or None


def init_compiler_options(platform: str, params: Any) -> dict[str, Any] | None:
    """The options for a block's init program whose parameters have the [size]-stacked shapes ``params`` (e.g.
    the lowered init's ``out_info.params``): the small-init options when one variant has at most
    :data:`SMALL_INIT_PARAMS` parameters, else :func:`compiler_options`'s."""
    small = _n_params(params, stacked=True) <= SMALL_INIT_PARAMS
    return compiler_options(platform, small_init=small)


def _compile_lowered(lowered: Any, options: dict[str, Any] | None, fallback: dict[str, Any] | None) -> Any:
    """``lowered.compile(options)``; with ``fallback`` when this XLA does not know one of ``options``."""
    try:
        return lowered.compile(options)
    except jax.errors.JaxRuntimeError as e:
        if options == fallback or "No such compile option" not in str(e):
            raise
        return lowered.compile(fallback)


_COMPILER = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="jaxnets-compile")


def _sharded_like(tree: Any, shard: NamedSharding) -> Any:
    """``tree``'s shapes and dtypes with every leaf sharded by ``shard``."""
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=shard), tree)


def _lower_init(prog: Program, hp: Any, data: Any, shard: NamedSharding) -> Any:
    return jax.jit(prog.init_batch, out_shardings=shard).lower(hp, data)


def _state_shapes(prog: Program, hp: Any, data: Any, shard: NamedSharding, state: Any = None) -> Any:
    """The [size]-stacked state's shapes sharded by ``shard``: ``state``'s (e.g. the lowered init's
    ``out_info``) when given, else traced from the init."""
    return _sharded_like(jax.eval_shape(prog.init_batch, hp, data) if state is None else state, shard)


def _lower_chunk(prog: Program, hp: Any, data: Any, shard: NamedSharding, chunk_fn: Callable | None = None,
                 chunk_args: tuple = (), state: Any = None) -> Any:
    """The lowered chunk program; ``chunk_fn(state, hp, data, train, final, first_step, *chunk_args)``: a
    different chunk than :meth:`Program.block_chunk`'s (e.g. a population policy's). ``state``: the
    state's shapes when known (the lowered init's ``out_info``), else they are traced from the init."""
    if chunk_fn is None:
        chunk_fn = prog.block_chunk(len(hp["seed"]))
    chunk = jax.jit(chunk_fn, donate_argnums=0, out_shardings=shard)
    state = _state_shapes(prog, hp, data, shard, state)
    return chunk.lower(state, hp, data, jnp.bool_(True), jnp.bool_(True), jnp.int32(0), *chunk_args)


def _compile(prog: Program, hp: Any, data: Any, shard: NamedSharding, *, init: bool = True, chunk: bool = True,
             chunk_fn: Callable | None = None, chunk_args: tuple = (), small_eval: bool = False) -> _Compiled:
    """Lower and compile the init and chunk programs for [size] variants sharded by ``shard``; ``init=False``
    / ``chunk=False`` leaves that one out (``None``); ``chunk_fn``, ``chunk_args``: see :func:`_lower_chunk`;
    ``small_eval``: compile the default chunk's evaluation with ``compiler_options(..., small_eval=True)``
    (the footprint's ``eval`` is at most :data:`SMALL_EVAL_BYTES`).

    Compilation overlaps tracing (XLA compiles without holding the GIL): the init program compiles on a
    background thread while the chunk is traced and lowered, and the default chunk is two programs
    (:meth:`Program.block_stages`, called as one by :class:`_Staged`) whose training half compiles in the
    background while the evaluation half is traced (adding_lstm, digits_cnn N=64 on 2 cores: ~6 % off the
    group's compile). A ``chunk_fn`` is one program.
    """
    platform = shard.mesh.devices.flat[0].platform
    options = compiler_options(platform)
    init_lowered = _lower_init(prog, hp, data, shard) if init else None
    state = init_lowered.out_info if init_lowered else None
    pending = None
    if init_lowered:
        pending = _COMPILER.submit(_compile_lowered, init_lowered, init_compiler_options(platform, state.params),
                                   options)
    compiled = None
    if chunk and chunk_fn is not None:
        compiled = _lower_chunk(prog, hp, data, shard, chunk_fn, chunk_args, state).compile(options)
    elif chunk:
        train_stage, eval_stage = prog.block_stages(len(hp["seed"]))
        lowered = jax.jit(train_stage, donate_argnums=0, out_shardings=shard).lower(
            _state_shapes(prog, hp, data, shard, state), hp, data, jnp.bool_(True), jnp.int32(0))
        train_pending = _COMPILER.submit(lowered.compile, options)
        trained, was_ok = lowered.out_info
        evaluation = _compile_lowered(jax.jit(eval_stage, donate_argnums=0, out_shardings=shard).lower(
            _sharded_like(trained, shard), hp, _sharded_like(was_ok, shard), data, jnp.bool_(True),
            jnp.bool_(True)), compiler_options(platform, small_eval=small_eval), options)
        compiled = _Staged(train_pending.result(), evaluation)
    return _Compiled(pending.result() if pending else None, compiled)


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


#: Default :attr:`Options.block_bytes` on the CPU: about half the last-level cache of a desktop / server core
#: complex. Batched matmuls whose operands outgrow the caches run at a fraction of their in-cache speed (digits
#: MLP 4x128, batch 128, 2-core EPYC: 256 variants in one program 2,492 model-steps/s; blocks of 8: 4,102).
CPU_BLOCK_BYTES = 16 * 2**20

#: Fewest variants per device in a block set by ``block_bytes`` when several variants' steps fit in it: below
#: this, a program of small operations leaves cores idle (digits MLP 4x128 on 2 cores, where ~8 variants' steps
#: fill ``block_bytes``).
MIN_BLOCK = 8


def _block_size(v: int, n_dev: int, footprint: Footprint, budget: int, max_variants: int | None,
                block_bytes: int | None) -> int:
    """Variants per program call; always a multiple of the device count.

    All of them, unless fewer fit in ``budget`` bytes per device, or ``max_variants`` says fewer, or (when
    ``max_variants`` is None) a block of variants' training-step working set would exceed ``block_bytes``
    per device: then :data:`MIN_BLOCK` per device or more, except that on one device a variant whose step
    alone exceeds ``block_bytes`` trains alone. Such a variant's operations (e.g. 128 x 1024 x 1024 matmuls)
    already fill the cores, and a block of one is a plain program without ``vmap``
    (digits_mlp_wide, 3.2 M parameters, 64 variants, 2-core Xeon: blocks of 8 gave 36.9 model-steps/s,
    blocks of 1 55.9, with a 3.4 s instead of a 4.6 s compile). With several devices a block of one per
    device would still be a vmapped program, so :data:`MIN_BLOCK` stays. The variants are then split into
    equal blocks (the last one padded).
    """
    fit = max(1, budget // max(footprint.memory, 1)) * n_dev
    if max_variants is None and block_bytes:
        per_device = block_bytes // max(footprint.step, 1)
        max_variants = (1 if per_device == 0 and n_dev == 1 else max(MIN_BLOCK, per_device)) * n_dev
    size = min(v, max_variants or v, fit)
    size = -(-v // -(-v // size))  # equal blocks: ceil(v / number of blocks)
    return -(-size // n_dev) * n_dev


#: :func:`_to_host`'s all-gather programs (pack into one [V, K] uint32 array, replicated), by input sharding.
_GATHERERS: dict[NamedSharding, Callable] = {}


def _to_device(tree: Any, sharding: NamedSharding) -> Any:
    """Host arrays onto ``sharding``'s devices: ``jax.device_put`` when this process holds all of them, else
    the global array built from the host value, which must be the same on every process (each process
    places only its own devices' shards).

    Args:
      tree: a pytree of NumPy arrays (or anything ``np.asarray`` takes).
      sharding: where every leaf goes (e.g. replicated, or sharded on the variant axis).

    Returns:
      the pytree of ``jax.Array`` s.
    """
    if sharding.is_fully_addressable:
        return jax.device_put(tree, sharding)

    def put(leaf: Any) -> jax.Array:
        value = np.asarray(leaf)
        return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

    return jax.tree.map(put, tree)


def _packable(x: jax.Array) -> bool:
    """Whether :func:`_to_host` can gather ``x`` packed: sharded on its leading axis only, 4 bytes or less."""
    spec = x.sharding.spec if isinstance(x.sharding, NamedSharding) else None
    kind_ok = x.dtype == np.bool_ or jnp.issubdtype(x.dtype, jnp.integer) or jnp.issubdtype(x.dtype, jnp.floating)
    return (spec is not None and x.ndim >= 1 and len(spec) >= 1 and spec[0] is not None
            and all(s is None for s in spec[1:]) and x.dtype.itemsize <= 4 and kind_ok)


def _as_words(x: jax.Array) -> jax.Array:
    """[V, ...] -> [V, K] uint32, bit for bit (smaller types widened exactly first); inverse: :func:`_from_words`."""
    x = x.reshape(x.shape[0], int(np.prod(x.shape[1:], dtype=np.int64)))
    if x.dtype == jnp.bool_:
        return x.astype(jnp.uint32)
    if x.dtype.itemsize < 4:
        x = x.astype(jnp.float32 if jnp.issubdtype(x.dtype, jnp.floating) else jnp.int32)
    return jax.lax.bitcast_convert_type(x, jnp.uint32)


def _from_words(words: np.ndarray, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """The host array that :func:`_as_words` packed into ``words`` [V, K]."""
    words = np.ascontiguousarray(words)
    if dtype == np.bool_:
        out = words != 0
    elif dtype.itemsize < 4:
        out = words.view(np.float32 if jnp.issubdtype(dtype, jnp.floating) else np.int32).astype(dtype)
    else:
        out = words.view(dtype)
    return out.reshape(shape)


def _to_host(tree: Any) -> Any:
    """Fetch a pytree of arrays to the host, whole on every process: ``jax.device_get`` when this process
    holds every shard, else an all-gather over the processes (a collective: every process must call it at
    the same point). Leaves sharded on their leading (variant) axis travel packed into one uint32 array, bit
    for bit: one all-gather for the whole tree (each collective costs milliseconds on CPU processes).

    PRNG-key leaves (an NNX model's rng state) travel as their key data and come back as key arrays.

    Args:
      tree: a pytree of ``jax.Array`` s (and host values, returned as they are).

    Returns:
      the same pytree with NumPy arrays (key arrays for key leaves).
    """
    from jax.experimental import multihost_utils

    leaves, treedef = jax.tree.flatten(tree)
    spread = [isinstance(x, jax.Array) and not x.is_fully_addressable for x in leaves]
    if not any(spread):
        return jax.device_get(tree)
    impls = [jax.random.key_impl(x) if s and _is_key(x) else None for x, s in zip(leaves, spread, strict=True)]
    raw = [jax.random.key_data(x) if impl is not None else x for x, impl in zip(leaves, impls, strict=True)]
    todo = [i for i, s in enumerate(spread) if s and not raw[i].is_fully_replicated]
    packs: dict[tuple[NamedSharding, int], list[int]] = {}
    for i in todo:
        if _packable(raw[i]):
            packs.setdefault((raw[i].sharding, raw[i].shape[0]), []).append(i)
    for (sharding, _), members in packs.items():
        if sharding not in _GATHERERS:
            if len(_GATHERERS) >= 64:
                _GATHERERS.clear()
            _GATHERERS[sharding] = jax.jit(lambda xs: jnp.concatenate([_as_words(x) for x in xs], axis=1),
                                           out_shardings=sharding.update(spec=P()))
        words = np.asarray(_GATHERERS[sharding]([raw[i] for i in members]).addressable_data(0))
        start = 0
        for i in members:
            width = int(np.prod(raw[i].shape[1:], dtype=np.int64))
            raw[i], spread[i] = _from_words(words[:, start:start + width], raw[i].dtype, raw[i].shape), False
            start += width
    for i in todo:
        if spread[i]:  # not packable: gathered as it is
            raw[i], spread[i] = multihost_utils.process_allgather(raw[i], tiled=True), False
    out = [np.asarray(x.addressable_data(0)) if s else jax.device_get(x) for x, s in zip(raw, spread, strict=True)]
    out = [x if impl is None else jax.random.wrap_key_data(x, impl=impl) for x, impl in zip(out, impls, strict=True)]
    return jax.tree.unflatten(treedef, out)


def _concat_rows(order: np.ndarray, *parts: Any) -> Any:
    """Blocks' rows [n_i, ...] concatenated and reordered by ``order``; PRNG-key arrays (an NNX model's rng
    streams) stay key arrays."""
    if any(isinstance(p, jax.Array) and _is_key(p) for p in parts):
        return jnp.concatenate(parts)[order]
    return np.concatenate(parts)[order]


def _take(keep: np.ndarray, tree: Any) -> Any:
    """Rows ``keep`` of every leaf of ``tree``."""
    return jax.tree.map(lambda leaf: leaf[keep], tree)


def _block_order(ids: np.ndarray, size: int, n_dev: int, n_activations: int
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
    plain = (*_fit_order(ids, None, size, n_dev), None, size)
    if n_activations == 1 or size == 1:
        return plain
    counts = {int(k): int(np.sum(ids == k)) for k in np.unique(ids)}
    shares = n_blocks * n_dev  # device shares of the variant axis, over all blocks: grow until a block fits
    while sum(-(-c // shares) for c in counts.values()) * n_dev > size:
        if shares >= max(counts.values()):  # one slot per activation is still too big: no layout
            return plain
        shares += n_dev
    layout = tuple((k, -(-c // shares)) for k, c in counts.items())
    order, real = _fit_order(ids, layout, size, n_dev)
    if len(order) > 1.5 * len(plain[0]):
        return plain
    return order, real, layout, sum(c for _, c in layout) * n_dev


def _fit_order(ids: np.ndarray, layout: activations.Layout | None, size: int, n_dev: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """``(order, real)`` as :func:`_block_order` returns them, for a given ``layout`` (``None``: blocks of
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


def _agree(value: int) -> int:
    """``value`` as process 0 has it (every process must call this at the same point); itself in one process."""
    if jax.process_count() == 1:
        return int(value)
    from jax.experimental import multihost_utils

    return int(multihost_utils.broadcast_one_to_all(np.int32(value)))


def _trial_key(prog: Program, hyper: Mapping[str, np.ndarray], rule: int, n_dev: int) -> dict[str, Any]:
    """What a block-size choice depends on (:mod:`jaxnets.blocks`): the machine, and the group's training
    step program but its step counts (``steps``, ``eval_every``, patience and ``data_seed`` change no
    operation), its parameter and data shapes, the rule's size and the device count."""
    spec = dataclasses.replace(prog.spec, steps=0, eval_every=0, early_stopping_patience=0, data_seed=0)
    hp1 = {k: a[:1] for k, a in hyper.items()}
    state = jax.eval_shape(prog.init_batch, hp1, prog.data)
    named = lambda f: None if f is None else f"{getattr(f, '__module__', '')}.{getattr(f, '__qualname__', f)}"  # noqa: E731
    return {"machine": blocks.machine(), "spec": repr(spec), "rule": rule, "devices": n_dev,
            "output_dim": prog.output_dim, "many_to_many": prog.many_to_many,
            "data": sorted((k, list(a.shape), a.dtype.str) for k, a in prog.data.items()),
            "params": [list(a.shape) for a in jax.tree.leaves(state.params)],
            "model": named(prog.adapter.factory) if prog.custom else prog.spec.kind,
            "loss": named(prog.user_loss), "metric": named(prog.user_metric)}


#: Bytes of one variant's training step (:attr:`Footprint.step`) below which a group skips the block-size
#: trial and keeps the rule's blocks: such a variant cannot fill even two cores, so one at a time never wins
#: (wine_mlp, 59 kB a step, 64 variants on a 2-core EPYC: one block 6.5 ms for 8 steps of all 64, one at a
#: time 18 ms), and the trial would cost seconds of compilation for nothing. Shapes only, so the same group
#: always decides the same way.
TRIAL_MIN_STEP_BYTES = 2**18

#: Built-in model kinds whose groups keep the rule's blocks untried. On every CPU measured, a vmapped block of
#: MLPs was at least as fast as one variant per program (2-core AMD EPYC: digits MLP 4x128 2,976 model-steps/s
#: in blocks of 8, 2,965 one at a time; the demo's 6x64 MLP, 11 variants in 62.6 ms one at a time and 61.0 ms
#: as one block; the wine MLP 3x faster as one block), and an MLP whose step outgrows the cache already trains
#: one variant per program by the rule; a trial would only cost its 3-4 s. Convolutions and recurrent cells
#: (and your own models) are where the winner depends on the CPU.
UNTRIED_KINDS = frozenset({"mlp"})


def _trial_block_size(prog: Program, hyper: Mapping[str, np.ndarray], rule: int, devices: Sequence[Any],
                      shard: NamedSharding, data: Any, footprint: Footprint, report: ProgressFn, group_index: int
                      ) -> tuple[int, float]:
    """The block size a CPU group trains in: the shape rule's ``rule`` or one variant per device, whichever a
    timed trial of their training steps finds faster, remembered per machine (:mod:`jaxnets.blocks`).
    Returns ``(size, trial seconds)`` (0 when the choice was remembered or there was nothing to try: the rule
    gives one variant per device, a variant's step is under :data:`TRIAL_MIN_STEP_BYTES`, or the group is a
    built-in model of :data:`UNTRIED_KINDS`). Every process must call it."""
    n_dev = len(devices)
    if (rule <= n_dev or footprint.step < TRIAL_MIN_STEP_BYTES
            or (not prog.custom and prog.spec.kind in UNTRIED_KINDS)):
        return rule, 0.0
    key = _trial_key(prog, hyper, rule, n_dev)
    known = _agree(blocks.lookup(key) or 0)
    if known:
        return known, 0.0
    t0 = time.perf_counter()
    ids, n_act = hyper["activation"], len(prog.spec.activations)
    order, _, layout, size = _block_order(ids, rule, n_dev, n_act)  # size > n_dev: a layout has >= 2 per device
    report(events.TimingBlocks(group=group_index, n_variants=len(prog.rows), sizes=(rule, n_dev)))
    platform = devices[0].platform
    options = compiler_options(platform)
    small_order = _block_order(ids, n_dev, n_dev, n_act)[0]
    rows = order[:size]  # the rule's first block; the small candidate trains the same variants, n_dev at a time
    hp = _to_device({k: a[rows] for k, a in hyper.items()}, shard)
    lowered_init = _lower_init(prog, hp, data, shard)
    init = _COMPILER.submit(_compile_lowered, lowered_init,
                            init_compiler_options(platform, lowered_init.out_info.params), options)
    first = jnp.int32(0)
    rows_of = lambda tree, n: jax.tree.map(  # noqa: E731 - [n]-stacked shapes of a [size]-stacked tree
        lambda a: jax.ShapeDtypeStruct((n, *a.shape[1:]), a.dtype, sharding=shard), tree)
    compiled = {}
    try:
        for cand, cand_layout in ((size, layout), (n_dev, None)):
            prog.layout = cand_layout  # read while tracing (the activations' slices), so set per candidate
            fn = _lift(lambda st, hp, data, t: prog.steps(st, hp, data, t, False, n=blocks.TRIAL_STEPS)[0], cand)
            lowered = jax.jit(fn, out_shardings=shard).lower(rows_of(lowered_init.out_info, cand), rows_of(hp, cand),
                                                             data, first)
            compiled[cand] = _COMPILER.submit(_compile_lowered, lowered, options, options)
    finally:
        prog.layout = None
    state = init.result()(hp, data)
    big, small = compiled[size].result(), compiled[n_dev].result()
    host_state, host_hp = _to_host(state), _to_host(hp)  # every process holds the whole block
    piece = lambda tree, i: _to_device(jax.tree.map(lambda a: a[i:i + n_dev], tree), shard)  # noqa: E731
    pieces = [(piece(host_state, i), piece(host_hp, i)) for i in range(0, size, n_dev)]
    candidates = [
        blocks.Candidate(rule, len(order) / size, lambda: jax.block_until_ready(big(state, hp, data, first))),
        blocks.Candidate(n_dev, len(small_order) / size,
                         lambda: jax.block_until_ready([small(s, h, data, first) for s, h in pieces])),
    ]
    pick, group_s = blocks.choose(candidates)
    pick = _agree(pick)
    blocks.record(key, pick, group_s)
    return pick, time.perf_counter() - t0


def _wants_trial(block_trial: bool | None, devices: Sequence[Any], max_variants: int | None,
                 block_bytes: int | None) -> bool:
    """Whether a group's block size comes from a timed trial (:attr:`Options.block_trial`)."""
    if block_trial is not None:
        return bool(block_trial)
    return (devices[0].platform == "cpu" and max_variants is None and block_bytes is None
            and blocks.path() is not None)


def _run_group(prog: Program, *, max_variants: int | None, devices: Sequence[Any], budget: int | None,
               block_bytes: int | None, progress: ProgressFn | None, group_index: int,
               block_trial: bool | None = False) -> GroupResult:
    spec = prog.spec
    t0 = time.perf_counter()
    report = progress or (lambda event: None)
    n_dev = len(devices)
    mesh = jax.make_mesh((n_dev,), ("variants",), devices=devices, axis_types=(AxisType.Auto,))
    shard, replicated = NamedSharding(mesh, P("variants")), NamedSharding(mesh, P())
    v = len(prog.rows)
    hyper = prog.stack()
    footprint = prog.footprint({k: a[:1] for k, a in hyper.items()}, prog.data)
    trial = _agree(_wants_trial(block_trial, devices, max_variants, block_bytes))
    if block_bytes is None:
        block_bytes = CPU_BLOCK_BYTES if devices[0].platform == "cpu" else 0
    size = _block_size(v, n_dev, footprint, budget or memory_budget(devices), max_variants, block_bytes)
    data = _to_device(prog.data, replicated)
    trial_s = 0.0
    if trial:
        size, trial_s = _trial_block_size(prog, hyper, size, devices, shard, data, footprint, report, group_index)
    order, real, prog.layout, size = _block_order(hyper["activation"], size, n_dev, len(spec.activations))
    key = _signature(prog, size, devices)
    compile_s = run_s = 0.0
    parts: list[dict[str, Any]] = []
    yes, no = np.bool_(True), np.bool_(False)
    for start in range(0, len(order), size):
        where, keep = order[start:start + size], np.flatnonzero(real[start:start + size])
        hp = _to_device({k: a[where] for k, a in hyper.items()}, shard)
        if key not in _CACHE:
            report(events.Compiling(group=group_index, n_variants=v))
            tc = time.perf_counter()
            _CACHE[key] = _compile(prog, hp, data, shard, small_eval=_small_eval(footprint))
            compile_s += time.perf_counter() - tc
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
        _CACHE.move_to_end(key)
        programs = _CACHE[key]
        tr = time.perf_counter()
        state, m = programs.chunk(programs.init(hp, data), hp, data, no, no, np.int32(0))
        history = [_to_host(m)]
        run_s += time.perf_counter() - tr
        for e in range(1, spec.n_evals):
            tr = time.perf_counter()
            state, m = programs.chunk(state, hp, data, yes, np.bool_(e == spec.n_evals - 1),
                                      np.int32(spec.eval_steps[e - 1]))
            history.append(_to_host(m))
            run_s += time.perf_counter() - tr
            report(events.Evaluated(group=group_index, block_start=start, eval=e, n_evals=spec.n_evals,
                                    step=int(spec.eval_steps[e]), val_loss=history[-1]["val_loss"][keep],
                                    n_variants=v))
        final = _to_host((state.params, state.model_state, state.status, state.stopped_step, state.best_val))
        pick = functools.partial(_take, keep)
        parts.append({
            "variant": where[keep],
            "params": pick(final[0]), "model_state": pick(final[1]),
            "status": final[2][keep], "stopped_step": final[3][keep], "best_val_loss": final[4][keep],
            "history": {k: np.stack([h[k] for h in history], axis=1)[keep] for k in METRICS},
            "test": {k: history[-1][k][keep] for k in TEST_METRICS},
        })
    prog.layout = None  # the layout fits the blocks only: later calls (predictions) see the rows in their order
    back = np.argsort(np.concatenate([p["variant"] for p in parts]), kind="stable")  # block order -> row order
    cat = functools.partial(_concat_rows, back)
    return GroupResult(
        spec=spec,
        indices=np.asarray(prog.indices),
        rows=list(prog.rows),
        params=jax.tree.map(cat, *[p["params"] for p in parts]),
        status=cat(*[p["status"] for p in parts]),
        stopped_step=cat(*[p["stopped_step"] for p in parts]),
        best_val_loss=cat(*[p["best_val_loss"] for p in parts]),
        history={k: cat(*[p["history"][k] for p in parts]) for k in METRICS},
        eval_steps=spec.eval_steps,
        compile_s=compile_s,
        run_s=run_s,
        wall_s=time.perf_counter() - t0,
        n_blocks=len(order) // size,
        model_state=jax.tree.map(cat, *[p["model_state"] for p in parts]),
        test={k: cat(*[p["test"][k] for p in parts]) for k in TEST_METRICS},
        layer_names=list(prog.layer_names),
        program=prog,
        model_steps=v * spec.eval_every * (spec.n_evals - 1),
        trial_s=trial_s,
    )


@dataclasses.dataclass(frozen=True)
class Options:
    """Engine settings that do not change results beyond float32 rounding (a block size changes the order in
    which XLA's kernels accumulate: digits MLP, 8 variants in one block or one at a time, 20 steps: losses
    and gradient norms within 1e-6 relative); the same settings on the same machine give the same numbers.

    Attributes:
      max_variants_per_program: most variants one compiled program trains at once; larger groups run in
        blocks of this size, one after another (one compilation per group; results as above). ``None``:
        set by ``block_bytes`` and the memory budget.
      devices: devices to shard the variant axis over (default: all of ``jax.devices()``).
      n_eval_train: training examples used for the evaluation-time train loss and diagnostics.
      memory_budget_bytes: memory one device may use; a group whose estimated need (shapes only, see
        :meth:`Program.footprint`) exceeds it is split into blocks automatically. ``None``: half of the
        device's memory (:func:`memory_budget`).
      block_bytes: when ``max_variants_per_program`` is None, the most training-step working set (state,
        gradients and a minibatch's activations, estimated from shapes) of the variants one device trains at
        once (at least :data:`MIN_BLOCK`; on one device, a variant whose step alone exceeds it trains alone).
        On the CPU, keeping a block in cache is faster than one program over every variant. ``None``:
        :data:`CPU_BLOCK_BYTES` on the CPU, no limit on accelerators; ``0``: no limit.
      block_trial: whether a group chooses between the rule's block size (above) and one variant per device
        by a short timed trial of both, remembered per machine (:mod:`jaxnets.blocks`: the rule's blocks are
        slower than one variant at a time on some CPUs). ``None``: on the CPU when the rule is in force
        (``max_variants_per_program`` and ``block_bytes`` unset) and a choices file is enabled
        (:func:`jaxnets.blocks.enable`, done by :func:`jaxnets.compilation_cache.enable` and so by the CLI),
        so that every run on the machine trains in the same blocks; ``True``: always (choices then stay in
        this process's memory when no file is enabled); ``False``: the rule alone. The trial's time is
        ``GroupResult.trial_s``. A population policy's groups follow the rule.
    """

    max_variants_per_program: int | None = None
    devices: Sequence[Any] | None = None
    n_eval_train: int = 1024
    memory_budget_bytes: int | None = None
    block_bytes: int | None = None
    block_trial: bool | None = None


ModelFactory = Callable[..., Any]
"""``factory(hp) -> flax.linen.Module`` or ``factory(hp, rngs) -> flax.nnx.Module`` (see :mod:`jaxnets.adapters`)."""
LossFn = Callable[[jax.Array, jax.Array], jax.Array]
"""``loss(outputs, labels) -> per-example loss [B]`` (or a metric: per-example values, e.g. 1.0 / 0.0)."""


def _programs(variants: Sequence[Mapping[str, Any]], ds: Dataset, *, model: ModelFactory | None,
              loss: str | LossFn | None, metric: LossFn | None, extra_keys: Mapping[str, str] | None,
              n_eval_train: int, platform: str) -> list[Program]:
    """Validate everything (variants, data, model, loss) and build one :class:`Program` per static group."""
    groups = prepare(variants, ds, model=model, loss=loss, extra_keys=extra_keys)
    user_loss = loss if callable(loss) else None
    if metric is not None and not callable(metric):
        raise TypeError(f"metric= must be a callable (outputs, labels) -> per-example values, got {metric!r}")
    if metric is not None and user_loss is None:
        raise ValueError("metric= goes with a loss callable (loss=); the built-in losses have their accuracy")
    programs = []
    for g in groups:
        try:
            prog = Program(g, ds, model=model, loss=user_loss, metric=metric, n_eval_train=n_eval_train,
                           platform=platform)
            if prog.custom or user_loss is not None:
                prog.check()
        except (ValueError, TypeError) as e:
            raise variants_lib.VariantError(g.indices[0], str(e), g.indices) from None
        programs.append(prog)
    return programs


def prepare(variants: Sequence[Mapping[str, Any]], ds: Dataset, *, model: ModelFactory | None = None,
            loss: str | LossFn | None = None, extra_keys: Mapping[str, str] | None = None
            ) -> list[variants_lib.Group]:
    """Validate every variant and the data, and split into static groups — all before any compute.

    Args:
      variants: rows of hyperparameters.
      ds: the data set.
      model: a model factory (``None``: the built-in model of each variant's ``kind``); the data's layout is
        then the factory's business, not checked here.
      loss: a loss name used where a row sets none, or a callable (then the rows' ``loss`` is not used).
      extra_keys: declared user keys (see :func:`jaxnets.variants.check_extra_keys`).

    Returns:
      the static groups, in order of first appearance.

    Raises:
      VariantError: a bad variant, or data a group's variants cannot train on (``.indices``: the group).
      ValueError: an empty variant list or a bad ``extra_keys``.
      TypeError: ``ds`` is not a :class:`jaxnets.data.Dataset`.
    """
    if not isinstance(ds, Dataset):
        raise TypeError(f"expected a jaxnets.data.Dataset, got {type(ds).__name__}")
    if len(variants) == 0:
        raise ValueError("no variants to train: the variant list is empty")
    extra = variants_lib.check_extra_keys(extra_keys)
    default_loss = loss if isinstance(loss, str) else ds.default_loss
    if loss is not None and not isinstance(loss, str) and not callable(loss):
        raise TypeError(f"loss= must be a loss name or a callable (outputs, labels) -> per-example loss, "
                        f"got {loss!r}")
    rows = [variants_lib.normalize(v, i, default_loss, extra) for i, v in enumerate(variants)]
    groups = variants_lib.group(rows, extra)
    for g in groups:
        try:
            _check_data(ds, g.spec, builtin_model=model is None, builtin_loss=not callable(loss))
        except ValueError as e:
            raise variants_lib.VariantError(g.indices[0], str(e), g.indices) from None
    return groups


def program(variants: Sequence[Mapping[str, Any]], ds: Dataset, *, model: ModelFactory | None = None,
            loss: str | LossFn | None = None, metric: LossFn | None = None,
            extra_keys: Mapping[str, str] | None = None, n_eval_train: int = 1024,
            platform: str | None = None) -> Program:
    """The pure per-variant :class:`Program` (``init``, ``train_chunk``, ``evaluate``) of ONE static group.

    Args:
      variants: rows that form one static group (same model structure, optimizer kind, loss, batch size,
        steps, ...); :meth:`Program.stack` gives their ``hp`` arrays.
      ds: the data set; :attr:`Program.data` holds its arrays in the form the functions read them.
      model, loss, metric, extra_keys: as in :func:`train`.
      n_eval_train: training examples of the evaluation-time train loss and diagnostics.
      platform: the backend the functions will run on (``"cpu"`` picks CPU-friendly kernels); default: that
        of ``jax.devices()[0]``.

    Returns:
      the group's :class:`Program`.

    Raises:
      ValueError: bad input (as :func:`train`), or variants that form more than one static group.
    """
    platform = platform or jax.devices()[0].platform
    progs = _programs(variants, ds, model=model, loss=loss, metric=metric, extra_keys=extra_keys,
                      n_eval_train=n_eval_train, platform=platform)
    if len(progs) != 1:
        raise ValueError(f"the variants form {len(progs)} static groups; program() takes the variants of one "
                         "(split them with engine.prepare(...), or use engine.train)")
    return progs[0]


def train(variants: Sequence[Mapping[str, Any]], ds: Dataset, *, model: ModelFactory | None = None,
          loss: str | LossFn | None = None, metric: LossFn | None = None,
          extra_keys: Mapping[str, str] | None = None, options: Options | None = None,
          progress: ProgressFn | None = None, policy: Any = None,
          checkpoint: Callable[[dict[str, np.ndarray]], None] | None = None,
          resume: Mapping[str, np.ndarray] | None = None) -> Result:
    """Train every variant on ``ds``; one compiled program per static group, the variant axis sharded.

    Args:
      variants: rows of hyperparameters (see :data:`jaxnets.variants.KEYS`; missing keys take
        :data:`jaxnets.variants.DEFAULTS`).
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
    devices = list(options.devices or jax.devices())
    progs = _programs(variants, ds, model=model, loss=loss, metric=metric, extra_keys=extra_keys,
                      n_eval_train=options.n_eval_train, platform=devices[0].platform)
    if policy is not None:
        from jaxnets import population

        return population.run(progs, policy, devices=devices, max_variants=options.max_variants_per_program,
                              budget=options.memory_budget_bytes, block_bytes=options.block_bytes,
                              progress=progress, n_variants=len(variants), checkpoint=checkpoint, resume=resume)
    if checkpoint is not None or resume is not None:
        raise ValueError("checkpoint= and resume= go with a population policy (policy=)")
    results = [
        _run_group(prog, max_variants=options.max_variants_per_program, devices=devices,
                   budget=options.memory_budget_bytes, block_bytes=options.block_bytes, progress=progress,
                   group_index=gi, block_trial=options.block_trial)
        for gi, prog in enumerate(progs)
    ]
    return Result.from_groups(results, n_variants=len(variants))
