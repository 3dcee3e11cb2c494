"""Lepton features for multi-lepton (≥ 4ℓ) searches: multiplicities, leading lepton, m4ℓ, flavour, charge, Z.

The four-lepton features use the four leading tight isolated leptons (electrons and muons merged and
ordered by pT) and are None for events with fewer than four.

References:
    ATLAS, model-independent search in ≥ 4-lepton events with normalising flows (one flow per lepton region).
"""

from __future__ import annotations

from functools import cached_property

import awkward as ak
import numpy as np

from coffea_ad.features.arrays import jagged, nullable
from coffea_ad.features.config import Z_MASS, FeatureGroup
from coffea_ad.features.kinematics import four_momentum, invariant_mass

__all__ = ["LeptonSystem", "FLAVOUR_4L"]

#: Meaning of the ``flavour_4l`` feature, the number of muons among the four leading leptons.
FLAVOUR_4L: dict[int, str] = {0: "4e", 1: "3e1mu", 2: "2e2mu", 3: "1e3mu", 4: "4mu"}


_FIELDS = ("pt", "eta", "phi", "mass")


class LeptonSystem(FeatureGroup):
    """Tight isolated electrons and muons of each event and the features built from them (a concrete chunk of
    events; :func:`coffea_ad.features.compute_features` takes every mode).

    The selected leptons are kept as flat numpy arrays ordered by event, then by decreasing pT; a feature of
    the n-th lepton is None in events with fewer.
    """

    def _flat(self, collection: str, field: str) -> np.ndarray:
        return ak.to_numpy(ak.flatten(self.events[collection][field], axis=1))

    def _selection(self, keep: np.ndarray, counts: np.ndarray) -> dict[str, np.ndarray]:
        return {"position": np.flatnonzero(keep), "event": np.repeat(np.arange(len(counts)), counts)[keep]}

    @cached_property
    def electrons(self) -> dict[str, np.ndarray]:
        """Electrons passing pT, |η|, cut-based ID (``cutBased >= electron_cut_based_min``) and isolation: their
        flat ``position`` among all electrons and their ``event``."""
        config = self.config
        pt, counts = jagged(self.events.Electron["pt"])
        keep = (
            (pt > config.electron_pt_min)
            & (np.abs(self._flat("Electron", "eta")) < config.electron_abs_eta_max)
            & (self._flat("Electron", "cutBased") >= config.electron_cut_based_min)
            & (self._flat("Electron", "pfRelIso03_all") < config.electron_isolation_max)
        )
        return self._selection(keep, counts)

    @cached_property
    def muons(self) -> dict[str, np.ndarray]:
        """Muons passing pT, |η|, ``tightId`` and isolation: their flat ``position`` and their ``event``."""
        config = self.config
        pt, counts = jagged(self.events.Muon["pt"])
        keep = (
            (pt > config.muon_pt_min)
            & (np.abs(self._flat("Muon", "eta")) < config.muon_abs_eta_max)
            & self._flat("Muon", "tightId").astype(bool)
            & (self._flat("Muon", "pfRelIso03_all") < config.muon_isolation_max)
        )
        return self._selection(keep, counts)

    def _kinematics(self, collection: str, selection: dict[str, np.ndarray], is_muon: bool) -> dict[str, np.ndarray]:
        position = selection["position"]
        columns = {field: self._flat(collection, field)[position].astype(np.float64) for field in _FIELDS}
        columns["charge"] = self._flat(collection, "charge")[position].astype(np.int64)
        columns["event"] = selection["event"]
        columns["is_muon"] = np.full(len(position), is_muon)
        return columns

    @cached_property
    def leptons(self) -> dict[str, np.ndarray]:
        """Selected electrons and muons merged, ordered by event and, within an event, by decreasing pT (ties:
        electrons first, as stored); ``start`` and ``count`` give each event's leptons."""
        electrons = self._kinematics("Electron", self.electrons, False)
        muons = self._kinematics("Muon", self.muons, True)
        merged = {field: np.concatenate([electrons[field], muons[field]]) for field in electrons}
        order = np.lexsort((-merged["pt"], merged["event"]))
        leptons = {field: values[order] for field, values in merged.items()}
        counts = np.bincount(leptons["event"], minlength=len(self.events))
        leptons["count"] = counts
        leptons["start"] = np.cumsum(counts) - counts
        return leptons

    def nth(self, field: str, n: int) -> np.ndarray:
        """``field`` of the ``n``-th leading lepton (``n = 1`` is the leading one) as float64, NaN where fewer."""
        leptons = self.leptons
        present = leptons["count"] >= n
        values = np.full(len(present), np.nan)
        values[present] = leptons[field][leptons["start"][present] + n - 1]
        return values

    def _count(self, selected: dict[str, np.ndarray]) -> ak.Array:
        return ak.Array(np.bincount(selected["event"], minlength=len(self.events)).astype(np.int64))

    @cached_property
    def n_electrons(self) -> ak.Array:
        """Number of tight isolated electrons."""
        return self._count(self.electrons)

    @cached_property
    def n_muons(self) -> ak.Array:
        """Number of tight isolated muons."""
        return self._count(self.muons)

    @cached_property
    def n_leptons(self) -> ak.Array:
        """Number of tight isolated electrons and muons."""
        return self.n_electrons + self.n_muons

    @cached_property
    def lep1_pt(self) -> ak.Array:
        """pT of the leading lepton (GeV)."""
        return nullable(self.nth("pt", 1))

    @cached_property
    def lep1_eta(self) -> ak.Array:
        """η of the leading lepton."""
        return nullable(self.nth("eta", 1))

    @cached_property
    def lep1_phi(self) -> ak.Array:
        """φ of the leading lepton (rad)."""
        return nullable(self.nth("phi", 1))

    def nth_pt(self, n: int) -> ak.Array:
        """pT of the ``n``-th leading lepton (``n = 1`` is the leading one), GeV; None where there are fewer."""
        return nullable(self.nth("pt", n))

    @cached_property
    def lep2_pt(self) -> ak.Array:
        """pT of the second lepton (GeV)."""
        return self.nth_pt(2)

    @cached_property
    def lep3_pt(self) -> ak.Array:
        """pT of the third lepton (GeV)."""
        return self.nth_pt(3)

    @cached_property
    def lep4_pt(self) -> ak.Array:
        """pT of the fourth lepton (GeV): with m4ℓ and the other pTs, the inputs of a ≥ 4ℓ density model."""
        return self.nth_pt(4)

    @cached_property
    def has_four(self) -> np.ndarray:
        """True for events with at least four selected leptons."""
        return self.leptons["count"] >= 4

    def sum_over_four(self, field: str) -> np.ndarray:
        """Sum of ``field`` over the four leading leptons; NaN for events with fewer than four."""
        return sum(self.nth(field, n) for n in range(1, 5))

    def _sum_four_momenta(self) -> tuple[np.ndarray, ...]:
        momenta = [four_momentum(*(self.nth(field, n) for field in _FIELDS)) for n in range(1, 5)]
        return tuple(sum(components) for components in zip(*momenta))

    @cached_property
    def m4l(self) -> ak.Array:
        """Invariant mass of the four leading leptons (GeV)."""
        return nullable(invariant_mass(*self._sum_four_momenta()), self.has_four)

    def _four_integers(self, field: str) -> ak.Array:
        total = np.where(self.has_four, self.sum_over_four(field), 0).astype(np.int64)
        return nullable(total, self.has_four)

    @cached_property
    def flavour_4l(self) -> ak.Array:
        """Number of muons among the four leading leptons: 0 = 4e, 2 = 2e2μ, 4 = 4μ (see :data:`FLAVOUR_4L`)."""
        return self._four_integers("is_muon")

    @cached_property
    def charge_4l(self) -> ak.Array:
        """Total electric charge of the four leading leptons."""
        return self._four_integers("charge")

    @cached_property
    def mll_z(self) -> ak.Array:
        """Mass of the same-flavour opposite-charge pair closest to the Z mass (GeV); None without such a pair.

        Pairs are tried in the order (1, 2), (1, 3), ..., (2, 3), ...; of equally close pairs the first wins.
        """
        leptons = self.leptons
        n_events = len(self.events)
        best = np.full(n_events, np.nan)
        distance = np.full(n_events, np.inf)
        most = int(leptons["count"].max(initial=0))
        for first in range(most):
            for second in range(first + 1, most):
                events = np.flatnonzero(leptons["count"] > second)
                i, j = leptons["start"][events] + first, leptons["start"][events] + second
                sfos = (leptons["is_muon"][i] == leptons["is_muon"][j]) & (leptons["charge"][i] != leptons["charge"][j])
                events, i, j = events[sfos], i[sfos], j[sfos]
                momentum = four_momentum(*(leptons[field][i] for field in _FIELDS))
                other = four_momentum(*(leptons[field][j] for field in _FIELDS))
                mass = invariant_mass(*(a + b for a, b in zip(momentum, other)))
                closer = np.abs(mass - Z_MASS) < distance[events]
                best[events[closer]] = mass[closer]
                distance[events[closer]] = np.abs(mass[closer] - Z_MASS)
        return nullable(best)
