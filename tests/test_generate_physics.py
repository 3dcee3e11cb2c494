"""The generated samples have the physics they claim: resonances where they should be, substructure,
MET, leptons, and a detector response with the resolutions of the card."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from coffea_ad.generate import DetectorCard

Z_MASS = 91.19


def leading_fat_jets(events):
    fat_jets = events.FatJet[ak.num(events.FatJet) >= 2]
    return fat_jets[:, 0], fat_jets[:, 1]


def histogram_peak(values, edges) -> float:
    counts, edges = np.histogram(values, bins=edges)
    peak = np.argmax(counts)
    return 0.5 * (edges[peak] + edges[peak + 1])


@pytest.fixture(scope="module")
def wprime(generated_sample, open_events):
    return open_events(generated_sample("wprime_xy", 1000, seed=11))


@pytest.fixture(scope="module")
def qcd(generated_sample, open_events):
    return open_events(generated_sample("qcd_dijet", 1000, seed=12))


def test_wprime_dijet_mass_peaks_at_the_wprime_mass(wprime):
    jet1, jet2 = leading_fat_jets(wprime)
    mjj = ak.to_numpy((jet1 + jet2).mass)
    assert len(mjj) > 0.9 * len(wprime)
    assert 3300 <= histogram_peak(mjj, np.arange(2000, 5000, 100)) <= 3600
    assert abs(np.median(mjj) / 3500 - 1) < 0.06


def softdrop_mass_of_jet_matched_to(events, pdg_id):
    """Soft-drop mass of the leading-two fat jet closest (Delta R < 0.5) to the hard-process particle."""
    particle = ak.firsts(events.GenPart[abs(events.GenPart.pdgId) == pdg_id])
    jets = events.FatJet[:, :2]
    distance = jets.delta_r(particle)
    closest = ak.argmin(distance, axis=1, keepdims=True)
    matched = ak.firsts(jets[closest][distance[closest] < 0.5])
    return ak.to_numpy(ak.drop_none(matched.msoftdrop))


def test_wprime_softdrop_masses_peak_at_x_and_y(wprime):
    x_jets = softdrop_mass_of_jet_matched_to(wprime, 35)
    y_jets = softdrop_mass_of_jet_matched_to(wprime, 37)
    assert len(x_jets) > 0.8 * len(wprime) and len(y_jets) > 0.8 * len(wprime)
    # When one quark of X falls outside the R = 0.8 jet, soft drop keeps a single prong of a few GeV;
    # the two-pronged X jets peak at the X mass.
    assert 450 <= histogram_peak(x_jets[x_jets > 200], np.arange(200, 1000, 25)) <= 550
    assert np.mean(np.abs(x_jets / 500 - 1) < 0.15) > 0.3
    assert 80 <= histogram_peak(y_jets, np.arange(0, 300, 10)) <= 120
    assert np.mean(np.abs(y_jets / 100 - 1) < 0.15) > 0.5


def test_wider_fat_jets_contain_more_of_the_heavy_x(wprime, generated_sample, open_events):
    # X (500 GeV) at pT ~ 1.7 TeV decays to quarks Delta R ~ 2m/pT ~ 0.6 apart: an R = 0.8 jet often
    # loses a prong, an R = 1.0 jet (the LHC Olympics choice) less often.
    wide = open_events(generated_sample("wprime_xy", 1000, seed=11, fatjet_radius=1.0))
    contained_08 = np.mean(np.abs(softdrop_mass_of_jet_matched_to(wprime, 35) / 500 - 1) < 0.15)
    contained_10 = np.mean(np.abs(softdrop_mass_of_jet_matched_to(wide, 35) / 500 - 1) < 0.15)
    assert contained_08 > 0.3
    assert contained_10 > contained_08 + 0.05


def test_wprime_jets_are_two_pronged_qcd_jets_are_not(wprime, qcd):
    def tau21(events):
        jet1, jet2 = leading_fat_jets(events)
        return ak.to_numpy(ak.concatenate([jet1["tau2"] / jet1["tau1"], jet2["tau2"] / jet2["tau1"]]))

    assert np.median(tau21(wprime)) < np.median(tau21(qcd)) - 0.15


def test_qcd_dijet_mass_spectrum_falls(qcd):
    jet1, jet2 = leading_fat_jets(qcd)
    mjj = ak.to_numpy((jet1 + jet2).mass)
    counts, _ = np.histogram(mjj, bins=[2800, 3200, 3600, 4000, 4400])
    assert np.all(np.diff(counts) < 0), counts
    # Leading-jet pT sits above the pTHat threshold of 1.2 TeV.
    assert np.median(ak.to_numpy(jet1.pt)) > 1200


def test_zz4l_has_a_lepton_pair_at_the_z_mass(generated_sample, open_events):
    events = open_events(generated_sample("zz4l", 400, seed=13))
    leptons = ak.concatenate([events.Electron, events.Muon], axis=1)
    pairs = ak.combinations(leptons, 2, fields=["first", "second"])
    opposite_sign_same_flavour = (pairs.first.pdgId == -pairs.second.pdgId)
    masses = (pairs.first + pairs.second).mass[opposite_sign_same_flavour]
    closest = ak.firsts(masses[ak.argmin(abs(masses - Z_MASS), axis=1, keepdims=True)])
    closest = ak.to_numpy(ak.drop_none(closest))
    assert len(closest) > 0.5 * len(events)
    assert abs(histogram_peak(closest, np.arange(60, 120, 2)) - Z_MASS) < 3
    # Prompt leptons from Z decays are isolated.
    assert np.median(ak.to_numpy(ak.flatten(leptons.pfRelIso03_all))) < 0.05


def test_hpp4l_same_sign_pairs_peak_at_the_doubly_charged_higgs_mass(generated_sample, open_events):
    events = open_events(generated_sample("hpp4l", 300, seed=14, mass_hpp=600))
    leptons = ak.concatenate([events.Electron, events.Muon], axis=1)
    pairs = ak.combinations(leptons, 2, fields=["first", "second"])
    same_sign = pairs.first.charge == pairs.second.charge
    masses = ak.to_numpy(ak.flatten((pairs.first + pairs.second).mass[same_sign]))
    assert abs(histogram_peak(masses, np.arange(300, 900, 20)) - 600) < 30
    assert np.all(np.abs(ak.flatten(events.GenPart.pdgId[events.GenPart.status == 22])) == 9900041)


def test_semivisible_jets_carry_much_more_met_than_qcd(generated_sample, open_events, qcd):
    semivisible = open_events(generated_sample("semivisible", 400, seed=15))
    assert np.mean(semivisible.MET.pt) > 2.5 * np.mean(qcd.MET.pt)
    assert np.mean(semivisible.PuppiMET.pt) > 2.5 * np.mean(qcd.PuppiMET.pt)


def test_jet_resolution_matches_the_detector_card(qcd):
    card = DetectorCard()
    jets = qcd.Jet[(qcd.Jet.genJetIdx >= 0) & (abs(qcd.Jet.eta) < 2.5) & (qcd.Jet.pt > 800)]
    gen = qcd.GenJet[jets.genJetIdx]
    response = ak.to_numpy(ak.flatten(jets.pt / gen.pt))
    energy = ak.to_numpy(ak.flatten(gen.pt * np.cosh(gen.eta)))
    expected = np.sqrt(card.jet_resolution_stochastic**2 / energy + card.jet_resolution_constant**2)
    assert len(response) > 500
    assert abs(np.median(response) - card.jet_energy_scale) < 0.01
    assert np.std(response - 1) == pytest.approx(np.sqrt(np.mean(expected**2)), rel=0.15)


def test_jet_energy_scale_shifts_the_jets(generated_sample, open_events):
    nominal = open_events(generated_sample("wprime_xy", 200, seed=16))
    shifted = open_events(generated_sample("wprime_xy", 200, seed=16, jet_energy_scale=1.05))
    ratio = ak.to_numpy(ak.flatten(shifted.FatJet.pt[:, :1] / nominal.FatJet.pt[:, :1]))
    assert np.median(ratio) == pytest.approx(1.05, abs=0.005)


def test_hard_process_truth_records_the_decay_chain(wprime):
    truth = wprime.GenPart
    assert ak.all(ak.num(truth) == 7)
    quarks = truth[truth.status == 23]
    parents = ak.flatten(quarks.distinctParent.pdgId)
    assert set(np.abs(ak.to_numpy(parents))) == {35, 37}
    x_mass = ak.to_numpy(ak.flatten(truth.mass[truth.pdgId == 35]))
    assert np.median(x_mass) == pytest.approx(500, rel=0.01)


@pytest.fixture(scope="module")
def wprime_jet_constituents():
    """The constituents of the anti-kT R = 1.0 jets (pT > 100 GeV) of 40 Pythia W' events, one list per jet."""
    import fastjet

    from coffea_ad.generate import PROCESSES
    from coffea_ad.generate.reconstruction import ParticleProperties, _four_vectors, silence_fastjet_banner
    from coffea_ad.generate.sample import _new_pythia

    spec = PROCESSES["wprime_xy"]
    with silence_fastjet_banner():
        pythia = _new_pythia((*spec.pythia_settings(spec.resolve({})), "Random:setSeed = on", "Random:seed = 5"))
        pythia.init()
        record = pythia.nextBatch(40, "skip").prt
        final = record[record.status > 0]
        visible, _ = ParticleProperties(pythia.particleData)(ak.to_numpy(ak.flatten(final.id)))
        particles = final.p[ak.unflatten(visible, ak.num(final, axis=1))]
        particles = _four_vectors(particles.px, particles.py, particles.pz, particles.e)
        fat_jets = fastjet.ClusterSequence(particles, fastjet.JetDefinition(fastjet.antikt_algorithm, 1.0))
        per_jet = ak.flatten(fat_jets.constituents(min_pt=100.0), axis=1)
    return _four_vectors(per_jet.px, per_jet.py, per_jet.pz, per_jet.E)


