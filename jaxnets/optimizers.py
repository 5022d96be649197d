"""Optimizers whose hyperparameters are per-variant arrays, built from Optax pieces.

Every optimizer is ``optax.inject_hyperparams`` around the same chain, the way ``optax.adamw`` itself is
built::

    clip_by_global_norm(clip_norm) -> scale_by_<kind> -> add_decayed_weights(weight_decay)
                                   [-> scale_by_schedule(schedule)] -> scale_by_learning_rate(learning_rate)

so the learning rate, momentum / betas, decoupled weight decay and clipping norm live in the optimizer
*state* as float32 arrays (optax#577: a Python float would be baked into the program and every sweep point
would recompile). Under ``vmap`` each variant carries its own values.

==========  ===============================================  =====================================
kind        direction (``scale_by_<kind>``)                    hyperparameters used
==========  ===============================================  =====================================
sgd         the gradient                                       learning_rate
momentum    ``optax.trace(decay=momentum)`` (heavy ball)        learning_rate, momentum
adam        ``optax.scale_by_adam(b1, b2, eps=1e-8)``          learning_rate, b1, b2
adamw       same as adam (decoupled weight decay is in every   learning_rate, b1, b2, weight_decay
            optimizer here; ``adamw`` is a name for clarity)
rmsprop     ``optax.scale_by_rms(decay=rho, eps=1e-8)``          learning_rate, rho
==========  ===============================================  =====================================

Weight decay is *decoupled* (Loshchilov & Hutter): ``w <- w - lr * (direction + weight_decay * w)`` for every
kind. An L2 penalty on the loss is separate (see :mod:`jaxnets.engine`). ``clip_norm = inf`` disables
clipping (the update is then bit-identical to no clipping).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax.numpy as jnp
import optax

NAMES: tuple[str, ...] = ("sgd", "momentum", "adam", "adamw", "rmsprop")

#: Hyperparameters each optimizer reads (all optimizers also read learning_rate, weight_decay, clip_norm).
HYPERPARAMETERS: tuple[str, ...] = ("learning_rate", "weight_decay", "clip_norm", "momentum", "b1", "b2", "rho")

#: The hyperparameters each optimizer kind reads (the others change nothing for it).
READS: dict[str, tuple[str, ...]] = {
    "sgd": ("learning_rate", "weight_decay", "clip_norm"),
    "momentum": ("learning_rate", "weight_decay", "clip_norm", "momentum"),
    "adam": ("learning_rate", "weight_decay", "clip_norm", "b1", "b2"),
    "adamw": ("learning_rate", "weight_decay", "clip_norm", "b1", "b2"),
    "rmsprop": ("learning_rate", "weight_decay", "clip_norm", "rho"),
}

DEFAULTS: dict[str, float] = {
    "learning_rate": 1e-3,
    "weight_decay": 0.0,
    "clip_norm": float("inf"),
    "momentum": 0.9,
    "b1": 0.9,
    "b2": 0.999,
    "rho": 0.9,
}


def canonical(name: str) -> str:
    """Return ``name`` if it is a known optimizer, else raise a ``ValueError`` listing valid names."""
    if not isinstance(name, str) or name not in NAMES:
        raise ValueError(f"unknown optimizer {name!r}; valid optimizers: {', '.join(NAMES)}")
    return name


def _direction(kind: str, momentum, b1, b2, rho) -> optax.GradientTransformation:
    if kind == "sgd":
        return optax.identity()
    if kind == "momentum":
        return optax.trace(decay=momentum)
    if kind in ("adam", "adamw"):
        return optax.scale_by_adam(b1=b1, b2=b2, eps=1e-8)
    return optax.scale_by_rms(decay=rho, eps=1e-8)


def make(kind: str, *, clip: bool = True, decay: bool = True) -> optax.GradientTransformation:
    """Build optimizer ``kind`` with every hyperparameter injected as state, at :data:`DEFAULTS`.

    Use :func:`with_hyperparameters` to get one with given (possibly traced, per-variant) values.

    Args:
      kind: one of :data:`NAMES`.
      clip: ``False`` leaves out the clipping stage when a whole group of variants does not use it (saves
        work; the numbers are the same as with ``clip_norm = inf``).
      decay: ``False`` leaves out the weight-decay stage when a whole group of variants does not use it
        (saves work; the numbers are the same as with ``weight_decay = 0``).

    Returns:
      the ``optax.GradientTransformation`` (``optax.inject_hyperparams`` around the chain).

    Raises:
      ValueError: ``kind`` is not a known optimizer.
    """
    return with_hyperparameters(kind, DEFAULTS, clip=clip, decay=decay)


def with_hyperparameters(
    kind: str, hyper: Mapping[str, float | jnp.ndarray], *, clip: bool = True, decay: bool = True,
    flat: bool = False, schedule: Callable[[jnp.ndarray], jnp.ndarray] | None = None,
) -> optax.GradientTransformation:
    """Optimizer ``kind`` whose injected hyperparameters start at ``hyper`` (scalars or traced arrays).

    Args:
      kind: one of :data:`NAMES`.
      hyper: hyperparameter values, scalars or traced arrays. Keys: any of :data:`HYPERPARAMETERS`;
        missing ones take :data:`DEFAULTS`.
      clip: ``False`` leaves out the clipping stage (as in :func:`make`).
      decay: ``False`` leaves out the weight-decay stage (as in :func:`make`).
      flat: the chain works on one flat vector (``optax.flatten``): the same update, leaf by leaf, in fewer
        and larger kernels (the state's moments are then vectors); the global norm that clipping divides by
        is then summed in another order (the same up to float rounding).
      schedule: ``count -> factor``: the update of step ``count`` (from 0) is scaled by ``factor`` before the
        learning rate (``optax.scale_by_schedule``; :func:`jaxnets.schedules.factor`), so the rate in effect is
        ``learning_rate * factor(count)``; ``None``: a constant rate.

    Returns:
      the ``optax.GradientTransformation``; its state holds the hyperparameters as float32 arrays
      (``state.hyperparams``), so they can differ per variant under ``vmap`` without recompiling.

    Raises:
      ValueError: ``kind`` is not a known optimizer, or ``hyper`` has a key not in :data:`HYPERPARAMETERS`.
    """
    canonical(kind)
    unknown = set(hyper) - set(HYPERPARAMETERS)
    if unknown:
        raise ValueError(f"unknown optimizer hyperparameters {sorted(unknown)}; valid: {HYPERPARAMETERS}")

    def chain(learning_rate, weight_decay, clip_norm, momentum, b1, b2, rho):
        stages = []
        if clip:
            stages.append(optax.clip_by_global_norm(clip_norm))
        stages.append(_direction(kind, momentum, b1, b2, rho))
        if decay:
            stages.append(optax.add_decayed_weights(weight_decay))
        if schedule is not None:
            stages.append(optax.scale_by_schedule(schedule))
        stages.append(optax.scale_by_learning_rate(learning_rate))
        return optax.flatten(optax.chain(*stages)) if flat else optax.chain(*stages)

    values = {k: jnp.asarray(hyper.get(k, DEFAULTS[k]), jnp.float32) for k in HYPERPARAMETERS}
    return optax.inject_hyperparams(chain, hyperparam_dtype=jnp.float32)(**values)
