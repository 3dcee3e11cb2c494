"""Physics features as pure functions of NanoEvents (eager, virtual or dask-awkward).

Usage from any coffea processor::

    from coffea_ad.features import FeatureConfig, compute_features

    features = compute_features(events, ["lhco", "context"], config=FeatureConfig(met_collection="PuppiMET"))
    features.mjj, features.tau21_j1, features.met

:data:`FEATURES` lists every feature with its unit, definition, branches and default binning;
:data:`FEATURE_SETS` names the sets that training and scoring refer to (``"lhco"``, ``"nonresonant"``,
``"context"``, ``"dijet"``, ``"event"``, ``"leptons"``, ``"all"``, ``"user"``). Your own variables become features
with :func:`define_feature` (see :mod:`coffea_ad.features.user`). The object groups behind them
(:class:`DijetSystem`, :class:`EventContext`, :class:`LeptonSystem`) can be used directly as well.
"""

from __future__ import annotations

from coffea_ad.features.config import Z_MASS, FeatureConfig
from coffea_ad.features.dijet import DijetSystem
from coffea_ad.features.event import EventContext
from coffea_ad.features.leptons import FLAVOUR_4L, LeptonSystem
from coffea_ad.features.registry import (
    FEATURE_SETS,
    FEATURES,
    Feature,
    FeatureSkippedWarning,
    MissingBranchError,
    compute_features,
    event_column,
    events_have_branch,
    missing_branches,
    resolve_feature_names,
    select_features,
    user_column,
)
from coffea_ad.features.user import define_feature, load_entry_point_features, load_feature_module, user_features

__all__ = [
    "FEATURES",
    "FEATURE_SETS",
    "FLAVOUR_4L",
    "Z_MASS",
    "DijetSystem",
    "EventContext",
    "Feature",
    "FeatureConfig",
    "FeatureSkippedWarning",
    "LeptonSystem",
    "MissingBranchError",
    "compute_features",
    "define_feature",
    "event_column",
    "events_have_branch",
    "load_entry_point_features",
    "load_feature_module",
    "missing_branches",
    "resolve_feature_names",
    "select_features",
    "user_column",
    "user_features",
]
