"""Run a coffea processor over a checked fileset on a Dask cluster, and write its outputs.

Two execution modes give the same tables and histograms:

- ``"dask"``: ``coffea.dataset_tools.preprocess`` -> ``apply_to_fileset`` -> one compute on the client;
- ``"virtual"``: ``coffea.processor.Runner`` with virtual NanoEvents (``DaskExecutor`` on the client, or
  in-process when there is no client).

The processor is passed in (``make_processor``): this stage runs the classes of the top-level
:mod:`processors` package, or a user's subclass of them, without importing them. Which features are
computed is decided once per dataset from the branches all its files share, the MET collection per file
(:func:`met_groups`): a dataset whose files have different MET collections (NanoAOD v12 ``MET``, v15
``PFMET``) runs as one group of files per collection, each with its own resolved ``FeatureConfig``, and the
groups' outputs are merged into the dataset's (:func:`merge_outputs`). In dask mode this is necessary:
``apply_to_fileset`` builds a dataset's events from one form, the first file's, whose ``MET_pt`` a v15 file
cannot give.

Output folder layout (:func:`write_outputs`)::

    OUTDIR/histograms.root          {dataset}/{partition}_{region}/{variable}  (TH1D, Sumw2, flow bins)
    OUTDIR/cutflow.json             counts per region, files processed/skipped (and each file's MET
                                    collection), features computed/left out
    OUTDIR/features/{dataset}.parquet   one row per event (see coffea_ad.processing.tables)
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import awkward as ak

from coffea_ad.errors import ConfigurationError, InputFileError
from coffea_ad.features import FEATURES, FeatureConfig, missing_branches, resolve_feature_names, select_features
from coffea_ad.features.regions import RegionConfig, check_cutflow, cutflow, flag_names, partition_layout
from coffea_ad.paths import write_json
from coffea_ad.progress import progress_bar
from coffea_ad.processing.fileset import DatasetFiles, SkippedFile, safe_name
from coffea_ad.processing.histograms import book_histograms, write_root
from coffea_ad.processing.tables import empty_table, sort_by_event_id, write_parquet

__all__ = [
    "MODES",
    "FeatureResult",
    "met_groups",
    "merge_outputs",
    "run_processor",
    "write_outputs",
    "cutflow_summary",
    "dask_client",
]

MODES = ("dask", "virtual")


@dataclasses.dataclass
class FeatureResult:
    """Computed outputs of one run, per dataset: tables, histograms, cutflows; plus the files skipped.

    ``met_collections`` gives, per dataset and file, the MET collection its ``met``/``met_phi`` were read from
    (None where no MET feature was computed).
    """

    mode: str
    tables: dict[str, ak.Array]
    histograms: dict[str, Any]
    cutflows: dict[str, dict[str, Any]]
    features: dict[str, list[str]]
    left_out: dict[str, dict[str, list[str]]]
    files: dict[str, DatasetFiles]
    skipped: list[SkippedFile]
    met_collections: dict[str, dict[str, str | None]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class _DatasetPlan:
    """What runs for one dataset: its features, those left out, and its file groups with their configuration."""

    features: list[str]
    left_out: dict[str, list[str]]
    groups: list[tuple[FeatureConfig, DatasetFiles]]
    met_collections: dict[str, str | None]


def met_groups(dataset: str, files: DatasetFiles, config: FeatureConfig) -> dict[str | None, DatasetFiles]:
    """The readable files of ``dataset`` grouped by the MET collection ``config`` takes from each, in file order.

    Under ``met_collection="auto"`` a file's collection is the first of ``MET``, ``PFMET``, ``PuppiMET`` it has
    (None: none of them); a chosen collection that a file lacks raises
    :class:`~coffea_ad.errors.ConfigurationError` naming the file and the collection.
    """
    paths: dict[str | None, list[str]] = {}
    for path in files.files:
        collection = config.find_met_collection(files.file_branches[path], source=f"{path} (dataset {dataset!r})")
        paths.setdefault(collection, []).append(path)
    if len(paths) == 1:
        return {next(iter(paths)): files}
    return {collection: files.subset(group) for collection, group in paths.items()}


def _plan_dataset(
    dataset: str,
    files: DatasetFiles,
    names: str | Iterable[str],
    optional: bool | str | Iterable[str],
    config: FeatureConfig,
) -> _DatasetPlan:
    """The features computable on every file of ``dataset`` (each file with its MET collection), those left out
    (feature -> absent branches), and the groups of files to run, each with its resolved configuration.

    A dataset without readable files keeps every requested feature, so that its empty outputs have the
    layout of a full run.
    """
    wanted = resolve_feature_names(names)
    if not files.files:
        return _DatasetPlan(wanted, {}, [], {})
    groups = met_groups(dataset, files, config) if any(FEATURES[name].reads_met for name in wanted) else {None: files}
    resolved = {
        collection: config if collection is None else dataclasses.replace(config, met_collection=collection)
        for collection in groups
    }
    kept_by_group, left_out = [], {}
    for collection, group in groups.items():
        source = f"dataset {dataset!r}"
        if len(groups) > 1:
            source = f"the files of dataset {dataset!r} with MET collection {collection or 'none'}"
        kept = select_features(wanted, group.branches, optional=optional, config=resolved[collection], source=source)
        kept_by_group.append({feature.name for feature in kept})
        for name in wanted:
            missing = missing_branches(FEATURES[name], group.branches, resolved[collection])
            if missing:
                left_out.setdefault(name, []).extend(branch for branch in missing if branch not in left_out[name])
    kept_names = [name for name in wanted if all(name in kept for kept in kept_by_group)]
    if not any(FEATURES[name].reads_met for name in kept_names):
        return _DatasetPlan(kept_names, left_out, [(config, files)], dict.fromkeys(files.files))
    met_by_file = {path: collection for collection, group in groups.items() for path in group.files}
    return _DatasetPlan(
        kept_names,
        left_out,
        [(resolved[collection], group) for collection, group in groups.items()],
        {path: met_by_file[path] for path in files.files},
    )


def merge_outputs(outputs: list[dict[str, Any]]) -> dict[str, Any]:
    """One dataset's processor output from those of its groups of files: the tables concatenated, histograms
    and counts added (``coffea.processor.accumulate``)."""
    if len(outputs) == 1:
        return outputs[0]
    from coffea.processor import accumulate

    merged = accumulate([{key: value for key, value in output.items() if key != "table"} for output in outputs])
    merged["table"] = ak.concatenate([output["table"] for output in outputs])
    return merged


def _step_name(processors: Mapping[str, Any]) -> str:
    """The progress-bar label of a run: the processor's class and the number of datasets."""
    count = len(processors)
    return f"{type(next(iter(processors.values()))).__name__} on {count} dataset{'s' * (count != 1)}"


