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
    features = compute_features(qcd[:600], LHCO)
    table = {name: ak.to_numpy(ak.drop_none(features[name])) for name in LHCO}
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
