"""Bump hunt in mjj: sideband fit of the dijet function, a pyhf template in the window, local and global Z.

The fit range (:func:`fit_range`) starts above the turn-on that the trigger or the generator cut makes,
found from the data: the first bin above the peak of the spectrum (events per GeV averaged over ±5 % in
mjj), moved up bin by bin (by at most 20 %) while the background-only fit has a poor merged-bin χ²
probability; ``mjj_min`` sets it by hand. Windows lie inside that range.

For a window [low, high) the dijet function is fitted to the bins of the range outside it; with
``n_parameters="auto"`` a Fisher F-test on those sidebands chooses 3, 4 or 5 parameters
(:func:`~coffea_ad.stats.dijet.f_test`). The window is flagged (``fit_ok=False``) when that background-only
fit is poor (merged-bin χ² probability below ``min_fit_probability``, 0.01): its Z is no evidence, and the
most significant window is chosen among the windows with a good fit. The fit's prediction inside the window
becomes the background template of a one-channel pyhf workspace, with the fit covariance as one
``histosys`` per eigenvector (correlations kept) or as a per-bin ``shapesys``. The signal template is the
user's signal histogram or, model-agnostically, the fitted background shape itself (then mu is the relative
excess and the test is a counting experiment in the window). The local significance is pyhf's q0 test.
:func:`bump_hunt` slides the window over a grid of centres and corrects the smallest local p-value for the
look-elsewhere effect, with a trials factor (the number N of windows scanned, p_global = 1 − (1 − p_local)^N:
an upper bound for overlapping, positively correlated windows) and optionally with background-only toys
drawn from the fit to the full range (p_global = fraction of toys whose largest local Z reaches the
observed one).

Windows are bins whose centres lie in [centre (1 − w/2), centre (1 + w/2)) for a relative width w, since
the dijet mass resolution grows roughly in proportion to mjj.

References:
    Dijet bump hunt after an anomaly cut: Cerri et al., arXiv:1811.10276; CATHODE: Hallin et al.,
    arXiv:2109.00546. Look-elsewhere effect: Gross, Vitells, arXiv:1005.1891. Fit range and F-test:
    CMS, arXiv:1911.03947, arXiv:2412.03747.
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
from coffea_ad.progress import progress_bar
from coffea_ad.stats.dijet import F_TEST_ALPHA, MIN_EXPECTED, PARAMETER_COUNTS, SQRT_S, DijetFit, f_test, fit_dijet
from coffea_ad.stats.inference import Significance, model_significance
from coffea_ad.stats.workspace import build_workspace, histogram_counts, weighted_histogram

__all__ = [
    "WindowResult",
    "BumpHuntResult",
    "mjj_histogram",
    "MIN_FIT_PROBABILITY",
    "RANGE_SEARCH",
    "TURN_ON_SMOOTHING",
    "FitRange",
    "turn_on_peak",
    "fit_range",
    "window_mask",
    "default_centres",
    "window_spec",
    "window_workspace",
    "scan_window",
    "fit_window",
    "bump_hunt",
]

logger = logging.getLogger(__name__)

BACKGROUND_UNCERTAINTIES = ("histosys", "shapesys")
#: A window whose background-only sideband fit has a merged-bin χ² probability below this is flagged.
MIN_FIT_PROBABILITY = 0.01
#: The automatic fit range may start up to a factor 1 + RANGE_SEARCH above the first bin past the peak.
RANGE_SEARCH = 0.2
#: Relative half-width in mjj of the running mean that finds the peak of the spectrum (about the resolution).
TURN_ON_SMOOTHING = 0.05


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


def _smoothed_density(counts: np.ndarray, edges: np.ndarray, half_width: float) -> np.ndarray:
    """Events per GeV in the bins whose centres lie within a factor (1 ± half_width) of each bin's centre."""
    centres = 0.5 * (edges[1:] + edges[:-1])
    low = np.searchsorted(centres, centres / (1 + half_width), side="left")
    high = np.searchsorted(centres, centres * (1 + half_width), side="right")
    cumulative_counts = np.r_[0.0, np.cumsum(counts)]
    cumulative_widths = np.r_[0.0, np.cumsum(np.diff(edges))]
    return (cumulative_counts[high] - cumulative_counts[low]) / (cumulative_widths[high] - cumulative_widths[low])


