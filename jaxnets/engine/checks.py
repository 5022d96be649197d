"""Every check of a call's input, before any compute: variants, data, model factory, loss — and the
:class:`jaxnets.engine.programs.Program` of each static group, built once from them."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets import architectures, losses, optimizers, schedules
from jaxnets import variants as variants_lib
from jaxnets.data import Dataset
from jaxnets.engine.options import Tuning, tuning_for
from jaxnets.engine.programs import Program, first_line, loss_labels

__all__ = ["LossFn", "ModelFactory", "OptimizerFactory", "build_programs", "check_data", "check_program", "prepare"]

ModelFactory = Callable[..., Any]
"""``factory(hp) -> flax.linen.Module`` or ``factory(hp, rngs) -> flax.nnx.Module`` (see :mod:`jaxnets.adapters`)."""
OptimizerFactory = Callable[..., Any]
"""``factory(hp) -> optax.GradientTransformation``: your own optimizer, built inside the traced step from the
variant's ``hp`` (:class:`jaxnets.hyper.Hyper`), so every traced value in it is per variant. E.g. per-layer
learning rates from two declared keys::

    def optimizer(hp):
        label = lambda params: {name: "first" if name == "Dense_0" else "rest" for name in params}
        return optax.multi_transform({"first": optax.sgd(hp["lr1"]), "rest": optax.sgd(hp["lr2"])}, label)
"""
LossFn = Callable[[jax.Array, jax.Array], jax.Array]
"""``loss(outputs, labels) -> per-example loss [B]`` (or a metric: per-example values, e.g. 1.0 / 0.0)."""


def check_data(ds: Dataset, spec: variants_lib.GroupSpec, *, builtin_model: bool = True,
               builtin_loss: bool = True) -> None:
    """Raise ``ValueError`` naming the problem when ``ds`` cannot train a group of ``spec`` (sizes, NaN,
    labels, the built-in model's input layout)."""
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
        y = loss_labels(spec.loss, getattr(ds, f"y_{split}"), ds)
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


def _hint(e: BaseException) -> str:
    """What to do when a Flax layer branched on a traced hyperparameter (``nn.Dropout(rate=hp["dropout"])``)."""
    if isinstance(e, jax.errors.TracerBoolConversionError | jax.errors.ConcretizationTypeError):
        return (" (a layer branched on a per-variant hyperparameter, which is a traced value: use hp.dropout(x, rng) "
                "instead of nn.Dropout(rate=hp['dropout']), hp.activation instead of choosing a function by name, "
                "and declare a key that changes the structure static: extra_keys={'name': 'static'})")
    return ""


def check_program(prog: Program) -> set[str]:
    """Trace init, a training step and an evaluation from shapes only (nothing runs), so a bad model
    factory, loss or optimizer fails before any compute with a message naming the problem.

    Returns:
      the ``hp`` keys your model and optimizer factories read while traced (helpers count for their keys:
      ``hp.activation`` reads ``activation``, ``hp.kernel_init`` ``init`` and ``init_scale``, ...).

    Raises:
      ValueError: the model, its outputs or the loss do not fit the data (the message says how).
    """
    prog.reads = set()
    try:
        _trace(prog)
        return set(prog.reads)
    finally:
        prog.reads = None


def _trace(prog: Program) -> None:
    """:func:`check_program`'s traces."""
    hp1 = {k: v[:1] for k, v in prog.stack(prog.rows[:1]).items()}
    data = prog.data_shapes()
    try:
        jax.eval_shape(jax.vmap(prog.init_params), hp1)
    except Exception as e:  # noqa: BLE001 - the user's factory may raise anything: name it, don't crash
        raise ValueError(f"the model could not be initialized: {type(e).__name__}: {first_line(e)}{_hint(e)}"
                         ) from None
    try:
        state = jax.eval_shape(prog.init_batch, hp1, data)
    except Exception as e:  # noqa: BLE001
        what = "the optimizer" if prog.user_optimizer is not None else "the training state"
        raise ValueError(f"{what} could not be initialized: {type(e).__name__}: {first_line(e)}") from None
    row = jax.tree.map(lambda a: a[0], hp1)
    one = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), state)
    batch = jax.ShapeDtypeStruct((prog.spec.batch_size,) + data["x_train"].shape[1:], jnp.float32)
    try:
        out = jax.eval_shape(lambda p, s, x: prog.adapter.apply(p, s, prog.hyper(row), x, train=True,
                                                               rng=jax.random.key(0))[0],
                             one.params, one.model_state, batch)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"the model failed in training mode: {type(e).__name__}: {first_line(e)}{_hint(e)}"
                         ) from None
    y = prog.data["y_train"][: prog.spec.batch_size]
    if prog.user_loss is None:
        fitted = jax.eval_shape(lambda o: losses.fit_logits(prog.spec.loss, o, jnp.asarray(y)), out)
        try:
            losses.check_labels(prog.spec.loss, y, prog.output_dim,
                                logits_shape=fitted.shape)
        except ValueError as e:
            raise ValueError(f"model output shape {tuple(out.shape)} does not fit the labels: {e}") from None
    else:
        _check_per_example("loss", prog.per_example_loss, out, y)
        if prog.user_metric is not None:
            _check_per_example("metric", prog.user_metric, out, y)
    try:
        jax.eval_shape(jax.vmap(prog.chunk, in_axes=(0, 0, None, None, None, None)), state, hp1, data, True,
                       True, jnp.int32(0))
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"a training step failed: {type(e).__name__}: {first_line(e)}{_hint(e)}") from None


