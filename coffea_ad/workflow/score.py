"""``coffea-ad score``: run :class:`processors.score_processor.AnomalyScoreProcessor` over a coffea fileset.

Two passes over the files, on the same distributed cluster:

1. the models' inputs and the region flags only: each task returns just the scores of its control-region
   events (``mjj3500_sb`` by default: the sidebands of the 3.5 TeV window; any boolean region flag of the
   processor's tables, e.g. ``deta_cr``), which set the score-bin edges at the thresholds of a ladder of
   background efficiencies that includes the target (:func:`coffea_ad.selection.thresholds.score_edges`);
2. the full processor: features, scores, region × score × mass histograms with those edges; the per-event
   tables are written by the workers (``tables="workers"``), so the client never holds a table.

Without a control region (``control_region=None``: a sample such as tt̄ has no event in the 3.5 TeV
sidebands), there is no threshold: the edges come from the same ladder over every scored event, and the
outputs are the score columns and the score histograms only (no ``{mass}_{score}_pass``); ``scores.json``
then records ``"threshold": null`` and ``coffea-ad fit`` refuses the file. The default stays
``mjj3500_sb`` whatever the models were trained on: a cut for the dijet search is set in a sideband of the
data, not in the training region, and switching it off is said explicitly.

The features that the control and signal regions are built from (``mjj`` for ``mjj3500_sb``, ``deta_jj``
for ``deta_cr``) are always computed, whatever ``features`` says. Given ``score_edges`` (from an earlier
run's ``scores.json``), the first pass is skipped. Output folder::

    OUTDIR/histograms.root   as coffea-ad features, plus per region:
                             {score}_vs_{mass}     2-D: score × mass
                             {score}               the score distribution
                             {mass}_{score}_pass   the mass of the events above the threshold
    OUTDIR/scores.json       per model: threshold, target and measured control-region efficiency, edges,
                             mass, the signal region (which ``coffea-ad fit`` fits by default), and per
                             dataset and region the events above the threshold and in all
    OUTDIR/cutflow.json, OUTDIR/features/{dataset}.parquet  (with one score column per model; a folder
                             of parts written by the workers, see :mod:`coffea_ad.processing.runner`)
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import awkward as ak
import hist
import numpy as np

from coffea_ad.errors import ConfigurationError
from coffea_ad.features import FEATURES, resolve_feature_names, select_features
from coffea_ad.features.regions import RegionConfig, partition_layout
from coffea_ad.onnx.scorer import OnnxScorer
from coffea_ad.paths import write_json
from coffea_ad.processing import (
    FeatureResult,
    check_fileset,
    check_inputs,
    dask_client,
    log_skipped_chunks,
    read_fileset,
    run_processor,
    write_outputs,
)
from coffea_ad.processing.histograms import score_histogram_name
from coffea_ad.selection.thresholds import EFFICIENCY_LADDER, passing, score_edges, threshold_at
from processors import AnomalyScoreProcessor

__all__ = [
    "DEFAULT_CONTROL_REGION",
    "DEFAULT_SIGNAL_REGION",
    "region_features",
    "run_scoring",
    "control_region_rows",
    "control_region_scores",
]

logger = logging.getLogger(__name__)

DEFAULT_CONTROL_REGION = "mjj3500_sb"
#: The region ``coffea-ad fit`` fits by default: |Δη_jj| < 1.3, over the whole mjj range.
DEFAULT_SIGNAL_REGION = "deta_sr"


def region_features(flag: str, config: RegionConfig | None = None) -> list[str]:
    """The features the partition of region ``flag`` is built from (``deta_cr`` -> ``["deta_jj"]``).

    A flag that is none of :mod:`coffea_ad.features.regions` (one a user's processor adds) needs no feature:
    it is checked against the tables of the run (:func:`control_region_rows`).
    """
    every = list(FEATURES)
    layout = partition_layout(every, config)
    partition = next((name for name, regions in layout.items() if flag in (f"{name}_{r}" for r in regions)), None)
    if partition is None:
        return []
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


def _log_one_pass_chunks(first: Sequence[Any], second: Sequence[Any]) -> None:
    """Warn about a chunk that a read error skipped in one of the two passes only (the second pass's chunks are
    in the result and ``cutflow.json``; this says what the thresholds missed or kept)."""
    def key(chunk: Any) -> tuple[str, str, int, int]:
        return chunk.dataset, chunk.path, chunk.entry_start, chunk.entry_stop

    first_keys, second_keys = {key(chunk) for chunk in first}, {key(chunk) for chunk in second}
    for chunk in first:
        if key(chunk) not in second_keys:
            logger.warning("skipped %s in the first pass only: the thresholds were measured without these entries, "
                           "which the histograms and tables hold", chunk.describe())
    for chunk in second:
        if key(chunk) not in first_keys:
            logger.warning("entries %d-%d of %s were skipped in the second pass only: the thresholds were measured "
                           "with them, the histograms and tables lack them", chunk.entry_start, chunk.entry_stop,
                           chunk.path)


def _boolean_fields(table: ak.Array) -> list[str]:
    return [name for name in table.fields if str(table[name].type.content).endswith("bool")]


def control_region_rows(table: ak.Array, *, models: Sequence[str], control_region: str | None) -> ak.Array:
    """The score columns of ``models`` of the rows in ``control_region`` (a boolean column; None: every row).

    What each task of the first pass returns instead of its table (a ``reduce_table`` of
    :func:`coffea_ad.processing.run_processor`): a few bytes per control-region event.
    """
    if control_region is not None:
        if control_region not in _boolean_fields(table):
            raise ConfigurationError(
                f"control region {control_region!r} is not a boolean column of the tables; its boolean columns "
                f"(region flags): {', '.join(_boolean_fields(table))}"
            )
        table = table[table[control_region]]
    return table[list(models)]


def control_region_scores(result: FeatureResult, model: str) -> np.ndarray:
    """The scores of ``model`` in the tables of ``result`` (all datasets), None dropped: the control-region
    scores of a first pass reduced by :func:`control_region_rows`."""
    scores = [ak.to_numpy(ak.drop_none(table[model])) for table in result.tables.values() if len(table)]
    return np.concatenate(scores) if scores else np.zeros(0)


def _edges(scores: np.ndarray, model: str, control_region: str | None, target_efficiency: float) -> np.ndarray:
    """Score-bin edges from the first pass: the efficiency ladder of the control region, or of every event."""
    if control_region is not None:
        if not np.isfinite(scores).any():
            raise ConfigurationError(
                f"no event of control region {control_region!r} has a {model} score: cannot set its threshold; "
                "choose another control region, or none to write the scores without a threshold"
            )
        return score_edges(scores, target_efficiency, name=model)
    if not np.isfinite(scores).any():
        raise ConfigurationError(f"no event of the fileset has a {model} score (its inputs are missing in all)")
    return score_edges(scores, EFFICIENCY_LADDER[0], name=model)


def _threshold_summary(
    result: FeatureResult, model: str, mass: str, regions: tuple[str | None, str], target_efficiency: float
) -> dict[str, Any]:
    """The ``scores.json`` entry of ``model``; adds the ``{model}`` and ``{mass}_{model}_pass`` histograms."""
    control_region, signal_region = regions
    name = score_histogram_name(model, mass)
    filled = [histograms[name] for histograms in result.histograms.values() if name in histograms]
    total = functools.reduce(lambda a, b: a + b, filled)
    for histograms in result.histograms.values():  # datasets without events: zero-filled, same binning
        histograms.setdefault(name, total.copy().reset())
    flags = list(total.axes["region"].metadata)
    if signal_region not in flags:
        raise ConfigurationError(f"signal region {signal_region!r} is not a region flag of the run: {', '.join(flags)}")
    threshold = efficiency = None
    if control_region is not None:
        if control_region not in flags:
            raise ConfigurationError(
                f"control region {control_region!r} is a column of the tables but no region of the histograms "
                f"({', '.join(flags)}): its threshold cannot be measured"
            )
        threshold, efficiency = threshold_at(total, model, flags.index(control_region), target_efficiency)
    per_dataset = {}
    for dataset, histograms in result.histograms.items():
        histogram = histograms[name]
        above = None if threshold is None else passing(histogram, model, threshold)
        counts = {}
        for position, flag in enumerate(flags):
            region = {"region": hist.loc(position)}
            counts[flag] = {"all": float(histogram[region].sum(flow=True).value)}
            if above is not None:
                counts[flag]["above"] = float(above[region].sum(flow=True).value)
        per_dataset[dataset] = counts
        histograms[model] = histogram.project("region", model)
        if above is not None:
            histograms[f"{mass}_{model}_pass"] = above
    return {
        "threshold": threshold,
        "target_efficiency": None if threshold is None else target_efficiency,
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
    control_region: str | None = DEFAULT_CONTROL_REGION,
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
    tables: str = "workers",
    table_folder: str | Path | None = None,
    processor: Callable[..., Any] = AnomalyScoreProcessor,
    strict: bool = False,
    **options: Any,
) -> tuple[FeatureResult, dict[str, Any], dict[str, Path | str]]:
    """Score every event of ``fileset`` with ``models`` (name -> ONNX path) and write the outputs.

    The threshold of each model keeps ``target_efficiency`` of the ``control_region`` events (all datasets
    together, as data would be); with ``control_region=None`` there is no threshold (see the module
    docstring). ``signal_region`` is recorded in ``scores.json`` for ``coffea-ad fit``. Both are region flags
    of the processor (``{partition}_{region}`` of :mod:`coffea_ad.features.regions`, or flags that a
    subclass given as ``processor`` puts into its tables and histograms). ``features`` are further features
    for the tables and histograms, of which ``optional`` ones may be left out when a branch is absent (never
    the models' inputs, ``mass`` or the regions' features). ``tables`` and ``table_folder`` are as for
    :func:`coffea_ad.workflow.features.run_features` (default: written by the workers under
    ``outdir/features``). ``options`` go to :func:`coffea_ad.processing.run_processor` (``feature_config``,
    ``region_config``, ``step_size``, ``weight_branch``...). Returns the result, the content of
    ``scores.json`` and the paths written.

    Unreadable files and chunks hit by a read error are skipped and reported as by
    :func:`coffea_ad.workflow.features.run_features` (a dataset without a readable file, or under ``strict`` any
    skipped input, is an error and nothing is written). A chunk skipped in one pass only (a transient read
    error) is logged with the pass it missed: the thresholds, or the histograms and tables.
    """
    fileset = read_fileset(fileset)
    scorers = {name: OnnxScorer(path) for name, path in models.items()}  # refuses bad models before any work
    region_config = options.get("region_config")
    required = resolve_feature_names(
        [
            mass,
            *(feature for scorer in scorers.values() for feature in scorer.feature_names),
            *(region_features(control_region, region_config) if control_region is not None else ()),
            *region_features(signal_region, region_config),
        ]
    )
    wanted = resolve_feature_names([*([features] if isinstance(features, str) else features), *required])
    options["optional"] = _not_optional(optional, wanted, required)
    checked, skipped = check_fileset(fileset)
    check_inputs(checked, skipped, strict=strict)
    _check_model_inputs(checked, scorers, options.get("feature_config"))
    if tables == "workers" and table_folder is None:
        table_folder = Path(outdir) / "features"
    with dask_client(scheduler, workers) as client:
        run = functools.partial(run_processor, checked, skipped, mode=mode, client=client, progress=progress,
                                strict=strict, require_readable=True, **options)
        first_pass_chunks = None
        if score_edges_by_model is None:
            reduce = functools.partial(control_region_rows, models=tuple(scorers), control_region=control_region)
            first = run(
                features=required,
                histogram_variables=(),
                reduce_table=reduce,
                make_processor=functools.partial(processor, scorers, fit_variable=mass),
            )
            score_edges_by_model = {
                name: _edges(control_region_scores(first, name), name, control_region, target_efficiency)
                for name in scorers
            }
            first_pass_chunks = first.skipped_chunks
        result = run(
            features=wanted,
            tables=tables,
            table_folder=table_folder,
            # the scorers, not their paths: both passes score with the models read once, whatever the files become
            make_processor=functools.partial(processor, scorers, score_edges=score_edges_by_model, fit_variable=mass),
        )
    log_skipped_chunks(result.skipped_chunks)
    if first_pass_chunks is not None:
        _log_one_pass_chunks(first_pass_chunks, result.skipped_chunks)
    regions = (control_region, signal_region)
    summary = {name: _threshold_summary(result, name, mass, regions, target_efficiency) for name in scorers}
    written = write_outputs(result, outdir)
    written["scores"] = Path(outdir) / "scores.json"
    write_json(written["scores"], summary)
    return result, summary, written
