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
from typing import Any, ClassVar

import numpy as np
from torch import nn

from coffea_ad.errors import ConfigurationError
from coffea_ad.features import FEATURE_SETS
from coffea_ad.models.base import Estimator, Training
from coffea_ad.models.classifiers import CLASSIFIERS, build_classifier, fit_classifier
from coffea_ad.models.data import RESONANT_INPUT_DEFAULTS, TrainingData

__all__ = ["DIJET_FEATURES", "ClassifierMethod", "Supervised", "IdealizedAD", "CWoLa", "BDT"]

DIJET_FEATURES: tuple[str, ...] = tuple(name for name in FEATURE_SETS["lhco"] if name != "mjj")
"""The default features of the resonant dijet methods: the LHC Olympics set without the resonant ``mjj``."""


class ClassifierMethod(Estimator):
    """Base of the methods whose score is a classifier probability.

    Arguments:
        classifier: ``"mlp"`` or ``"hgb"`` (scikit-learn HistGradientBoostingClassifier, converted to tensors).
        hidden: hidden layer widths of the MLP.
        ensemble: number of boosted-tree models averaged, each trained on its own fold split of repeated
            k-fold splits (MLPs average their ``keep_best`` best epochs).
        training: :class:`~coffea_ad.models.base.Training` of the network ``"classifier"`` (for ``hgb``:
            ``epochs`` = maximum boosting iterations, ``patience`` = iterations without improvement,
            ``validation_fraction``).
        folds: cross-training folds (``None``: the method's ``default_folds``; 1: a single model), see
            :mod:`coffea_ad.models.base`.
        seed: random seed (same seed, same model).
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.

    Default features: :data:`DIJET_FEATURES`.
    """

    networks: ClassVar[tuple[str, ...]] = ("classifier",)
    default_features: ClassVar[tuple[str, ...]] = DIJET_FEATURES
    _fitted_attributes: ClassVar[tuple[str, ...]] = ("classifier_shapes_",)

    def __init__(
        self,
        classifier: str = "mlp",
        hidden: Sequence[int] = (64, 64, 64),
        ensemble: int = 1,
        *,
        folds: int | None = None,
        training: Training | dict | None = None,
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        super().__init__(folds=folds, training=training, seed=seed, device=device)
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

    def _prepare(self, data: TrainingData, reference: TrainingData | None) -> None:
        self.classifier_shapes_ = []  # the classifiers come out of training (their shapes with them)

    def _fit_classifiers(
        self,
        x: np.ndarray,
        labels: np.ndarray,
        checkpoint_dir: str | Path | None,
        decorrelate: np.ndarray | None = None,
        disco: float = 0.0,
        sample_weight: np.ndarray | None = None,
    ) -> None:
        """Fit the classifier (network ``"classifier"``) on ``x`` and ``labels``: ``classifiers_[0]``."""
        fitted, shapes = fit_classifier(
            self,
            x,
            labels,
            name="classifier",
            checkpoint_dir=checkpoint_dir,
            decorrelate=decorrelate,
            disco=disco,
            sample_weight=sample_weight,
        )
        self.classifiers_ = nn.ModuleList([fitted])
        self.classifier_shapes_ = [shapes]

    def _scoring_module(self) -> nn.Module:
        self._check_fitted()
        return self.classifiers_[0].eval()


class Supervised(ClassifierMethod):
    """Fully supervised classifier, signal vs background with true labels: the upper reference.

    With ``disco`` > 0 (MLP only) the loss adds ``disco`` times the distance correlation between the output
    and the resonant variable ``mass`` on background events, which decorrelates the score from ``mjj``.

    References:
        Hallin et al., arXiv:2109.00546 (the supervised reference of the LHC Olympics R&D comparison);
        Kasieczka, Shih, arXiv:2001.05310 (DisCo).

    Example:
        >>> Supervised(training={"epochs": 5}).fit(table, features, label="is_signal").score(table)

    Inputs: ``label`` (default ``is_signal``: 1 = signal), ``mass`` (the DisCo variable, needed with ``disco``).
    """

    method: ClassVar[str] = "supervised"
    accepts: ClassVar[tuple[str, ...]] = ("label", "mass")
    input_defaults: ClassVar[dict[str, str]] = {"label": "is_signal"}

    def __init__(
        self,
        classifier: str = "mlp",
        hidden: Sequence[int] = (64, 64, 64),
        ensemble: int = 1,
        disco: float = 0.0,
        *,
        folds: int | None = None,
        training: Training | dict | None = None,
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        super().__init__(classifier, hidden, ensemble, folds=folds, training=training, seed=seed, device=device)
        if disco < 0:
            raise ConfigurationError(f"disco must be >= 0, got {disco}")
        if disco > 0 and classifier != "mlp":
            raise ConfigurationError("the DisCo term needs classifier='mlp'")
        self.disco = disco

    def _prepare(self, data: TrainingData, reference: TrainingData | None) -> None:
        super()._prepare(data, reference)
        if self.disco > 0 and data.condition is None:
            raise ConfigurationError(f"method {self.method!r} with disco > 0 needs mass (--mass)")

    def _train(self, data: TrainingData, reference: TrainingData | None, checkpoint_dir: str | Path | None) -> None:
        decorrelate = data.condition[:, 0] if self.disco > 0 else None
        self._fit_classifiers(data.x, data.label, checkpoint_dir, decorrelate=decorrelate, disco=self.disco)


class IdealizedAD(ClassifierMethod):
    """Idealized anomaly detector: signal-region data vs a perfectly modelled background in the signal region.

    The background template is a second table (e.g. an independent background-only sample); the method
    is the best any background-template method (CATHODE, SALAD, ...) can do. Inputs: ``background``,
    ``signal_region``, ``mass`` (default ``mjj``).

    References:
        Hallin et al., arXiv:2109.00546; Metodiev, Nachman, Thaler, arXiv:1708.02949.
    """

    method: ClassVar[str] = "iad"
    requires: ClassVar[tuple[str, ...]] = ("background",)
    accepts: ClassVar[tuple[str, ...]] = ("signal_region", "mass")
    input_defaults: ClassVar[dict[str, Any]] = RESONANT_INPUT_DEFAULTS
    default_folds: ClassVar[int] = 5

    def _train(self, data: TrainingData, reference: TrainingData | None, checkpoint_dir: str | Path | None) -> None:
        """Train signal-region data (label 1) vs the signal-region ``background`` (label 0)."""
        x = np.concatenate([data.x_sr, reference.x_sr])
        labels = np.concatenate([np.ones(len(data.x_sr)), np.zeros(len(reference.x_sr))])
        self._fit_classifiers(x, labels, checkpoint_dir)


class CWoLa(ClassifierMethod):
    """CWoLa hunting: a classifier of signal-region vs sideband events.

    Cross-trained by default (``folds=None``: 5 folds, see :mod:`coffea_ad.models.base`): the classifier of
    fold ``k`` is trained without the events of fold ``k``, and :meth:`score`, the exported ONNX and inline
    scoring select each event's fold model, so the bump hunt on the training data itself uses scores of
    models that never saw the events. Inputs: ``signal_region``, ``mass`` (default ``mjj``).

    References:
        Collins, Howe, Nachman, arXiv:1805.02664 and arXiv:1902.02634; Metodiev, Nachman, Thaler, arXiv:1708.02949.

    Example:
        >>> cwola = CWoLa().fit(table, ["mj_min", "delta_mj", "tau21_j1", "tau21_j2"], signal_region="3300:3700")
        >>> scores = cwola.score(table)  # every event by the fold model that did not see it
    """

    method: ClassVar[str] = "cwola"
    accepts: ClassVar[tuple[str, ...]] = ("signal_region", "mass")
    input_defaults: ClassVar[dict[str, Any]] = RESONANT_INPUT_DEFAULTS
    default_folds: ClassVar[int] = 5

    def _train(self, data: TrainingData, reference: TrainingData | None, checkpoint_dir: str | Path | None) -> None:
        """Train SR (label 1) vs SB (label 0); sidebands are the events outside the signal region."""
        self._fit_classifiers(data.x, data.in_signal_region.astype(np.float64), checkpoint_dir)


class BDT(CWoLa):
    """CWoLa hunting with boosted decision trees as classifier: 5 HistGradientBoosting models, one per fold of a
    5-fold split (each trained on four folds, early-stopped on the fifth), averaged.

    References:
        Finke et al., arXiv:2309.13111; Collins, Howe, Nachman, arXiv:1805.02664.
    """

    method: ClassVar[str] = "bdt"

    def __init__(
        self,
        classifier: str = "hgb",
        hidden: Sequence[int] = (64, 64, 64),
        ensemble: int = 5,
        *,
        folds: int | None = None,
        training: Training | dict | None = None,
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        super().__init__(classifier, hidden, ensemble, folds=folds, training=training, seed=seed, device=device)
