"""A score threshold that depends on the resonant variable: the same background fraction in every ``mjj`` bin.

:class:`MassDependentThreshold` (numpy; scipy to fit) is a polynomial quantile regression of the score in
``mjj``, i.e. a cut that keeps the same fraction (e.g. 1 %) of background in every ``mjj`` bin, so that the
selected spectrum keeps the smooth shape a bump hunt fits.

References:
    Cerri et al., arXiv:1811.10276 and its CHEP 2019 talk (mjj-dependent 1 % quantile cut on the VAE loss).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from coffea_ad.errors import ConfigurationError, InputFileError
from coffea_ad.paths import write_json

__all__ = ["MassDependentThreshold"]


class MassDependentThreshold:
    """A score threshold that depends on ``mjj`` and keeps ``efficiency`` of the background in every ``mjj`` bin.

    Quantile regression of the score on a polynomial of the standardised ``mjj`` at quantile
    ``1 - efficiency``: the check (pinball) loss, smoothed with a softplus of width ``smoothing`` times the
    score's spread so that L-BFGS applies, over all events (an exact linear program is far slower at the
    10^5 events a 1 % quantile needs). Fit it on background-dominated events (sidebands, a control region,
    or all data when the signal is small); evaluating it needs numpy only.

    Example:
        >>> cut = MassDependentThreshold(efficiency=0.01).fit(scores, mjj)
        >>> selected = cut.passes(scores, mjj)
    """

    def __init__(self, efficiency: float = 0.01, degree: int = 3, smoothing: float = 1e-3) -> None:
        if not 0.0 < efficiency < 1.0:
            raise ConfigurationError(f"efficiency must be in (0, 1), got {efficiency}")
        if degree < 0:
            raise ConfigurationError(f"degree must be >= 0, got {degree}")
        self.efficiency = efficiency
        self.degree = degree
        self.smoothing = smoothing

    def _design(self, mass: np.ndarray) -> np.ndarray:
        u = (np.asarray(mass, dtype=np.float64) - self.mass_mean_) / self.mass_scale_
        return np.stack([u**power for power in range(self.degree + 1)], axis=1)

    def fit(self, score: np.ndarray, mass: np.ndarray) -> MassDependentThreshold:
        """Fit the ``1 - efficiency`` quantile of ``score`` as a polynomial in ``mass``."""
        from scipy.optimize import minimize
        from scipy.special import expit

        score, mass = np.asarray(score, dtype=np.float64), np.asarray(mass, dtype=np.float64)
        if score.shape != mass.shape or score.ndim != 1:
            raise ConfigurationError(
                f"score and mass must be 1-d and of equal length, got {score.shape} and {mass.shape}"
            )
        finite = np.isfinite(score) & np.isfinite(mass)
        needed = int(np.ceil(10 * (self.degree + 1) / self.efficiency))
        if finite.sum() < needed:
            raise ConfigurationError(
                f"{int(finite.sum())} events are too few for a {self.efficiency:.3g} quantile of degree {self.degree} "
                f"(at least {needed})"
            )
        score, mass = score[finite], mass[finite]
        self.mass_mean_, self.mass_scale_ = float(mass.mean()), float(mass.std() or 1.0)
        design = self._design(mass)
        quantile = 1.0 - self.efficiency
        width = self.smoothing * float(score.std() or 1.0)

        def loss(beta: np.ndarray) -> tuple[float, np.ndarray]:
            residual = score - design @ beta
            value = quantile * residual + width * np.logaddexp(0.0, -residual / width)
            slope = quantile - expit(-residual / width)
            return float(value.mean()), -(design * slope[:, None]).mean(axis=0)

        start = np.zeros(self.degree + 1)
        start[0] = float(np.quantile(score, quantile))
        result = minimize(loss, start, jac=True, method="L-BFGS-B", options={"maxiter": 2000})
        self.coefficients_ = [float(c) for c in result.x]
        return self

    def threshold(self, mass: np.ndarray) -> np.ndarray:
        """The score threshold at each ``mass``."""
        if not hasattr(self, "coefficients_"):
            raise ConfigurationError("this MassDependentThreshold is not fitted yet: call fit() or load() first")
        return self._design(mass) @ np.asarray(self.coefficients_)

    def passes(self, score: np.ndarray, mass: np.ndarray) -> np.ndarray:
        """Boolean mask of the events whose score is above the threshold at their ``mass``."""
        return np.asarray(score) > self.threshold(mass)

    def efficiency_per_bin(
        self, score: np.ndarray, mass: np.ndarray, edges: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The fraction of events above the threshold in each ``mass`` bin of ``edges``, on background.

        Returns ``(efficiency, uncertainty, events)`` per bin: ``uncertainty`` is the binomial spread
        √(ε(1 − ε)/n) expected at the target ``efficiency`` ε, so that ``(efficiency − ε)/uncertainty`` is
        the pull of each bin; empty bins give NaN.
        """
        score, mass = np.asarray(score, dtype=np.float64), np.asarray(mass, dtype=np.float64)
        if score.shape != mass.shape:
            raise ConfigurationError(f"score and mass must have equal shapes, got {score.shape} and {mass.shape}")
        events = np.histogram(mass, bins=edges)[0]
        passed = np.histogram(mass[self.passes(score, mass)], bins=edges)[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            efficiency = np.where(events > 0, passed / events, np.nan)
            uncertainty = np.where(events > 0, np.sqrt(self.efficiency * (1 - self.efficiency) / events), np.nan)
        return efficiency, uncertainty, events

    def to_dict(self) -> dict:
        """JSON-ready parameters and fit."""
        return {
            "efficiency": self.efficiency,
            "degree": self.degree,
            "smoothing": self.smoothing,
            "mass_mean": self.mass_mean_,
            "mass_scale": self.mass_scale_,
            "coefficients": self.coefficients_,
        }

    def save(self, path: str | Path) -> Path:
        """Write the fitted threshold as JSON (atomically)."""
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> MassDependentThreshold:
        """Read a threshold written by :meth:`save`."""
        try:
            data = json.loads(Path(path).read_text())
            threshold = cls(data["efficiency"], data["degree"], data["smoothing"])
            threshold.mass_mean_, threshold.mass_scale_ = data["mass_mean"], data["mass_scale"]
            threshold.coefficients_ = list(data["coefficients"])
        except (OSError, ValueError, KeyError) as error:
            raise InputFileError(f"cannot read a mass-dependent threshold from {path}: {error}") from error
        return threshold
