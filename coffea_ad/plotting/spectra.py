"""Stacked mass spectra: the datasets before a cut (filled) and after it (lines), on one log axis."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from coffea_ad.plotting.style import cms_style, new_figure

if TYPE_CHECKING:
    import hist
    from matplotlib.figure import Figure

__all__ = ["plot_mass_spectra"]


def plot_mass_spectra(
    before: Mapping[str, hist.Hist],
    after: Mapping[str, hist.Hist],
    *,
    cut: str,
    no_cut: str | None = None,
    xlabel: str = r"$m_{jj}$ [GeV]",
    ylabel: str = "Events / bin",
    xlim: tuple[float, float] | None = None,
) -> Figure:
    """Stacked spectra of each labelled dataset before the cut (filled; labelled ``no_cut`` too if given) and
    after it (lines, labelled ``cut``)."""
    import mplhep

    with cms_style():
        figure, axis = new_figure()
        labels = list(before)
        mplhep.histplot(
            list(before.values()), ax=axis, stack=True, histtype="fill", alpha=0.35, yerr=False,
            label=labels if no_cut is None else [f"{label}, {no_cut}" for label in labels],
        )
        mplhep.histplot(
            [after[label] for label in labels], ax=axis, stack=True, histtype="step", linewidth=2, yerr=False,
            label=[f"{label}, {cut}" for label in labels],
        )
        if xlim is not None:
            axis.set_xlim(*xlim)
        axis.set_yscale("log")
        axis.set_xlabel(xlabel)
        axis.set_ylabel(ylabel)
        axis.legend(fontsize=14)
    return figure
