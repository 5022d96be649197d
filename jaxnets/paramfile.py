"""Trained parameters on disk: one safetensors file per unit of a sweep (or per saved result).

A file holds every static group of its unit, each group's parameters *stacked* (one tensor per leaf of the
parameter tree, ``[V_group, ...]``), so 10^4 variants of a small MLP are a handful of tensors written in
seconds. Tensor names (``g<k>`` is the file's k-th static group)::

    g0/variant                      int64 [V_g]   the variants' ids (rows of results.csv / of the Result)
    g0/params/layer_00/dense/kernel float32 [V_g, ...]  one tensor per parameter leaf, its path joined by "/"
    g0/model_state/batch_stats/...  float32 [V_g, ...]  the model's other collections (BatchNorm statistics)
    data/x_mean, data/x_std         float64 [*input_shape]  the standardization of the inputs (if any)
    data/y_mean, data/y_std         float64 [output_dim]    the scaling of regression targets (if any)

The header's metadata holds ``format`` (``"jaxnets.params"``), ``version``, ``jaxnets`` (JSON: each group's
normalized rows, declared user keys, whether it used your own model factory, the parameter-tree paths with
their key types; the data set's shape and task) and ``sha256``: a SHA-256 over that JSON and every tensor's
name, dtype, shape and bytes, so *any* change after saving is detected; any failure to read a file is
damage (:class:`CorruptParamsError`), never a crash. :func:`encode` gives a file's bytes; they are written
to a temporary name, flushed and renamed into place (:func:`jaxnets.atomic.atomic_write`). Reading one
variant needs only safetensors and Flax (see the README)::

    with safe_open(path, framework="np") as f:
        j = list(f.get_tensor("g0/variant")).index(3)          # variant 3's position in group 0
        params = unflatten_dict({tuple(k.split("/")[2:]): f.get_slice(k)[j]
                                 for k in f.keys() if k.startswith("g0/params/")})
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxnets.standardize import DataInfo

__all__ = ["FORMAT", "SUFFIX", "SavedGroup", "Trained", "CorruptParamsError", "CorruptParamsWarning",
           "ParamsNotSavedWarning", "encode", "decode", "read", "of_groups"]

FORMAT = "jaxnets.params"
VERSION = "1"
SUFFIX = ".safetensors"


class CorruptParamsError(ValueError):
    """A parameters file is damaged (unreadable, inconsistent, or failing its checksum).

    Attributes:
      path: The file.
      reason: Why it is considered damaged, in a few words.
    """

    def __init__(self, path: str | Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"{self.path} is damaged ({reason})")


class CorruptParamsWarning(UserWarning):
    """:func:`jaxnets.load` skipped a damaged parameters file: its variants' parameters are unavailable.

    Attributes:
      path: The file.
      reason: Why it is considered damaged.
    """

    def __init__(self, path: str | Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"{self.path} is damaged ({reason}); its variants' parameters are unavailable (run the "
                         "same `jaxnets sweep` again to retrain them)")


class ParamsNotSavedWarning(UserWarning):
    """A unit's (or result's) parameters could not be saved (safetensors is not installed, or the parameter
    tree holds something a file cannot: a key with ``/``, an object in a row); its metrics are saved.

    Attributes:
      key: The unit's key.
      reason: Why, in a few words.
    """

    def __init__(self, key: str, reason: str):
        self.key, self.reason = key, " ".join(reason.split())
        super().__init__(f"the parameters of {key!r} are not saved: {self.reason}")


@dataclasses.dataclass
class SavedGroup:
    """One static group's trained variants.

    Attributes:
      variant: int64 [V_g], the variants' ids.
      rows: the variants' normalized rows (:func:`jaxnets.variants.normalize`).
      params: the parameter tree (nested dicts), every leaf [V_g, ...].
      model_state: the model's other collections (nested dicts, leaves [V_g, ...]); ``{}`` when none.
      extra_keys: the declared user keys, ``{name: "vmapped" | "static"}``.
      custom: the name of your own model factory, or ``None`` for the built-in models.
      nnx: whether the model is a ``flax.nnx`` one (its state is then NNX's pure dict, rng keys left out).
    """

    variant: np.ndarray
    rows: list[dict[str, Any]]
    params: Any
    model_state: Any
    extra_keys: dict[str, str]
    custom: str | None = None
    nnx: bool = False


@dataclasses.dataclass
class Trained:
    """What a parameters file holds: the static groups of one unit and the data set's info."""

    key: str
    groups: list[SavedGroup]
    info: DataInfo


# ---------------------------------------------------------------------------------------------------------
# Trees <-> flat tensors
# ---------------------------------------------------------------------------------------------------------


def _flatten(tree: Any, prefix: tuple = ()) -> list[tuple[tuple, Any]]:
    """``[(path, leaf)]`` of nested mappings (keys str or int), in sorted key order."""
    if isinstance(tree, Mapping):
        out = []
        for k in sorted(tree, key=lambda k: (isinstance(k, str), str(k))):
            if not isinstance(k, str | int):
                raise TypeError(f"cannot save a parameter tree with a key of type {type(k).__name__} ({k!r})")
            out += _flatten(tree[k], (*prefix, k))
        return out
    return [(prefix, tree)]


def _unflatten(items: Sequence[tuple[Sequence[Any], Any]]) -> dict:
    out: dict = {}
    for path, leaf in items:
        node = out
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = leaf
    return out


def _pure_state(state: Any, nnx: bool) -> Any:
    """A model state as nested dicts of arrays (NNX: its pure dict without the rng keys)."""
    if not nnx or state is None:
        return state if state is not None else {}
    from flax import nnx as nnx_lib

    pure = nnx_lib.to_pure_dict(state)
    return _unflatten([(p, v) for p, v in _flatten(pure) if not jax.dtypes.issubdtype(v.dtype, jax.dtypes.prng_key)])


def of_groups(key: str, groups: Sequence[Any], variant_ids: Sequence[int] | np.ndarray) -> Trained:
    """The :class:`Trained` of engine group results (:class:`jaxnets.result.GroupResult` s).

    Args:
      key: the unit's key (``"result"`` for :meth:`jaxnets.result.Result.save`).
      groups: the group results; each has ``indices``, ``rows``, ``params``, ``model_state`` and ``program``.
      variant_ids: [V] the id of each of the call's variants (``groups[k].indices`` index it).

    Returns:
      the :class:`Trained`, arrays on the host.
    """
    ids = np.asarray(variant_ids, np.int64)
    out = []
    for g in groups:
        prog = g.program
        n = len(g.indices)
        nnx = type(prog.adapter).__name__ == "NnxAdapter"
        host = lambda tree, n=n: jax.tree.map(lambda a: np.asarray(a)[:n], tree)  # noqa: E731
        spec = prog.spec
        extra = {k: "static" for k, _ in spec.static_extra} | {k: "vmapped" for k in spec.vmapped_extra}
        factory = prog.adapter.factory
        custom = getattr(factory, "__qualname__", type(factory).__name__) if prog.custom else None
        out.append(SavedGroup(variant=ids[np.asarray(g.indices, np.int64)], rows=[dict(r) for r in g.rows],
                              params=host(g.params), model_state=host(_pure_state(g.model_state, nnx)),
                              extra_keys=extra, custom=custom, nnx=nnx))
    return Trained(key, out, groups[0].program.data_info)


# ---------------------------------------------------------------------------------------------------------
# Bytes
# ---------------------------------------------------------------------------------------------------------


def _json(v: Any) -> Any:
    if isinstance(v, tuple):
        return list(v)
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"cannot save the value {v!r} ({type(v).__name__}) of a row")


