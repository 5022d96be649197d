"""JAX contenders: ``jaxnets`` (the engine), ``jax_loop`` and ``jax_scan`` (one model at a time), ``jax_vmap``
(N models of one activation in one hand-written ``jit(vmap(scan))`` program), and ``jaxnets_mixed`` /
``jaxnets_split`` (the engine on variants of several architectures, ``digits_mlp_archs``: one program mixing
them or one per architecture, wall time with compilation: :func:`run_jaxnets_mixed`).

Every contender returns a dict with at least ``model_steps_per_s`` (training steps per second summed over
models; compilation, initialization and warm-up excluded), ``compile_s``, ``timed_s`` (the seconds the rate
is measured over), ``steps`` (steps per model in the timed part), ``n_timed`` (models timed) and
``extrapolated`` (True when fewer than ``n`` models were timed and the rate is per-model time scaled to
``n``: the one-at-a-time contenders train models strictly one after another, so ``n`` of them take ``n``
times one model's time). The one-at-a-time contenders train every model at least ``LOOP_MIN_STEPS``
steps, so that per-model start-up (dispatch pipeline fill and drain) does not dominate their rate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from benchmarks.workloads import Workload, load_data

N_EVAL_TRAIN = 32  # jaxnets: training examples in each evaluation's train loss and diagnostics
LOOP_MIN_STEPS = 50  # one-at-a-time contenders: each model trains at least this many steps


def _rng_keys(seed: int):
    import jax

    base = jax.random.key(seed)
    return jax.random.fold_in(base, 0), jax.random.fold_in(base, 1)


def _eval_work_fraction(wl: Workload, ds, n_eval_train: int, steps: int) -> float:
    """Matmul work of one engine evaluation (forward on the validation split, forward + backward on
    ``n_eval_train`` training examples) relative to ``steps`` training steps."""
    macs = wl.macs_per_example()
    eval_flops = 2.0 * macs * (len(ds.x_val) + 3 * n_eval_train)
    return eval_flops / (steps * wl.flops_per_model_step())


# --------------------------------------------------------------------------------------------------------
# (a) jaxnets: the vectorized engine
# --------------------------------------------------------------------------------------------------------


def _engine_second_chunks(wl: Workload, ds, n: int, chunk: int, engine_options: dict[str, Any]) -> tuple[float, Any]:
    """Train ``n`` variants for two chunks of ``chunk`` steps (``steps = 2 chunk, eval_every = chunk``).

    Returns the seconds of the *second* chunk (summed over the engine's blocks of variants when it splits the
    group) and the result. The engine reports a training event
    once each chunk's metrics reach the host; the second chunk of a block of variants is the time from its
    first event to its second (nothing else runs in between: the next block's init comes after).
    """
    from jaxnets import engine, events

    rows = wl.jaxnets_rows(n, steps=2 * chunk, eval_every=chunk)
    marks: dict[int, dict[int, float]] = {}
    order: list[float] = []

    def progress(event: events.Event) -> None:
        if not isinstance(event, events.Evaluated):  # e.g. the Compiling notice
            return
        now = time.perf_counter()
        order.append(now)
        marks.setdefault(event.block_start, {})[event.eval] = now

    if hasattr(engine, "clear_cache"):  # compile afresh, so compile_s is a real compilation
        engine.clear_cache()
    options = engine.Options(**{"n_eval_train": N_EVAL_TRAIN, **engine_options})
    model = wl.factory() if wl.model is not None else None
    result = engine.train(rows, ds, model=model, options=options, progress=progress)
    if len(result.groups) != 1 or len(order) != 2 * len(marks) or any(len(m) != 2 for m in marks.values()):
        raise RuntimeError(f"expected one group and two chunks per block of variants, got {len(result.groups)} "
                           f"group(s) and events {marks}")
    second = sum(m[max(m)] - m[min(m)] for m in marks.values())
    return second, result


def run_jaxnets(wl: Workload, n: int, steps: int, target_s: float, engine_options: dict[str, Any] | None = None,
                subtract_eval: bool = True, **_: Any) -> dict[str, Any]:
    """All ``n`` variants in one ``jaxnets.engine.train`` call (one static group, one compiled program); a
    workload of a user's model trains it through ``model=`` (:meth:`Workload.factory`).

    The engine runs ``eval_every`` steps — in a compiled ``lax.scan``, or (a convolution on the CPU) as a host
    loop over one compiled step: the record's ``loop`` says which (:func:`jaxnets.engine.plan.loop_strategy`)
    — and then one evaluation (forward on the validation split, a gradient on ``n_eval_train`` examples,
    per-layer diagnostics). To time the training steps alone:

    1. the main call trains ``2 * steps`` steps with ``eval_every = steps``: two chunks. The first chunk is
       the warm-up; the second one's time ``T_S`` (between the engine's progress callbacks, which fire once
       a chunk's metrics reach the host; summed over blocks of variants if the engine splits the group)
       holds ``steps`` steps + one evaluation + the per-chunk overhead. ``compile_s`` is this call's
       ``GroupResult.compile_s`` (init + chunk programs);
    2. a second call, identical but with ``eval_every = 1`` (2 steps), gives ``T_1`` = one step + one
       evaluation + the same overhead.

    ``model_steps_per_s = n * (steps - 1) / (T_S - T_1)``: evaluation, initialization, compilation and
    warm-up are all excluded. Both calls train in the same blocks of variants: the engine sizes them from
    shapes alone (:func:`jaxnets.engine.plan.block_size`). ``model_steps_per_s_with_eval = n * steps / T_S``
    keeps the evaluation in (what a run with ``eval_every = steps`` gets). With ``subtract_eval=False``
    (``--quick``) the second call is skipped and ``model_steps_per_s`` is the evaluation-inclusive figure
    (``eval_subtracted``).
    """
    ds = load_data(wl)
    engine_options = dict(engine_options or {})
    t0 = time.perf_counter()
    t_s, result = _engine_second_chunks(wl, ds, n, steps, engine_options)
    wall = time.perf_counter() - t0
    g = result.groups[0]
    if subtract_eval and steps >= 2:
        t_1, _ = _engine_second_chunks(wl, ds, n, 1, engine_options)
        per_step = (t_s - t_1) / (steps - 1)
        if per_step <= 0:  # noise swamped the difference: fall back to the evaluation-inclusive figure
            per_step, subtract_eval = t_s / steps, False
    else:
        t_1, per_step, subtract_eval = None, t_s / steps, False
    return {
        "model_steps_per_s": n / per_step,
        "compile_s": g.compile_s,
        "timed_s": t_s,
        "steps": steps,
        "n_timed": n,
        "extrapolated": False,
        "model_steps_per_s_with_eval": n * steps / t_s,
        "chunk_1_step_s": t_1,
        "eval_s": max(0.0, t_1 - per_step) if subtract_eval else None,
        "eval_subtracted": subtract_eval,
        "engine_run_s": g.run_s,
        "engine_wall_s": g.wall_s,
        "total_s": wall,
        "eval_work_fraction": _eval_work_fraction(wl, ds, N_EVAL_TRAIN, steps),
        "n_diverged": int((result.status == "diverged").sum()),
        "n_blocks": g.n_blocks,
        "loop": getattr(g, "loop", None),  # how the steps ran: "scan" or "host" (GroupResult.loop)
        "engine_options": engine_options,
    }


# --------------------------------------------------------------------------------------------------------
# jaxnets_mixed / jaxnets_split: architectures as data, one mixed program vs one program per architecture
# --------------------------------------------------------------------------------------------------------


def auto_mixes(rows: list[dict[str, Any]], ds, engine_options: dict[str, Any] | None = None) -> bool:
    """Whether jaxnets' default rule (``mix_architectures="auto"``) trains ``rows`` in ONE program.

    ``engine.check`` builds the static groups' programs without compiling or training anything (cheap), with
    ``engine.Options(mix_architectures="auto", n_eval_train=N_EVAL_TRAIN)`` and ``engine_options``.

    Args:
      rows: ``engine.train`` rows (e.g. :meth:`Workload.jaxnets_rows`).
      ds: their data set.
      engine_options: extra ``engine.Options`` fields (``mix_architectures`` among them is overridden).

    Returns:
      ``True`` when the check builds one program for all the rows.
    """
    from jaxnets import engine

    fields = {"n_eval_train": N_EVAL_TRAIN, **(engine_options or {}), "mix_architectures": "auto"}
    return len(engine.check(rows, ds, options=engine.Options(**fields)).programs) == 1


def _run_architectures(wl: Workload, n: int, steps: int, mix: bool,
                       engine_options: dict[str, Any] | None) -> dict[str, Any]:
    """One timed ``engine.train`` call of ``wl``'s ``n`` variants with ``mix_architectures = mix``, from an
    empty program cache; then what ``"auto"`` would pick (:func:`auto_mixes`, not timed)."""
    from jaxnets import engine

    t_total = time.perf_counter()
    ds = load_data(wl)
    engine_options = dict(engine_options or {})
    rows = wl.jaxnets_rows(n, steps=steps, eval_every=steps)
    options = engine.Options(**{"n_eval_train": N_EVAL_TRAIN, **engine_options, "mix_architectures": mix})
    engine.clear_cache()  # compile afresh: compilation is what the mixing trades
    t0 = time.perf_counter()
    result = engine.train(rows, ds, options=options)
    wall = time.perf_counter() - t0
    compile_s = sum(g.compile_s for g in result.groups)
    tc = time.perf_counter()
    auto = auto_mixes(rows, ds, engine_options)
    check_s = time.perf_counter() - tc
    return {
        "model_steps_per_s": n * steps / wall,
        "compile_s": compile_s,
        "timed_s": wall,
        "steps": steps,
        "n_timed": n,
        "extrapolated": False,
        "wall_s": wall,
        "n_programs": len(result.groups),
        "mix_architectures": mix,
        "auto_mixes": auto,
        "auto_check_s": check_s,
        "model_steps_per_s_without_compile": n * steps / (wall - compile_s) if wall > compile_s else None,
        "eval_subtracted": False,
        "engine_run_s": sum(g.run_s for g in result.groups),
        "engine_wall_s": sum(g.wall_s for g in result.groups),
        "total_s": time.perf_counter() - t_total,
        "eval_work_fraction": _eval_work_fraction(wl, ds, N_EVAL_TRAIN, steps),
        "n_diverged": int((result.status == "diverged").sum()),
        "n_blocks": sum(g.n_blocks for g in result.groups),
        "loop": ",".join(sorted({getattr(g, "loop", None) or "scan" for g in result.groups})),  # how the steps ran
        "engine_options": engine_options,
    }


def run_jaxnets_mixed(wl: Workload, n: int, steps: int, target_s: float,
                      engine_options: dict[str, Any] | None = None, **_: Any) -> dict[str, Any]:
    """All ``n`` variants of several architectures (``wl.hiddens``) in ONE ``engine.train`` call with
    ``engine.Options(mix_architectures=True)``: one program at the padded architecture, each variant masked
    to its own (:mod:`jaxnets.architectures`).

    The call (rows with ``steps`` steps, ``eval_every = steps``, ``sampling = "replacement"``;
    ``n_eval_train = N_EVAL_TRAIN``) starts from an empty program cache (``engine.clear_cache()``) and is
    timed as a whole, compilation included: ``wall_s`` (also ``timed_s``). Unlike every other contender's,
    **this** ``model_steps_per_s = n * steps / wall_s`` is wall-inclusive: compilation, initialization and
    the two evaluations count, since compilation is what mixing architectures trades against padded FLOPs
    (``model_steps_per_s_without_compile`` leaves the compile seconds out). ``target_s`` is not used: the
    steps are the plan's.

    The record also keeps ``compile_s`` (the groups' compile seconds summed), ``n_programs`` (the static
    groups: 1 here), ``mix_architectures``, ``auto_mixes`` (whether the default ``"auto"`` rule would mix
    these rows, :func:`auto_mixes`, checked after the timed call; ``auto_check_s`` its seconds),
    ``engine_run_s`` / ``engine_wall_s`` (summed over groups), ``n_blocks``, ``loop``, ``n_diverged`` and
    ``total_s`` (the whole function, data loading and the check included).
    """
    return _run_architectures(wl, n, steps, True, engine_options)


def run_jaxnets_split(wl: Workload, n: int, steps: int, target_s: float,
                      engine_options: dict[str, Any] | None = None, **_: Any) -> dict[str, Any]:
    """:func:`run_jaxnets_mixed` with ``engine.Options(mix_architectures=False)``: one static group, hence one
    compiled program, per architecture (``n_programs``: 8 for ``digits_mlp_archs`` at N >= 16), trained
    group after group in the same single ``engine.train`` call. The same record; ``model_steps_per_s`` is
    likewise wall-inclusive (``n * steps / wall_s``, compilation included)."""
    return _run_architectures(wl, n, steps, False, engine_options)


# --------------------------------------------------------------------------------------------------------
# (b), (c): one model at a time, written the way a competent JAX user would
# --------------------------------------------------------------------------------------------------------


class _Single:
    """One model's pieces: the same Flax model and sampling as the engine, plain ``optax.adam`` (``optax.sgd``
    for a workload whose ``optimizer`` is ``"sgd"``).

    A user's NNX model (``wl.model``) is used the way its author would in plain JAX: built once per variant
    from ``nnx.Rngs`` of the variant's init key, split into a graph definition and its state, and applied as
    ``nnx.merge(graphdef, params)(x)`` inside the jitted step. Its variants' learning rates differ, so Adam
    is ``optax.inject_hyperparams(optax.adam)``: the rate lives in the optimizer state and one compiled step
    serves every variant.
    """

    def __init__(self, wl: Workload, ds):
        import jax.numpy as jnp
        import optax

        self.wl, self.ds = wl, ds
        self._inits: dict[tuple[str, str], Any] = {}
        self.x = jnp.asarray(ds.x_train, jnp.float32)
        self.y = jnp.asarray(ds.y_train)
        self.n_train = len(ds.x_train)
        if wl.optimizer == "sgd":
            self.tx = optax.sgd(wl.learning_rate)
        elif wl.learning_rates:  # per-variant rates: in the optimizer state (set per variant by init)
            self.tx = optax.inject_hyperparams(optax.adam)(learning_rate=wl.learning_rates[0])
        else:
            self.tx = optax.adam(wl.learning_rate)  # eps 1e-8, as the engine's adam
        self.factory = wl.factory() if wl.model is not None else None
        self._graphdef: Any = None
        if ds.default_loss == "sparse_categorical_crossentropy":
            self.loss = lambda logits, y: optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        elif ds.default_loss == "mse":
            self.loss = lambda pred, y: jnp.mean(jnp.square(pred - y))
        else:  # pragma: no cover - no workload uses it
            raise ValueError(ds.default_loss)

    def _user_init(self, key):
        """A user's NNX model of init key ``key``: its parameters (an ``nnx.State``); keeps its graphdef."""
        from flax import nnx

        graphdef, params = nnx.split(self.factory(None, nnx.Rngs(params=key)))
        self._graphdef = graphdef
        return params

    def apply_fn(self, activation: str) -> Callable[[Any, Any], Any]:
        """``apply(params, x) -> outputs`` of the model with ``activation`` (a user's model: its own)."""
        if self.factory is None:
            model = self.model(activation)
            return lambda p, x: model.apply({"params": p}, x)
        from flax import nnx

        if self._graphdef is None:
            import jax

            jax.eval_shape(self._user_init, jax.random.key(0))  # sets the graphdef, computes nothing
        graphdef = self._graphdef
        return lambda p, x: nnx.merge(graphdef, p)(x)

    def model(self, activation: str, init: str = "lecun_normal"):
        from jaxnets.models import CNN, MLP, RNN

        wl, common = self.wl, {"output_dim": self.wl.output_dim, "activation": activation, "kernel_init": init}
        if wl.kind == "mlp":
            return MLP(hidden=wl.hidden, **common)
        if wl.kind == "cnn":
            return CNN(channels=wl.hidden, dense=wl.dense, **common)
        return RNN(hidden=wl.hidden, cell=wl.cell, many_to_many=self.ds.sequence_output, **common)

    def init(self, i: int):
        """Parameters and Adam state of variant ``i`` (same init and seed as the engine)."""
        import jax
        import jax.numpy as jnp

        v = self.wl.variant(i)
        k_init, k_data = _rng_keys(v["seed"])
        config = (v["activation"], v["init"])
        if self.factory is not None:
            if config not in self._inits:
                self._inits[config] = jax.jit(self._user_init)
            params = self._inits[config](k_init)
        else:
            if config not in self._inits:  # one jitted init per (activation, initializer), as a user would write
                self._inits[config] = jax.jit(self.model(*config).init)
            params = self._inits[config](k_init, jnp.zeros((1, *self.wl.input_shape), jnp.float32))["params"]
        opt_state = self.tx.init(params)
        if "learning_rate" in v:  # inject_hyperparams: this variant's rate, same structure and dtype
            rate = jnp.asarray(v["learning_rate"], opt_state.hyperparams["learning_rate"].dtype)
            opt_state.hyperparams["learning_rate"] = rate
        jax.block_until_ready((params, opt_state))
        return params, opt_state, k_data

    def step_fn(self, activation: str):
        """``step(params, opt_state, x, y, key, t) -> (params, opt_state, loss)`` for one model."""
        import jax
        import optax

        apply, tx, loss_fn, batch, n_train = (self.apply_fn(activation), self.tx, self.loss, self.wl.batch_size,
                                             self.n_train)

        def step(params, opt_state, x, y, key, t):
            idx = jax.random.randint(jax.random.fold_in(key, t), (batch,), 0, n_train)
            xb, yb = x[idx], y[idx]
            loss, grads = jax.value_and_grad(lambda p: loss_fn(apply(p, xb), yb))(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        return step


def _min_models(wl: Workload, n: int) -> int:
    return min(n, len(wl.contender_activations()))


HARD_CAP = 4.0  # one-at-a-time loops stop, even inside a model, once they have timed this many target_s


def _over_hard_cap(timed: float, target_s: float) -> bool:
    """A guard for busy machines, where a loop can run 100x slower than planned: the rate is then measured
    on the steps done so far (at least 10), and the record says ``time_boxed``."""
    return timed > HARD_CAP * target_s


def run_jax_loop(wl: Workload, n: int, steps: int, target_s: float, **_: Any) -> dict[str, Any]:
    """Models one after another; each step is a call of a jitted step function from a Python loop.

    One ``jax.jit`` step function per distinct activation (the only thing that changes the program; a
    competent user would not recompile per seed or initializer), parameters and optimizer state donated.
    ``compile_s``: the first call of each step function (trace + compile + one step), on throwaway state.
    Timed: the ``steps`` calls of each model, up to ``block_until_ready``; initialization not timed. Models
    are timed until ``target_s`` is spent (at least one of each activation), then the rate is scaled to
    ``n`` models (``extrapolated``). Past ``HARD_CAP * target_s`` the loop stops even inside a model
    (``time_boxed``). A user's model (``user_cnn``) is that NNX module, one step function for every variant
    (each variant's learning rate is in its optimizer state, see :class:`_Single`).
    """
    import jax

    steps = max(steps, LOOP_MIN_STEPS)
    ds = load_data(wl)
    s = _Single(wl, ds)
    fns: dict[str, Any] = {}
    compile_s = timed = 0.0
    done = model_steps = 0
    cut = False
    for i in range(n):
        act = wl.variant(i)["activation"]
        if act not in fns:
            fns[act] = jax.jit(s.step_fn(act), donate_argnums=(0, 1))
            p, o, k = s.init(i)
            tc = time.perf_counter()
            jax.block_until_ready(fns[act](p, o, s.x, s.y, k, 0))
            compile_s += time.perf_counter() - tc
        fn = fns[act]
        params, opt_state, key = s.init(i)
        t0 = time.perf_counter()
        t = 0
        while t < steps:
            params, opt_state, _loss = fn(params, opt_state, s.x, s.y, key, t)
            t += 1
            if t % 10 == 0 and _over_hard_cap(timed + time.perf_counter() - t0, target_s):
                jax.block_until_ready(params)
                break
        jax.block_until_ready(params)
        timed += time.perf_counter() - t0
        done += 1
        model_steps += t
        cut = cut or t < steps
        if (timed >= target_s and done >= _min_models(wl, n)) or _over_hard_cap(timed, target_s):
            break
    return {"model_steps_per_s": model_steps / timed, "compile_s": compile_s, "timed_s": timed,
            "steps": steps, "n_timed": done, "extrapolated": done < n or cut, "time_boxed": cut}


def run_jax_scan(wl: Workload, n: int, steps: int, target_s: float, **_: Any) -> dict[str, Any]:
    """Models one after another; each model's ``steps`` steps are one jitted ``lax.scan`` (one call).

    One compiled program per distinct activation (``jit(...).lower(...).compile()``, timed as
    ``compile_s``). Timed: the one call per model up to ``block_until_ready``; initialization not timed.
    Time-boxed and extrapolated to ``n`` models like ``jax_loop``.
    """
    import jax
    import jax.numpy as jnp

    steps = max(steps, LOOP_MIN_STEPS)
    ds = load_data(wl)
    s = _Single(wl, ds)
    progs: dict[str, Any] = {}
    compile_s = timed = 0.0
    done = 0
    for i in range(n):
        act = wl.variant(i)["activation"]
        params, opt_state, key = s.init(i)
        if act not in progs:
            step = s.step_fn(act)

            def train(params, opt_state, x, y, key, step=step):
                def body(carry, t):
                    p, o, loss = step(*carry, x, y, key, t)
                    return (p, o), loss

                (p, o), losses = jax.lax.scan(body, (params, opt_state), jnp.arange(steps))
                return p, o, losses

            tc = time.perf_counter()
            progs[act] = jax.jit(train, donate_argnums=(0, 1)).lower(params, opt_state, s.x, s.y, key).compile()
            compile_s += time.perf_counter() - tc
        t0 = time.perf_counter()
        jax.block_until_ready(progs[act](params, opt_state, s.x, s.y, key))
        timed += time.perf_counter() - t0
        done += 1
        if timed >= target_s and done >= _min_models(wl, n):
            break
    return {"model_steps_per_s": done * steps / timed, "compile_s": compile_s, "timed_s": timed,
            "steps": steps, "n_timed": done, "extrapolated": done < n}


# --------------------------------------------------------------------------------------------------------
# (d) jax_vmap: N models in one hand-written jit(vmap(train)), train = lax.scan over one model's steps
# --------------------------------------------------------------------------------------------------------

VMAP_MAX_CALLS = 100  # jax_vmap: at most this many timed calls of the compiled program


def vmap_program(wl: Workload, ds, n: int, steps: int) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """The program a skilled JAX user writes by hand for ``n`` models of ``wl``, and its inputs.

    ``train(params, opt_state, x, y, key)`` trains ONE model: ``lax.scan`` over ``steps`` steps of the
    workload's Flax model (``jaxnets.models``, default ``lax.dot_general``) with the workload's first
    activation and first initializer (``wl.variant(0)``, the same for all ``n`` models), plain
    ``optax.adam``, a minibatch of ``batch_size`` random indices per step drawn on the device from the model's
    own key (as the other contenders draw them). The program is ``jax.jit(jax.vmap(train))`` over the models
    (data shared, not batched), parameters and optimizer state donated. No diagnostics, no evaluation, no
    per-model hyperparameters: what a user who needs only N seeds of one configuration would write.

    Model ``i`` is initialized (``jax.vmap`` of ``model.init``) and samples its minibatches from the keys of
    seed ``wl.variant(i)["seed"]``, as in ``jax_loop``.

    Args:
      wl: the workload.
      ds: its data set (:func:`benchmarks.workloads.load_data`).
      n: number of models.
      steps: training steps per model in one call.

    Returns:
      ``(train, args)``: the jitted (not yet compiled) program and its inputs ``(params, opt_state, x, y,
      keys)``, every array but ``x`` and ``y`` with a leading model axis of size ``n``.
      ``train(*args)`` returns ``(params, opt_state, losses)``, ``losses`` of shape ``[n, steps]`` (each
      step's minibatch loss, before that step's update).
    """
    import jax
    import jax.numpy as jnp

    s = _Single(wl, ds)
    first = wl.variant(0)
    model, step = s.model(first["activation"], first["init"]), s.step_fn(first["activation"])
    seeds = jnp.asarray([wl.variant(i)["seed"] for i in range(n)], jnp.int32)
    example = jnp.zeros((1, *wl.input_shape), jnp.float32)

    def init_one(seed: jax.Array) -> tuple[Any, Any, jax.Array]:
        k_init, k_data = _rng_keys(seed)
        params = model.init(k_init, example)["params"]
        return params, s.tx.init(params), k_data

    params, opt_state, keys = jax.jit(jax.vmap(init_one))(seeds)

    def train(params: Any, opt_state: Any, x: jax.Array, y: jax.Array, key: jax.Array) -> tuple[Any, Any, jax.Array]:
        def body(carry: tuple[Any, Any], t: jax.Array) -> tuple[tuple[Any, Any], jax.Array]:
            p, o, loss = step(*carry, x, y, key, t)
            return (p, o), loss

        (p, o), losses = jax.lax.scan(body, (params, opt_state), jnp.arange(steps))
        return p, o, losses

    program = jax.jit(jax.vmap(train, in_axes=(0, 0, None, None, 0)), donate_argnums=(0, 1))
    jax.block_until_ready((params, opt_state, keys))
    return program, (params, opt_state, s.x, s.y, keys)


def run_jax_vmap(wl: Workload, n: int, steps: int, target_s: float, **_: Any) -> dict[str, Any]:
    """All ``n`` models in one hand-written ``jax.jit(jax.vmap(train))`` program (see :func:`vmap_program`).

    ``compile_s``: ``jit(...).lower(...).compile()``. Then one untimed warm-up call (``warmup_s``; the first
    call of an executable is slower, and jaxnets' warm-up chunk is excluded too). Timed: calls of the compiled
    program (``steps`` steps of every model each, continuing from the previous call's parameters) up to
    ``block_until_ready``, repeated until ``target_s`` is spent (at most ``VMAP_MAX_CALLS``); initialization
    not timed. All ``n`` models run, so nothing is extrapolated: ``model_steps_per_s = n * steps * calls /
    timed_s``. The record also keeps the mean minibatch loss over the models at the first step of training
    (``loss_first``) and at the last step timed (``loss_last``).

    Args:
      wl: the workload.
      n: number of models.
      steps: steps per model in one call.
      target_s: seconds of timed calls to aim at.

    Returns:
      The record's contender fields (see the module docstring), plus ``n_calls``, ``call_s``, ``warmup_s``,
      ``activation``, ``init``, ``loss_first`` and ``loss_last``.
    """
    import jax
    import numpy as np

    ds = load_data(wl)
    program, (params, opt_state, x, y, keys) = vmap_program(wl, ds, n, steps)
    tc = time.perf_counter()
    compiled = program.lower(params, opt_state, x, y, keys).compile()
    compile_s = time.perf_counter() - tc
    t0 = time.perf_counter()
    params, opt_state, losses = jax.block_until_ready(compiled(params, opt_state, x, y, keys))
    warmup_s = time.perf_counter() - t0
    loss_first = float(np.mean(np.asarray(losses)[:, 0]))
    timed, call_s = 0.0, []
    while not call_s or (timed < target_s and len(call_s) < VMAP_MAX_CALLS):
        t0 = time.perf_counter()
        params, opt_state, losses = jax.block_until_ready(compiled(params, opt_state, x, y, keys))
        call_s.append(time.perf_counter() - t0)
        timed += call_s[-1]
    calls = len(call_s)
    return {"model_steps_per_s": n * steps * calls / timed, "compile_s": compile_s, "timed_s": timed,
            "steps": steps, "n_timed": n, "extrapolated": False, "n_calls": calls, "call_s": call_s,
            "warmup_s": warmup_s, "activation": wl.variant(0)["activation"], "init": wl.variant(0)["init"],
            "loss_first": loss_first, "loss_last": float(np.mean(np.asarray(losses)[:, -1]))}
