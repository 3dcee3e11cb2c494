"""Bump hunt in mjj: sideband fit of the dijet function, a pyhf template in the window, local and global Z.

For a window [low, high) the dijet function is fitted to the bins outside it (:func:`fit_dijet`); its
prediction inside the window becomes the background template of a one-channel pyhf workspace, with the fit
covariance as one ``histosys`` per eigenvector (correlations kept) or as a per-bin ``shapesys``. The signal
template is the user's signal histogram or, model-agnostically, the fitted background shape itself (then
mu is the relative excess and the test is a counting experiment in the window). The local significance is
pyhf's q0 test. :func:`bump_hunt` slides the window over a grid of centres and corrects the smallest local
p-value for the look-elsewhere effect, with a trials factor (the number of independent windows in the
scanned range, p_global = 1 − (1 − p_local)^N) and optionally with background-only toys drawn from the
fit to the full spectrum (p_global = fraction of toys whose largest local Z reaches the observed one).

Windows are bins whose centres lie in [centre (1 − w/2), centre (1 + w/2)) for a relative width w, since
the dijet mass resolution grows roughly in proportion to mjj.

References:
    Dijet bump hunt after an anomaly cut: Cerri et al., arXiv:1811.10276; CATHODE: Hallin et al.,
    arXiv:2109.00546. Look-elsewhere effect: Gross, Vitells, arXiv:1005.1891.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
import pyhf
from scipy.stats import norm

from coffea_ad.errors import ConfigurationError
from coffea_ad.stats.dijet import SQRT_S, DijetFit, fit_dijet
from coffea_ad.stats.inference import Significance, model_significance
from coffea_ad.stats.workspace import build_workspace, histogram_counts, weighted_histogram

__all__ = [
    "WindowResult",
    "BumpHuntResult",
    "mjj_histogram",
    "from_first_filled_bin",
    "window_mask",
    "default_centres",
    "window_spec",
    "window_workspace",
    "scan_window",
    "bump_hunt",
]

logger = logging.getLogger(__name__)

BACKGROUND_UNCERTAINTIES = ("histosys", "shapesys")


def mjj_histogram(histogram: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(counts, edges)`` of a 1D mjj histogram (``hist``, uproot, or a ``(counts, edges)`` pair)."""
    if isinstance(histogram, tuple) and len(histogram) == 2:
        counts, _ = histogram_counts(histogram[0], "mjj counts")
        edges = np.asarray(histogram[1], dtype=np.float64)
    else:
        counts, _ = histogram_counts(histogram, "mjj histogram")
        hist = histogram.to_hist() if hasattr(histogram, "to_hist") else histogram
        edges = np.asarray(hist.axes[0].edges, dtype=np.float64)
    if edges.size != counts.size + 1:
        raise ConfigurationError(f"mjj histogram has {counts.size} bins but {edges.size} edges")
    return counts, edges


def from_first_filled_bin(data: Any, signal: Any = None) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray | None]:
    """``(counts, edges)`` of the mjj histogram ``data`` from its first filled bin on, and the counts of
    ``signal`` (same binning) cut the same way, or None.

    A histogram booked from 0 GeV (the feature processor's mjj) has empty bins below the trigger threshold,
    where the dijet function does not apply (and it is undefined at x = 0): the fit starts at the first event.
    """
    counts, edges = mjj_histogram(data)
    if not np.any(counts > 0):
        raise ConfigurationError("the mjj histogram is empty")
    first = int(np.flatnonzero(counts > 0)[0])
    if signal is None:
        return (counts[first:], edges[first:]), None
    signal_counts, _ = histogram_counts(signal, "signal")
    if signal_counts.size != counts.size:
        raise ConfigurationError(f"signal has {signal_counts.size} bins, the mjj histogram has {counts.size}")
    return (counts[first:], edges[first:]), signal_counts[first:]


def window_mask(edges: ArrayLike, centre: float, relative_width: float) -> np.ndarray:
    """Bins whose centres lie in [centre (1 − w/2), centre (1 + w/2))."""
    if not 0 < relative_width < 2:
        raise ConfigurationError(f"relative_width must be in (0, 2), got {relative_width:g}")
    edges = np.asarray(edges, dtype=np.float64)
    centres = 0.5 * (edges[1:] + edges[:-1])
    low, high = centre * (1 - relative_width / 2), centre * (1 + relative_width / 2)
    return (centres >= low) & (centres < high)


@dataclass(frozen=True)
class WindowResult:
    """One window of the bump hunt: yields, the sideband fit and the local significance."""

    centre: float
    low: float
    high: float
    observed: float
    background: float
    background_uncertainty: float
    significance: Significance
    fit: DijetFit = field(repr=False)

    def to_dict(self) -> dict:
        return {
            "centre_GeV": self.centre,
            "window_GeV": [self.low, self.high],
            "observed": self.observed,
            "background": self.background,
            "background_uncertainty": self.background_uncertainty,
            "local_p0": self.significance.p0,
            "local_Z": self.significance.z,
            "sideband_fit": self.fit.to_dict(),
        }


