"""Plots of fits and limits (mplhep CMS style, matplotlib figures returned, nothing global changed).

- :func:`plot_fit`: data points over the fitted prediction (stacked components optional) with its
  uncertainty band, and a pull panel (data − fit) / sqrt(fit + σ_fit²) of the bins inside the fit range,
  on a fixed ±5 scale.
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

from coffea_ad.errors import ConfigurationError
from coffea_ad.plotting.style import cms_style, new_figure
from coffea_ad.stats.bumphunt import BumpHuntResult, mjj_histogram
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
    fit_range: tuple[float, float] | None = None,
    goodness_of_fit: tuple[float, int, float] | None = None,
    pull_limit: float = 5.0,
    xlabel: str = r"$m_{jj}$ [GeV]",
    prediction_label: str = "fit",
    log: bool = True,
) -> Figure:
    """Data over the fit with a pull panel; ``window`` shades the excluded (signal) window.

    With ``fit_range`` (low, high) in GeV the prediction is drawn and the pulls are computed only for the bins
    inside it; the bins outside are shaded grey (data shown, not fitted). The pull axis spans
    ±``pull_limit``; a pull beyond it is drawn at the edge with a triangle marker. ``goodness_of_fit`` =
    (χ², ndf, p) of the merged bins is written in the lower left corner.
    """
    import mplhep

    edges = np.asarray(edges, dtype=np.float64)
    data = np.asarray(data, dtype=np.float64)
    prediction = np.asarray(prediction, dtype=np.float64)
    sigma = np.zeros_like(prediction) if uncertainty is None else np.asarray(uncertainty, dtype=np.float64)
    centres = 0.5 * (edges[1:] + edges[:-1])
    inside = np.ones(data.size, dtype=bool)
    if fit_range is not None:
        inside = (centres >= fit_range[0]) & (centres < fit_range[1])
        if not np.any(inside):
            raise ConfigurationError(f"no bin lies inside the fit range {fit_range[0]:g}..{fit_range[1]:g}")
    shown = slice(int(np.flatnonzero(inside)[0]), int(np.flatnonzero(inside)[-1]) + 1)
    fit_edges = edges[shown.start : shown.stop + 1]
    with cms_style():
        fig, (ax, pull_ax) = new_figure(2, height_ratios=(3, 1))
        if components:
            mplhep.histplot(
                [np.asarray(v)[shown] for v in components.values()], fit_edges, ax=ax, stack=True, histtype="fill",
                label=list(components), alpha=0.6,
            )
        mplhep.histplot(prediction[shown], fit_edges, ax=ax, color="tab:blue", label=prediction_label)
        if uncertainty is not None:
            ax.stairs(
                (prediction + sigma)[shown],
                fit_edges,
                baseline=(prediction - sigma)[shown],
                fill=True,
                alpha=0.3,
                color="tab:blue",
                label="uncertainty",
            )
        if signal is not None:
            mplhep.histplot(np.asarray(signal, dtype=np.float64), edges, ax=ax, color="tab:red", label="signal")
        mplhep.histplot(data, edges, ax=ax, histtype="errorbar", yerr=np.sqrt(data), color="black", label="data")
        with np.errstate(divide="ignore", invalid="ignore"):
            pulls = np.where(inside & (prediction > 0), (data - prediction) / np.sqrt(prediction + sigma**2), 0.0)
        clipped = np.clip(pulls, -pull_limit, pull_limit)
        pull_ax.stairs(clipped[shown], fit_edges, baseline=0, fill=True, color="grey")
        beyond = np.abs(pulls) > pull_limit
        for direction, marker in ((1, "^"), (-1, "v")):
            where = beyond & (np.sign(pulls) == direction)
            pull_ax.plot(
                centres[where], np.full(where.sum(), direction * pull_limit * 0.85), linestyle="none",
                marker=marker, color="tab:red", markersize=8,
            )
        pull_ax.axhline(0, color="black", linewidth=1)
        for axis in (ax, pull_ax):
            if window is not None:
                axis.axvspan(*window, color="orange", alpha=0.15)
            if fit_range is not None:
                for low, high in ((edges[0], fit_range[0]), (fit_range[1], edges[-1])):
                    if high > low:
                        axis.axvspan(low, high, color="grey", alpha=0.2, linewidth=0)
        if log:
            ax.set_yscale("log")
            low = max(float(np.min(prediction[shown][prediction[shown] > 0], initial=1.0)) * 0.3, 1e-3)
            ax.set_ylim(low, max(float(data.max()), float(prediction[shown].max())) * 30)
        else:
            ax.set_ylim(0, max(float(data.max()), float(prediction[shown].max())) * 1.5)
        ax.set_ylabel("Events / bin")
        ax.legend(ncol=2, fontsize="small")
        if goodness_of_fit is not None:
            chi2, ndf, p_value = goodness_of_fit
            ax.text(
                0.03, 0.04, f"$\\chi^2$/ndf = {chi2:.1f}/{ndf}, p = {p_value:.2g}\n(merged bins)",
                transform=ax.transAxes, fontsize=14, ha="left", va="bottom",
            )
        pull_ax.set_ylabel("Pull")
        pull_ax.set_xlabel(xlabel)
        pull_ax.set_ylim(-pull_limit, pull_limit)
    return fig


def plot_bump_hunt_fit(
    result: BumpHuntResult, data: Any, *, signal: Any = None, xlabel: str = r"$m_{jj}$ [GeV]"
) -> Figure:
    """The background fit of the most significant window of ``result`` over the mjj histogram ``data`` (and
    ``signal``, same binning) from its first filled bin on: the fit range and its pulls, the bins outside it
    shaded, the window marked, the merged-bin goodness of fit of the window's sideband fit in the legend."""
    counts, edges = mjj_histogram(data)
    filled = np.flatnonzero(counts > 0)
    first = int(filled[0]) if filled.size else 0
    counts, edges = counts[first:], edges[first:]
    signal_counts = None if signal is None else mjj_histogram(signal)[0][first:]
    best = result.most_significant
    return plot_fit(
        edges, counts, best.fit.yields(edges), uncertainty=best.fit.yield_uncertainties(edges), signal=signal_counts,
        window=(best.low, best.high), fit_range=(result.fit_range.low, result.fit_range.high),
        goodness_of_fit=(best.fit.chi2, best.fit.ndf, best.fit.p_value), xlabel=xlabel,
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
    log: bool = False,
) -> Figure:
    """One row per labelled limit: the expected median (dashed) in its ±1σ (green) and ±2σ (yellow) bands, and
    the observed limit (point); ``log``: a logarithmic limit axis (limits of a mass scan span decades)."""
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
        axis.set_ylim(-0.7, len(names) - 0.3)
        if log:
            axis.set_xscale("log")
        axis.set_xlabel(xlabel)
        # above the axes: with many rows (a mass scan) a legend inside would hide the top ones
        axis.legend(fontsize="small", loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    return figure


def plot_local_significance(result: BumpHuntResult) -> Figure:
    """Local significance of every window of a bump hunt, with the global Z in the legend; windows whose
    background-only sideband fit is poor (flagged) are drawn as open red markers."""
    with cms_style():
        fig, ax = new_figure()
        centres = np.array([w.centre for w in result.windows])
        z = np.array([w.significance.z for w in result.windows])
        flagged = np.array([not w.fit_ok for w in result.windows], dtype=bool)
        ax.plot(centres, z, color="black", linewidth=1)
        if (~flagged).any():
            ax.plot(centres[~flagged], z[~flagged], marker="o", linestyle="none", color="black", label="local Z")
        if flagged.any():
            ax.plot(
                centres[flagged], z[flagged], marker="o", linestyle="none", markerfacecolor="none", color="tab:red",
                label=f"poor sideband fit (p < {result.min_fit_probability:g})",
            )
        ax.set_xlabel(r"window centre $m_{jj}$ [GeV]")
        ax.set_ylabel(r"local significance Z [$\sigma$]")
        title = f"global Z = {result.global_z:.2f} ({result.global_method.replace('_', ' ')})"
        if not result.fit_ok:
            title = "every sideband fit is poor:\nno evidence of a signal"
        ax.legend(title=title, fontsize=14, title_fontsize=14)
    return fig
