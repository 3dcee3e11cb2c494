"""Object definitions behind the features: thresholds, identification and working points."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from coffea_ad.errors import ConfigurationError

__all__ = ["FeatureConfig", "FeatureGroup", "Z_MASS"]

#: Z boson mass in GeV (PDG 2024), the target of the Z-candidate pair choice.
Z_MASS = 91.1876


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """Object selections used by :func:`coffea_ad.features.compute_features`. Energies in GeV.

    Defaults:

    - Fat jets (``FatJet``): every stored jet (NanoAOD keeps pT > 170 GeV); the two leading in pT form
      the dijet system.
    - Jets (``Jet``, for HT and the jet counts): pT > 30 GeV and |η| < 2.5; no jet-ID requirement, because
      NanoAOD v15 no longer stores ``Jet_jetId``.
    - b tag: ``Jet_btagDeepFlavB > 0.2783``, the DeepJet medium working point of 2018 UL (about 1 % light-jet
      mistag); other eras have other values (2017 UL 0.3040, 2016 UL postVFP 0.2489, 2022 0.3086).
    - Tight isolated electrons: pT > 10 GeV, |η| < 2.5, ``cutBased >= 4`` (tight) and
      ``pfRelIso03_all < 0.15``.
    - Tight isolated muons: pT > 10 GeV, |η| < 2.4, ``tightId`` and ``pfRelIso03_all < 0.15`` (the ΔR = 0.3
      cone, because it is the one every input of coffea_ad, generated files included, stores).
    - MET: the ``MET`` collection; NanoAOD v15 has only ``PuppiMET``.
    """

    fatjet_pt_min: float = 0.0
    fatjet_abs_eta_max: float = math.inf
    jet_pt_min: float = 30.0
    jet_abs_eta_max: float = 2.5
    btag_threshold: float = 0.2783
    met_collection: str = "MET"
    electron_pt_min: float = 10.0
    electron_abs_eta_max: float = 2.5
    electron_cut_based_min: int = 4
    electron_isolation_max: float = 0.15
    muon_pt_min: float = 10.0
    muon_abs_eta_max: float = 2.4
    muon_isolation_max: float = 0.15

    def __post_init__(self) -> None:
        if not self.met_collection.isidentifier():
            raise ConfigurationError(
                f"FeatureConfig.met_collection must be a collection name such as 'MET' or 'PuppiMET', "
                f"got {self.met_collection!r}"
            )
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name != "met_collection" and not (isinstance(value, (int, float)) and value >= 0):
                raise ConfigurationError(f"FeatureConfig.{field.name} must be a non-negative number, got {value!r}")


class FeatureGroup:
    """Base of the object groups (dijet system, event context, leptons): the events and the selections.

    Subclasses expose each feature as a ``cached_property`` of the same name, so that features sharing
    intermediate objects compute them once per call.
    """

    def __init__(self, events: Any, config: FeatureConfig) -> None:
        self.events = events
        self.config = config
