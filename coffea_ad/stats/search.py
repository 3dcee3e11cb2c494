"""The windows, binning and look-elsewhere correction of the sliding-window resonant anomaly search.

The CMS search for dijet resonances with anomalous substructure (arXiv:2412.03747) trains a weakly supervised
model in each of two staggered sets of mjj windows about 20 % wide (upper over lower edge ≈ 1.22), the second
set shifted by half a window, cuts on its score and fits the mjj spectrum after the cut. Here:

- :func:`mass_binning`: log-uniform mjj bins, :data:`BINS_PER_WINDOW` per window (about 3.4 % wide, below the
  dijet mass resolution), so that auto windows and their half-window steps fall on bin edges;
- :func:`auto_windows`: the staggered windows over the fit range (:func:`coffea_ad.stats.bumphunt.fit_range`,
  above the turn-on), each with at least half a window of sideband on both sides inside the range and at least
  ``min_events`` events before any cut;
- :func:`parse_windows` / :func:`check_windows`: explicit ``LO:HI`` windows, refused when they leave the fit
  range; :func:`window_binning` adds their edges to the bins;
- :func:`global_significance`: the most significant of all the tests (windows × efficiencies) with a good
  sideband fit, and its global p-value with the trials factor N = number of tests, p_global = 1 − (1 − p)^N
  (Šidák): an upper bound, since overlapping windows and nested cuts are positively correlated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import norm

from coffea_ad.errors import ConfigurationError

__all__ = [
    "WINDOW_RATIO",
    "BINS_PER_WINDOW",
    "MIN_WINDOW_EVENTS",
    "SearchWindow",
    "mass_binning",
    "auto_windows",
    "parse_windows",
    "check_windows",
    "window_binning",
    "global_significance",
]

#: Upper over lower edge of an auto window (about 20 % wide around its centre), as in the CMS search.
WINDOW_RATIO = 1.22
#: Log-uniform mjj bins per auto window (even: the staggered set starts half a window up, on a bin edge).
BINS_PER_WINDOW = 6
#: An auto window holds at least this many events before any cut (fewer cannot train a weakly supervised model).
MIN_WINDOW_EVENTS = 200


@dataclass(frozen=True)
class SearchWindow:
    """One signal region ``[low, high)`` GeV of the search; ``staggered_set`` is 0 or 1 (shifted by half a
    window) for auto windows, None for windows given by hand."""

    low: float
    high: float
    staggered_set: int | None = None

    @property
    def name(self) -> str:
        """``LOW-HIGH`` in GeV (the window's folder and file names)."""
        return f"{self.low:.0f}-{self.high:.0f}"

    @property
    def centre(self) -> float:
        return 0.5 * (self.low + self.high)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "window_GeV": [self.low, self.high],
            "centre_GeV": self.centre,
            "staggered_set": self.staggered_set,
        }


def mass_binning(
    low: float, high: float, *, ratio: float = WINDOW_RATIO, bins_per_window: int = BINS_PER_WINDOW
) -> np.ndarray:
    """Bin edges ``low * r**k`` with ``r = ratio ** (1 / bins_per_window)``, up to the first edge at or above
    ``high``."""
    if not 0 < low < high:
        raise ConfigurationError(f"the mass binning needs 0 < low < high, got {low:g}, {high:g}")
    if ratio <= 1 or bins_per_window < 2 or bins_per_window % 2:
        raise ConfigurationError(f"need a window ratio > 1 and an even number of bins per window, got {ratio}, "
                                 f"{bins_per_window}")
    step = np.log(ratio) / bins_per_window
    n_bins = int(np.ceil(np.log(high / low) / step - 1e-9))
    return low * np.exp(step * np.arange(max(n_bins, 1) + 1))


