"""Example 3 (non-resonant search with context HT and MET) at tiny scale: the signal region enriches the
semi-visible signal, and the whole example runs with templates that describe the control-region background
(the closure classifier itself is tested in test_models_closure.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "nonresonant_reweight_generate_morph.py"
spec = importlib.util.spec_from_file_location("nonresonant_example", SCRIPT)
example = importlib.util.module_from_spec(spec)
spec.loader.exec_module(example)

CUTS = {"ht_preselection": 2500.0, "ht_min": 2800.0, "met_min": 150.0}


@pytest.fixture(scope="module")
def samples(generated_sample):
    return {
        "simulation": generated_sample("qcd_dijet", 1000, seed=21),
        "data_background": generated_sample("qcd_dijet_alt", 1000, seed=22),
        "signal": generated_sample("semivisible", 150, seed=23, mass_zprime=5000.0),
    }


def test_the_ht_met_signal_region_enriches_the_semivisible_signal(samples):
    background = example.read_events(samples["data_background"], **CUTS)
    signal = example.read_events(samples["signal"], **CUTS)
    for table in (background, signal):
        assert np.all(table["ht"] >= CUTS["ht_preselection"])
        expected = (table["ht"] >= CUTS["ht_min"]) & (table["met"] >= CUTS["met_min"])
        np.testing.assert_array_equal(table["signal_region"], expected)
    signal_fraction, background_fraction = signal["signal_region"].mean(), background["signal_region"].mean()
    print(f"SR fraction: signal {signal_fraction:.2f}, background {background_fraction:.2f}")
    assert signal_fraction > 0.5 and background_fraction < 0.2
    assert signal_fraction / background_fraction > 4  # S/B in the SR at least four times the preselected one


def test_the_example_runs_and_its_templates_describe_the_control_region(samples, tmp_path):
    summary = example.run(tmp_path, epochs=2, progress=False, sample_files=samples, **CUTS)
    print(example.describe(summary))
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert set(saved["methods"]) == set(example.METHODS)
    for method, result in saved["methods"].items():
        assert result["closure_auc_cr"] < 0.65, method  # a broken template (wrong columns, scale) gives ~1
        assert 0.0 <= result["auc_sr"] <= 1.0 and result["max_sic_sr"] > 0
        assert all(value < 5 for value in result["chi2_per_ndf_cr"].values()), method
    assert saved["events"]["data_signal"]["sr"] > saved["events"]["data_signal"]["cr"]
    for name in ("features_sim_vs_data_cr", "closure_cr", "closure_sr", "roc_sr", "sic_sr"):
        assert (tmp_path / f"{name}.png").stat().st_size > 0
