"""Score thresholds from a target background efficiency, and the histograms after the cut.

The threshold of a score is set where a fraction ``efficiency`` of the events of a control region (a
sideband, the |Δη| ≥ 1.3 region, the low-HT/MET region) score higher. The score axis of the histograms
filled by :class:`processors.score_processor.AnomalyScoreProcessor` has its edges at the thresholds of a
ladder of efficiencies measured in that control region (:func:`score_edges`), so that the events above
any of these thresholds, in any region, are a sum of whole bins (:func:`passing`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import hist
import numpy as np
from numpy.typing import ArrayLike

from coffea_ad.errors import ConfigurationError

__all__ = [
    "EFFICIENCY_LADDER",
    "background_efficiency_edges",
    "check_edges",
    "efficiency_of_edges",
    "passing",
    "score_edges",
    "threshold_at",
]

#: Background efficiencies whose thresholds become score-bin edges (finer towards the tail, where a signal sits).
EFFICIENCY_LADDER = (0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001)


def score_edges(
    control_scores: np.ndarray,
    target_efficiency: float,
    ladder: Iterable[float] = EFFICIENCY_LADDER,
    *,
    name: str = "score",
) -> np.ndarray:
    """Ascending score-bin edges: the control-region minimum and maximum and, between them, the score
    above which each efficiency of ``ladder`` (and ``target_efficiency``) of the control events lie."""
    scores = np.asarray(control_scores, dtype=float)
    scores = scores[np.isfinite(scores)]
    if not 0 < target_efficiency < 1:
        raise ConfigurationError(f"target efficiency must be between 0 and 1, got {target_efficiency}")
    if len(scores) == 0:
        raise ConfigurationError(f"no control-region event has a {name}: cannot set its threshold")
    efficiencies = sorted({*ladder, target_efficiency}, reverse=True)
    usable = [e for e in efficiencies if e * len(scores) >= 1]
    if target_efficiency not in usable:
        raise ConfigurationError(
            f"a background efficiency of {target_efficiency} needs at least {int(np.ceil(1 / target_efficiency))} "
            f"control-region events; there are {len(scores)}"
        )
    thresholds = np.quantile(scores, [1 - e for e in usable], method="higher")
    edges = np.unique(np.concatenate([[scores.min()], thresholds, [np.nextafter(scores.max(), np.inf)]]))
    return edges


def background_efficiency_edges(
    background: ArrayLike,
    *,
    efficiencies: Sequence[float] = EFFICIENCY_LADDER,
    min_entries: int = 20,
    high: float | None = None,
) -> np.ndarray:
    """Bin edges of a fitted score whose bins each hold at least ``min_entries`` background entries.

    The inner edges sit at the thresholds keeping each fraction in ``efficiencies`` of the (unweighted)
    ``background`` entries, so that the bins get narrower in background efficiency towards high scores, where
    a signal sits; an efficiency is dropped when it would leave a bin with fewer than ``min_entries`` entries
    (the template's statistical uncertainty stays below about 1/sqrt(min_entries) per bin). The outer edges
    enclose every background value and ``high`` (e.g. the largest signal score), so nothing overflows.
    """
    values = np.asarray(background, dtype=np.float64).ravel()
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise ConfigurationError("background must be a non-empty array of finite values")
    if min_entries < 1:
        raise ConfigurationError(f"min_entries must be at least 1, got {min_entries}")
    ladder = np.asarray(efficiencies, dtype=np.float64)
    if ladder.ndim != 1 or np.any((ladder <= 0) | (ladder >= 1)) or np.any(np.diff(ladder) >= 0):
        raise ConfigurationError("efficiencies must be decreasing fractions between 0 and 1")
    n = values.size
    kept: list[float] = []
    previous = 1.0
    for efficiency in ladder:
        if efficiency * n >= min_entries and (previous - efficiency) * n >= min_entries:
            kept.append(float(efficiency))
            previous = float(efficiency)
    inner = np.quantile(values, 1.0 - np.asarray(kept)) if kept else np.empty(0)
    top = max(float(values.max()), float(high) if high is not None else -np.inf)
    return np.unique(np.concatenate([[values.min()], inner, [np.nextafter(top, np.inf)]]))


def _score_axis_index(histogram: hist.Hist, score: str) -> int:
    names = [axis.name for axis in histogram.axes]
    if score not in names:
        raise ConfigurationError(f"histogram has no axis {score!r}; its axes are {names}")
    return names.index(score)


def efficiency_of_edges(histogram: hist.Hist, score: str, region: int) -> np.ndarray:
    """Fraction of the events of ``region`` (its position on the region axis) above each score edge."""
    projected = histogram[{"region": hist.loc(region)}].project(score)
    counts = projected.values(flow=True)
    total = counts.sum()
    if total <= 0:
        raise ConfigurationError(f"the control region (position {region}) has no events with a {score}")
    above = np.cumsum(counts[::-1])[::-1]  # above[i]: flow-indexed bins i.. (index 0 is the underflow)
    return above[1:] / total  # at each edge: the bins from that edge on, the overflow included


def threshold_at(histogram: hist.Hist, score: str, region: int, efficiency: float) -> tuple[float, float]:
    """The score edge whose control-region efficiency is closest to ``efficiency``, and that efficiency."""
    edges = histogram.axes[score].edges
    measured = efficiency_of_edges(histogram, score, region)
    best = int(np.argmin(np.abs(measured - efficiency)))
    return float(edges[best]), float(measured[best])


def passing(histogram: hist.Hist, score: str, threshold: float) -> hist.Hist:
    """The histogram without its score axis, keeping the events with a score at or above ``threshold``
    (an edge of the score axis) - the overflow included."""
    axis = histogram.axes[score]
    position = int(np.searchsorted(axis.edges, threshold))
    if position >= len(axis.edges) or not np.isclose(axis.edges[position], threshold):
        raise ConfigurationError(f"threshold {threshold} is not an edge of the {score} axis {list(axis.edges)}")
    return histogram[{score: slice(position, None, sum)}]


def check_edges(edges: Sequence[float], name: str) -> tuple[float, ...]:
    """Validate user-given score edges: at least two, finite, strictly increasing."""
    values = np.asarray(edges, dtype=float)
    if values.ndim != 1 or len(values) < 2 or not np.all(np.isfinite(values)) or np.any(np.diff(values) <= 0):
        raise ConfigurationError(
            f"score edges of {name} must be at least two finite increasing numbers, got {list(edges)}"
        )
    return tuple(values)
