"""PyTorch contenders: ``torch_loop`` (a plain training loop per model) and ``torch_func`` (``torch.func``
ensembles: ``stack_module_state`` + ``functional_call`` + ``vmap``).

The models mirror :mod:`jaxnets.models` layer for layer: same sizes, activations, zero biases and the same
initializer *distributions* (JAX's truncated normals are reproduced with ``trunc_normal_``), Adam with
``lr = 1e-3, eps = 1e-8``, minibatches of ``batch_size`` indices drawn uniformly with replacement each step.
The LSTM is a hand-written cell with Flax's gate layout (the fused ``nn.LSTM`` cannot take another candidate
activation than tanh, and ``torch.func.vmap`` cannot batch it): the input projection of all time steps is
one matmul, then a Python loop over time does one ``[B, H] x [H, 4H]`` matmul a step.

PyTorch runs eager (no ``torch.compile``), with ``torch.set_num_threads(<cores>)``. On a machine with a GPU
the models run on it when the installed PyTorch build has CUDA, else on the CPU (the ``device`` field of the
record says which).
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

from benchmarks.workloads import Workload, load_data

TRUNCATED_NORMAL_STD = 0.87962566103423978  # std of a standard normal truncated to (-2, 2), as in JAX
MIN_TIMED_STEPS = 5  # torch_func: fewest timed steps per ensemble before the time budget may end it


def torch_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _setup_threads(threads: int | None = None) -> None:
    """``torch.set_num_threads``: ``threads``, default one per core available to this process."""
    import torch

    if not threads:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    torch.set_num_threads(threads)


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def init_tensor(t, name: str, fan_in: int, fan_out: int, gen) -> None:
    """Fill ``t`` in place from the distribution of :mod:`jaxnets.initializers` ``name`` (gain 1)."""
    import torch

    with torch.no_grad():
        def trunc(std):
            su = std / TRUNCATED_NORMAL_STD
            torch.nn.init.trunc_normal_(t, 0.0, su, -2 * su, 2 * su, generator=gen)

        if name == "glorot_uniform":
            b = math.sqrt(6.0 / (fan_in + fan_out))
            t.uniform_(-b, b, generator=gen)
        elif name == "glorot_normal":
            trunc(math.sqrt(2.0 / (fan_in + fan_out)))
        elif name == "he_uniform":
            b = math.sqrt(6.0 / fan_in)
            t.uniform_(-b, b, generator=gen)
        elif name == "he_normal":
            trunc(math.sqrt(2.0 / fan_in))
        elif name == "lecun_uniform":
            b = math.sqrt(3.0 / fan_in)
            t.uniform_(-b, b, generator=gen)
        elif name == "lecun_normal":
            trunc(math.sqrt(1.0 / fan_in))
        elif name == "uniform":
            b = 1.0 / math.sqrt(fan_in)
            t.uniform_(-b, b, generator=gen)
        elif name == "normal":
            t.normal_(0.0, 0.01, generator=gen)
        else:
            raise ValueError(f"no PyTorch equivalent wired up for initializer {name!r}")


def _activation(name: str):
    import torch.nn.functional as F

    fns = {"relu": F.relu, "tanh": F.tanh, "sigmoid": F.sigmoid, "gelu": lambda x: F.gelu(x, approximate="tanh"),
           "silu": F.silu, "elu": F.elu, "softplus": F.softplus, "leaky_relu": F.leaky_relu,
           "identity": lambda x: x}
    return fns[name]


def _act_class():
    if "act" not in _CLASSES:
        from torch import nn

        class Activation(nn.Module):
            """An elementwise activation by name (no parameters)."""

            def __init__(self, name: str):
                super().__init__()
                self.name, self.fn = name, _activation(name)

            def forward(self, x):
                return self.fn(x)

        _CLASSES["act"] = Activation
    return _CLASSES["act"]


def build_model(wl: Workload, i: int, device: str):
    """The PyTorch twin of variant ``i`` of workload ``wl`` (an ``nn.Module`` on ``device``)."""
    import torch
    from torch import nn

    v = wl.variant(i)
    gen = torch.Generator().manual_seed(v["seed"])
    act = _activation(v["activation"])
    Act = _act_class()  # noqa: N806

    def linear(d_in, d_out):
        layer = nn.Linear(d_in, d_out)
        init_tensor(layer.weight, v["init"], d_in, d_out, gen)
        nn.init.zeros_(layer.bias)
        return layer

    if wl.kind == "mlp":
        sizes = [math.prod(wl.input_shape), *wl.hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [linear(a, b), Act(v["activation"])]
        layers.append(linear(sizes[-1], wl.output_dim))
        model = nn.Sequential(*layers)
    elif wl.kind == "cnn":
        h, w, c = wl.input_shape
        k = wl.kernel_size
        layers = []
        for ch in wl.hidden:
            conv = nn.Conv2d(c, ch, k, padding="same")
            init_tensor(conv.weight, v["init"], c * k * k, ch * k * k, gen)
            nn.init.zeros_(conv.bias)
            layers += [conv, Act(v["activation"])]
            c = ch
            if min(h, w) >= 2:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
        layers.append(nn.Flatten())
        sizes = [h * w * c, *wl.dense]
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [linear(a, b), Act(v["activation"])]
        layers.append(linear(sizes[-1], wl.output_dim))
        model = nn.Sequential(*layers)
    elif wl.kind == "rnn" and wl.cell == "lstm":
        model = _lstm_classes()[1](wl, v, gen, act)
    else:  # pragma: no cover - no workload uses it
        raise ValueError(f"{wl.kind}/{wl.cell}")
    return model.to(device)


_CLASSES: dict[str, Any] = {}


def _lstm_classes():
    """``(LSTMLayer, LSTMNet)``, defined once (``stack_module_state`` needs every model of one class)."""
    if "net" in _CLASSES:
        return _CLASSES["layer"], _CLASSES["net"]
    import torch
    from torch import nn

    class LSTMLayer(nn.Module):
        """Flax's ``LSTMCell`` layout: gates i, f, g, o; input kernels without bias, recurrent with bias."""

        def __init__(self, f: int, h: int, init: str, gen, act):
            super().__init__()
            self.h, self.act = h, act
            self.w_in = nn.Parameter(torch.empty(f, 4 * h))
            self.w_rec = nn.Parameter(torch.empty(h, 4 * h))
            self.bias = nn.Parameter(torch.zeros(4 * h))
            for g in range(4):  # each gate's kernel is its own [f, h] / [h, h] matrix in Flax
                init_tensor(self.w_in.data[:, g * h:(g + 1) * h], init, f, h, gen)
                init_tensor(self.w_rec.data[:, g * h:(g + 1) * h], init, h, h, gen)

        def forward(self, x):  # x [B, T, F] -> [B, T, H]
            b, t, _ = x.shape
            xi = x @ self.w_in  # all time steps' input projections at once: [B, T, 4H]
            h = x.new_zeros(b, self.h)
            c = x.new_zeros(b, self.h)
            out = []
            for s in range(t):
                z = xi[:, s] + h @ self.w_rec + self.bias
                i, f, g, o = z.split(self.h, dim=-1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * self.act(g)
                h = torch.sigmoid(o) * self.act(c)
                out.append(h)
            return torch.stack(out, dim=1)

    class LSTMNet(nn.Module):
        """Stacked :class:`LSTMLayer` s, then a dense output layer on the last time step."""

        def __init__(self, wl: Workload, v: dict[str, Any], gen, act):
            super().__init__()
            f = wl.input_shape[-1]
            layers = []
            for hdim in wl.hidden:
                layers.append(LSTMLayer(f, hdim, v["init"], gen, act))
                f = hdim
            self.layers = nn.ModuleList(layers)
            self.out = nn.Linear(f, wl.output_dim)
            init_tensor(self.out.weight, v["init"], f, wl.output_dim, gen)
            nn.init.zeros_(self.out.bias)

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return self.out(x[:, -1])

    _CLASSES.update(layer=LSTMLayer, net=LSTMNet)
    return LSTMLayer, LSTMNet


class _Data:
    def __init__(self, wl: Workload, device: str):
        import torch
        import torch.nn.functional as F

        ds = load_data(wl)
        x = torch.as_tensor(ds.x_train)
        if wl.kind == "cnn":
            x = x.permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
        self.x = x.to(device)
        self.y = torch.as_tensor(ds.y_train).to(device)
        if ds.default_loss == "sparse_categorical_crossentropy":
            self.y = self.y.long()
            self.loss = F.cross_entropy
        else:
            self.loss = F.mse_loss
        self.n = len(self.x)


def run_torch_loop(wl: Workload, n: int, steps: int, target_s: float, torch_threads: int | None = None,
                   **_: Any) -> dict[str, Any]:
    """A plain PyTorch loop per model: sample, forward, loss, ``backward``, ``Adam.step``; models one after
    another. Per model, one untimed warm-up step (Adam's state is created lazily), then ``steps`` timed.
    ``compile_s``: the first model's warm-up step (eager PyTorch compiles nothing). At least
    ``LOOP_MIN_STEPS`` steps per model; time-boxed (with the same hard cap) and extrapolated to ``n`` models
    like ``jax_loop``."""
    import torch

    from benchmarks.jax_contenders import LOOP_MIN_STEPS, _over_hard_cap

    steps = max(steps, LOOP_MIN_STEPS)
    _setup_threads(torch_threads)
    device = torch_device()
    d = _Data(wl, device)
    compile_s = timed = 0.0
    done = model_steps = 0
    cut = False
    for i in range(n):
        model = build_model(wl, i, device)
        opt = torch.optim.Adam(model.parameters(), lr=wl.learning_rate, eps=1e-8)
        gen = torch.Generator(device=device).manual_seed(wl.variant(i)["seed"])

        def step(model=model, opt=opt, gen=gen):
            idx = torch.randint(0, d.n, (wl.batch_size,), generator=gen, device=device)
            opt.zero_grad(set_to_none=True)
            loss = d.loss(model(d.x[idx]), d.y[idx])
            loss.backward()
            opt.step()

        tc = time.perf_counter()
        step()
        _sync(device)
        if i == 0:
            compile_s = time.perf_counter() - tc
        t0 = time.perf_counter()
        t = 0
        while t < steps:
            step()
            t += 1
            if t % 10 == 0 and _over_hard_cap(timed + time.perf_counter() - t0, target_s):
                break
        _sync(device)
        timed += time.perf_counter() - t0
        done += 1
        model_steps += t
        cut = cut or t < steps
        if (timed >= target_s and done >= min(n, len(wl.activations))) or _over_hard_cap(timed, target_s):
            break
    return {"model_steps_per_s": model_steps / timed, "compile_s": compile_s, "timed_s": timed,
            "steps": steps, "n_timed": done, "extrapolated": done < n or cut, "time_boxed": cut,
            "device": device, "torch_threads": torch.get_num_threads()}


def run_torch_func(wl: Workload, n: int, steps: int, target_s: float, torch_threads: int | None = None,
                   **_: Any) -> dict[str, Any]:
    """``torch.func`` ensembles: the models of each activation are stacked with ``stack_module_state`` and
    trained together, ``vmap(functional_call)`` for the forward pass, autograd for the backward pass and
    one ``torch.optim.Adam`` over the stacked parameters (Adam is elementwise, so this is each model's own
    Adam). Mixed activations cannot share one ``vmap`` (the function differs), so there is one ensemble per
    activation, trained one after the other. Per ensemble, one untimed warm-up step, then up to ``steps``
    timed steps, cut short (``time_boxed``, after at least 5) once the ensemble has used its share of
    ``target_s``: eager ``torch.func`` costs about a millisecond a step even for tiny models, so the step
    counts sized for jaxnets would take minutes at small N. All ``n`` models are timed (no
    extrapolation); ``steps`` is the fewest steps any ensemble ran."""
    import copy

    import torch
    from torch.func import functional_call, stack_module_state, vmap

    _setup_threads(torch_threads)
    device = torch_device()
    d = _Data(wl, device)
    by_act: dict[str, list[int]] = {}
    for i in range(n):
        by_act.setdefault(wl.variant(i)["activation"], []).append(i)
    compile_s = timed = 0.0
    model_steps = 0
    min_steps = []
    budget = target_s / len(by_act)
    for idxs in by_act.values():
        models = [build_model(wl, i, device) for i in idxs]
        params, buffers = stack_module_state(models)
        base = copy.deepcopy(models[0]).to("meta")
        del models

        def loss_one(p, b, x, y, base=base):
            return d.loss(functional_call(base, (p, b), (x,)), y)

        batched = vmap(loss_one)
        opt = torch.optim.Adam(list(params.values()), lr=wl.learning_rate, eps=1e-8)
        gen = torch.Generator(device=device).manual_seed(idxs[0])
        m = len(idxs)

        def step(params=params, buffers=buffers, batched=batched, opt=opt, gen=gen, m=m):
            idx = torch.randint(0, d.n, (m, wl.batch_size), generator=gen, device=device)
            opt.zero_grad(set_to_none=True)
            # Sum of the per-model mean losses: each model's gradient is the gradient of its own loss.
            batched(params, buffers, d.x[idx], d.y[idx]).sum().backward()
            opt.step()

        tc = time.perf_counter()
        step()
        _sync(device)
        compile_s += time.perf_counter() - tc
        t0 = time.perf_counter()
        done = 0
        while done < steps:
            step()
            done += 1
            if done >= MIN_TIMED_STEPS and done % 5 == 0:
                _sync(device)
                if time.perf_counter() - t0 >= budget:
                    break
        _sync(device)
        timed += time.perf_counter() - t0
        model_steps += m * done
        min_steps.append(done)
    return {"model_steps_per_s": model_steps / timed, "compile_s": compile_s, "timed_s": timed,
            "steps": min(min_steps), "n_timed": n, "extrapolated": False, "device": device,
            "torch_threads": torch.get_num_threads(), "n_ensembles": len(by_act),
            "time_boxed": min(min_steps) < steps}
