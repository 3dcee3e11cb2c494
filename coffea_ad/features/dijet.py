"""Dijet features of the two leading fat jets (LHC Olympics R&D style).

Jet labels follow the LHC Olympics convention: of the two leading-pT fat jets, ``j1`` is the lighter one in
soft-drop mass and ``j2`` the heavier one, so that ``mj_min`` is the mass of ``j1``. N-subjettiness is read
with item access (``fatjets["tau2"]``): in coffea 2026 the attribute ``fatjets.tau2`` is the vector
library's τ (mass squared), not the NanoAOD branch.

References:
    LHC Olympics 2020, arXiv:2101.08320; CATHODE, arXiv:2109.00546 (features mj_min, Δmj, τ21 of both jets).
"""

from __future__ import annotations

from functools import cached_property

import awkward as ak
import numpy as np

from coffea_ad.features.arrays import jagged, nullable
from coffea_ad.features.config import FeatureGroup
from coffea_ad.features.kinematics import delta_r, four_momentum, invariant_mass

__all__ = ["DijetSystem", "leading_objects", "safe_ratio"]


def safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, NaN where the denominator is NaN (missing) or not positive."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return numerator / np.where(denominator > 0, denominator, np.nan)


def leading_objects(pt: np.ndarray, event: np.ndarray, n_events: int, n_leading: int) -> tuple[np.ndarray, ...]:
    """Flat positions of the ``n_leading`` highest-pT objects of each event, -1 where an event has fewer.

    ``pt`` and ``event`` (the event number of each object, non-decreasing) are flat arrays of the selected
    objects; ties keep the stored order, as a stable sort by decreasing pT does. NanoAOD stores its
    collections pT-ordered: that is checked (one pass) and then needs no sort.
    """
    same_event = event[1:] == event[:-1]
    if np.all(pt[1:][same_event] <= pt[:-1][same_event]):
        order = np.arange(len(pt))
    else:
        order = np.lexsort((-pt, event))
    counts = np.bincount(event, minlength=n_events)
    starts = np.cumsum(counts) - counts
    positions = []
    for rank in range(n_leading):
        present = counts > rank
        position = np.full(n_events, -1, dtype=np.int64)
        position[present] = order[starts[present] + rank]
        positions.append(position)
    return tuple(positions)


def take(values: np.ndarray, position: np.ndarray) -> np.ndarray:
    """``values[position]`` as float64, NaN where the position is -1 (no such object)."""
    taken = np.full(len(position), np.nan)
    present = position >= 0
    taken[present] = values[position[present]]
    return taken


