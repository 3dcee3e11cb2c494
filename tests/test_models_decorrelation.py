"""DisCo decorrelation and the mjj-dependent quantile threshold."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from synthetic_tables import FEATURES, dijet_table, single_thread  # noqa: F401  (autouse fixture)

from coffea_ad.errors import ConfigurationError
from coffea_ad.models import Supervised
from coffea_ad.models.decorrelation import distance_correlation
from coffea_ad.selection import MassDependentThreshold


def test_distance_correlation_limits():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1500, generator=generator)
    assert float(distance_correlation(x, torch.randn(1500, generator=generator))) < 0.01
    assert float(distance_correlation(x, 3.0 * x - 2.0)) == pytest.approx(1.0, abs=1e-5)
    assert float(distance_correlation(x, x**2)) > 0.1  # uncorrelated in Pearson's sense, yet dependent


def test_disco_term_decorrelates_the_classifier_from_mjj():
    table = dijet_table(6000, 1500, seed=1)
    table["pt_proxy"] = (table["mjj"] / 2000 + np.random.default_rng(0).normal(0, 0.2, len(table))).astype(np.float32)
    features = [*FEATURES, "pt_proxy"]
    background = ~table["is_signal"].to_numpy()
    mjj = torch.as_tensor(table["mjj"].to_numpy()[background][:3000])
    settings = {"hidden": (32, 32), "training": {"epochs": 10, "batch_size": 512, "progress": False}}
    correlation = {}
    for strength in (0.0, 10.0):
        scores = Supervised(disco=strength, **settings).fit(table, features, mass="mjj").score(table)
        correlation[strength] = float(distance_correlation(torch.as_tensor(scores[background][:3000]), mjj))
    assert correlation[10.0] < 0.5 * correlation[0.0]
    with pytest.raises(ConfigurationError, match=r"with disco > 0 needs mass \(--mass\)"):
        Supervised(disco=1.0, **settings).fit(table, features)
    with pytest.raises(ConfigurationError, match="classifier='mlp'"):
        Supervised(classifier="hgb", disco=1.0)


def test_mass_dependent_threshold_keeps_one_percent_in_every_bin(tmp_path):
    rng = np.random.default_rng(0)
    mjj = 2500.0 + rng.exponential(700.0, 200_000)
    score = rng.gamma(2.0 + (mjj - 2500.0) / 1000.0, 1.0)  # the score's distribution drifts with mjj
    cut = MassDependentThreshold(efficiency=0.01, degree=3).fit(score, mjj)
    edges = np.quantile(mjj, np.linspace(0.0, 1.0, 8))
    bins = np.digitize(mjj, edges[1:-1])
    passed = cut.passes(score, mjj)
    efficiencies = np.array([passed[bins == b].mean() for b in range(7)])
    assert np.abs(efficiencies - 0.01).max() < 0.002
    flat = score > np.quantile(score, 0.99)  # a fixed cut does not: it sculpts the spectrum
    assert np.ptp([flat[bins == b].mean() for b in range(7)]) > 0.01
    loaded = MassDependentThreshold.load(cut.save(tmp_path / "threshold.json"))
    np.testing.assert_array_equal(loaded.threshold(mjj[:100]), cut.threshold(mjj[:100]))
    with pytest.raises(ConfigurationError, match="too few"):
        MassDependentThreshold(efficiency=0.01).fit(score[:500], mjj[:500])


def test_efficiency_per_bin_gives_pulls_against_the_target():
    rng = np.random.default_rng(1)
    mjj = 2500.0 + rng.exponential(700.0, 100_000)
    score = rng.gamma(2.0 + (mjj - 2500.0) / 1000.0, 1.0)
    cut = MassDependentThreshold(efficiency=0.05, degree=3).fit(score, mjj)
    edges = np.array([2500.0, 3000.0, 3500.0, 4000.0, 5000.0, 20000.0, 30000.0])
    efficiency, uncertainty, events = cut.efficiency_per_bin(score, mjj, edges)
    assert events.sum() == 100_000 and events[-1] == 0
    np.testing.assert_allclose(uncertainty[:-1], np.sqrt(0.05 * 0.95 / events[:-1]))
    assert np.isnan(efficiency[-1]) and np.isnan(uncertainty[-1])
    assert np.all(np.abs(efficiency[:-2] - 0.05) < 4 * uncertainty[:-2])
    shifted, _, _ = cut.efficiency_per_bin(score + 1.0, mjj, edges)  # a harder spectrum fails the closure
    assert np.all(shifted[:-2] - 0.05 > 4 * uncertainty[:-2])
    with pytest.raises(ConfigurationError, match="equal shapes"):
        cut.efficiency_per_bin(score[:10], mjj, edges)