def turn_on_peak(counts: ArrayLike, edges: ArrayLike, *, half_width: float = TURN_ON_SMOOTHING) -> int:
    """Index of the bin where the mjj spectrum peaks: the maximum of events per GeV, averaged over the bins
    within a factor (1 ± ``half_width``) in mjj (about the dijet mass resolution), so that a fluctuation of a
    few events neither makes nor moves the peak. Below it the trigger (or generator) turn-on shapes the
    spectrum; above it the spectrum falls.
    """
    counts = np.asarray(counts, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    if not np.any(counts > 0):
        raise ConfigurationError("the mjj histogram is empty")
    return int(np.argmax(_smoothed_density(counts, edges, half_width)))


@dataclass(frozen=True)
class FitRange:
    """The mjj bins ``[first, stop)`` of the histogram that the bump hunt fits, how they were chosen and the
    background-only fit over them (``fit``).

    ``method`` is ``"turn-on"`` (automatic: above the peak, moved up while the fit probability is poor) or
    ``"mjj_min"`` (given by the user); ``peak`` is the mjj of the spectrum's maximum (automatic range).
    """

    first: int
    stop: int
    low: float
    high: float
    method: str
    peak: float | None
    fit: DijetFit = field(repr=False)

    def to_dict(self) -> dict:
        return {
            "fit_range_GeV": [self.low, self.high],
            "fit_range_method": self.method,
            "turn_on_peak_GeV": self.peak,
            "background_fit": self.fit.to_dict(),
        }


def _dijet_fit(counts, edges, n_parameters, *, mask=None, sqrt_s, min_expected, f_test_alpha) -> DijetFit:
    if n_parameters == "auto":
        return f_test(counts, edges, mask=mask, alpha=f_test_alpha, sqrt_s=sqrt_s, min_expected=min_expected)
    if isinstance(n_parameters, str) or n_parameters not in PARAMETER_COUNTS:
        raise ConfigurationError(f"n_parameters must be 'auto', 3, 4 or 5, got {n_parameters!r}")
    return fit_dijet(counts, edges, n_parameters=int(n_parameters), mask=mask, sqrt_s=sqrt_s, min_expected=min_expected)


def fit_range(
    counts: ArrayLike,
    edges: ArrayLike,
    *,
    mjj_min: float | None = None,
    mjj_max: float | None = None,
    n_parameters: int | str = "auto",
    min_fit_probability: float = MIN_FIT_PROBABILITY,
    min_expected: float = MIN_EXPECTED,
    f_test_alpha: float = F_TEST_ALPHA,
    sqrt_s: float = SQRT_S,
) -> FitRange:
    """The mjj range of the bump hunt, found from the data above the turn-on, or from ``mjj_min``.

    Automatic: the fit starts at the first bin above the peak of the spectrum (:func:`turn_on_peak`), on the
    falling side where the trigger and generator cuts are efficient. When the background-only fit there has a
    merged-bin χ² probability below ``min_fit_probability``, the start moves up one bin at a time, by at most
    a factor 1 + :data:`RANGE_SEARCH`, to the first start with a good fit (else the one with the best
    probability), as the CMS dijet searches adjust their fit range when the fit probability is poor. With
    ``mjj_min`` the fit starts at the first bin whose lower edge is at or above it. The range ends at the
    histogram's end or at the last bin whose upper edge is at or below ``mjj_max``. Empty bins below the
    first event are never fitted.
    """
    edges = np.asarray(edges, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    if not np.any(counts > 0):
        raise ConfigurationError("the mjj histogram is empty")
    tolerance = 1e-9 * float(edges[-1] - edges[0])
    stop = counts.size if mjj_max is None else int(np.searchsorted(edges, mjj_max + tolerance, side="right")) - 1
    if stop < 1:
        raise ConfigurationError(f"mjj_max = {mjj_max:g} GeV is below the histogram ({edges[0]:g}..{edges[-1]:g} GeV)")
    options = dict(sqrt_s=sqrt_s, min_expected=min_expected, f_test_alpha=f_test_alpha)

    def fitted(first: int) -> DijetFit:
        return _dijet_fit(counts[first:stop], edges[first : stop + 1], n_parameters, **options)

    if mjj_min is not None:
        first = int(np.searchsorted(edges, mjj_min - tolerance, side="left"))
        if first >= stop:
            raise ConfigurationError(
                f"mjj_min = {mjj_min:g} GeV leaves no bin of the histogram ({edges[0]:g}..{edges[stop]:g} GeV)"
            )
        first = max(first, int(np.flatnonzero(counts > 0)[0]))
        return FitRange(first, stop, float(edges[first]), float(edges[stop]), "mjj_min", None, fitted(first))
    filled = int(np.flatnonzero(counts > 0)[0])
    peak = filled + turn_on_peak(counts[filled:stop], edges[filled : stop + 1])
    start = peak + 1
    candidates = [i for i in range(start, stop) if edges[i] <= edges[start] * (1 + RANGE_SEARCH)]
    best: tuple[float, int, DijetFit] | None = None
    errors = []
    for first in candidates:
        try:
            fit = fitted(first)
        except ConfigurationError as error:
            errors.append(str(error))
            continue
        probability = fit.p_value if np.isfinite(fit.p_value) else -1.0
        if best is None or probability > best[0]:
            best = (probability, first, fit)
        if probability >= min_fit_probability:
            break
    if best is None:
        raise ConfigurationError(
            f"no dijet fit above the turn-on peak at {edges[peak]:g} GeV: {errors[0] if errors else 'no bins left'}; "
            "give the fit range with mjj_min (--mjj-min) or use a wider histogram"
        )
    probability, first, fit = best
    if probability < min_fit_probability:
        logger.warning(
            "the background-only dijet fit is poor for every start from %.0f to %.0f GeV (best p = %.2g at %.0f GeV)",
            edges[candidates[0]], edges[candidates[-1]], probability, edges[first],
        )
    centre = 0.5 * float(edges[peak] + edges[peak + 1])
    return FitRange(first, stop, float(edges[first]), float(edges[stop]), "turn-on", centre, fit)


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
    """One window of the bump hunt: yields, the sideband fit and the local significance.

    ``fit_ok`` is False when the background-only sideband fit is poor (merged-bin χ² probability below the
    bump hunt's ``min_fit_probability``): the window's Z is then not evidence of a signal.
    """

    centre: float
    low: float
    high: float
    observed: float
    background: float
    background_uncertainty: float
    significance: Significance
    fit: DijetFit = field(repr=False)
    fit_ok: bool = True

    def to_dict(self) -> dict:
        return {
            "centre_GeV": self.centre,
            "window_GeV": [self.low, self.high],
            "observed": self.observed,
            "background": self.background,
            "background_uncertainty": self.background_uncertainty,
            "local_p0": self.significance.p0,
            "local_Z": self.significance.z,
            "sideband_fit_ok": self.fit_ok,
            "sideband_fit": self.fit.to_dict(),
        }


@dataclass(frozen=True)
class BumpHuntResult:
    """The scan: every window, the most significant one and its look-elsewhere-corrected significance.

    ``counts``, ``edges`` and ``signal`` are the histograms inside the fit range ``fit_range``. The most
    significant window is chosen among the windows whose sideband fit is good; ``fit_ok`` is False when
    there is none (then the most significant window of all is shown, and its Z is no discovery).
    """

    windows: list[WindowResult]
    trials_factor: float
    global_p_trials: float
    global_p_toys: float | None
    toy_max_z: np.ndarray | None = field(repr=False)
    fit_range: FitRange | None = field(default=None, repr=False)
    counts: np.ndarray | None = field(default=None, repr=False)
    edges: np.ndarray | None = field(default=None, repr=False)
    signal: np.ndarray | None = field(default=None, repr=False)
    relative_width: float = 0.2
    background_uncertainty: str = "histosys"
    min_fit_probability: float = MIN_FIT_PROBABILITY

    @property
    def flagged(self) -> list[WindowResult]:
        """The windows whose background-only sideband fit is poor."""
        return [w for w in self.windows if not w.fit_ok]

    @property
    def fit_ok(self) -> bool:
        """Whether some window has a good sideband fit (the most significant window is one of them)."""
        return any(w.fit_ok for w in self.windows)

    @property
    def most_significant(self) -> WindowResult:
        """The window of largest local Z among those with a good sideband fit (among all when none is good)."""
        return _most_significant(self.windows)

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

    def spec(self, window: WindowResult | None = None) -> dict:
        """The fit spec (:func:`window_spec`) of ``window`` (default: the most significant), with its sideband fit."""
        window = window or self.most_significant
        if self.counts is None or self.edges is None:
            raise ConfigurationError("this bump-hunt result keeps no histogram to build a window spec from")
        mask = window_mask(self.edges, window.centre, self.relative_width)
        return window_spec(
            self.counts, self.edges, mask, window.fit, signal=self.signal,
            background_uncertainty=self.background_uncertainty,
        )

    def to_dict(self) -> dict:
        best = self.most_significant
        summary = {
            "most_significant_window": best.to_dict(),
            "local_Z": best.significance.z,
            "local_p0": best.significance.p0,
            "fit_ok": self.fit_ok,
            "min_fit_probability": self.min_fit_probability,
            "n_windows": len(self.windows),
            "n_windows_flagged": len(self.flagged),
            "flagged_windows_GeV": [[w.low, w.high] for w in self.flagged],
            "trials_factor": self.trials_factor,
            "global_p_trials_factor": self.global_p_trials,
            "global_p_toys": self.global_p_toys,
            "n_toys": 0 if self.toy_max_z is None else int(self.toy_max_z.size),
            "global_p": self.global_p,
            "global_Z": self.global_z,
            "global_method": self.global_method,
        }
        if not self.fit_ok:
            summary["warning"] = (
                f"every window's background-only sideband fit has p < {self.min_fit_probability:g}: "
                "the local and global Z are not evidence of a signal"
            )
        if self.fit_range is not None:
            summary.update(self.fit_range.to_dict())
        summary["windows"] = [w.to_dict() for w in self.windows]
        return summary


def _most_significant(windows: Sequence[WindowResult]) -> WindowResult:
    good = [w for w in windows if w.fit_ok]
    return max(good or windows, key=lambda w: w.significance.z)


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
    **options: Any,
) -> tuple[WindowResult, dict]:
    """Fit the sidebands of the window at ``centre`` (the bins of :func:`window_mask`), build its workspace and
    compute the local significance: :func:`fit_window` of that window (``options`` are its keywords).

    Returns the result and the window's fit spec (:func:`window_spec`).
    """
    edges = np.asarray(edges, dtype=np.float64)
    window = window_mask(edges, centre, relative_width)
    if not np.any(window):
        raise ConfigurationError(f"the window at {centre:g} GeV (relative width {relative_width:g}) contains no bin")
    return fit_window(counts, edges, window, centre=centre, **options)


def fit_window(
    counts: ArrayLike,
    edges: ArrayLike,
    window: ArrayLike,
    *,
    centre: float | None = None,
    n_parameters: int | str = "auto",
    signal: Any = None,
    background_uncertainty: str = "histosys",
    sqrt_s: float = SQRT_S,
    min_fit_probability: float = MIN_FIT_PROBABILITY,
    min_expected: float = MIN_EXPECTED,
    f_test_alpha: float = F_TEST_ALPHA,
) -> tuple[WindowResult, dict]:
    """Fit the dijet function to the bins outside ``window`` (a boolean mask of the bins of the fit range
    ``counts``, ``edges``), build the window's workspace and compute its local significance.

    With ``n_parameters="auto"`` an F-test on the sidebands (:func:`~coffea_ad.stats.dijet.f_test`) chooses 3,
    4 or 5 parameters; the window is flagged (``fit_ok=False``) when the sideband fit's merged-bin χ²
    probability is below ``min_fit_probability``. ``centre`` (GeV) is recorded in the result (default: the
    middle of the window). Returns the result and the window's fit spec (:func:`window_spec`).
    """
    counts = np.asarray(counts, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    window = np.asarray(window, dtype=bool)
    if window.shape != counts.shape or not np.any(window):
        raise ConfigurationError(f"the window mask needs one flag per bin ({counts.size}) and at least one bin")
    low, high = _window_edges(edges, window)[[0, -1]]
    centre = 0.5 * (low + high) if centre is None else centre
    try:
        fit = _dijet_fit(
            counts, edges, n_parameters, mask=~window, sqrt_s=sqrt_s, min_expected=min_expected,
            f_test_alpha=f_test_alpha,
        )
    except ConfigurationError as error:
        raise ConfigurationError(
            f"no background estimate for the window {low:.0f}-{high:.0f} GeV: its sidebands hold "
            f"{counts[~window].sum():g} of the {counts.sum():g} events in the fit range ({error}); a spectrum this "
            "sparse outside the window cannot be fitted (a looser cut, more events, or --mjj-min)"
        ) from error
    spec = window_spec(counts, edges, window, fit, signal=signal, background_uncertainty=background_uncertainty)
    workspace = build_workspace(spec)
    model = workspace.model()
    try:
        significance = model_significance(model, workspace.data(model))
    except pyhf.exceptions.FailedMinimization as error:
        raise ConfigurationError(
            f"the significance fit of the window {low:.0f}-{high:.0f} GeV ({counts[window].sum():g} events) failed "
            f"({error}); use wider bins, wider windows or fewer dijet parameters"
        ) from error
    window_edges = _window_edges(edges, window)
    background = fit.yields(window_edges)
    # the eigen-variations are independent: their half-differences of the window total add in quadrature
    total_uncertainty = np.sqrt(sum(((up - down).sum() / 2) ** 2 for down, up in fit.eigen_variations(window_edges)))
    # a fit without degrees of freedom left cannot be judged: it is not a good fit
    fit_ok = bool(fit.p_value >= min_fit_probability)
    result = WindowResult(
        centre=float(centre),
        low=float(low),
        high=float(high),
        observed=float(counts[window].sum()),
        background=float(background.sum()),
        background_uncertainty=float(total_uncertainty),
        significance=significance,
        fit=fit,
        fit_ok=fit_ok,
    )
    return result, spec


def _trials_factor(centres: np.ndarray) -> float:
    """The number of windows scanned.

    Neighbouring windows half a window apart overlap and their Z are positively correlated, so
    1 − (1 − p_local)^N with N windows bounds the global p-value from above (Šidák); the number of
    non-overlapping windows in the range, used before, gave global p-values too small by a factor ~2 on
    background-only pseudo-experiments (tests/test_stats_null.py).
    """
    return float(max(1, centres.size))


def bump_hunt(
    histogram: Any,
    *,
    centres: Sequence[float] | None = None,
    relative_width: float = 0.2,
    n_parameters: int | str = "auto",
    signal: Any = None,
    background_uncertainty: str = "histosys",
    n_toys: int = 0,
    seed: int = 0,
    sqrt_s: float = SQRT_S,
    mjj_min: float | None = None,
    mjj_max: float | None = None,
    min_fit_probability: float = MIN_FIT_PROBABILITY,
    min_expected: float = MIN_EXPECTED,
    f_test_alpha: float = F_TEST_ALPHA,
) -> BumpHuntResult:
    """Slide a window over ``centres`` (default: log-spaced, half a window apart, keeping a window of
    sideband on each side inside the fit range) and report every local significance and the global
    significance of the largest one among the windows with a good background-only sideband fit.

    ``histogram`` is the full mjj histogram (``hist``, uproot or ``(counts, edges)``; booked from 0 GeV is
    fine) and ``signal`` a signal histogram with the same binning. The fit range starts above the turn-on
    (:func:`fit_range`; ``mjj_min`` / ``mjj_max`` set it). ``n_parameters`` is ``"auto"`` (a Fisher F-test at
    ``f_test_alpha`` per sideband fit) or 3, 4 or 5 (counting the normalisation). Windows whose sideband fit
    has a merged-bin (``min_expected`` events) χ² probability below ``min_fit_probability`` are flagged and
    never chosen as the most significant one while a window with a good fit exists.

    References:
        Gross, Vitells, arXiv:1005.1891 (look-elsewhere effect; trials factor and toys). CMS,
        arXiv:2412.03747 (fit range and F-test of the dijet function).
    """
    full_counts, full_edges = mjj_histogram(histogram)
    if not 0 <= min_fit_probability < 1:
        raise ConfigurationError(f"min_fit_probability must be in [0, 1), got {min_fit_probability:g}")
    chosen = fit_range(
        full_counts, full_edges, mjj_min=mjj_min, mjj_max=mjj_max, n_parameters=n_parameters,
        min_fit_probability=min_fit_probability, min_expected=min_expected, f_test_alpha=f_test_alpha, sqrt_s=sqrt_s,
    )
    counts = full_counts[chosen.first : chosen.stop]
    edges = full_edges[chosen.first : chosen.stop + 1]
    if signal is not None:
        signal_counts, _ = histogram_counts(signal, "signal")
        if signal_counts.size != full_counts.size:
            raise ConfigurationError(f"signal has {signal_counts.size} bins, the mjj histogram has {full_counts.size}")
        signal = signal_counts[chosen.first : chosen.stop]
    if centres is None:
        centres = default_centres(edges, relative_width)
    centres = np.asarray(centres, dtype=np.float64)
    if centres.size == 0 or np.any(centres <= edges[0]) or np.any(centres >= edges[-1]):
        raise ConfigurationError(
            f"window centres must lie inside the fit range {edges[0]:g}..{edges[-1]:g} GeV "
            f"({chosen.method}; set it with mjj_min / --mjj-min)"
        )
    options = dict(
        relative_width=relative_width,
        n_parameters=n_parameters,
        signal=signal,
        background_uncertainty=background_uncertainty,
        sqrt_s=sqrt_s,
        min_fit_probability=min_fit_probability,
        min_expected=min_expected,
        f_test_alpha=f_test_alpha,
    )
    windows = [scan_window(counts, edges, c, **options)[0] for c in centres]
    best = _most_significant(windows)
    trials = _trials_factor(centres)
    p_trials = float(-np.expm1(trials * np.log1p(-min(best.significance.p0, 1 - 1e-16))))
    toy_max_z, p_toys = None, None
    if n_toys > 0:
        background = chosen.fit.yields(edges)
        rng = np.random.default_rng(seed)
        with progress_bar(n_toys, "bump-hunt toys", unit="toy", enabled=n_toys >= 10) as bar:
            maxima = []
            for _ in range(n_toys):
                toy = rng.poisson(background)
                maxima.append(_most_significant([scan_window(toy, edges, c, **options)[0] for c in centres]))
                bar.update(1)
        toy_max_z = np.array([w.significance.z for w in maxima])
        p_toys = float(np.mean(toy_max_z >= best.significance.z))
    flagged = sum(not w.fit_ok for w in windows)
    logger.info(
        "bump hunt on %.0f-%.0f GeV (%s): largest local Z %.2f at %.0f GeV; %d of %d windows flagged "
        "(sideband fit p < %g)",
        edges[0], edges[-1], chosen.method, best.significance.z, best.centre, flagged, len(windows),
        min_fit_probability,
    )
    return BumpHuntResult(
        windows=windows, trials_factor=trials, global_p_trials=p_trials, global_p_toys=p_toys, toy_max_z=toy_max_z,
        fit_range=chosen, counts=counts, edges=edges, signal=signal, relative_width=relative_width,
        background_uncertainty=background_uncertainty, min_fit_probability=min_fit_probability,
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
