"""AnomalyScoreProcessor: the feature processor plus anomaly-score columns and histograms in bins of score.

Thin glue around :class:`coffea_ad.onnx.scorer.OnnxScorer` and :mod:`coffea_ad.processing.histograms`: every event of
the per-event table gains one column per model (None where an input feature is missing), and, for each
model given score-bin edges, a histogram region × score × fit variable (``mjj`` by default) is filled, from
which :mod:`coffea_ad.selection.thresholds` reads the threshold at a target control-region efficiency and the fit
variable above it. :func:`coffea_ad.workflow.score.run_scoring` drives it over a fileset.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import awkward as ak

from coffea_ad.errors import ConfigurationError
from coffea_ad.features import resolve_feature_names
from coffea_ad.processing.histograms import fill_score_histograms, histogram_rows_like
from coffea_ad.onnx.scorer import OnnxScorer
from coffea_ad.selection.thresholds import check_edges
from processors.feature_processor import AnomalyFeatureProcessor

__all__ = ["AnomalyScoreProcessor"]


class AnomalyScoreProcessor(AnomalyFeatureProcessor):
    """Features, region flags and anomaly scores of every event, with histograms in bins of score.

    Arguments:
        models: score name -> ONNX model path or :class:`~coffea_ad.onnx.scorer.OnnxScorer` (one column per
            model, named by the score name). Pass scorers to score several runs with the very same models: a
            scorer carries its model, a path is read again here.
        score_edges: score name -> increasing score-bin edges; a model listed here gets a histogram
            region × score × ``fit_variable``. Models without edges only add their table column.
        fit_variable: the variable fitted after the cut (default ``mjj``).
        features: further features and feature sets for the table and histograms (the models' inputs and
            ``fit_variable`` are always computed, and never optional).
        **options: as :class:`~processors.feature_processor.AnomalyFeatureProcessor` (``feature_config``,
            ``region_config``, ``weight_branch``, ...).
    """

    def __init__(
        self,
        models: Mapping[str, str | OnnxScorer],
        *,
        score_edges: Mapping[str, Sequence[float]] | None = None,
        fit_variable: str = "mjj",
        features: str | Iterable[str] = (),
        **options: Any,
    ) -> None:
        if not models:
            raise ConfigurationError("AnomalyScoreProcessor needs at least one model")
        super().__init__(features or fit_variable, **options)
        self.scorers = {
            name: model if isinstance(model, OnnxScorer) else OnnxScorer(model, feature_config=self.feature_config)
            for name, model in models.items()
        }
        unknown = sorted(set(score_edges or {}) - set(self.scorers))
        if unknown:
            raise ConfigurationError(f"score edges given for {unknown}, which are not models ({list(self.scorers)})")
        self.score_edges = {name: check_edges(edges, name) for name, edges in (score_edges or {}).items()}
        self.fit_variable = fit_variable
        self.required = resolve_feature_names(
            [
                fit_variable,
                *(name for scorer in self.scorers.values() if scorer.prepare is None for name in scorer.feature_names),
            ]
        )
        requested = resolve_feature_names(self.features) if self.features else []
        self.features = tuple(dict.fromkeys([*requested, *self.required]))

    def extra_fields(self, events: Any, features: Any, rows: Any) -> dict[str, Any]:
        missing = [name for name in self.required if name not in features.fields]
        if missing:
            raise ConfigurationError(f"the models need features {missing}, which this input cannot provide")
        scores = {
            name: scorer.score_columns(*scorer.input_columns(features, events))
            for name, scorer in self.scorers.items()
        }
        columns = {self.fit_variable: features[self.fit_variable], **scores}
        return {
            "scores": ak.zip(scores),
            "score_rows": histogram_rows_like(rows, columns),
        }

    def chunk_table(self, per_event: Any) -> Any:
        """The feature table with one score column per model."""
        table = per_event["table"]
        for name in self.scorers:
            table = ak.with_field(table, per_event["scores"][name], name)
        return table

    def outputs(self, per_event: Any, flags: list[str], dask_mode: bool) -> dict[str, Any]:
        output = super().outputs(per_event, flags, dask_mode)
        if self.score_edges:
            output["histograms"].update(
                fill_score_histograms(
                    per_event["score_rows"], flags, self.score_edges, self.fit_variable, dask=dask_mode
                )
            )
        return output
