"""Example 2, the VAE dijet search, at tiny scale: the per-jet VAE trained in |Δη| ≥ 1.3 selects the W' over
QCD in |Δη| < 1.3, and the mjj-dependent threshold fitted in |Δη| ≥ 1.3 keeps its target fraction of QCD."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "vae_dijet_search.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("vae_dijet_search", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def search(example, generated_sample, tmp_path_factory):
    """The search on 1000 QCD + 200 W' events with a 20 % cut (a 1 % quantile needs ~10^4 events)."""
    output = tmp_path_factory.mktemp("vae_search")
    summary = example.run_search(
        generated_sample("qcd_dijet", 1000, seed=12), generated_sample("wprime_xy", 200, seed=32), output,
        epochs=8, efficiency=0.2, degree=1, progress=False,
    )
    return summary, output


def test_the_threshold_fitted_in_the_control_region_keeps_its_target_in_the_signal_region(search):
    summary, _ = search
    n_qcd = summary["events"]["signal_region"]["qcd"]
    assert summary["events"]["control_region"]["qcd"] > 150 and n_qcd > 500
    for result in [*summary["combinations"].values(), summary["jet_mass_cut"]]:
        # closure where it was fitted (~200 events: 4 sigma of a binomial 20 %)
        assert abs(result["control_region_efficiency"] - 0.2) < 0.12
        # transfer to |deta| < 1.3 (about 400 QCD events above 2.8 TeV); jet masses without the pT scaling
        # give 0.3-0.4 here because the same mjj means harder jets at small |deta|
        assert abs(result["signal_region_qcd_efficiency"] - 0.2) < 0.08
        binned = result["qcd_efficiency_per_mjj_bin"]
        filled = np.array(binned["qcd_events"]) >= 40
        pulls = (np.array(binned["efficiency"])[filled] - 0.2) / np.array(binned["uncertainty"])[filled]
        assert np.all(np.abs(pulls) < 4)


def test_either_jet_and_sum_combinations_raise_the_signal_fraction(search):
    summary, _ = search
    assert [result["label"] for result in summary["combinations"].values()] == ["L1&L2", "L1|L2", "L1+L2"]
    before = summary["no_cut"]["signal_window"]
    for combine in ("max", "sum"):  # L1&L2 needs both jets anomalous: the W' Y jet (100 GeV) rarely is
        result = summary["combinations"][combine]
        assert result["auc_signal_window"] > 0.65
        assert result["signal_region_wprime_efficiency"] > 2 * result["signal_region_qcd_efficiency"]
        after = result["signal_window"]
        assert after["wprime"] / max(after["qcd"], 1) > 1.5 * before["wprime"] / before["qcd"]


def test_outputs_are_written(search):
    summary, output = search
    assert json.loads((output / "summary.json").read_text())["combinations"].keys() == summary["combinations"].keys()
    for name in ("jet_losses", "roc", "qcd_efficiency_vs_mjj", "threshold_min", "mjj_sum"):
        assert (output / f"{name}.png").stat().st_size > 0
    hunt = summary["no_cut"]["bump_hunt"]
    assert hunt.keys() >= {"local_Z", "global_Z", "centre_GeV"} or "error" in hunt


def test_main_refuses_a_non_positive_sample_size(example, capsys):
    with pytest.raises(SystemExit):
        example.main(["--qcd-events", "0"])
    assert "--qcd-events must be positive" in capsys.readouterr().err


def test_the_vae_is_compared_with_a_plain_jet_mass_cut_made_the_same_way(search):
    """The baseline: both jets heavy (the smaller m/pT), with the same mjj-dependent cut; the W' has a 500 GeV
    jet, so the jet mass alone separates it (AUC well above 0.5) and the ratios are what the VAE adds to it."""
    summary, output = search
    baseline = summary["jet_mass_cut"]
    assert baseline["label"] == "min m/pT" and baseline["auc_signal_window"] > 0.6
    for combine, ratios in summary["vae_over_jet_mass"].items():
        result = summary["combinations"][combine]
        assert ratios["max_sic"] == pytest.approx(result["max_sic_signal_window"] / baseline["max_sic_signal_window"])
        assert ratios["auc_difference"] == pytest.approx(result["auc_signal_window"] - baseline["auc_signal_window"])
    assert (output / "threshold_jet_mass.png").stat().st_size > 0