def _run_dask(processors: Mapping[str, Any], checked: Mapping[str, DatasetFiles], step_size: int,
              client: Any, progress: bool) -> dict[str, Any]:
    """preprocess -> apply_to_fileset -> one compute of every dataset's outputs."""
    import dask
    from coffea.dataset_tools import apply_to_fileset, preprocess
    from coffea.dataset_tools.filespec import DataGroupSpec

    spec = DataGroupSpec.model_validate(
        {name: {"files": checked[name].files, "metadata": checked[name].metadata} for name in processors}
    )
    available, _ = preprocess(spec, step_size=step_size, skip_bad_files=False, save_form=False)
    graphs = {
        name: apply_to_fileset(processor, DataGroupSpec.model_validate({name: available[name]}))[name][name]
        for name, processor in processors.items()
    }
    if client is None or not progress:
        (computed,) = dask.compute(graphs)
        return computed
    from distributed import as_completed, futures_of

    # Persist, then count the partitions as they finish: one bar for the whole step, not one line per 0.1 s.
    collections, repack = dask.base.unpack_collections(graphs)
    persisted = client.persist(list(collections))
    futures = futures_of(persisted)
    with progress_bar(len(futures), _step_name(processors), unit="partition") as bar:
        for _ in as_completed(futures):
            bar.update(1)
    (computed,) = repack(client.compute(persisted, sync=True))
    return computed


