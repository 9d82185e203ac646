"""Steps-examples trade-off (McCandlish et al. 2018).

With ``S`` optimisation steps and ``E`` training examples to reach a target
loss, the empirical model is

    (S / S_min - 1) * (E / E_min - 1) = 1,   B_crit = E_min / S_min.

Writing ``B = E / S`` for each run, the hyperbola is equivalent to
``S(B) = S_min + E_min / B`` (and ``E(B) = E_min + S_min * B``). We fit that
form in log space: at a run's own batch size an error in ``log S`` equals the
error in ``log E`` (``log E = log S + log B``), so the fit treats steps and
examples symmetrically. It is the alpha = 1 steps curve of ``fits`` with
``a = S_min`` and ``b = E_min``.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from bsjax.cbs.fits import (
    CurveFitError,
    Interval,
    _as_positive_array,
    best_per_batch_size,
    fit_inverse_power,
)


@dataclasses.dataclass(frozen=True)
class TradeoffFit:
    """Fitted ``S_min``, ``E_min`` and ``B_crit = E_min / S_min``.

    ``residuals`` are ``log S_measured - log S_fitted`` (equal to those of
    ``log E``) per distinct batch size ``E / S``.
    """

    s_min: float
    e_min: float
    b_crit: float
    residuals: tuple[float, ...]
    n_points: int
    ci: dict[str, Interval] = dataclasses.field(default_factory=dict)
    n_bootstrap: int = 0

    def steps(self, batch_size) -> np.ndarray:
        """Fitted steps to target at ``batch_size``: ``S_min (1 + B_crit / B)``."""
        return self.s_min + self.e_min / np.asarray(batch_size, dtype=float)

    def examples(self, batch_size) -> np.ndarray:
        """Fitted examples to target at ``batch_size``: ``E_min (1 + B / B_crit)``."""
        return self.e_min + self.s_min * np.asarray(batch_size, dtype=float)

    def examples_at_steps(self, steps) -> np.ndarray:
        """``E(S) = E_min * S / (S - S_min)`` for ``S > S_min`` (inf at or below)."""
        s_arr = np.asarray(steps, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = self.e_min * s_arr / (s_arr - self.s_min)
        return np.where(s_arr > self.s_min, out, np.inf)

    def to_dict(self) -> dict:
        return {
            "s_min": self.s_min,
            "e_min": self.e_min,
            "b_crit": self.b_crit,
            "residuals": list(self.residuals),
            "n_points": self.n_points,
            "ci": {k: v.to_dict() for k, v in self.ci.items()},
            "n_bootstrap": self.n_bootstrap,
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)


def fit_tradeoff(
    steps, examples, *, bootstrap: int = 0, seed: int = 0, ci_level: float = 0.95
) -> TradeoffFit:
    """Fit ``(S/S_min - 1)(E/E_min - 1) = 1`` to (steps, examples) pairs, one per run.

    Runs at the same batch size ``E / S`` keep the one with the fewest steps.
    Needs at least 3 distinct batch sizes. ``bootstrap`` resamples runs with
    replacement (seeded) for percentile intervals on ``s_min``, ``e_min`` and
    ``b_crit``.
    """
    s_arr = _as_positive_array(steps, "steps")
    e_arr = _as_positive_array(examples, "examples")
    if s_arr.shape != e_arr.shape:
        raise CurveFitError(
            f"steps and examples must have the same length, got {s_arr.size} and {e_arr.size}"
        )
    if bootstrap < 0:
        raise CurveFitError(f"bootstrap must be >= 0 resamples, got {bootstrap}")
    batch = e_arr / s_arr
    b_u, s_u = best_per_batch_size(batch, s_arr)
    if b_u.size < 3:
        raise CurveFitError(
            f"need at least 3 distinct batch sizes (examples / steps) to fit the trade-off, got {b_u.size}"
        )
    s_min, e_min, _, resid = fit_inverse_power(b_u, s_u, 1.0)
    ci: dict[str, Interval] = {}
    # With exactly 3 distinct sizes every usable resample is the full set: no interval.
    if bootstrap and b_u.size > 3:
        rng = np.random.default_rng(seed)
        rows = []
        for _ in range(20 * bootstrap):
            if len(rows) == bootstrap:
                break
            idx = rng.integers(0, batch.size, size=batch.size)
            bb, ss = best_per_batch_size(batch[idx], s_arr[idx])
            if bb.size < 3:
                continue
            s_b, e_b, _, _ = fit_inverse_power(bb, ss, 1.0, init=(s_min, e_min))
            rows.append((s_b, e_b, e_b / s_b))
        samples = np.array(rows)
        lo, hi = 100 * (1 - ci_level) / 2, 100 * (1 + ci_level) / 2
        for i, name in enumerate(("s_min", "e_min", "b_crit")):
            ci[name] = Interval(
                float(np.percentile(samples[:, i], lo)),
                float(np.percentile(samples[:, i], hi)),
                ci_level,
            )
    return TradeoffFit(
        s_min=float(s_min),
        e_min=float(e_min),
        b_crit=float(e_min / s_min),
        residuals=tuple(float(r) for r in resid),
        n_points=int(b_u.size),
        ci=ci,
        n_bootstrap=int(bootstrap) if ci else 0,
    )


__all__ = ["TradeoffFit", "fit_tradeoff"]
