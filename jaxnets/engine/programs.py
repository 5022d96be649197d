"""The pure per-variant program of one static group: init, training steps, evaluation.

Everything here is a function of ONE variant; :mod:`jaxnets.engine.chunk` lifts it to a block of variants
(``vmap``) and :mod:`jaxnets.engine.loop` runs the blocks. Inside the program, per variant:

* minibatches are drawn on device from ``fold_in(key(seed), 1)``, so each variant's data order follows its
  seed: by default each epoch is a fresh permutation of the training split (``sampling = "epoch"``; the last
  partial batch is dropped, ``batch_size`` = the split's size is full-batch gradient descent), or indices
  uniformly with replacement (``sampling = "replacement"``); the exact rule is
  :meth:`jaxnets.engine.steps.TrainingSteps.batch_indices`;
* dropout masks come from ``fold_in(key(seed), 2)`` folded with the step; init from ``fold_in(key(seed), 0)``;
* loss = mean data loss + ``l2 / 2 * sum(kernel ** 2)`` (biases are not penalized); decoupled weight decay,
  clipping and the optimizer's hyperparameters are per-variant optimizer state (:mod:`jaxnets.optimizers`),
  the learning rate follows the variant's ``schedule`` (:mod:`jaxnets.schedules`); or your own optimizer
  factory builds the optimizer from the variant's ``hp`` (:data:`jaxnets.engine.checks.OptimizerFactory`);
* a step whose loss, gradients or new parameters are not finite marks the variant *diverged* and the update
  is discarded: its parameters stay at their last finite values and never change again; so does an
  evaluation whose training loss exceeds ``divergence_factor`` (default 1000, 0: off) times the variant's
  training loss at evaluation 0 (a finite blow-up);
* at each evaluation, with ``early_stopping_patience > 0``, a variant whose validation loss has not improved
  for ``early_stopping_patience`` evaluations is *early-stopped*: its parameters go back to its best ones
  and stop changing;
* nothing mixes variants, so every variant's numbers are what training it alone would give.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnets import activations, adapters, architectures, diagnostics, initializers, losses, optimizers, schedules
from jaxnets import variants as variants_lib
from jaxnets.data import Dataset
from jaxnets.engine.options import DEFAULT_TUNING, Tuning
from jaxnets.engine.state import DIVERGED, EARLY_STOPPED, OK, PRUNED, TrainState
from jaxnets.engine.steps import TrainingSteps
from jaxnets.hyper import Hyper
from jaxnets.models import CNN, MLP, OUTPUT, RNN, layer_name, small_kernel_dot_general
from jaxnets.standardize import DataInfo

__all__ = ["DIVERGED", "EARLY_STOPPED", "OK", "PRUNED", "Program", "TrainState", "build", "flat_optimizer",
           "loss_labels", "model", "n_params"]



def loss_labels(loss: str, y: np.ndarray, ds: Dataset) -> np.ndarray:
    """``ds``'s labels ``y`` in the form ``loss`` takes (:func:`jaxnets.losses.labels_for`)."""
    try:
        return losses.labels_for(loss, y, ds.output_dim, ds.task)
    except ValueError as e:
        raise ValueError(f"{e} (data set {ds.name!r})") from None