class DijetSystem(FeatureGroup):
    """The two leading fat jets of each event and the features built from them.

    Every feature is computed on first access and shared between features; an event with fewer than two
    fat jets (after ``FeatureConfig.fatjet_pt_min`` and ``fatjet_abs_eta_max``) gets None. Internally
    the pair is a pair of flat float64 arrays with NaN for an absent jet; :meth:`finish` turns NaN into None.
    ``events`` is a concrete chunk (eager or virtual NanoEvents); :func:`coffea_ad.features.compute_features`
    takes every mode.
    """

    @cached_property
    def _selected(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Flat positions (among all fat jets), event numbers and pT of the selected fat jets."""
        pt, counts = jagged(self.events.FatJet["pt"])
        eta = ak.to_numpy(ak.flatten(self.events.FatJet["eta"], axis=1))
        keep = (pt > self.config.fatjet_pt_min) & (np.abs(eta) < self.config.fatjet_abs_eta_max)
        event = np.repeat(np.arange(len(counts)), counts)
        return np.flatnonzero(keep), event[keep], pt[keep]

    @cached_property
    def _pair(self) -> tuple[np.ndarray, np.ndarray]:
        """Flat positions of the leading and subleading selected fat jets, -1 where absent."""
        positions, event, pt = self._selected
        ranked = leading_objects(pt, event, len(self.events), 2)
        return tuple(np.where(rank >= 0, positions[np.maximum(rank, 0)], -1) if len(positions) else rank
                     for rank in ranked)

    @cached_property
    def _pair_fields(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {}

    def pair_field(self, field: str) -> tuple[np.ndarray, np.ndarray]:
        """Return ``field`` of the leading and of the subleading fat jet as float64, NaN where absent."""
        if field not in self._pair_fields:
            values = ak.to_numpy(ak.flatten(self.events.FatJet[field], axis=1))
            leading, subleading = self._pair
            self._pair_fields[field] = (take(values, leading), take(values, subleading))
        return self._pair_fields[field]

    @cached_property
    def has_pair(self) -> np.ndarray:
        """True for events with at least two selected fat jets."""
        return self._pair[1] >= 0

    def finish(self, column: np.ndarray) -> ak.Array:
        """``column`` with None for events without two fat jets and where the value is NaN."""
        return nullable(column, self.has_pair & ~np.isnan(column))

    @cached_property
    def lighter_is_subleading(self) -> np.ndarray:
        """True where the subleading-pT jet has the smaller soft-drop mass (then it becomes ``j1``)."""
        leading, subleading = self.pair_field("msoftdrop")
        return subleading < leading

    def by_mass(self, leading: np.ndarray, subleading: np.ndarray) -> tuple[ak.Array, ak.Array]:
        """Reorder a (leading-pT, subleading-pT) pair of columns into (j1, j2) = (lighter, heavier).

        Both are None in events without two fat jets: a lone jet is neither the lighter nor the heavier.
        """
        swap = self.lighter_is_subleading
        return self.finish(np.where(swap, subleading, leading)), self.finish(np.where(swap, leading, subleading))

    def tau_ratio(self, numerator: str, denominator: str) -> tuple[ak.Array, ak.Array]:
        """Return τ_numerator/τ_denominator of (j1, j2); None where τ_denominator ≤ 0."""
        num_leading, num_subleading = self.pair_field(numerator)
        den_leading, den_subleading = self.pair_field(denominator)
        return self.by_mass(safe_ratio(num_leading, den_leading), safe_ratio(num_subleading, den_subleading))

    @cached_property
    def n_fatjets(self) -> ak.Array:
        """Number of selected fat jets."""
        return ak.Array(np.bincount(self._selected[1], minlength=len(self.events)).astype(np.int64))

    @cached_property
    def mjj(self) -> ak.Array:
        """Invariant mass of the two leading fat jets (GeV)."""
        fields = [self.pair_field(name) for name in ("pt", "eta", "phi", "mass")]
        leading = four_momentum(*(pair[0] for pair in fields))
        subleading = four_momentum(*(pair[1] for pair in fields))
        return self.finish(invariant_mass(*(a + b for a, b in zip(leading, subleading))))

    @cached_property
    def masses(self) -> tuple[ak.Array, ak.Array]:
        """Soft-drop masses of (j1, j2) in GeV."""
        return self.by_mass(*self.pair_field("msoftdrop"))

    @cached_property
    def mj_min(self) -> ak.Array:
        """Soft-drop mass of the lighter jet j1 (GeV)."""
        return self.masses[0]

    @cached_property
    def mj_max(self) -> ak.Array:
        """Soft-drop mass of the heavier jet j2 (GeV)."""
        return self.masses[1]

    @cached_property
    def mass_over_pt(self) -> tuple[ak.Array, ak.Array]:
        """Soft-drop mass over pT of (j1, j2): the jet mass with the pT scaling taken out."""
        mass_leading, mass_subleading = self.pair_field("msoftdrop")
        pt_leading, pt_subleading = self.pair_field("pt")
        return self.by_mass(safe_ratio(mass_leading, pt_leading), safe_ratio(mass_subleading, pt_subleading))

    @cached_property
    def mj_over_pt_j1(self) -> ak.Array:
        """Soft-drop mass over pT of the lighter jet j1."""
        return self.mass_over_pt[0]

    @cached_property
    def mj_over_pt_j2(self) -> ak.Array:
        """Soft-drop mass over pT of the heavier jet j2."""
        return self.mass_over_pt[1]

    @cached_property
    def delta_mj(self) -> ak.Array:
        """mj_max − mj_min (GeV), never negative."""
        leading, subleading = self.pair_field("msoftdrop")
        return self.finish(np.abs(leading - subleading))

    @cached_property
    def tau21(self) -> tuple[ak.Array, ak.Array]:
        """τ2/τ1 of (j1, j2)."""
        return self.tau_ratio("tau2", "tau1")

    @cached_property
    def tau32(self) -> tuple[ak.Array, ak.Array]:
        """τ3/τ2 of (j1, j2)."""
        return self.tau_ratio("tau3", "tau2")

    @cached_property
    def tau43(self) -> tuple[ak.Array, ak.Array]:
        """τ4/τ3 of (j1, j2): small for jets with four prongs (extended substructure, arXiv:2309.13111)."""
        return self.tau_ratio("tau4", "tau3")

    @cached_property
    def tau21_j1(self) -> ak.Array:
        """τ2/τ1 of the lighter jet."""
        return self.tau21[0]

    @cached_property
    def tau21_j2(self) -> ak.Array:
        """τ2/τ1 of the heavier jet."""
        return self.tau21[1]

    @cached_property
    def tau32_j1(self) -> ak.Array:
        """τ3/τ2 of the lighter jet."""
        return self.tau32[0]

    @cached_property
    def tau32_j2(self) -> ak.Array:
        """τ3/τ2 of the heavier jet."""
        return self.tau32[1]

    @cached_property
    def tau43_j1(self) -> ak.Array:
        """τ4/τ3 of the lighter jet."""
        return self.tau43[0]

    @cached_property
    def tau43_j2(self) -> ak.Array:
        """τ4/τ3 of the heavier jet."""
        return self.tau43[1]

    @cached_property
    def deta_jj(self) -> ak.Array:
        """|η_1 − η_2| of the two leading fat jets."""
        leading, subleading = self.pair_field("eta")
        return self.finish(np.abs(leading - subleading))

    @cached_property
    def dr_jj(self) -> ak.Array:
        """ΔR between the two leading fat jets."""
        eta_leading, eta_subleading = self.pair_field("eta")
        phi_leading, phi_subleading = self.pair_field("phi")
        return self.finish(delta_r(eta_leading, phi_leading, eta_subleading, phi_subleading))