def test_softdrop_matches_fjcontrib_on_pythia_jets(wprime_jet_constituents):
    """coffea_ad's soft-drop walk over the C/A history gives fjcontrib's SoftDrop mass to machine precision, on the
    fat jets of real W' events (two-pronged X and Y jets and the QCD-like jets of the recoil)."""
    import fastjet

    from coffea_ad.generate.reconstruction import _softdrop_mass

    per_jet, radius = wprime_jet_constituents, 1.0
    reclustered = fastjet.ClusterSequence(
        per_jet, fastjet.JetDefinition(fastjet.cambridge_algorithm, fastjet.JetDefinition.max_allowable_R)
    )
    for beta, zcut in ((0.0, 0.1), (1.0, 0.2)):
        ours = _softdrop_mass(reclustered, ak.to_numpy(ak.num(per_jet, axis=1)), beta, zcut, radius)
        reference = np.asarray(
            reclustered.exclusive_jets_softdrop_grooming(njets=1, beta=beta, symmetry_cut=zcut, R0=radius).msoftdrop
        )
        assert len(ours) >= 80
        np.testing.assert_allclose(ours, reference, rtol=1e-9, atol=1e-6)
        # the grooming did something: a spread from single prongs to the X mass
        assert np.max(ours) > 300 and np.min(ours) < 30


def test_nsubjettiness_matches_fjcontrib_on_pythia_jets(wprime_jet_constituents):
    """tau_1..tau_4 from one kT clustering equal fjcontrib's Nsubjettiness (KT_Axes, NormalizedMeasure, beta = 1)."""
    import fastjet

    from coffea_ad.generate.reconstruction import _nsubjettiness

    per_jet, radius = wprime_jet_constituents, 1.0
    ours = _nsubjettiness(per_jet, 4, beta=1.0, radius=radius)
    clustering = fastjet.ClusterSequence(per_jet, fastjet.JetDefinition(fastjet.cambridge_algorithm, radius))
    reference = np.asarray(
        clustering.njettiness(
            measure_definition="NormalizedMeasure", axes_definition="KT_Axes", njets=[1, 2, 3, 4], beta=1.0, R0=radius
        )
    )
    np.testing.assert_allclose(ours, reference, rtol=1e-9, atol=1e-12)
    # tau_N falls with N (not jet by jet: kT axes are not the minimising ones), and two-pronged jets have small tau21
    assert np.all(np.diff(np.median(ours, axis=0)) < 0)
    assert np.min(ours[:, 1] / ours[:, 0]) < 0.3
