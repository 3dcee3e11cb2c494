"""The closure classifier test: AUC 0.5 for a template with the distribution of the truth, above for a shifted
one, back to 0.5 when the right weights correct the shift; seeded; bad input named."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

pytest.importorskip("sklearn")

from coffea_ad.errors import ConfigurationError  # noqa: E402
from coffea_ad.models.closure import classifier_closure_auc  # noqa: E402

SHIFT = 0.4


@pytest.fixture(scope="module")
def samples():
    """Truth N(0, 1) in two features, a template from the same distribution and one shifted by SHIFT in both."""
    rng = np.random.default_rng(5)
    return {
        "truth": rng.normal(0.0, 1.0, (3000, 2)),
        "same": rng.normal(0.0, 1.0, (3000, 2)),
        "shifted": rng.normal(SHIFT, 1.0, (3000, 2)),
    }


def test_identical_distributions_give_one_half(samples):
    auc = classifier_closure_auc(samples["same"], samples["truth"], seed=1)
    # spread of the AUC of an uninformative score on 3000 + 3000 events: sqrt(6001 / (12 * 3000^2)) = 0.0075
    assert abs(auc - 0.5) < 0.03


def test_a_shifted_template_is_seen_close_to_the_best_possible_auc(samples):
    auc = classifier_closure_auc(samples["shifted"], samples["truth"], seed=1)
    # the likelihood ratio depends on x1 + x2 only: the best AUC is Phi(SHIFT * sqrt(2) / sqrt(2)) = 0.655
    best = norm.cdf(SHIFT)
    assert 0.6 < auc < best + 0.03


def test_weights_that_undo_the_shift_restore_closure(samples):
    shifted = samples["shifted"]
    # N(0, 1) / N(SHIFT, 1) in each feature moves the shifted template back onto the truth
    weights = np.exp(-SHIFT * shifted.sum(axis=1) + SHIFT**2)
    assert abs(classifier_closure_auc(shifted, samples["truth"], template_weights=weights, seed=1) - 0.5) < 0.04
    # the same weights on the truth side make it look like the shifted template instead
    truth_weights = np.exp(SHIFT * samples["truth"].sum(axis=1) - SHIFT**2)
    auc = classifier_closure_auc(samples["shifted"], samples["truth"], truth_weights=truth_weights, seed=1)
    assert abs(auc - 0.5) < 0.04


def test_the_class_sizes_do_not_matter_and_the_seed_fixes_the_answer(samples):
    small_template = samples["shifted"][:1000]
    auc = classifier_closure_auc(small_template, samples["truth"], seed=2)
    assert auc > 0.6
    assert classifier_closure_auc(small_template, samples["truth"], seed=2) == auc
    one_feature = classifier_closure_auc(samples["shifted"][:, 0], samples["truth"][:, 0], seed=2)
    assert 0.55 < one_feature < norm.cdf(SHIFT / np.sqrt(2)) + 0.03  # one shifted feature: Phi(0.4 / sqrt 2) = 0.61


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"template": np.zeros((10, 3)), "truth": np.zeros((10, 2))}, "3 features"),
        ({"template": np.empty((0, 2)), "truth": np.zeros((10, 2))}, "template must be a non-empty"),
        ({"template": np.zeros((10, 2)), "truth": np.full((10, 2), np.nan)}, "truth has NaN"),
        ({"template": np.zeros((10, 2)), "truth": np.zeros((10, 2)), "template_weights": np.ones(9)}, "9 entries"),
        ({"template": np.zeros((10, 2)), "truth": np.zeros((10, 2)), "truth_weights": -np.ones(10)}, "non-negative"),
        ({"template": np.zeros((10, 2)), "truth": np.zeros((10, 2)), "folds": 1}, "folds"),
    ],
)
def test_bad_input_names_the_argument(kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        classifier_closure_auc(**kwargs)
