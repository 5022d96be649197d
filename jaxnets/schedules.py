"""Learning-rate schedules whose numbers are per-variant arrays: optax's formulas with traced parameters.

A variant's ``schedule`` (static: it picks the formula) scales its ``learning_rate`` step by step; the
schedule's numbers (``warmup_steps``, ``decay_steps``, ``end_factor``, ``decay_rate``) are vmapped like any
other hyperparameter, so a grid over warmup length x peak rate x final rate is ONE compiled program. Each
kind equals an ``optax.schedules`` function at every step (to float32 rounding; tested), with ``lr`` the
variant's ``learning_rate``:

* ``constant``: ``optax.constant_schedule(lr)``; reads nothing;
* ``warmup_constant``: ``optax.schedules.warmup_constant_schedule(0, lr, warmup_steps)``; reads
  ``warmup_steps``;
* ``warmup_cosine``: ``optax.schedules.warmup_cosine_decay_schedule(0, lr, warmup_steps, decay_steps,
  lr * end_factor)``; reads ``warmup_steps``, ``decay_steps``, ``end_factor``;
* ``cosine``: ``optax.schedules.cosine_decay_schedule(lr, decay_steps, alpha=end_factor)``; reads
  ``decay_steps``, ``end_factor``;
* ``linear``: ``optax.schedules.linear_schedule(lr, lr * end_factor, decay_steps)``; reads ``decay_steps``,
  ``end_factor``;
* ``exponential``: ``optax.schedules.exponential_decay(lr, decay_steps, decay_rate, end_value=lr *
  end_factor)`` (``end_value=None`` when ``end_factor`` is 0); reads ``decay_steps``, ``decay_rate``,
  ``end_factor``.

``decay_steps`` defaults to the variant's ``steps`` (the decay ends with training; for ``warmup_cosine`` it
includes the warmup, as in optax). ``warmup_steps = 0`` means no warmup (the rate is ``lr`` at step 0; optax's
``warmup_constant_schedule`` would instead stay at its ``init_value``). The rate applied by update ``t`` (the
``t``-th step, from 0) is ``schedule(t)``; ``history.npz``'s ``learning_rate`` at an evaluation at step ``t``
is ``schedule(t)``, the rate the next update uses.

Example::

    rows = [{"schedule": "warmup_cosine", "warmup_steps": w, "learning_rate": lr, "end_factor": 0.1}
            for w in (0, 50, 200) for lr in (1e-3, 1e-2)]
    result = engine.train(rows, ds)          # one static group, one program
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

__all__ = ["NAMES", "KEYS", "DEFAULTS", "READS", "canonical", "factor", "rate", "reference"]

NAMES: tuple[str, ...] = ("constant", "warmup_constant", "warmup_cosine", "cosine", "linear", "exponential")

#: The vmapped numbers of a schedule.
KEYS: tuple[str, ...] = ("warmup_steps", "decay_steps", "end_factor", "decay_rate")

#: Defaults; ``decay_steps`` ``None`` means the variant's ``steps``.
DEFAULTS: dict[str, Any] = {"warmup_steps": 0, "decay_steps": None, "end_factor": 0.0, "decay_rate": 0.1}

#: The keys each schedule reads (a key set to a non-default value that its schedule does not read is refused:
#: it would change nothing).
READS: dict[str, tuple[str, ...]] = {
    "constant": (),
    "warmup_constant": ("warmup_steps",),
    "warmup_cosine": ("warmup_steps", "decay_steps", "end_factor"),
    "cosine": ("decay_steps", "end_factor"),
    "linear": ("decay_steps", "end_factor"),
    "exponential": ("decay_steps", "decay_rate", "end_factor"),
}


def canonical(name: str) -> str:
    """Return ``name`` if it is a known schedule, else raise a ``ValueError`` listing the valid names."""
    if not isinstance(name, str) or name not in NAMES:
        raise ValueError(f"unknown schedule {name!r}; valid schedules: {', '.join(NAMES)}")
    return name


def _cosine(t, length, alpha):
    """``optax.cosine_decay_schedule(1, length, alpha)(t)``."""
    t = jnp.minimum(t, length)
    return (1 - alpha) * (0.5 * (1 + jnp.cos(jnp.pi * t / length))) + alpha


def _warmup(t, warmup):
    """The warmup's share of the peak rate at step ``t``: ``t / warmup`` before it ends, 1 after (and 1 for
    ``warmup == 0``)."""
    return jnp.where(t < warmup, t / jnp.maximum(warmup, 1.0), 1.0)


def factor(kind: str, step: jax.Array, hp: Mapping[str, jax.Array]) -> jax.Array:
    """The schedule's rate at ``step`` as a multiple of the peak ``learning_rate`` (a float32 scalar).

    Args:
      kind: one of :data:`NAMES` (static).
      step: the update's index (``0`` for the first update), an int or float scalar, possibly traced.
      hp: the variant's :data:`KEYS` as scalars (possibly traced); ``decay_steps`` must be filled in.
    """
    t = jnp.asarray(step, jnp.float32)
    if kind == "constant":
        return jnp.float32(1.0)
    warmup = jnp.asarray(hp["warmup_steps"], jnp.float32)
    if kind == "warmup_constant":
        return _warmup(t, warmup)
    decay, end = jnp.asarray(hp["decay_steps"], jnp.float32), jnp.asarray(hp["end_factor"], jnp.float32)
    if kind == "warmup_cosine":
        return jnp.where(t < warmup, _warmup(t, warmup), _cosine(t - warmup, decay - warmup, end))
    if kind == "cosine":
        return _cosine(t, decay, end)
    if kind == "linear":
        frac = 1 - jnp.clip(t, 0, decay) / decay
        return (1 - end) * frac + end
    rate = jnp.asarray(hp["decay_rate"], jnp.float32)
    out = jnp.where(t <= 0, 1.0, jnp.power(rate, t / decay))
    bounded = jnp.where(rate < 1, jnp.maximum(out, end), jnp.minimum(out, end))
    return jnp.where(end > 0, bounded, out).astype(jnp.float32)


def rate(kind: str, step: jax.Array, hp: Mapping[str, jax.Array]) -> jax.Array:
    """The learning rate in effect at ``step``: ``hp["learning_rate"] * factor(kind, step, hp)``."""
    return jnp.asarray(hp["learning_rate"], jnp.float32) * factor(kind, step, hp)


def reference(kind: str, learning_rate: float, warmup_steps: int = 0, decay_steps: int = 1,
              end_factor: float = 0.0, decay_rate: float = 0.1) -> Callable[[Any], Any]:
    """The ``optax.schedules`` function equal to schedule ``kind`` with these (concrete) numbers: what a
    hand-written Optax loop would pass as its learning rate to replay one variant (see the table above)."""
    lr, end = learning_rate, learning_rate * end_factor
    if kind == "constant" or (kind == "warmup_constant" and warmup_steps == 0):
        return optax.constant_schedule(lr)
    if kind == "warmup_constant":
        return optax.schedules.warmup_constant_schedule(0.0, lr, warmup_steps)
    if kind == "warmup_cosine":
        return optax.schedules.warmup_cosine_decay_schedule(0.0, lr, warmup_steps, decay_steps, end)
    if kind == "cosine":
        return optax.schedules.cosine_decay_schedule(lr, decay_steps, alpha=end_factor)
    if kind == "linear":
        return optax.schedules.linear_schedule(lr, end, decay_steps)
    canonical(kind)
    return optax.schedules.exponential_decay(lr, decay_steps, decay_rate, end_value=end if end_factor > 0 else None)
