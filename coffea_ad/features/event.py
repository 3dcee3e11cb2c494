"""Event-level context features: HT, MET and jet counts.

References:
    K. Bai, R. Mastandrea, B. Nachman, arXiv:2311.12924 (HT and MET as context variables of a non-resonant
    anomaly search).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Any

import awkward as ak

from coffea_ad.errors import ConfigurationError
from coffea_ad.features.config import MET_COLLECTIONS, FeatureGroup
from coffea_ad.features.kinematics import as_float64

__all__ = ["EventContext"]


class EventContext(FeatureGroup):
    """AK4 jets above threshold and the missing transverse momentum of each event."""

    @cached_property
    def jets(self) -> Any:
        """AK4 jets with pT > ``jet_pt_min`` and |η| < ``jet_abs_eta_max``."""
        jets = self.events.Jet
        keep = (jets["pt"] > self.config.jet_pt_min) & (abs(jets["eta"]) < self.config.jet_abs_eta_max)
        return jets[keep]

    @cached_property
    def ht(self) -> Any:
        """Scalar sum of the selected jets' pT (GeV); 0 for an event without such jets."""
        return ak.sum(as_float64(self.jets["pt"]), axis=1)

    @cached_property
    def n_jets(self) -> Any:
        """Number of selected jets."""
        return ak.num(self.jets, axis=1)

    @cached_property
    def n_bjets(self) -> Any:
        """Number of selected jets with ``btagDeepFlavB`` above ``btag_threshold``."""
        return ak.sum(self.jets["btagDeepFlavB"] > self.config.btag_threshold, axis=1)

    def _has_branch(self, branch: str) -> bool:
        collection, _, field = branch.partition("_")
        return collection in self.events.fields and field in self.events[collection].fields

    @cached_property
    def met_collection(self) -> str:
        """The MET collection read: ``config.met_collection``, or under ``"auto"`` the first of ``MET``,
        ``PFMET``, ``PuppiMET`` the events have (:meth:`FeatureConfig.find_met_collection`)."""
        metadata = getattr(self.events, "metadata", None)
        source = metadata.get("filename", "the events") if isinstance(metadata, Mapping) else "the events"
        collection = self.config.find_met_collection(self._has_branch, source)
        if collection is None:
            raise ConfigurationError(
                f"{source} has none of the MET collections {', '.join(MET_COLLECTIONS)}: name one with met_collection"
            )
        return collection

    @cached_property
    def met(self) -> Any:
        """Magnitude of the missing transverse momentum of :attr:`met_collection` (GeV)."""
        return as_float64(self.events[self.met_collection]["pt"])

    @cached_property
    def met_phi(self) -> Any:
        """Azimuth of the missing transverse momentum of :attr:`met_collection` (rad)."""
        return as_float64(self.events[self.met_collection]["phi"])
