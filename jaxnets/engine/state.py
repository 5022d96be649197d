"""A variant's training state and the status codes the compiled programs use."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxnets.engine.transfer import is_key
from jaxnets.result import STATUS_NAMES

__all__ = ["DIVERGED", "EARLY_STOPPED", "OK", "PRUNED", "TrainState", "all_finite", "tree_where"]

#: Status codes inside the compiled programs: a status's position in :data:`jaxnets.result.STATUS_NAMES`.
OK, DIVERGED, EARLY_STOPPED, PRUNED = (STATUS_NAMES.index(s) for s in ("ok", "diverged", "early_stopped", "pruned"))


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


def tree_where(cond: jax.Array, a: Any, b: Any) -> Any:
    """``where(cond, a, b)`` leaf by leaf; PRNG-key leaves (an NNX model's rng streams) always take ``a``."""
    return jax.tree.map(lambda x, y: x if is_key(x) else jnp.where(cond, x, y), a, b)


def all_finite(tree: Any) -> jax.Array:
    """True when every floating element of ``tree`` is finite: ``sum(x * 0)`` is 0, or NaN if any x is
    NaN/Inf.

    One fused reduction per leaf (no boolean temporaries).
    """
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.isfinite(sum((jnp.sum(x * 0.0) for x in leaves), jnp.float32(0.0)))
