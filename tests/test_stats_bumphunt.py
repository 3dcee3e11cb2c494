"""Dijet-function fit (pulls over pseudo-experiments), merged-bin goodness of fit, F-test, the fit range above
the turn-on, window workspaces, flagged windows and the sliding bump hunt."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import erf

from coffea_ad import stats
from coffea_ad.errors import ConfigurationError
from coffea_ad.stats.bumphunt import default_centres, window_mask
from coffea_ad.stats.inference import Significance

EDGES = np.linspace(1500.0, 6000.0, 46)
CENTRES = 0.5 * (EDGES[1:] + EDGES[:-1])
#: Booked like the feature processor's mjj: 0-8 TeV in 50 GeV bins.
BOOKED = np.arange(0.0, 8001.0, 50.0)
#: Shapes fitted to 7.4·10⁴ QCD events (|Δη| < 1.3, 2.8-8 TeV) of coffea_ad's Pythia sample
#: (../shared/data/lhco_like, seed 401): the F-test took 5 parameters there, and 3 from 3.1 TeV on.
REALISTIC = {
    5: np.array([0.0, 95.3508, -208.0742, -120.611, -26.2972]),
    3: np.array([0.0, 18.4444, 0.2194]),
}
HIGH_MASS = np.arange(2800.0, 8001.0, 50.0)


def spectrum(n_parameters: int, n_events: float) -> tuple[np.ndarray, np.ndarray]:
    """θ = (ln p0, p1, p2, ...) normalised to ``n_events`` in 1.5–6 TeV, and its expected bin yields."""
    theta = np.array([0.0, 10.0, 5.0, 0.1, 0.01][:n_parameters])
    theta[0] = np.log(n_events / stats.dijet_yields(EDGES, theta).sum())
    return theta, stats.dijet_yields(EDGES, theta)


def realistic(n_parameters: int, n_events: float) -> np.ndarray:
    """Expected yields in 2.8–8 TeV (50 GeV bins) of a :data:`REALISTIC` shape with ``n_events``."""
    theta = REALISTIC[n_parameters].copy()
    theta[0] = np.log(n_events / stats.dijet_yields(HIGH_MASS, theta).sum())
    return stats.dijet_yields(HIGH_MASS, theta)


def turn_on_spectrum(n_events: float, midpoint: float = 2500.0, width: float = 150.0) -> np.ndarray:
    """A falling dijet spectrum times an efficiency turn-on Φ((mjj − midpoint)/width), booked from 0 GeV."""
    falling = np.r_[0.0, stats.dijet_yields(BOOKED[1:], np.array([0.0, 10.0, 5.0, 0.1]))]
    centres = 0.5 * (BOOKED[1:] + BOOKED[:-1])
    expected = falling * 0.5 * (1 + erf((centres - midpoint) / (np.sqrt(2) * width)))
    return expected * n_events / expected.sum()


def test_dijet_function_matches_the_formula_and_the_yields_integrate_it():
    params = [2.0e-3, 10.0, 5.0, 0.1]
    mjj = np.array([2000.0, 4000.0])
    x = mjj / 13000.0
    expected = params[0] * (1 - x) ** params[1] / x ** (params[2] + params[3] * np.log(x))
    assert np.allclose(stats.dijet_function(mjj, params), expected)
    fine = np.linspace(EDGES[0], EDGES[1], 20001)
    integral = np.trapezoid(stats.dijet_function(fine, params), fine)
    theta = np.r_[np.log(params[0]), params[1:]]
    assert stats.dijet_yields(EDGES[:2], theta)[0] == pytest.approx(integral, rel=1e-6)


@pytest.mark.parametrize("n_parameters", [3, 4, 5])
def test_fit_recovers_the_parameters_with_unit_pulls(n_parameters):
    theta, expected = spectrum(n_parameters, 2.0e5)
    rng = np.random.default_rng(11 + n_parameters)
    pulls = []
    for _ in range(80):
        fit = stats.fit_dijet(rng.poisson(expected), EDGES, n_parameters=n_parameters)
        assert fit.converged
        pulls.append((fit.theta - theta) / np.sqrt(np.diag(fit.theta_covariance)))
    pulls = np.array(pulls)
    # 80 pseudo-experiments: the mean has a standard error of 0.11, the width one of 0.08
    assert np.all(np.abs(pulls.mean(axis=0)) < 0.35), pulls.mean(axis=0)
    assert np.all(np.abs(pulls.std(axis=0) - 1) < 0.25), pulls.std(axis=0)


def test_fit_reports_parameters_covariance_and_goodness_of_fit():
    theta, expected = spectrum(4, 2.0e5)
    fit = stats.fit_dijet(np.random.default_rng(3).poisson(expected), EDGES)
    assert fit.parameters[0] == pytest.approx(np.exp(fit.theta[0]))
    assert fit.covariance.shape == (4, 4) and np.all(np.linalg.eigvalsh(fit.covariance) > 0)
    assert 0.001 < fit.p_value < 0.999
    # the goodness of fit is Pearson's chi2 of bins merged to >= 5 expected events; the deviance is kept
    counts, mu = np.random.default_rng(3).poisson(expected), fit.yields(EDGES)
    chi2, merged = stats.merged_chi2(counts, mu)
    assert (fit.chi2, fit.ndf, fit.n_bins) == (pytest.approx(chi2), merged - 4, 45) and merged < 45
    filled = counts > 0
    deviance = 2 * (np.sum(mu - counts) + np.sum(counts[filled] * np.log(counts[filled] / mu[filled])))
    assert fit.deviance == pytest.approx(deviance, rel=1e-6)
    summary = fit.to_dict()
    assert summary["ndf"] == fit.ndf and summary["n_fitted_bins"] == 45 and summary["parameter_choice"] == "fixed"
    # the eigen-variations reproduce the propagated uncertainty of every bin
    variations = fit.eigen_variations(EDGES)
    half = np.sqrt(np.sum([((up - down) / 2) ** 2 for down, up in variations], axis=0))
    assert np.allclose(half, fit.yield_uncertainties(EDGES), rtol=0.05)
    three = stats.fit_dijet(np.random.default_rng(3).poisson(expected), EDGES, n_parameters=3)
    assert three.deviance >= fit.deviance - 1e-6


def test_merged_chi2_merges_within_runs_of_selected_bins():
    observed = np.array([1.0, 2.0, 3.0, 9.0, 5.0, 6.0])
    expected = np.array([1.0, 1.0, 3.0, 9.0, 4.0, 10.0])
    mask = np.array([True, True, True, False, True, True])
    # groups: bins 0-2 (6 observed, 5 expected), then bin 4 (5, 4) and bin 5 (6, 10); bin 3 is excluded
    chi2, merged = stats.merged_chi2(observed, expected, mask=mask, min_expected=3.0)
    assert merged == 3 and chi2 == pytest.approx(1 / 5 + 1 / 4 + 16 / 10)
    # a remainder below the minimum joins the last merged bin of its run
    assert stats.merged_chi2([4.0, 3.0], [4.0, 1.0], min_expected=3.0) == (pytest.approx(4 / 5), 1)
    with pytest.raises(ConfigurationError, match="min_expected"):
        stats.merged_chi2(observed, expected, min_expected=0)


def test_fit_input_errors():
    with pytest.raises(ConfigurationError, match="n_parameters must be 3, 4 or 5"):
        stats.fit_dijet(np.ones(45), EDGES, n_parameters=6)
    with pytest.raises(ConfigurationError, match="'auto', 3, 4 or 5"):
        stats.bump_hunt((np.ones(45), EDGES), n_parameters="four")
    with pytest.raises(ConfigurationError, match="more than 4 non-empty bins"):
        stats.fit_dijet(np.r_[np.ones(3), np.zeros(42)], EDGES)
    with pytest.raises(ConfigurationError, match="sqrt_s"):
        stats.fit_dijet(np.ones(2), [1000.0, 14000.0, 15000.0])


def test_window_workspace_with_histosys_and_shapesys():
    _, expected = spectrum(4, 5.0e4)
    counts = np.random.default_rng(5).poisson(expected).astype(float)
    window = window_mask(EDGES, 3500.0, 0.2)
    fit = stats.fit_dijet(counts, EDGES, mask=~window)
    model = stats.window_workspace(counts, EDGES, window, fit).model()
    assert model.config.nmaindata == window.sum()
    assert sum(name.startswith("dijet_fit_eigen") for name in model.config.par_names) == 4
    shapesys = stats.window_workspace(counts, EDGES, window, fit, background_uncertainty="shapesys").model()
    assert "dijet_fit" in shapesys.config.parameters
    with pytest.raises(ConfigurationError, match="histosys, shapesys"):
        stats.window_workspace(counts, EDGES, window, fit, background_uncertainty="flat")


def test_bump_hunt_finds_an_injected_resonance_and_not_a_fluctuation():
    _, expected = spectrum(4, 5.0e4)
    rng = np.random.default_rng(21)
    resonance = np.exp(-0.5 * ((CENTRES - 3500.0) / 150.0) ** 2)
    resonance *= 150.0 / resonance.sum()
    background_only = stats.bump_hunt((rng.poisson(expected), EDGES))
    assert background_only.most_significant.significance.z < 3.0
    assert background_only.global_z <= background_only.most_significant.significance.z
    with_signal = stats.bump_hunt((rng.poisson(expected + resonance), EDGES))
    best = with_signal.most_significant
    assert best.low <= 3500.0 <= best.high
    assert best.significance.z > 4.0
    assert with_signal.global_p_trials > best.significance.p0
    # the fit range starts one bin above the spectrum's maximum (its first bin): windows lie inside it
    assert with_signal.fit_range.low == EDGES[1] and with_signal.edges[0] == EDGES[1]
    centres = default_centres(with_signal.edges, 0.2)
    assert with_signal.trials_factor == pytest.approx(np.log(centres.max() / centres.min()) / np.log(1.1 / 0.9) + 1)
    summary = with_signal.to_dict()
    assert summary["local_Z"] == pytest.approx(best.significance.z)
    assert len(summary["windows"]) == len(centres) and summary["fit_range_GeV"] == [EDGES[1], EDGES[-1]]


def test_bump_hunt_toys_give_a_global_p_value():
    _, expected = spectrum(3, 2.0e4)
    counts = np.random.default_rng(2).poisson(expected)
    result = stats.bump_hunt((counts, EDGES), centres=[2500.0, 3000.0, 3500.0], n_parameters=3, n_toys=8, seed=4)
    assert result.toy_max_z.shape == (8,)
    assert 0.0 <= result.global_p_toys <= 1.0
    assert result.global_method in ("toys", "trials_factor")
    with pytest.raises(ConfigurationError, match="inside the fit range 1600..6000 GeV"):
        stats.bump_hunt((counts, EDGES), centres=[7000.0])


def test_bump_hunt_fits_only_the_filled_range_of_a_histogram_booked_from_zero():
    # The feature processor books mjj from 0 GeV: the empty bins below the first event must not be fitted.
    _, expected = spectrum(4, 5.0e4)
    counts = np.random.default_rng(22).poisson(expected)
    width = EDGES[1] - EDGES[0]
    leading = int(round(EDGES[0] / width))
    from_zero = np.concatenate([np.zeros(leading, dtype=int), counts])
    edges_from_zero = np.arange(len(from_zero) + 1) * width
    trimmed = stats.bump_hunt((counts, EDGES))
    booked = stats.bump_hunt((from_zero, edges_from_zero))
    assert booked.most_significant.significance.z == pytest.approx(trimmed.most_significant.significance.z)
    assert [w.centre for w in booked.windows] == pytest.approx([w.centre for w in trimmed.windows])


def test_a_failed_window_fit_is_one_clear_error_naming_the_window(monkeypatch):
    import pyhf

    from coffea_ad.stats import bumphunt

    def failing(*args, **kwargs):
        raise pyhf.exceptions.FailedMinimization(type("Result", (), {"message": "Inequality constraints incompatible"}))

    _, expected = spectrum(3, 2.0e4)
    counts = np.random.default_rng(3).poisson(expected)
    monkeypatch.setattr(bumphunt, "model_significance", failing)
    with pytest.raises(ConfigurationError, match="window at 3000 GeV .* failed .*Inequality constraints"):
        stats.bump_hunt((counts, EDGES), centres=[3000.0], n_parameters=3)
