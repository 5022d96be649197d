"""Architectures as data: built-in models whose sizes differ train in ONE compiled program.

Variants whose static keys differ only in ``hidden`` can form one static group whose program holds the
**padded** architecture (:func:`padded`), each variant masked to its own sizes:

* an MLP (``kind = "mlp"``) or RNN (``kind = "rnn"``, any cell): ``hidden`` lists of any widths and lengths;
  the padded model is as deep as the deepest variant, every hidden layer as wide as the widest layer of any
  variant. A layer past a variant's depth passes its input through unchanged and the output layer reads the
  last real layer;
* a CNN (``kind = "cnn"``): channel lists of the same length (pooling changes the map's size after every
  conv block, so a block cannot be skipped); each conv block is as wide as that block's widest variant. The
  dense head (``dense``) is shared.

Each variant carries its own sizes as data, ``hp["widths"]`` (int32 [L], 0 past its depth, :func:`widths`);
every layer's kernel is masked (in-mask x out-mask) and its bias to the variant's own units, and a
recurrent layer's state is kept at zero past them. Padded entries are exactly zero from initialization on
and receive zero gradients, so every optimizer's state stays zero there; L2, weight decay and a global-norm
clip see zeros only. Initialization is the variant's own architecture's (the real fan-in / fan-out,
:func:`jaxnets.initializers.embedded`), entry for entry the values the variant's own unmasked model draws.
:func:`slice_params` cuts a variant's trained parameters back to its own network.

**When to mix** (``engine.Options(mix_architectures=...)``, ``[sweep] mix_architectures``): ``True`` mixes
every eligible set of variants, ``False`` never (one group per ``hidden`` list), ``"auto"`` (the default)
when ONE padded program is estimated to cost less than one program per architecture
(:func:`worth_mixing`). The estimate counts multiply-accumulates (:func:`macs`) and compilations: a
compilation costs :attr:`jaxnets.engine.Tuning.compile_macs` multiply-accumulates of training on the
platform (a constant per platform, never a timing), and the work is every variant's training steps
(forward + backward: 3 forward passes per example) and evaluations (the validation split forward, the
evaluation's training examples forward and backward)::

    mixed = compile_macs + V * macs(padded) * examples
    split = K * compile_macs + sum_i macs(hidden_i) * examples      (K architectures)
    examples = 3 * steps * batch_size + n_evals * (n_val + 3 * n_eval_train)

Mixing is chosen when ``mixed <= split``: many short runs mix (compilations dominate), long runs of very
different sizes split (padding dominates).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

#: Values of the ``mix_architectures`` option.
MIX_CHOICES: tuple[Any, ...] = ("auto", True, False)
#: The built-in model kinds whose sizes mix.
KINDS: tuple[str, ...] = ("mlp", "rnn", "cnn")
#: Gates per recurrent cell kind (input and recurrent kernels per step).
GATES: dict[str, int] = {"simple": 1, "gru": 3, "lstm": 4}


def check_mix(value: Any) -> str | bool:
    """A valid ``mix_architectures`` value (``"auto"``, ``True`` or ``False``), else a ``ValueError``."""
    if isinstance(value, bool | np.bool_) or value == "auto":
        return value if value == "auto" else bool(value)
    raise ValueError(f"mix_architectures = {value!r}: use 'auto', true or false")


def padded(hiddens: Sequence[Sequence[int]], kind: str = "mlp") -> tuple[int, ...]:
    """The padded ``hidden`` of several models of ``kind``: for an MLP or RNN as many layers as the deepest,
    each as wide as the widest layer of any of them (``[(16,), (32, 8)] -> (32, 32)``); for a CNN (lists of
    one length) each conv block's widest (``[(8, 32), (16, 16)] -> (16, 32)``)."""
    if not depth_varies(kind):
        return tuple(int(max(c)) for c in zip(*hiddens, strict=True))
    depth = max(len(h) for h in hiddens)
    width = max(max(h) for h in hiddens)
    return (width,) * depth