def auto_windows(
    counts: ArrayLike,
    edges: ArrayLike,
    *,
    bins_per_window: int = BINS_PER_WINDOW,
    min_events: int = MIN_WINDOW_EVENTS,
) -> list[SearchWindow]:
    """The two staggered sets of windows of ``bins_per_window`` bins over the fit range ``counts``, ``edges``
    (bins of :func:`mass_binning`): windows start every half window, leave at least half a window of sideband
    on both sides, and end at the first window holding fewer than ``min_events`` events."""
    counts = np.asarray(counts, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    half = bins_per_window // 2
    windows = []
    for k, first in enumerate(range(half, counts.size - bins_per_window - half + 1, half)):
        if counts[first : first + bins_per_window].sum() < min_events:
            break
        windows.append(SearchWindow(float(edges[first]), float(edges[first + bins_per_window]), k % 2))
    if not windows:
        raise ConfigurationError(
            f"the fit range {edges[0]:.0f}-{edges[-1]:.0f} GeV holds no window of {bins_per_window} bins with "
            f"half a window of sideband on each side and at least {min_events} events: too few events or too "
            "narrow a range (give windows with --windows LO:HI,...)"
        )
    return windows


def parse_windows(texts: Sequence[str | Sequence[float]]) -> list[SearchWindow]:
    """Windows from ``"LO:HI"`` strings or ``(lo, hi)`` pairs in GeV, sorted; a malformed or empty one raises."""
    windows = []
    for text in texts:
        try:
            low, high = (float(part) for part in (text.split(":") if isinstance(text, str) else text))
        except (TypeError, ValueError):
            raise ConfigurationError(f"a window is LO:HI in GeV (e.g. 3300:3700), got {text!r}") from None
        if not (np.isfinite(low) and np.isfinite(high) and 0 < low < high):
            raise ConfigurationError(f"a window needs 0 < LO < HI, got {text!r}")
        windows.append(SearchWindow(low, high))
    if not windows:
        raise ConfigurationError("no window given")
    return sorted(windows, key=lambda window: (window.low, window.high))


def check_windows(windows: Sequence[SearchWindow], fit_low: float, fit_high: float, source: str) -> None:
    """Refuse windows that leave the fit range ``[fit_low, fit_high)`` (``source`` says how it was found)."""
    outside = [window.name for window in windows if window.low <= fit_low or window.high >= fit_high]
    if outside:
        raise ConfigurationError(
            f"window(s) {', '.join(outside)} GeV are not inside the fit range {fit_low:.0f}-{fit_high:.0f} GeV "
            f"({source}) with sidebands on both sides: move them, or set the range with --mjj-min / --mjj-max"
        )


def window_binning(edges: ArrayLike, windows: Sequence[SearchWindow]) -> np.ndarray:
    """``edges`` with every window edge added, dropping the old edges closer than half a bin to a new one,
    so that each window is a whole number of bins."""
    edges = np.asarray(edges, dtype=np.float64)
    added = np.unique([edge for window in windows for edge in (window.low, window.high)])
    widths = np.diff(edges)
    keep = np.ones(edges.size, dtype=bool)
    for edge in added:
        position = int(np.clip(np.searchsorted(edges, edge), 1, edges.size - 1))
        for index in (position - 1, position):
            if 0 < index < edges.size - 1 and abs(edges[index] - edge) < widths[min(index, widths.size - 1)] / 2:
                keep[index] = False
    return np.unique(np.r_[edges[keep], added])


def global_significance(tests: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The most significant of ``tests`` (dicts with ``local_p0``, ``local_Z``, ``fit_ok`` and what identifies
    them) among those with a good sideband fit (among all when none has one), and its global p-value with the
    trials factor N = ``len(tests)``. None without tests."""
    if not tests:
        return None
    good = [test for test in tests if test["fit_ok"]]
    best = max(good or tests, key=lambda test: test["local_Z"])
    trials = len(tests)
    p_local = min(max(float(best["local_p0"]), 0.0), 1 - 1e-16)
    p_global = float(-np.expm1(trials * np.log1p(-p_local)))
    return {
        **best,
        "n_tests": trials,
        "trials_factor": float(trials),
        "global_p": p_global,
        "global_Z": float(norm.isf(min(max(p_global, 1e-300), 0.5))),
        "method": "trials_factor",
        "fit_ok": bool(best["fit_ok"]),
    }
