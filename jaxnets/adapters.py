"""How the engine calls a model: a linen or an NNX factory behind one pure ``init`` / ``apply`` pair.

A *model factory* builds one variant's model from its hyperparameters :class:`~jaxnets.hyper.Hyper`:

* ``factory(hp) -> flax.linen.Module``, or
* ``factory(hp, rngs) -> flax.nnx.Module`` (``rngs``: an ``nnx.Rngs`` with ``params`` and ``dropout`` streams
  seeded from the variant's seed).

The kind is detected from the factory's signature (one required argument: linen; two: NNX) and checked on
what it returns. Both are used functionally inside the engine's traced functions — NNX through
``nnx.split`` / ``nnx.merge`` (never ``nnx.jit``), so the compiled step is the same kind of pure function as
for linen. The factory is called inside every traced function with that trace's ``hp``.

Calling convention:

* linen: ``module.apply(variables, x)`` gets ``train=...`` only when its ``__call__`` takes a ``train``
  argument (``deterministic=not train`` when it takes ``deterministic``), and a ``"dropout"`` rng in
  training. Collections other than ``params`` (e.g. BatchNorm's ``batch_stats``) are the model's *state*:
  mutable, and updated, in training; read-only in evaluation. Per-layer values recorded with
  ``self.sow("intermediates", "act", x)`` (and optionally ``"preact"``, the pre-activation) feed the
  activation diagnostics.
* NNX: the module is called ``model(x)`` after ``model.train()`` (training) or ``model.eval()``
  (evaluation); every non-``nnx.Param`` variable (``nnx.BatchStat``, the rng streams) is the model's state.
  Values recorded with ``self.sow(nnx.Intermediate, "act", x)`` feed the activation diagnostics.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax

from jaxnets.hyper import Hyper

__all__ = ["ModelAdapter", "LinenAdapter", "NnxAdapter", "adapter_for", "RECORD"]

#: The linen collection (and NNX variable type name) that recorded per-layer values go to.
RECORD = "intermediates"


def _n_required(fn: Callable) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 1
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in params if p.kind in kinds and p.default is inspect.Parameter.empty)


def _call_flags(module: nn.Module) -> tuple[bool, bool]:
    """Whether ``module.__call__`` takes ``train`` / ``deterministic``."""
    try:
        params = inspect.signature(type(module).__call__).parameters
    except (TypeError, ValueError):
        return False, False
    return "train" in params, "deterministic" in params


@dataclasses.dataclass(frozen=True, eq=False)
class ModelAdapter:
    """A factory behind ``init`` / ``apply``. Use :func:`adapter_for`.

    Attributes:
      factory: the user's (or a built-in) model factory.
    """

    factory: Callable[..., Any]

    def init(self, hp: Hyper, key: jax.Array, x: jax.Array) -> tuple[Any, Any]:
        """``(params, model_state)`` of one variant from ``key`` for inputs like ``x`` [B, ...]."""
        raise NotImplementedError

    def apply(self, params: Any, model_state: Any, hp: Hyper, x: jax.Array, *, train: bool,
              rng: jax.Array | None = None, record: bool = False) -> tuple[jax.Array, Any, Any]:
        """``(outputs, new_model_state, recorded)`` of one variant on a batch ``x`` [B, ...].

        ``train``: training mode (dropout on, state updated); ``rng``: the dropout key in training;
        ``record``: also return the recorded values (a nested mapping, ``{}`` otherwise).
        """
        raise NotImplementedError

    def layer_names(self, hp: Hyper, key: jax.Array, x: jax.Array) -> list[str]:
        """Top-level parameter-holding entries of the model, in creation order (input side first)."""
        raise NotImplementedError


class LinenAdapter(ModelAdapter):
    """A ``factory(hp) -> flax.linen.Module``."""

    def module(self, hp: Hyper) -> nn.Module:
        """The factory's module for ``hp``; a clear ``TypeError`` when it returns something else."""
        m = self.factory(hp)
        if not isinstance(m, nn.Module):
            raise TypeError(f"the model factory must return a flax.linen.Module (factory(hp)) or a "
                            f"flax.nnx.Module (factory(hp, rngs)); it returned {type(m).__name__}")
        return m

    def _kwargs(self, m: nn.Module, train: bool) -> dict[str, Any]:
        takes_train, takes_det = _call_flags(m)
        if takes_train:
            return {"train": train}
        if takes_det:
            return {"deterministic": not train}
        return {}

    def init(self, hp: Hyper, key: jax.Array, x: jax.Array) -> tuple[Any, Any]:
        m = self.module(hp)
        variables = m.init({"params": key, "dropout": key}, x, **self._kwargs(m, False))
        variables = dict(variables)
        params = variables.pop("params", {})
        variables.pop(RECORD, None)
        return params, variables

    def layer_names(self, hp: Hyper, key: jax.Array, x: jax.Array) -> list[str]:
        names: list[str] = []

        def trace(k):
            params, _ = self.init(hp, k, x)
            names.extend(params)  # the dict's insertion order: the order the submodules were created
            return params

        jax.eval_shape(trace, key)
        return names

    def apply(self, params: Any, model_state: Any, hp: Hyper, x: jax.Array, *, train: bool,
              rng: jax.Array | None = None, record: bool = False) -> tuple[jax.Array, Any, Any]:
        m = self.module(hp)
        mutable = (list(model_state) if train else []) + ([RECORD] if record else [])
        rngs = {"dropout": rng} if train and rng is not None else {}
        out = m.apply({"params": params, **model_state}, x, rngs=rngs, mutable=mutable or False,
                      **self._kwargs(m, train))
        if not mutable:
            return out, model_state, {}
        out, new = out
        new = dict(new)
        recorded = new.pop(RECORD, {})
        return out, ({**model_state, **new} if train else model_state), recorded


