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


def test_each_method_keeps_one_colour_for_its_line_and_its_band_over_seeds():
    from matplotlib.colors import to_rgba

    scan = {
        "CATHODE": {0.006: metrics.SeedBand(1.0, 0.9, 1.2), 0.024: metrics.SeedBand(9.0, 7.0, 11.0)},
        "CWoLa": {0.024: metrics.SeedBand(2.0, 1.5, 2.5), 0.006: metrics.SeedBand(1.1, 1.0, 1.3)},
    }
    axis = plotting.plot_max_sic_scan(scan).axes[0]
    lines = {line.get_label(): line for line in axis.get_lines()}
    for label, collection in zip(scan, axis.collections):
        assert to_rgba(lines[label].get_color())[:3] == pytest.approx(tuple(collection.get_facecolor()[0][:3]))
        # the line is drawn at the medians in increasing S/B (in %), whatever the order of the points
        assert lines[label].get_xdata().tolist() == [0.6, 2.4]
        assert lines[label].get_ydata().tolist() == [scan[label][0.006].median, scan[label][0.024].median]
    assert [tick.get_text() for tick in axis.get_xticklabels()] == ["0.6", "2.4"]
    with_reference = plotting.plot_max_sic_scan(scan, references={"supervised": 17.1}).axes[0]
    (supervised,) = [line for line in with_reference.get_lines() if line.get_label() == "supervised"]
    assert list(supervised.get_ydata()) == [17.1, 17.1]  # horizontal: it sees no injection
    with pytest.raises(ConfigurationError, match="mix numbers and SeedBands"):
        plotting.plot_max_sic_scan({"CATHODE": {0.006: 1.0, 0.024: metrics.SeedBand(9.0, 7.0, 11.0)}})


def test_sic_curves_and_window_significances_show_what_they_are_given():
    tpr = np.linspace(0.1, 1.0, 10)
    axis = plotting.plot_sic_curves(tpr, {"CATHODE": 2 * tpr}, max_sic={"CATHODE": 2.0}, title="S/B = 2.4 %").axes[0]
    assert [line.get_label() for line in axis.get_lines()] == ["CATHODE (max 2.0)", "random"]
    assert axis.get_title() == "S/B = 2.4 %"
    windows = [(2900.0, 3300.0), (3300.0, 3700.0)]
    axis = plotting.plot_window_significance(
        windows, {"before": [0.5, 2.3], "after": [0.1, 10.1]}, signal_mass=(3500.0, "W' mass")
    ).axes[0]
    before, after, mass = axis.get_lines()
    assert before.get_xdata().tolist() == [3100.0, 3500.0] and after.get_ydata().tolist() == [0.1, 10.1]
    assert before.get_marker() != after.get_marker() and mass.get_label() == "W' mass"
    assert [tick.get_text() for tick in axis.get_xticklabels()] == ["3.1", "3.5"]


def test_feature_distributions_are_normalised_and_the_reference_has_error_bars():
    rng = np.random.default_rng(3)
    truth, template = rng.normal(0, 1, (4000, 3)), rng.normal(0.2, 1, (1000, 3))
    bins = dict.fromkeys(("a", "b", "c"), np.linspace(-4, 4, 17))
    figure = plotting.plot_feature_distributions(
        {"truth": (truth, None), "template": (template, np.full(1000, 3.0))}, ["a", "b", "c"], bins, title="SR"
    )
    panels = figure.axes
    assert len(panels) == 4 and not panels[3].axison  # 3 features in 2 rows, the free panel holds the legend
    assert panels[3].get_legend().get_title().get_text() == "SR"
    assert {text.get_text() for text in panels[3].get_legend().get_texts()} == {"truth", "template"}
    (template_step,) = panels[0].patches
    assert template_step.get_label() == "template"
    counts = np.histogram(template[:, 0], bins["a"])[0]  # the weights of 3 cancel in the normalisation
    np.testing.assert_allclose(template_step.get_data().values, counts / counts.sum())
    (truth_points,) = panels[0].containers  # the truth's points with error bars
    counts = np.histogram(truth[:, 0], bins["a"])[0]
    np.testing.assert_allclose(truth_points.lines[0].get_ydata(), counts / counts.sum())
    with pytest.raises(ConfigurationError, match="expected \\(events, 3\\)"):
        plotting.plot_feature_distributions({"truth": (truth[:, :2], None)}, ["a", "b", "c"], bins)


def test_efficiency_per_bin_draws_the_cuts_side_by_side_around_the_bin_centres():
    edges = np.array([0.0, 100.0, 300.0])
    efficiencies = {name: (np.array([0.01, 0.012]), np.array([0.001, 0.002])) for name in ("a", "b", "c")}
    axis = plotting.plot_efficiency_per_bin(edges, efficiencies, 0.01).axes[0]
    centres = [container.lines[0].get_xdata() for container in axis.containers]
    assert np.allclose(centres[1], [50.0, 200.0]) and np.allclose(centres[0], [40.0, 190.0])
    assert np.allclose(centres[2], [60.0, 210.0])
    assert axis.get_ylim() == pytest.approx((0.0, 0.03))


def test_shapes_have_unit_area():
    import hist

    axis = hist.axis.Regular(10, 0.0, 5.0, name="x")
    histograms = {"a": hist.Hist(axis).fill(np.linspace(0, 4.9, 50)), "b": hist.Hist(axis).fill(np.full(7, 2.2))}
    plot_axis = plotting.plot_shapes(histograms, title="shapes").axes[0]
    areas = [np.sum(patch.get_data().values * np.diff(patch.get_data().edges)) for patch in plot_axis.patches]
    assert areas == pytest.approx([1.0, 1.0])
    assert [text.get_text() for text in plot_axis.get_legend().get_texts()] == ["a", "b"]
