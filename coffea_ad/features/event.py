"""Event-level context features: HT, MET and jet counts.

References:
    K. Bai, R. Mastandrea, B. Nachman, arXiv:2311.12924 (HT and MET as context variables of a non-resonant
    anomaly search).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property

import awkward as ak
import numpy as np

from coffea_ad.errors import ConfigurationError
from coffea_ad.features.arrays import jagged, numeric
from coffea_ad.features.config import MET_COLLECTIONS, FeatureGroup

__all__ = ["EventContext"]


class EventContext(FeatureGroup):
    """AK4 jets above threshold and the missing transverse momentum of each event (a concrete chunk of events;
    :func:`coffea_ad.features.compute_features` takes every mode)."""

    @cached_property
    def _jets(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Event number and pT of the jets with pT > ``jet_pt_min`` and |η| < ``jet_abs_eta_max``, and their
        flat positions among all jets."""
        pt, counts = jagged(self.events.Jet["pt"])
        eta = ak.to_numpy(ak.flatten(self.events.Jet["eta"], axis=1))
        keep = (pt > self.config.jet_pt_min) & (np.abs(eta) < self.config.jet_abs_eta_max)
        return np.repeat(np.arange(len(counts)), counts)[keep], pt[keep], np.flatnonzero(keep)

    @cached_property
    def ht(self) -> ak.Array:
        """Scalar sum of the selected jets' pT (GeV); 0 for an event without such jets."""
        event, pt, _ = self._jets
        return ak.Array(np.bincount(event, weights=pt, minlength=len(self.events)).astype(np.float64))

    @cached_property
    def n_jets(self) -> ak.Array:
        """Number of selected jets."""
        return ak.Array(np.bincount(self._jets[0], minlength=len(self.events)).astype(np.int64))

    @cached_property
    def n_bjets(self) -> ak.Array:
        """Number of selected jets with ``btagDeepFlavB`` above ``btag_threshold``."""
        event, _, positions = self._jets
        btag = ak.to_numpy(ak.flatten(self.events.Jet["btagDeepFlavB"], axis=1))[positions]
        tagged = event[btag > self.config.btag_threshold]
        return ak.Array(np.bincount(tagged, minlength=len(self.events)).astype(np.int64))

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
    def met(self) -> ak.Array:
        """Magnitude of the missing transverse momentum of :attr:`met_collection` (GeV)."""
        return ak.Array(numeric(self.events[self.met_collection]["pt"]))

    @cached_property
    def met_phi(self) -> ak.Array:
        """Azimuth of the missing transverse momentum of :attr:`met_collection` (rad)."""
        return ak.Array(numeric(self.events[self.met_collection]["phi"]))
