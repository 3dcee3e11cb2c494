"""Dijet-function fit (pulls over pseudo-experiments), merged-bin goodness of fit, F-test, the fit range above
the turn-on, window workspaces, flagged windows and the sliding bump hunt."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import erf
from scipy.stats import norm

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
    assert with_signal.trials_factor == len(centres)
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
    with pytest.raises(ConfigurationError, match="window 2700-3300 GeV .* failed .*Inequality constraints"):
        stats.bump_hunt((counts, EDGES), centres=[3000.0], n_parameters=3)


def test_the_fit_range_starts_above_the_turn_on_and_finds_no_bump_where_the_first_filled_bin_did():
    # 6000 events of a falling spectrum behind a turn-on at 2.5 TeV (width 150 GeV), booked from 0 GeV
    expected = turn_on_spectrum(6000)
    counts = np.random.default_rng(0).poisson(expected)
    peak = stats.turn_on_peak(counts, BOOKED)
    assert 2500.0 <= BOOKED[peak] <= 2700.0  # the maximum of f(m) Φ((m − 2500)/150) lies at ~2.6 TeV
    hunt = stats.bump_hunt((counts, BOOKED))
    assert hunt.fit_range.method == "turn-on" and hunt.fit_range.low >= BOOKED[peak + 1]
    assert hunt.fit_range.fit.p_value >= 0.01 and hunt.fit_ok and not hunt.flagged
    assert all(w.low >= hunt.fit_range.low for w in hunt.windows)
    assert max(w.significance.z for w in hunt.windows) < 3.0
    # the bug: the same spectrum fitted from its first filled bin "discovers" the turn-on ...
    first = BOOKED[np.flatnonzero(counts)[0]]
    from_first = stats.bump_hunt((counts, BOOKED), mjj_min=first, n_parameters=4)
    assert from_first.fit_range.method == "mjj_min" and from_first.fit_range.low == first
    worst = max(from_first.windows, key=lambda w: w.significance.z)
    assert worst.significance.z > 10.0 and worst.low < 3000.0
    # ... which the goodness of fit now flags: no window there has a good background-only fit
    assert not worst.fit_ok and not from_first.fit_ok and "not evidence" in from_first.to_dict()["warning"]


def test_the_turn_on_peak_ignores_a_few_stray_events_and_mjj_min_overrides_it():
    counts = np.random.default_rng(1).poisson(turn_on_spectrum(6000))
    stray = counts.copy()
    stray[[10, 11, 30]] += [3, 2, 4]  # a few events at 500-1500 GeV, far below the turn-on
    assert stats.turn_on_peak(stray, BOOKED) == stats.turn_on_peak(counts, BOOKED)
    spike = counts.copy()
    spike[40] += 25  # a 25-event fluctuation at 2 TeV on the rising edge does not become the peak
    assert BOOKED[stats.turn_on_peak(spike, BOOKED)] >= 2500.0
    chosen = stats.fit_range(counts, BOOKED, mjj_min=3010.0, mjj_max=7000.0, n_parameters=3)
    assert (chosen.low, chosen.high, chosen.method) == (3050.0, 7000.0, "mjj_min")
    assert chosen.fit.n_parameters == 3 and chosen.fit.n_bins == (7000 - 3050) // 50
    with pytest.raises(ConfigurationError, match="mjj_min = 9000 GeV leaves no bin"):
        stats.fit_range(counts, BOOKED, mjj_min=9000.0)


def test_the_fit_range_moves_up_while_the_fit_is_poor():
    # a slow turn-on (width 200 GeV) with 5·10⁴ events: just above the peak the efficiency still rises
    # (measured: p = 2e-5 from 2450 GeV; the range moves to 2650 GeV, p = 0.034)
    counts = np.random.default_rng(2).poisson(turn_on_spectrum(5.0e4, midpoint=2300.0, width=200.0))
    peak = stats.turn_on_peak(counts, BOOKED)
    above_peak = stats.fit_range(counts, BOOKED, mjj_min=BOOKED[peak + 1], n_parameters=4)
    assert above_peak.fit.p_value < 0.01
    chosen = stats.fit_range(counts, BOOKED, n_parameters=4)
    assert BOOKED[peak + 1] < chosen.low <= BOOKED[peak + 1] * 1.2
    assert chosen.fit.p_value >= 0.01


def test_the_f_test_takes_more_parameters_for_a_spectrum_that_needs_them():
    # 30 pseudo-experiments of 2·10⁴ events of each realistic shape (measured: 5 parameters in 39/40
    # experiments of the 5-parameter shape; more than 3 in 1/40 of the 3-parameter shape, alpha = 0.05)
    rng = np.random.default_rng(7)
    picks = {
        n: np.array([stats.f_test(rng.poisson(realistic(n, 2.0e4)), HIGH_MASS).n_parameters for _ in range(30)])
        for n in (3, 5)
    }
    assert np.mean(picks[5] == 5) >= 0.8, picks[5]
    # binomial: 30 experiments at a false-positive rate of ~0.05-0.1 leave more than 6 with p < 1e-3
    assert np.mean(picks[3] > 3) <= 0.2, picks[3]
    fit = stats.f_test(rng.poisson(realistic(5, 2.0e4)), HIGH_MASS)
    steps = fit.to_dict()["f_test"]
    assert [step["from_n_parameters"] for step in steps] == [3, 4][: len(steps)]
    assert fit.to_dict()["parameter_choice"] == "F-test" and steps[0]["larger_function_taken"]


def _window(centre: float, z: float, fit_ok: bool) -> stats.WindowResult:
    fit = stats.fit_dijet(np.random.default_rng(0).poisson(spectrum(3, 1.0e4)[1]), EDGES, n_parameters=3)
    significance = Significance(p0=float(norm.sf(z)), z=z, expected_p0=0.5, expected_z=0.0)
    return stats.WindowResult(centre, centre - 300.0, centre + 300.0, 10.0, 10.0, 1.0, significance, fit, fit_ok)


def test_a_window_with_a_poor_sideband_fit_is_flagged_and_never_the_most_significant():
    windows = [_window(2500.0, 1.0, True), _window(3000.0, 6.0, False), _window(3500.0, 2.0, True)]
    result = stats.BumpHuntResult(windows, 2.0, 0.1, None, None)
    assert result.most_significant.centre == 3500.0 and result.fit_ok
    summary = result.to_dict()
    assert summary["n_windows_flagged"] == 1 and summary["flagged_windows_GeV"] == [[2700.0, 3300.0]]
    assert summary["local_Z"] == 2.0 and "warning" not in summary
    none_good = stats.BumpHuntResult([_window(3000.0, 6.0, False)], 1.0, 1e-9, None, None)
    assert not none_good.fit_ok and none_good.most_significant.centre == 3000.0
    assert "not evidence of a signal" in none_good.to_dict()["warning"]


def test_a_function_too_stiff_for_the_spectrum_flags_every_window():
    # 3 parameters forced on 10⁵ events of the 5-parameter shape: every sideband fit is poor
    counts = np.random.default_rng(4).poisson(realistic(5, 1.0e5))
    hunt = stats.bump_hunt((counts, HIGH_MASS), n_parameters=3, mjj_min=2850.0)
    assert len(hunt.flagged) == len(hunt.windows) and not hunt.fit_ok
    assert all(w.fit.p_value < 0.01 for w in hunt.windows)
    automatic = stats.bump_hunt((counts, HIGH_MASS), mjj_min=2850.0)
    assert automatic.fit_ok and automatic.most_significant.fit.n_parameters == 5


def test_the_result_rebuilds_the_spec_of_its_most_significant_window():
    _, expected = spectrum(4, 5.0e4)
    hunt = stats.bump_hunt((np.random.default_rng(21).poisson(expected), EDGES), background_uncertainty="shapesys")
    spec = hunt.spec()
    best = hunt.most_significant
    window = window_mask(hunt.edges, best.centre, 0.2)
    assert spec["channels"][0]["samples"][1]["yields"] == pytest.approx(best.fit.yields(hunt.edges[np.r_[
        np.flatnonzero(window), np.flatnonzero(window)[-1] + 1]]))
    assert stats.build_workspace(spec).model().config.nmaindata == window.sum()


def test_plot_fit_shows_pulls_only_inside_the_fit_range_on_a_fixed_scale():
    from coffea_ad.plotting.fits import plot_fit

    counts = np.random.default_rng(0).poisson(turn_on_spectrum(6000))[30:]
    edges = BOOKED[30:]
    hunt = stats.bump_hunt((counts, edges))
    best = hunt.most_significant
    figure = plot_fit(
        edges, counts, best.fit.yields(edges), uncertainty=best.fit.yield_uncertainties(edges),
        window=(best.low, best.high), fit_range=(hunt.fit_range.low, hunt.fit_range.high),
        goodness_of_fit=(best.fit.chi2, best.fit.ndf, best.fit.p_value),
    )
    ax, pull_ax = figure.axes
    assert pull_ax.get_ylim() == (-5.0, 5.0)
    pulls = [patch for patch in pull_ax.patches if type(patch).__name__ == "StepPatch"][0].get_data()
    assert pulls.edges[0] == hunt.fit_range.low and np.all(np.abs(pulls.values) <= 5.0)
    assert any("merged bins" in text.get_text() for text in ax.texts)
    # below the range the turn-on would pull by far more than 5: those bins are not in the pull panel
    below = edges[:-1] < hunt.fit_range.low
    with np.errstate(divide="ignore"):
        assert np.max(np.abs((counts - best.fit.yields(edges)) / np.sqrt(best.fit.yields(edges)))[below]) > 5
