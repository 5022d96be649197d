"""The training half of a per-variant program: minibatches, guarded steps, the evaluation rules.

:class:`TrainingSteps` is what :class:`jaxnets.engine.programs.Program` inherits for training: every method is
a pure function of ONE variant. It reads the program's ``spec``, ``n_train``, ``adapter``, ``hyper``,
``data_loss``, ``optimizer``, ``evaluate`` and ``test_metrics``.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

from jaxnets import schedules
from jaxnets.engine.state import DIVERGED, EARLY_STOPPED, OK, TrainState, all_finite, tree_where

__all__ = ["TrainingSteps"]


class TrainingSteps:
    """Minibatch indices, the guarded training step, ``eval_every`` steps in a scan, and the divergence /
    early-stopping rules after an evaluation (see :mod:`jaxnets.engine.programs` for what they do)."""

    def batch_indices(self, first_step: jax.Array, hp: Mapping[str, jax.Array], n: int | None = None
                      ) -> jax.Array:
        """Minibatch indices [n, batch_size] of steps ``first_step, first_step + 1, ...`` (``n``: default
        ``eval_every``) into the training split (``N`` examples, ``B = batch_size``), drawn from
        ``base = fold_in(key(seed), 1)`` — with ``shared_data``, ``fold_in(key(data_seed), 1)``, the same for
        every variant of the group (common random numbers):

        * ``sampling = "epoch"``: with ``P = N // B`` steps per epoch, step ``t`` takes the examples
          ``perm[(t % P) * B : (t % P + 1) * B]`` of ``perm = permutation(fold_in(base, t // P), N)`` (each
          example once per epoch, a fresh order each epoch; the last ``N - P * B`` examples of each order are
          left out). ``B == N`` is full-batch gradient descent: every step takes all examples, in order;
        * ``sampling = "replacement"``: step ``t`` draws ``B`` indices uniformly with replacement,
          ``randint(fold_in(base, t), (B,), 0, N)``.

        A whole chunk's indices are drawn at once, before its ``lax.scan`` (one permutation per epoch it
        touches), which is faster than one small draw per step.
        """
        seed = self.spec.data_seed if self.spec.shared_data else hp["seed"]
        base = jax.random.fold_in(jax.random.key(seed), 1)
        n = self.spec.eval_every if n is None else n
        steps = first_step + jnp.arange(n, dtype=jnp.int32)
        size, n_train = self.spec.batch_size, self.n_train
        if self.spec.sampling == "replacement":
            draw = lambda t: jax.random.randint(jax.random.fold_in(base, t), (size,), 0, n_train)  # noqa: E731
            return jax.vmap(draw)(steps)
        if size >= n_train:
            return jnp.broadcast_to(jnp.arange(n_train, dtype=jnp.int32), (n, n_train))
        per = n_train // size
        first_epoch = jnp.asarray(first_step, jnp.int32) // per
        n_epochs = min(n, (n - 1) // per + 2)  # the epochs n consecutive steps can touch
        perms = jax.vmap(lambda e: jax.random.permutation(jax.random.fold_in(base, e), n_train))(
            first_epoch + jnp.arange(n_epochs, dtype=jnp.int32))
        take = lambda t: jax.lax.dynamic_slice(perms[t // per - first_epoch], ((t % per) * size,), (size,))  # noqa: E731
        return jax.vmap(take)(steps).astype(jnp.int32)

    def learning_rate(self, step: jax.Array, hp: Mapping[str, jax.Array]) -> jax.Array:
        """The learning rate in effect at ``step`` (the rate of the update that step makes): the variant's
        ``learning_rate`` times its schedule (:func:`jaxnets.schedules.rate`), as the history reports it."""
        return schedules.rate(self.spec.schedule, step, hp)

    def step(self, state: TrainState, hp: Mapping[str, jax.Array], data: Mapping[str, jax.Array],
             idx: jax.Array) -> TrainState:
        """One training step on the minibatch ``idx`` [batch_size] of the training split, guarded: a step whose
        loss or new parameters are not finite marks the variant diverged and leaves its parameters as they
        were; a variant that is not training (stopped, diverged, finished) keeps its parameters."""
        return self._step(state, hp, data, idx, guard=True)[0]

    def _step(self, state: TrainState, hp: Mapping[str, jax.Array], data: Mapping[str, jax.Array],
              idx: jax.Array, guard: bool | jax.Array) -> tuple[TrainState, jax.Array]:
        """:meth:`step` with the divergence guard on (``guard`` True), or off: no check of the new parameters,
        no freezing of inactive variants, the new values are taken as they are. ``guard`` may be a traced
        unbatched bool (a ``lax.cond``: one compiled step for both). Returns ``(state, finite)``: whether the
        loss was finite."""
        spec = self.spec
        h = self.hyper(hp)
        base = jax.random.key(hp["seed"])
        xb, yb = data["x_train"][idx], data["y_train"][idx]
        rng = jax.random.fold_in(jax.random.fold_in(base, 2), state.step)

        def objective(params):
            out, model_state, _ = self.adapter.apply(params, state.model_state, h, xb, train=True, rng=rng)
            loss = self.data_loss(out, yb)
            if spec.use_l2:
                kernels = [p["kernel"] for p in jax.tree.leaves(params, is_leaf=lambda t: "kernel" in t)
                           if isinstance(p, Mapping)]
                loss = loss + 0.5 * hp["l2"] * sum(jnp.sum(jnp.square(k)) for k in kernels)
            return loss, model_state

        (loss, model_state), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
        tx = self.optimizer(hp, state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = jax.tree.map(jnp.add, state.params, updates)
        active = (state.status == OK) & (state.step < spec.steps)

        def guarded(params, model_state):
            # Non-finite gradients always reach the new parameters (NaN / inf through every optimizer, clipping
            # and decay stage: inf * 0, inf / inf and lr * NaN are NaN), so checking those covers both.
            finite = jnp.isfinite(loss) & all_finite(params) & all_finite(model_state)
            take = active & finite
            # Only the parameters (and the model's state, e.g. batch statistics) are masked: a frozen (diverged
            # / stopped / finished) variant's optimizer state may keep moving, but it never touches its
            # parameters again. Masking the optimizer state too would cost two more parameter-sized passes.
            return (tree_where(take, params, state.params), tree_where(take, model_state, state.model_state),
                    active & ~finite)

        def unguarded(params, model_state):
            return params, model_state, jnp.bool_(False)

        if guard is True or guard is False:
            params, model_state, diverged = (guarded if guard else unguarded)(params, model_state)
        else:
            params, model_state, diverged = jax.lax.cond(guard, guarded, unguarded, params, model_state)
        return state._replace(params=params, model_state=model_state, opt_state=opt_state, step=state.step + 1,
                              status=jnp.where(diverged, DIVERGED, state.status),
                              stopped_step=jnp.where(diverged, state.step, state.stopped_step)), jnp.isfinite(loss)

    def steps(self, state: TrainState, hp: Mapping[str, jax.Array], data: Mapping[str, jax.Array],
              first_step: jax.Array | None = None, guard: bool | jax.Array = True, n: int | None = None
              ) -> tuple[TrainState, jax.Array]:
        """``eval_every`` (or ``n``) training steps of one variant in a ``lax.scan``: ``(state, finite)``.

        ``guard`` True: every step is :meth:`step` (guarded) and ``finite`` is True. ``guard`` False: the steps
        run unguarded (no per-step parameter check, no masked update) and ``finite`` says whether every loss
        and the final parameters and model state are finite. A variant that was not training at the start
        (diverged, stopped) gets its parameters and model state back at the end, and counts as finite. When
        ``finite`` is True and the chunk does not pass ``steps``, the state equals the guarded steps' bit for
        bit, except a frozen variant's optimizer state (which never reaches its parameters again). ``guard``
        may be a traced unbatched bool. ``first_step``: see :meth:`chunk`.
        """
        start = first_step if self.spec.shared_data and first_step is not None else state.step
        idx = self.batch_indices(start, hp, n)

        def body(carry, i):
            s, ok = carry
            s, finite = self._step(s, hp, data, i, guard)
            return (s, ok & finite), None

        start_state = state
        (state, ok), _ = jax.lax.scan(body, (state, jnp.bool_(True)), idx)
        if guard is True:
            return state, jnp.bool_(True)
        # a variant that was not training (diverged, stopped) gets its parameters back: as if frozen throughout
        # (guarded steps leave them as they are, so this changes nothing there); its losses do not count
        training = start_state.status == OK
        state = state._replace(params=tree_where(training, state.params, start_state.params),
                               model_state=tree_where(training, state.model_state, start_state.model_state))
        return state, guard | ~training | (ok & all_finite(state.params) & all_finite(state.model_state))

    def after_eval(self, state: TrainState, hp, data, was_ok: jax.Array, first: jax.Array, final: jax.Array
                   ) -> tuple[TrainState, dict]:
        """Evaluate, then apply divergence / early-stopping rules; report repeated values once stopped.

        ``was_ok``: the variant was training at the start of the chunk; ``first``: this is evaluation 0;
        ``final``: the last evaluation (the test split is evaluated then, once).
        """
        spec = self.spec
        m = {**self.evaluate(state.params, hp, data, state.model_state),
             "learning_rate": self.learning_rate(state.step, hp)}
        ok = state.status == OK
        # a finite blow-up (training loss above divergence_factor x its evaluation-0 loss) counts as divergence
        factor = hp["divergence_factor"]
        blown = ~first & (factor > 0) & (m["train_loss"] > factor * state.loss0)
        finite = jnp.isfinite(m["val_loss"]) & jnp.isfinite(m["train_loss"]) & ~blown
        status = jnp.where(ok & ~finite, DIVERGED, state.status)
        stopped_step = jnp.where(ok & ~finite, jnp.minimum(state.step, spec.steps), state.stopped_step)
        improved = ok & finite & (m["val_loss"] < state.best_val)
        best_val = jnp.where(improved, m["val_loss"], state.best_val)
        variables, best, bad = (state.params, state.model_state), state.best_params, state.bad_evals
        if spec.early_stopping_patience > 0:
            best = tree_where(improved, variables, best)
            bad = jnp.where(improved, 0, jnp.where(ok, bad + 1, bad))
            stop = ok & finite & (bad >= spec.early_stopping_patience) & (state.step < spec.steps)
            status = jnp.where(stop, EARLY_STOPPED, status)
            stopped_step = jnp.where(stop, state.step, stopped_step)
            variables = tree_where(stop, best, variables)
        # once a variant has stopped or diverged, and at the evaluation where it diverges, report its last
        # (finite) values again
        reported = tree_where((was_ok & finite) | first, m, state.last)
        new = state._replace(params=variables[0], model_state=variables[1], status=status,
                             stopped_step=stopped_step, best_val=best_val, bad_evals=bad, best_params=best,
                             last=reported, loss0=jnp.where(first, m["train_loss"], state.loss0))
        nan = {"test_loss": jnp.float32(jnp.nan), "test_accuracy": jnp.float32(jnp.nan)}
        test = jax.lax.cond(final, lambda: self.test_metrics(new.params, new.model_state, hp, data), lambda: nan)
        return new, {**reported, **test}

    def chunk(self, state: TrainState, hp, data, train: jax.Array, final: jax.Array = False,
              first_step: jax.Array | None = None) -> tuple[TrainState, dict]:
        """``eval_every`` steps in a ``lax.scan`` (none when ``train`` is False), then one evaluation.

        ``train`` is one unbatched bool for all variants: ``False`` gives evaluation 0 from the same compiled
        program (a ``lax.cond``, so no steps are computed); ``final`` (unbatched bool) adds the test split's
        metrics (``test_loss``, ``test_accuracy``; NaN otherwise). ``first_step``: the chunk's first step as an
        unbatched scalar (every variant's ``state.step``; default: ``state.step``): with ``shared_data`` the
        minibatches then stay unbatched under ``vmap``, so the first layer of a block is one large matmul.
        """
        was_ok = state.status == OK
        state = jax.lax.cond(train, lambda s: self.steps(s, hp, data, first_step)[0], lambda s: s, state)
        return self.after_eval(state, hp, data, was_ok, first=~jnp.asarray(train), final=jnp.asarray(final))

    def train_chunk(self, state: TrainState, hp: Mapping[str, jax.Array], data: Mapping[str, jax.Array],
                    first_step: jax.Array | None = None) -> tuple[TrainState, dict]:
        """``eval_every`` training steps of one variant, then one evaluation: ``(new state, metrics)``
        (``first_step``: see :meth:`chunk`)."""
        return self.chunk(state, hp, data, True, False, first_step)
