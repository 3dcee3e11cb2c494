"""Physics features against hand computations from the raw NanoAOD branches (uproot + numpy)."""

from __future__ import annotations

import warnings

import awkward as ak
import dask
import numpy as np
import pytest
import uproot
from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

from coffea_ad.errors import CoffeaADError, ConfigurationError
from coffea_ad.features import (
    FEATURE_SETS,
    FEATURES,
    FeatureConfig,
    FeatureSkippedWarning,
    MissingBranchError,
    compute_features,
    resolve_feature_names,
)


def open_events(path, mode: str = "eager"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # coffea: cross-references absent from small files
        return NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=NanoAODSchema, mode=mode).events()


def raw_branches(path, names):
    with uproot.open(path) as file:
        return file["Events"].arrays(names, library="ak")


@pytest.fixture(scope="module")
def ttbar_v12(shared_nanoaod):
    return shared_nanoaod / "nano_tt_v12.root"


@pytest.fixture(scope="module")
def ttbar_features(ttbar_v12):
    return compute_features(open_events(ttbar_v12), "all")


def leading_pairs(path):
    """The two leading fat jets of events with at least two, as numpy (n, 2) arrays per branch."""
    names = ["FatJet_pt", "FatJet_eta", "FatJet_phi", "FatJet_mass", "FatJet_msoftdrop", "FatJet_tau1",
             "FatJet_tau2", "FatJet_tau3", "FatJet_tau4"]
    raw = raw_branches(path, names)
    two = ak.num(raw.FatJet_pt) >= 2
    order = ak.argsort(raw.FatJet_pt[two], ascending=False)
    return two, {name.removeprefix("FatJet_"): ak.to_numpy(raw[name][two][order][:, :2]).astype(np.float64)
                 for name in names}


def test_mjj_equals_the_hand_computed_invariant_mass(ttbar_v12, ttbar_features):
    two, jets = leading_pairs(ttbar_v12)
    assert ak.sum(two) >= 20  # enough events with two fat jets in the ttbar file to mean something
    pt, eta, phi, mass = jets["pt"], jets["eta"], jets["phi"], jets["mass"]
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    energy = np.sqrt(px**2 + py**2 + pz**2 + mass**2)
    expected = np.sqrt(energy.sum(1) ** 2 - px.sum(1) ** 2 - py.sum(1) ** 2 - pz.sum(1) ** 2)
    np.testing.assert_allclose(ak.to_numpy(ttbar_features.mjj[two]), expected, rtol=1e-9)
    deta = np.abs(eta[:, 0] - eta[:, 1])
    dphi = np.angle(np.exp(1j * (phi[:, 0] - phi[:, 1])))
    np.testing.assert_allclose(ak.to_numpy(ttbar_features.deta_jj[two]), deta, rtol=1e-9)
    np.testing.assert_allclose(ak.to_numpy(ttbar_features.dr_jj[two]), np.hypot(deta, dphi), rtol=1e-9)


def test_jets_are_ordered_by_soft_drop_mass_and_tau_ratios_come_from_the_raw_branches(ttbar_v12, ttbar_features):
    two, jets = leading_pairs(ttbar_v12)
    lighter = np.argmin(jets["msoftdrop"], axis=1)
    rows = np.arange(len(lighter))
    heavier = 1 - lighter
    assert np.any(lighter == 1) and np.any(lighter == 0)  # both orderings occur, so the swap is exercised
    features = ttbar_features[two]
    np.testing.assert_allclose(ak.to_numpy(features.mj_min), jets["msoftdrop"][rows, lighter], rtol=1e-9)
    np.testing.assert_allclose(ak.to_numpy(features.mj_max), jets["msoftdrop"][rows, heavier], rtol=1e-9)
    np.testing.assert_allclose(ak.to_numpy(features.delta_mj), np.abs(np.diff(jets["msoftdrop"], axis=1))[:, 0],
                               rtol=1e-6, atol=1e-9)
    tau21 = jets["tau2"] / jets["tau1"]
    tau32 = jets["tau3"] / jets["tau2"]
    np.testing.assert_allclose(ak.to_numpy(features.tau21_j1), tau21[rows, lighter], rtol=1e-9)
    np.testing.assert_allclose(ak.to_numpy(features.tau21_j2), tau21[rows, heavier], rtol=1e-9)
    np.testing.assert_allclose(ak.to_numpy(features.tau32_j1), tau32[rows, lighter], rtol=1e-9)
    np.testing.assert_allclose(ak.to_numpy(features.tau32_j2), tau32[rows, heavier], rtol=1e-9)
    mass_over_pt = jets["msoftdrop"] / jets["pt"]
    np.testing.assert_allclose(ak.to_numpy(features.mj_over_pt_j1), mass_over_pt[rows, lighter], rtol=1e-9)
    np.testing.assert_allclose(ak.to_numpy(features.mj_over_pt_j2), mass_over_pt[rows, heavier], rtol=1e-9)
    # Item access, not the vector attribute: an N-subjettiness ratio lies in [0, 1], a mass² ratio does not.
    assert ak.all((features.tau21_j1 >= 0) & (features.tau21_j1 <= 1.0 + 1e-6))


