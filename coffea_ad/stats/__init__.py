"""Statistics for anomaly-detection searches: hist -> pyhf workspaces, significances, limits, bump hunt, ABCD.

pyhf's numpy backend is used as set (the default); nothing here changes pyhf's global state.

- :mod:`~coffea_ad.stats.workspace`: one validated fit spec dict -> ``pyhf.Workspace``; JSON read/write.
- :mod:`~coffea_ad.stats.inference`: discovery significance (p0, Z), CLs upper limits with expected bands.
- :mod:`~coffea_ad.stats.dijet` and :mod:`~coffea_ad.stats.bumphunt`: dijet-function sideband fits (fit range
  above the turn-on, parameter count by F-test, merged-bin goodness of fit), local and global significance of
  a sliding mjj window, windows with a poor background-only fit flagged.
- :mod:`~coffea_ad.stats.abcd`: ABCD estimate and closure test; :mod:`~coffea_ad.stats.sculpting`: mjj
  sculpting check of a cut, the sideband closure of a resonant method's cut, and the shape χ² of a template
  against data.
- :mod:`~coffea_ad.stats.datacard`: CMS Combine datacard + shapes ROOT file; :mod:`~coffea_ad.plotting.fits`.
"""

from __future__ import annotations

from coffea_ad.stats.abcd import AbcdPrediction, ClosureTest, abcd_closure, abcd_counts, abcd_prediction, closure_test
from coffea_ad.stats.bumphunt import (
    BumpHuntResult,
    FitRange,
    WindowResult,
    bump_hunt,
    fit_range,
    scan_window,
    turn_on_peak,
    window_spec,
    window_workspace,
)
from coffea_ad.stats.datacard import datacard_text, write_combine
from coffea_ad.stats.dijet import SQRT_S, DijetFit, dijet_function, dijet_yields, f_test, fit_dijet, merged_chi2
from coffea_ad.stats.inference import (
    Significance,
    UpperLimit,
    best_fit,
    counting_model,
    discovery_significance,
    model_significance,
    upper_limit,
)
from coffea_ad.stats.sculpting import (
    SculptingTest,
    ShapeComparison,
    SidebandClosure,
    sculpting_test,
    shape_chi2,
    sideband_closure,
)
from coffea_ad.stats.workspace import (
    MODIFIER_BUILDERS,
    asimov_data,
    build_workspace,
    channel_spec,
    fit_spec,
    read_workspace,
    write_workspace,
)

__all__ = [
    "SQRT_S",
    "MODIFIER_BUILDERS",
    "AbcdPrediction",
    "BumpHuntResult",
    "ClosureTest",
    "DijetFit",
    "FitRange",
    "SculptingTest",
    "ShapeComparison",
    "Significance",
    "UpperLimit",
    "WindowResult",
    "abcd_closure",
    "abcd_counts",
    "abcd_prediction",
    "asimov_data",
    "best_fit",
    "build_workspace",
    "bump_hunt",
    "channel_spec",
    "closure_test",
    "counting_model",
    "datacard_text",
    "dijet_function",
    "dijet_yields",
    "discovery_significance",
    "f_test",
    "fit_dijet",
    "fit_range",
    "fit_spec",
    "merged_chi2",
    "model_significance",
    "read_workspace",
    "scan_window",
    "sculpting_test",
    "SidebandClosure",
    "sideband_closure",
    "shape_chi2",
    "turn_on_peak",
    "upper_limit",
    "window_spec",
    "window_workspace",
    "write_combine",
    "write_workspace",
]
