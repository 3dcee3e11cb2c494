"""``coffea-ad fit`` end to end on a small ROOT file of histograms made in tmp_path."""

from __future__ import annotations

import json

import numpy as np
import pytest
import uproot

from coffea_ad import stats
from coffea_ad.cli import main
from coffea_ad.stats.workspace import weighted_histogram
from coffea_ad.workflow.fit import run_fit

MJJ_EDGES = np.linspace(1500.0, 6000.0, 46)
SCORE_EDGES = np.array([0.0, 0.5, 0.8, 1.0])


@pytest.fixture(scope="module")
def histograms(tmp_path_factory):
    """``{dataset}/{region}/{variable}`` histograms as ``coffea-ad score`` writes them, for one model ``ae``."""
    rng = np.random.default_rng(9)
    theta = np.array([0.0, 10.0, 5.0, 0.1])
    theta[0] = np.log(3.0e4 / stats.dijet_yields(MJJ_EDGES, theta).sum())
    mjj = stats.dijet_yields(MJJ_EDGES, theta)
    centres = 0.5 * (MJJ_EDGES[1:] + MJJ_EDGES[:-1])
    resonance = np.exp(-0.5 * ((centres - 3500.0) / 150.0) ** 2)
    resonance *= 120.0 / resonance.sum()
    path = tmp_path_factory.mktemp("fit") / "histograms.root"
    with uproot.recreate(path) as f:
        f["data/deta_sr/mjj_ae_pass"] = weighted_histogram(rng.poisson(mjj + resonance).astype(float), MJJ_EDGES)
        f["wprime/deta_sr/mjj_ae_pass"] = weighted_histogram(resonance, MJJ_EDGES)
        f["qcd/deta_sr/ae"] = weighted_histogram(
            np.array([900.0, 90.0, 9.0]), SCORE_EDGES, np.array([900.0, 90.0, 9.0]) / 4
        )
        f["ttbar/deta_sr/ae"] = weighted_histogram(np.array([50.0, 20.0, 5.0]), SCORE_EDGES)
        f["wprime/deta_sr/ae"] = weighted_histogram(np.array([1.0, 4.0, 15.0]), SCORE_EDGES, np.full(3, 0.01))
        f["data/deta_sr/ae"] = weighted_histogram(np.array([960.0, 105.0, 16.0]), SCORE_EDGES)
        for region, count in zip("ABCD", (130.0, 1000.0, 1200.0, 10000.0), strict=True):
            f[f"data/{region}/mjj_ae_pass"] = weighted_histogram(np.full(3, count / 3), SCORE_EDGES)
            f[f"qcd/{region}/mjj_ae_pass"] = weighted_histogram(
                np.full(3, count / 3 * (1.0 if region != "A" else 120.0 / 130.0)), SCORE_EDGES
            )
        f["empty/deta_sr/mjj_ae_pass"] = weighted_histogram(np.zeros(45), MJJ_EDGES)
        f["qcd/deta_cr/ae"] = weighted_histogram(np.array([10.0, 0.0, 1.0]), SCORE_EDGES)
        f["data/deta_cr/ae"] = weighted_histogram(np.array([10.0, 1.0, 1.0]), SCORE_EDGES)
        f["wprime/deta_cr/ae"] = weighted_histogram(np.array([0.1, 0.1, 0.1]), SCORE_EDGES)
    return path


def test_bumphunt_writes_workspace_results_and_plots(histograms, tmp_path, capsys):
    out = tmp_path / "bumphunt"
    assert main(["fit", "bumphunt", str(histograms), "-o", str(out), "--signal", "wprime"]) == 0
    printed = capsys.readouterr().out
    assert "local Z" in printed and "global Z" in printed
    assert "score: ae, the one model of the file" in printed and "region: deta_sr, the default" in printed
    results = json.loads((out / "fit_results.json").read_text())
    assert results["inputs"]["variable"] == "mjj_ae_pass" and results["inputs"]["data"] == ["data"]
    best = results["most_significant_window"]
    assert best["window_GeV"][0] <= 3500.0 <= best["window_GeV"][1]
    assert results["local_Z"] > 3.0
    assert results["upper_limit_most_significant_window"]["observed"] > 0
    workspace = stats.read_workspace(out / "workspace.json")
    assert workspace.model().config.poi_name == "mu"
    for name in ("fit.png", "local_significance.png", "cls_scan.png"):
        assert (out / name).stat().st_size > 1000
    card = (out / "datacard.txt").read_text()
    assert "dijet_fit_eigen0" in card and "shape" in card
    with uproot.open(out / "shapes.root") as f:
        data = f["mjj_window/data_obs"]
        assert data.values().sum() == pytest.approx(best["observed"])
        assert data.axis().edges()[0] == pytest.approx(best["window_GeV"][0])
        assert f["mjj_window/dijet_fit"].values().sum() == pytest.approx(best["background"], rel=1e-6)
        assert "mjj_window/dijet_fit_dijet_fit_eigen0Up" in [k.rsplit(";", 1)[0] for k in f.keys()]
    assert not list(out.glob(".*.tmp"))


