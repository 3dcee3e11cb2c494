"""Every figure coffea_ad, its examples and its benchmarks draw (mplhep CMS style, matplotlib figures without
pyplot, nothing global changed); nothing outside this package imports matplotlib.

- :mod:`~coffea_ad.plotting.style`: the style context, figure creation and atomic saving;
- :mod:`~coffea_ad.plotting.performance`: ROC, SIC, score distributions (also per-jet losses);
- :mod:`~coffea_ad.plotting.comparison`: methods compared: SIC curves, max SIC against the injected S/B (with
  bands over seeds), S/√B in sliding signal-region windows;
- :mod:`~coffea_ad.plotting.distributions`: feature shapes of several samples; template vs truth per feature;
- :mod:`~coffea_ad.plotting.thresholds`: mass-dependent thresholds and the background efficiency per mass bin;
- :mod:`~coffea_ad.plotting.fits`: fits with pulls, bump-hunt fits, CLs scans, limits, local significance;
- :mod:`~coffea_ad.plotting.spectra`: stacked mass spectra before and after a cut;
- :mod:`~coffea_ad.plotting.search`: the local p0 scan over the mjj windows of the resonant search.
"""

from coffea_ad.plotting.comparison import plot_max_sic_scan, plot_sic_curves, plot_window_significance
from coffea_ad.plotting.distributions import plot_feature_distributions, plot_shapes
from coffea_ad.plotting.fits import (
    plot_bump_hunt_fit,
    plot_cls_scan,
    plot_fit,
    plot_limits,
    plot_local_significance,
)
from coffea_ad.plotting.performance import plot_roc, plot_score_distributions, plot_sic
from coffea_ad.plotting.search import plot_local_p_scan
from coffea_ad.plotting.spectra import plot_mass_spectra
from coffea_ad.plotting.style import cms_style, new_figure, save_figure
from coffea_ad.plotting.thresholds import plot_efficiency_per_bin, plot_threshold_map

__all__ = [
    "cms_style",
    "new_figure",
    "save_figure",
    "plot_roc",
    "plot_sic",
    "plot_score_distributions",
    "plot_sic_curves",
    "plot_max_sic_scan",
    "plot_window_significance",
    "plot_feature_distributions",
    "plot_shapes",
    "plot_threshold_map",
    "plot_efficiency_per_bin",
    "plot_fit",
    "plot_bump_hunt_fit",
    "plot_cls_scan",
    "plot_limits",
    "plot_local_significance",
    "plot_local_p_scan",
    "plot_mass_spectra",
]
