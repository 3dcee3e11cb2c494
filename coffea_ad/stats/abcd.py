"""ABCD background estimate from two (decorrelated) variables, with a closure test.

Regions for cuts x >= x_cut and y >= y_cut (x: e.g. the anomaly score, y: a second, independent
discriminant)::

            y >= y_cut | y < y_cut
    x >= x_cut   A     |    B
    x <  x_cut   C     |    D

A is the signal region. If x and y are independent for the background, N_A = N_B N_C / N_D. The relative
uncertainty of the prediction adds those of B, C and D in quadrature (Poisson, or the sums of squared
weights). The closure test compares the prediction with the actual background count in A.

References:
    ABCD with decorrelated classifiers (DisCo): Kasieczka, Nachman, Schwartz, Shih, arXiv:2007.14400;
    DisCo: Kasieczka, Shih, arXiv:2001.05310; review: Karagiorgi et al., arXiv:2112.03769.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import norm

from coffea_ad.errors import ConfigurationError

__all__ = ["REGIONS", "AbcdPrediction", "ClosureTest", "abcd_counts", "abcd_prediction", "abcd_closure", "closure_test"]

logger = logging.getLogger(__name__)

REGIONS = ("A", "B", "C", "D")


@dataclass(frozen=True)
class AbcdPrediction:
    """N_A = N_B N_C / N_D and its one-standard-deviation uncertainty."""

    value: float
    uncertainty: float
    n_b: float
    n_c: float
    n_d: float

    def to_dict(self) -> dict:
        return {"predicted_A": self.value, "uncertainty": self.uncertainty, "B": self.n_b, "C": self.n_c, "D": self.n_d}


@dataclass(frozen=True)
class ClosureTest:
    """Prediction in A against the count in A (on background only: the estimate closes if |pull| is small)."""

    prediction: AbcdPrediction
    observed: float
    observed_uncertainty: float
    pull: float
    p_value: float
    threshold: float

    @property
    def ratio(self) -> float:
        return self.observed / self.prediction.value

    @property
    def closes(self) -> bool:
        return abs(self.pull) < self.threshold

    def to_dict(self) -> dict:
        return {
            **self.prediction.to_dict(),
            "observed_A": self.observed,
            "observed_uncertainty": self.observed_uncertainty,
            "ratio": self.ratio,
            "pull": self.pull,
            "p_value": self.p_value,
            "closes": self.closes,
        }


def abcd_counts(
    x: ArrayLike, y: ArrayLike, x_cut: float, y_cut: float, *, weights: ArrayLike | None = None
) -> dict[str, tuple[float, float]]:
    """Sum of weights and sum of squared weights in each region: ``{"A": (sumw, sumw2), ...}``."""
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ConfigurationError(f"x has {x.size} entries but y has {y.size}")
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if w.shape != x.shape:
        raise ConfigurationError(f"weights has {w.size} entries but x has {x.size}")
    x_pass, y_pass = x >= x_cut, y >= y_cut
    masks = {"A": x_pass & y_pass, "B": x_pass & ~y_pass, "C": ~x_pass & y_pass, "D": ~x_pass & ~y_pass}
    return {name: (float(w[mask].sum()), float((w[mask] ** 2).sum())) for name, mask in masks.items()}


def abcd_prediction(
    n_b: float,
    n_c: float,
    n_d: float,
    *,
    var_b: float | None = None,
    var_c: float | None = None,
    var_d: float | None = None,
) -> AbcdPrediction:
    """N_A = N_B N_C / N_D; variances default to Poisson (the counts themselves).

    References:
        Kasieczka, Nachman, Schwartz, Shih, arXiv:2007.14400.
    """
    counts = {"B": float(n_b), "C": float(n_c), "D": float(n_d)}
    for name, value in counts.items():
        if not value > 0:
            raise ConfigurationError(f"the ABCD estimate needs a positive count in region {name}, got {value:g}")
    variances = {
        "B": counts["B"] if var_b is None else float(var_b),
        "C": counts["C"] if var_c is None else float(var_c),
        "D": counts["D"] if var_d is None else float(var_d),
    }
    value = counts["B"] * counts["C"] / counts["D"]
    relative = np.sqrt(sum(variances[k] / counts[k] ** 2 for k in counts))
    return AbcdPrediction(
        value=value, uncertainty=float(value * relative), n_b=counts["B"], n_c=counts["C"], n_d=counts["D"]
    )


def closure_test(counts: dict[str, tuple[float, float]], *, threshold: float = 3.0) -> ClosureTest:
    """Closure test from ``{"A": (sumw, sumw2), "B": ..., "C": ..., "D": ...}`` (background only).

    The pull is (N_A − N_A^pred) / sqrt(σ_pred² + σ_A²); the test passes when |pull| < ``threshold``.
    """
    missing = [name for name in REGIONS if name not in counts]
    if missing:
        raise ConfigurationError(f"the closure test needs the counts of regions {', '.join(missing)}")
    prediction = abcd_prediction(
        counts["B"][0], counts["C"][0], counts["D"][0], var_b=counts["B"][1], var_c=counts["C"][1], var_d=counts["D"][1]
    )
    observed, observed_var = float(counts["A"][0]), float(counts["A"][1])
    pull = (observed - prediction.value) / np.sqrt(prediction.uncertainty**2 + observed_var)
    logger.info(
        "ABCD closure: predicted %.1f ± %.1f, observed %.1f, pull %.2f",
        prediction.value,
        prediction.uncertainty,
        observed,
        pull,
    )
    return ClosureTest(
        prediction=prediction,
        observed=observed,
        observed_uncertainty=float(np.sqrt(observed_var)),
        pull=float(pull),
        p_value=float(2 * norm.sf(abs(pull))),
        threshold=threshold,
    )


def abcd_closure(
    x: ArrayLike, y: ArrayLike, x_cut: float, y_cut: float, *, weights: ArrayLike | None = None, threshold: float = 3.0
) -> ClosureTest:
    """Closure test on background events: predict A from B, C, D and compare with the count in A."""
    return closure_test(abcd_counts(x, y, x_cut, y_cut, weights=weights), threshold=threshold)