def _check_per_example(what: str, fn: Callable, out: Any, y: np.ndarray) -> None:
    """Trace ``fn(outputs, labels)`` (the loss or the metric, ``what``) on shapes; raise ``ValueError`` when it
    fails or does not return one value per example of ``y``."""
    try:
        per = jax.eval_shape(fn, out, jax.ShapeDtypeStruct(y.shape, y.dtype))
    except Exception as e:  # noqa: BLE001 - the user's function may raise anything: name it, don't crash
        raise ValueError(f"the {what} failed on outputs {tuple(out.shape)} and labels {y.shape}: "
                         f"{type(e).__name__}: {first_line(e)}") from None
    if tuple(per.shape) != tuple(y.shape[: max(per.ndim, 1)]) or per.ndim == 0:
        raise ValueError(f"the {what} returned shape {tuple(per.shape)}; it must return one value per example, "
                         f"shape {y.shape[:1]} (reduce over the other axes, not the batch)")


def build_programs(variants: Sequence[Mapping[str, Any]], ds: Dataset, *, model: ModelFactory | None,
                   loss: str | LossFn | None, metric: LossFn | None, extra_keys: Mapping[str, str] | None,
                   n_eval_train: int, tuning: Tuning, optimizer: OptimizerFactory | None = None,
                   mix_architectures: str | bool = "auto", cover: variants_lib.Coverage | None = None
                   ) -> list[Program]:
    """Validate everything (variants, data, model, loss, optimizer) and build one :class:`Program` per static
    group."""
    if optimizer is not None and not callable(optimizer):
        raise TypeError(f"optimizer= must be a callable hp -> optax.GradientTransformation, got {optimizer!r}")
    if optimizer is not None:
        named = [i for i, v in enumerate(variants) if isinstance(v, Mapping) and "optimizer" in v
                 and not str(v["optimizer"]).startswith(variants_lib.CUSTOM)]
        if named:
            raise variants_lib.VariantError(named[0], "sets 'optimizer' while optimizer= gives your own optimizer "
                                            "factory; remove the key (or the factory)", named)
    groups = prepare(variants, ds, model=model, loss=loss, extra_keys=extra_keys, optimizer=optimizer,
                     mix_architectures=mix_architectures, costs=costs_of(ds, n_eval_train, tuning), cover=cover)
    user_loss = loss if callable(loss) else None
    if metric is not None and not callable(metric):
        raise TypeError(f"metric= must be a callable (outputs, labels) -> per-example values, got {metric!r}")
    if metric is not None and user_loss is None:
        raise ValueError("metric= goes with a loss callable (loss=); the built-in losses have their accuracy")
    programs = []
    for g in groups:
        try:
            prog = Program(g, ds, model=model, loss=user_loss, metric=metric, n_eval_train=n_eval_train,
                           tuning=tuning, optimizer=optimizer)
            reads = None
            if prog.custom or user_loss is not None or optimizer is not None:
                reads = check_program(prog)
        except (ValueError, TypeError) as e:
            raise variants_lib.VariantError(g.indices[0], str(e), g.indices) from None
        for key, reason in unused_keys(prog, reads):
            warnings.warn(variants_lib.UnusedKeyWarning(key, g.indices, reason), stacklevel=3)
        programs.append(prog)
    return programs


