"""Host <-> device: arrays onto a mesh, and arrays back, whole, to every process.

Every function here is a collective when the mesh spans several processes: every process must call it at the
same point with the same host values. In one process they are plain ``jax.device_put`` / ``jax.device_get``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = ["is_key", "keys_to_data", "data_to_keys", "take", "to_device", "to_host"]

#: :func:`to_host`'s all-gather programs (pack into one [V, K] uint32 array, replicated), by input sharding.
_GATHERERS: dict[NamedSharding, Callable] = {}


def is_key(x: Any) -> bool:
    """Whether ``x`` is a typed PRNG-key array (an NNX model's rng streams)."""
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def to_device(tree: Any, sharding: NamedSharding) -> Any:
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
        if is_key(leaf):
            impl = jax.random.key_impl(leaf)
            return jax.random.wrap_key_data(put(np.asarray(jax.random.key_data(leaf))), impl=impl)
        value = np.asarray(leaf)
        return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

    return jax.tree.map(put, tree)


def _packable(x: jax.Array) -> bool:
    """Whether :func:`to_host` can gather ``x`` packed: sharded on its leading axis only, 4 bytes or less."""
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


def _gather_packed(raw: list[Any], spread: list[bool], todo: list[int]) -> None:
    """Gather the packable leaves ``raw[i]`` (``i`` in ``todo``) in one all-gather per sharding, in place."""
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


def to_host(tree: Any) -> Any:
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
    impls = [jax.random.key_impl(x) if s and is_key(x) else None for x, s in zip(leaves, spread, strict=True)]
    raw = [jax.random.key_data(x) if impl is not None else x for x, impl in zip(leaves, impls, strict=True)]
    todo = [i for i, s in enumerate(spread) if s and not raw[i].is_fully_replicated]
    _gather_packed(raw, spread, todo)
    for i in todo:
        if spread[i]:  # not packable: gathered as it is
            raw[i], spread[i] = multihost_utils.process_allgather(raw[i], tiled=True), False
    out = [np.asarray(x.addressable_data(0)) if s else jax.device_get(x) for x, s in zip(raw, spread, strict=True)]
    out = [x if impl is None else jax.random.wrap_key_data(x, impl=impl) for x, impl in zip(out, impls, strict=True)]
    return jax.tree.unflatten(treedef, out)


def keys_to_data(tree: Any) -> tuple[Any, list[Any]]:
    """``tree`` with every PRNG-key leaf replaced by its key data (a NumPy uint32 array, which can be indexed
    and assigned row by row like the other leaves), and each leaf's key implementation (``None`` for the
    others) for :func:`data_to_keys`."""
    leaves, treedef = jax.tree.flatten(tree)
    impls = [jax.random.key_impl(x) if is_key(x) else None for x in leaves]
    data = [np.asarray(jax.random.key_data(x)) if impl is not None else x
            for x, impl in zip(leaves, impls, strict=True)]
    return jax.tree.unflatten(treedef, data), impls


def data_to_keys(tree: Any, impls: list[Any]) -> Any:
    """The inverse of :func:`keys_to_data`."""
    if not any(impl is not None for impl in impls):
        return tree
    leaves, treedef = jax.tree.flatten(tree)
    out = [x if impl is None else jax.random.wrap_key_data(x, impl=impl) for x, impl in zip(leaves, impls, strict=True)]
    return jax.tree.unflatten(treedef, out)


def take(rows: np.ndarray, tree: Any) -> Any:
    """Rows ``rows`` of every leaf of ``tree``."""
    return jax.tree.map(lambda leaf: leaf[rows], tree)

