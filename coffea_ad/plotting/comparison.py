"""Methods compared on the same samples: SIC curves, max SIC against the injected S/B, significance per window.

Each labelled method keeps its colour of the default cycle (in the order given), and its 68 % band over seeds,
where one is given as a :class:`~coffea_ad.selection.metrics.SeedBand`, is drawn in that colour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from coffea_ad.errors import ConfigurationError
from coffea_ad.plotting.style import cms_style, new_figure
from coffea_ad.selection.metrics import SeedBand

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_sic_curves", "plot_max_sic_scan", "plot_window_significance"]

#: Markers of the successive curves of :func:`plot_window_significance`.
_MARKERS = ("o", "s", "^", "D", "v")


def _line_with_band(axis: Axes, x: np.ndarray, value: ArrayLike | SeedBand, **style) -> None:
    """A line through ``value`` (its median for a SeedBand, with the 68 % band filled in the line's colour)."""
    if isinstance(value, SeedBand):
        (line,) = axis.plot(x, np.asarray(value.median, dtype=np.float64), **style)
        axis.fill_between(x, value.lower, value.upper, color=line.get_color(), alpha=0.2)
    else:
        axis.plot(x, np.asarray(value, dtype=np.float64), **style)


def _along(points: Mapping[float, float | SeedBand], keys: list[float], label: str) -> np.ndarray | SeedBand:
    """The values of ``points`` at ``keys``: an array of numbers, or one SeedBand of arrays."""
    bands = [isinstance(points[key], SeedBand) for key in keys]
    if not any(bands):
        return np.array([points[key] for key in keys], dtype=np.float64)
    if not all(bands):
        raise ConfigurationError(f"the points of {label!r} mix numbers and SeedBands")
    return SeedBand(
        median=np.array([points[key].median for key in keys], dtype=np.float64),
        lower=np.array([points[key].lower for key in keys], dtype=np.float64),
        upper=np.array([points[key].upper for key in keys], dtype=np.float64),
    )


def plot_sic_curves(
    tpr: ArrayLike,
    curves: Mapping[str, ArrayLike | SeedBand],
    *,
    max_sic: Mapping[str, float] | None = None,
    title: str | None = None,
) -> Figure:
    """SIC = TPR/√FPR against the signal efficiencies ``tpr`` (a common grid), one line per labelled method.

    ``curves[label]`` holds the SIC at every ``tpr`` (NaN where the ROC has FPR ≤ 1/N_bkg: a gap), or a
    SeedBand over seeds (e.g. from :func:`coffea_ad.selection.metrics.sic_band`); ``max_sic[label]`` is shown
    in the legend.
    """
    grid = np.asarray(tpr, dtype=np.float64)
    with cms_style():
        figure, axis = new_figure()
        for label, curve in curves.items():
            shown = label if max_sic is None or label not in max_sic else f"{label} (max {max_sic[label]:.1f})"
            _line_with_band(axis, grid, curve, label=shown)
        axis.axhline(1.0, color="grey", linestyle="--", label="random")
        axis.set_xlabel("Signal efficiency (TPR)")
        axis.set_ylabel("SIC = TPR/√FPR")
        if title:
            axis.set_title(title, fontsize=16)
        axis.legend(fontsize=14)
    return figure


def plot_max_sic_scan(
    scan: Mapping[str, Mapping[float, float | SeedBand]],
    *,
    xlabel: str = "Injected S/B in the signal region [%]",
    ylabel: str = "max SIC",
    references: Mapping[str, float] | None = None,
) -> Figure:
    """Max SIC against the injected S/B (log axis, in %), one line per labelled method.

    ``scan[label]`` maps each S/B (a fraction, e.g. 0.006) to the max SIC of one training or to a SeedBand
    over seeds (median line, 68 % band). The x ticks are the S/B values of the scan. ``references``: labelled
    max SIC values that do not depend on the S/B (a supervised classifier), drawn as horizontal lines.
    """
    if not any(scan.values()):
        raise ConfigurationError("plot_max_sic_scan needs at least one S/B point")
    with cms_style():
        figure, axis = new_figure()
        # the style's colour cycle has six colours: markers keep a seventh method apart from the first
        for marker, (label, points) in zip(_MARKERS * len(scan), scan.items()):
            if not points:
                continue
            values = sorted(points)
            _line_with_band(axis, 100 * np.array(values), _along(points, values, label), marker=marker, label=label)
        for label, value in (references or {}).items():
            axis.axhline(value, color="black", linestyle=":", label=label)
        axis.axhline(1.0, color="grey", linestyle="--", label="random")
        axis.set_xscale("log")
        ticks = sorted({100 * s for points in scan.values() for s in points})
        axis.set_xticks(ticks, [f"{tick:.2g}" for tick in ticks], minor=False)
        axis.xaxis.set_minor_formatter("")
        axis.set_xlabel(xlabel)
        axis.set_ylabel(ylabel)
        axis.legend(fontsize=14)
    return figure


def plot_window_significance(
    windows: Sequence[tuple[float, float]],
    significances: Mapping[str, ArrayLike],
    *,
    signal_mass: tuple[float, str] | None = None,
    xlabel: str = r"centre of the signal-region window in $m_{jj}$ [TeV]",
    ylabel: str = "S/√B in the window",
) -> Figure:
    """S/√B in each sliding signal-region window (GeV edges; drawn at the centres, in TeV), one line per label
    (e.g. before and after a cut); ``signal_mass = (GeV, label)`` marks the injected resonance."""
    centres = np.array([(low + high) / 2 for low, high in windows], dtype=np.float64)
    with cms_style():
        figure, axis = new_figure()
        for marker, (label, values) in zip(_MARKERS * len(significances), significances.items()):
            axis.plot(centres, np.asarray(values, dtype=np.float64), marker=marker, label=label)
        if signal_mass is not None:
            axis.axvline(signal_mass[0], color="grey", linestyle=":", label=signal_mass[1])
        axis.set_xticks(centres, [f"{centre / 1000:g}" for centre in centres])
        axis.set_xlabel(xlabel)
        axis.set_ylabel(ylabel)
        axis.legend(fontsize=14)
    return figure