_MODEL_HELPERS = {"activation": "call hp.activation(x) where the activation goes",
                  "init": "pass kernel_init=hp.kernel_init to its layers",
                  "init_scale": "pass kernel_init=hp.kernel_init to its layers",
                  "dropout": "call hp.dropout(x, rng) in training"}


def unused_keys(prog: Program, reads: set[str] | None) -> list[tuple[str, str]]:
    """``(key, reason)`` for each vmapped key that differs between the group's variants but never reaches the
    program: a helper your model never calls, a key neither your model nor your optimizer reads, a number the
    group's built-in optimizer does not use (``momentum`` with ``adam``). ``reads``: what your factories read
    while traced (:func:`check_program`; ``None`` for a built-in model and optimizer)."""
    hp = prog.stack()
    varying = [k for k, v in hp.items() if len(np.unique(v)) > 1]
    out = []
    for key in varying:
        if prog.custom and key in _MODEL_HELPERS and key not in reads:
            out.append((key, f"your model never reads it ({_MODEL_HELPERS[key]})"))
        elif key in prog.spec.vmapped_extra and key not in reads:
            out.append((key, f"neither your model nor your optimizer reads hp[{key!r}]"))
        elif key in optimizers.HYPERPARAMETERS and prog.user_optimizer is not None and key not in reads:
            out.append((key, f"your optimizer factory never reads it (e.g. optax.sgd(hp[{key!r}]))"))
        elif key in optimizers.HYPERPARAMETERS and prog.user_optimizer is None \
                and key not in optimizers.READS[prog.spec.optimizer]:
            out.append((key, f"optimizer {prog.spec.optimizer!r} does not read it (it reads "
                             f"{', '.join(optimizers.READS[prog.spec.optimizer])})"))
        elif key in schedules.KEYS and prog.user_optimizer is not None and key not in reads:
            out.append((key, "your optimizer factory never reads hp.learning_rate_schedule"))
    return out


def costs_of(ds: Dataset, n_eval_train: int, tuning: Tuning) -> architectures.Costs:
    """What ``mix_architectures = "auto"`` weighs for a call on ``ds`` (:class:`jaxnets.architectures.Costs`)."""
    return architectures.Costs(tuple(ds.x_train.shape[1:]), int(ds.output_dim), len(ds.x_val),
                               min(n_eval_train, len(ds.x_train)), tuning.compile_macs, bool(ds.sequence_output))


def prepare(variants: Sequence[Mapping[str, Any]], ds: Dataset, *, model: ModelFactory | None = None,
            loss: str | LossFn | None = None, extra_keys: Mapping[str, str] | None = None,
            optimizer: OptimizerFactory | None = None, mix_architectures: str | bool = "auto",
            costs: architectures.Costs | None = None, cover: variants_lib.Coverage | None = None
            ) -> list[variants_lib.Group]:
    """Validate every variant and the data, and split into static groups — all before any compute.

    Args:
      variants: rows of hyperparameters.
      ds: the data set.
      model: a model factory (``None``: the built-in model of each variant's ``kind``); the data's layout is
        then the factory's business, not checked here.
      loss: a loss name used where a row sets none, or a callable (then the rows' ``loss`` is not used).
      extra_keys: declared user keys (see :func:`jaxnets.variants.check_extra_keys`).
      optimizer: your own optimizer factory (rows marked ``optimizer = "custom:..."`` need it).
      mix_architectures: ``"auto"``, ``True`` or ``False``: whether built-in model variants differing only in
        ``hidden`` share a group (:mod:`jaxnets.architectures`); never with your own model.
      costs: what ``"auto"`` weighs (:func:`costs_of`); default: the platform's tuning, 1024 evaluation examples.
      cover: what every group is compiled for beyond its own variants (:class:`jaxnets.variants.Coverage`).

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
    own = tuple(k for k, f in (("model", model), ("optimizer", optimizer)) if f is not None)
    rows = [variants_lib.normalize(v, i, default_loss, extra, own) for i, v in enumerate(variants)]
    mix = False if model is not None else mix_architectures
    costs = costs or costs_of(ds, 1024, tuning_for(jax.devices()[0].platform))
    groups = variants_lib.group(rows, extra, mix=mix, costs=costs, cover=cover)
    for g in groups:
        try:
            check_data(ds, g.spec, builtin_model=model is None, builtin_loss=not callable(loss))
        except ValueError as e:
            raise variants_lib.VariantError(g.indices[0], str(e), g.indices) from None
    return groups
