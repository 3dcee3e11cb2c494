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
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from coffea_ad.models.classifiers import build_classifier, fit_classifier
from coffea_ad.models.data import ResonantSplit, Table, context_split, parse_signal_region, resonant_split, table_hash
from coffea_ad.models.weak import ClassifierMethod

__all__ = ["SALAD", "Reweight"]

logger = logging.getLogger(__name__)

_MAX_WEIGHT = 100.0


def _with_context(split: ResonantSplit, signal_region: bool) -> np.ndarray:
    rows = split.in_sr if signal_region else ~split.in_sr
    return np.concatenate([split.x[rows], split.m[rows].reshape(int(rows.sum()), -1)], axis=1)


class SALAD(ClassifierMethod):
    """SALAD: reweight simulation to data in the sidebands with a classifier on ``(x, mjj)``, then train
    signal-region data vs the reweighted signal-region simulation on ``x``; the second classifier is the score.

    ``fit(data, features, simulation=..., signal_region=...)``; the simulation table has the same columns.
    Weights ``p / (1 - p)`` of the (balanced) reweighting classifier are clipped at 100.

    References:
        Andreassen, Nachman, Shih, arXiv:2001.05001.
    """

    method: ClassVar[str] = "salad"
    _fitted_attributes: ClassVar[tuple[str, ...]] = ("classifier_shapes_", "reweighter_shapes_", "context_")

    def _build(self) -> None:
        super()._build()
        self.reweighter_ = build_classifier(
            self.classifier, len(self.features_) + len(self.context_), self.hidden, self.reweighter_shapes_
        )

    def _modules(self) -> dict[str, nn.Module]:
        return {"classifiers": self.classifiers_, "reweighter": self.reweighter_}

    def weights(self, x_with_context: np.ndarray) -> np.ndarray:
        """Reweighting factors of simulated events (columns: features, then context)."""
        self._check_fitted()
        with torch.no_grad():
            p = self.reweighter_.to("cpu")(torch.as_tensor(x_with_context, dtype=torch.float32)).double().numpy()
        return np.clip(p / np.clip(1.0 - p, 1e-12, None), 0.0, _MAX_WEIGHT)

    def _fit_splits(self, data: ResonantSplit, simulation: ResonantSplit, checkpoint_dir: str | Path | None) -> None:
        self.table_hash_ = table_hash(self.features_ + self.context_, data.x, data.m, simulation.x, simulation.m)
        control = np.concatenate([_with_context(data, False), _with_context(simulation, False)])
        labels = np.concatenate([np.ones(int((~data.in_sr).sum())), np.zeros(int((~simulation.in_sr).sum()))])
        with self._seeded():
            self.reweighter_, self.reweighter_shapes_, history = fit_classifier(
                self,
                control,
                labels,
                kind=self.classifier,
                hidden=self.hidden,
                name="reweighter",
                checkpoint_dir=checkpoint_dir,
                salt=101,
                ensemble=self.ensemble,
            )
        self.history_ = {"reweighter": history}
        weights = self.weights(_with_context(simulation, True))
        logger.info("%s: SR simulation weights mean %.3g, max %.3g", self.method, weights.mean(), weights.max())
        x = np.concatenate([data.x_sr, simulation.x_sr])
        labels = np.concatenate([np.ones(len(data.x_sr)), np.zeros(len(simulation.x_sr))])
        sample_weight = np.concatenate([np.ones(len(data.x_sr)), weights])
        self._fit_classifiers(x, labels, None, checkpoint_dir, sample_weight=sample_weight)

    def fit(
        self,
        table: Table,
        features: Sequence[str],
        *,
        simulation: Table,
        signal_region: str | Sequence[float],
        mass: str = "mjj",
        region: str | None = None,
        checkpoint_dir: str | Path | None = None,
    ) -> SALAD:
        """Reweight ``simulation`` to ``table`` in the sidebands of ``mass``; classify them in the signal region."""
        bounds = parse_signal_region(signal_region)
        data = resonant_split(table, features, mass, bounds, region)
        simulated = resonant_split(simulation, features, mass, bounds, region)
        self.features_, self.region_, self.context_ = list(features), region, [mass]
        self._fit_splits(data, simulated, checkpoint_dir)
        return self


class Reweight(SALAD):
    """Non-resonant Reweight: SALAD with context variables ``c`` (default HT, MET) in place of ``mjj`` and a
    boolean signal-region flag in place of the ``mjj`` window (control region = the rest).

    References:
        Bai, Mastandrea, Nachman, arXiv:2311.12924; Andreassen, Nachman, Shih, arXiv:2001.05001.
    """

    method: ClassVar[str] = "reweight"

    def fit(
        self,
        table: Table,
        features: Sequence[str],
        *,
        simulation: Table,
        signal_flag: str,
        context: Sequence[str] = ("ht", "met"),
        region: str | None = None,
        checkpoint_dir: str | Path | None = None,
    ) -> Reweight:
        """Reweight ``simulation`` to ``table`` in the control region given ``context``; classify in the SR."""
        data = context_split(table, features, context, signal_flag, region)
        simulated = context_split(simulation, features, context, signal_flag, region)
        self.features_, self.region_, self.context_ = list(features), region, list(context)
        self._fit_splits(data, simulated, checkpoint_dir)
        return self