def test_tau43_is_tau4_over_tau3_of_the_mass_ordered_jets(ttbar_v12, ttbar_features):
    two, jets = leading_pairs(ttbar_v12)
    lighter = np.argmin(jets["msoftdrop"], axis=1)
    rows = np.arange(len(lighter))
    features = ttbar_features[two]
    tau43 = jets["tau4"] / jets["tau3"]
    valid = jets["tau3"][rows, lighter] > 0
    assert valid.sum() >= 20
    np.testing.assert_allclose(ak.to_numpy(features.tau43_j1[valid]), tau43[rows, lighter][valid], rtol=1e-9)
    np.testing.assert_allclose(ak.to_numpy(features.tau43_j2), tau43[rows, 1 - lighter], rtol=1e-9)
    assert FEATURES["tau43_j1"].required_branches(FeatureConfig())[-2:] == ("FatJet_tau3", "FatJet_tau4")


def test_events_without_two_fat_jets_get_none_never_zero(ttbar_v12, ttbar_features):
    n_fatjets = ak.num(raw_branches(ttbar_v12, ["FatJet_pt"]).FatJet_pt)
    fewer = ak.to_numpy(n_fatjets < 2)
    assert fewer.sum() > 100
    np.testing.assert_array_equal(ak.to_numpy(ttbar_features.n_fatjets), ak.to_numpy(n_fatjets))
    for name in FEATURE_SETS["dijet"]:
        if name != "n_fatjets":
            assert ak.all(ak.is_none(ttbar_features[name][fewer])), name
            assert not ak.any(ak.is_none(ttbar_features[name][~fewer])), name


def test_ht_jet_counts_and_met_from_the_raw_branches(ttbar_v12, ttbar_features):
    raw = raw_branches(ttbar_v12, ["Jet_pt", "Jet_eta", "Jet_btagDeepFlavB", "MET_pt"])
    selected = (raw.Jet_pt > 30) & (abs(raw.Jet_eta) < 2.5)
    ht = ak.to_numpy(ak.sum(ak.values_astype(raw.Jet_pt, np.float64)[selected], axis=1))
    np.testing.assert_allclose(ak.to_numpy(ttbar_features.ht), ht, rtol=1e-12)
    np.testing.assert_array_equal(ak.to_numpy(ttbar_features.n_jets), ak.to_numpy(ak.sum(selected, axis=1)))
    bjets = ak.to_numpy(ak.sum(selected & (raw.Jet_btagDeepFlavB > 0.2783), axis=1))
    np.testing.assert_array_equal(ak.to_numpy(ttbar_features.n_bjets), bjets)
    assert bjets.mean() > 0.8  # ttbar: about one b-tagged jet per event or more
    np.testing.assert_allclose(ak.to_numpy(ttbar_features.met), ak.to_numpy(raw.MET_pt), rtol=1e-7)
    higher = compute_features(open_events(ttbar_v12), ["ht", "n_jets"], config=FeatureConfig(jet_pt_min=60.0))
    assert ak.all(higher.ht <= ttbar_features.ht) and ak.all(higher.n_jets <= ttbar_features.n_jets)


