"""Run :class:`processors.score_processor.AnomalyScoreProcessor` over a coffea fileset and write the outputs.

Two passes over the files, on the same distributed cluster:

1. the models' inputs and the region flags only: the scores of the control region (``mjj3500_sb`` by
   default: the sidebands of the 3.5 TeV window) set the score-bin edges, at the thresholds of a ladder of
   background efficiencies that includes the target (:func:`coffea_ad.selection.thresholds.score_edges`);
2. the full processor: features, scores, region × score × fit-variable histograms with those edges.

Given ``score_edges`` (from an earlier run's ``scores.json``), the first pass is skipped. Output folder::

    OUTDIR/histograms.root   as coffea-ad features, plus per region:
                             {score}_vs_{fit}      2-D: score × fit variable
                             {score}               the score distribution
                             {fit}_{score}_pass    the fit variable of the events above the threshold
    OUTDIR/scores.json       per model: threshold, target and measured control-region efficiency, edges,
                             and per dataset and region the events above and below the threshold
    OUTDIR/cutflow.json, OUTDIR/features/{dataset}.parquet  (with one score column per model)
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import awkward as ak
import hist
import numpy as np

from coffea_ad.errors import ConfigurationError
from coffea_ad.features import resolve_feature_names
from coffea_ad.onnx.scorer import OnnxScorer
from coffea_ad.paths import write_json
from coffea_ad.processing import FeatureResult, check_fileset, dask_client, read_fileset, run_processor, write_outputs
from coffea_ad.processing.histograms import score_histogram_name
from coffea_ad.selection.thresholds import passing, score_edges, threshold_at
from processors import AnomalyScoreProcessor

__all__ = ["DEFAULT_CONTROL_REGION", "run_scoring", "control_region_scores"]

logger = logging.getLogger(__name__)

DEFAULT_CONTROL_REGION = "mjj3500_sb"


def control_region_scores(result: FeatureResult, model: str, control_region: str) -> np.ndarray:
    """The scores of ``model`` of every event in ``control_region`` (all datasets), None dropped."""
    scores = []
    for dataset, table in result.tables.items():
        if control_region not in table.fields:
            flags = [field for field in table.fields if field.endswith(("_sr", "_sb", "_cr"))]
            raise ConfigurationError(
                f"control region {control_region!r} is not a region of dataset {dataset!r}; its regions: {flags}"
            )
        if len(table):
            scores.append(ak.to_numpy(ak.drop_none(table[model][table[control_region]])))
    return np.concatenate(scores) if scores else np.zeros(0)


def _threshold_summary(
    result: FeatureResult, model: str, fit_variable: str, control_region: str, target_efficiency: float
) -> dict[str, Any]:
    name = score_histogram_name(model, fit_variable)
    filled = [histograms[name] for histograms in result.histograms.values() if name in histograms]
    total = functools.reduce(lambda a, b: a + b, filled)
    for histograms in result.histograms.values():  # datasets without events: zero-filled, same binning
        histograms.setdefault(name, total.copy().reset())
    flags = list(total.axes["region"].metadata)
    threshold, efficiency = threshold_at(total, model, flags.index(control_region), target_efficiency)
    per_dataset = {}
    for dataset, histograms in result.histograms.items():
        histogram = histograms[name]
        above = passing(histogram, model, threshold)
        counts = {}
        for position, flag in enumerate(flags):
            region = histogram[{"region": hist.loc(position)}]
            counts[flag] = {
                "above": float(above[{"region": hist.loc(position)}].sum(flow=True).value),
                "all": float(region.sum(flow=True).value),
            }
        per_dataset[dataset] = counts
        histograms[model] = histogram.project("region", model)
        histograms[f"{fit_variable}_{model}_pass"] = above
    return {
        "threshold": threshold,
        "target_efficiency": target_efficiency,
        "control_region": control_region,
        "control_region_efficiency": efficiency,
        "edges": list(map(float, total.axes[model].edges)),
        "events": per_dataset,
    }


def run_scoring(
    fileset: str | Path | Mapping[str, Any],
    models: Mapping[str, str | Path],
    outdir: str | Path,
    *,
    control_region: str = DEFAULT_CONTROL_REGION,
    target_efficiency: float = 0.01,
    score_edges_by_model: Mapping[str, Sequence[float]] | None = None,
    fit_variable: str = "mjj",
    features: str | Sequence[str] = (),
    mode: str = "dask",
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool = False,
    **options: Any,
) -> tuple[FeatureResult, dict[str, Any], dict[str, Path]]:
    """Score every event of ``fileset`` with ``models`` (name -> ONNX path) and write the outputs.

    The threshold of each model keeps ``target_efficiency`` of the ``control_region`` events (all datasets
    together, as data would be). ``options`` go to :func:`coffea_ad.processing.run_processor`
    (``feature_config``, ``region_config``, ``step_size``, ``weight_branch``...). Returns the result, the
    content of ``scores.json`` and the paths written.
    """
    fileset = read_fileset(fileset)
    scorers = {name: OnnxScorer(path) for name, path in models.items()}  # refuses bad models before any work
    required = [fit_variable, *(feature for scorer in scorers.values() for feature in scorer.feature_names)]
    wanted = resolve_feature_names([*([features] if isinstance(features, str) else features), *required])
    paths = {name: scorer.path for name, scorer in scorers.items()}
    checked, skipped = check_fileset(fileset)
    with dask_client(scheduler, workers) as client:
        run = functools.partial(run_processor, checked, skipped, mode=mode, client=client, progress=progress, **options)
        if score_edges_by_model is None:
            first = run(
                features=resolve_feature_names(required),
                histogram_variables=(),
                make_processor=functools.partial(AnomalyScoreProcessor, paths, fit_variable=fit_variable),
            )
            score_edges_by_model = {
                name: score_edges(control_region_scores(first, name, control_region), target_efficiency, name=name)
                for name in scorers
            }
        result = run(
            features=wanted,
            make_processor=functools.partial(
                AnomalyScoreProcessor, paths, score_edges=score_edges_by_model, fit_variable=fit_variable
            ),
        )
    summary = {
        name: _threshold_summary(result, name, fit_variable, control_region, target_efficiency) for name in scorers
    }
    written = write_outputs(result, outdir)
    written["scores"] = Path(outdir) / "scores.json"
    write_json(written["scores"], summary)
    return result, summary, written
