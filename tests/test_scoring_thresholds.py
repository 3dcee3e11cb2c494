"""Score thresholds at a target background efficiency, and the histograms above them."""

from __future__ import annotations

import hist
import numpy as np
import pytest

from coffea_ad.errors import ConfigurationError
from coffea_ad.selection.thresholds import efficiency_of_edges, passing, score_edges, threshold_at


@pytest.fixture(scope="module")
def exponential_scores():
    return np.random.default_rng(3).exponential(size=20000)


def test_edges_sit_at_the_quantiles_of_the_ladder(exponential_scores):
    edges = score_edges(exponential_scores, 0.03)
    for efficiency in (0.5, 0.1, 0.03, 0.01, 0.001):
        # For an exponential, the score above which a fraction e lies is -ln(e).
        assert np.min(np.abs(edges - -np.log(efficiency))) < 0.05 * -np.log(efficiency) + 0.02
    assert edges[0] == exponential_scores.min() and edges[-1] > exponential_scores.max()


def test_threshold_from_the_histogram_keeps_the_target_fraction(exponential_scores):
    rng = np.random.default_rng(4)
    edges = score_edges(exponential_scores, 0.01)
    histogram = hist.Hist(
        hist.axis.IntCategory([0, 1], name="region"),
        hist.axis.Variable(edges, name="score"),
        hist.axis.Regular(10, 0, 10, name="mjj"),
    )
    signal_scores = rng.exponential(size=5000) + 4.0
    histogram.fill(region=0, score=exponential_scores, mjj=rng.uniform(0, 10, len(exponential_scores)))
    histogram.fill(region=1, score=signal_scores, mjj=rng.normal(5, 0.5, len(signal_scores)))
    threshold, efficiency = threshold_at(histogram, "score", 0, 0.01)
    assert efficiency == pytest.approx(0.01, abs=0.0005)
    assert np.mean(exponential_scores >= threshold) == pytest.approx(efficiency, abs=1e-12)
    above = passing(histogram, "score", threshold)
    assert above[{"region": hist.loc(0)}].sum() == np.sum(exponential_scores >= threshold)
    assert above[{"region": hist.loc(1)}].sum() == np.sum(signal_scores >= threshold)
    # The cut keeps the signal's mjj peak.
    assert np.argmax(above[{"region": hist.loc(1)}].values()) == 5
    assert efficiency_of_edges(histogram, "score", 0)[0] == pytest.approx(1.0)


def test_bad_requests_are_clear_errors(exponential_scores):
    with pytest.raises(ConfigurationError, match="between 0 and 1"):
        score_edges(exponential_scores, 1.5)
    with pytest.raises(ConfigurationError, match="needs at least 1000 control-region events; there are 50"):
        score_edges(exponential_scores[:50], 0.001)
    with pytest.raises(ConfigurationError, match="no control-region event"):
        score_edges(np.array([np.nan]), 0.1)


def test_one_efficiency_per_edge_down_to_the_overflow():
    histogram = hist.Hist(hist.axis.IntCategory([0], name="region"), hist.axis.Variable([0, 1, 2], name="score"))
    histogram.fill(region=0, score=[0.5, 1.5, 1.5, 7.0])
    assert efficiency_of_edges(histogram, "score", 0).tolist() == [1.0, 0.75, 0.25]
