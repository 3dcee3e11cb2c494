"""Run :class:`processors.feature_processor.AnomalyFeatureProcessor` over a coffea fileset and write the outputs.

Two execution modes give the same tables and histograms:

- ``"dask"``: ``coffea.dataset_tools.preprocess`` -> ``apply_to_fileset`` -> one compute on the client;
- ``"virtual"``: ``coffea.processor.Runner`` with virtual NanoEvents (``DaskExecutor`` on the client, or
  in-process when there is no client).

Before anything runs, every file is opened: a file that cannot be read, is truncated (shorter than its
ROOT header says) or has no ``Events`` tree is reported and skipped, never silently. Which features are
computed is decided once per dataset from the branches all its files share.

Output folder layout (:func:`write_outputs`)::

    OUTDIR/histograms.root          {dataset}/{partition}_{region}/{variable}  (TH1D, Sumw2, flow bins)
    OUTDIR/cutflow.json             counts per region, files processed/skipped, features computed/left out
    OUTDIR/features/{dataset}.parquet   one row per event (see coffea_ad.tables)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import awkward as ak

from coffea_ad.errors import ConfigurationError, InputFileError
from coffea_ad.features import FEATURES, FeatureConfig, missing_branches, resolve_feature_names, select_features
from coffea_ad.histograms import book_histograms, write_root
from coffea_ad.paths import atomic_output
from coffea_ad.regions import RegionConfig, check_cutflow, cutflow, flag_names, partition_layout
from coffea_ad.tables import empty_table, sort_by_event_id, write_parquet

__all__ = [
    "MODES",
    "SkippedFile",
    "DatasetFiles",
    "FeatureResult",
    "load_fileset",
    "normalize_fileset",
    "check_fileset",
    "run_processor",
    "write_outputs",
    "cutflow_summary",
    "dask_client",
    "run_features",
    "safe_name",
]

logger = logging.getLogger(__name__)

MODES = ("dask", "virtual")
DEFAULT_TREE = "Events"


@dataclasses.dataclass(frozen=True)
class SkippedFile:
    """A file left out of the run, and why."""

    dataset: str
    path: str
    reason: str


@dataclasses.dataclass
class DatasetFiles:
    """The readable files of one dataset, with what they hold."""

    files: dict[str, str]
    metadata: dict[str, Any]
    branches: frozenset[str]
    n_entries: int
    empty_files: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class FeatureResult:
    """Computed outputs of one run, per dataset: tables, histograms, cutflows; plus the files skipped."""

    mode: str
    tables: dict[str, ak.Array]
    histograms: dict[str, Any]
    cutflows: dict[str, dict[str, Any]]
    features: dict[str, list[str]]
    left_out: dict[str, dict[str, list[str]]]
    files: dict[str, DatasetFiles]
    skipped: list[SkippedFile]


def safe_name(dataset: str) -> str:
    """A dataset name usable as a file name and a ROOT directory (``/`` and spaces become ``_``)."""
    return re.sub(r"[^A-Za-z0-9._+-]", "_", dataset).strip("_") or "dataset"


def load_fileset(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read a coffea fileset JSON: ``{dataset: {"files": {path: tree} | [path, ...], "metadata": {...}}}``.

    A bare list of files per dataset is accepted too; files without a tree name read ``Events``.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except OSError as error:
        raise InputFileError(f"cannot read fileset {path}: {error.strerror or error}") from error
    except json.JSONDecodeError as error:
        raise InputFileError(f"fileset {path} is not valid JSON: {error}") from error
    return normalize_fileset(raw, source=str(path))


def normalize_fileset(raw: Any, source: str = "the fileset") -> dict[str, dict[str, Any]]:
    """Validate a fileset mapping and return it as ``{dataset: {"files": {path: tree}, "metadata": {...}}}``."""
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigurationError(f"{source}: expected a non-empty mapping of dataset name to files")
    fileset = {}
    for dataset, spec in raw.items():
        if isinstance(spec, Mapping):
            files, metadata = spec.get("files"), dict(spec.get("metadata") or {})
        else:
            files, metadata = spec, {}
        if isinstance(files, Mapping):
            files = {str(name): str(tree or DEFAULT_TREE) for name, tree in files.items()}
        elif isinstance(files, list) and all(isinstance(name, str) for name in files):
            files = {name: DEFAULT_TREE for name in files}
        else:
            raise ConfigurationError(
                f"{source}: dataset {dataset!r} needs 'files' as a mapping of path to tree name or a list of paths"
            )
        if not files:
            raise ConfigurationError(f"{source}: dataset {dataset!r} has no files")
        fileset[str(dataset)] = {"files": files, "metadata": metadata}
    return fileset


def _open_tree(path: str, tree_name: str) -> tuple[int, frozenset[str]]:
    """(entries, branch names) of a readable tree; raises OSError/ValueError/KeyError otherwise."""
    import uproot

    with uproot.open(path) as handle:
        expected, actual = handle.file.fEND, handle.file.source.num_bytes
        if actual is not None and actual < expected:
            raise OSError(f"truncated: {actual} bytes, the ROOT header says {expected}")
        tree = handle[tree_name]
        return tree.num_entries, frozenset(tree.keys(recursive=False))


def check_fileset(fileset: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, DatasetFiles], list[SkippedFile]]:
    """Open every file; return the readable files per dataset and the files skipped (with the reason)."""
    checked: dict[str, DatasetFiles] = {}
    skipped: list[SkippedFile] = []
    for dataset, spec in fileset.items():
        files: dict[str, str] = {}
        branch_sets: list[frozenset[str]] = []
        empty: list[str] = []
        n_entries = 0
        for path, tree_name in spec["files"].items():
            try:
                entries, branches = _open_tree(path, tree_name)
            except (OSError, ValueError, KeyError, TypeError) as error:
                reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}".strip()
                logger.warning("skipping %s (dataset %s): %s", path, dataset, reason)
                skipped.append(SkippedFile(dataset, path, reason))
                continue
            if entries == 0:
                empty.append(path)
                continue
            files[path] = tree_name
            branch_sets.append(branches)
            n_entries += entries
        common = frozenset.intersection(*branch_sets) if branch_sets else frozenset()
        checked[dataset] = DatasetFiles(files, dict(spec["metadata"]), common, n_entries, empty)
    return checked, skipped


def _dataset_features(
    dataset: str,
    files: DatasetFiles,
    names: str | Iterable[str],
    optional: bool | str | Iterable[str],
    config: FeatureConfig,
) -> tuple[list[str], dict[str, list[str]]]:
    """The features computable on every file of ``dataset``, and those left out (feature -> absent branches).

    A dataset without readable files keeps every requested feature, so that its empty outputs have the
    layout of a full run.
    """
    wanted = resolve_feature_names(names)
    if not files.files:
        return wanted, {}
    kept = select_features(wanted, files.branches, optional=optional, config=config, source=f"dataset {dataset!r}")
    kept_names = [feature.name for feature in kept]
    left_out = {
        name: missing_branches(FEATURES[name], files.branches, config) for name in wanted if name not in kept_names
    }
    return kept_names, left_out


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
    from distributed import progress as progress_bar

    collections, repack = dask.base.unpack_collections(graphs)
    futures = client.compute(list(collections))
    progress_bar(futures)
    (computed,) = repack(client.gather(futures))
    return computed


def _run_virtual(processors: Mapping[str, Any], checked: Mapping[str, DatasetFiles], step_size: int,
                 client: Any, progress: bool) -> dict[str, Any]:
    """coffea.processor.Runner over each dataset, virtual NanoEvents, on the client's workers if any."""
    from coffea import processor
    from coffea.nanoevents import NanoAODSchema

    if client is None:
        executor = processor.IterativeExecutor(status=progress)
    else:
        executor = processor.DaskExecutor(client=client, status=progress)
    runner = processor.Runner(executor=executor, schema=NanoAODSchema, chunksize=step_size)
    computed = {}
    for name, instance in processors.items():
        files = {name: {"files": checked[name].files, "metadata": checked[name].metadata}}
        output = runner(files, processor_instance=instance)
        computed[name] = output[name]
        computed[name]["table"] = ak.concatenate(output[name]["table"])
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
    make_processor: Callable[..., Any] | None = None,
) -> FeatureResult:
    """Run the feature processor over checked files (see :func:`check_fileset`) in ``mode``.

    Datasets without readable events get empty tables, zero-filled histograms and zero counts. Every
    dataset's cutflow is checked for conservation (:func:`coffea_ad.regions.check_cutflow`).
    ``make_processor`` builds the processor of a dataset from the keyword arguments of
    :class:`~processors.feature_processor.AnomalyFeatureProcessor` (``features=``, ``feature_config=``...);
    by default it is that class (the scoring pipeline passes its subclass with the models bound).
    """
    from processors.feature_processor import AnomalyFeatureProcessor

    make_processor = make_processor or AnomalyFeatureProcessor
    if mode not in MODES:
        raise ConfigurationError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if step_size < 1:
        raise ConfigurationError(f"step_size must be a positive number of events, got {step_size}")
    feature_config = feature_config or FeatureConfig()
    region_config = region_config or RegionConfig()
    plan = {name: _dataset_features(name, files, features, optional, feature_config) for name, files in checked.items()}
    processors = {
        name: make_processor(
            features=plan[name][0],
            feature_config=feature_config,
            region_config=region_config,
            histogram_variables=histogram_variables,
            weight_branch=weight_branch,
        )
        for name, files in checked.items()
        if files.files
    }
    run = _run_dask if mode == "dask" else _run_virtual
    computed = run(processors, checked, step_size, client, progress) if processors else {}
    tables, histograms, cutflows = {}, {}, {}
    for name, files in checked.items():
        kept = plan[name][0]
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
        features={name: plan[name][0] for name in checked},
        left_out={name: plan[name][1] for name in checked},
        files=dict(checked),
        skipped=list(skipped),
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
    with atomic_output(paths["cutflow"]) as tmp:
        tmp.write_text(json.dumps(cutflow_summary(result), indent=2) + "\n")
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
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            yield client


def run_features(
    fileset: str | Path | Mapping[str, Any],
    outdir: str | Path,
    *,
    mode: str = "dask",
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool = False,
    **options: Any,
) -> tuple[FeatureResult, dict[str, Path]]:
    """Check the files, run the feature processor on a distributed cluster and write the outputs.

    ``fileset`` is a coffea fileset JSON path or mapping; ``options`` go to :func:`run_processor`
    (``features``, ``optional``, ``feature_config``, ``region_config``, ``step_size``, ...). Without
    ``scheduler`` a LocalCluster with ``workers`` worker processes (default: one per core) is started.
    """
    if isinstance(fileset, Mapping):
        fileset = normalize_fileset(fileset)
    else:
        fileset = load_fileset(fileset)
    checked, skipped = check_fileset(fileset)
    with dask_client(scheduler, workers) as client:
        result = run_processor(checked, skipped, mode=mode, client=client, progress=progress, **options)
    return result, write_outputs(result, outdir)