def depth_varies(kind: str) -> bool:
    """Whether a mixed group of ``kind`` may hold variants of different depths: an MLP's or RNN's may (a layer
    past a variant's depth passes its input through), a CNN's may not (each block's pooling changes the map)."""
    return kind != "cnn"


def mix_key(kind: str, hidden: Sequence[int]) -> tuple:
    """What must agree for two variants of ``kind`` (otherwise equal) to mix: nothing for an MLP or RNN, the
    number of conv blocks for a CNN (:func:`depth_varies`)."""
    return () if depth_varies(kind) else (len(hidden),)


def mlp_macs(hidden: Sequence[int], input_dim: int, output_dim: int) -> int:
    """Multiply-accumulates of one example through an MLP ``input_dim -> hidden... -> output_dim``."""
    sizes = (input_dim, *hidden, output_dim)
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))


def macs(row: Mapping[str, Any], input_shape: Sequence[int], output_dim: int, hidden: Sequence[int] | None = None,
         many_to_many: bool = False) -> int:
    """Forward multiply-accumulates of one example through the built-in model of ``row`` (its ``kind``,
    ``hidden``, ``dense``, ``cell``; ``hidden`` overrides the row's) on inputs of ``input_shape`` (one example).

    MLP: ``sum d_in * d_out``; CNN: ``h * w * 9 * c_in * c_out`` per 3x3 conv block (the map halves after
    each pooled block), then the dense head; RNN: ``T * gates * H * (F + H)`` per layer, then the output
    layer (at every step when ``many_to_many``)."""
    hidden = tuple(row["hidden"] if hidden is None else hidden)
    kind = row["kind"]
    if kind == "cnn":
        h, w, c = input_shape
        total = 0
        for ch in hidden:
            total += h * w * 9 * c * ch
            c = ch
            if min(h, w) >= 2:
                h, w = h // 2, w // 2
        return total + mlp_macs(tuple(row["dense"]), h * w * c, output_dim)
    if kind == "rnn":
        t, f = input_shape
        total = 0
        for width in hidden:
            total += t * GATES[row["cell"]] * width * (f + width)
            f = width
        return total + f * output_dim * (t if many_to_many else 1)
    return mlp_macs(hidden, math.prod(input_shape), output_dim)


