"""Binary classifiers shared by the weakly and fully supervised methods: an MLP and boosted trees.

A fitted classifier is a :class:`ClassifierEnsemble`: raw inputs -> mean over members of the
probability of class 1. MLP members are the best epochs of one training run (an ensemble of best epochs,
as in CATHODE) behind a standardisation; tree members are scikit-learn ``HistGradientBoostingClassifier``
models trained with different seeds and converted to a torch module of tensors (:class:`TreeEnsemble`),
so that they export to ONNX through the same path as the networks and are saved without pickle.
Both use balanced class weights.

References:
    Finke et al., "Back To The Roots: Tree-Based Algorithms for Weakly Supervised
    Anomaly Detection", arXiv:2309.13111 (boosted trees as the CWoLa/CATHODE classifier).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import zuko
from torch import nn

from coffea_ad.errors import ConfigurationError
from coffea_ad.models.decorrelation import distance_correlation
from coffea_ad.models.preprocessing import Preprocessor
from coffea_ad.progress import progress_bar

if TYPE_CHECKING:
    from coffea_ad.models.base import Estimator

__all__ = [
    "CLASSIFIERS",
    "probability",
    "balanced_weights",
    "TreeEnsemble",
    "ClassifierEnsemble",
    "fit_classifier",
    "build_classifier",
]

logger = logging.getLogger(__name__)

CLASSIFIERS = ("mlp", "hgb")
"""Classifier back-ends: a multilayer perceptron or scikit-learn's HistGradientBoostingClassifier."""


