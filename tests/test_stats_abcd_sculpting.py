"""ABCD closes on independent variables and fails on correlated ones; the sculpting test sees a sculpted mjj."""

from __future__ import annotations

import hist
import numpy as np
import pytest

from coffea_ad import stats
from coffea_ad.errors import ConfigurationError

N_EVENTS = 200_000


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(2024)


def test_abcd_prediction_and_its_uncertainty():
    prediction = stats.abcd_prediction(400.0, 300.0, 1200.0)
    assert prediction.value == pytest.approx(100.0)
    assert prediction.uncertainty == pytest.approx(100.0 * np.sqrt(1 / 400 + 1 / 300 + 1 / 1200))
    with pytest.raises(ConfigurationError, match="region D"):
        stats.abcd_prediction(1.0, 1.0, 0.0)


def test_abcd_closes_on_independent_variables(rng):
    x, y = rng.normal(size=N_EVENTS), rng.exponential(size=N_EVENTS)
    closure = stats.abcd_closure(x, y, 1.5, 2.0)
    assert closure.closes
    assert abs(closure.pull) < 3
    assert closure.ratio == pytest.approx(1.0, abs=0.1)


def test_abcd_closes_with_weights(rng):
    x, y = rng.normal(size=N_EVENTS), rng.normal(size=N_EVENTS)
    closure = stats.abcd_closure(x, y, 1.0, 1.0, weights=rng.uniform(0.5, 1.5, N_EVENTS))
    assert closure.closes


def test_abcd_fails_visibly_on_correlated_variables(rng):
    x = rng.normal(size=N_EVENTS)
    y = 0.5 * x + rng.normal(size=N_EVENTS)
    closure = stats.abcd_closure(x, y, 1.5, 1.5)
    assert not closure.closes
    assert closure.pull > 10
    assert closure.ratio > 1.5
    assert closure.to_dict()["closes"] is False


def _mjj_histograms(mjj, passed):
    axis = hist.axis.Regular(25, 1500, 4000, name="mjj")
    before = hist.Hist(axis).fill(mjj)
    after = hist.Hist(axis).fill(mjj[passed])
    return before, after


def test_sculpting_test_passes_an_unsculpted_cut(rng):
    mjj = 1500 + rng.exponential(500, N_EVENTS)
    score = rng.normal(size=N_EVENTS)
    result = stats.sculpting_test(*_mjj_histograms(mjj, score > 1.3))
    assert not result.sculpted
    assert result.p_value > 0.01
    assert result.ndf == 24
    assert result.efficiency == pytest.approx(0.097, abs=0.005)


def test_sculpting_test_flags_a_sculpted_cut(rng):
    mjj = 1500 + rng.exponential(500, N_EVENTS)
    score = rng.normal(size=N_EVENTS) + (mjj - 1500) / 1000
    result = stats.sculpting_test(*_mjj_histograms(mjj, score > 1.3))
    assert result.sculpted
    assert result.p_value < 1e-6
    assert np.nanmax(result.bin_efficiencies) > 3 * result.efficiency


def test_sculpting_test_input_errors():
    with pytest.raises(ConfigurationError, match="subset of before"):
        stats.sculpting_test([10.0, 10.0], [11.0, 1.0])
    with pytest.raises(ConfigurationError, match="before has 2 bins but after has 3"):
        stats.sculpting_test([10.0, 10.0], [1.0, 1.0, 1.0])


def test_shape_chi2_accepts_same_shapes_and_rejects_a_shift():
    rng = np.random.default_rng(3)
    edges = np.linspace(0.0, 1.0, 21)
    p_values = []
    for _ in range(200):
        first = np.histogram(rng.beta(2, 3, 4000), edges)[0]
        second = np.histogram(rng.beta(2, 3, 1000), edges)[0]  # another normalisation, same shape
        p_values.append(stats.shape_chi2(first, second).p_value)
    assert 0.02 < np.mean(np.array(p_values) < 0.05) < 0.1  # about its nominal size of 5 %
    shifted = np.histogram(rng.beta(2.6, 3, 4000), edges)[0]
    result = stats.shape_chi2(np.histogram(rng.beta(2, 3, 4000), edges)[0], shifted)
    assert result.p_value < 1e-4 and result.ndf == 19 and result.to_dict()["chi2_per_ndf"] > 3


def test_shape_chi2_uses_the_weights_of_a_reweighted_template():
    rng = np.random.default_rng(4)
    axis = hist.axis.Regular(20, 0.0, 1.0)
    data = hist.Hist(axis, storage=hist.storage.Weight()).fill(rng.beta(2, 3, 5000))
    uniform = rng.uniform(0.0, 1.0, 20000)
    density_ratio = uniform * (1 - uniform) ** 2 * 12.0  # beta(2, 3) / uniform
    template = hist.Hist(axis, storage=hist.storage.Weight()).fill(uniform, weight=density_ratio)
    unweighted = hist.Hist(axis, storage=hist.storage.Weight()).fill(uniform)
    assert stats.shape_chi2(data, template).p_value > 0.001
    assert stats.shape_chi2(data, unweighted).p_value < 1e-10


def test_shape_chi2_refuses_mismatched_or_empty_histograms():
    with pytest.raises(ConfigurationError, match="bins"):
        stats.shape_chi2(np.ones(5), np.ones(6))
    with pytest.raises(ConfigurationError, match="positive total"):
        stats.shape_chi2(np.zeros(5), np.ones(5))


def test_sideband_closure_passes_a_flat_cut_and_fails_one_that_follows_the_mass(rng):
    mass = rng.uniform(2500.0, 5000.0, 40_000)
    score = rng.normal(size=mass.size)
    flat = stats.sideband_closure(score, mass, (3300.0, 3700.0), efficiency=0.05)
    assert flat.closed and flat.sculpting.ndf == 7
    assert flat.sculpting.efficiency == pytest.approx(0.05, abs=0.002)
    # no signal anywhere: the signal region passes the sideband fraction within its binomial error
    assert abs(flat.signal_region_pass_fraction - 0.05) < 3 * flat.signal_region_pass_error
    # a score that grows with the mass passes more of the upper sideband: sculpting, not closed
    sculpted = stats.sideband_closure(score + (mass - 3500.0) / 1000.0, mass, (3300.0, 3700.0), efficiency=0.05)
    assert not sculpted.closed and sculpted.sculpting.p_value < 1e-6
    assert sculpted.to_dict()["closed"] is False


def test_sideband_closure_refuses_too_few_sideband_events(rng):
    mass = rng.uniform(3000.0, 4000.0, 500)
    with pytest.raises(ConfigurationError, match="too few to test a 0.05 cut"):
        stats.sideband_closure(rng.normal(size=500), mass, (3300.0, 3700.0), efficiency=0.05)
