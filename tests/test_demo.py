"""The main job: its report of the embedded default sample, generated once and then reused."""

from __future__ import annotations

import numpy as np

from coffea_ad import demo


def test_text_histogram_stacks_counts_per_bin():
    text = demo.text_histogram({"QCD": np.array([1.0, 1.5, 2.5]), "signal": np.array([2.2])}, np.array([1.0, 2.0, 3.0]))
    lines = text.splitlines()
    assert lines[0].endswith("| 2 + 0") and lines[1].endswith("| 1 + 1")
    bars = [line.split("|")[1] for line in lines[:2]]
    assert bars[0] == "#" * 50 and bars[1] == "#" * 25 + "+" * 25


def test_demo_generates_once_then_reuses_the_sample(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "DEFAULT_SAMPLES", {"qcd_dijet": (60, 1), "wprime_xy": (30, 2)})
    report = demo.run_demo(tmp_path, workers=1)
    assert "qcd_dijet      60 events" in report and "wprime_xy      30 events" in report
    assert "# QCD dijets   + W' -> XY" in report
    modified = {path: path.stat().st_mtime_ns for path in tmp_path.glob("*.root")}
    assert len(modified) == 2
    assert demo.run_demo(tmp_path, workers=1) == report
    assert {path: path.stat().st_mtime_ns for path in tmp_path.glob("*.root")} == modified
