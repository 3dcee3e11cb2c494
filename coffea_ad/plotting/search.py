"""The scan plot of the resonant anomaly search (``coffea-ad search``): local p-value against the mjj window.

:func:`plot_local_p_scan` reads the result mapping that the search writes to ``search.json`` (one entry per
sliding mjj window, each with the bump hunt of every background efficiency of the cut and the inclusive bump
hunt without a cut) and draws the local p0 of every window on a log axis, one series per efficiency.

References:
    CMS Collaboration, "Model-agnostic search for dijet resonances with anomalous jet substructure",
    arXiv:2412.03747 (the sliding windows and the p-value scan per efficiency).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from coffea_ad.plotting.style import cms_style, new_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["P_VALUE_FLOOR", "SIGMA_LINES", "efficiency_entry", "efficiency_label", "plot_local_p_scan"]

#: Local p-values are clipped to [P_VALUE_FLOOR, 1] on the plot (a p0 of 0 from a huge excess stays visible).
P_VALUE_FLOOR = 1e-12

#: The significances (one-sided, in σ) drawn as dotted horizontal lines.
SIGMA_LINES = (1, 2, 3, 4, 5)

#: Half-width of the band that marks an injected signal, as a fraction of its mass (about the dijet mass
#: resolution at the TeV scale).
_INJECTION_HALF_WIDTH = 0.05

#: Fraction of the height of the axis above p0 = 1, for the legend and the global result.
_LEGEND_ROOM = 0.32

_COLOURS = ("tab:blue", "tab:red", "tab:green", "tab:purple", "tab:orange")
_MARKERS = ("o", "s", "^", "D", "v")


def efficiency_label(efficiency: float) -> str:
    """The label of a background efficiency of the cut: ``0.1`` -> ``"ε = 10 %"``, ``0.005`` -> ``"ε = 0.5 %"``."""
    return f"ε = {100.0 * float(efficiency):.3g} %"


def _mass_label(mass: str | None) -> str:
    return r"$m_{jj}$" if mass in (None, "mjj") else str(mass)


def _points(windows: Sequence[Mapping[str, Any]], pick) -> tuple[np.ndarray, np.ndarray]:
    """The local p0 and the fit flag of the entry ``pick(window)`` of every window (NaN and True where the
    window or the entry was skipped or has no p-value, so that the line has a gap there)."""
    p0 = np.full(len(windows), np.nan)
    fit_ok = np.ones(len(windows), dtype=bool)
    for i, window in enumerate(windows):
        entry = pick(window) if window.get("status") == "done" else None
        if not entry or entry.get("status", "done") != "done" or entry.get("local_p0") is None:
            continue
        p0[i] = min(max(float(entry["local_p0"]), P_VALUE_FLOOR), 1.0)
        # evidence_ok: a good sideband fit and, after a cut, an efficiency smooth in mjj next to the window
        fit_ok[i] = bool(entry.get("evidence_ok", entry.get("fit_ok", True)))
    return p0, fit_ok


def efficiency_entry(window: Mapping[str, Any], efficiency: float) -> Mapping[str, Any] | None:
    """The entry of ``window["efficiencies"]`` for the background efficiency ``efficiency`` (None if absent)."""
    for entry in window.get("efficiencies") or ():
        if entry.get("efficiency") is not None and math.isclose(float(entry["efficiency"]), float(efficiency)):
            return entry
    return None


def _series(axis: Axes, centres: np.ndarray, p0: np.ndarray, fit_ok: np.ndarray, **style) -> None:
    """One labelled line with filled markers through ``p0`` (gaps at NaN), the poor fits re-drawn open."""
    (line,) = axis.plot(centres, p0, **style)
    poor = ~fit_ok & np.isfinite(p0)
    if poor.any():
        axis.plot(
            centres[poor], p0[poor], linestyle="none", marker=line.get_marker(), markersize=line.get_markersize(),
            color=line.get_color(), markerfacecolor="white", markeredgewidth=1.5, zorder=line.get_zorder() + 0.1,
        )


def _global_text(result: Mapping[str, Any]) -> str:
    lines = []
    for key, name in (("global", "global"), ("inclusive_global", "inclusive global")):
        summary = result.get(key) or {}
        if summary.get("global_Z") is None:
            continue
        text = f"{name} Z = {float(summary['global_Z']):.1f}"
        if summary.get("trials_factor") is not None:
            text += f" (trials factor {float(summary['trials_factor']):.3g})"
        lines.append(text)
    return "\n".join(lines) or "global Z: not available"


def plot_local_p_scan(result: Mapping[str, Any]) -> Figure:
    """Local p0 of every mjj window of a search result (the mapping of ``search.json``) on a log axis.

    One marker+line series per background efficiency of the cut and the inclusive bump hunt (no cut) as a
    dashed black line; windows whose background-only sideband fit is poor (``fit_ok`` false) are drawn with
    open markers; skipped windows and efficiencies are left out (a gap in the line, never a zero). p0 is
    one-sided (0.5 for a deficit) and clipped to [``P_VALUE_FLOOR``, 1]. Dotted lines mark the p-values of
    1σ..5σ; an injected signal (``result["injection"]["mass_GeV"]``) is marked by a vertical band of ±5 % of
    its mass; the global significance of the search (and of the inclusive search) heads the legend, which
    sits above p0 = 1.

    References:
        CMS Collaboration, arXiv:2412.03747.
    """
    from matplotlib.lines import Line2D
    from matplotlib.transforms import blended_transform_factory
    from scipy.stats import norm

    windows = sorted(result.get("windows") or (), key=lambda window: float(window["centre_GeV"]))
    centres = np.array([float(window["centre_GeV"]) for window in windows])
    efficiencies = [float(e) for e in result.get("efficiencies") or ()]
    with cms_style():
        fig, ax = new_figure(size=(9, 6.5))
        lowest = min(float(norm.sf(SIGMA_LINES[-1])), 1.0)
        for i, efficiency in enumerate(efficiencies):
            p0, fit_ok = _points(windows, lambda window: efficiency_entry(window, efficiency))
            _series(
                ax, centres, p0, fit_ok, color=_COLOURS[i % len(_COLOURS)], marker=_MARKERS[i % len(_MARKERS)],
                markersize=8, linewidth=2, label=efficiency_label(efficiency), zorder=3,
            )
            lowest = min(lowest, float(np.nanmin(p0, initial=1.0)))
        p0, fit_ok = _points(windows, lambda window: window.get("inclusive"))
        _series(
            ax, centres, p0, fit_ok, color="black", linestyle="--", marker="o", markersize=5, linewidth=1.5,
            label="inclusive (no cut)", zorder=2,
        )
        lowest = min(lowest, float(np.nanmin(p0, initial=1.0)))

        ax.set_yscale("log")
        # the decades above p0 = 1 (never data) hold the legend: a third of the axis, whatever the range below
        bottom = lowest / 30.0
        ax.set_ylim(bottom, bottom ** (-_LEGEND_ROOM / (1.0 - _LEGEND_ROOM)))
        decades = np.arange(np.ceil(np.log10(bottom)), 1)
        ax.set_yticks(10.0 ** decades[::-2][::-1] if decades.size > 8 else 10.0 ** decades)
        ax.set_yticks([k * 10.0**d for d in decades[:-1] for k in range(2, 10)], minor=True)
        if centres.size:
            margin = 0.04 * max(float(np.ptp(centres)), 0.1 * float(centres.max()))
            ax.set_xlim(float(centres.min()) - margin, float(centres.max()) + margin)
        right_edge = blended_transform_factory(ax.transAxes, ax.transData)
        for sigma in SIGMA_LINES:
            p_sigma = float(norm.sf(sigma))
            ax.axhline(p_sigma, color="grey", linestyle=":", linewidth=1.2, zorder=1)
            ax.text(1.01, p_sigma, f"{sigma}σ", transform=right_edge, color="grey", fontsize=14, va="center")
        ax.axhline(1.0, color="grey", linewidth=0.8, zorder=1)

        handles, labels = ax.get_legend_handles_labels()
        if any(line.get_markerfacecolor() == "white" for line in ax.get_lines()):
            handles.append(Line2D([], [], linestyle="none", marker="o", color="grey", markerfacecolor="white",
                                  markeredgewidth=1.5, markersize=8))
            labels.append("flagged (poor fit, or cut\nnot smooth in mjj)")
        injection = result.get("injection") or {}
        if injection.get("mass_GeV") is not None:
            mass = float(injection["mass_GeV"])
            band = ax.axvspan(
                mass * (1 - _INJECTION_HALF_WIDTH), mass * (1 + _INJECTION_HALF_WIDTH), color="gold", alpha=0.3,
                linewidth=0, label="injected signal", zorder=0,
            )
            handles.append(band)
            labels.append("injected signal")
        ax.legend(
            handles, labels, loc="upper center", ncol=2, fontsize=14, title=_global_text(result), title_fontsize=15,
            frameon=False,
        )
        ax.set_xlabel(f"window centre {_mass_label(result.get('mass'))} [GeV]")
        ax.set_ylabel(r"local $p_0$")
        title = " · ".join(str(part) for part in (result.get("method"), result.get("data")) if part)
        if title:
            ax.set_title(title, fontsize=14, loc="left")
    return fig
