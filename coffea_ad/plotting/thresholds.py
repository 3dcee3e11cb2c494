"""Mass-dependent cuts: the threshold over the score-vs-mass plane, and the background efficiency per mass bin."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from coffea_ad.errors import ConfigurationError
from coffea_ad.plotting.style import cms_style, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from coffea_ad.selection.mass_dependent import MassDependentThreshold

__all__ = ["plot_threshold_map", "plot_efficiency_per_bin"]


def plot_threshold_map(
    score: ArrayLike,
    mass: ArrayLike,
    threshold: MassDependentThreshold,
    mass_edges: ArrayLike,
    *,
    xlabel: str = r"$m_{jj}$ [GeV]",
    ylabel: str = "score",
    colorbar_label: str = "events",
) -> Figure:
    """The events in the (mass, score) plane (log colour and log score axis; positive scores) with the fitted
    threshold of a :class:`~coffea_ad.selection.MassDependentThreshold` as a line; x ticks every 1000."""
    from matplotlib.colors import LogNorm

    score, mass, edges = (np.asarray(a, dtype=np.float64) for a in (score, mass, mass_edges))
    positive = score > 0
    if not positive.any():
        raise ConfigurationError("plot_threshold_map needs positive scores (the score axis is logarithmic)")
    score_edges = np.logspace(np.log10(np.quantile(score[positive], 0.001)), np.log10(score.max()), 60)
    with cms_style():
        figure, axis = new_figure()
        counts, x_edges, y_edges = np.histogram2d(mass[positive], score[positive], bins=(edges, score_edges))
        mesh = axis.pcolormesh(x_edges, y_edges, counts.T, norm=LogNorm(vmin=1), cmap="Blues")
        figure.colorbar(mesh, ax=axis, label=colorbar_label)
        grid = np.linspace(edges[0], edges[-1], 200)
        axis.plot(grid, threshold.threshold(grid), color="tab:red", linewidth=2,
                  label=f"{threshold.efficiency:.0%} quantile")
        axis.set_yscale("log")
        axis.set_xticks(np.arange(np.ceil(edges[0] / 1000.0) * 1000.0, edges[-1] + 1.0, 1000.0))
        axis.set_xlabel(xlabel)
        axis.set_ylabel(ylabel)
        axis.legend(loc="lower right")
    return figure


def plot_efficiency_per_bin(
    edges: ArrayLike,
    efficiencies: Mapping[str, tuple[ArrayLike, ArrayLike]],
    target: float,
    *,
    xlabel: str = r"$m_{jj}$ [GeV]",
    ylabel: str = "background efficiency",
) -> Figure:
    """The efficiency of each labelled cut per mass bin (``efficiencies[label] = (efficiency, uncertainty)``,
    e.g. from :meth:`~coffea_ad.selection.MassDependentThreshold.efficiency_per_bin`) against its target;
    the cuts are drawn side by side within each bin."""
    edges = np.asarray(edges, dtype=np.float64)
    centres, half_widths = 0.5 * (edges[1:] + edges[:-1]), 0.5 * np.diff(edges)
    offset = 0.2 * half_widths.min()
    with cms_style():
        figure, axis = new_figure()
        for index, (label, (efficiency, uncertainty)) in enumerate(efficiencies.items()):
            shift = (index - (len(efficiencies) - 1) / 2) * offset
            axis.errorbar(centres + shift, efficiency, yerr=uncertainty, xerr=half_widths, marker="o",
                          linestyle="none", label=label)
        axis.axhline(target, color="grey", linestyle="--", label=f"target {target:.0%}")
        axis.set_ylim(0, 3 * target)
        axis.set_xlabel(xlabel)
        axis.set_ylabel(ylabel)
        axis.legend()
    return figure
