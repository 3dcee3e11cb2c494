"""The closure of a resonant method in ``coffea-ad train``'s summary: the cut is flat across the sidebands,
and a sideband density's template is indistinguishable from the sideband data, or a warning says why not."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic_tables import FEATURES, dijet_table

from coffea_ad.workflow.train import describe_training, resonant_closure, train_to_folder

TRAINING = {"epochs": 3, "batch_size": 512, "progress": False}


@pytest.fixture(scope="module")
def background_table():
    # features independent of mjj: a method that does not sculpt passes the sideband flatness test
    return dijet_table(6000, 0, seed=11)


def _cathode(table, folder, flow_epochs):
    training = {"flow": {**TRAINING, "epochs": flow_epochs, "batch_size": 256}, "classifier": TRAINING}
    return train_to_folder(
        "cathode", table, folder, features=FEATURES, folds=2, seed=1, device="cpu", training=training, progress=False
    )


def test_cross_trained_cathode_reports_its_closure(background_table, tmp_path):
    summary = _cathode(background_table, tmp_path / "model", flow_epochs=2)
    closure = summary["closure"]
    assert closure["cross_trained"]
    flat = closure["sideband_flatness"]
    assert flat["efficiency"] == 0.05 and flat["sideband_sculpting"]["ndf"] == 7
    # background only: the cut at 5 % of the sidebands passes 5 % of the signal region within ~3 sigma
    assert abs(flat["signal_region_pass_fraction"] - 0.05) < 3 * flat["signal_region_pass_fraction_error"] + 0.01
    template = closure["sideband_template_auc"]
    assert template["events"] > 4000 and template["auc"] > 0.5 - 3 * template["statistical_spread"]
    mismodelled = template["auc"] > 0.5 + 3 * template["statistical_spread"]
    assert mismodelled == any("template is mismodelled" in warning for warning in closure["warnings"])
    text = describe_training(summary)
    assert "closure: the cut at 5% of the sidebands keeps" in text and "template AUC" in text
    # a flow trained longer describes the sidebands better: its template is harder to tell from the data
    # (measured on this table: AUC 0.80 after 2 epochs, 0.65 after 30)
    better = _cathode(background_table, tmp_path / "longer", flow_epochs=30)["closure"]["sideband_template_auc"]
    assert better["auc"] < template["auc"] - 0.05


def test_a_score_that_follows_mjj_fails_the_closure_with_a_warning(background_table, caplog):
    """A model whose score is mjj itself sculpts the spectrum: the sideband test must say so."""

    class MassScore:
        method = "mass-score"
        inputs_ = {"signal_region": (3300.0, 3700.0), "mass": "mjj"}
        input_columns = ["mjj"]
        features_ = ["mjj"]
        n_folds = 1
        seed = 0

        def score_array(self, x, fold=None):
            return x[:, 0]

    closure = resonant_closure(MassScore(), background_table)
    assert not closure["sideband_flatness"]["closed"]
    assert closure["warnings"] and "not flat in mjj" in closure["warnings"][0]
    assert "sculpts the background" in caplog.text


def test_methods_without_a_signal_region_have_no_resonant_closure(background_table, tmp_path):
    summary = train_to_folder(
        "autoencoder", background_table, tmp_path / "ae", features=FEATURES, seed=1, device="cpu",
        training=TRAINING, progress=False,
    )
    assert "closure" not in summary and np.isfinite(summary["training_seconds"])
