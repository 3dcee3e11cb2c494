"""The fast detector response of the generator: every number in one documented card.

In the spirit of a Delphes CMS card, but written out as plain numbers so that a physicist can read and
change them (``coffea-ad generate ... --set jet_energy_scale=1.02``). Each field says what it does; the
values are representative of the CMS Run 2/3 detector, not a tuned simulation of it.

References:
    Delphes 3, arXiv:1307.6346 (the CMS card this follows in spirit).
    CMS jet energy resolution, JINST 12 (2017) P02014; muon momentum resolution, JINST 13 (2018) P06015;
    electron reconstruction and identification, JINST 16 (2021) P05014; b tagging, JINST 13 (2018) P05011.
"""

from __future__ import annotations

import dataclasses

from coffea_ad.errors import ConfigurationError

__all__ = ["DetectorCard"]


@dataclasses.dataclass(frozen=True)
class DetectorCard:
    """Acceptance, resolutions and efficiencies applied to Pythia's final-state particles.

    Energies and momenta are in GeV. Resolutions are Gaussian widths of the relative smearing,
    sigma(E)/E = stochastic / sqrt(E) (+) constant, added in quadrature.
    """

    #: |eta| acceptance of the tracker: electrons and muons are reconstructed only inside it.
    tracker_eta_max: float = 2.5
    #: |eta| acceptance of the calorimeters (HF reaches 4.7): visible particles beyond are lost,
    #: enter no jet and appear as missing transverse momentum.
    calorimeter_eta_max: float = 4.7

    #: AK4 jets: anti-kT radius and the minimum pT (after smearing) of a stored jet.
    jet_radius: float = 0.4
    jet_pt_min: float = 20.0
    #: Large-radius jets: anti-kT radius (0.8 as CMS AK8; 1.0 as ATLAS) and minimum pT after smearing.
    fatjet_radius: float = 0.8
    fatjet_pt_min: float = 200.0
    #: Soft drop on the large-radius jet (Cambridge/Aachen reclustering, beta = 0: modified mass drop).
    softdrop_zcut: float = 0.1
    softdrop_beta: float = 0.0

    #: Jet energy resolution in the barrel/endcap (|eta| < 3): stochastic (GeV^1/2) and constant terms.
    jet_resolution_stochastic: float = 1.0
    jet_resolution_constant: float = 0.05
    #: ... and in the forward calorimeter (|eta| >= 3).
    jet_resolution_stochastic_forward: float = 1.5
    jet_resolution_constant_forward: float = 0.10
    #: Multiplicative jet energy scale applied to every jet four-vector (1.0 = calibrated); shift it to
    #: emulate a jet-energy-scale systematic. Fat-jet mass and soft-drop mass scale with it.
    jet_energy_scale: float = 1.0

    #: Electrons: pT threshold; reconstruction efficiency in the barrel (|eta| < 1.5) and endcaps.
    electron_pt_min: float = 5.0
    electron_efficiency_barrel: float = 0.95
    electron_efficiency_endcap: float = 0.85
    #: Electron energy resolution: stochastic (GeV^1/2) and constant terms.
    electron_resolution_stochastic: float = 0.03
    electron_resolution_constant: float = 0.005
    #: Probability that a reconstructed electron passes the tight / at least medium / loose / veto
    #: cut-based identification (Electron_cutBased = 4 / 3 / 2 / 1; 0 fails all).
    electron_id_tight: float = 0.80
    electron_id_medium: float = 0.88
    electron_id_loose: float = 0.94
    electron_id_veto: float = 0.98
    #: The cut-based electron IDs include isolation: above this pfRelIso03_all an electron is at most loose.
    electron_id_isolation_max: float = 0.15

    #: Muons: pT threshold and reconstruction efficiency (looseId) inside the tracker.
    muon_pt_min: float = 3.0
    muon_efficiency: float = 0.98
    #: Muon transverse-momentum resolution: sigma(pT)/pT = constant (+) slope * pT (10 % at 1 TeV).
    muon_resolution_constant: float = 0.01
    muon_resolution_slope: float = 1.0e-4
    #: Probability that a reconstructed muon passes the tight identification (Muon_tightId).
    muon_tight_id_efficiency: float = 0.96

    #: Isolation cone (pfRelIso03_all): visible particles above this pT within Delta R < 0.3 of the lepton.
    isolation_cone: float = 0.3
    isolation_particle_pt_min: float = 0.5

    #: b tagging (Jet_btagDeepFlavB) for jets inside the tracker: the probability to pass the working
    #: point for b, c and light jets; the score is drawn above the working point when tagged, below otherwise.
    #: The working point is the DeepJet medium one of 2018 UL, the default of coffea_ad.features.
    btag_working_point: float = 0.2783
    btag_efficiency_b: float = 0.75
    btag_efficiency_c: float = 0.15
    btag_efficiency_light: float = 0.01
    #: Jet flavour (Jet_hadronFlavour): a b (c) hadron above this pT within the jet radius makes it 5 (4).
    flavour_hadron_pt_min: float = 5.0

    #: PuppiMET emulation: neutral particles below this pT are dropped (pile-up suppression); MET_pt uses
    #: every visible particle inside the calorimeter acceptance.
    puppi_neutral_pt_min: float = 1.0

    @classmethod
    def describe(cls) -> str:
        """The card's parameters and defaults, one per line (each is a ``--set NAME=VALUE`` of generate)."""
        lines = ["detector parameters (every process; see coffea_ad/generate/detector.py for their meaning):"]
        lines += [f"    {field.name} = {field.default:g}" for field in dataclasses.fields(cls)]
        return "\n".join(lines)

    @classmethod
    def from_settings(cls, settings: dict[str, str | float]) -> DetectorCard:
        """Build a card from ``{field: value}`` overrides, rejecting unknown fields and bad values."""
        fields = {field.name for field in dataclasses.fields(cls)}
        values = {}
        for name, text in settings.items():
            if name not in fields:
                raise ConfigurationError(f"unknown detector parameter {name!r}; valid: {', '.join(sorted(fields))}")
            try:
                values[name] = float(text)
            except (TypeError, ValueError):
                raise ConfigurationError(f"detector parameter {name} must be a number, got {text!r}") from None
            if values[name] < 0:
                raise ConfigurationError(f"detector parameter {name} must not be negative, got {values[name]:g}")
        card = cls(**values)
        for name in ("jet_radius", "fatjet_radius", "isolation_cone"):
            if not getattr(card, name) > 0:
                raise ConfigurationError(f"detector parameter {name} must be positive, got {getattr(card, name):g}")
        for name in fields:
            if ("efficiency" in name or name.startswith("electron_id_")) and name != "electron_id_isolation_max":
                if getattr(card, name) > 1:
                    raise ConfigurationError(f"detector parameter {name} is a probability, got {getattr(card, name):g}")
        return card
