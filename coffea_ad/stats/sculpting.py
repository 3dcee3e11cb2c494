"""Shape checks on background: does a cut on the anomaly score sculpt mjj, and does a background template
have the shape of the background it models?

A cut that keeps a fraction ε of the background without sculpting keeps ε in every mjj bin. The test is
Pearson's χ² of that hypothesis, per bin (after_i − ε before_i)² / (ε (1 − ε) σ²_before,i) with ε the
overall efficiency and σ²_before the bin variance (the count for unweighted histograms: the binomial
variance; the sum of squared weights for weighted ones), on the bins with entries before the cut,
with (bins − 1) degrees of freedom. Unweighted, this is the χ² test of homogeneity of the passing and
failing mjj shapes. "after" must be a subset of "before" (same events, same binning).

:func:`shape_chi2` compares the normalised shapes of two independent histograms (a background template
and the data it should describe, in a control or validation region): χ² = Σ (n_i/N − m_i/M)² /
(σ²_n,i/N² + σ²_m,i/M²) over the bins filled in either, with (bins − 1) degrees of freedom.

References:
    Two-sample χ² for (weighted) histograms: Gagunashvili, arXiv:physics/0605123. Mass sculpting by
    anomaly cuts: Cerri et al., arXiv:1811.10276.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from coffea_ad.errors import ConfigurationError
from coffea_ad.stats.workspace import histogram_counts

__all__ = ["SculptingTest", "sculpting_test", "SidebandClosure", "sideband_closure", "ShapeComparison", "shape_chi2"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SculptingTest:
    """Result of :func:`sculpting_test`; ``sculpted`` is True when ``p_value < alpha``."""

    chi2: float
    ndf: int
    p_value: float
    efficiency: float
    bin_efficiencies: np.ndarray
    alpha: float

    @property
    def sculpted(self) -> bool:
        return self.p_value < self.alpha

    def to_dict(self) -> dict:
        return {
            "chi2": self.chi2,
            "ndf": self.ndf,
            "p_value": self.p_value,
            "efficiency": self.efficiency,
            "bin_efficiencies": [None if np.isnan(e) else float(e) for e in self.bin_efficiencies],
            "alpha": self.alpha,
            "sculpted": self.sculpted,
        }


def sculpting_test(before: Any, after: Any, *, alpha: float = 0.01) -> SculptingTest:
    """χ² test that the cut efficiency is flat in mjj (background only: ``after`` ⊂ ``before``).

    References:
        Gagunashvili, arXiv:physics/0605123.
    """
    n_before, var_before = histogram_counts(before, "before")
    n_after, _ = histogram_counts(after, "after")
    if n_before.shape != n_after.shape:
        raise ConfigurationError(f"before has {n_before.size} bins but after has {n_after.size}")
    if not 0 < alpha < 1:
        raise ConfigurationError(f"alpha must be in (0, 1), got {alpha:g}")
    if np.any(n_after > n_before * (1 + 1e-9) + 1e-9):
        raise ConfigurationError("after has more events than before in some bins: it must be a subset of before")
    used = (n_before > 0) & (var_before > 0)
    if used.sum() < 2:
        raise ConfigurationError("the sculpting test needs at least two filled bins before the cut")
    efficiency = float(n_after[used].sum() / n_before[used].sum())
    if not 0 < efficiency < 1:
        raise ConfigurationError(f"the cut keeps a fraction {efficiency:g} of the background; it must be in (0, 1)")
    residual = n_after[used] - efficiency * n_before[used]
    chi2 = float(np.sum(residual**2 / (efficiency * (1 - efficiency) * var_before[used])))
    ndf = int(used.sum()) - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        bin_efficiencies = np.where(n_before > 0, n_after / n_before, np.nan)
    result = SculptingTest(
        chi2=chi2,
        ndf=ndf,
        p_value=float(stats.chi2.sf(chi2, ndf)),
        efficiency=efficiency,
        bin_efficiencies=bin_efficiencies,
        alpha=alpha,
    )
    logger.info("sculpting test: chi2/ndf = %.1f/%d, p = %.3g", chi2, ndf, result.p_value)
    return result


@dataclass(frozen=True)
class SidebandClosure:
    """Result of :func:`sideband_closure`: is a cut on the score flat in the resonant variable outside the
    signal region, where no resonant signal sits? ``closed`` is False when the sculpting test fails."""

    efficiency: float
    threshold: float
    sculpting: SculptingTest
    n_sideband: int
    signal_region_pass_fraction: float
    signal_region_pass_error: float

    @property
    def closed(self) -> bool:
        return not self.sculpting.sculpted

    def to_dict(self) -> dict:
        return {
            "efficiency": self.efficiency,
            "threshold": self.threshold,
            "n_sideband_events": self.n_sideband,
            "sideband_sculpting": self.sculpting.to_dict(),
            "signal_region_pass_fraction": self.signal_region_pass_fraction,
            "signal_region_pass_fraction_error": self.signal_region_pass_error,
            "closed": self.closed,
        }


def sideband_closure(
    scores: Any,
    mass: Any,
    signal_region: tuple[float, float],
    *,
    efficiency: float = 0.05,
    n_bins: int = 8,
    alpha: float = 0.01,
) -> SidebandClosure:
    """Closure of a resonant method's cut in its sidebands: the cut that keeps ``efficiency`` of the sideband
    events must keep that fraction in every mass bin of the sidebands (:func:`sculpting_test` on ``n_bins``
    bins of equal sideband population), since no resonant signal sits there.

    ``scores`` must not come from models that saw the events (cross-trained scores, or a validation sample):
    on its own training events a classifier passes more of what it memorised. The pass fraction in the
    signal region is reported too, with its binomial error; it includes any signal, so it is a measurement,
    not a closure test.

    References:
        Collins, Howe, Nachman, arXiv:1805.02664 (the CWoLa-hunting selection must be flat in the sidebands).
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    mass = np.asarray(mass, dtype=np.float64).ravel()
    if scores.shape != mass.shape:
        raise ConfigurationError(f"scores and mass must have one value per event, got {scores.size} and {mass.size}")
    if not 0 < efficiency < 1:
        raise ConfigurationError(f"efficiency must be in (0, 1), got {efficiency:g}")
    low, high = signal_region
    usable = np.isfinite(scores) & np.isfinite(mass)
    inside = usable & (mass >= low) & (mass < high)
    sideband = usable & ~inside
    n_sideband = int(sideband.sum())
    if efficiency * n_sideband < 5 * n_bins:
        raise ConfigurationError(
            f"{n_sideband} sideband events are too few to test a {efficiency:g} cut in {n_bins} mass bins "
            f"(at least {int(np.ceil(5 * n_bins / efficiency))} are needed)"
        )
    threshold = float(np.quantile(scores[sideband], 1.0 - efficiency))
    passing = scores > threshold
    edges = np.unique(np.quantile(mass[sideband], np.linspace(0.0, 1.0, n_bins + 1)))
    edges[-1] = np.nextafter(edges[-1], np.inf)
    before, _ = np.histogram(mass[sideband], bins=edges)
    after, _ = np.histogram(mass[sideband & passing], bins=edges)
    n_inside = int(inside.sum())
    fraction = float(passing[inside].mean()) if n_inside else float("nan")
    error = float(np.sqrt(fraction * (1 - fraction) / n_inside)) if n_inside else float("nan")
    return SidebandClosure(
        efficiency=efficiency,
        threshold=threshold,
        sculpting=sculpting_test(before.astype(float), after.astype(float), alpha=alpha),
        n_sideband=n_sideband,
        signal_region_pass_fraction=fraction,
        signal_region_pass_error=error,
    )


