"""coffea_ad.selection.metrics against analytic answers: two Gaussian classes, ties, weights, SIC conventions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from coffea_ad import plotting
from coffea_ad.selection import metrics
from coffea_ad.errors import ConfigurationError


@pytest.fixture(scope="module")
def gaussians():
    """Background N(0, 1), signal N(d, 1) with d = 1.5: 200k events each."""
    rng = np.random.default_rng(7)
    return rng.normal(1.5, 1.0, 200_000), rng.normal(0.0, 1.0, 200_000), 1.5


def test_auc_of_two_unit_gaussians_is_phi_of_d_over_sqrt2(gaussians):
    signal, background, d = gaussians
    roc = metrics.roc_curve(signal, background)
    assert metrics.auc(roc) == pytest.approx(norm.cdf(d / np.sqrt(2)), abs=2e-3)


def test_sic_and_rejection_follow_the_gaussian_tails(gaussians):
    signal, background, d = gaussians
    roc = metrics.roc_curve(signal, background)
    # a cut at t keeps TPR = Phi(d - t) and FPR = Phi(-t)
    for cut in (0.5, 1.0, 2.0):
        tpr, fpr = norm.sf(cut - d), norm.sf(cut)
        assert metrics.background_rejection(roc, tpr) == pytest.approx(1 / fpr, rel=0.03)
    grid = np.linspace(-1, 3.2, 2000)
    analytic_max = np.max(norm.sf(grid - d) / np.sqrt(norm.sf(grid)))
    assert metrics.max_sic(roc) == pytest.approx(analytic_max, rel=0.05)
    tpr, sic = metrics.sic(roc)
    assert np.all(sic >= 0) and tpr.shape == sic.shape


def test_max_sic_ignores_points_below_one_over_n_background():
    # one background event above all signal: without the cut SIC would be TPR/sqrt(1/N) = sqrt(N)
    signal = np.array([5.0, 5.0, 5.0, 5.0])
    background = np.r_[np.zeros(99), 10.0]
    roc = metrics.roc_curve(signal, background)
    assert metrics.max_sic(roc, min_fpr=0.0) == pytest.approx(1.0 / np.sqrt(0.01))
    assert metrics.max_sic(roc) == pytest.approx(1.0 / np.sqrt(0.01 + 0.99))


def test_ties_count_one_half_and_weights_count_as_repeated_events():
    roc = metrics.roc_curve([1.0, 1.0], [1.0, 1.0])
    assert metrics.auc(roc) == pytest.approx(0.5)
    assert roc.fpr.tolist() == [0.0, 1.0] and roc.tpr.tolist() == [0.0, 1.0]
    weighted = metrics.roc_curve([2.0, 0.5], [1.0], signal_weights=[3.0, 1.0])
    repeated = metrics.roc_curve([2.0, 2.0, 2.0, 0.5], [1.0])
    assert metrics.auc(weighted) == pytest.approx(metrics.auc(repeated)) == pytest.approx(0.75)


def test_seed_band_and_sic_band():
    band = metrics.seed_band(np.arange(1.0, 11.0))
    assert band.median == pytest.approx(5.5)
    assert band.lower < band.median < band.upper
    rng = np.random.default_rng(1)
    rocs = [metrics.roc_curve(rng.normal(1, 1, 5000), rng.normal(0, 1, 5000)) for _ in range(4)]
    grid, sic_band = metrics.sic_band(rocs, tpr_grid=np.linspace(0.1, 0.9, 9))
    assert sic_band.median.shape == grid.shape
    assert np.all(sic_band.lower <= sic_band.median) and np.all(sic_band.median <= sic_band.upper)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"signal_scores": [], "background_scores": [1.0]}, "signal_scores is empty"),
        ({"signal_scores": [np.nan], "background_scores": [1.0]}, "NaN"),
        ({"signal_scores": [1.0], "background_scores": [1.0], "background_weights": [1.0, 2.0]}, "background_weights"),
        ({"signal_scores": [1.0], "background_scores": [1.0], "signal_weights": [-1.0]}, "signal_weights"),
    ],
)
def test_bad_input_names_the_argument(kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        metrics.roc_curve(**kwargs)


def test_plots_return_figures(gaussians):
    from matplotlib.figure import Figure

    signal, background, _ = gaussians
    roc = metrics.roc_curve(signal[:2000], background[:2000])
    for figure in (
        plotting.plot_roc({"gauss": roc}),
        plotting.plot_sic({"gauss": roc}),
        plotting.plot_score_distributions({"signal": signal[:2000], "background": background[:2000]}),
    ):
        assert isinstance(figure, Figure) and figure.axes