def test_tight_lepton_counts_and_leading_lepton_from_the_raw_branches(ttbar_v12, ttbar_features):
    raw = raw_branches(ttbar_v12, ["Electron_pt", "Electron_eta", "Electron_cutBased", "Electron_pfRelIso03_all",
                                   "Muon_pt", "Muon_eta", "Muon_tightId", "Muon_pfRelIso03_all"])
    electrons = ((raw.Electron_pt > 10) & (abs(raw.Electron_eta) < 2.5) & (raw.Electron_cutBased >= 4)
                 & (raw.Electron_pfRelIso03_all < 0.15))
    muons = ((raw.Muon_pt > 10) & (abs(raw.Muon_eta) < 2.4) & raw.Muon_tightId & (raw.Muon_pfRelIso03_all < 0.15))
    n_electrons, n_muons = ak.to_numpy(ak.sum(electrons, axis=1)), ak.to_numpy(ak.sum(muons, axis=1))
    np.testing.assert_array_equal(ak.to_numpy(ttbar_features.n_electrons), n_electrons)
    np.testing.assert_array_equal(ak.to_numpy(ttbar_features.n_muons), n_muons)
    assert (n_electrons + n_muons).max() >= 2
    leading = ak.max(ak.concatenate([raw.Electron_pt[electrons], raw.Muon_pt[muons]], axis=1), axis=1)
    none = n_electrons + n_muons == 0
    np.testing.assert_array_equal(ak.to_numpy(ak.is_none(ttbar_features.lep1_pt)), none)
    np.testing.assert_allclose(ak.to_numpy(ttbar_features.lep1_pt[~none]), ak.to_numpy(leading[~none]), rtol=1e-7)
    assert ak.all(ak.is_none(ttbar_features.m4l))  # no ttbar event here has four tight leptons


@pytest.fixture(scope="module")
def four_lepton_file(tmp_path_factory):
    """A hand-made NanoAOD file: 4e, 2e2μ, 4μ (one with charge +2) and a three-lepton event."""
    electrons = [
        [(50, 0.1, 0.0, 1), (40, -0.5, 2.0, -1), (30, 1.0, -2.0, 1), (20, 0.3, 1.0, -1)],
        [(60, 0.2, 0.5, 1), (35, -1.2, -2.5, -1)],
        [],
        [(45, 0.0, 0.0, 1), (25, 0.5, 2.0, -1), (15, -0.4, -1.0, 1)],
    ]
    muons = [
        [],
        [(70, 0.4, 1.5, -1), (25, -0.3, -1.0, 1), (5, 0.0, 0.0, 1)],  # the 5 GeV muon fails the pT cut
        [(80, 0.2, 0.3, 1), (45, -0.8, 2.9, 1), (33, 1.5, -1.2, 1), (12, -2.0, 0.7, -1)],
        [],
    ]

    def collection(objects, mass, extra):
        kinematics = {name: [[o[index] for o in event] for event in objects]
                      for index, name in enumerate(("pt", "eta", "phi", "charge"))}
        kinematics["mass"] = [[mass] * len(event) for event in objects]
        kinematics.update({name: [[value] * len(event) for event in objects] for name, value in extra.items()})
        dtypes = {"charge": "int32", "cutBased": "int32", "tightId": "bool"}
        return ak.zip({name: ak.values_astype(ak.Array(values), dtypes.get(name, "float32"))
                       for name, values in kinematics.items()})

    content = {
        "run": np.ones(4, np.uint32),
        "luminosityBlock": np.ones(4, np.uint32),
        "event": np.arange(1, 5, dtype=np.uint64),
        "Electron": collection(electrons, 0.000511, {"cutBased": 4, "pfRelIso03_all": 0.01}),
        "Muon": collection(muons, 0.10566, {"tightId": True, "pfRelIso03_all": 0.01}),
    }
    path = tmp_path_factory.mktemp("leptons") / "four_leptons.root"
    with uproot.recreate(path) as file:
        types = {
            name: column.type if isinstance(column, ak.Array) else column.dtype for name, column in content.items()
        }
        tree = file.mktree("Events", types)
        tree.extend(content)
    return path, electrons, muons


def four_vector(pt, eta, phi, mass):
    energy = np.sqrt((pt * np.cosh(eta)) ** 2 + mass**2)
    return np.array([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), energy])


def mass_of(vectors):
    total = np.sum(vectors, axis=0)
    return np.sqrt(total[3] ** 2 - total[0] ** 2 - total[1] ** 2 - total[2] ** 2)


