"""The chain on Pythia8 events: generate -> features -> train on QCD -> ONNX -> inline score -> metrics.

An outlier detector trained on QCD dijets only must find W' -> X(qq) Y(qq) events anomalous: their jets
are heavy and two-pronged (large mj, low tau21), which QCD jets rarely are.
"""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from coffea_ad.selection import metrics
from coffea_ad.features import compute_features
from coffea_ad.onnx.scorer import OnnxScorer

LHCO = ["mj_min", "delta_mj", "tau21_j1", "tau21_j2"]


def eager(path):
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    return NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=NanoAODSchema, mode="eager").events()


@pytest.mark.parametrize("method", ["maf", "autoencoder"])
def test_a_model_trained_on_qcd_scores_wprime_events_as_anomalous(generated_sample, tmp_path, method):
    from coffea_ad.models import MAF, AutoEncoder

    qcd = eager(generated_sample("qcd_dijet", 1000, seed=12))
    wprime = eager(generated_sample("wprime_xy", 1000, seed=11))
    table = compute_features(qcd[:600], LHCO)  # events without two fat jets: dropped by fit, row by row
    training = {"epochs": 30, "batch_size": 64, "progress": False}
    if method == "maf":
        model = MAF(transforms=3, hidden=(32, 32), training=training, seed=2)
    else:
        model = AutoEncoder(latent=1, hidden=(16,), training=training, seed=2)
    path = model.fit(table, LHCO).export_onnx(tmp_path / f"{method}.onnx")

    scorer = OnnxScorer(path)
    background = ak.to_numpy(ak.drop_none(scorer(qcd[600:])))  # QCD events the model never saw
    signal = ak.to_numpy(ak.drop_none(scorer(wprime)))
    area = metrics.auc(metrics.roc_curve(signal, background))
    assert area > 0.7, f"{method}: AUC {area:.3f}"
    assert np.median(signal) > np.percentile(background, 75)


def test_default_features_of_a_coffea_ad_features_table_train(generated_sample, tmp_path):
    """``coffea-ad features`` then ``coffea-ad train METHOD table`` without --features: the table has
    genWeight, run numbers and (all but empty) lepton features; each method takes its own natural set, and
    the rows lacking one of its values are dropped and counted."""
    from coffea_ad.models.outlier import JET_SUBSTRUCTURE
    from coffea_ad.processing.tables import read_parquet
    from coffea_ad.workflow.features import run_features
    from coffea_ad.workflow.train import describe_training, train_to_folder

    sample = generated_sample("qcd_dijet", 1000, seed=12)
    run_features({"qcd": {"files": {str(sample): "Events"}}}, tmp_path / "feat", mode="virtual", workers=1)
    path = tmp_path / "feat" / "features" / "qcd.parquet"
    table = read_parquet(path)
    assert "genWeight" in table.fields
    assert ak.sum(ak.is_none(table.lep1_pt)) > 0.9 * len(table)  # a dijet sample: lepton features are missing
    for method, expected in (("autoencoder", JET_SUBSTRUCTURE), ("maf", tuple(LHCO))):
        summary = train_to_folder(
            method, path, tmp_path / method, training={"epochs": 2, "batch_size": 64}, device="cpu", progress=False
        )
        assert summary["features"] == list(expected)
        incomplete = np.zeros(len(table), bool)
        for name in expected:
            incomplete |= ak.to_numpy(ak.is_none(table[name]))
        counts = summary["rows"]["table"]
        assert counts["read"] == len(table) and counts["dropped_missing"] == int(incomplete.sum())
        assert counts["used"] == len(table) - int(incomplete.sum()) > 0
        assert f"{counts['used']} used" in describe_training(summary)
