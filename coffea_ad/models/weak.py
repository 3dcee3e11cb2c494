"""Classifier-based methods: fully supervised and idealized references, and CWoLa hunting.

All of them output the (ensemble-mean) probability of the "signal-like" class, so higher = more anomalous.

References:
    Metodiev, Nachman, Thaler, "Classification without labels", arXiv:1708.02949;
    Collins, Howe, Nachman, "Anomaly Detection for Resonant New Physics with Machine Learning" (CWoLa
    hunting), arXiv:1805.02664 and arXiv:1902.02634;
    Hallin et al., arXiv:2109.00546 (the idealized anomaly detector and supervised references);
    Finke et al., arXiv:2309.13111 (boosted trees as weak-supervision classifiers).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from coffea_ad.errors import ConfigurationError
from coffea_ad.models.base import Estimator, Training
from coffea_ad.models.classifiers import CLASSIFIERS, build_classifier, fit_classifier
from coffea_ad.models.data import (
    Table,
    column_array,
    feature_matrix,
    open_table,
    parse_signal_region,
    region_mask,
    resonant_split,
    table_hash,
)

__all__ = ["ClassifierMethod", "Supervised", "IdealizedAD", "CWoLa", "BDT"]


class _MeanProbability(nn.Module):
    """Mean of several classifier ensembles (the k folds of CWoLa hunting)."""

    def __init__(self, classifiers: nn.ModuleList) -> None:
        super().__init__()
        self.classifiers = classifiers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([classifier(x) for classifier in self.classifiers]).mean(dim=0)


class ClassifierMethod(Estimator):
    """Base of the methods whose score is a classifier probability.

    Arguments:
        classifier: ``"mlp"`` or ``"hgb"`` (scikit-learn HistGradientBoostingClassifier, converted to tensors).
        hidden: hidden layer widths of the MLP.
        ensemble: number of boosted-tree models averaged (MLPs average their ``training.keep_best`` best epochs).
        training: settings of the shared training loop (for ``hgb``: ``epochs`` = maximum boosting
            iterations, ``patience`` = iterations without improvement, ``validation_fraction``).
        seed: random seed (same seed, same model).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
    """

    _fitted_attributes: ClassVar[tuple[str, ...]] = ("classifier_shapes_",)

    def __init__(
        self,
        classifier: str = "mlp",
        hidden: Sequence[int] = (64, 64, 64),
        ensemble: int = 1,
        *,
        training: Training | dict | None = None,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        super().__init__(training=training, seed=seed, device=device)
        if classifier not in CLASSIFIERS:
            raise ConfigurationError(f"unknown classifier {classifier!r}; valid ones: {', '.join(CLASSIFIERS)}")
        if ensemble < 1:
            raise ConfigurationError(f"ensemble must be >= 1, got {ensemble}")
        self.classifier = classifier
        self.hidden = list(hidden)
        self.ensemble = ensemble

    @property
    def _n_classifier_inputs(self) -> int:
        return len(self.features_)

    def _build(self) -> None:
        self.classifiers_ = nn.ModuleList(
            build_classifier(self.classifier, self._n_classifier_inputs, self.hidden, shapes)
            for shapes in self.classifier_shapes_
        )

    def _modules(self) -> dict[str, nn.Module]:
        return {"classifiers": self.classifiers_}

    def _fit_classifiers(
        self,
        x: np.ndarray,
        labels: np.ndarray,
        folds: Sequence[np.ndarray] | None,
        checkpoint_dir: str | Path | None,
        decorrelate: np.ndarray | None = None,
        disco: float = 0.0,
        sample_weight: np.ndarray | None = None,
    ) -> list[np.ndarray]:
        """Fit one classifier (``folds=None``) or one per fold on the other folds; return per-fold test indices."""
        parts = [np.arange(len(x))] if folds is None else list(folds)
        classifiers, shapes, history = [], [], {}
        with self._seeded():
            for index, test in enumerate(parts):
                train = np.setdiff1d(np.arange(len(x)), test) if folds is not None else test
                name = "classifier" if folds is None else f"classifier_fold{index}"
                fitted, member_shapes, history[name] = fit_classifier(
                    self,
                    x[train],
                    labels[train],
                    kind=self.classifier,
                    hidden=self.hidden,
                    name=name,
                    checkpoint_dir=checkpoint_dir,
                    salt=index,
                    ensemble=self.ensemble,
                    decorrelate=None if decorrelate is None else decorrelate[train],
                    disco=disco,
                    sample_weight=None if sample_weight is None else sample_weight[train],
                )
                classifiers.append(fitted)
                shapes.append(member_shapes)
        self.classifiers_ = nn.ModuleList(classifiers)
        self.classifier_shapes_ = shapes
        self.history_ = {**getattr(self, "history_", {}), **history}
        return parts

    def scoring_module(self) -> nn.Module:
        self._check_fitted()
        return _MeanProbability(self.classifiers_).eval()


class Supervised(ClassifierMethod):
    """Fully supervised classifier, signal vs background with true labels: the upper reference.

    With ``disco`` > 0 (MLP only) the loss adds ``disco`` times the distance correlation between the output
    and the resonant variable ``mass`` on background events, which decorrelates the score from ``mjj``.

    References:
        Hallin et al., arXiv:2109.00546 (the supervised reference of the LHC Olympics R&D comparison);
        Kasieczka, Shih, arXiv:2001.05310 (DisCo).

    Example:
        >>> Supervised(training={"epochs": 5}).fit(table, features, label="is_signal").score(table)
    """

    method: ClassVar[str] = "supervised"

    def __init__(
        self,
        classifier: str = "mlp",
        hidden: Sequence[int] = (64, 64, 64),
        ensemble: int = 1,
        disco: float = 0.0,
        *,
        training: Training | dict | None = None,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        super().__init__(classifier, hidden, ensemble, training=training, seed=seed, device=device)
        if disco < 0:
            raise ConfigurationError(f"disco must be >= 0, got {disco}")
        if disco > 0 and classifier != "mlp":
            raise ConfigurationError("the DisCo term needs classifier='mlp'")
        self.disco = disco

    def fit(
        self,
        table: Table,
        features: Sequence[str],
        *,
        label: str = "is_signal",
        mass: str | None = None,
        region: str | None = None,
        checkpoint_dir: str | Path | None = None,
    ) -> Supervised:
        """Train on ``features`` with the 0/1 (or boolean) ``label`` column (1 = signal); ``mass`` is the
        resonant variable of the DisCo term (needed when ``disco`` > 0)."""
        table = open_table(table)
        rows = region_mask(table, region)
        labels = column_array(table, label).astype(np.float64)
        labels = labels if rows is None else labels[rows]
        if not np.isin(labels, (0.0, 1.0)).all():
            raise ConfigurationError(f"label column {label!r} must hold 0/1 or booleans")
        if self.disco > 0 and mass is None:
            raise ConfigurationError("Supervised(disco > 0) needs the resonant variable: fit(..., mass='mjj')")
        x = self._read(table, features, region)
        decorrelate = feature_matrix(table, [mass], rows=rows)[:, 0] if self.disco > 0 else None
        self.table_hash_ = table_hash([*features, label], x, labels[:, None])
        self._fit_classifiers(x, labels, None, checkpoint_dir, decorrelate, self.disco)
        return self


class IdealizedAD(ClassifierMethod):
    """Idealized anomaly detector: signal-region data vs a perfectly modelled background in the signal region.

    The background template is a second table (e.g. an independent background-only sample); the method
    is the best any background-template method (CATHODE, SALAD, ...) can do.

    References:
        Hallin et al., arXiv:2109.00546; Metodiev, Nachman, Thaler, arXiv:1708.02949.
    """

    method: ClassVar[str] = "iad"

    def fit(
        self,
        table: Table,
        features: Sequence[str],
        *,
        background: Table,
        signal_region: str | Sequence[float],
        mass: str = "mjj",
        region: str | None = None,
        checkpoint_dir: str | Path | None = None,
    ) -> IdealizedAD:
        """Train data vs ``background`` (both restricted to ``signal_region`` of ``mass``)."""
        lo, hi = parse_signal_region(signal_region)
        data = resonant_split(table, features, mass, (lo, hi), region).x_sr
        reference = resonant_split(background, features, mass, (lo, hi), region).x_sr
        self.features_, self.region_ = list(features), region
        self.table_hash_ = table_hash(features, data, reference)
        x = np.concatenate([data, reference])
        labels = np.concatenate([np.ones(len(data)), np.zeros(len(reference))])
        self._fit_classifiers(x, labels, None, checkpoint_dir)
        return self


class CWoLa(ClassifierMethod):
    """CWoLa hunting: a classifier of signal-region vs sideband events, trained in ``folds`` folds.

    Events are split into ``folds`` folds; the classifier of fold ``k`` is trained on the other folds, so
    :attr:`out_of_fold_scores_` scores every training event with a model that never saw it (use those for
    the bump hunt on the same data). :meth:`score` and the ONNX export average all folds (for new events).

    References:
        Collins, Howe, Nachman, arXiv:1805.02664 and arXiv:1902.02634; Metodiev, Nachman, Thaler, arXiv:1708.02949.

    Example:
        >>> cwola = CWoLa(folds=5).fit(table, ["mj_min", "delta_mj", "tau21_j1", "tau21_j2"], signal_region="3300:3700")
        >>> scores = cwola.out_of_fold_scores_
    """

    method: ClassVar[str] = "cwola"

    def __init__(
        self,
        classifier: str = "mlp",
        hidden: Sequence[int] = (64, 64, 64),
        ensemble: int = 1,
        folds: int = 5,
        *,
        training: Training | dict | None = None,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        super().__init__(classifier, hidden, ensemble, training=training, seed=seed, device=device)
        if folds < 2:
            raise ConfigurationError(f"CWoLa hunting needs folds >= 2, got {folds}")
        self.folds = folds

    def fit(
        self,
        table: Table,
        features: Sequence[str],
        *,
        signal_region: str | Sequence[float],
        mass: str = "mjj",
        region: str | None = None,
        checkpoint_dir: str | Path | None = None,
    ) -> CWoLa:
        """Train SR (label 1) vs SB (label 0); sidebands are the events outside the signal region."""
        table = open_table(table)
        signal_region = parse_signal_region(signal_region)
        split = resonant_split(table, features, mass, signal_region, region)
        self.features_, self.region_ = list(features), region
        self.table_hash_ = table_hash([*features, mass], split.x, split.m[:, None])
        order = np.random.default_rng([self.seed, 7]).permutation(len(split.x))
        folds = np.array_split(order, self.folds)
        parts = self._fit_classifiers(split.x, split.in_sr.astype(np.float64), folds, checkpoint_dir)
        scores = np.empty(len(split.x), dtype=np.float32)
        for classifier, test in zip(self.classifiers_, parts, strict=True):
            with torch.no_grad():
                scores[test] = classifier.to("cpu")(torch.as_tensor(split.x[test])).numpy()
        rows = region_mask(table, region)
        self.out_of_fold_scores_ = scores if rows is None else _expand(scores, rows)
        return self


def _expand(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Values of the selected rows placed back into a full-length array (NaN elsewhere)."""
    full = np.full(len(rows), np.nan, dtype=np.float32)
    full[rows] = values
    return full


class BDT(CWoLa):
    """CWoLa hunting with boosted decision trees (HistGradientBoosting, ensemble of 5 seeds) as classifier.

    References:
        Finke et al., arXiv:2309.13111; Collins, Howe, Nachman, arXiv:1805.02664.
    """

    method: ClassVar[str] = "bdt"

    def __init__(
        self,
        classifier: str = "hgb",
        hidden: Sequence[int] = (64, 64, 64),
        ensemble: int = 5,
        folds: int = 5,
        *,
        training: Training | dict | None = None,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        super().__init__(classifier, hidden, ensemble, folds, training=training, seed=seed, device=device)