def build(kind: str, hidden: Sequence[int], dense: Sequence[int], cell: str, many_to_many: bool,
          tuning: Tuning = DEFAULT_TUNING, **common: Any):
    """A built-in MLP, CNN or RNN of the given structure, with the kernels ``tuning`` picks (the CPU's are fast
    under ``vmap`` on XLA:CPU; every choice gives the same numbers up to float rounding)."""
    dot_general = small_kernel_dot_general if tuning.small_kernel_dot else None
    if kind == "mlp":
        return MLP(hidden=tuple(hidden), dot_general=dot_general, **common)
    if kind == "cnn":
        return CNN(channels=tuple(hidden), dense=tuple(dense), conv_impl=tuning.conv_impl, dot_general=dot_general,
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
    return build(
        row["kind"], row["hidden"], row["dense"], row["cell"], ds.sequence_output,
        output_dim=ds.output_dim,
        activation=row["activation"],
        kernel_init=initializers.get(row["init"], row["init_scale"]),
        dropout=row["dropout"],
        norm=row["norm"],
    )


def flat_optimizer(params: Any, limit: int) -> bool:
    """Whether a variant with parameters ``params`` (one variant's shapes) uses the flat optimizer: at most
    ``limit`` (:attr:`Tuning.flat_optimizer_params`) parameters, all of one floating dtype."""
    leaves = jax.tree.leaves(params)
    dtypes = {jnp.dtype(x.dtype) for x in leaves}
    return (len(leaves) > 1 and len(dtypes) == 1 and jnp.issubdtype(dtypes.pop(), jnp.floating)
            and n_params(params) <= limit)


def n_params(params: Any, stacked: bool = False) -> int:
    """Parameters of one variant: the sizes of ``params``' leaves, without their leading [V] axis when
    ``stacked``."""
    return sum(math.prod(x.shape[1:] if stacked else x.shape) for x in jax.tree.leaves(params))


def _n_hidden(spec: variants_lib.GroupSpec) -> int:
    """Hidden layers of a built-in model (conv blocks and dense layers for the CNN)."""
    return len(spec.hidden) + (len(spec.dense) if spec.kind == "cnn" else 0)


def _builtin_factory(spec: variants_lib.GroupSpec, output_dim: int, many_to_many: bool, tuning: Tuning
                     ) -> Callable[[Hyper], Any]:
    """The built-in MLP / CNN / RNN of a group as a model factory, like a user's."""

    def factory(hp: Hyper):
        if spec.mixed:  # architectures as data: the padded model masked to the variant's own widths
            return build(spec.kind, spec.hidden, spec.dense, spec.cell, many_to_many, tuning,
                         output_dim=output_dim, activation=hp.activation, kernel_init=hp.masked_kernel_init,
                         dropout=hp.dropout_rate, norm=spec.norm, widths=hp["widths"])
        return build(spec.kind, spec.hidden, spec.dense, spec.cell, many_to_many, tuning,
                     output_dim=output_dim, activation=hp.activation, kernel_init=hp.kernel_init,
                     dropout=hp.dropout_rate, norm=spec.norm)

    return factory


def layer_grad_norms(spec: variants_lib.GroupSpec, grads: Any, names: Sequence[str],
                     hp: Mapping[str, jax.Array]) -> jax.Array:
    """Each layer's gradient norm [L + 1] (:func:`jaxnets.diagnostics.grad_norms`); in a group that mixes
    architectures, the variant's own layers, its output layer, then NaN (as a shallower group's history)."""
    norms = diagnostics.grad_norms(grads, names)
    if spec.mixed and architectures.depth_varies(spec.kind):
        norms = architectures.own_layers(norms, architectures.depth_of(hp["widths"]))
    return norms


def _raw_labels(y: np.ndarray, ds: Dataset) -> np.ndarray:
    """Labels for a user loss: as the data set holds them (int32 classes, float32 regression targets)."""
    return np.asarray(y, np.float32 if ds.task == "regression" else np.int32)


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


class Program(TrainingSteps):
    """The pure per-variant functions of one static group: ``init``, ``train_chunk``, ``evaluate``.

    Everything here is a function of ONE variant (its hyperparameters ``hp``: a dict of scalars, one entry
    per vmapped key, as :meth:`stack` gives them with a leading [V] axis), so ``jax.jit(jax.vmap(...))``
    of it trains many; :func:`jaxnets.engine.train` does exactly that (plus padding, sharding, blocks and the
    loop). Build one with :func:`jaxnets.engine.programs`. A program is a value: nothing changes it after it
    is built; :meth:`laid_out` gives a copy for blocks ordered by activation.

    Attributes:
      spec: the group's static part (:class:`jaxnets.variants.GroupSpec`).
      rows: the group's variants (normalized rows).
      data: the arrays the functions read, as NumPy: ``x_train``, ``y_train``, ``x_eval`` / ``y_eval`` (the
        first ``n_eval_train`` training examples, for the evaluation-time train loss and diagnostics),
        ``x_val``, ``y_val``, ``x_test``, ``y_test`` (labels in the form the loss takes).
      layer_names: the entries of ``grad_norm``, input side first (paths into the parameter tree).
      custom: True for a user model factory (False for the built-in MLP / CNN / RNN).
      tuning: the platform's :class:`jaxnets.engine.Tuning` (the built-in models' kernels, the flat optimizer).
      data_info: the data's shapes and standardization, for predictions (:class:`jaxnets.standardize.DataInfo`).
      layout: how a block's variants are ordered by activation (:func:`jaxnets.activations.by_index`);
        ``None``: no order assumed (a block mixing activations then computes all of them).

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
                 tuning: Tuning = DEFAULT_TUNING,
                 optimizer: Callable[[Hyper], optax.GradientTransformation] | None = None):
        spec = group.spec
        self.spec, self.rows, self.indices = spec, tuple(group.rows), tuple(group.indices)
        self.tuning = tuning
        self.custom = model is not None
        self.many_to_many = ds.sequence_output
        self.output_dim = ds.output_dim
        self.data_info = DataInfo.of(ds)
        if model is None:
            model = _builtin_factory(spec, ds.output_dim, ds.sequence_output, tuning)
        self.adapter = adapters.adapter_for(model)
        self.user_loss, self.user_metric = loss, metric
        self.user_optimizer = optimizer
        self.has_accuracy = metric is not None if loss is not None else losses.has_accuracy(spec.loss)
        self.n_train = len(ds.x_train)
        self.has_test = len(ds.x_test) > 0
        self.x_sample = jnp.zeros((1,) + ds.x_train.shape[1:], jnp.float32)
        labels = (lambda y: _raw_labels(y, ds)) if loss is not None else (lambda y: loss_labels(spec.loss, y, ds))
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
        self.layout: activations.Layout | None = None
        self.reads: set[str] | None = None  # a set while checks.check_program records what hp keys are read
        self._metric_shapes: dict[tuple, Any] = {}  # evaluate's output shapes, by its argument shapes
        self.layer_names = self._layer_names()

    def laid_out(self, layout: activations.Layout | None) -> Program:
        """This program for blocks ordered by activation as ``layout`` says (the same program when it is
        already so)."""
        if layout == self.layout:
            return self
        out = copy.copy(self)
        out.__dict__.pop("predict_fns", None)  # jitted with the layout they were traced with
        out.layout = layout
        return out

    def reindexed(self, indices: Sequence[int]) -> Program:
        """This program with its variants placed at ``indices`` of a call (e.g. its group trained alone)."""
        out = copy.copy(self)
        out.indices = tuple(int(i) for i in indices)
        return out

    # -- hyperparameters -----------------------------------------------------------------------------
    def stack(self, rows: Sequence[Mapping[str, Any]] | None = None) -> dict[str, np.ndarray]:
        """The vmapped keys of ``rows`` (default: the group's) as [V] arrays: the ``hp`` the functions take."""
        return variants_lib.stack(self.spec, self.rows if rows is None else rows)

    def hyper(self, hp: Mapping[str, jax.Array], record: bool = True) -> Hyper:
        """``hp``, the group's static keys and the helpers (:class:`Hyper`; ``record``: reads are recorded)."""
        s = self.spec
        static = {k: getattr(s, k) for k in variants_lib.STATIC_KEYS}
        return Hyper({**static, **dict(s.static_extra), **hp}, s.activations, s.initializers, s.use_dropout,
                     layout=self.layout, record=self.reads if record else None)

    def _layer_names(self) -> list[str]:
        if not self.custom:
            return [layer_name(i) for i in range(_n_hidden(self.spec))] + [OUTPUT]
        hp = {k: v[0] for k, v in self.stack(self.rows[:1]).items()}
        return self.adapter.layer_names(self.hyper(hp), jax.random.key(0), self.x_sample)

    # -- pieces --------------------------------------------------------------------------------------
    def optimizer(self, hp: Mapping[str, jax.Array], params: Any) -> optax.GradientTransformation:
        """The variant's optimizer for parameters shaped like ``params`` (one variant's): your factory's
        ``optimizer(hp)``, or the built-in one by name (hyperparameters injected as state, the learning rate
        scaled by the variant's schedule), on one flat vector (:func:`flat_optimizer`) for a small model."""
        if self.user_optimizer is not None:
            tx = self.user_optimizer(self.hyper(hp))
            if isinstance(tx, optax.GradientTransformation):
                return tx
            raise TypeError(f"the optimizer factory returned {type(tx).__name__}; it must return an optax."
                            "GradientTransformation (e.g. optax.adamw(hp['learning_rate']))")
        s = self.spec
        hyper = {k: hp[k] for k in optimizers.HYPERPARAMETERS}
        schedule = None if s.schedule == "constant" else functools.partial(schedules.factor, s.schedule, hp=hp)
        return optimizers.with_hyperparameters(s.optimizer, hyper, clip=s.use_clip, decay=s.use_weight_decay,
                                               flat=flat_optimizer(params, self.tuning.flat_optimizer_params),
                                               schedule=schedule)

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
        input shape, not at every call (what :meth:`jaxnets.result.Result.predict` and ``predict_all`` use)."""
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
        metrics = {**self.metric_shapes(params, hp, data, model_state),
                   "learning_rate": jax.ShapeDtypeStruct((), jnp.float32)}
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
        args = jax.tree.map(like, (params, dict(hp), self.data_shapes(data), model_state))
        leaves, tree = jax.tree.flatten(args)
        key = (tree, tuple((a.shape, a.dtype) for a in leaves))
        if key not in self._metric_shapes:
            self._metric_shapes[key] = jax.eval_shape(self.evaluate, *args)
        return self._metric_shapes[key]

    def init(self, hp: Mapping[str, jax.Array], data: Mapping[str, Any] | None = None) -> TrainState:
        """One variant's training state before step 0 (parameters from its seed, initializer and scale)."""
        return self.init_state(self.init_params(hp), hp, data)

    def data_shapes(self, data: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
        """``data``'s (default: :attr:`data`'s) shapes and dtypes, as ``jax.ShapeDtypeStruct`` s."""
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
        slope = self.hyper(hp, record=False).activation  # the diagnostics' own use: not your model's read
        stats = diagnostics.activation_stats(recorded, slope, self.sat[hp["activation"]])
        return {
            "train_loss": loss,
            "val_loss": self.data_loss(val_out, data["y_val"]),
            "val_accuracy": self.accuracy(val_out, data["y_val"]),
            "grad_norm": layer_grad_norms(self.spec, grads, self.layer_names, hp),
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
