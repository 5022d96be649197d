"""What a training run returns: stacked parameters, metric histories, per-variant summaries.

Arrays are indexed by variant in the order the variants were given. Histories have shape [V, E] (scalar
metrics) or [V, E, L] (per-layer metrics, input side first); where groups differ in their number of
evaluations or layers, the shorter ones are padded with NaN. Evaluations after a variant stopped or
diverged repeat its last values; ``status`` says which.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

STATUS_NAMES = ("ok", "diverged", "early_stopped")


@dataclasses.dataclass
class GroupResult:
    """One static group's results; ``indices`` place its rows among all variants.

    ``params`` is the group's parameter pytree with a leading [V_group] axis; ``history`` maps metric name to
    [V_group, E] or [V_group, E, L]; ``compile_s`` is the time spent compiling, ``run_s`` the time spent
    running the compiled programs (init, training steps and evaluations), ``wall_s`` the whole group's
    time (compilation and data transfer included); ``n_programs`` the number of chunks the group ran as.
    """

    spec: Any
    indices: np.ndarray
    rows: list[dict[str, Any]]
    params: Any
    status: np.ndarray
    stopped_step: np.ndarray
    best_val_loss: np.ndarray
    history: dict[str, np.ndarray]
    eval_steps: np.ndarray
    compile_s: float
    run_s: float
    wall_s: float
    n_programs: int


def _place(parts: list[tuple[np.ndarray, np.ndarray]], n: int) -> np.ndarray:
    """Scatter per-group arrays [v_g, ...] into one [n, ...] array, NaN-padding trailing axes."""
    shape = tuple(max(a.shape[d] for _, a in parts) for d in range(1, parts[0][1].ndim))
    out = np.full((n, *shape), np.nan, np.float64)
    for idx, a in parts:
        out[(idx, *(slice(0, s) for s in a.shape[1:]))] = a
    return out


@dataclasses.dataclass
class Result:
    """All variants' results. Build with :meth:`from_groups`; see the module docstring for shapes."""

    groups: list[GroupResult]
    rows: list[dict[str, Any]]
    group_of: np.ndarray  # [V] group index of each variant
    status: np.ndarray  # [V] str
    stopped_step: np.ndarray  # [V] int
    best_val_loss: np.ndarray  # [V]
    history: dict[str, np.ndarray]  # metric -> [V, E] / [V, E, L]
    eval_steps: np.ndarray  # [E] of the group with the most evaluations
    eval_step: np.ndarray  # [V, E] each variant's own evaluation steps (NaN-padded)

    @classmethod
    def from_groups(cls, groups: list[GroupResult], n_variants: int) -> Result:
        """Assemble group results into one result in the callers' variant order."""
        rows: list[dict[str, Any]] = [{}] * n_variants
        group_of = np.zeros(n_variants, np.int64)
        for gi, g in enumerate(groups):
            for i, row in zip(g.indices, g.rows, strict=True):
                rows[i] = row
            group_of[g.indices] = gi
        place = lambda get: _place([(g.indices, np.asarray(get(g))) for g in groups], n_variants)  # noqa: E731
        status_code = place(lambda g: g.status).astype(int)
        longest = max(groups, key=lambda g: len(g.eval_steps))
        return cls(
            groups=groups,
            rows=rows,
            group_of=group_of,
            status=np.array([STATUS_NAMES[c] for c in status_code]),
            stopped_step=place(lambda g: g.stopped_step).astype(int),
            best_val_loss=place(lambda g: g.best_val_loss),
            history={k: place(lambda g, k=k: g.history[k]) for k in groups[0].history},
            eval_steps=np.asarray(longest.eval_steps),
            eval_step=place(lambda g: np.broadcast_to(g.eval_steps, (len(g.indices), len(g.eval_steps)))),
        )

    def __len__(self) -> int:
        return len(self.rows)

    def params(self, i: int) -> Any:
        """Parameters of variant ``i`` (a pytree without the variant axis)."""
        g = self.groups[self.group_of[i]]
        j = int(np.flatnonzero(g.indices == i)[0])
        return jax.tree.map(lambda a: a[j], g.params)

    def final(self, metric: str) -> np.ndarray:
        """The last evaluation's value of a scalar metric, [V]."""
        h = self.history[metric]
        last = np.array([len(self.groups[gi].eval_steps) - 1 for gi in self.group_of])
        return h[np.arange(len(self)), last]

    def group_wall_s(self) -> np.ndarray:
        """Wall time of each variant's group, [V]."""
        return np.array([self.groups[gi].wall_s for gi in self.group_of])

    def summary(self) -> list[dict[str, Any]]:
        """One dict per variant: its hyperparameters, status and final/best values."""
        out = []
        final = {k: self.final(k) for k in ("train_loss", "val_loss", "val_accuracy")}
        wall = self.group_wall_s()
        for i, row in enumerate(self.rows):
            acc = final["val_accuracy"][i]
            out.append({
                "variant": i,
                **{k: (list(v) if isinstance(v, tuple) else v) for k, v in row.items()},
                "status": str(self.status[i]),
                "stopped_step": int(self.stopped_step[i]),
                "final_train_loss": float(final["train_loss"][i]),
                "final_val_loss": float(final["val_loss"][i]),
                "best_val_loss": float(self.best_val_loss[i]),
                "val_accuracy": None if np.isnan(acc) else float(acc),
                "group": int(self.group_of[i]),
                "group_wall_s": float(wall[i]),
            })
        return out

    def to_dataframe(self):
        """A pandas DataFrame with one row per variant (needs pandas: ``pip install jaxnets[cli]``)."""
        import pandas as pd

        return pd.DataFrame(self.summary())