def _run_virtual(processors: Mapping[str, Any], checked: Mapping[str, DatasetFiles], step_size: int,
                 client: Any, progress: bool) -> dict[str, Any]:
    """coffea.processor.Runner over each dataset, virtual NanoEvents, on the client's workers if any."""
    from coffea import processor
    from coffea.nanoevents import NanoAODSchema

    if client is None:
        executor = processor.IterativeExecutor(status=False)
    else:
        executor = processor.DaskExecutor(client=client, status=False)
    runner = processor.Runner(executor=executor, schema=NanoAODSchema, chunksize=step_size)
    computed = {}
    with progress_bar(len(processors), _step_name(processors), unit="dataset", enabled=progress) as bar:
        for name, instance in processors.items():
            files = {name: {"files": checked[name].files, "metadata": checked[name].metadata}}
            output = runner(files, processor_instance=instance)
            computed[name] = output[name]
            computed[name]["table"] = ak.concatenate(output[name]["table"])
            bar.update(1)
    return computed


def run_processor(
    checked: Mapping[str, DatasetFiles],
    skipped: Iterable[SkippedFile] = (),
    *,
    features: str | Iterable[str] = "all",
    optional: bool | str | Iterable[str] = (),
    feature_config: FeatureConfig | None = None,
    region_config: RegionConfig | None = None,
    histogram_variables: Iterable[str] | None = None,
    weight_branch: str | None = None,
    mode: str = "dask",
    client: Any = None,
    step_size: int = 100_000,
    progress: bool = False,
    make_processor: Callable[..., Any],
) -> FeatureResult:
    """Run the feature processor over checked files (see :func:`check_fileset`) in ``mode``.

    Datasets without readable events get empty tables, zero-filled histograms and zero counts. Every
    dataset's cutflow is checked for conservation (:func:`coffea_ad.features.regions.check_cutflow`).
    ``met_collection="auto"`` (the default of ``feature_config``) reads each file's own MET collection
    (:func:`met_groups`); the choice per file is in :attr:`FeatureResult.met_collections`.
    ``make_processor`` builds the processor of a dataset from the keyword arguments of
    :class:`processors.AnomalyFeatureProcessor` (``features=``, ``feature_config=``...): that class, a
    subclass of it, or a ``functools.partial`` with further arguments bound (the score workflow binds the
    models of :class:`processors.AnomalyScoreProcessor`).
    """
    if mode not in MODES:
        raise ConfigurationError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if step_size < 1:
        raise ConfigurationError(f"step_size must be a positive number of events, got {step_size}")
    feature_config = feature_config or FeatureConfig()
    region_config = region_config or RegionConfig()
    plan = {name: _plan_dataset(name, files, features, optional, feature_config) for name, files in checked.items()}
    run = _run_dask if mode == "dask" else _run_virtual
    parts: dict[str, list[dict[str, Any]]] = {}
    # One run per group index: a dataset's first group of files in the first run, its second (another MET
    # collection) in the second; a fileset without mixed MET collections runs once.
    for index in range(max((len(dataset.groups) for dataset in plan.values()), default=0)):
        members = {name: dataset.groups[index] for name, dataset in plan.items() if index < len(dataset.groups)}
        processors = {
            name: make_processor(
                features=plan[name].features,
                feature_config=config,
                region_config=region_config,
                histogram_variables=histogram_variables,
                weight_branch=weight_branch,
            )
            for name, (config, _) in members.items()
        }
        outputs = run(processors, {name: files for name, (_, files) in members.items()}, step_size, client, progress)
        for name, output in outputs.items():
            parts.setdefault(name, []).append(output)
    computed = {name: merge_outputs(outputs) for name, outputs in parts.items()}
    tables, histograms, cutflows = {}, {}, {}
    for name, files in checked.items():
        kept = plan[name].features
        layout = partition_layout(kept, region_config)
        if name in computed:
            output = computed[name]
            tables[name] = sort_by_event_id(output["table"])
            histograms[name] = output["histograms"]
            counts = output["cutflow"]["regions"].values()
            cutflows[name] = cutflow(counts, layout, output["cutflow"]["n_events"])
        else:
            flags = flag_names(layout)
            tables[name] = empty_table(kept, flags, gen_weight=not files.files or "genWeight" in files.branches)
            histograms[name] = book_histograms(histogram_variables or kept, flags)
            cutflows[name] = cutflow([0] * len(flags), layout, 0)
        check_cutflow(cutflows[name], source=f"dataset {name!r}")
    return FeatureResult(
        mode=mode,
        tables=tables,
        histograms=histograms,
        cutflows=cutflows,
        features={name: plan[name].features for name in checked},
        left_out={name: plan[name].left_out for name in checked},
        files=dict(checked),
        skipped=list(skipped),
        met_collections={name: plan[name].met_collections for name in checked},
    )


