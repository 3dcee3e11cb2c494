"""ONNX export: onnxruntime equals torch for every method, the contract of names/shapes/metadata, and the
inference side that never imports torch."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from synthetic_tables import FEATURES, dijet_table, single_thread  # noqa: F401  (autouse fixture)

from coffea_ad.errors import ConfigurationError, InputFileError
from coffea_ad.onnx.export import INPUT_NAME, METADATA_KEYS, OUTPUT_NAME, read_metadata, score_onnx

TRAIN = {"epochs": 2, "batch_size": 512, "progress": False}
JET_FEATURES = ["mj_min", "tau21_j1", "delta_mj", "tau21_j2"]

# method -> (constructor arguments, fit arguments); every weakly supervised method cross-trained in 2 or 3 folds
# (their default is 5), RealNVP too (folds are available for every method), the others single models
CASES = {
    "autoencoder": ({"feature_transforms": {"mj_min": "log"}}, {}),
    "vae": ({"jets": 2, "combine": "min"}, {}),
    "realnvp": ({"transforms": 2, "feature_transforms": {"tau21_j1": "logit"}, "folds": 2}, {}),
    "maf": ({"transforms": 2, "feature_transforms": {"mj_min": "log", "tau21_j1": "logit"}}, {}),
    "cwola": ({"folds": 3}, {"signal_region": "3300:3700"}),
    "bdt": ({"folds": 2, "ensemble": 2}, {"signal_region": "3300:3700"}),
    "cathode": (
        {"transforms": 2, "folds": 2, "training": {**TRAIN, "classifier": {"keep_best": 2}}},
        {"signal_region": "3300:3700"},
    ),
    "lacathode": ({"transforms": 2, "folds": 2, "training": TRAIN}, {"signal_region": "3300:3700"}),
    "curtains": ({"transforms": 2, "folds": 2, "training": TRAIN}, {"signal_region": "3300:3700"}),
    "anode": ({"transforms": 2, "folds": 2}, {"signal_region": "3300:3700"}),
    "ranode": ({"transforms": 2, "folds": 2}, {"signal_region": "3300:3700"}),
    "iad": ({"folds": 2}, {"signal_region": "3300:3700"}),
    "supervised": ({"classifier": "hgb", "ensemble": 2}, {"label": "is_signal"}),
    "salad": ({"folds": 2}, {"signal_region": "3300:3700"}),
    "reweight": ({"classifier": "hgb", "folds": 2}, {"signal_flag": "high_ht_met", "context": ["ht", "met"]}),
    "generate": (
        {"transforms": 2, "folds": 2, "training": TRAIN}, {"signal_flag": "high_ht_met", "context": ["ht", "met"]}
    ),
    "morph": (
        {"transforms": 2, "folds": 3, "training": TRAIN}, {"signal_flag": "high_ht_met", "context": ["ht", "met"]}
    ),
    "feta": ({"transforms": 2, "folds": 2, "training": TRAIN}, {"signal_region": "3300:3700"}),
}


@pytest.fixture(scope="module")
def tables():
    return (
        dijet_table(3000, 150, seed=11),
        dijet_table(3000, 0, seed=12, mismodelling=0.05),
        dijet_table(400, 40, seed=13),
    )


def _fit(method: str, tables):
    from coffea_ad.models import get_estimator

    data, background, _ = tables
    init, fit = CASES[method]
    estimator = get_estimator(method)(**{"training": TRAIN, **init}, seed=1, device="cpu")
    if method == "iad":
        fit = {**fit, "background": background}
    if method in ("salad", "reweight", "morph", "feta"):
        fit = {**fit, "simulation": background}
    features = JET_FEATURES if method == "vae" else FEATURES
    return estimator.fit(data, features, **fit)


def test_every_method_has_a_case():
    from coffea_ad.models import METHODS

    assert set(CASES) == set(METHODS)


@pytest.mark.parametrize("method", list(CASES))
def test_onnxruntime_equals_torch_and_save_load_round_trip(method, tables, tmp_path):
    from coffea_ad.features.folds import event_fold

    estimator = _fit(method, tables)
    n_folds = CASES[method][0].get("folds", 1)
    assert estimator.n_folds == n_folds and estimator.cross_trained == (n_folds > 1)
    path = estimator.export_onnx(tmp_path / "model.onnx")
    fresh_table = tables[2]
    fresh = fresh_table[estimator.input_columns].to_numpy(np.float32)
    fold = None
    if n_folds > 1:
        fold = event_fold(fresh_table.run, fresh_table.luminosityBlock, fresh_table.event, n_folds)
        assert set(np.unique(fold)) == set(range(n_folds))
    reference = estimator.score_array(fresh, fold)
    np.testing.assert_array_equal(estimator.score(fresh_table), reference)
    exported = score_onnx(path, fresh, fold)
    assert exported.dtype == np.float32 and exported.shape == (len(fresh),)
    if method in ("anode", "ranode"):
        # a difference of two log-densities crosses zero: compare on the scale of the score
        difference = np.abs(exported - reference).max() / np.abs(reference).max()
    else:
        difference = (np.abs(exported - reference) / np.abs(reference)).max()
    print(f"{method}: max relative difference onnxruntime vs torch = {difference:.2e}")
    assert difference < 1e-5
    assert score_onnx(path, fresh[:1], None if fold is None else fold[:1]).shape == (1,)
    assert score_onnx(path, fresh[:0], None if fold is None else fold[:0]).shape == (0,)
    metadata = read_metadata(path)
    assert metadata.feature_names == estimator.input_columns
    assert metadata.method == method
    assert metadata.training_table_hash == estimator.table_hash_
    assert metadata.params["seed"] == 1
    assert metadata.n_folds == (n_folds if n_folds > 1 else 0)
    # save/load rebuilds every module of every method from JSON + tensors
    from coffea_ad.models import Estimator

    loaded = Estimator.load(estimator.save(tmp_path / "saved"))
    assert loaded.n_folds == n_folds
    np.testing.assert_array_equal(loaded.score_array(fresh, fold), reference)


def test_onnx_contract_names_shapes_and_metadata(tables, tmp_path):
    import onnx

    estimator = _fit("maf", tables)
    path = estimator.export_onnx(tmp_path / "maf.onnx")
    model = onnx.load(str(path))
    (graph_input,) = model.graph.input
    (graph_output,) = model.graph.output
    assert graph_input.name == INPUT_NAME and graph_output.name == OUTPUT_NAME
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = graph_input.type.tensor_type.shape.dim
    assert dims[0].dim_param and dims[1].dim_value == len(FEATURES)
    assert [d.dim_param for d in graph_output.type.tensor_type.shape.dim] == [dims[0].dim_param]
    props = {entry.key: entry.value for entry in model.metadata_props}
    assert set(METADATA_KEYS) <= set(props)
    assert json.loads(props["feature_names"]) == FEATURES
    assert props["region"] == "" and props["coffea_ad_version"]


def test_reading_models_refuses_bad_files(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        read_metadata(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf at all")
    with pytest.raises(InputFileError, match="not a readable ONNX model"):
        read_metadata(junk)


def test_wrong_feature_count_is_refused(tables, tmp_path):
    path = _fit("autoencoder", tables).export_onnx(tmp_path / "ae.onnx")
    with pytest.raises(ConfigurationError, match=r"expects features of shape \[N, 4\], got \[5, 3\]"):
        score_onnx(path, np.zeros((5, 3), np.float32))


def test_inference_side_never_imports_torch(tables, tmp_path):
    path = _fit("autoencoder", tables).export_onnx(tmp_path / "ae.onnx")
    code = (
        "import sys, numpy as np\n"
        "import coffea_ad, coffea_ad.onnx.export, coffea_ad.models\n"
        "from coffea_ad.onnx.export import read_metadata, score_onnx\n"
        f"meta = read_metadata({str(path)!r})\n"
        f"score_onnx({str(path)!r}, np.ones((3, len(meta.feature_names)), np.float32))\n"
        "heavy = sorted(m for m in ('torch', 'zuko', 'sklearn', 'onnx') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