def test_four_lepton_mass_flavour_charge_and_z_candidate(four_lepton_file):
    path, electrons, muons = four_lepton_file
    features = compute_features(open_events(path), "leptons")
    assert features.n_leptons.tolist() == [4, 4, 4, 3]
    assert features.flavour_4l.tolist() == [0, 2, 4, None]
    assert features.charge_4l.tolist() == [0, 0, 2, None]
    leptons = [
        [four_vector(*o[:3], 0.000511) for o in e] + [four_vector(*o[:3], 0.10566) for o in m if o[0] > 10]
        for e, m in zip(electrons, muons)
    ]
    expected_m4l = [mass_of(event) for event in leptons[:3]]
    assert features.m4l.tolist()[:3] == pytest.approx(expected_m4l, rel=1e-6)
    assert features.m4l[3] is None
    # Z candidates: same flavour, opposite charge, closest to 91.19 GeV.
    def closest_sfos(objects, mass):
        pairs = [mass_of([four_vector(*a[:3], mass), four_vector(*b[:3], mass)])
                 for i, a in enumerate(objects) for b in objects[i + 1:] if a[3] != b[3] and a[0] > 10 and b[0] > 10]
        return pairs

    for index in range(4):
        candidates = closest_sfos(electrons[index], 0.000511) + closest_sfos(muons[index], 0.10566)
        best = min(candidates, key=lambda m: abs(m - 91.1876))
        assert features.mll_z[index] == pytest.approx(best, rel=1e-6)
    assert features.lep1_pt.tolist() == pytest.approx([50, 70, 80, 45])
    # the leptons merged across flavours and ordered by pT; the 5 GeV muon fails the selection
    assert features.lep2_pt.tolist() == pytest.approx([40, 60, 45, 25])
    assert features.lep3_pt.tolist() == pytest.approx([30, 35, 33, 15])
    assert features.lep4_pt.tolist()[:3] == pytest.approx([20, 25, 12])
    assert features.lep4_pt[3] is None


def test_open_data_2015_file_names_the_absent_soft_drop_branch_unless_optional(shared_nanoaod):
    events = open_events(shared_nanoaod / "nanoAOD_2015_CMS_Open_Data_ttbar.root")
    with pytest.raises(MissingBranchError, match="FatJet_msoftdrop") as raised:
        compute_features(events, "lhco")
    assert isinstance(raised.value, CoffeaADError)
    with pytest.warns(FeatureSkippedWarning, match="FatJet_msoftdrop"):
        features = compute_features(events, "lhco", optional="lhco")
    assert features.fields == ["mjj"]
    with pytest.raises(MissingBranchError, match="FatJet_msoftdrop"):
        compute_features(events, ["mjj", "tau21_j1"], optional=["mjj"])


def test_nanoaod_v15_reads_pfmet_unless_told_puppimet(shared_nanoaod):
    path = shared_nanoaod / "nano_tt_v15.root"
    events = open_events(path)
    raw = raw_branches(path, ["PFMET_pt", "PuppiMET_pt"])
    assert not np.allclose(ak.to_numpy(raw.PFMET_pt), ak.to_numpy(raw.PuppiMET_pt))  # the choice is visible
    features = compute_features(events, "context")
    np.testing.assert_allclose(ak.to_numpy(features.met), ak.to_numpy(raw.PFMET_pt), rtol=1e-7)
    features = compute_features(events, "context", config=FeatureConfig(met_collection="PuppiMET"))
    np.testing.assert_allclose(ak.to_numpy(features.met), ak.to_numpy(raw.PuppiMET_pt), rtol=1e-7)
    with pytest.raises(ConfigurationError, match="no MET collection 'MET'.*MET_pt.*PFMET, PuppiMET"):
        compute_features(events, "context", config=FeatureConfig(met_collection="MET"), optional=True)


def test_collision_data_without_genpart_and_the_dimuon_mass(shared_nanoaod):
    path = shared_nanoaod / "nano_dimuon.root"
    events = open_events(path)
    assert "GenPart" not in events.fields
    features = compute_features(events, "all")
    raw = raw_branches(path, ["Muon_pt", "Muon_eta", "Muon_phi", "Muon_mass", "Muon_charge", "Muon_tightId",
                              "Muon_pfRelIso03_all"])
    tight = (raw.Muon_pt > 10) & (abs(raw.Muon_eta) < 2.4) & raw.Muon_tightId & (raw.Muon_pfRelIso03_all < 0.15)
    muons = raw[tight]
    pairs = ak.to_numpy((ak.num(muons.Muon_pt) == 2) & (features.n_electrons == 0))
    pairs &= ak.to_numpy(ak.fill_none(ak.sum(muons.Muon_charge, axis=1) == 0, False))
    assert pairs.sum() >= 3
    selected = muons[pairs]
    vectors = four_vector(*(ak.to_numpy(selected[f"Muon_{name}"]).astype(np.float64).T
                            for name in ("pt", "eta", "phi", "mass")))
    np.testing.assert_allclose(ak.to_numpy(features.mll_z[pairs]), mass_of(np.moveaxis(vectors, 1, 0)), rtol=1e-9)