@dataclass(frozen=True)
class ShapeComparison:
    """Result of :func:`shape_chi2`: the χ², its degrees of freedom and p-value."""

    chi2: float
    ndf: int
    p_value: float

    @property
    def chi2_per_ndf(self) -> float:
        return self.chi2 / self.ndf

    def to_dict(self) -> dict:
        return {"chi2": self.chi2, "ndf": self.ndf, "chi2_per_ndf": self.chi2_per_ndf, "p_value": self.p_value}


def shape_chi2(first: Any, second: Any) -> ShapeComparison:
    """χ² test that two independent (weighted) histograms have the same shape, each normalised to unit area.

    Histograms are ``hist`` or uproot histograms (their variances are used; ``Weight`` storage for weighted
    events) or arrays of counts (Poisson variances). Typical use: a background template (reweighted,
    generated or morphed simulation) against data in a control region.

    References:
        Gagunashvili, arXiv:physics/0605123 (χ² tests of weighted histograms).
    """
    n_first, var_first = histogram_counts(first, "first")
    n_second, var_second = histogram_counts(second, "second")
    if n_first.shape != n_second.shape:
        raise ConfigurationError(f"first has {n_first.size} bins but second has {n_second.size}")
    total_first, total_second = float(n_first.sum()), float(n_second.sum())
    if total_first <= 0 or total_second <= 0:
        raise ConfigurationError(
            f"both histograms need a positive total, got {total_first:g} (first) and {total_second:g} (second)"
        )
    variance = var_first / total_first**2 + var_second / total_second**2
    used = variance > 0
    if used.sum() < 2:
        raise ConfigurationError("the shape comparison needs at least two filled bins")
    residual = n_first[used] / total_first - n_second[used] / total_second
    chi2 = float(np.sum(residual**2 / variance[used]))
    ndf = int(used.sum()) - 1
    return ShapeComparison(chi2=chi2, ndf=ndf, p_value=float(stats.chi2.sf(chi2, ndf)))
