"""Architectures as data: built-in MLPs whose ``hidden`` lists differ train in ONE compiled program.

Variants whose static keys differ only in ``hidden`` (kind ``mlp``, ``norm = "none"``, the built-in model)
can form one static group whose program holds the **padded** architecture (:func:`padded`): depth = the
deepest variant's, every hidden layer as wide as the widest layer of any variant. Each variant carries its
own sizes as data, ``hp["widths"]`` (int32 [L], 0 past its depth, :func:`widths`), and the MLP masks every
hidden layer's kernel (in-mask x out-mask) and bias to the variant's own units; a layer past its depth
passes its input through unchanged, and the output layer reads the last real layer. Padded entries are
exactly zero from initialization on and receive zero gradients, so every optimizer's state stays zero
there; L2, weight decay and a global-norm clip see zeros only. Initialization is the variant's own
architecture's (the real fan-in / fan-out, :func:`jaxnets.initializers.embedded`), entry for entry the
values the variant's own unmasked MLP draws. :func:`slice_mlp` cuts a variant's trained parameters back to
its own network.

**When to mix** (``engine.Options(mix_architectures=...)``, ``[sweep] mix_architectures``): ``True`` mixes
every eligible set of variants, ``False`` never (one group per ``hidden`` list, as before), ``"auto"`` (the
default) mixes when the padded program's FLOPs per step are at most :data:`FLOP_FACTOR` (2) times the sum of
the real ones: ``V * macs(padded) <= 2 * sum_i macs(hidden_i)``, with :func:`mlp_macs` the per-example
multiply-accumulates of an MLP (:func:`worth_mixing`). Otherwise the variants split by ``hidden`` as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

#: Values of the ``mix_architectures`` option.
MIX_CHOICES: tuple[Any, ...] = ("auto", True, False)
#: ``"auto"`` mixes when the padded program costs at most this many times the real programs' FLOPs.
FLOP_FACTOR = 2.0


def check_mix(value: Any) -> str | bool:
    """A valid ``mix_architectures`` value (``"auto"``, ``True`` or ``False``), else a ``ValueError``."""
    if isinstance(value, bool | np.bool_) or value == "auto":
        return value if value == "auto" else bool(value)
    raise ValueError(f"mix_architectures = {value!r}: use 'auto', true or false")


def padded(hiddens: Sequence[Sequence[int]]) -> tuple[int, ...]:
    """The padded ``hidden`` of several MLPs: as many layers as the deepest, each as wide as the widest layer
    of any of them, e.g. ``[(16,), (32, 8)] -> (32, 32)``."""
    depth = max(len(h) for h in hiddens)
    width = max(max(h) for h in hiddens)
    return (width,) * depth


def mlp_macs(hidden: Sequence[int], input_dim: int, output_dim: int) -> int:
    """Multiply-accumulates of one example through an MLP ``input_dim -> hidden... -> output_dim``."""
    sizes = (input_dim, *hidden, output_dim)
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))


def worth_mixing(hiddens: Sequence[Sequence[int]], input_dim: int, output_dim: int,
                 factor: float = FLOP_FACTOR) -> bool:
    """The ``"auto"`` rule: mix the variants (one ``hidden`` list each) when ``V * macs(padded)`` is at most
    ``factor`` times ``sum(macs(hidden_i))``."""
    pad = mlp_macs(padded(hiddens), input_dim, output_dim)
    real = sum(mlp_macs(h, input_dim, output_dim) for h in hiddens)
    return len(hiddens) * pad <= factor * real


def widths(hidden: Sequence[int], depth: int) -> np.ndarray:
    """A variant's layer sizes as data: int32 [depth], ``hidden`` then zeros."""
    out = np.zeros(depth, np.int32)
    out[: len(hidden)] = hidden
    return out


def depth_of(sizes: jax.Array) -> jax.Array:
    """The number of real layers of a variant whose ``widths`` are ``sizes`` [L] (traced int32 scalar)."""
    return jnp.sum(sizes > 0).astype(jnp.int32)


def units(n: jax.Array | int, size: int) -> jax.Array:
    """The mask of a layer's first ``n`` units among ``size``: bool [size]."""
    return jnp.arange(size) < n


def own_layers(values: jax.Array, depth: jax.Array) -> jax.Array:
    """Per-layer values of a padded model [L + 1] (hidden layers, then the output layer) as a variant of
    ``depth`` real layers reports them: its hidden layers, its output layer, then NaN (as a shallower group's
    history is padded). Returns [L + 1]."""
    n = values.shape[-1] - 1
    pos = jnp.arange(n + 1)
    picked = values[jnp.where(pos < depth, pos, n)]
    return jnp.where(pos <= depth, picked, jnp.nan).astype(values.dtype)


def layer_names(hidden: Sequence[int], names: Sequence[str]) -> list[str]:
    """A variant's own layer names from its padded group's ``names`` (hidden layers, then the output)."""
    return [*names[: len(hidden)], names[-1]]


def slice_mlp(params: Mapping[str, Any], hidden: Sequence[int], names: Sequence[str]) -> dict[str, Any]:
    """A variant's parameters cut from its padded MLP's: ``names`` are the padded model's layers (hidden, then
    the output); layer ``l`` keeps ``kernel[:n_{l-1}, :n_l]`` and ``bias[:n_l]``, layers past ``len(hidden)``
    are dropped, the output keeps ``kernel[:n_last]``. Returns the tree a plain MLP of ``hidden`` takes."""
    out: dict[str, Any] = {}
    rows = None  # the input layer keeps every input
    for name, n in zip(names[: len(hidden)], hidden, strict=True):
        p = params[name]
        out[name] = {"kernel": p["kernel"][:rows, :n], "bias": p["bias"][:n]}
        rows = n
    last = params[names[-1]]
    out[names[-1]] = {"kernel": last["kernel"][:rows], "bias": last["bias"]}
    return out
