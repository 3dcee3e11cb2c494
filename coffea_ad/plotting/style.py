"""Figure helpers shared by every module of coffea_ad.plotting.

Figures are built with :class:`matplotlib.figure.Figure` directly (no pyplot, so nothing stays open in a
global registry) and styled with mplhep's CMS style inside a context manager (no global style change).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence

__all__ = ["cms_style", "new_figure", "save_figure"]


@contextlib.contextmanager
def _quiet_fonts() -> Iterator[None]:
    """The CMS style asks for fonts that may be missing: silence matplotlib's font warnings in the block."""
    font_logger = logging.getLogger("matplotlib.font_manager")
    level = font_logger.level
    font_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        font_logger.setLevel(level)


@contextlib.contextmanager
def cms_style() -> Iterator[None]:
    """Apply mplhep's CMS style for the duration of the block only."""
    import matplotlib.pyplot as plt
    import mplhep

    with _quiet_fonts(), plt.style.context(mplhep.style.CMS):
        yield


def new_figure(nrows: int = 1, height_ratios: Sequence[float] | None = None, size: tuple[float, float] | None = None):
    """A figure with one axes, or ``nrows`` axes stacked with a shared x axis; returns ``(figure, axes)``.

    ``size`` (inches) defaults to 8 × 6.5 for one axes and 8 × 8 for several."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=size or (8, 8 if nrows > 1 else 6.5))
    if nrows == 1:
        return fig, fig.add_subplot()
    axes = fig.subplots(nrows, 1, sharex=True, gridspec_kw={"height_ratios": height_ratios, "hspace": 0.05})
    return fig, axes


def save_figure(fig, path) -> None:
    """Write ``fig`` to ``path`` atomically (the format follows the suffix of ``path``)."""
    from coffea_ad.paths import atomic_output

    with _quiet_fonts(), atomic_output(path) as tmp:
        fig.savefig(tmp, format=str(path).rsplit(".", 1)[-1], bbox_inches="tight")
