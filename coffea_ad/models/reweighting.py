"""Simulation-assisted methods: a classifier reweights simulation to data where no signal is expected, and
the reweighted simulation is the background template of a data-vs-template classifier in the signal region.

* :class:`SALAD` (resonant): reweighting learned in the ``mjj`` sidebands, conditioned on ``mjj``;
* :class:`Reweight` (non-resonant): reweighting learned in a control region of context variables
  ``c = (HT, MET)``, conditioned on ``c``, the signal region being a boolean flag of the table.

References:
    Andreassen, Nachman, Shih, "Simulation Assisted Likelihood-free Anomaly Detection" (SALAD),
    arXiv:2001.05001; Bai, Mastandrea, Nachman, "Non-resonant Anomaly Detection with Background
    Extrapolation", arXiv:2311.12924 (Reweight, Generate, Morph with context HT and MET).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from coffea_ad.features import FEATURE_SETS
from coffea_ad.models.cathode import NONRESONANT_FEATURES
from coffea_ad.models.classifiers import build_classifier, fit_classifier
from coffea_ad.models.data import RESONANT_INPUT_DEFAULTS, TrainingData
from coffea_ad.models.weak import ClassifierMethod
from coffea_ad.processing.tables import Table, feature_matrix, open_table

__all__ = ["SALAD", "Reweight"]

logger = logging.getLogger(__name__)

_MAX_WEIGHT = 100.0


def _with_condition(data: TrainingData, signal_region: bool) -> np.ndarray:
    rows = data.in_signal_region if signal_region else ~data.in_signal_region
    return np.concatenate([data.x[rows], data.condition[rows]], axis=1)


class SALAD(ClassifierMethod):
    """SALAD: reweight simulation to data in the sidebands with a classifier on ``(x, mjj)``, then train
    signal-region data vs the reweighted signal-region simulation on ``x``; the second classifier is the score.

    ``fit(data, features, simulation=..., signal_region=...)``; the simulation table has the same columns.
    Weights ``p / (1 - p)`` of the (balanced) reweighting classifier are clipped at 100. Networks:
    ``"reweighter"`` and ``"classifier"``. Inputs: ``simulation``, ``signal_region``, ``mass`` (default ``mjj``).

    References:
        Andreassen, Nachman, Shih, arXiv:2001.05001.
    """

    method: ClassVar[str] = "salad"
    networks: ClassVar[tuple[str, ...]] = ("reweighter", "classifier")
    requires: ClassVar[tuple[str, ...]] = ("simulation",)
    accepts: ClassVar[tuple[str, ...]] = ("signal_region", "mass")
    input_defaults: ClassVar[dict[str, Any]] = RESONANT_INPUT_DEFAULTS
    _fitted_attributes: ClassVar[tuple[str, ...]] = ("classifier_shapes_", "reweighter_shapes_")
    default_folds: ClassVar[int] = 5

    def _prepare(self, data: TrainingData, reference: TrainingData | None) -> None:
        super()._prepare(data, reference)
        self.reweighter_shapes_ = []

    def _build(self) -> None:
        super()._build()
        self.reweighter_ = build_classifier(
            self.classifier, len(self.features_) + len(self.conditions_), self.hidden, self.reweighter_shapes_
        )

    def _modules(self) -> dict[str, nn.Module]:
        return {"classifiers": self.classifiers_, "reweighter": self.reweighter_}

    def weights(self, x_with_context: np.ndarray) -> np.ndarray:
        """Reweighting factors of simulated events (columns: features, then the condition columns)."""
        self._check_fitted()
        with torch.no_grad():
            p = self.reweighter_.to("cpu")(torch.as_tensor(x_with_context, dtype=torch.float32)).double().numpy()
        return np.clip(p / np.clip(1.0 - p, 1e-12, None), 0.0, _MAX_WEIGHT)

    def _train(self, data: TrainingData, reference: TrainingData | None, checkpoint_dir: str | Path | None) -> None:
        """Reweight the simulation to data outside the signal region; classify them in the signal region."""
        control = np.concatenate([_with_condition(data, False), _with_condition(reference, False)])
        labels = np.concatenate([np.ones(len(data.x_sb)), np.zeros(len(reference.x_sb))])
        self.reweighter_, self.reweighter_shapes_ = fit_classifier(
            self, control, labels, network="reweighter", name="reweighter", checkpoint_dir=checkpoint_dir, salt=101
        )
        weights = self.weights(_with_condition(reference, True))
        logger.info("%s: SR simulation weights mean %.3g, max %.3g", self.method, weights.mean(), weights.max())
        x = np.concatenate([data.x_sr, reference.x_sr])
        labels = np.concatenate([np.ones(len(data.x_sr)), np.zeros(len(reference.x_sr))])
        sample_weight = np.concatenate([np.ones(len(data.x_sr)), weights])
        self._fit_classifiers(x, labels, checkpoint_dir, sample_weight=sample_weight)


class Reweight(SALAD):
    """Non-resonant Reweight: SALAD with context variables ``c`` (default HT, MET) in place of ``mjj`` and a
    boolean signal-region flag in place of the ``mjj`` window (control region = the rest).

    Inputs: ``simulation``, ``signal_flag``, ``context`` (default ``ht, met``). Default features: the
    ``nonresonant`` set.

    References:
        Bai, Mastandrea, Nachman, arXiv:2311.12924; Andreassen, Nachman, Shih, arXiv:2001.05001.
    """

    method: ClassVar[str] = "reweight"
    requires: ClassVar[tuple[str, ...]] = ("simulation", "signal_flag")
    accepts: ClassVar[tuple[str, ...]] = ("context",)
    input_defaults: ClassVar[dict[str, tuple[str, ...]]] = {"context": FEATURE_SETS["context"]}
    default_features: ClassVar[tuple[str, ...]] = NONRESONANT_FEATURES

    def background_template(
        self, simulation: Table, context: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The background Reweight predicts in a region: the simulated events of ``simulation`` (a table with
        the features and :attr:`conditions_` columns) with their reweighting factors, as ``(features,
        weights)``. ``context`` is not used: the events keep their own context."""
        simulation = open_table(simulation)
        x_sim = feature_matrix(simulation, self.features_)
        c_sim = feature_matrix(simulation, self.conditions_)
        return x_sim, self.weights(np.concatenate([x_sim, c_sim], axis=1))