def write_outputs(result: FeatureResult, outdir: str | Path) -> dict[str, Path]:
    """Write ``histograms.root``, ``cutflow.json`` and ``features/{dataset}.parquet`` under ``outdir``."""
    outdir = Path(outdir)
    names = {dataset: safe_name(dataset) for dataset in result.tables}
    if len(set(names.values())) != len(names):
        raise ConfigurationError(f"dataset names collide once made file-safe: {names}")
    try:
        (outdir / "features").mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputFileError(f"cannot create output folder {outdir}: {error.strerror or error}") from error
    paths = {"histograms": outdir / "histograms.root", "cutflow": outdir / "cutflow.json"}
    write_root(paths["histograms"], {names[dataset]: hists for dataset, hists in result.histograms.items()})
    for dataset, table in result.tables.items():
        paths[f"table:{dataset}"] = write_parquet(outdir / "features" / f"{names[dataset]}.parquet", table, dataset)
    write_json(paths["cutflow"], cutflow_summary(result))
    return paths


def cutflow_summary(result: FeatureResult) -> dict[str, Any]:
    """The content of ``cutflow.json``: per dataset counts, features and files; totals of files."""
    skipped_by_dataset: dict[str, list[dict[str, str]]] = {}
    for skipped in result.skipped:
        skipped_by_dataset.setdefault(skipped.dataset, []).append({"file": skipped.path, "reason": skipped.reason})
    datasets = {}
    for name, counts in result.cutflows.items():
        files = result.files[name]
        datasets[name] = {
            **counts,
            "features": result.features[name],
            "features_left_out": result.left_out[name],
            "files": {
                "processed": list(files.files),
                "met_collection": result.met_collections.get(name, {}),
                "empty": files.empty_files,
                "skipped": skipped_by_dataset.get(name, []),
            },
        }
    return {
        "mode": result.mode,
        "n_files_processed": sum(len(files.files) + len(files.empty_files) for files in result.files.values()),
        "n_files_skipped": len(result.skipped),
        "datasets": datasets,
    }


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None) -> Iterator[Any]:
    """A distributed client: connected to ``scheduler`` if given, else on a new LocalCluster of ``workers``."""
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as error:
            raise ConfigurationError(f"cannot connect to the dask scheduler at {scheduler}: {error}") from error
        with client:
            yield client
        return
    if workers is not None and workers < 1:
        raise ConfigurationError(f"workers must be at least 1, got {workers}")
    # No dashboard, and the scheduler's HTTP server on a free port: no "port 8787 in use" warning beside another
    # cluster.
    with LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        scheduler_kwargs={"dashboard": False},
    ) as cluster:
        with Client(cluster) as client:
            yield client
