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
from typing import Any

import awkward as ak
import numpy as np

from coffea_ad.features.config import FeatureGroup
from coffea_ad.features.kinematics import as_float64, delta_r, four_momentum, invariant_mass

__all__ = ["DijetSystem"]


def _ratio(numerator: Any, denominator: Any) -> Any:
    """numerator / denominator, NaN where the denominator is NaN (missing) or not positive."""
    return numerator / ak.where(denominator > 0, denominator, np.nan)


class DijetSystem(FeatureGroup):
    """The two leading fat jets of each event and the features built from them.

    Every feature is computed on first access and shared between features; an event with fewer than two
    fat jets (after ``FeatureConfig.fatjet_pt_min`` and ``fatjet_abs_eta_max``) gets None. Internally the
    pair is a float64 array with NaN for an absent jet (plain arrays are several times faster than option
    types through the arithmetic); :meth:`finish` turns NaN into None at the end.
    """

    @cached_property
    def fatjets(self) -> Any:
        """The selected fat jets of each event, ordered by decreasing pT."""
        fatjets = self.events.FatJet
        if self.config.fatjet_pt_min > 0 or np.isfinite(self.config.fatjet_abs_eta_max):
            keep = (fatjets["pt"] > self.config.fatjet_pt_min) & (abs(fatjets["eta"]) < self.config.fatjet_abs_eta_max)
            fatjets = fatjets[keep]
        return fatjets[ak.argsort(fatjets["pt"], axis=1, ascending=False)]

    @cached_property
    def leading_pair(self) -> Any:
        """The two leading fat jets, padded with None to exactly two per event."""
        return ak.pad_none(self.fatjets, 2, clip=True)

    def pair_field(self, field: str) -> tuple[Any, Any]:
        """Return ``field`` of the leading and of the subleading fat jet as float64, NaN where absent."""
        column = ak.fill_none(as_float64(self.leading_pair[field]), np.nan)
        return column[:, 0], column[:, 1]

    @cached_property
    def has_pair(self) -> Any:
        """True for events with at least two selected fat jets."""
        return self.n_fatjets >= 2

    def finish(self, column: Any) -> Any:
        """``column`` with None for events without two fat jets and where the value is NaN."""
        return ak.mask(column, self.has_pair & ~np.isnan(column))

    @cached_property
    def lighter_is_subleading(self) -> Any:
        """True where the subleading-pT jet has the smaller soft-drop mass (then it becomes ``j1``)."""
        leading, subleading = self.pair_field("msoftdrop")
        return subleading < leading

    def by_mass(self, leading: Any, subleading: Any) -> tuple[Any, Any]:
        """Reorder a (leading-pT, subleading-pT) pair of columns into (j1, j2) = (lighter, heavier).

        Both are None in events without two fat jets: a lone jet is neither the lighter nor the heavier.
        """
        swap = self.lighter_is_subleading
        return self.finish(ak.where(swap, subleading, leading)), self.finish(ak.where(swap, leading, subleading))

    def tau_ratio(self, numerator: str, denominator: str) -> tuple[Any, Any]:
        """Return τ_numerator/τ_denominator of (j1, j2); None where τ_denominator ≤ 0."""
        num_leading, num_subleading = self.pair_field(numerator)
        den_leading, den_subleading = self.pair_field(denominator)
        return self.by_mass(_ratio(num_leading, den_leading), _ratio(num_subleading, den_subleading))

    @cached_property
    def n_fatjets(self) -> Any:
        """Number of selected fat jets."""
        return ak.num(self.fatjets, axis=1)

    @cached_property
    def mjj(self) -> Any:
        """Invariant mass of the two leading fat jets (GeV)."""
        leading = four_momentum(*(self.pair_field(name)[0] for name in ("pt", "eta", "phi", "mass")))
        subleading = four_momentum(*(self.pair_field(name)[1] for name in ("pt", "eta", "phi", "mass")))
        return self.finish(invariant_mass(*(a + b for a, b in zip(leading, subleading))))

    @cached_property
    def masses(self) -> tuple[Any, Any]:
        """Soft-drop masses of (j1, j2) in GeV."""
        return self.by_mass(*self.pair_field("msoftdrop"))

    @cached_property
    def mj_min(self) -> Any:
        """Soft-drop mass of the lighter jet j1 (GeV)."""
        return self.masses[0]

    @cached_property
    def mj_max(self) -> Any:
        """Soft-drop mass of the heavier jet j2 (GeV)."""
        return self.masses[1]

    @cached_property
    def mass_over_pt(self) -> tuple[Any, Any]:
        """Soft-drop mass over pT of (j1, j2): the jet mass with the pT scaling taken out."""
        mass_leading, mass_subleading = self.pair_field("msoftdrop")
        pt_leading, pt_subleading = self.pair_field("pt")
        return self.by_mass(_ratio(mass_leading, pt_leading), _ratio(mass_subleading, pt_subleading))

    @cached_property
    def mj_over_pt_j1(self) -> Any:
        """Soft-drop mass over pT of the lighter jet j1."""
        return self.mass_over_pt[0]

    @cached_property
    def mj_over_pt_j2(self) -> Any:
        """Soft-drop mass over pT of the heavier jet j2."""
        return self.mass_over_pt[1]

    @cached_property
    def delta_mj(self) -> Any:
        """mj_max − mj_min (GeV), never negative."""
        return self.mj_max - self.mj_min

    @cached_property
    def tau21(self) -> tuple[Any, Any]:
        """τ2/τ1 of (j1, j2)."""
        return self.tau_ratio("tau2", "tau1")

    @cached_property
    def tau32(self) -> tuple[Any, Any]:
        """τ3/τ2 of (j1, j2)."""
        return self.tau_ratio("tau3", "tau2")

    @cached_property
    def tau21_j1(self) -> Any:
        """τ2/τ1 of the lighter jet."""
        return self.tau21[0]

    @cached_property
    def tau21_j2(self) -> Any:
        """τ2/τ1 of the heavier jet."""
        return self.tau21[1]

    @cached_property
    def tau32_j1(self) -> Any:
        """τ3/τ2 of the lighter jet."""
        return self.tau32[0]

    @cached_property
    def tau32_j2(self) -> Any:
        """τ3/τ2 of the heavier jet."""
        return self.tau32[1]

    @cached_property
    def deta_jj(self) -> Any:
        """|η_1 − η_2| of the two leading fat jets."""
        leading, subleading = self.pair_field("eta")
        return self.finish(abs(leading - subleading))

    @cached_property
    def dr_jj(self) -> Any:
        """ΔR between the two leading fat jets."""
        eta_leading, eta_subleading = self.pair_field("eta")
        phi_leading, phi_subleading = self.pair_field("phi")
        return self.finish(delta_r(eta_leading, phi_leading, eta_subleading, phi_subleading))
