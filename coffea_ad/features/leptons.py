"""Lepton features for multi-lepton (≥ 4ℓ) searches: multiplicities, leading lepton, m4ℓ, flavour, charge, Z.

The four-lepton features use the four leading tight isolated leptons (electrons and muons merged and
ordered by pT) and are None for events with fewer than four.

References:
    ATLAS, model-independent search in ≥ 4-lepton events with normalising flows (one flow per lepton region).
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import awkward as ak

from coffea_ad.features.config import Z_MASS, FeatureGroup
from coffea_ad.features.kinematics import as_float64, four_momentum, invariant_mass

__all__ = ["LeptonSystem", "FLAVOUR_4L"]

#: Meaning of the ``flavour_4l`` feature, the number of muons among the four leading leptons.
FLAVOUR_4L: dict[int, str] = {0: "4e", 1: "3e1mu", 2: "2e2mu", 3: "1e3mu", 4: "4mu"}


def _lepton_records(collection: Any, is_muon: bool) -> Any:
    """Plain records (no coffea behaviour) of one lepton flavour, so that e and μ concatenate."""
    return ak.zip(
        {
            "pt": as_float64(collection["pt"]),
            "eta": as_float64(collection["eta"]),
            "phi": as_float64(collection["phi"]),
            "mass": as_float64(collection["mass"]),
            "charge": ak.values_astype(collection["charge"], "int64"),
            "is_muon": ak.full_like(collection["charge"], is_muon, dtype=bool),
        }
    )


class LeptonSystem(FeatureGroup):
    """Tight isolated electrons and muons of each event and the features built from them."""

    @cached_property
    def electrons(self) -> Any:
        """Electrons passing pT, |η|, cut-based ID (``cutBased >= electron_cut_based_min``) and isolation."""
        electrons = self.events.Electron
        config = self.config
        keep = (
            (electrons["pt"] > config.electron_pt_min)
            & (abs(electrons["eta"]) < config.electron_abs_eta_max)
            & (electrons["cutBased"] >= config.electron_cut_based_min)
            & (electrons["pfRelIso03_all"] < config.electron_isolation_max)
        )
        return electrons[keep]

    @cached_property
    def muons(self) -> Any:
        """Muons passing pT, |η|, ``tightId`` and isolation."""
        muons = self.events.Muon
        config = self.config
        keep = (
            (muons["pt"] > config.muon_pt_min)
            & (abs(muons["eta"]) < config.muon_abs_eta_max)
            & muons["tightId"]
            & (muons["pfRelIso03_all"] < config.muon_isolation_max)
        )
        return muons[keep]

    @cached_property
    def leptons(self) -> Any:
        """Selected electrons and muons merged, ordered by decreasing pT."""
        merged = ak.concatenate([_lepton_records(self.electrons, False), _lepton_records(self.muons, True)], axis=1)
        return merged[ak.argsort(merged["pt"], axis=1, ascending=False)]

    @cached_property
    def n_electrons(self) -> Any:
        """Number of tight isolated electrons."""
        return ak.num(self.electrons, axis=1)

    @cached_property
    def n_muons(self) -> Any:
        """Number of tight isolated muons."""
        return ak.num(self.muons, axis=1)

    @cached_property
    def n_leptons(self) -> Any:
        """Number of tight isolated electrons and muons."""
        return self.n_electrons + self.n_muons

    @cached_property
    def lep1_pt(self) -> Any:
        """pT of the leading lepton (GeV)."""
        return ak.firsts(self.leptons["pt"], axis=1)

    @cached_property
    def lep1_eta(self) -> Any:
        """η of the leading lepton."""
        return ak.firsts(self.leptons["eta"], axis=1)

    @cached_property
    def lep1_phi(self) -> Any:
        """φ of the leading lepton (rad)."""
        return ak.firsts(self.leptons["phi"], axis=1)

    def nth_pt(self, n: int) -> Any:
        """pT of the ``n``-th leading lepton (``n = 1`` is the leading one), GeV; None where there are fewer."""
        return ak.firsts(self.leptons["pt"][:, n - 1 : n], axis=1)

    @cached_property
    def lep2_pt(self) -> Any:
        """pT of the second lepton (GeV)."""
        return self.nth_pt(2)

    @cached_property
    def lep3_pt(self) -> Any:
        """pT of the third lepton (GeV)."""
        return self.nth_pt(3)

    @cached_property
    def lep4_pt(self) -> Any:
        """pT of the fourth lepton (GeV): with m4ℓ and the other pTs, the inputs of a ≥ 4ℓ density model."""
        return self.nth_pt(4)

    @cached_property
    def leading_four(self) -> Any:
        """The four leading leptons (fewer where the event has fewer)."""
        return self.leptons[:, :4]

    @cached_property
    def has_four(self) -> Any:
        """True for events with at least four selected leptons."""
        return ak.num(self.leptons, axis=1) >= 4

    def sum_over_four(self, column: Any) -> Any:
        """Sum of ``column`` over the four leading leptons; None for events with fewer than four."""
        return ak.mask(ak.sum(column, axis=1), self.has_four)

    @cached_property
    def m4l(self) -> Any:
        """Invariant mass of the four leading leptons (GeV)."""
        four = self.leading_four
        momentum = four_momentum(four["pt"], four["eta"], four["phi"], four["mass"])
        return invariant_mass(*(self.sum_over_four(component) for component in momentum))

    @cached_property
    def flavour_4l(self) -> Any:
        """Number of muons among the four leading leptons: 0 = 4e, 2 = 2e2μ, 4 = 4μ (see :data:`FLAVOUR_4L`)."""
        return self.sum_over_four(self.leading_four["is_muon"])

    @cached_property
    def charge_4l(self) -> Any:
        """Total electric charge of the four leading leptons."""
        return self.sum_over_four(self.leading_four["charge"])

    @cached_property
    def mll_z(self) -> Any:
        """Mass of the same-flavour opposite-charge pair closest to the Z mass (GeV); None without such a pair."""
        first, second = ak.unzip(ak.combinations(self.leptons, 2, axis=1))
        momentum = four_momentum(first["pt"], first["eta"], first["phi"], first["mass"])
        other = four_momentum(second["pt"], second["eta"], second["phi"], second["mass"])
        masses = invariant_mass(*(a + b for a, b in zip(momentum, other)))
        same_flavour_opposite_sign = (first["is_muon"] == second["is_muon"]) & (first["charge"] != second["charge"])
        candidates = masses[same_flavour_opposite_sign]
        closest = ak.argmin(abs(candidates - Z_MASS), axis=1, keepdims=True)
        return ak.firsts(candidates[closest], axis=1)