@dataclasses.dataclass(frozen=True)
class Costs:
    """What the ``"auto"`` rule (:func:`worth_mixing`) knows of a call: the data's shapes and sizes and the
    platform's price of a compilation.

    Attributes:
      input_shape: one example's shape.
      output_dim: the model's outputs.
      n_val: validation examples (each evaluation runs them forward).
      n_eval_train: training examples each evaluation differentiates (diagnostics).
      compile_macs: one compilation's cost in multiply-accumulates of training
        (:attr:`jaxnets.engine.Tuning.compile_macs`).
      many_to_many: an RNN's outputs at every step.
    """

    input_shape: tuple[int, ...]
    output_dim: int
    n_val: int
    n_eval_train: int
    compile_macs: float
    many_to_many: bool = False

    def examples(self, row: Mapping[str, Any]) -> float:
        """Forward passes of one example that training ``row`` costs: ``3 * steps * batch_size`` (forward +
        backward) plus ``n_evals * (n_val + 3 * n_eval_train)``."""
        n_evals = -(-int(row["steps"]) // int(row["eval_every"])) + 1
        return 3.0 * row["steps"] * row["batch_size"] + n_evals * (self.n_val + 3.0 * self.n_eval_train)


def plan_costs(rows: Sequence[Mapping[str, Any]], costs: Costs) -> tuple[float, float]:
    """``(mixed, split)``: the estimated multiply-accumulates, compilations included, of training ``rows``
    (variants equal but for ``hidden``) in one padded program and in one program per architecture."""
    kind = rows[0]["kind"]
    hiddens = [tuple(r["hidden"]) for r in rows]
    pad = padded(hiddens, kind)
    examples = costs.examples(rows[0])
    own = {h: macs(rows[0], costs.input_shape, costs.output_dim, h, costs.many_to_many) for h in set(hiddens)}
    work_pad = len(rows) * macs(rows[0], costs.input_shape, costs.output_dim, pad, costs.many_to_many) * examples
    work_own = sum(own[h] for h in hiddens) * examples
    return costs.compile_macs + work_pad, len(own) * costs.compile_macs + work_own


def worth_mixing(rows: Sequence[Mapping[str, Any]], costs: Costs) -> bool:
    """The ``"auto"`` rule: mix ``rows`` (normalized variants whose static keys differ only in ``hidden``) when
    one padded program costs at most one program per architecture (:func:`plan_costs`)."""
    mixed, split = plan_costs(rows, costs)
    return mixed <= split


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


def layer_names(hidden: Sequence[int], names: Sequence[str], kind: str = "mlp") -> list[str]:
    """A variant's own layer names from its padded group's ``names`` (hidden layers, then the output; a CNN's
    variants share every layer)."""
    return [*names[: len(hidden)], names[-1]] if depth_varies(kind) else list(names)


def slice_params(kind: str, params: Mapping[str, Any], hidden: Sequence[int], names: Sequence[str]
                 ) -> dict[str, Any]:
    """A variant's parameters cut from its padded model's (``kind``: ``"mlp"``, ``"rnn"`` or ``"cnn"``;
    ``names``: the padded model's layers in order, the output last): the tree a plain model of the variant's
    own ``hidden`` takes (:func:`slice_mlp`, :func:`slice_rnn`, :func:`slice_cnn`)."""
    return {"mlp": slice_mlp, "rnn": slice_rnn, "cnn": slice_cnn}[kind](params, hidden, names)


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


def slice_rnn(params: Mapping[str, Any], hidden: Sequence[int], names: Sequence[str]) -> dict[str, Any]:
    """A variant's parameters cut from its padded RNN's: layer ``l``'s input kernels (``i*``) keep
    ``[:n_{l-1}, :n_l]``, its recurrent kernels (``h*``) ``[:n_l, :n_l]``, its biases ``[:n_l]``; layers past
    ``len(hidden)`` are dropped and the output keeps ``kernel[:n_last]``."""
    out: dict[str, Any] = {}
    rows = None  # the first layer keeps every input feature
    for name, n in zip(names[: len(hidden)], hidden, strict=True):
        cell = {}
        for gate, p in params[name]["cell"].items():
            cut = (slice(rows), slice(n)) if gate.startswith("i") else (slice(n), slice(n))
            cell[gate] = {k: v[cut] if k == "kernel" else v[:n] for k, v in p.items()}
        out[name] = {"cell": cell}
        rows = n
    last = params[names[-1]]
    out[names[-1]] = {"kernel": last["kernel"][:rows], "bias": last["bias"]}
    return out


def slice_cnn(params: Mapping[str, Any], hidden: Sequence[int], names: Sequence[str]) -> dict[str, Any]:
    """A variant's parameters cut from its padded CNN's: conv block ``l`` keeps ``kernel[:, :, :c_{l-1}, :c_l]``
    and ``bias[:c_l]``; the first dense layer after the blocks keeps, at every position of the flattened map,
    the rows of the last block's real channels; the rest of the dense head is shared, kept whole."""
    out: dict[str, Any] = {}
    rows = None  # the first block keeps every input channel
    for name, c in zip(names[: len(hidden)], hidden, strict=True):
        p = params[name]
        out[name] = {"kernel": p["kernel"][:, :, :rows, :c], "bias": p["bias"][:c]}
        rows = c
    first, *rest = names[len(hidden):]
    kernel = params[first]["kernel"]
    channels = params[names[len(hidden) - 1]]["kernel"].shape[-1]
    positions = kernel.shape[0] // channels
    kernel = kernel.reshape(positions, channels, kernel.shape[1])[:, :rows].reshape(-1, kernel.shape[1])
    out[first] = {"kernel": kernel, "bias": params[first]["bias"]}
    out |= {name: dict(params[name]) for name in rest}
    return out
