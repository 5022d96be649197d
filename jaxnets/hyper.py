"""``hp``: one variant's hyperparameters as a model factory sees them, with ready-made helpers.

A model factory (``factory(hp) -> flax.linen.Module`` or ``factory(hp, rngs) -> flax.nnx.Module``) is called
inside the engine's traced functions with a :class:`Hyper`: every key of the variant's row, the vmapped ones
as traced scalars (``hp["learning_rate"]``, a user key ``hp["temperature"]``) and the static ones as Python
values (``hp["hidden"]``, a user key ``hp["width"]``), plus three helpers that make a module heterogeneous
across variants with one line each:

* ``hp.activation`` — a callable applying this variant's activation (``activation`` key), the same per-variant
  machinery as the built-in models (:func:`jaxnets.activations.by_index`);
* ``hp.kernel_init`` — this variant's initializer at its ``init_scale`` (a ``jax.nn.initializers``-style
  function ``(key, shape, dtype) -> array``);
* ``hp.learning_rate_schedule`` — this variant's learning rate as an optax schedule ``count -> rate``
  (``learning_rate`` times its ``schedule``, :mod:`jaxnets.schedules`), for your own optimizer factory
  (``engine.train(..., optimizer=lambda hp: optax.adamw(hp.learning_rate_schedule))``);
* ``hp.dropout(x, rng)`` — inverted dropout at this variant's ``dropout`` rate (a traced rate works, unlike
  ``flax.linen.Dropout`` / ``flax.nnx.Dropout``, which branch on the rate in Python). ``rng`` is a key: in
  linen ``self.make_rng("dropout")``, in NNX ``rngs.dropout()``. Call it only in training;
* ``hp.masked_kernel_init`` — this variant's initializer for a real ``[fan_in, fan_out]`` kernel inside a
  padded one, ``init(key, shape, fan_in, fan_out)`` with traced sizes (with
  :class:`jaxnets.models.MaskedDense`: one program for several widths, :mod:`jaxnets.architectures`).

In a built-in model group that mixes architectures, ``hp["widths"]`` is the variant's own layer sizes (int32
[L], 0 past its depth) and ``hp["hidden"]`` the padded architecture.

Example (linen)::

    class Net(nn.Module):
        hp: Hyper

        @nn.compact
        def __call__(self, x, train: bool = False):
            x = nn.Dense(64, kernel_init=self.hp.kernel_init)(x)
            x = self.hp.activation(x)
            if train:
                x = self.hp.dropout(x, self.make_rng("dropout"))
            return nn.Dense(10, kernel_init=self.hp.kernel_init)(x)

    result = engine.train(variants, ds, model=lambda hp: Net(hp))
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax

from jaxnets import activations, initializers, schedules
from jaxnets.models._common import inverted_dropout

__all__ = ["Hyper", "inverted_dropout"]


class Hyper(Mapping):
    """One variant's hyperparameters inside a traced function (see the module docstring).

    Attributes:
      activation: this variant's activation, a callable ``[...] -> [...]`` (its ``.slope`` attribute is the
        derivative, which the diagnostics use; it is differentiable in reverse mode only).
      kernel_init: this variant's initializer at its scale, ``(key, shape, dtype) -> array``.
      learning_rate_schedule: this variant's learning rate as an optax schedule ``count -> rate``.
      dropout_rate: this variant's dropout rate (a traced scalar, or ``0.0`` when no variant of the group uses
        dropout, so a module can skip it statically).
    """

    def __init__(self, values: Mapping[str, Any], activation_names: Sequence[str],
                 initializer_names: Sequence[str], use_dropout: bool = True,
                 layout: activations.Layout | None = None, record: set[str] | None = None):
        self._values = dict(values)
        self._record = record  # the keys read (directly or through a helper), while the engine checks a model
        self._layout = layout
        self._activation_names = tuple(activation_names)
        self._initializer_names = tuple(initializer_names)
        self._use_dropout = use_dropout

    def _read(self, *keys: str) -> None:
        if self._record is not None:
            self._record.update(keys)

    def __getitem__(self, key: str) -> Any:
        self._read(key)
        try:
            return self._values[key]
        except KeyError:
            raise KeyError(f"hp has no key {key!r}; it has: {', '.join(self._values)} (declare your own keys "
                           "with engine.train(..., extra_keys={...}))") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Hyper({', '.join(self._values)})"

    # Hyper objects are passed as flax.linen Module attributes: hash and compare by identity.
    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:
        return self is other

    @property
    def activation(self) -> activations.Activation:
        """This variant's activation (a per-variant switch over the group's activations)."""
        self._read("activation")
        i, names, layout = self._values["activation"], self._activation_names, self._layout

        def activation(x: jax.Array) -> jax.Array:
            return activations.by_index(i, x, names, layout)

        activation.slope = lambda x: activations.slope_by_index(i, x, names, layout)  # its derivative
        return activation

    @property
    def kernel_init(self) -> initializers.Initializer:
        """This variant's kernel initializer at its ``init_scale``."""
        self._read("init", "init_scale")
        return initializers.by_index(self._values["init"], self._values["init_scale"], self._initializer_names)

    @property
    def masked_kernel_init(self) -> initializers.EmbeddedInitializer:
        """This variant's kernel initializer at its ``init_scale`` for a real ``[fan_in, fan_out]`` kernel inside
        a padded one: ``init(key, shape, fan_in, fan_out)`` (traced sizes; :func:`jaxnets.initializers.embedded`),
        the variance of the real layer, zeros outside it."""
        self._read("init", "init_scale")
        return initializers.embedded(self._values["init"], self._values["init_scale"], self._initializer_names)

    @property
    def learning_rate_schedule(self) -> Callable[[jax.Array], jax.Array]:
        """This variant's learning rate as an optax schedule, ``count -> learning_rate * factor(count)``
        (:func:`jaxnets.schedules.rate` with its ``schedule`` and numbers): the rate the history reports."""
        self._read("learning_rate", *schedules.KEYS)
        values = self._values
        return lambda count: schedules.rate(values["schedule"], count, values)

    @property
    def dropout_rate(self) -> float | jax.Array:
        """This variant's dropout rate (``0.0``, a Python float, when the group uses no dropout)."""
        self._read("dropout")
        return self._values["dropout"] if self._use_dropout else 0.0

    def dropout(self, x: jax.Array, rng: jax.Array) -> jax.Array:
        """Inverted dropout of ``x`` at this variant's rate (:func:`inverted_dropout`); call it in training."""
        return inverted_dropout(x, self.dropout_rate, rng)
