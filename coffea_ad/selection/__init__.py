"""Selection: the one place that turns anomaly scores into cuts, and measures what a cut does.

- :mod:`~coffea_ad.selection.thresholds`: thresholds at a target background efficiency of a control
  region, score-bin edges on an efficiency ladder, the histograms above a threshold;
- :mod:`~coffea_ad.selection.mass_dependent`: a threshold that keeps the same background fraction in every
  ``mjj`` bin (quantile regression);
- :mod:`~coffea_ad.selection.metrics`: ROC, AUC, SIC and background rejection of a score.

numpy (and scipy to fit the mass-dependent threshold) only: no torch, no onnxruntime.
"""

from coffea_ad.selection.mass_dependent import MassDependentThreshold
from coffea_ad.selection.thresholds import (
    EFFICIENCY_LADDER,
    background_efficiency_edges,
    check_edges,
    efficiency_of_edges,
    passing,
    score_edges,
    threshold_at,
)

__all__ = [
    "EFFICIENCY_LADDER",
    "MassDependentThreshold",
    "background_efficiency_edges",
    "check_edges",
    "efficiency_of_edges",
    "passing",
    "score_edges",
    "threshold_at",
]
