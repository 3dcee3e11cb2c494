"""Distributions of input features: normalised shapes of several samples, and a background template against
the true background feature by feature (the closure figure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from coffea_ad.errors import ConfigurationError
from coffea_ad.plotting.style import cms_style, new_figure

if TYPE_CHECKING:
    import hist
    from matplotlib.figure import Figure

__all__ = ["plot_feature_distributions", "plot_shapes"]


def plot_feature_distributions(
    samples: Mapping[str, tuple[ArrayLike, ArrayLike | None]],
    names: Sequence[str],
    bins: Mapping[str, ArrayLike],
    *,
    axis_labels: Mapping[str, str] | None = None,
    title: str | None = None,
) -> Figure:
    """One panel per feature (two rows): the normalised distribution of each labelled sample.

    ``samples[label] = (values, weights)``: ``values`` is ``(events, len(names))`` in the column order of
    ``names``, ``weights`` per event (None: 1). The first sample is the reference (e.g. the true background),
    drawn as points with their statistical uncertainty; the others (e.g. templates) as lines. ``bins[name]``
    are the edges of each feature; the legend, titled ``title``, sits in a free panel if there is one.
    """
    import mplhep
    from matplotlib.figure import Figure

    if not samples:
        raise ConfigurationError("plot_feature_distributions needs at least one sample")
    missing = [name for name in names if name not in bins]
    if missing:
        raise ConfigurationError(f"no bins given for feature(s) {missing}")
    arrays = {}
    for label, (values, weights) in samples.items():
        matrix = np.asarray(values, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[1] != len(names):
            raise ConfigurationError(f"sample {label!r} has shape {matrix.shape}, expected (events, {len(names)})")
        arrays[label] = (matrix, np.ones(len(matrix)) if weights is None else np.asarray(weights, dtype=np.float64))
    columns = (len(names) + 1) // 2
    with cms_style():
        figure = Figure(figsize=(6 * columns, 11))
        axes = figure.subplots(2, columns).ravel()
        for index, name in enumerate(names):
            axis = axes[index]
            for position, (label, (matrix, weights)) in enumerate(arrays.items()):
                counts, edges = np.histogram(matrix[:, index], bins[name], weights=weights)
                variances = np.histogram(matrix[:, index], bins[name], weights=weights**2)[0]
                total = max(counts.sum(), 1e-12)
                if position == 0:
                    mplhep.histplot(counts / total, edges, yerr=np.sqrt(variances) / total, ax=axis,
                                    histtype="errorbar", color="black", label=label)
                else:
                    mplhep.histplot(counts / total, edges, ax=axis, label=label, linewidth=2)
            axis.set_xlabel((axis_labels or {}).get(name, name))
            axis.set_ylabel("Fraction of events")
        for axis in axes[len(names):]:
            axis.set_axis_off()
        handles, labels = axes[0].get_legend_handles_labels()
        axes[-1].legend(handles, labels, loc="center", title=title, fontsize=16)
    return figure


def plot_shapes(
    histograms: Mapping[str, hist.Hist], *, title: str | None = None, ylabel: str = "normalised events"
) -> Figure:
    """The shapes (unit area) of several labelled one-dimensional histograms of the same variable on one axis
    (a square figure, the CMS style's own size)."""
    import mplhep

    if not histograms:
        raise ConfigurationError("plot_shapes needs at least one histogram")
    with cms_style():
        figure, axis = new_figure(size=(10, 10))
        for label, histogram in histograms.items():
            mplhep.histplot(histogram, density=True, label=label, ax=axis)
        axis.set_ylabel(ylabel)
        axis.legend()
        if title:
            axis.set_title(title, fontsize=18)
    return figure