def _checksum(meta_text: str, tensors: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256(meta_text.encode("utf-8"))
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        h.update(f"\0{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.data if a.size else b"")
    return h.hexdigest()


def _tensor_name(*parts: Any) -> str:
    text = [str(p) for p in parts]
    if any("/" in p or not p for p in text[1:]):
        raise ValueError(f"cannot save a parameter tree path {text[2:]}: its keys must be non-empty and hold no '/'")
    return "/".join(text)


def encode(trained: Trained) -> tuple[bytes, str]:
    """The safetensors bytes of ``trained`` and their checksum (the ``sha256`` in the header).

    Raises:
      ValueError, TypeError: a tree key or row value that cannot be saved (a key with ``/``, an object).
    """
    try:
        from safetensors.numpy import save
    except ImportError:
        raise ImportError("saving parameters needs safetensors: pip install safetensors (or jaxnets[cli])") from None

    tensors: dict[str, np.ndarray] = {}
    groups = []
    for k, g in enumerate(trained.groups):
        tensors[f"g{k}/variant"] = np.asarray(g.variant, np.int64)
        entry: dict[str, Any] = {"rows": g.rows, "extra_keys": g.extra_keys, "custom": g.custom, "nnx": g.nnx}
        for coll, tree in (("params", g.params), ("model_state", g.model_state)):
            leaves = _flatten(tree) if tree else []
            entry[coll] = [list(path) for path, _ in leaves]
            for path, leaf in leaves:
                tensors[_tensor_name(f"g{k}", coll, *path)] = np.ascontiguousarray(leaf)
        groups.append(entry)
    fields, arrays = trained.info.to_json()
    tensors |= {f"data/{name}": a for name, a in arrays.items()}
    text = json.dumps({"key": trained.key, "data": fields, "groups": groups}, default=_json, sort_keys=True)
    digest = _checksum(text, tensors)
    return save(tensors, metadata={"format": FORMAT, "version": VERSION, "jaxnets": text, "sha256": digest}), digest


def _header(data: bytes) -> dict[str, str]:
    if len(data) < 8:
        raise ValueError("truncated file (no header)")
    n = struct.unpack("<Q", data[:8])[0]
    if n > len(data) - 8:
        raise ValueError("truncated file (the header is longer than the file)")
    meta = json.loads(data[8:8 + n].decode("utf-8")).get("__metadata__")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError("not a jaxnets parameters file (no jaxnets metadata)")
    return meta


def _group(k: int, entry: Mapping[str, Any], tensors: Mapping[str, np.ndarray]) -> SavedGroup:
    variant = tensors[f"g{k}/variant"]
    trees = {}
    for coll in ("params", "model_state"):
        leaves = [(path, tensors[_tensor_name(f"g{k}", coll, *path)]) for path in entry[coll]]
        bad = [p for p, a in leaves if a.ndim == 0 or a.shape[0] != len(variant)]
        if bad:
            leaf = "/".join(map(str, bad[0]))
            raise ValueError(f"{coll} leaf {leaf} is not stacked over the {len(variant)} variants")
        trees[coll] = _unflatten(leaves)
    rows = entry["rows"]
    if not isinstance(rows, list) or len(rows) != len(variant):
        raise ValueError(f"group {k} has {len(variant)} variants but {len(rows)} rows")
    return SavedGroup(variant=variant, rows=rows, params=trees["params"], model_state=trees["model_state"],
                      extra_keys=dict(entry["extra_keys"]), custom=entry["custom"], nnx=bool(entry["nnx"]))


def decode(data: bytes, path: str | Path = "<bytes>") -> tuple[Trained, str]:
    """The :class:`Trained` in safetensors bytes (from :func:`encode`), checked, and its checksum.

    Raises:
      CorruptParamsError: anything wrong (truncated, not a parameters file, checksum mismatch, inconsistent
        groups): any exception while reading becomes this one, with the reason in a few words.
    """
    from safetensors.numpy import load

    try:
        meta = _header(data)
        tensors = load(data)
        if meta.get("sha256") != _checksum(meta["jaxnets"], tensors):
            raise ValueError("checksum mismatch: its content changed after it was saved")
        doc = json.loads(meta["jaxnets"])
        info = DataInfo.from_json(doc["data"], {k.removeprefix("data/"): a for k, a in tensors.items()
                                                if k.startswith("data/")})
        groups = [_group(k, entry, tensors) for k, entry in enumerate(doc["groups"])]
        return Trained(str(doc["key"]), groups, info), meta["sha256"]
    except Exception as e:  # noqa: BLE001 - a damaged file can make json / safetensors raise almost anything
        msg = " ".join(str(e).split())[:160] or type(e).__name__
        reason = msg if isinstance(e, ValueError) and not isinstance(e, json.JSONDecodeError) else \
            f"{type(e).__name__}: {msg}"
        raise CorruptParamsError(path, reason) from None


def read(path: str | Path) -> tuple[Trained, str]:
    """Read and check the parameters file ``path``; ``(trained, checksum)``.

    Raises:
      CorruptParamsError: the file is missing, unreadable or damaged (see :func:`decode`).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CorruptParamsError(path, f"cannot be read: {e.strerror or e}") from None
    return decode(data, path)