def test_computed_types_match_the_registry(ttbar_features):
    for name in ttbar_features.fields:
        feature = FEATURES[name]
        column_type = ttbar_features[name].type.content
        assert isinstance(column_type, ak.types.OptionType) == feature.nullable, name
        content = column_type.content if feature.nullable else column_type
        assert str(content) == feature.dtype, name


def test_eager_virtual_and_dask_give_the_same_features(ttbar_v12, ttbar_features):
    virtual = compute_features(open_events(ttbar_v12, "virtual"), "all")
    lazy = compute_features(open_events(ttbar_v12, "dask"), "all")
    (computed,) = dask.compute(lazy)
    assert ak.array_equal(ak.materialize(virtual), ttbar_features, equal_nan=True)
    assert ak.array_equal(computed, ttbar_features, equal_nan=True)


def test_feature_names_and_sets():
    assert resolve_feature_names("lhco") == ["mjj", "mj_min", "delta_mj", "tau21_j1", "tau21_j2"]
    assert resolve_feature_names(["context", "ht", "mjj"]) == ["ht", "met", "mjj"]
    assert resolve_feature_names("all") == list(FEATURES)
    with pytest.raises(ConfigurationError, match="lhco"):
        resolve_feature_names("mjjj")
    with pytest.raises(ConfigurationError, match="met_collection"):
        FeatureConfig(met_collection="Puppi MET")
    with pytest.raises(ConfigurationError, match="jet_pt_min"):
        FeatureConfig(jet_pt_min=-1)


@pytest.mark.parametrize("names", ["lhco", "context", "leptons", "all"])
def test_dask_reads_exactly_the_branches_the_features_declare(ttbar_v12, names):
    """The numpy feature code runs on a chunk of no events while dask-awkward projects the columns: what it reads
    is what the features declare (and the values are those of the eager computation)."""
    import dask_awkward as dak

    events = open_events(ttbar_v12, "dask")
    features = compute_features(events, names)
    (read,) = dak.report_necessary_columns(features).values()
    declared = {branch for name in resolve_feature_names(names)
                for branch in FEATURES[name].required_branches(FeatureConfig(met_collection="MET"))}
    counters = {f"n{branch.split('_')[0]}" for branch in declared if "_" in branch and branch.split("_")[0] != "MET"}
    assert set(read) - counters == declared
    (computed,) = dask.compute(features)
    eager = compute_features(open_events(ttbar_v12), names)
    assert ak.array_equal(computed, eager, equal_nan=True)


@pytest.mark.parametrize("stored_order", ["pt-ordered", "shuffled"])
def test_leading_objects_are_those_of_a_stable_sort_by_decreasing_pt(stored_order):
    """NanoAOD stores pT-ordered collections (no sort needed); any other order, ties included, gives what a
    stable sort by decreasing pT within each event gives."""
    from coffea_ad.features.dijet import leading_objects

    rng = np.random.default_rng(2)
    counts = rng.integers(0, 5, 2000)
    event = np.repeat(np.arange(len(counts)), counts)
    pt = np.round(rng.exponential(200.0, len(event)), -1)  # rounded: ties within events
    if stored_order == "pt-ordered":
        pt = pt[np.lexsort((-pt, event))]
    order = np.lexsort((-pt, event))  # the definition: stable, by event then decreasing pT
    starts = np.cumsum(counts) - counts
    leading, subleading = leading_objects(pt, event, len(counts), 2)
    for rank, positions in enumerate((leading, subleading)):
        expected = np.where(counts > rank, order[np.minimum(starts + rank, len(order) - 1)], -1)
        np.testing.assert_array_equal(positions, expected)
    assert np.all(pt[leading[counts > 1]] >= pt[subleading[counts > 1]])
