"""The benchmark workloads: model, data, batch size, variant mix, and analytic FLOP / memory counts.

Everything here is plain Python (no JAX, no PyTorch), so the orchestrating process can plan a run —
FLOPs, memory estimates, step counts — without importing either library. The shapes below are checked
against the loaded data set by :func:`load_data`.

FLOP convention (the same number for every contender)
-----------------------------------------------------
Only matrix-multiply / convolution multiply-adds are counted, 2 FLOPs each. For one example's forward pass:

* dense layer ``d_in -> d_out``: ``d_in * d_out`` MACs;
* conv ``k x k``, ``c_in -> c_out``, SAME padding, stride 1 on an ``h x w`` map: ``h * w * k^2 * c_in * c_out``
  MACs (``h, w`` halve after each 2x2 max-pool, as in :class:`jaxnets.models.CNN`);
* LSTM layer of width ``H`` on ``F`` inputs: ``4 H (F + H)`` MACs per time step, times ``T``.

A training step is forward + backward ≈ **3x the forward matmul FLOPs** (backward = one matmul for the
input gradient and one for the weight gradient per layer; the first layer's unneeded input gradient is
still counted, by convention). So::

    flops_per_model_step = 3 * 2 * batch_size * MACs_per_example

Elementwise work (activations, loss, Adam, sampling) is not counted: it is the same for every contender,
and counting it would flatter the small models.

A workload whose variants have different architectures (``hiddens``, ``digits_mlp_archs``) counts the **mean**
over its architectures, each weighted equally (MACs, parameters, saved activations, hence FLOPs and memory):
the mean over the variants whenever N is a multiple of ``len(activations) * len(hiddens)`` (16 for
``digits_mlp_archs``, whose mean is 4,912 MACs per example and 5,000 parameters). That is the real work of
the N networks, whichever way they are trained: the mixed program computes its padded architecture
(``hidden``; 12,928 MACs for ``digits_mlp_archs``, 2.6x the mean) and its model-steps/s still counts each
variant's own network.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

WORKLOAD_NAMES: tuple[str, ...] = ("wine_mlp", "wine_mlp_9act", "digits_mlp", "digits_mlp_wide", "digits_cnn",
                                   "adding_lstm", "user_cnn", "iris_mlp_65k", "digits_mlp_archs")

#: Contenders that only run a workload which names them in ``Workload.contenders`` (a workload with
#: ``contenders = None`` runs every contender but these): one ``engine.train`` call with
#: ``mix_architectures`` True / False, which only means something for variants of different architectures.
ARCHITECTURE_CONTENDERS: tuple[str, ...] = ("jaxnets_mixed", "jaxnets_split")

#: The nine activations of ``wine_mlp_9act``, in the order of ``jaxnets.activations.NAMES`` (their ids); a
#: copy, so planning a run imports no JAX. ``tests/test_benchmarks.py`` checks that it matches.
ALL_ACTIVATIONS: tuple[str, ...] = ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu", "silu", "softplus",
                                    "identity")


@dataclasses.dataclass(frozen=True)
class Workload:
    """One benchmark workload: a model on a data set, trained with Adam for a fixed number of steps.

    Variant ``i`` of ``N`` uses ``activations[i % len(activations)]``, initializer
    ``inits[(i // len(activations)) % len(inits)]`` and seed ``i``, so any ``N >= 4`` mixes both (for two
    activations). With ``contenders_first_activation`` (``wine_mlp_9act``), only jaxnets trains that mix of
    activations; the contenders that compile one program per activation (``jax_loop``, ``jax_scan``,
    ``torch_*``) train every variant with ``activations[0]`` (initializer and seed unchanged). ``jax_vmap``
    always trains the first (activation, initializer) pair, for every workload.

    A workload with ``model`` trains a user's own Flax NNX model instead of the built-in model of ``kind``
    (whose layer sizes then only describe it for the FLOP, parameter and memory counts): ``model`` names
    its factory ``factory(hp, rngs) -> nnx.Module`` as ``"module:name"``, which jaxnets gets as
    ``engine.train(..., model=factory)`` and the one-at-a-time contenders call with ``hp=None`` (so the
    model must not read ``hp``). Its variants differ by seed and, with ``learning_rates``, by learning rate
    (variant ``i``: ``learning_rates[i % len(learning_rates)]``); ``contenders`` lists the contenders that
    implement the workload (``None``: every one but :data:`ARCHITECTURE_CONTENDERS`), the suite skips the
    others.

    With ``hiddens`` (built-in MLPs only), variant ``i`` also has its own hidden layer sizes,
    ``hiddens[(i // len(activations)) % len(hiddens)]`` (the initializer index then counts in whole cycles of
    activations and architectures); ``hidden`` is then the padded architecture that ONE program mixing them
    computes (:func:`jaxnets.architectures.padded`) and the analytic counts are the mean over ``hiddens``
    (see the module docstring). ``ns``: the N the workload runs at when the suite's N are not given
    (``--ns``); empty: the suite's.
    """

    name: str
    description: str
    dataset: str
    dataset_options: tuple[tuple[str, Any], ...]
    kind: str  # mlp | cnn | rnn
    hidden: tuple[int, ...]
    batch_size: int
    input_shape: tuple[int, ...]  # one example, as the data set gives it
    output_dim: int
    n_val: int  # validation examples (the engine evaluates on all of them)
    dense: tuple[int, ...] = ()
    cell: str = "lstm"
    activations: tuple[str, ...] = ("relu", "tanh")
    inits: tuple[str, ...] = ("glorot_uniform", "he_normal")
    learning_rate: float = 1e-3
    kernel_size: int = 3
    contenders_first_activation: bool = False
    model: str | None = None
    learning_rates: tuple[float, ...] = ()
    contenders: tuple[str, ...] | None = None
    optimizer: str = "adam"  # "adam" (every contender) or "sgd" (jaxnets and jax_vmap)
    hiddens: tuple[tuple[int, ...], ...] = ()  # per-variant hidden lists (see the class docstring)
    ns: tuple[int, ...] = ()  # the N it runs at unless --ns says otherwise (empty: the suite's N)

    # -- variants -----------------------------------------------------------------------------------
    def jaxnets_variant(self, i: int) -> dict[str, Any]:
        """Activation, initializer and seed of variant ``i`` as jaxnets trains it (the full mix).

        Args:
          i: the variant's index, 0-based.

        Returns:
          ``{"activation", "init", "seed"}``, ``"hidden"`` when the workload sets ``hiddens`` and
          ``"learning_rate"`` when it sets ``learning_rates``.
        """
        cycle = len(self.activations) * max(1, len(self.hiddens))
        v: dict[str, Any] = {
            "activation": self.activations[i % len(self.activations)],
            "init": self.inits[(i // cycle) % len(self.inits)],
            "seed": i,
        }
        if self.hiddens:
            v["hidden"] = self.hiddens[(i // len(self.activations)) % len(self.hiddens)]
        if self.learning_rates:
            v["learning_rate"] = self.learning_rates[i % len(self.learning_rates)]
        return v

    def variant(self, i: int) -> dict[str, Any]:
        """Activation, initializer and seed of variant ``i`` as the one-program-per-activation contenders
        train it: :meth:`jaxnets_variant`, with ``activations[0]`` if ``contenders_first_activation``.

        Args:
          i: the variant's index, 0-based.

        Returns:
          ``{"activation", "init", "seed"}`` (and ``"learning_rate"``, as :meth:`jaxnets_variant`).
        """
        v = self.jaxnets_variant(i)
        if self.contenders_first_activation:
            v["activation"] = self.activations[0]
        return v

    def contender_activations(self) -> tuple[str, ...]:
        """The distinct activations the one-program-per-activation contenders train (in order of use)."""
        return (self.activations[0],) if self.contenders_first_activation else tuple(dict.fromkeys(self.activations))

    def jaxnets_rows(self, n: int, steps: int, eval_every: int) -> list[dict[str, Any]]:
        """The ``n`` variants as :func:`jaxnets.engine.train` rows (one static group). For a user's model
        (``model``) only the seed, the learning rate and the training settings: the factory builds the
        model (train with ``model=`` :meth:`factory`). Minibatches are drawn with replacement
        (``sampling = "replacement"``), as every contender draws them: the same work and the same numbers.
        With ``hiddens``, each row's ``hidden`` is its variant's own (:meth:`jaxnets_variant`)."""
        if self.model is not None:
            static = {"optimizer": self.optimizer, "batch_size": self.batch_size, "steps": steps,
                      "eval_every": eval_every, "sampling": "replacement"}
            return [{**static, "seed": i, "learning_rate": self.learning_rate_of(i)} for i in range(n)]
        static = {
            "kind": self.kind, "hidden": self.hidden, "dense": self.dense, "cell": self.cell,
            "optimizer": self.optimizer, "batch_size": self.batch_size, "steps": steps, "eval_every": eval_every,
            "learning_rate": self.learning_rate, "sampling": "replacement",
        }
        return [{**static, **self.jaxnets_variant(i)} for i in range(n)]

    def n_architectures(self, n: int) -> int:
        """How many distinct ``hidden`` lists the first ``n`` variants have (1 without ``hiddens``): the static
        groups, hence compiled programs, of ``n`` variants trained without mixing architectures."""
        if not self.hiddens:
            return 1
        cycle = len(self.activations) * len(self.hiddens)
        return len({self.jaxnets_variant(i)["hidden"] for i in range(min(n, cycle))})

    def learning_rate_of(self, i: int) -> float:
        """Variant ``i``'s learning rate."""
        return self.learning_rates[i % len(self.learning_rates)] if self.learning_rates else self.learning_rate

    def factory(self):
        """The user's model factory ``factory(hp, rngs) -> nnx.Module`` that ``model`` names (imports it)."""
        import importlib

        if self.model is None:
            raise ValueError(f"workload {self.name} trains the built-in {self.kind}, not a user's model")
        module, _, name = self.model.partition(":")
        return getattr(importlib.import_module(module), name)

    def runs(self, contender: str) -> bool:
        """Whether ``contender`` implements this workload: one it names in ``contenders``; with ``contenders =
        None``, every contender but :data:`ARCHITECTURE_CONTENDERS`."""
        if self.contenders is None:
            return contender not in ARCHITECTURE_CONTENDERS
        return contender in self.contenders

    # -- analytic counts ----------------------------------------------------------------------------
    def _layers(self, hidden: tuple[int, ...] | None = None) -> list[tuple[str, dict[str, int]]]:
        """The layers with the sizes that matter for FLOPs / parameters / activations (one example), for the
        hidden sizes ``hidden`` (default: the workload's ``hidden``)."""
        hidden = self.hidden if hidden is None else hidden
        out: list[tuple[str, dict[str, int]]] = []
        if self.kind == "mlp":
            sizes = [math.prod(self.input_shape), *hidden, self.output_dim]
            for a, b in zip(sizes[:-1], sizes[1:], strict=True):
                out.append(("dense", {"d_in": a, "d_out": b}))
        elif self.kind == "cnn":
            h, w, c = self.input_shape
            for ch in hidden:
                out.append(("conv", {"h": h, "w": w, "c_in": c, "c_out": ch, "k": self.kernel_size}))
                c = ch
                if min(h, w) >= 2:
                    h, w = h // 2, w // 2
            sizes = [h * w * c, *self.dense, self.output_dim]
            for a, b in zip(sizes[:-1], sizes[1:], strict=True):
                out.append(("dense", {"d_in": a, "d_out": b}))
        elif self.kind == "rnn":
            t, f = self.input_shape
            gates = {"lstm": 4, "gru": 3, "simple": 1}[self.cell]
            for hdim in hidden:
                out.append(("rnn", {"t": t, "f": f, "h": hdim, "gates": gates}))
                f = hdim
            out.append(("dense", {"d_in": f, "d_out": self.output_dim}))
        else:  # pragma: no cover - guarded by the workload table
            raise ValueError(self.kind)
        return out

    def _mean(self, count: Callable[[list[tuple[str, dict[str, int]]]], int]) -> float:
        """``count(layers)`` of the workload's model; with ``hiddens``, the mean over its architectures."""
        if not self.hiddens:
            return count(self._layers())
        return sum(count(self._layers(h)) for h in self.hiddens) / len(self.hiddens)

    @staticmethod
    def _macs(layers: list[tuple[str, dict[str, int]]]) -> int:
        total = 0
        for kind, s in layers:
            if kind == "dense":
                total += s["d_in"] * s["d_out"]
            elif kind == "conv":
                total += s["h"] * s["w"] * s["k"] ** 2 * s["c_in"] * s["c_out"]
            else:
                total += s["t"] * s["gates"] * s["h"] * (s["f"] + s["h"])
        return total

    def macs_per_example(self) -> float:
        """Forward multiply-adds for one example (see the module docstring); with ``hiddens``, the mean over
        the architectures (an int otherwise)."""
        return self._mean(self._macs)

    def padded_macs_per_example(self) -> int:
        """Forward multiply-adds for one example of ``hidden``: with ``hiddens``, what ONE program mixing the
        architectures computes per variant (its padded architecture); otherwise :meth:`macs_per_example`."""
        return self._macs(self._layers())

    def flops_per_model_step(self) -> float:
        """FLOPs of one training step of one model: ``3 * 2 * batch_size * MACs_per_example``."""
        return 6.0 * self.batch_size * self.macs_per_example()

    @staticmethod
    def _params(layers: list[tuple[str, dict[str, int]]]) -> int:
        total = 0
        for kind, s in layers:
            if kind == "dense":
                total += s["d_in"] * s["d_out"] + s["d_out"]
            elif kind == "conv":
                total += s["k"] ** 2 * s["c_in"] * s["c_out"] + s["c_out"]
            else:
                total += s["gates"] * s["h"] * (s["f"] + s["h"] + 1)
        return total

    def param_count(self) -> float:
        """Trainable parameters of one model (weights + biases); with ``hiddens``, the mean over the
        architectures (an int otherwise)."""
        return self._mean(self._params)

    def _saved(self, layers: list[tuple[str, dict[str, int]]]) -> int:
        total = 0
        for kind, s in layers:
            if kind == "dense":
                total += 2 * s["d_out"]
            elif kind == "conv":
                total += 2 * s["h"] * s["w"] * s["c_out"]
            else:
                total += s["t"] * (2 * s["gates"] + 3) * s["h"]
        return total + math.prod(self.input_shape)

    def activation_floats_per_example(self) -> float:
        """Values one example's forward pass keeps for the backward pass (layer outputs, pre-activations); with
        ``hiddens``, the mean over the architectures (an int otherwise)."""
        return self._mean(self._saved)

    def train_bytes_per_model(self) -> float:
        """Rough peak training memory of one model in float32: parameters, gradients, Adam's two moments,
        the update and the new parameters (6 copies), plus the batch's saved activations (x3 for
        pre-activations, their gradients and temporaries); with ``hiddens``, of the mean architecture. Used only
        to skip what cannot fit."""
        return 4.0 * (6 * self.param_count() + 3 * self.batch_size * self.activation_floats_per_example())


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload(
            name="wine_mlp",
            description="wine (13 features, 3 classes), MLP 13-32-32-3, batch 32: one model cannot fill "
                        "the machine",
            dataset="wine", dataset_options=(), kind="mlp", hidden=(32, 32), batch_size=32,
            input_shape=(13,), output_dim=3, n_val=36,
        ),
        Workload(
            name="wine_mlp_9act",
            description="wine_mlp with all nine activations (variant i: activation i mod 9) for jaxnets; the "
                        "one-activation contenders train the first (sigmoid)",
            dataset="wine", dataset_options=(), kind="mlp", hidden=(32, 32), batch_size=32,
            input_shape=(13,), output_dim=3, n_val=36, activations=ALL_ACTIVATIONS,
            contenders_first_activation=True,
        ),
        Workload(
            name="digits_mlp",
            description="digits (64 pixels, 10 classes), MLP 64-128x4-10, batch 128",
            dataset="digits", dataset_options=(), kind="mlp", hidden=(128,) * 4, batch_size=128,
            input_shape=(64,), output_dim=10, n_val=359,
        ),
        Workload(
            name="digits_mlp_wide",
            description="digits, wide MLP 64-1024x4-10, batch 128",
            dataset="digits", dataset_options=(), kind="mlp", hidden=(1024,) * 4, batch_size=128,
            input_shape=(64,), output_dim=10, n_val=359,
        ),
        Workload(
            name="digits_cnn",
            description="digits as 8x8x1 images, CNN conv3x3(16)-pool-conv3x3(32)-pool-dense(64)-10, "
                        "batch 128",
            dataset="digits_image", dataset_options=(), kind="cnn", hidden=(16, 32), dense=(64,),
            batch_size=128, input_shape=(8, 8, 1), output_dim=10, n_val=359,
        ),
        Workload(
            name="adding_lstm",
            description="adding problem (T = 50, 2 inputs), LSTM(32) -> dense(1), MSE, batch 64",
            dataset="adding", dataset_options=(("length", 50),), kind="rnn", hidden=(32,), cell="lstm",
            batch_size=64, input_shape=(50, 2), output_dim=1, n_val=400, activations=("tanh", "relu"),
        ),
        Workload(
            name="user_cnn",
            description="digits as 8x8x1 images, a user's own Flax NNX CNN of the tutorial's shape "
                        "(benchmarks.user_model.UserCNN): conv3x3(32)-relu-avgpool-conv3x3(64)-relu-avgpool-"
                        "dense(256)-relu-10, Flax's default init, Adam with learning rate 1e-3 or 3e-3 (variant i: "
                        "i mod 2) and seed i, batch 128; jaxnets and jax_loop only",
            dataset="digits_image", dataset_options=(), kind="cnn", hidden=(32, 64), dense=(256,),
            batch_size=128, input_shape=(8, 8, 1), output_dim=10, n_val=359, activations=("relu",),
            inits=("flax_default",), model="benchmarks.user_model:user_cnn", learning_rates=(1e-3, 3e-3),
            contenders=("jaxnets", "jax_loop"),
        ),
        Workload(
            name="iris_mlp_65k",
            description="iris (4 features, 3 classes), MLP 4-8-8-3, tanh, SGD (learning rate 0.1), batch 32: a tiny "
                        "model meant for N = 65,536 variants (python -m benchmarks --workloads iris_mlp_65k --ns "
                        "65536); jaxnets and jax_vmap only",
            dataset="iris", dataset_options=(), kind="mlp", hidden=(8, 8), batch_size=32, input_shape=(4,),
            output_dim=3, n_val=30, activations=("tanh",), inits=("glorot_uniform",), learning_rate=0.1,
            optimizer="sgd", contenders=("jaxnets", "jax_vmap"),
        ),
        Workload(
            name="digits_mlp_archs",
            description="digits, MLPs of eight architectures (variant i: hidden "
                        "[16], [32], [64], [16, 16], [32, 32], [64, 64], [32, 32, 32] or [64, 64, 64] for (i div 2) "
                        "mod 8, relu / tanh for i mod 2, he_normal, seed i), batch 128: ONE engine.train call "
                        "mixing the architectures in one program (jaxnets_mixed) or one program per architecture "
                        "(jaxnets_split), wall time with compilation; counts: the mean of the architectures",
            dataset="digits", dataset_options=(), kind="mlp", hidden=(64, 64, 64), batch_size=128,
            input_shape=(64,), output_dim=10, n_val=359, inits=("he_normal",),
            hiddens=((16,), (32,), (64,), (16, 16), (32, 32), (64, 64), (32, 32, 32), (64, 64, 64)),
            contenders=ARCHITECTURE_CONTENDERS, ns=(32, 128),
        ),
    )
}
assert tuple(WORKLOADS) == WORKLOAD_NAMES


def load_data(workload: Workload):
    """The workload's :class:`jaxnets.data.Dataset` (seed 0), checked against the declared shapes."""
    from jaxnets import data

    ds = data.load(workload.dataset, seed=0, **dict(workload.dataset_options))
    got = (tuple(ds.input_shape), ds.output_dim, len(ds.x_val))
    want = (workload.input_shape, workload.output_dim, workload.n_val)
    if got != want:
        raise RuntimeError(f"{workload.name}: data set {workload.dataset} has (input shape, output_dim, n_val) "
                           f"{got}; the workload declares {want}")
    return ds