@dataclass(frozen=True)
class BumpHuntResult:
    """The scan: every window, the most significant one and its look-elsewhere-corrected significance."""

    windows: list[WindowResult]
    trials_factor: float
    global_p_trials: float
    global_p_toys: float | None
    toy_max_z: np.ndarray | None = field(repr=False)

    @property
    def most_significant(self) -> WindowResult:
        return max(self.windows, key=lambda w: w.significance.z)

    @property
    def global_method(self) -> str:
        """``"toys"`` when toys ran and some reached the observed Z, else ``"trials_factor"``."""
        return "toys" if self.global_p_toys else "trials_factor"

    @property
    def global_p(self) -> float:
        """Global p-value: from the toys when they ran and some reached the observed Z, else the trials factor.

        With no toy reaching the observed Z the toys only bound it (p < 1/n_toys); the trials factor is used.
        """
        return float(self.global_p_toys) if self.global_method == "toys" else self.global_p_trials

    @property
    def global_z(self) -> float:
        return float(norm.isf(min(max(self.global_p, 1e-300), 0.5)))

    def to_dict(self) -> dict:
        best = self.most_significant
        return {
            "most_significant_window": best.to_dict(),
            "local_Z": best.significance.z,
            "local_p0": best.significance.p0,
            "trials_factor": self.trials_factor,
            "global_p_trials_factor": self.global_p_trials,
            "global_p_toys": self.global_p_toys,
            "n_toys": 0 if self.toy_max_z is None else int(self.toy_max_z.size),
            "global_p": self.global_p,
            "global_Z": self.global_z,
            "global_method": self.global_method,
            "windows": [w.to_dict() for w in self.windows],
        }


def _window_edges(edges: np.ndarray, window: np.ndarray) -> np.ndarray:
    inside = np.flatnonzero(window)
    return edges[np.r_[inside, inside[-1] + 1]]


def window_spec(
    counts: ArrayLike,
    edges: ArrayLike,
    window: ArrayLike,
    fit: DijetFit,
    *,
    signal: Any = None,
    background_uncertainty: str = "histosys",
) -> dict:
    """Fit spec of the window bins: the fitted background with its uncertainty, signal, data.

    ``signal`` is a signal histogram over the full mjj range (only the window bins are used) or None for the
    model-agnostic template (the fitted background shape). The data keep the window's mjj bin edges, so the
    spec also gives a Combine datacard with :func:`~coffea_ad.stats.datacard.write_combine`.
    """
    if background_uncertainty not in BACKGROUND_UNCERTAINTIES:
        raise ConfigurationError(
            f"background_uncertainty must be one of {', '.join(BACKGROUND_UNCERTAINTIES)}, "
            f"got {background_uncertainty!r}"
        )
    edges = np.asarray(edges, dtype=np.float64)
    window = np.asarray(window, dtype=bool)
    window_edges = _window_edges(edges, window)
    background = fit.yields(window_edges)
    if np.any(background <= 0):
        raise ConfigurationError("the fitted background is not positive in the window")
    if signal is None:
        signal_yields = background
    else:
        full, _ = histogram_counts(signal, "signal")
        if full.size != edges.size - 1:
            raise ConfigurationError(f"signal has {full.size} bins, the mjj histogram has {edges.size - 1}")
        signal_yields = full[window]
        if not np.any(signal_yields > 0):
            raise ConfigurationError("signal has no events in the window")
    if background_uncertainty == "histosys":
        modifiers = [
            {"type": "histosys", "name": f"dijet_fit_eigen{k}", "lo": down, "hi": up}
            for k, (down, up) in enumerate(fit.eigen_variations(window_edges))
        ]
    else:
        modifiers = [{"type": "shapesys", "name": "dijet_fit", "uncertainty": fit.yield_uncertainties(window_edges)}]
    observed = np.asarray(counts, dtype=np.float64)[window]
    return {
        "poi": "mu",
        "channels": [
            {
                "name": "mjj_window",
                "data": weighted_histogram(observed, window_edges, label="mjj [GeV]"),
                "samples": [
                    {"name": "signal", "yields": signal_yields, "modifiers": [{"type": "normfactor", "name": "mu"}]},
                    {"name": "dijet_fit", "yields": background, "modifiers": modifiers},
                ],
            }
        ],
    }


def window_workspace(
    counts: ArrayLike, edges: ArrayLike, window: ArrayLike, fit: DijetFit, **options
) -> pyhf.Workspace:
    """The ``pyhf.Workspace`` of :func:`window_spec` (same arguments)."""
    return build_workspace(window_spec(counts, edges, window, fit, **options))


