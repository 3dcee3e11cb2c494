"""Closure of a background template: can a classifier tell the template from the true background?

Every method that builds a background template (CATHODE's sampled events, a reweighted or morphed simulation,
a flow sampled at the signal-region contexts) is only as good as that template. The classifier test trains a
boosted-tree classifier on true background vs template in the features the anomaly score uses, and reports the
area under its ROC from out-of-fold predictions (every event scored by a classifier that did not see it):

* AUC = 0.5: the classifier cannot separate them; the template has the distribution of the truth as far as the
  classifier and the sample size can tell (a necessary condition, not a proof: a weak classifier or a small
  sample also gives 0.5);
* AUC > 0.5: the template is mismodelled somewhere in the features; the larger, the easier to see;
* AUC < 0.5 happens by chance only (its spread about 0.5 is of order ``sqrt((n1 + n2) / (12 n1 n2))``).

The two classes are weighted to equal totals, so that the answer does not depend on their relative sizes.

References:
    Hallin et al., CATHODE, arXiv:2109.00546 (template vs background classifier as closure test);
    Bai, Mastandrea, Nachman, arXiv:2311.12924 (closure of Reweight, Generate and Morph templates).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from coffea_ad.errors import ConfigurationError

__all__ = ["classifier_closure_auc"]


def _events(values: ArrayLike, name: str) -> np.ndarray:
    """``values`` as a float64 matrix ``(events, features)``: one column for a vector; empty or non-finite
    input raises an error that names ``name``."""
    matrix = np.asarray(values, dtype=np.float64)
    if matrix.ndim == 1:
        matrix = matrix[:, None]
    if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ConfigurationError(f"{name} must be a non-empty (events, features) array, got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise ConfigurationError(f"{name} has NaN or infinite values in {int((~np.isfinite(matrix)).sum())} entries")
    return matrix


def _weights(weights: ArrayLike | None, n_events: int, name: str) -> np.ndarray:
    """Per-event weights (1 by default) normalised to sum 1; negative, non-finite or all-zero weights raise."""
    if weights is None:
        return np.full(n_events, 1.0 / n_events)
    values = np.asarray(weights, dtype=np.float64).ravel()
    if values.size != n_events:
        raise ConfigurationError(f"{name} has {values.size} entries for {n_events} events")
    if not np.isfinite(values).all() or (values < 0).any() or values.sum() <= 0:
        raise ConfigurationError(f"{name} must be finite, non-negative and not all zero")
    return values / values.sum()


def classifier_closure_auc(
    template: ArrayLike,
    truth: ArrayLike,
    *,
    template_weights: ArrayLike | None = None,
    truth_weights: ArrayLike | None = None,
    seed: int = 0,
    folds: int = 2,
) -> float:
    """AUC of a boosted-tree classifier truth vs template, from ``folds``-fold out-of-fold predictions.

    Arguments:
        template: the background template, ``(events, features)`` (a vector for one feature).
        truth: the true background in the same features and column order.
        template_weights, truth_weights: per-event weights (default 1); each class is normalised to the
            same total before training and in the ROC.
        seed: seeds the fold assignment and the trees (same inputs and seed, same AUC).
        folds: the events are split at random in this many folds; the classifier trained on the others
            scores each fold.

    Returns 0.5 (within its statistical spread) when the template has the distribution of the truth, more
    when the classifier sees a difference. The trees run on one thread (OpenMP threads of the boosted trees
    would oversubscribe a shared machine).

    Example:
        >>> rng = np.random.default_rng(1)
        >>> round(classifier_closure_auc(rng.normal(size=(3000, 2)), rng.normal(size=(3000, 2))), 1)
        0.5
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    from coffea_ad.selection import metrics

    template, truth = _events(template, "template"), _events(truth, "truth")
    if template.shape[1] != truth.shape[1]:
        raise ConfigurationError(f"template has {template.shape[1]} features, truth has {truth.shape[1]}")
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise ConfigurationError(f"folds must be an integer >= 2, got {folds!r}")
    if min(len(template), len(truth)) < 2 * folds:
        raise ConfigurationError(
            f"too few events for {folds} folds: {len(template)} template and {len(truth)} truth events"
        )
    x = np.concatenate([truth, template])
    labels = np.concatenate([np.ones(len(truth)), np.zeros(len(template))])
    weights = np.concatenate([
        _weights(truth_weights, len(truth), "truth_weights"),
        _weights(template_weights, len(template), "template_weights"),
    ]) * len(x)
    fold = np.random.default_rng(seed).integers(0, folds, len(x))
    scores = np.empty(len(x))
    with threadpool_limits(1):
        for k in range(folds):
            train = fold != k
            model = HistGradientBoostingClassifier(max_iter=100, max_depth=3, random_state=seed)
            model.fit(x[train], labels[train], sample_weight=weights[train])
            scores[~train] = model.predict_proba(x[~train])[:, 1]
    is_truth = labels == 1
    roc = metrics.roc_curve(
        scores[is_truth], scores[~is_truth], signal_weights=weights[is_truth], background_weights=weights[~is_truth]
    )
    return metrics.auc(roc)