def test_score_fit_writes_a_workspace_a_datacard_and_limits(histograms, tmp_path):
    out = tmp_path / "score"
    argv = ["fit", "score", str(histograms), "-o", str(out), "--background", "qcd,ttbar", "--signal", "wprime"]
    assert main(argv) == 0
    results = json.loads((out / "fit_results.json").read_text())
    limit = results["upper_limit"]
    assert limit["expected"]["-2sigma"] < limit["expected"]["median"] < limit["expected"]["+2sigma"]
    assert results["discovery"]["Z"] >= 0
    model = stats.read_workspace(out / "workspace.json").model()
    assert model.config.samples == ["qcd", "ttbar", "wprime"]
    with uproot.open(out / "shapes.root") as f:
        assert np.allclose(f["deta_sr/qcd"].values(), [900.0, 90.0, 9.0])
    assert "deta_sr autoMCStats 0" in (out / "datacard.txt").read_text()
    assert (out / "fit_deta_sr.png").is_file() and (out / "cls_scan.png").is_file()


def test_abcd_predicts_region_a_and_checks_closure(histograms, tmp_path):
    out = tmp_path / "abcd"
    assert main(["fit", "abcd", str(histograms), "-o", str(out), "--region", "A,B,C,D", "--background", "qcd"]) == 0
    results = json.loads((out / "fit_results.json").read_text())
    assert results["prediction"]["predicted_A"] == pytest.approx(120.0)
    assert results["observed_A"] == pytest.approx(130.0)
    assert results["closure_on_background"]["pull"] == pytest.approx(0.0, abs=1e-9)
    assert 0 < results["discovery"]["Z"] < 2


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--data", "nope"], "dataset 'nope' .* is not in .*histograms.root; its datasets: data, empty, qcd, ttbar"),
        (["--data", "empty"], "histogram empty/deta_sr/mjj_ae_pass in .* is empty"),
        (["--region", "deta_cr"], "histogram 'data/deta_cr/mjj_ae_pass' not found in .*e.g.: .*data/deta_sr/ae"),
        (["--region", "mjj3500_sr"], "region 'mjj3500_sr' .* is not in .*; its regions: A, B, C, D, deta_cr, det"),
        (["--mass", "mj_min"], "variable 'mj_min' .* its variables: ae, mjj_ae_pass"),
        (
            ["score", "--region", "deta_cr", "--signal", "wprime", "--background", "qcd"],
            r"background in region 'deta_cr' .* bins \[1\]",
        ),
        (["score"], "method score needs --signal DATASET; datasets: data, empty, qcd, ttbar, wprime"),
        (["abcd"], "method abcd needs four --region flags A,B,C,D .*; regions: A, B, C, D, deta_cr, deta_sr"),
        (["--region", "deta_sr,deta_cr"], "bumphunt fits one region, got 2"),
    ],
)
def test_bad_input_gives_one_error_line(histograms, tmp_path, capsys, arguments, message):
    method = [arguments.pop(0)] if arguments[0] in ("score", "abcd") else []
    assert main(["fit", *method, str(histograms), "-o", str(tmp_path / "out"), *arguments]) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert error.startswith("coffea-ad fit: error:")
    assert __import__("re").search(message, error), error
    assert not (tmp_path / "out" / "fit_results.json").exists()


def test_without_data_the_data_are_the_sum_of_every_dataset_and_the_region_is_the_recorded_one(tmp_path):
    path = tmp_path / "histograms.root"
    qcd, wprime = np.full(3, 100.0), np.array([1.0, 5.0, 20.0])
    with uproot.recreate(path) as f:
        for region, scale in (("deta_sr", 1.0), ("deta_cr", 2.0)):
            f[f"qcd/{region}/ae"] = weighted_histogram(scale * qcd, SCORE_EDGES)
            f[f"wprime/{region}/ae"] = weighted_histogram(wprime, SCORE_EDGES)
            f[f"qcd/{region}/mjj_ae_pass"] = weighted_histogram(scale * qcd, SCORE_EDGES)
    (tmp_path / "scores.json").write_text(json.dumps({"ae": {"signal_region": "deta_cr"}}))
    summary = run_fit(path, tmp_path / "out", method="score", signal="wprime")
    inputs = summary["inputs"]
    assert inputs["data"] == ["qcd", "wprime"] and inputs["backgrounds"] == ["qcd"]
    assert inputs["regions"] == ["deta_cr"] and inputs["variable"] == "ae"
    assert any("the sum of every dataset" in note for note in inputs["notes"])
    model = stats.read_workspace(tmp_path / "out" / "workspace.json").model()
    assert model.config.channels == ["deta_cr"]
    assert summary["best_fit_mu"] == pytest.approx(1.0, abs=1e-3)  # data = background + signal exactly


def test_missing_file_is_an_error(tmp_path, capsys):
    assert main(["fit", str(tmp_path / "missing.root"), "-o", str(tmp_path / "out")]) == 1
    assert "does not exist" in capsys.readouterr().err
