"""Figures of merit of an anomaly score: ROC, SIC and score distributions (per class, or per jet).

The numbers come from :mod:`coffea_ad.selection.metrics`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from coffea_ad.errors import ConfigurationError
from coffea_ad.plotting.style import cms_style, new_figure
from coffea_ad.selection.metrics import RocCurve, auc, max_sic, scores_and_weights

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_roc", "plot_sic", "plot_score_distributions"]


def plot_roc(rocs: Mapping[str, RocCurve]) -> Figure:
    """Background rejection 1/FPR against signal efficiency (log scale), one line per labelled ROC."""
    with cms_style():
        fig, ax = new_figure()
        for label, roc in rocs.items():
            keep = roc.fpr > 0
            ax.plot(roc.tpr[keep], 1.0 / roc.fpr[keep], label=f"{label} (AUC {auc(roc):.3f})")
        grid = np.linspace(0.01, 1, 100)
        ax.plot(grid, 1 / grid, color="grey", linestyle="--", label="random")
        ax.set_yscale("log")
        ax.set_xlabel("Signal efficiency (TPR)")
        ax.set_ylabel("Background rejection 1/FPR")
        ax.legend()
    return fig


def plot_sic(rocs: Mapping[str, RocCurve]) -> Figure:
    """SIC = TPR/sqrt(FPR) against signal efficiency, cut at FPR > 1/N_bkg, one line per labelled ROC."""
    with cms_style():
        fig, ax = new_figure()
        for label, roc in rocs.items():
            keep = roc.fpr > 1.0 / roc.n_background
            ax.plot(roc.tpr[keep], roc.tpr[keep] / np.sqrt(roc.fpr[keep]), label=f"{label} (max {max_sic(roc):.2f})")
        ax.axhline(1.0, color="grey", linestyle="--", label="random")
        ax.set_xlabel("Signal efficiency (TPR)")
        ax.set_ylabel("SIC = TPR/√FPR")
        ax.legend()
    return fig


def plot_score_distributions(
    scores: Mapping[str, np.ndarray],
    *,
    weights: Mapping[str, np.ndarray] | None = None,
    bins: int | np.ndarray = 50,
    density: bool = True,
    xlabel: str = "Anomaly score",
) -> Figure:
    """Histograms of the score, one per class (e.g. ``{"background": ..., "signal": ...}``), on common bins."""
    import mplhep

    if not scores:
        raise ConfigurationError("plot_score_distributions needs at least one class of scores")
    arrays = {
        name: scores_and_weights(values, (weights or {}).get(name), f"{name}_scores")
        for name, values in scores.items()
    }
    if np.ndim(bins) == 0:
        low = min(v.min() for v, _ in arrays.values())
        high = max(v.max() for v, _ in arrays.values())
        edges = np.linspace(low, high if high > low else low + 1.0, int(bins) + 1)
    else:
        edges = np.asarray(bins, dtype=np.float64)
    with cms_style():
        fig, ax = new_figure()
        for name, (values, w) in arrays.items():
            counts, _ = np.histogram(values, bins=edges, weights=w, density=density)
            mplhep.histplot(counts, edges, ax=ax, label=name)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("Density" if density else "Events")
        ax.set_yscale("log")
        ax.legend()
    return fig
