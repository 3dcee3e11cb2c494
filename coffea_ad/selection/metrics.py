"""Figures of merit of an anomaly score: ROC, AUC, significance improvement (SIC), background rejection.

Scores follow the coffea_ad convention: higher means more anomalous (more signal-like). Everything here is
numpy only (no scikit-learn): the ROC is built by sorting the scores once and accumulating the weights,
with tied scores grouped into one threshold, so that the area under the curve counts a tie as one half.

The significance improvement characteristic is SIC = TPR / sqrt(FPR): the factor by which a cut on the
score multiplies S / sqrt(B). Its maximum is taken over FPR > 1 / N_bkg (N_bkg: background events in the
test set) as in the CATHODE study, so that a single background event cannot make it diverge.

Their figures (ROC, SIC, score distributions) are drawn by :mod:`coffea_ad.plotting.performance`.

References:
    Significance improvement characteristic: Gallicchio, Schwartz, arXiv:1010.3698.
    CATHODE (max SIC with FPR > 1/N_bkg; median and 68 % band over runs): Hallin et al., arXiv:2109.00546.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from coffea_ad.errors import ConfigurationError

__all__ = [
    "RocCurve",
    "SeedBand",
    "roc_curve",
    "auc",
    "sic",
    "max_sic",
    "background_rejection",
    "seed_band",
    "sic_at",
    "sic_band",
    "scores_and_weights",
]


@dataclass(frozen=True)
class RocCurve:
    """A receiver operating characteristic: one point per distinct score threshold, from (0, 0) to (1, 1).

    ``tpr[i]`` and ``fpr[i]`` are the weighted fractions of signal and background with score >= ``thresholds[i]``
    (``thresholds[0]`` is +inf). ``n_background`` is the number of background entries (unweighted), the N_bkg
    of the FPR > 1/N_bkg convention.
    """

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    n_background: int
    n_signal: int


@dataclass(frozen=True)
class SeedBand:
    """The median and the central 68 % band (16th and 84th percentiles) of a quantity across seeds."""

    median: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


def scores_and_weights(scores, weights, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Scores and weights as float64 vectors of one length (weights default to 1); empty, NaN or
    infinite scores, and weights of another length, raise an error that names ``name``."""
    values = np.asarray(scores, dtype=np.float64).ravel()
    if values.size == 0:
        raise ConfigurationError(f"{name} is empty: at least one event is needed")
    if not np.all(np.isfinite(values)):
        raise ConfigurationError(f"{name} contains {int(np.sum(~np.isfinite(values)))} NaN or infinite scores")
    if weights is None:
        return values, np.ones_like(values)
    w = np.asarray(weights, dtype=np.float64).ravel()
    weight_name = name.replace("scores", "weights")
    if w.shape != values.shape:
        raise ConfigurationError(f"{weight_name} has {w.size} entries but {name} has {values.size}")
    if not np.all(np.isfinite(w)):
        raise ConfigurationError(f"{weight_name} contains NaN or infinite weights")
    if w.sum() <= 0:
        raise ConfigurationError(f"{weight_name} sum to {w.sum():g}: the total weight must be positive")
    return values, w


def roc_curve(
    signal_scores: ArrayLike,
    background_scores: ArrayLike,
    *,
    signal_weights: ArrayLike | None = None,
    background_weights: ArrayLike | None = None,
) -> RocCurve:
    """Build the ROC of a score (higher = more signal-like) from signal and background samples.

    Events with equal scores share one threshold, so ties give a straight segment of the curve.
    Negative weights are allowed (NLO samples); the total weight of each class must be positive.
    """
    s, ws = scores_and_weights(signal_scores, signal_weights, "signal_scores")
    b, wb = scores_and_weights(background_scores, background_weights, "background_scores")
    scores = np.concatenate([s, b])
    sig_w = np.concatenate([ws, np.zeros_like(wb)])
    bkg_w = np.concatenate([np.zeros_like(ws), wb])
    order = np.argsort(-scores, kind="stable")
    scores, sig_w, bkg_w = scores[order], sig_w[order], bkg_w[order]
    # the last entry of each run of equal scores closes one threshold
    last_of_run = np.r_[scores[1:] != scores[:-1], True]
    tp = np.cumsum(sig_w)[last_of_run]
    fp = np.cumsum(bkg_w)[last_of_run]
    tpr = np.r_[0.0, tp / ws.sum()]
    fpr = np.r_[0.0, fp / wb.sum()]
    thresholds = np.r_[np.inf, scores[last_of_run]]
    return RocCurve(fpr=fpr, tpr=tpr, thresholds=thresholds, n_background=b.size, n_signal=s.size)


