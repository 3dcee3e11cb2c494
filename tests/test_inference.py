"""OnnxScorer: a trained model's score as a column of NanoEvents, identical in eager, virtual and dask mode,
equal to the trained model, None where an input is missing, and torch-free."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest

from coffea_ad.errors import CoffeaADError, InputFileError
from coffea_ad.features import compute_features
from coffea_ad.onnx.scorer import OnnxScorer

LHCO = ["mj_min", "delta_mj", "tau21_j1", "tau21_j2"]


def nanoevents(path: Path, mode: str):
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    return NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=NanoAODSchema, mode=mode).events()


@pytest.fixture(scope="module")
def dijet_sample(generated_sample):
    return generated_sample("qcd_dijet", 400, seed=31)


@pytest.fixture(scope="module")
def trained(dijet_sample, tmp_path_factory):
    """An autoencoder trained on the LHCO features of a small QCD sample, and its ONNX export."""
    from coffea_ad.models import AutoEncoder

    features = compute_features(nanoevents(dijet_sample, "eager"), LHCO)
    table = {name: ak.to_numpy(ak.drop_none(features[name])) for name in LHCO}
    model = AutoEncoder(latent=2, hidden=(16,), training={"epochs": 3, "progress": False}, seed=1)
    model.fit(table, LHCO)
    path = tmp_path_factory.mktemp("model") / "autoencoder.onnx"
    model.export_onnx(path)
    return model, path


def test_scores_equal_the_trained_model_and_are_none_without_two_fat_jets(dijet_sample, trained):
    model, path = trained
    events = nanoevents(dijet_sample, "eager")
    scores = OnnxScorer(path)(events)
    assert len(scores) == len(events)
    two_fat_jets = ak.to_numpy(ak.num(events.FatJet) >= 2)
    assert np.array_equal(ak.to_numpy(ak.is_none(scores)), ~two_fat_jets)
    features = compute_features(events[two_fat_jets], LHCO)
    expected = model.score_array(np.stack([ak.to_numpy(features[name]) for name in LHCO], axis=1))
    np.testing.assert_allclose(ak.to_numpy(ak.drop_none(scores)), expected, rtol=1e-5)


@pytest.mark.parametrize("mode", ["virtual", "dask"])
def test_virtual_and_dask_give_the_eager_scores(dijet_sample, trained, mode):
    _, path = trained
    scorer = OnnxScorer(path)
    eager = scorer(nanoevents(dijet_sample, "eager"))
    other = scorer(nanoevents(dijet_sample, mode))
    other = other.compute() if mode == "dask" else ak.materialize(other)
    assert ak.to_list(ak.is_none(other)) == ak.to_list(ak.is_none(eager))
    np.testing.assert_allclose(ak.to_numpy(ak.drop_none(other)), ak.to_numpy(ak.drop_none(eager)), rtol=1e-6)


def test_dask_reads_only_the_branches_the_features_need(dijet_sample, trained):
    import dask_awkward as dak

    _, path = trained
    events = nanoevents(dijet_sample, "dask")
    columns = set(next(iter(dak.report_necessary_columns(OnnxScorer(path)(events)).values())))
    assert columns and all(column.startswith(("FatJet_", "nFatJet")) for column in columns), columns


def test_the_scorer_pickles_with_its_model_but_no_session_and_copies_share_one(dijet_sample, trained):
    _, path = trained
    scorer = OnnxScorer(path)
    events = nanoevents(dijet_sample, "eager")[:50]
    before = scorer(events)
    payload = pickle.dumps(scorer)
    model = Path(path).read_bytes()
    assert b"InferenceSession" not in payload and model in payload and len(payload) < len(model) + 5000
    clone = pickle.loads(payload)
    assert ak.to_list(clone(events)) == ak.to_list(before)
    # Every copy in this process shares one session.
    assert clone.session is scorer.session


def test_empty_events_give_an_empty_score_column(dijet_sample, trained):
    _, path = trained
    events = nanoevents(dijet_sample, "eager")
    assert len(OnnxScorer(path)(events[:0])) == 0


def test_scoring_imports_no_torch(dijet_sample, trained):
    _, path = trained
    code = (
        "import sys\n"
        "from coffea.nanoevents import NanoAODSchema, NanoEventsFactory\n"
        "from coffea_ad.onnx.scorer import OnnxScorer\n"
        f"events = NanoEventsFactory.from_root({{{str(dijet_sample)!r}: 'Events'}}, schemaclass=NanoAODSchema,"
        " mode='eager').events()\n"
        f"OnnxScorer({str(path)!r})(events)\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "False"


def onnx_model(path: Path, n_inputs: int, feature_names: list[str], input_type=None) -> Path:
    """A minimal ONNX graph (score = sum of the inputs) carrying coffea_ad metadata."""
    import json

    import onnx
    from onnx import TensorProto, helper

    features = helper.make_tensor_value_info("features", input_type or TensorProto.FLOAT, ["N", n_inputs])
    score = helper.make_tensor_value_info("score", input_type or TensorProto.FLOAT, ["N"])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["features", "axes"], ["score"], keepdims=0)], "sum", [features], [score], [axes]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    metadata = {
        "feature_names": json.dumps(feature_names),
        "method": "sum",
        "region": "",
        "coffea_ad_version": "test",
        "training_table_hash": "none",
        "params": "{}",
    }
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


def test_a_model_whose_inputs_do_not_match_its_features_is_refused_listing_both(tmp_path):
    path = onnx_model(tmp_path / "three.onnx", 3, LHCO)
    with pytest.raises(CoffeaADError) as error:
        OnnxScorer(path)
    message = str(error.value)
    assert "[N, 3]" in message and "[N, 4]" in message and "tau21_j2" in message


def test_a_double_precision_model_is_refused(tmp_path):
    from onnx import TensorProto

    with pytest.raises(CoffeaADError, match="tensor\\(double\\)"):
        OnnxScorer(onnx_model(tmp_path / "double.onnx", 4, LHCO, TensorProto.DOUBLE))


def test_unknown_features_and_a_different_expected_order_are_refused(tmp_path):
    with pytest.raises(CoffeaADError, match="cannot build \\['jet_charge'\\]"):
        OnnxScorer(onnx_model(tmp_path / "unknown.onnx", 2, ["mjj", "jet_charge"]))
    path = onnx_model(tmp_path / "sum.onnx", 4, LHCO)
    with pytest.raises(CoffeaADError, match="takes features"):
        OnnxScorer(path, feature_names=list(reversed(LHCO)))


def test_a_raw_graph_scores_exactly_the_sum_of_its_features(dijet_sample, tmp_path):
    events = nanoevents(dijet_sample, "eager")
    scores = OnnxScorer(onnx_model(tmp_path / "sum.onnx", 4, LHCO))(events)
    features = compute_features(events, LHCO)
    expected = sum(features[name] for name in LHCO)
    assert ak.to_list(ak.is_none(scores)) == ak.to_list(ak.is_none(expected))
    np.testing.assert_allclose(ak.to_numpy(ak.drop_none(scores)), ak.to_numpy(ak.drop_none(expected)), rtol=1e-5)


def test_truncated_and_non_onnx_files_are_clear_errors(trained, tmp_path):
    _, path = trained
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(InputFileError, match="truncated.onnx is not a readable ONNX model"):
        OnnxScorer(truncated)
    text = tmp_path / "notes.onnx"
    text.write_text("not a model")
    with pytest.raises(InputFileError, match="notes.onnx is not a readable ONNX model"):
        OnnxScorer(text)
    with pytest.raises(InputFileError, match="does not exist"):
        OnnxScorer(tmp_path / "absent.onnx")


@pytest.mark.filterwarnings("ignore:You have set steps_per_file:RuntimeWarning")
def test_dask_partitions_left_empty_by_a_selection_score_to_nothing(dijet_sample, trained):
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    _, path = trained
    files = {str(dijet_sample): "Events"}
    events = NanoEventsFactory.from_root(files, schemaclass=NanoAODSchema, mode="dask", steps_per_file=4).events()
    # Only the first partition keeps events: the other three are empty after the selection.
    first_partition_events = events[events.event <= 50]
    scores = OnnxScorer(path)(first_partition_events)
    partitions = [scores.partitions[i].compute() for i in range(scores.npartitions)]
    assert [len(partition) for partition in partitions] == [50, 0, 0, 0]
    eager = OnnxScorer(path)(nanoevents(dijet_sample, "eager")[:50])
    assert ak.to_list(ak.is_none(partitions[0])) == ak.to_list(ak.is_none(eager))
