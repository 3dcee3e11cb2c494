"""Plots of fits and limits (mplhep CMS style, matplotlib figures returned, nothing global changed).

- :func:`plot_fit`: data points over the fitted prediction (stacked components optional) with its
  uncertainty band, and a pull panel (data − fit) / sqrt(fit + σ_fit²).
- :func:`plot_bump_hunt_fit`: :func:`plot_fit` of the most significant window of a bump hunt.
- :func:`plot_cls_scan`: observed and expected CLs against the signal strength with the ±1σ/±2σ bands.
- :func:`plot_limits`: the observed and expected upper limits (with their bands) of several fits, one row each.
- :func:`plot_local_significance`: local Z against the window centre of a bump hunt.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from coffea_ad.plotting.style import cms_style, new_figure
from coffea_ad.stats.bumphunt import BumpHuntResult, from_first_filled_bin
from coffea_ad.stats.inference import UpperLimit

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_fit", "plot_bump_hunt_fit", "plot_cls_scan", "plot_limits", "plot_local_significance"]


def plot_fit(
    edges: ArrayLike,
    data: ArrayLike,
    prediction: ArrayLike,
    *,
    uncertainty: ArrayLike | None = None,
    components: Mapping[str, np.ndarray] | None = None,
    signal: np.ndarray | None = None,
    window: tuple[float, float] | None = None,
    xlabel: str = r"$m_{jj}$ [GeV]",
    prediction_label: str = "fit",
    log: bool = True,
) -> Figure:
    """Data over the fit with a pull panel; ``window`` shades the excluded (signal) window."""
    import mplhep

    edges = np.asarray(edges, dtype=np.float64)
    data = np.asarray(data, dtype=np.float64)
    prediction = np.asarray(prediction, dtype=np.float64)
    sigma = np.zeros_like(prediction) if uncertainty is None else np.asarray(uncertainty, dtype=np.float64)
    with cms_style():
        fig, (ax, pull_ax) = new_figure(2, height_ratios=(3, 1))
        if components:
            mplhep.histplot(
                list(components.values()), edges, ax=ax, stack=True, histtype="fill", label=list(components), alpha=0.6
            )
        mplhep.histplot(prediction, edges, ax=ax, color="tab:blue", label=prediction_label)
        if uncertainty is not None:
            ax.stairs(
                prediction + sigma,
                edges,
                baseline=prediction - sigma,
                fill=True,
                alpha=0.3,
                color="tab:blue",
                label="uncertainty",
            )
        if signal is not None:
            mplhep.histplot(np.asarray(signal, dtype=np.float64), edges, ax=ax, color="tab:red", label="signal")
        mplhep.histplot(data, edges, ax=ax, histtype="errorbar", yerr=np.sqrt(data), color="black", label="data")
        with np.errstate(divide="ignore", invalid="ignore"):
            pulls = np.where(prediction > 0, (data - prediction) / np.sqrt(prediction + sigma**2), 0.0)
        pull_ax.stairs(pulls, edges, baseline=0, fill=True, color="grey")
        pull_ax.axhline(0, color="black", linewidth=1)
        for axis in (ax, pull_ax):
            if window is not None:
                axis.axvspan(*window, color="orange", alpha=0.15)
        if log:
            ax.set_yscale("log")
            low = max(float(np.min(prediction[prediction > 0], initial=1.0)) * 0.3, 1e-3)
            ax.set_ylim(low, max(float(data.max()), float(prediction.max())) * 30)
        else:
            ax.set_ylim(0, max(float(data.max()), float(prediction.max())) * 1.5)
        ax.set_ylabel("Events / bin")
        ax.legend(ncol=2, fontsize="small")
        pull_ax.set_ylabel("Pull")
        pull_ax.set_xlabel(xlabel)
        limit = max(3.0, float(np.nanmax(np.abs(pulls))) * 1.1)
        pull_ax.set_ylim(-limit, limit)
    return fig


def plot_bump_hunt_fit(
    result: BumpHuntResult, data: Any, *, signal: Any = None, xlabel: str = r"$m_{jj}$ [GeV]"
) -> Figure:
    """The background fit of the most significant window of ``result`` over the mjj histogram ``data`` (and
    ``signal``, same binning) from its first filled bin on, the window shaded, with the pull panel."""
    (counts, edges), signal_counts = from_first_filled_bin(data, signal)
    best = result.most_significant
    return plot_fit(
        edges, counts, best.fit.yields(edges), uncertainty=best.fit.yield_uncertainties(edges), signal=signal_counts,
        window=(best.low, best.high), xlabel=xlabel,
    )


def plot_cls_scan(limit: UpperLimit, *, poi_label: str = r"$\mu$") -> Figure:
    """Observed and expected CLs against the POI with the ±1σ (green) and ±2σ (yellow) bands."""
    with cms_style():
        fig, ax = new_figure()
        mu, expected = limit.scan, limit.cls_expected
        ax.fill_between(mu, expected[0], expected[4], color="yellow", label=r"expected $\pm 2\sigma$")
        ax.fill_between(mu, expected[1], expected[3], color="limegreen", label=r"expected $\pm 1\sigma$")
        ax.plot(mu, expected[2], color="black", linestyle="--", label="expected")
        ax.plot(mu, limit.cls_observed, color="black", marker="o", markersize=3, label="observed")
        ax.axhline(limit.level, color="red", label=f"{1 - limit.level:.0%} CL")
        ax.axvline(limit.observed, color="grey", linestyle=":")
        ax.set_xlabel(poi_label)
        ax.set_ylabel(r"CL$_s$")
        ax.set_xlim(0, min(float(mu.max()), 2.0 * max(limit.expected[4], limit.observed)))
        ax.set_ylim(0, 1.05)
        ax.legend(
            title=f"observed limit {limit.observed:.3g}\nexpected {limit.expected[2]:.3g}",
            loc="upper right", fontsize=14, title_fontsize=14,
        )
    return fig


def plot_limits(
    limits: Mapping[str, UpperLimit],
    *,
    xlabel: str = r"95 % CL$_s$ upper limit on $\mu$",
    observed_label: str = "observed",
) -> Figure:
    """One row per labelled limit: the expected median (dashed) in its ±1σ (green) and ±2σ (yellow) bands, and
    the observed limit (point)."""
    with cms_style():
        figure, axis = new_figure()
        names = list(limits)
        for y, name in enumerate(names):
            expected, first = limits[name].expected, y == 0
            axis.fill_betweenx([y - 0.3, y + 0.3], expected[0], expected[4], color="yellow",
                               label=r"expected $\pm 2\sigma$" if first else None)
            axis.fill_betweenx([y - 0.3, y + 0.3], expected[1], expected[3], color="limegreen",
                               label=r"expected $\pm 1\sigma$" if first else None)
            axis.plot([expected[2]] * 2, [y - 0.3, y + 0.3], color="black", linestyle="--",
                      label="expected" if first else None)
            axis.plot(limits[name].observed, y, "ko", label=observed_label if first else None)
        axis.set_yticks(range(len(names)), names)
        axis.set_ylim(-0.7, len(names) + 0.7)
        axis.set_xlabel(xlabel)
        axis.legend(fontsize="small", loc="upper right")
    return figure


def plot_local_significance(result: BumpHuntResult) -> Figure:
    """Local significance of every window of a bump hunt, with the global Z in the legend."""
    with cms_style():
        fig, ax = new_figure()
        centres = [w.centre for w in result.windows]
        ax.plot(centres, [w.significance.z for w in result.windows], marker="o", color="black", label="local Z")
        ax.set_xlabel(r"window centre $m_{jj}$ [GeV]")
        ax.set_ylabel(r"local significance Z [$\sigma$]")
        ax.legend(
            title=f"global Z = {result.global_z:.2f} ({result.global_method.replace('_', ' ')})",
            fontsize=14, title_fontsize=14,
        )
    return fig
