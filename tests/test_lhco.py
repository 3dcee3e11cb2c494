"""The LHC Olympics protocol (coffea_ad.contrib.lhco) and its example, on small generated samples."""

from __future__ import annotations

import json

import numpy as np
import pytest

from coffea_ad.contrib import lhco
from coffea_ad.errors import ConfigurationError, InputFileError


@pytest.fixture(scope="module")
def protocol_files(generated_sample):
    return {
        "background": generated_sample("qcd_dijet", 1000, seed=12),
        "idealized_background": generated_sample("qcd_dijet", 400, seed=41),
        "test_background": generated_sample("qcd_dijet", 400, seed=42),
        "signal": generated_sample("wprime_xy", 1000, seed=11),
    }


@pytest.fixture(scope="module")
def samples(protocol_files, tmp_path_factory):
    return lhco.load_samples(protocol_files, tmp_path_factory.mktemp("lhco_features"), workers=1, progress=False)


def test_sample_roles_are_disjoint_fixed_splits(samples):
    counts = samples.describe()
    assert counts["idealized_background"]["events"] > 350 and counts["test_background"]["events"] > 350
    signal_parts = [counts[name]["events"] for name in ("test_signal", "supervised_signal", "injection_pool")]
    assert signal_parts[0] == pytest.approx(0.4 * sum(signal_parts), abs=1)
    # Each W' event is in exactly one role (its mjj and features are a fingerprint).
    rows = np.concatenate([
        np.column_stack([getattr(samples, name)[c] for c in ("mjj", *lhco.LHCO_FEATURES)])
        for name in ("test_signal", "supervised_signal", "injection_pool")
    ])
    assert len(np.unique(rows, axis=0)) == len(rows)
    # The 3.5 TeV W' fills the signal region; QCD (pTHat > 1.2 TeV) mostly sits below it.
    w_prime = counts["test_signal"]["signal_region"] / counts["test_signal"]["events"]
    qcd = counts["background"]["signal_region"] / counts["background"]["events"]
    assert w_prime > 0.45 and qcd < 0.3


def test_injection_reaches_the_requested_s_over_b_with_whole_events(samples):
    injection = lhco.inject_signal(samples, 0.2, seed=3)
    n_background = len(samples.background["mjj"])
    assert len(injection.data["mjj"]) == n_background + injection.n_signal
    in_sr = (injection.data["mjj"] >= 3300) & (injection.data["mjj"] < 3700)
    assert in_sr[n_background:].sum() == injection.n_signal_signal_region
    assert injection.is_signal.sum() == injection.n_signal and not injection.is_signal[:n_background].any()
    assert injection.n_signal > injection.n_signal_signal_region  # some W' events land in the sidebands
    assert injection.s_over_b == pytest.approx(0.2, abs=1 / injection.n_background_signal_region)
    other = lhco.inject_signal(samples, 0.2, seed=4)
    assert not np.array_equal(injection.data["mjj"], other.data["mjj"])
    assert lhco.inject_signal(samples, 0.0, seed=3).n_signal == 0
    with pytest.raises(ConfigurationError, match="injection pool holds"):
        lhco.inject_signal(samples, 50.0, seed=3)


def test_correlated_features_follow_mjj_and_the_originals_do_not_change(samples):
    shifted = lhco.correlate_with_mjj(samples, slope=0.1)
    assert shifted.features == ("mj_min_shifted", "delta_mj_shifted", "tau21_j1", "tau21_j2")
    table = shifted.background
    assert np.corrcoef(table["mj_min_shifted"], table["mjj"])[0, 1] > 0.5
    assert np.abs(np.corrcoef(table["mj_min"], table["mjj"])[0, 1]) < 0.3
    np.testing.assert_array_equal(table["mj_min"], samples.background["mj_min"])


def test_supervised_reference_separates_w_prime_from_qcd(samples):
    result = lhco.run_method("supervised", samples, 0.1, seed=1, classifier_epochs=15)
    # Two-pronged 500 and 100 GeV jets against one-pronged light QCD jets.
    assert result.auc > 0.85
    assert result.max_sic > 2.0
    assert len(result.sic_curve) == len(lhco.TPR_GRID)


def test_a_missing_sample_is_an_error_naming_the_file(protocol_files, tmp_path):
    files = {**protocol_files, "test_background": tmp_path / "absent.root"}
    with pytest.raises(InputFileError, match="absent.root"):
        lhco.load_samples(files, tmp_path / "features", workers=1, progress=False)
    with pytest.raises(ConfigurationError, match="signal"):
        lhco.load_samples({"background": protocol_files["background"]}, tmp_path, workers=1, progress=False)


def test_example_runs_the_scan_and_the_windows(samples, protocol_files, tmp_path, monkeypatch):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "lhco_method_comparison.py"
    spec = importlib.util.spec_from_file_location("lhco_method_comparison", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    # The protocol's files are the session's generated samples instead of the example's large defaults.
    monkeypatch.setattr(lhco, "generate_samples", lambda *args, **kwargs: protocol_files)
    summary = example.run(example.parse_arguments([
        "-o", str(tmp_path), "--s-over-b", "0.1", "0.3", "--methods", "supervised", "cathode",
        "--windows", "2900", "3500", "--epochs", "3", "--classifier-epochs", "3", "--no-progress", "-j", "1",
    ]))
    assert set(summary["injection_scan"]) == {"0.1", "0.3"}
    windows = {row["window"][0]: row for row in summary["sliding_windows"]}
    # The injected W' events sit in the window around their mass, not in the one below it.
    assert windows[3300.0]["signal"] > 2 * windows[2700.0]["signal"]
    for name in ("sic_curves.png", "max_sic_vs_s_over_b.png", "sliding_windows.png", "summary.json"):
        assert (tmp_path / name).stat().st_size > 0
    assert json.loads((tmp_path / "summary.json").read_text())["samples"] == samples.describe()
