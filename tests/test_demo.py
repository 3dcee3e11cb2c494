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


def test_demo_runs_the_chain_and_reuses_its_samples(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "DEFAULT_SAMPLES", {"qcd_dijet": (700, 1), "wprime_xy": (150, 2)})
    monkeypatch.setattr(demo, "TARGET_EFFICIENCY", 0.2)
    text = demo.run_demo(tmp_path, workers=2, epochs=2)
    assert "qcd_dijet     700 events" in text and "cathode: AUC" in text and "autoencoder: AUC" in text
    report = tmp_path / "report"
    summary = json.loads((report / "summary.json").read_text())
    assert summary["events"]["generated_qcd_dijet"] == 700 and summary["events"]["generated_wprime_xy"] == 150
    for model in ("cathode", "autoencoder"):
        result = summary["models"][model]
        assert abs(result["control_region_efficiency"] - 0.2) < 0.05
        assert 0.0 <= result["auc_signal_region"] <= 1.0
        hunt = result["bump_hunt_after_cut"]
        assert "local_Z" in hunt or "dijet fit" in hunt["error"]
        assert (report / f"mjj_{model}.png").stat().st_size > 0
    assert (report / "roc.png").exists() and (report / "sic.png").exists()
    samples = {path: path.stat().st_mtime_ns for path in tmp_path.glob("*.root")}
    assert len(samples) == 2
    demo.run_demo(tmp_path, workers=2, epochs=1)
    assert {path: path.stat().st_mtime_ns for path in tmp_path.glob("*.root")} == samples