class NnxAdapter(ModelAdapter):
    """A ``factory(hp, rngs) -> flax.nnx.Module``, used through ``nnx.split`` / ``nnx.merge``."""

    def _build(self, hp: Hyper, key: jax.Array):
        from flax import nnx

        rngs = nnx.Rngs(params=key, dropout=jax.random.fold_in(key, 1))
        m = self.factory(hp, rngs)
        if not isinstance(m, nnx.Module):
            raise TypeError(f"the model factory factory(hp, rngs) must return a flax.nnx.Module; it returned "
                            f"{type(m).__name__} (a factory(hp) with one argument returns a flax.linen.Module)")
        return m

    def init(self, hp: Hyper, key: jax.Array, x: jax.Array) -> tuple[Any, Any]:
        from flax import nnx

        _, params, rest = nnx.split(self._build(hp, key), nnx.Param, ...)
        return nnx.to_pure_dict(params), rest

    def layer_names(self, hp: Hyper, key: jax.Array, x: jax.Array) -> list[str]:
        from flax import nnx

        names: list[str] = []

        def trace(k):
            model = self._build(hp, k)
            for attr, value in vars(model).items():  # attribute order: the order __init__ created them
                if isinstance(value, list | tuple | nnx.List):
                    names.extend(f"{attr}/{i}" for i, v in enumerate(value) if _holds_params(v))
                elif _holds_params(value):
                    names.append(attr)
            return 0

        jax.eval_shape(trace, key)
        return names

    def apply(self, params: Any, model_state: Any, hp: Hyper, x: jax.Array, *, train: bool,
              rng: jax.Array | None = None, record: bool = False) -> tuple[jax.Array, Any, Any]:
        from flax import nnx

        abstract = nnx.eval_shape(lambda: self._build(hp, jax.random.key(0)))
        graphdef, template, _ = nnx.split(abstract, nnx.Param, ...)
        # fresh Variable objects in this trace (NNX refuses to mutate one made under another trace)
        state = jax.tree.map(lambda v: v, model_state)
        model = nnx.merge(graphdef, _as_state(template, params), state)
        model.train() if train else model.eval()
        out, captured = nnx.capture(model, nnx.Intermediate)(x)
        recorded = nnx.to_pure_dict(captured) if record else {}
        new_state = nnx.split(model, nnx.Param, ...)[2] if train else model_state
        return out, new_state, recorded


def _as_state(template: Any, pure: Mapping[str, Any]) -> Any:
    from flax import nnx

    state = jax.tree.map(lambda v: v, template)
    nnx.replace_by_pure_dict(state, pure)
    return state


def _holds_params(value: Any) -> bool:
    from flax import nnx

    if not isinstance(value, nnx.Module | nnx.Variable):
        return False
    if isinstance(value, nnx.Variable):
        return isinstance(value, nnx.Param)
    return bool(jax.tree.leaves(nnx.state(value, nnx.Param)))


def adapter_for(factory: Callable[..., Any]) -> ModelAdapter:
    """The adapter of a model factory: :class:`NnxAdapter` for ``factory(hp, rngs)``, else
    :class:`LinenAdapter` (what the factory returns is checked when it is first called).

    Raises:
      TypeError: ``factory`` is not callable.
    """
    if isinstance(factory, nn.Module):
        raise TypeError("model= takes a factory, not a module: pass `lambda hp: MyModule(...)` (linen) or "
                        "`lambda hp, rngs: MyModule(..., rngs=rngs)` (NNX)")
    if not callable(factory):
        raise TypeError(f"model= must be a model factory (a function of hp), got {type(factory).__name__}")
    return NnxAdapter(factory) if _n_required(factory) >= 2 else LinenAdapter(factory)

