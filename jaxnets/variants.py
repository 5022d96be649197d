"""Variants are data: validate rows of hyperparameters, split them into static groups, stack the rest.

A *variant* is a flat mapping of named hyperparameters (missing keys take :data:`DEFAULTS`). Keys are either

* **static** (:data:`STATIC_KEYS`): they change shapes or the program — model kind, layer sizes, cell,
  optimizer kind, loss, batch size, number of steps, evaluation period, early-stopping patience
  (``early_stopping_patience``), the learning-rate schedule's kind (``schedule``), how minibatches are drawn
  (``sampling``). Variants with equal static keys form one :class:`Group`, compiled once; or
* **vmapped** (:data:`VMAPPED_KEYS`): activation, initializer, init scale, learning rate, momentum / betas /
  rho, weight decay, L2, dropout, clipping norm, divergence factor, seed, and the schedule's numbers
  (``warmup_steps``, ``decay_steps``, ``end_factor``, ``decay_rate``: :mod:`jaxnets.schedules`). Inside a
  group they become arrays with a leading variant axis (:func:`stack`), so any mix of activations and
  initializers shares one program.

Everything is checked here, eagerly, before any compute: unknown keys, unknown names, wrong types, values out
of range, an empty list.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxnets import activations, architectures, initializers, losses, optimizers, schedules
from jaxnets.models import CELLS, KINDS

STATIC_KEYS: tuple[str, ...] = (
    "kind", "hidden", "dense", "cell", "norm", "optimizer", "loss", "batch_size", "steps", "eval_every",
    "early_stopping_patience", "shared_data", "data_seed", "schedule", "sampling",
)
VMAPPED_KEYS: tuple[str, ...] = (
    "activation", "init", "init_scale", "learning_rate", "momentum", "b1", "b2", "rho",
    "weight_decay", "l2", "dropout", "clip_norm", "divergence_factor", "seed", *schedules.KEYS,
)

#: Values of the static ``sampling`` key: how a step's minibatch is drawn (see :mod:`jaxnets.engine.steps`).
#: ``epoch``: each epoch a fresh permutation of the training split, the last partial batch dropped;
#: ``replacement``: ``batch_size`` indices uniformly with replacement, step by step.
SAMPLINGS: tuple[str, ...] = ("epoch", "replacement")

#: Default ``divergence_factor``: a variant whose evaluation-time training loss exceeds this many times its
#: loss at evaluation 0 is marked ``diverged`` and frozen, like one whose loss became NaN / Inf.
DIVERGENCE_FACTOR = 1000.0

DEFAULTS: dict[str, Any] = {
    "kind": "mlp",
    "hidden": (64, 64),
    "dense": (),
    "cell": "lstm",
    "norm": "none",
    "optimizer": "adam",
    "loss": None,  # None: the data set's default loss
    "batch_size": 128,
    "steps": 1000,
    "eval_every": 50,
    "early_stopping_patience": 0,
    "shared_data": False,  # True: every variant of a group sees the same minibatches (drawn from data_seed)
    "data_seed": 0,
    "schedule": "constant",  # the learning-rate schedule (jaxnets.schedules)
    "sampling": "epoch",
    "activation": "relu",
    "init": "glorot_uniform",
    "init_scale": 1.0,
    **optimizers.DEFAULTS,  # learning_rate, momentum, b1, b2, rho, weight_decay, clip_norm
    "l2": 0.0,
    "dropout": 0.0,
    "divergence_factor": DIVERGENCE_FACTOR,
    "seed": 0,
    **schedules.DEFAULTS,  # warmup_steps, decay_steps (None: steps), end_factor, decay_rate
}
KEYS: tuple[str, ...] = STATIC_KEYS + VMAPPED_KEYS

#: Values of the static ``norm`` key (the built-in MLP and CNN): no normalization, LayerNorm or BatchNorm
#: after each hidden layer's linear part, before its activation.
NORMS: tuple[str, ...] = ("none", "layer", "batch")
#: The prefix of a ``kind`` / ``optimizer`` trained by your own factory (``custom:<factory name>``).
CUSTOM = "custom:"
#: How a declared user key is treated (``extra_keys={"temperature": "vmapped", "width": "static"}``).
EXTRA_KINDS: tuple[str, ...] = ("vmapped", "static")


def check_extra_keys(extra_keys: Mapping[str, str] | None) -> dict[str, str]:
    """Check a declaration of user keys ``{name: "vmapped" | "static"}``; return it as a dict.

    Raises:
      ValueError: a name that is already a jaxnets key, or a kind other than :data:`EXTRA_KINDS`.
    """
    out = dict(extra_keys or {})
    for name, kind in out.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"extra_keys: {name!r} is not a valid key name (use a Python identifier)")
        if name in KEYS:
            raise ValueError(f"extra_keys: {name!r} is already a jaxnets key; declare only keys of your own")
        if kind not in EXTRA_KINDS:
            raise ValueError(f"extra_keys: {name!r} = {kind!r}; the kind must be one of {', '.join(EXTRA_KINDS)}")
    return out

_POSITIVE_INT = ("batch_size", "steps", "eval_every")
_NONNEGATIVE_FLOAT = ("init_scale", "weight_decay", "l2", "divergence_factor", "end_factor")
_POSITIVE_FLOAT = ("learning_rate", "clip_norm", "decay_rate")
_UNIT_FLOAT = ("momentum", "b1", "b2", "rho")  # in [0, 1)
_INFINITE_OK = ("clip_norm", "divergence_factor")  # inf: no clipping (the default) / never a blow-up
_INT_LIMITS = {**dict.fromkeys(_POSITIVE_INT + ("early_stopping_patience", "warmup_steps", "decay_steps"), 2**31 - 1),
               "seed": 2**32 - 1, "data_seed": 2**32 - 1}


class VariantError(ValueError):
    """A variant (or the data it meets) that cannot be trained, found before any compute.

    Attributes:
      index: the offending variant's position in the caller's list (the first one, when several share the
        problem).
      reason: what is wrong, without the variant prefix (e.g. ``"learning_rate must be > 0, got -1.0"``).
      indices: every variant with the problem (a whole static group for a data mismatch).
    """

    def __init__(self, index: int, reason: str, indices: Sequence[int] | None = None):
        self.index = int(index)
        self.reason = reason
        self.indices = tuple(int(i) for i in (indices if indices is not None else (index,)))
        if len(self.indices) == 1:
            where = f"variant {self.index}"
        else:
            shown = ", ".join(map(str, self.indices[:8])) + (", ..." if len(self.indices) > 8 else "")
            where = f"variant(s) {shown}"
        super().__init__(f"{where}: {reason}")


class UnusedKeyWarning(UserWarning):
    """A key that differs between the variants of a static group but never reaches its program: they train
    alike in that respect (e.g. activations swept while your model never calls ``hp.activation``).

    Attributes:
      key: the key.
      indices: the variants of the group (positions in the caller's list).
      reason: what does not read it and how to make it count.
    """

    def __init__(self, key: str, indices: Sequence[int], reason: str):
        self.key, self.indices, self.reason = key, tuple(int(i) for i in indices), reason
        shown = ", ".join(map(str, self.indices[:8])) + (", ..." if len(self.indices) > 8 else "")
        super().__init__(f"variant(s) {shown}: {key} differs between them but {reason}")


def _fail(i: int, msg: str) -> None:
    raise VariantError(i, msg)


def _as_sizes(i: int, key: str, value: Any, allow_empty: bool) -> tuple[int, ...]:
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        value = (value,)
    if not isinstance(value, Sequence) or isinstance(value, str):
        _fail(i, f"{key} must be a list of positive integers, got {value!r}")
    sizes = tuple(value)
    if not all(isinstance(s, int | np.integer) and not isinstance(s, bool) and s > 0 for s in sizes):
        _fail(i, f"{key} must be a list of positive integers, got {value!r}")
    if not sizes and not allow_empty:
        _fail(i, f"{key} must not be empty")
    return tuple(int(s) for s in sizes)


def _number(i: int, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        _fail(i, f"{key} must be a number, got {value!r}")
    if math.isnan(value):
        _fail(i, f"{key} is NaN")
    if math.isinf(value) and key not in _INFINITE_OK:
        _fail(i, f"{key} must be finite, got {value}")
    return float(value)


def _check_keys(variant: Mapping[str, Any], i: int, extra: Mapping[str, str]) -> None:
    """Reject unknown keys, and declared user keys that are missing or of the wrong kind of value."""
    unknown = sorted(set(variant) - set(KEYS) - set(extra))
    if unknown:
        hint = "; declare your own keys with extra_keys={name: 'vmapped' | 'static'}" if not extra else ""
        _fail(i, f"unknown key(s) {unknown}; valid keys: {', '.join(KEYS + tuple(extra))}{hint}")
    for key, kind in extra.items():
        if key not in variant:
            _fail(i, f"declared key {key!r} is missing")
        if kind == "vmapped":
            _number(i, key, variant[key])
        else:
            try:
                hash(variant[key])
            except TypeError:
                _fail(i, f"static key {key!r} must be hashable (e.g. a tuple, not a list), got {variant[key]!r}")


def _check_own(row: dict[str, Any], i: int, own: Sequence[str]) -> None:
    """A row marked as trained with your own model / optimizer (``kind`` / ``optimizer`` = ``custom:<name>``,
    as :class:`jaxnets.result.Result` rows are) needs that factory again."""
    for key, what in (("kind", "model"), ("optimizer", "optimizer")):
        value = row[key]
        if isinstance(value, str) and value.startswith(CUSTOM) and what not in own:
            _fail(i, f"{key} = {value!r}: this variant was trained with your own {what} factory; pass it again "
                     f"({what}=...): jaxnets builds only its built-in {what}s from a row")


def _check_names(row: dict[str, Any], i: int) -> None:
    """Check the named choices (kind, cell, norm, loss, optimizer, activation, init); canonicalize init."""
    try:
        if row["kind"].startswith(CUSTOM):
            pass
        elif row["kind"] not in KINDS:
            raise ValueError(f"unknown model kind {row['kind']!r}; valid kinds: {', '.join(KINDS)}")
        if row["cell"] not in CELLS:
            raise ValueError(f"unknown RNN cell {row['cell']!r}; valid cells: {', '.join(CELLS)}")
        if row["norm"] not in NORMS:
            raise ValueError(f"unknown norm {row['norm']!r}; valid norms: {', '.join(NORMS)}")
        if row["norm"] != "none" and row["kind"] == "rnn":
            raise ValueError(f"norm = {row['norm']!r} applies to kinds mlp and cnn, not rnn")
        if row["loss"] is None:
            raise ValueError(f"no loss given; valid losses: {', '.join(losses.NAMES)}")
        losses.get(row["loss"])
        if not (isinstance(row["optimizer"], str) and row["optimizer"].startswith(CUSTOM)):
            optimizers.canonical(row["optimizer"])
        schedules.canonical(row["schedule"])
        if row["sampling"] not in SAMPLINGS:
            raise ValueError(f"unknown sampling {row['sampling']!r}; valid: {', '.join(SAMPLINGS)}")
        activations.canonical(row["activation"])
        row["init"] = initializers.canonical(row["init"])
    except ValueError as e:
        _fail(i, str(e))


def _check_integers(row: dict[str, Any], i: int) -> None:
    """Check the integer keys (types, then ranges) and store them as Python ints."""
    if row["decay_steps"] is None:
        row["decay_steps"] = row["steps"]
    for key in _POSITIVE_INT + ("early_stopping_patience", "seed", "data_seed", "warmup_steps", "decay_steps"):
        v = row[key]
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            _fail(i, f"{key} must be an integer, got {v!r}")
        row[key] = int(v)
    for key in _POSITIVE_INT + ("decay_steps",):
        if row[key] <= 0:
            _fail(i, f"{key} must be positive, got {row[key]}")
    for key in ("early_stopping_patience", "seed", "data_seed", "warmup_steps"):
        if row[key] < 0:
            _fail(i, f"{key} must be >= 0, got {row[key]}")
    for key, limit in _INT_LIMITS.items():  # what the compiled programs hold: int32 step counts, uint32 seeds
        if row[key] > limit:
            _fail(i, f"{key} must be at most {limit:,}, got {row[key]:,}")


def _check_floats(row: dict[str, Any], i: int) -> None:
    """Check the float keys (numbers, then ranges) and store them as Python floats."""
    for key in _NONNEGATIVE_FLOAT + _POSITIVE_FLOAT + _UNIT_FLOAT + ("dropout",):
        row[key] = _number(i, key, row[key])
    for key in _NONNEGATIVE_FLOAT:
        if row[key] < 0:
            _fail(i, f"{key} must be >= 0, got {row[key]}")
    for key in _POSITIVE_FLOAT:
        if not row[key] > 0:
            _fail(i, f"{key} must be > 0, got {row[key]}")
    for key in _UNIT_FLOAT:
        if not 0 <= row[key] < 1:
            _fail(i, f"{key} must be in [0, 1), got {row[key]}")
    if not 0 <= row["dropout"] < 1:
        _fail(i, f"dropout must be in [0, 1), got {row['dropout']}")


def _check_schedule(row: dict[str, Any], variant: Mapping[str, Any], i: int) -> None:
    """Refuse a schedule number its schedule does not read (it would change nothing) and a warmup that does
    not end before the decay does."""
    reads = schedules.READS[row["schedule"]]
    for key in schedules.KEYS:
        default = row["steps"] if key == "decay_steps" else schedules.DEFAULTS[key]
        if key in variant and key not in reads and variant[key] not in (None, default):
            what = f"it reads {', '.join(reads)}" if reads else "it reads none"
            _fail(i, f"{key} = {variant[key]!r} has no effect with schedule = {row['schedule']!r} ({what}); "
                     f"remove it or pick a schedule that reads it ({', '.join(schedules.NAMES)})")
    if row["schedule"] == "warmup_cosine" and row["decay_steps"] <= row["warmup_steps"]:
        _fail(i, f"decay_steps ({row['decay_steps']}) must exceed warmup_steps ({row['warmup_steps']}) with "
                 "schedule = 'warmup_cosine' (decay_steps counts the warmup too; default: steps)")


def normalize(variant: Mapping[str, Any], i: int = 0, default_loss: str | None = None,
              extra_keys: Mapping[str, str] | None = None, own: Sequence[str] = ()) -> dict[str, Any]:
    """Check one variant and fill in defaults; return a new dict with canonical names and Python types.

    Args:
      variant: the variant's hyperparameters (missing keys take :data:`DEFAULTS`).
      i: its index in the caller's list (named in errors).
      default_loss: replaces a missing / ``None`` loss (usually the data set's default).
      extra_keys: declared user keys (see :func:`check_extra_keys`): a ``"vmapped"`` one must be a number
        (it becomes a float32 [V] array), a ``"static"`` one any hashable value (it splits static groups);
        a declared key missing from the row is an error.
      own: ``"model"`` / ``"optimizer"`` when your own factory trains the row: a ``kind`` / ``optimizer`` of
        ``custom:<name>`` (what :class:`jaxnets.result.Result` rows say) is then accepted; without the
        factory it is an error naming the fix.

    Returns:
      a new dict with every key of :data:`KEYS`.

    Raises:
      VariantError: naming the variant index ``i`` and the problem (unknown key or name, bad type or range).
      TypeError: ``variant`` is not a mapping.
    """
    if not isinstance(variant, Mapping):
        raise TypeError(f"variant {i}: expected a mapping of hyperparameters, got {type(variant).__name__}")
    extra = dict(extra_keys or {})
    _check_keys(variant, i, extra)
    row = {**DEFAULTS, **variant}
    if row["loss"] is None:
        row["loss"] = default_loss
    if not isinstance(row["kind"], str):
        _fail(i, f"kind must be a name, got {row['kind']!r}")
    _check_own(row, i, own)
    _check_names(row, i)
    row["hidden"] = _as_sizes(i, "hidden", row["hidden"], allow_empty=row["kind"] != "cnn" and row["kind"] != "rnn")
    row["dense"] = _as_sizes(i, "dense", row["dense"], allow_empty=True)
    if not isinstance(row["shared_data"], bool | np.bool_):
        _fail(i, f"shared_data must be true or false, got {row['shared_data']!r}")
    row["shared_data"] = bool(row["shared_data"])
    _check_integers(row, i)
    _check_floats(row, i)
    _check_schedule(row, variant, i)
    return row


@dataclasses.dataclass(frozen=True)
class Coverage:
    """What every group's program is compiled for beyond its own variants, so that calls whose variants mix
    activations, initializers and stages differently (a Bayesian search's rounds) share one compiled program
    (``engine.Options(cover=...)``). It never changes a number: an activation or initializer no variant uses
    is a branch never taken, a stage no variant uses (dropout 0, L2 0, weight decay 0, no clipping) changes
    nothing. A covered group's blocks apply every activation to every variant (a select, no ordering of the
    variants by activation), so a call's mix of activations never changes the program.

    Attributes:
      activations: names every group's activation switch holds (as well as its own).
      initializers: names every group's initializer switch holds (as well as its own).
      dropout, l2, weight_decay, clip: keep that stage in every group's program.
    """

    activations: tuple[str, ...] = ()
    initializers: tuple[str, ...] = ()
    dropout: bool = False
    l2: bool = False
    weight_decay: bool = False
    clip: bool = False

    def __post_init__(self) -> None:  # unknown names: a ValueError listing the valid ones
        object.__setattr__(self, "activations", tuple(activations.canonical(n) for n in self.activations))
        object.__setattr__(self, "initializers", tuple(initializers.canonical(n) for n in self.initializers))


@dataclasses.dataclass(frozen=True)
class GroupSpec:
    """The static part of a group: everything that changes the compiled program.

    ``activations`` / ``initializers``: the names used in the group, in registry order; per-variant ids
    index these tuples. ``use_*`` flags drop a stage that no variant of the group uses (dropout, L2,
    weight decay, clipping), which saves work without changing any number. ``static_extra``: the declared
    static user keys and their values; ``vmapped_extra``: the declared vmapped user keys. ``covered``: the
    group was compiled for a :class:`Coverage` (its blocks then apply every activation to every variant).
    """

    kind: str
    hidden: tuple[int, ...]
    dense: tuple[int, ...]
    cell: str
    norm: str
    optimizer: str
    loss: str
    batch_size: int
    steps: int
    eval_every: int
    early_stopping_patience: int
    shared_data: bool
    data_seed: int
    schedule: str
    sampling: str
    activations: tuple[str, ...]
    initializers: tuple[str, ...]
    use_dropout: bool
    use_l2: bool
    use_weight_decay: bool
    use_clip: bool
    static_extra: tuple[tuple[str, Any], ...] = ()
    vmapped_extra: tuple[str, ...] = ()
    architectures: tuple[tuple[int, ...], ...] = ()
    covered: bool = False

    @property
    def mixed(self) -> bool:
        """Whether the group mixes architectures (:mod:`jaxnets.architectures`): then ``hidden`` is the padded
        architecture, ``architectures`` the variants' own ``hidden`` lists (in order of first appearance), and
        each variant's sizes are ``hp["widths"]``."""
        return bool(self.architectures)

    @property
    def n_evals(self) -> int:
        """Evaluations per run: one at step 0, then every ``eval_every`` steps up to ``steps``."""
        return -(-self.steps // self.eval_every) + 1

    @property
    def eval_steps(self) -> np.ndarray:
        """The step of each evaluation, [n_evals] int (the last one is ``steps``)."""
        return np.minimum(np.arange(self.n_evals) * self.eval_every, self.steps)


@dataclasses.dataclass(frozen=True)
class Group:
    """Variants sharing a :class:`GroupSpec`: ``indices`` into the caller's list, and their rows."""

    spec: GroupSpec
    indices: tuple[int, ...]
    rows: tuple[dict[str, Any], ...]


def _mixable(rows: Sequence[Mapping[str, Any]]) -> bool:
    """Whether variants may mix architectures: a built-in MLP, RNN or CNN without normalization (its
    statistics would count the padding), every hidden list non-empty."""
    return all(r["kind"] in architectures.KINDS and r["norm"] == "none" and r["hidden"] for r in rows)


def _buckets(rows: Sequence[Mapping[str, Any]], static_extra: tuple[str, ...], mix: str | bool,
             costs: architectures.Costs | None) -> list[tuple[list[int], tuple[tuple[int, ...], ...]]]:
    """Variants by static key: ``(indices, architectures)`` per group, ``architectures`` non-empty where a
    bucket of variants differing only in ``hidden`` mixes (see :mod:`jaxnets.architectures`)."""
    keys = STATIC_KEYS + static_extra
    exact: dict[tuple, list[int]] = {}
    for i, row in enumerate(rows):
        exact.setdefault(tuple(row[k] for k in keys), []).append(i)
    if mix is False:
        return [(idx, ()) for idx in exact.values()]
    h = keys.index("hidden")
    loose: dict[tuple, list[tuple]] = {}
    for key in exact:
        kind = rows[exact[key][0]]["kind"]
        loose.setdefault(key[:h] + key[h + 1:] + architectures.mix_key(kind, key[h]), []).append(key)
    out: dict[tuple, tuple[list[int], tuple]] = {}
    for members in loose.values():
        idx = sorted(i for key in members for i in exact[key])
        hiddens = [key[h] for key in members]
        eligible = len(members) > 1 and _mixable([rows[i] for i in idx])
        if eligible and (mix is True or architectures.worth_mixing([rows[i] for i in idx], costs)):
            out[members[0]] = (idx, tuple(hiddens))
        else:
            out |= {key: (exact[key], ()) for key in members}
    return [out[key] for key in exact if key in out]


def group(rows: Sequence[Mapping[str, Any]], extra_keys: Mapping[str, str] | None = None, *,
          mix: str | bool = False, costs: architectures.Costs | None = None, cover: Coverage | None = None
          ) -> list[Group]:
    """Split normalized rows into static groups (static keys and declared static user keys), in order of
    first appearance.

    Args:
      rows: normalized rows (:func:`normalize`).
      extra_keys: declared user keys.
      mix: ``mix_architectures`` (:mod:`jaxnets.architectures`): ``True`` puts built-in MLP / RNN / CNN
        variants whose static keys differ only in ``hidden`` (for a CNN: in channels, not in their number) in
        one group at the padded architecture, ``"auto"`` does so when
        :func:`jaxnets.architectures.worth_mixing` says it pays, ``False`` never (the default here).
      costs: the call's :class:`jaxnets.architectures.Costs`, for ``mix="auto"``.
      cover: what every group is compiled for beyond its own variants (:class:`Coverage`).
    """
    mix = architectures.check_mix(mix)
    if mix == "auto" and costs is None:
        raise ValueError("group(mix='auto') needs the call's costs=architectures.Costs(...)")
    extra = dict(extra_keys or {})
    static_extra = tuple(k for k, kind in extra.items() if kind == "static")
    vmapped_extra = tuple(k for k, kind in extra.items() if kind == "vmapped")
    groups = []
    for idx, archs in _buckets(rows, static_extra, mix, costs):
        members = [rows[i] for i in idx]
        first = members[0]
        static = {k: first[k] for k in STATIC_KEYS}
        if archs:
            static["hidden"] = architectures.padded(archs, first["kind"])
        c = cover or Coverage()
        used = {r["activation"] for r in members} | set(c.activations)
        used_init = {r["init"] for r in members} | set(c.initializers)
        spec = GroupSpec(
            **static,
            activations=tuple(n for n in activations.NAMES if n in used),
            initializers=tuple(n for n in initializers.NAMES if n in used_init),
            use_dropout=c.dropout or any(r["dropout"] > 0 for r in members),
            use_l2=c.l2 or any(r["l2"] > 0 for r in members),
            use_weight_decay=c.weight_decay or any(r["weight_decay"] > 0 for r in members),
            use_clip=c.clip or any(math.isfinite(r["clip_norm"]) for r in members),
            static_extra=tuple((k, first[k]) for k in static_extra),
            vmapped_extra=vmapped_extra,
            architectures=archs,
            covered=cover is not None,
        )
        groups.append(Group(spec, tuple(idx), tuple(dict(r) for r in members)))
    return groups


def stack(spec: GroupSpec, rows: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """The vmapped keys of ``rows`` as arrays with a leading variant axis [V].

    ``activation`` and ``init`` become int32 ids into ``spec.activations`` / ``spec.initializers``;
    ``seed`` uint32; everything else (declared vmapped user keys included) float32. A group that mixes
    architectures (:attr:`GroupSpec.mixed`) adds ``widths``, int32 [V, L]: each variant's own layer sizes,
    0 past its depth (:func:`jaxnets.architectures.widths`).
    """
    out: dict[str, np.ndarray] = {
        "activation": np.array([spec.activations.index(r["activation"]) for r in rows], np.int32),
        "init": np.array([spec.initializers.index(r["init"]) for r in rows], np.int32),
        "seed": np.array([r["seed"] for r in rows], np.uint32),
    }
    for key in VMAPPED_KEYS + spec.vmapped_extra:
        if key not in out:
            out[key] = np.array([r[key] for r in rows], np.float32)
    if spec.mixed:
        depth = len(spec.hidden)
        out["widths"] = np.stack([architectures.widths(r["hidden"], depth) for r in rows]).reshape(len(rows), depth)
    return out