def auc(roc: RocCurve) -> float:
    """Area under the ROC (TPR against FPR): the probability that signal scores above background (ties: 1/2)."""
    return float(np.trapezoid(roc.tpr, roc.fpr))


def sic(roc: RocCurve) -> tuple[np.ndarray, np.ndarray]:
    """The significance improvement TPR / sqrt(FPR) at every threshold with FPR > 0: returns ``(tpr, sic)``."""
    keep = roc.fpr > 0
    return roc.tpr[keep], roc.tpr[keep] / np.sqrt(roc.fpr[keep])


def max_sic(roc: RocCurve, *, min_fpr: float | None = None) -> float:
    """Maximum of TPR / sqrt(FPR) over thresholds with FPR > ``min_fpr`` (default 1 / N_bkg).

    References:
        Hallin et al., CATHODE, arXiv:2109.00546 (the FPR > 1/N_bkg restriction).
    """
    threshold = 1.0 / roc.n_background if min_fpr is None else float(min_fpr)
    if not 0 <= threshold < 1:
        raise ConfigurationError(f"min_fpr must be in [0, 1), got {threshold:g}")
    keep = roc.fpr > threshold
    if not np.any(keep):
        raise ConfigurationError(f"no ROC point has FPR > {threshold:g}")
    return float(np.max(roc.tpr[keep] / np.sqrt(roc.fpr[keep])))


def background_rejection(roc: RocCurve, signal_efficiency: float) -> float:
    """Background rejection 1 / FPR at a fixed signal efficiency (TPR), interpolated linearly along the ROC.

    Returns ``inf`` when no background passes at that efficiency.
    """
    eff = float(signal_efficiency)
    if not 0 < eff <= 1:
        raise ConfigurationError(f"signal_efficiency must be in (0, 1], got {eff:g}")
    # the ROC is monotone in TPR; for repeated TPR values take the smallest FPR (the best working point)
    tpr, first = np.unique(roc.tpr, return_index=True)
    fpr = np.interp(eff, tpr, roc.fpr[first])
    return float(np.inf) if fpr <= 0 else float(1.0 / fpr)


def seed_band(values: ArrayLike) -> SeedBand:
    """Median and 68 % band across seeds of an array shaped ``(n_seeds, ...)`` (e.g. max SIC per seed).

    References:
        Hallin et al., CATHODE, arXiv:2109.00546 (median and 68 % band over ten trainings).
    """
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 0 or array.shape[0] == 0:
        raise ConfigurationError("seed_band needs at least one seed (an array shaped (n_seeds, ...))")
    lower, median, upper = np.nanpercentile(array, [16.0, 50.0, 84.0], axis=0)
    return SeedBand(median=median, lower=lower, upper=upper)


def sic_at(roc: RocCurve, tpr_grid: ArrayLike) -> np.ndarray:
    """SIC of ``roc`` interpolated at the signal efficiencies ``tpr_grid``, cut at FPR > 1 / N_bkg (NaN outside)."""
    grid = np.asarray(tpr_grid, dtype=np.float64)
    keep = roc.fpr > 1.0 / roc.n_background
    tpr, first = np.unique(roc.tpr[keep], return_index=True)
    if not tpr.size:
        return np.full_like(grid, np.nan)
    values = roc.tpr[keep][first] / np.sqrt(roc.fpr[keep][first])
    return np.interp(grid, tpr, values, left=np.nan, right=np.nan)


def sic_band(rocs: Sequence[RocCurve], tpr_grid: ArrayLike | None = None) -> tuple[np.ndarray, SeedBand]:
    """SIC curves of several seeds interpolated on a common TPR grid; returns ``(tpr_grid, band)``.

    Each curve is cut at FPR > 1 / N_bkg before interpolation; grid points outside a curve are NaN and
    ignored by the band.
    """
    if not rocs:
        raise ConfigurationError("sic_band needs at least one ROC curve")
    grid = np.linspace(0.01, 1.0, 100) if tpr_grid is None else np.asarray(tpr_grid, dtype=np.float64)
    return grid, seed_band(np.vstack([sic_at(roc, grid) for roc in rocs]))
