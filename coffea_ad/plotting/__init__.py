"""Every figure coffea_ad draws (mplhep CMS style, matplotlib figures without pyplot, nothing global changed).

- :mod:`~coffea_ad.plotting.style`: the style context, figure creation and atomic saving;
- :mod:`~coffea_ad.plotting.performance`: ROC, SIC, score distributions;
- :mod:`~coffea_ad.plotting.fits`: fits with pulls, CLs scans, local significance of a bump hunt;
- :mod:`~coffea_ad.plotting.spectra`: stacked mass spectra before and after a cut.
"""

from coffea_ad.plotting.fits import plot_cls_scan, plot_fit, plot_local_significance
from coffea_ad.plotting.performance import plot_roc, plot_score_distributions, plot_sic
from coffea_ad.plotting.spectra import plot_mass_spectra
from coffea_ad.plotting.style import cms_style, new_figure, save_figure

__all__ = [
    "cms_style",
    "new_figure",
    "save_figure",
    "plot_roc",
    "plot_sic",
    "plot_score_distributions",
    "plot_fit",
    "plot_cls_scan",
    "plot_local_significance",
    "plot_mass_spectra",
]