class TreeEnsemble(nn.Module):
    """A fitted ``HistGradientBoostingClassifier`` (binary) as tensors: raw inputs -> logit ``[N, 1]``.

    Every tree is walked for ``depth`` steps with gathers (a leaf points to itself), comparing in float64
    exactly as scikit-learn does, so the logits equal ``decision_function`` to float64 precision.
    """

    def __init__(self, n_trees: int, n_nodes: int, depth: int) -> None:
        super().__init__()
        self.depth = depth
        self.register_buffer("feature", torch.zeros(n_trees * n_nodes, dtype=torch.int64))
        self.register_buffer("threshold", torch.zeros(n_trees * n_nodes, dtype=torch.float64))
        self.register_buffer("left", torch.zeros(n_trees * n_nodes, dtype=torch.int64))
        self.register_buffer("right", torch.zeros(n_trees * n_nodes, dtype=torch.int64))
        self.register_buffer("is_leaf", torch.ones(n_trees * n_nodes, dtype=torch.bool))
        self.register_buffer("value", torch.zeros(n_trees * n_nodes, dtype=torch.float64))
        self.register_buffer("root", torch.arange(n_trees, dtype=torch.int64) * n_nodes)
        self.register_buffer("baseline", torch.zeros((), dtype=torch.float64))

    @staticmethod
    def shape_of(model) -> tuple[int, int, int]:
        """``(n_trees, n_nodes, depth)`` of a fitted binary HistGradientBoostingClassifier."""
        trees = [predictors[0] for predictors in model._predictors]
        return len(trees), max(len(t.nodes) for t in trees), max(int(t.nodes["depth"].max()) for t in trees)

    @classmethod
    def from_sklearn(cls, model) -> TreeEnsemble:
        """Convert a fitted binary ``HistGradientBoostingClassifier`` without categorical features."""
        trees = [predictors[0] for predictors in model._predictors]
        n_trees, n_nodes, depth = cls.shape_of(model)
        module = cls(n_trees, n_nodes, depth)
        for index, tree in enumerate(trees):
            nodes = tree.nodes
            if nodes["is_categorical"].any():
                raise ConfigurationError("categorical splits are not supported in exported tree ensembles")
            offset = index * n_nodes
            span = slice(offset, offset + len(nodes))
            leaf = nodes["is_leaf"].astype(bool)
            module.feature[span] = torch.as_tensor(nodes["feature_idx"].astype(np.int64))
            module.threshold[span] = torch.as_tensor(nodes["num_threshold"])
            module.left[span] = torch.as_tensor(np.where(leaf, 0, nodes["left"]).astype(np.int64) + offset)
            module.right[span] = torch.as_tensor(np.where(leaf, 0, nodes["right"]).astype(np.int64) + offset)
            module.is_leaf[span] = torch.as_tensor(leaf)
            module.value[span] = torch.as_tensor(nodes["value"])
        module.baseline.fill_(float(np.asarray(model._baseline_prediction).ravel()[0]))
        return module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logit ``[N, 1]`` of class 1 (the shape of the MLP's output)."""
        x = x.double()
        node = self.root.expand(x.shape[0], -1)
        for _ in range(self.depth):
            values = torch.gather(x, 1, self.feature[node])
            step = torch.where(values <= self.threshold[node], self.left[node], self.right[node])
            node = torch.where(self.is_leaf[node], node, step)
        return (self.value[node].sum(dim=-1, keepdim=True) + self.baseline).float()


def probability(logit: torch.Tensor) -> torch.Tensor:
    """The logistic function, written so that ONNX Runtime computes it to float32 precision.

    ONNX Runtime's own ``Sigmoid`` loses relative precision for negative inputs (about 2e-4 at -10 and 0
    below -20), where the most background-like events sit.
    """
    small = torch.exp(-torch.abs(logit))
    return torch.where(logit >= 0, 1.0 / (1.0 + small), small / (1.0 + small))


class ClassifierEnsemble(nn.Module):
    """Raw inputs -> mean over members of ``sigmoid(member(pre(x)))``, the probability of class 1."""

    def __init__(self, pre: Preprocessor, members: Sequence[nn.Module]) -> None:
        super().__init__()
        self.pre = pre
        self.members = nn.ModuleList(members)

    def fit_preprocessing(self, x: np.ndarray, *others: np.ndarray) -> None:
        """Set the standardisation from the training inputs (labels and weights, ``others``, are not used)."""
        self.pre.fit(x)

    def logit(self, x: torch.Tensor) -> torch.Tensor:
        """Logit of the first member (the trained one; used as the training loss input)."""
        return self.members[0](self.pre(x)[0]).squeeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.pre(x)[0]
        return torch.stack([probability(member(z).squeeze(-1)) for member in self.members]).mean(dim=0)


def _weighted_bce(module: ClassifierEnsemble, batch: Sequence[torch.Tensor], disco: float = 0.0) -> torch.Tensor:
    """Class-weighted binary cross-entropy; with ``disco`` > 0 and a fourth tensor (the resonant variable),
    plus ``disco`` times the distance correlation of the output and that variable on background events."""
    x, label, weight = batch[:3]
    logit = module.logit(x)
    loss = nn.functional.binary_cross_entropy_with_logits(logit, label, reduction="none")
    loss = (loss * weight).sum() / weight.sum()
    if disco > 0.0:
        background = label < 0.5
        signal_probability = torch.sigmoid(logit[background])
        loss = loss + disco * distance_correlation(signal_probability, batch[3][background], weight[background])
    return loss


def balanced_weights(labels: np.ndarray, sample_weight: np.ndarray | None = None) -> np.ndarray:
    """Per-event weights (``sample_weight`` times a class factor) that give both classes the same total weight."""
    sample_weight = np.ones(len(labels)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    positive = labels > 0.5
    n_signal, n_background = int(positive.sum()), int((~positive).sum())
    if n_signal == 0 or n_background == 0:
        raise ConfigurationError(f"a classifier needs events of both classes, got {n_signal} and {n_background}")
    total_signal, total_background = sample_weight[positive].sum(), sample_weight[~positive].sum()
    factor = np.where(positive, len(labels) / (2 * total_signal), len(labels) / (2 * total_background))
    return (sample_weight * factor).astype(np.float32)


def _auc(classifier: ClassifierEnsemble, x: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> float:
    """Weighted ROC AUC of a fitted classifier on held-out events (0.5: the classes are indistinguishable)."""
    with torch.no_grad():
        scores = classifier(torch.as_tensor(x, dtype=torch.float32)).numpy()
    return _weighted_auc(labels, scores, weights)


def _weighted_auc(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores, sample_weight=weights))


def _member_folds(n: int, n_folds: int, seed: int, salt: int, repeat: int) -> np.ndarray:
    """The fold (0 .. ``n_folds`` - 1) of each of ``n`` events in the ``repeat``-th random k-fold split."""
    folds = np.empty(n, dtype=np.int64)
    folds[np.random.default_rng([seed, salt, repeat]).permutation(n)] = np.arange(n) % n_folds
    return folds


def _fit_tree_ensemble(
    estimator: Estimator,
    x: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    network: str,
    name: str,
    salt: int,
) -> tuple[ClassifierEnsemble, list[list[int]], dict]:
    """``estimator.ensemble`` boosted-tree models on repeated k-fold splits, averaged: (ensemble, shapes, history).

    ``k = round(1 / validation_fraction)`` (5 by default). Member ``i`` holds out fold ``i mod k`` of split
    ``i // k`` (a new random split every ``k`` members), trains on the other folds and stops early on the
    held-out one (``patience`` iterations without a better weighted loss, at most ``epochs`` iterations), so
    every event trains ``k - 1`` of every ``k`` members and the members differ by their events as well as their
    seeds (``seed + 1000 * salt + i``). History: ``validation_auc``, the out-of-fold AUC (each held-out event
    scored by the members that did not train on it), ``trees`` (boosting iterations per member), ``folds`` (k).

    References:
        Finke et al., "Back To The Roots: Tree-Based Algorithms for Weakly Supervised Anomaly Detection",
        arXiv:2309.13111.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    settings = estimator.training[network]
    n_folds = max(2, round(1.0 / settings.validation_fraction))
    members, shapes, scores, trees = [], [], [], []
    out_of_fold, n_scores = np.zeros(len(x)), np.zeros(len(x))
    description = estimator._progress_label(name)
    with progress_bar(estimator.ensemble, description, unit="model", enabled=settings.progress) as bar:
        for member in range(estimator.ensemble):
            held_out = _member_folds(len(x), n_folds, estimator.seed, salt, member // n_folds) == member % n_folds
            model = HistGradientBoostingClassifier(
                max_iter=settings.epochs,
                learning_rate=0.1,
                early_stopping=True,
                n_iter_no_change=settings.patience or settings.epochs,
                random_state=estimator.seed + 1000 * salt + member,
            ).fit(
                x[~held_out],
                labels[~held_out].astype(np.int64),
                sample_weight=weights[~held_out],
                X_val=x[held_out],
                y_val=labels[held_out].astype(np.int64),
                sample_weight_val=weights[held_out],
            )
            out_of_fold[held_out] += model.predict_proba(x[held_out])[:, 1]
            n_scores[held_out] += 1
            members.append(TreeEnsemble.from_sklearn(model))
            shapes.append(list(TreeEnsemble.shape_of(model)))
            scores.append([float(s) for s in model.validation_score_])
            trees.append(int(model.n_iter_))
            logger.info("%s member %d: %d trees", description, member, model.n_iter_)
            bar.update()
    scored = n_scores > 0
    auc = _weighted_auc(labels[scored], out_of_fold[scored] / n_scores[scored], weights[scored])
    fitted = ClassifierEnsemble(Preprocessor(x.shape[1]), members).eval()
    return fitted, shapes, {"validation_score": scores, "validation_auc": auc, "folds": n_folds, "trees": trees}


def build_classifier(
    kind: str, n_inputs: int, hidden: Sequence[int], shapes: Sequence[Sequence[int]]
) -> ClassifierEnsemble:
    """An empty ensemble: MLPs of ``hidden`` widths, or trees of the given ``(n_trees, n_nodes, depth)``."""
    if kind == "mlp":
        members = [zuko.nn.MLP(n_inputs, 1, tuple(hidden)) for _ in shapes]
        return ClassifierEnsemble(Preprocessor(n_inputs), members)
    if kind == "hgb":
        return ClassifierEnsemble(Preprocessor(n_inputs), [TreeEnsemble(*shape) for shape in shapes])
    raise ConfigurationError(f"unknown classifier {kind!r}; valid ones: {', '.join(CLASSIFIERS)}")


def fit_classifier(
    estimator: Estimator,
    x: np.ndarray,
    labels: np.ndarray,
    *,
    name: str,
    checkpoint_dir: str | Path | None,
    network: str = "classifier",
    salt: int = 0,
    decorrelate: np.ndarray | None = None,
    disco: float = 0.0,
    sample_weight: np.ndarray | None = None,
) -> tuple[ClassifierEnsemble, list[list[int]]]:
    """Fit a balanced binary classifier on ``x``; return (ensemble, member shapes) and record
    ``estimator.history_[name]`` (with the validation ROC AUC).

    The back-end is ``estimator.classifier`` and the settings ``estimator.training[network]``.
    ``"mlp"`` (widths ``estimator.hidden``) trains one network with the shared loop and keeps its
    ``keep_best`` best epochs; ``"hgb"`` fits ``estimator.ensemble`` boosted-tree models on repeated k-fold
    splits (:func:`_fit_tree_ensemble`: ``k = round(1 / validation_fraction)``, ``epochs`` as the maximum number
    of boosting iterations and ``patience`` as scikit-learn's ``n_iter_no_change`` on the held-out fold).
    ``disco`` > 0 adds the DisCo term between the MLP output and ``decorrelate`` (the resonant variable) on
    background events. ``sample_weight`` multiplies the balanced class weights (reweighted templates, SALAD).
    """
    kind, hidden = estimator.classifier, estimator.hidden
    labels = labels.astype(np.float32)
    weights = balanced_weights(labels, sample_weight)
    if disco > 0.0 and (kind != "mlp" or decorrelate is None):
        raise ConfigurationError("the DisCo term needs the MLP classifier and the resonant variable (mass)")
    if kind == "mlp":
        classifier = build_classifier("mlp", x.shape[1], hidden, [[0]])
        tensors = [x, labels, weights] + ([decorrelate.astype(np.float32)] if disco > 0.0 else [])
        result = estimator._train_network(
            network,
            classifier,
            functools.partial(_weighted_bce, disco=disco),
            tensors,
            name=name,
            checkpoint_dir=checkpoint_dir,
            salt=salt,
        )
        members = []
        for state in result.best_states:
            member = zuko.nn.MLP(x.shape[1], 1, tuple(hidden))
            prefix = "members.0."
            member.load_state_dict({key[len(prefix) :]: v for key, v in state.items() if key.startswith(prefix)})
            members.append(member)
        fitted = ClassifierEnsemble(classifier.pre.cpu(), members).eval()
        shapes = [[0]] * len(members)
        _, val = estimator._split(len(x), network, salt)
        estimator.history_[name]["validation_auc"] = _auc(fitted, x[val], labels[val], weights[val])
    elif kind == "hgb":
        fitted, shapes, history = _fit_tree_ensemble(estimator, x, labels, weights, network, name, salt)
        estimator.history_[name] = history
    else:
        raise ConfigurationError(f"unknown classifier {kind!r}; valid ones: {', '.join(CLASSIFIERS)}")
    return fitted, shapes
