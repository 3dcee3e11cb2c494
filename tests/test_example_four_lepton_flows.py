"""The four-lepton flow search example at tiny scale: flows separate H++ from ZZ, limits behave as CLs limits, and
a lighter H++ is harder to tell from ZZ by m4l."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pyhf
import pytest

from coffea_ad import stats

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "four_lepton_flows.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("four_lepton_flows", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run(example, tmp_path_factory):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("four_lepton_flows")
    try:
        summary, text = example.run_four_lepton_search(
            folder, masses_hpp=(200.0, 500.0), zz_events=1200, hpp_events=150, epochs=5, min_entries=5, workers=2,
            progress=False,
        )
    finally:
        torch.set_num_threads(threads)
    return folder, summary, text


def test_zz_cross_section_and_luminosity_scaling(run):
    _, summary, _ = run
    zz = summary["samples"]["zz"]
    assert 50.0 < zz["cross_section_fb"] < 75.0  # Pythia qq -> ZZ/Z gamma* -> 4l (e, mu), m_ll > 12 GeV: ~62 fb
    for region, numbers in summary["regions"].items():
        # the fitted half carries sigma * L over the whole sample: twice the weight of an event of the full sample
        per_event = zz["cross_section_fb"] * summary["luminosity_fb"] / zz["events"]
        expected = numbers["zz_expected"] / numbers["zz_background_events"]
        assert expected == pytest.approx(per_event * (numbers["zz_training_events"] + numbers["zz_background_events"])
                                         / numbers["zz_background_events"], rel=1e-9), region


def test_flows_trained_on_zz_separate_the_doubly_charged_higgs(run):
    _, summary, _ = run
    heavy, light = summary["masses"]["500"]["regions"], summary["masses"]["200"]["regions"]
    for region in heavy:
        assert heavy[region]["auc_flow"] > 0.95, region  # H++ (500 GeV) pairs: m4l above 1 TeV, ZZ mostly below 300
        assert heavy[region]["auc_m4l"] > 0.99, region
        # a 200 GeV pair starts at m4l = 400 GeV, where ZZ still has a tail: m4l separates it less well
        assert light[region]["auc_m4l"] < heavy[region]["auc_m4l"], region
    cross_sections = {mass: numbers["cross_section_fb"] for mass, numbers in summary["samples"]["hpp"].items()}
    assert cross_sections["m200"] > 10 * cross_sections["m500"]  # Drell-Yan pair production falls steeply


def test_cls_limits_on_background_only_asimov_data(run):
    folder, summary, text = run
    for mass, per_mass in summary["masses"].items():
        for name, numbers in per_mass["limits"].items():
            band = [numbers["expected"][key] for key in ("-2sigma", "-1sigma", "median", "+1sigma", "+2sigma")]
            assert np.all(np.diff(band) > 0), (mass, name)
            # on the background-only Asimov data the observed limit is the median expected one
            assert numbers["observed"] == pytest.approx(numbers["expected"]["median"], rel=0.02), (mass, name)
            assert numbers["expected_z_at_mu_1"] > 0
        assert per_mass["flow_over_m4l_expected_limit"] == pytest.approx(
            per_mass["limits"]["flow"]["expected"]["median"] / per_mass["limits"]["m4l"]["expected"]["median"]
        )
    written = json.loads((folder / "summary.json").read_text())["masses"]
    for mass, per_mass in summary["masses"].items():  # (an infinite Z, a signal far above the limit, is null in JSON)
        for name, numbers in per_mass["limits"].items():
            assert written[mass]["limits"][name]["expected"] == numbers["expected"], (mass, name)
        assert written[mass]["regions"] == per_mass["regions"]
    for plot in ("cls_flow_m200.png", "cls_m4l_m500.png", "limits.png", "scores_2e2mu_m200.png", "roc_4mu_m500.png"):
        assert (folder / plot).stat().st_size > 0
    assert "95% CLs limit on mu, flow" in text


def test_high_score_bins_are_signal_enriched_and_more_signal_gives_a_lower_limit(run):
    folder, summary, _ = run
    workspace = stats.read_workspace(folder / "workspace_flow_m500.json")
    for channel in workspace["channels"]:
        yields = {sample["name"]: np.asarray(sample["data"]) for sample in channel["samples"]}
        signal_fraction = yields["hpp"][-1] / yields["hpp"].sum()
        enrichment = signal_fraction / (yields["zz"][-1] / yields["zz"].sum())  # S/B of the bin over the inclusive S/B
        assert signal_fraction > 0.9, channel["name"]  # the H++ events have the highest scores
        # the last bin keeps at most half of the ZZ events (a few ZZ entries per bin at this size: 2-4 bins)
        assert enrichment > (5.0 if len(yields["zz"]) >= 4 else 1.5), channel["name"]
    # without template statistics the limit is on mu * signal yield: twice the signal, half the limit
    without_stat = {scale: _expected_limit(workspace, scale) for scale in (1.0, 2.0)}
    assert without_stat[2.0] / without_stat[1.0] == pytest.approx(0.5, rel=0.02)
    # with them (staterror: one gamma per bin scales signal and ZZ together) it drops faster, never slower
    with_stat = _expected_limit(workspace, 2.0, keep_staterror=True)
    assert 0.3 < with_stat / summary["masses"]["500"]["limits"]["flow"]["expected"]["median"] < 0.5 + 0.02


def _expected_limit(workspace: pyhf.Workspace, signal_scale: float, keep_staterror: bool = False) -> float:
    """Median expected limit of the workspace with the H++ yields (and their MC uncertainties) scaled."""
    spec = json.loads(json.dumps(dict(workspace)))
    for channel in spec["channels"]:
        for sample in channel["samples"]:
            sample["modifiers"] = [m for m in sample["modifiers"] if keep_staterror or m["type"] != "staterror"]
            if sample["name"] == "hpp":
                sample["data"] = [signal_scale * value for value in sample["data"]]
                for modifier in sample["modifiers"]:
                    if modifier["type"] == "staterror":
                        modifier["data"] = [signal_scale * value for value in modifier["data"]]
    scaled = pyhf.Workspace(spec)
    model = scaled.model()
    return stats.upper_limit(model, scaled.data(model)).expected[2]
