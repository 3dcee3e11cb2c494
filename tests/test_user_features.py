"""A physicist's own analysis: user-defined features computed like built-in ones (eager, virtual, dask, on a
cluster whose workers cannot import the user's module), models that travel with their scorer (a worker that cannot
see the model's folder, a replaced file, a model on arbitrary inputs with a prepare function), and the example
analysis of the README run with processor.Runner and apply_to_fileset on the real CMS NanoAOD files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from coffea_ad.cli import main
from coffea_ad.errors import ConfigurationError, InputFileError
from coffea_ad.features import FEATURE_SETS, FEATURES, compute_features, define_feature, load_feature_module
from coffea_ad.onnx.scorer import OnnxScorer

REPOSITORY = Path(__file__).resolve().parents[1]
EXAMPLE = REPOSITORY / "examples" / "dimuon_user_feature.py"


@pytest.fixture(autouse=True)
def registry():
    """Every test starts and ends with the built-in features only."""
    before, user = dict(FEATURES), FEATURE_SETS["user"]
    yield
    FEATURES.clear()
    FEATURES.update(before)
    FEATURE_SETS["user"] = user


@pytest.fixture
def dimuon(shared_nanoaod):
    return shared_nanoaod / "nano_dimuon.root"


def events_of(path: Path, mode: str = "eager"):
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    return NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=NanoAODSchema, mode=mode).events()


def dimuon_mass_from_branches(path: Path) -> np.ndarray:
    """The opposite-charge mass of the two leading muons from the raw branches (NaN where undefined)."""
    arrays = uproot.open(path)["Events"].arrays(["Muon_pt", "Muon_eta", "Muon_phi", "Muon_mass", "Muon_charge"])
    masses = np.full(len(arrays), np.nan)
    for row, event in enumerate(arrays.tolist()):
        if len(event["Muon_pt"]) < 2 or event["Muon_charge"][0] == event["Muon_charge"][1]:
            continue
        pt, eta, phi, mass = (np.asarray(event[f"Muon_{name}"][:2], float) for name in ("pt", "eta", "phi", "mass"))
        energy = np.sqrt((pt * np.cosh(eta)) ** 2 + mass**2).sum()
        px, py, pz = (pt * np.cos(phi)).sum(), (pt * np.sin(phi)).sum(), (pt * np.sinh(eta)).sum()
        masses[row] = np.sqrt(max(energy**2 - px**2 - py**2 - pz**2, 0.0))
    return masses


def as_numpy(column) -> np.ndarray:
    return ak.to_numpy(ak.fill_none(column, np.nan)).astype(float)


def linear_model(path: Path, feature_names: list[str], weights: list[float]) -> Path:
    """An ONNX graph with coffea_ad metadata whose score is ``features @ weights`` (order matters)."""
    import onnx
    from onnx import TensorProto, helper

    inputs = helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", len(feature_names)])
    score = helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])
    weight = helper.make_tensor("weights", TensorProto.FLOAT, [len(weights)], weights)
    graph = helper.make_graph([helper.make_node("MatMul", ["features", "weights"], ["score"])], "linear", [inputs],
                              [score], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    metadata = {"feature_names": json.dumps(feature_names), "method": "linear", "region": "",
                "coffea_ad_version": "test", "training_table_hash": "none", "params": "{}"}
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


# --- user features ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["eager", "virtual", "dask"])
def test_a_user_feature_is_the_dimuon_mass_in_every_mode(dimuon, mode):
    assert load_feature_module(EXAMPLE) == ["mumu_mass"]
    features = compute_features(events_of(dimuon, mode), ["mumu_mass", "n_muons"])
    features = features.compute() if mode == "dask" else ak.materialize(features)
    expected = dimuon_mass_from_branches(dimuon)
    np.testing.assert_allclose(as_numpy(features.mumu_mass), expected, rtol=2e-5, equal_nan=True)
    # the Z peak of the collision data: 5 of its 22 opposite-charge pairs within 3 GeV of m_Z, none in the 6 GeV
    # on either side
    pairs = expected[np.isfinite(expected)]
    assert len(pairs) == 22 and np.sum(np.abs(pairs - 91.19) < 3) == 5
    assert np.sum((np.abs(pairs - 91.19) >= 3) & (np.abs(pairs - 91.19) < 9)) == 0
    assert FEATURES["mumu_mass"].unit == "GeV" and FEATURE_SETS["user"] == ("mumu_mass",)


def test_definitions_and_results_are_checked_naming_the_feature(dimuon):
    events = events_of(dimuon)
    axis = ("regular", 10, 0.0, 1.0)
    with pytest.raises(ConfigurationError, match="'mjj' is a built-in feature"):
        define_feature(lambda events: events.MET.pt, name="mjj", branches=["MET_pt"], axis=axis)
    with pytest.raises(ConfigurationError, match="axis must be"):
        define_feature(lambda events: events.MET.pt, name="met_copy", branches=["MET_pt"], axis=("regular", 0, 1, 0))
    with pytest.raises(ConfigurationError, match="'run' is a table column"):
        define_feature(lambda events: events.run, name="run", branches=["run"], axis=axis)

    @define_feature(branches=["Muon_pt"], axis=axis)
    def muon_pts(events):
        return events.Muon.pt

    with pytest.raises(ConfigurationError, match=r"user feature 'muon_pts' .* must be one number per event"):
        compute_features(events, "muon_pts")

    @define_feature(branches=["Muon_pt"], axis=axis, nullable=False)
    def leading_muon_pt(events):
        return ak.firsts(events.Muon.pt)

    with pytest.raises(ConfigurationError, match="'leading_muon_pt' .* declared not nullable"):
        compute_features(events, "leading_muon_pt")

    @define_feature(branches=["Muon_pt"], axis=axis)
    def too_short(events):
        return np.zeros(3)

    with pytest.raises(ConfigurationError, match="'too_short' .* has 3 values for 40 events"):
        compute_features(events, "too_short")


def test_a_feature_module_that_is_missing_or_defines_nothing_is_refused(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        load_feature_module(tmp_path / "missing.py")
    empty = tmp_path / "empty_features.py"
    empty.write_text("x = 1\n")
    with pytest.raises(ConfigurationError, match="defines no feature"):
        load_feature_module(empty)


@pytest.mark.parametrize("mode", ["dask", "virtual"])
def test_coffea_ad_features_tables_and_histograms_a_user_feature_on_a_cluster(dimuon, tmp_path, mode, capsys):
    """The workers of the LocalCluster are new processes that cannot import the example by its module name: the
    feature reaches them inside the processor."""
    fileset = tmp_path / "fileset.json"
    fileset.write_text(json.dumps({"data": {"files": {str(dimuon): "Events"}}}))
    out = tmp_path / "out"
    argv = ["features", str(fileset), "-o", str(out), "--feature-module", str(EXAMPLE), "--features",
            "mumu_mass,n_muons", "-j", "1", "--mode", mode, "--no-progress"]
    assert main(argv) == 0, capsys.readouterr().err
    from coffea_ad.processing.tables import column_array, open_table

    table = open_table(out / "features" / "data.parquet")
    expected = dict(zip(uproot.open(dimuon)["Events"]["event"].array(library="np"), dimuon_mass_from_branches(dimuon)))
    written = dict(zip(column_array(table, "event"), column_array(table, "mumu_mass", dtype=float)))
    assert written.keys() == expected.keys()
    np.testing.assert_allclose([written[event] for event in expected], list(expected.values()), rtol=2e-5,
                               equal_nan=True)
    assert column_array(table, "inclusive_all").all()
    histogram = uproot.open(out / "histograms.root")["data/inclusive_all/mumu_mass"]
    assert histogram.values(flow=True).sum() == np.isfinite(list(expected.values())).sum()
