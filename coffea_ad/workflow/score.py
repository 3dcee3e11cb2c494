"""``coffea-ad score``: run :class:`processors.score_processor.AnomalyScoreProcessor` over a coffea fileset.

Two passes over the files, on the same distributed cluster:

1. the models' inputs and the region flags only: the scores of the control region (``mjj3500_sb`` by
   default: the sidebands of the 3.5 TeV window; any region flag of the feature tables, e.g. ``deta_cr``)
   set the score-bin edges, at the thresholds of a ladder of background efficiencies that includes the
   target (:func:`coffea_ad.selection.thresholds.score_edges`);
2. the full processor: features, scores, region × score × mass histograms with those edges.

The features that the control and signal regions are built from (``mjj`` for ``mjj3500_sb``, ``deta_jj``
for ``deta_cr``) are always computed, whatever ``features`` says. Given ``score_edges`` (from an earlier
run's ``scores.json``), the first pass is skipped. Output folder::

    OUTDIR/histograms.root   as coffea-ad features, plus per region:
                             {score}_vs_{mass}     2-D: score × mass
                             {score}               the score distribution
                             {mass}_{score}_pass   the mass of the events above the threshold
    OUTDIR/scores.json       per model: threshold, target and measured control-region efficiency, edges,
                             mass, the signal region (which ``coffea-ad fit`` fits by default), and per
                             dataset and region the events above and below the threshold
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
from coffea_ad.features import FEATURES, resolve_feature_names, select_features
from coffea_ad.features.regions import RegionConfig, flag_names, partition_layout
from coffea_ad.onnx.scorer import OnnxScorer
from coffea_ad.paths import write_json
from coffea_ad.processing import FeatureResult, check_fileset, dask_client, read_fileset, run_processor, write_outputs
from coffea_ad.processing.histograms import score_histogram_name
from coffea_ad.selection.thresholds import passing, score_edges, threshold_at
from processors import AnomalyScoreProcessor

__all__ = [
    "DEFAULT_CONTROL_REGION",
    "DEFAULT_SIGNAL_REGION",
    "region_features",
    "run_scoring",
    "control_region_scores",
]

logger = logging.getLogger(__name__)

DEFAULT_CONTROL_REGION = "mjj3500_sb"
#: The region ``coffea-ad fit`` fits by default: |Δη_jj| < 1.3, over the whole mjj range.
DEFAULT_SIGNAL_REGION = "deta_sr"


def region_features(flag: str, config: RegionConfig | None = None, *, option: str = "region") -> list[str]:
    """The features the partition of region ``flag`` is built from (``deta_cr`` -> ``["deta_jj"]``).

    A name that is no region flag raises, listing the flags (``option`` names the argument in the message).
    """
    every = list(FEATURES)
    layout = partition_layout(every, config)
    partition = next((name for name, regions in layout.items() if flag in (f"{name}_{r}" for r in regions)), None)
    if partition is None:
        flags = ", ".join(flag_names(layout))
        raise ConfigurationError(f"{option} {flag!r} is not a region flag; the flags are {flags}")
    # A feature is needed when the partition disappears without it.
    return [name for name in every if partition not in partition_layout([n for n in every if n != name], config)]


def _not_optional(optional: Any, wanted: Sequence[str], required: Sequence[str]) -> Any:
    """``optional`` (True, False or names) without the features the models and regions need."""
    if optional is False:
        return ()
    names = wanted if optional is True else resolve_feature_names(optional)
    return [name for name in names if name not in required]


def _check_model_inputs(checked: Mapping[str, Any], scorers: Mapping[str, OnnxScorer], config: Any) -> None:
    """Refuse, before any work, a file that lacks a branch one of the models' inputs is computed from, naming
    the model (a model input cannot be left out as an optional feature can)."""
    consumers: dict[str, list[str]] = {}
    for name, scorer in scorers.items():
        for feature in scorer.feature_names if scorer.prepare is None else ():
            consumers.setdefault(feature, []).append(f"{name!r} ({scorer.path})")
    inputs_of = {feature: ("model " if len(models) == 1 else "models ") + " and ".join(models)
                 for feature, models in consumers.items()}
    for dataset, files in checked.items():
        for path, branches in files.file_branches.items():
            source = f"{path} (dataset {dataset!r})"
            select_features(list(inputs_of), branches, config=config, source=source, inputs_of=inputs_of)


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
    result: FeatureResult, model: str, mass: str, regions: tuple[str, str], target_efficiency: float
) -> dict[str, Any]:
    control_region, signal_region = regions
    name = score_histogram_name(model, mass)
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
        histograms[f"{mass}_{model}_pass"] = above
    return {
        "threshold": threshold,
        "target_efficiency": target_efficiency,
        "mass": mass,
        "signal_region": signal_region,
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
    signal_region: str = DEFAULT_SIGNAL_REGION,
    target_efficiency: float = 0.01,
    score_edges_by_model: Mapping[str, Sequence[float]] | None = None,
    mass: str = "mjj",
    features: str | Sequence[str] = (),
    optional: bool | str | Sequence[str] = (),
    mode: str = "dask",
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool = False,
    **options: Any,
) -> tuple[FeatureResult, dict[str, Any], dict[str, Path]]:
    """Score every event of ``fileset`` with ``models`` (name -> ONNX path) and write the outputs.

    The threshold of each model keeps ``target_efficiency`` of the ``control_region`` events (all datasets
    together, as data would be); ``signal_region`` is recorded in ``scores.json`` for ``coffea-ad fit``. Both
    are region flags (``{partition}_{region}``). ``features`` are further features for the tables and
    histograms, of which ``optional`` ones may be left out when a branch is absent (never the models' inputs,
    ``mass`` or the regions' features). ``options`` go to :func:`coffea_ad.processing.run_processor`
    (``feature_config``, ``region_config``, ``step_size``, ``weight_branch``...). Returns the result, the
    content of ``scores.json`` and the paths written.
    """
    fileset = read_fileset(fileset)
    scorers = {name: OnnxScorer(path) for name, path in models.items()}  # refuses bad models before any work
    region_config = options.get("region_config")
    required = resolve_feature_names(
        [
            mass,
            *(feature for scorer in scorers.values() for feature in scorer.feature_names),
            *region_features(control_region, region_config, option="control region"),
            *region_features(signal_region, region_config, option="signal region"),
        ]
    )
    wanted = resolve_feature_names([*([features] if isinstance(features, str) else features), *required])
    options["optional"] = _not_optional(optional, wanted, required)
    paths = {name: scorer.path for name, scorer in scorers.items()}
    checked, skipped = check_fileset(fileset)
    _check_model_inputs(checked, scorers, options.get("feature_config"))
    with dask_client(scheduler, workers) as client:
        run = functools.partial(run_processor, checked, skipped, mode=mode, client=client, progress=progress, **options)
        if score_edges_by_model is None:
            first = run(
                features=required,
                histogram_variables=(),
                make_processor=functools.partial(AnomalyScoreProcessor, paths, fit_variable=mass),
            )
            score_edges_by_model = {
                name: score_edges(control_region_scores(first, name, control_region), target_efficiency, name=name)
                for name in scorers
            }
        result = run(
            features=wanted,
            make_processor=functools.partial(
                AnomalyScoreProcessor, paths, score_edges=score_edges_by_model, fit_variable=mass
            ),
        )
    regions = (control_region, signal_region)
    summary = {name: _threshold_summary(result, name, mass, regions, target_efficiency) for name in scorers}
    written = write_outputs(result, outdir)
    written["scores"] = Path(outdir) / "scores.json"
    write_json(written["scores"], summary)
    return result, summary, written
