"""The main job on a small version of the embedded default: features -> CATHODE and an autoencoder ->
ONNX -> inline scores on a LocalCluster -> bump hunt, with its report; samples generated once, then reused."""

from __future__ import annotations

import json

import numpy as np

from coffea_ad import demo


def test_text_histogram_stacks_counts_per_bin():
    text = demo.text_histogram({"QCD": np.array([1.0, 1.5, 2.5]), "signal": np.array([2.2])}, np.array([1.0, 2.0, 3.0]))
    lines = text.splitlines()
    assert lines[0].endswith("| 2 + 0") and lines[1].endswith("| 1 + 1")
    bars = [line.split("|")[1] for line in lines[:2]]
    assert bars[0] == "#" * 50 and bars[1] == "#" * 25 + "+" * 25


def test_demo_runs_a_short_search_and_reuses_its_samples_and_trained_windows(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "DEFAULT_SAMPLES", {"qcd_dijet": (1500, 1), "wprime_xy": (150, 2)})
    text = demo.run_demo(tmp_path, workers=2, epochs=2)
    assert "qcd_dijet    1500 events" in text and "coffea-ad search: cathode (5 folds x 1 member(s))" in text
    assert "truth (evaluation only)" in text and "index.html" in text
    result = json.loads((tmp_path / "search" / "search.json").read_text())
    trained = [window for window in result["windows"] if window["status"] == "done"]
    assert trained and all(window["training"]["status"] == "trained" for window in trained)
    # every W' event with two fat jets is injected; the W' peaks near its 3.5 TeV mass
    assert 100 <= result["events"]["injected"] <= 150
    assert 3000 < result["injection"]["mass_GeV"] < 3700
    assert result["fit_range_method"] == "turn-on" and result["global"]["n_tests"] >= 1
    for name in ("index.html", "summary.txt", "plots/local_p_scan.png"):
        assert (tmp_path / "search" / name).stat().st_size > 0
    samples = {path: path.stat().st_mtime_ns for path in tmp_path.glob("*.root")}
    assert len(samples) == 2
    again = demo.run_demo(tmp_path, workers=2, epochs=2)
    assert {path: path.stat().st_mtime_ns for path in tmp_path.glob("*.root")} == samples
    assert "trained before with the same data and settings: reused" in again