def scan_window(
    counts: ArrayLike,
    edges: ArrayLike,
    centre: float,
    *,
    relative_width: float = 0.2,
    n_parameters: int = 4,
    signal: Any = None,
    background_uncertainty: str = "histosys",
    sqrt_s: float = SQRT_S,
) -> tuple[WindowResult, dict]:
    """Fit the sidebands of the window at ``centre``, build its workspace and compute the local significance.

    Returns the result and the window's fit spec (:func:`window_spec`).
    """
    counts = np.asarray(counts, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    window = window_mask(edges, centre, relative_width)
    if not np.any(window):
        raise ConfigurationError(f"the window at {centre:g} GeV (relative width {relative_width:g}) contains no bin")
    fit = fit_dijet(counts, edges, n_parameters=n_parameters, mask=~window, sqrt_s=sqrt_s)
    spec = window_spec(counts, edges, window, fit, signal=signal, background_uncertainty=background_uncertainty)
    workspace = build_workspace(spec)
    model = workspace.model()
    try:
        significance = model_significance(model, workspace.data(model))
    except pyhf.exceptions.FailedMinimization as error:
        raise ConfigurationError(
            f"the significance fit of the window at {centre:g} GeV ({counts[window].sum():g} events) failed "
            f"({error}); use wider bins, wider windows or fewer dijet parameters"
        ) from error
    window_edges = _window_edges(edges, window)
    background = fit.yields(window_edges)
    # the eigen-variations are independent: their half-differences of the window total add in quadrature
    total_uncertainty = np.sqrt(sum(((up - down).sum() / 2) ** 2 for down, up in fit.eigen_variations(window_edges)))
    result = WindowResult(
        centre=float(centre),
        low=float(window_edges[0]),
        high=float(window_edges[-1]),
        observed=float(counts[window].sum()),
        background=float(background.sum()),
        background_uncertainty=float(total_uncertainty),
        significance=significance,
        fit=fit,
    )
    return result, spec


def _trials_factor(centres: np.ndarray, relative_width: float) -> float:
    """Number of non-overlapping windows of relative width w that fit between the first and last centre."""
    step = np.log((1 + relative_width / 2) / (1 - relative_width / 2))
    return float(max(1.0, np.log(centres.max() / centres.min()) / step + 1.0))


def bump_hunt(
    histogram: Any,
    *,
    centres: Sequence[float] | None = None,
    relative_width: float = 0.2,
    n_parameters: int = 4,
    signal: Any = None,
    background_uncertainty: str = "histosys",
    n_toys: int = 0,
    seed: int = 0,
    sqrt_s: float = SQRT_S,
) -> BumpHuntResult:
    """Slide a window over ``centres`` (default: log-spaced, half a window apart, keeping sidebands on both
    sides) and report every local significance and the global significance of the largest one. The fit
    starts at the histogram's first filled bin.

    References:
        Gross, Vitells, arXiv:1005.1891 (look-elsewhere effect; trials factor and toys).
    """
    (counts, edges), signal = from_first_filled_bin(histogram, signal)
    if centres is None:
        centres = default_centres(edges, relative_width)
    centres = np.asarray(centres, dtype=np.float64)
    if centres.size == 0 or np.any(centres <= edges[0]) or np.any(centres >= edges[-1]):
        raise ConfigurationError(f"window centres must lie inside the mjj range {edges[0]:g}..{edges[-1]:g} GeV")
    options = dict(
        relative_width=relative_width,
        n_parameters=n_parameters,
        signal=signal,
        background_uncertainty=background_uncertainty,
        sqrt_s=sqrt_s,
    )
    windows = [scan_window(counts, edges, c, **options)[0] for c in centres]
    best = max(windows, key=lambda w: w.significance.z)
    trials = _trials_factor(centres, relative_width)
    p_trials = float(-np.expm1(trials * np.log1p(-min(best.significance.p0, 1 - 1e-16))))
    toy_max_z, p_toys = None, None
    if n_toys > 0:
        background = fit_dijet(counts, edges, n_parameters=n_parameters, sqrt_s=sqrt_s).yields(edges)
        rng = np.random.default_rng(seed)
        toy_max_z = np.array(
            [
                max(scan_window(rng.poisson(background), edges, c, **options)[0].significance.z for c in centres)
                for _ in range(n_toys)
            ]
        )
        p_toys = float(np.mean(toy_max_z >= best.significance.z))
    logger.info("bump hunt: largest local Z %.2f at %.0f GeV", best.significance.z, best.centre)
    return BumpHuntResult(
        windows=windows, trials_factor=trials, global_p_trials=p_trials, global_p_toys=p_toys, toy_max_z=toy_max_z
    )


def default_centres(edges: ArrayLike, relative_width: float) -> np.ndarray:
    """Log-spaced centres half a window apart, with at least a window width of sideband on each side."""
    edges = np.asarray(edges, dtype=np.float64)
    low = edges[0] * (1 + relative_width) / (1 - relative_width / 2)
    high = edges[-1] * (1 - relative_width) / (1 + relative_width / 2)
    if high <= low:
        raise ConfigurationError(
            f"the mjj range {edges[0]:g}..{edges[-1]:g} GeV is too narrow "
            f"for windows of relative width {relative_width:g}"
        )
    step = np.log1p(relative_width / 2)
    return np.exp(np.arange(np.log(low), np.log(high) + 1e-9, step))
