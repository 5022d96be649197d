"""Per-layer training diagnostics from gradients and the values a model recorded.

All functions work on ONE variant (vmap them for many) and return arrays with a trailing layer axis [L],
input side first.

* :func:`grad_norms` — the L2 norm of each layer's gradient (kernel and bias together). Norms shrinking
  towards the input side are vanishing gradients; growing ones, exploding gradients.
* :func:`activation_stats` — per hidden layer: mean and std of the activations; ``dead_fraction``, the
  fraction of units whose activation has zero derivative on *every* example of the batch (a dead ReLU
  unit: it outputs 0 and gets no gradient. Leaky ReLU units never count as dead; ELU units do once their
  pre-activation is below about -17 on every example, where exp(z) underflows and float32 gradients are
  exactly 0 — they are as stuck as a dead ReLU); and
  ``saturated_fraction``, the fraction of (example, unit) entries where a sigmoid/tanh unit is within 1%
  of a bound of its output range (``|z| > 4.595`` for sigmoid, ``|z| > 2.647`` for tanh; 0 for activations
  that do not saturate). For a conv layer a unit is a channel (over all positions). Where a layer records
  no pre-activation (the recurrent layers: their nonlinearity is inside the Flax cell), dead and saturated
  fractions are NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxnets.activations import derivative_of

STATS: tuple[str, ...] = ("act_mean", "act_std", "dead_fraction", "saturated_fraction")


def layer_names(params: Mapping[str, Any]) -> list[str]:
    """Top-level layer names of a model's parameters, sorted (the built-in models' naming sorts input side
    first: ``layer_00, layer_01, ..., output``)."""
    return sorted(params)


def subtree(tree: Mapping[str, Any], path: str) -> Any:
    """The entry of a nested mapping at ``path`` (``"blocks/0"`` -> ``tree["blocks"][0]``; integer keys of
    NNX lists are matched by their text)."""
    node: Any = tree
    for part in path.split("/"):
        node = node[part] if part in node else {str(k): v for k, v in node.items()}[part]
    return node


def grad_norms(grads: Mapping[str, Any], names: Sequence[str] | None = None) -> jax.Array:
    """L2 norm of each layer's gradient pytree -> [L].

    Args:
      grads: the gradient of the loss with respect to a model's parameters (a nested mapping).
      names: the layers, input side first, as paths into ``grads`` (``"layer_00"``, ``"blocks/0"``);
        default: :func:`layer_names` (the built-in models: hidden layers, then ``output``).

    Returns:
      [L] float32, one norm per entry of ``names`` (kernel, bias and any other parameters of it together).
    """
    names = layer_names(grads) if names is None else names
    return jnp.stack([
        jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(subtree(grads, name))))
        for name in names
    ])


def collect_recorded(recorded: Mapping[str, Any]) -> dict[str, list[Any]]:
    """The ``"act"`` / ``"preact"`` values anywhere in a model's recorded collection, in recording order.

    A module records a hidden layer with ``self.sow("intermediates", "act", x)`` (linen; optionally also
    ``"preact"``, the value the activation was applied to) or ``self.sow(nnx.Intermediate, "act", x)``
    (NNX). Values are collected module by module in the order the collection lists them (linen: the order
    the modules recorded them; NNX: attribute order); within a module, in recording order. Where a module
    records ``act`` without ``preact``, its pre-activations are ``None``; without ``"units"`` (bool [units],
    the real units of a layer masked to a smaller architecture), its units are ``None`` (all count).

    Returns:
      ``{"act": [...], "preact": [...], "units": [...]}``, lists of equal length (arrays [B, ..., units],
      masks [units] or ``None``).
    """
    out: dict[str, list[Any]] = {"act": [], "preact": [], "units": []}

    def walk(node: Any) -> None:
        if not isinstance(node, Mapping):
            return
        acts = node.get("act", ())
        acts = tuple(acts) if isinstance(acts, tuple | list) else (acts,)
        pre = node.get("preact", (None,) * len(acts))
        pre = tuple(pre) if isinstance(pre, tuple | list) else (pre,)
        real = node.get("units", (None,) * len(acts))
        real = tuple(real) if isinstance(real, tuple | list) else (real,)
        if acts:
            out["act"] += list(acts)
            out["preact"] += list(pre) if len(pre) == len(acts) else [None] * len(acts)
            out["units"] += list(real) if len(real) == len(acts) else [None] * len(acts)
        for key, value in node.items():
            if key not in ("act", "preact", "units"):
                walk(value)

    walk(recorded)
    return out


def _units(x: jax.Array) -> jax.Array:
    """[B, ..., units] -> [examples * positions, units]."""
    return x.reshape(-1, x.shape[-1])


def activation_stats(
    recorded: Mapping[str, tuple[jax.Array, ...]],
    activation: Callable[[jax.Array], jax.Array],
    saturation_threshold: jax.Array | float,
) -> dict[str, jax.Array]:
    """Statistics of each recorded hidden layer.

    Args:
      recorded: a model's recorded collection (see :func:`collect_recorded`): ``"act"`` (and optionally
        ``"preact"``) entries, tuples of per-layer arrays [B, ..., units], at any depth; optionally
        ``"units"``, bool [units] per layer: only those units count (a layer masked to a smaller
        architecture; a layer with none, past a variant's depth, reports NaN).
      activation: the activation the layers use (for its derivative: its ``slope`` attribute when it has one,
        as ``hp.activation`` does, else :func:`jaxnets.activations.derivative_of`).
      saturation_threshold: |pre-activation| beyond which a unit counts as saturated (``inf``: never).

    Returns:
      dict of :data:`STATS` -> [L] float32 arrays.
    """
    found = collect_recorded(recorded)
    out: dict[str, list[jax.Array]] = {k: [] for k in STATS}
    for a, z, real in zip(found["act"], found["preact"], found["units"], strict=True):
        layer = _layer_stats(_units(a), None if z is None else _units(z), real, activation, saturation_threshold)
        for k in STATS:
            out[k].append(layer[k])
    return {k: jnp.stack(v).astype(jnp.float32) if v else jnp.zeros((0,), jnp.float32) for k, v in out.items()}


def _layer_stats(a: jax.Array, z: jax.Array | None, real: jax.Array | None,
                 activation: Callable[[jax.Array], jax.Array], threshold: jax.Array | float) -> dict[str, jax.Array]:
    """:data:`STATS` of one layer: ``a`` / ``z`` [N, units]; ``real``: bool [units] (``None``: all), the units
    that count (no real unit: NaN)."""
    nan = jnp.float32(jnp.nan)
    if real is None:
        mean, std = jnp.mean(a), jnp.std(a)
    else:
        w = real.astype(a.dtype)
        count = jnp.sum(w) * a.shape[0]
        mean = jnp.sum(a * w[None, :]) / count
        std = jnp.sqrt(jnp.sum(jnp.square(a - mean) * w[None, :]) / count)
    if z is None:
        return {"act_mean": mean, "act_std": std, "dead_fraction": nan, "saturated_fraction": nan}
    derivative = getattr(activation, "slope", None)
    slope = (derivative_of(activation) if derivative is None else derivative)(z)
    dead, saturated = jnp.all(slope == 0, axis=0), jnp.abs(z) > threshold
    if real is None:
        return {"act_mean": mean, "act_std": std, "dead_fraction": jnp.mean(dead),
                "saturated_fraction": jnp.mean(saturated)}
    n = jnp.sum(w)
    return {"act_mean": mean, "act_std": std, "dead_fraction": jnp.sum(dead * w) / n,
            "saturated_fraction": jnp.sum(saturated * w[None, :]) / (n * a.shape[0])}
