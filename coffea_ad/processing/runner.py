"""Run a coffea processor over a checked fileset on a Dask cluster, and write its outputs.

Two execution modes give the same tables and histograms:

- ``"dask"``: the files' steps (those of ``coffea.dataset_tools.preprocess``, from what the file check read:
  :meth:`DatasetFiles.steps`) -> ``apply_to_fileset`` -> one compute on the client;
- ``"virtual"``: ``coffea.processor.Runner`` with virtual NanoEvents (``DaskExecutor`` on the client, or
  in-process when there is no client).

The processor is passed in (``make_processor``): this stage runs the classes of the top-level
:mod:`processors` package, or a user's subclass of them, without importing them. Which features are
computed is decided once per dataset from the branches all its files share, the MET collection per file
(:func:`met_groups`): a dataset whose files have different MET collections (NanoAOD v12 ``MET``, v15
``PFMET``) runs as one group of files per collection, each with its own resolved ``FeatureConfig``, and the
groups' outputs are merged into the dataset's (:func:`merge_outputs`). Files whose branches read have different
types (``Electron_cutBased`` is ``uint8`` in some NanoAOD versions, ``int32`` in others) run in groups too
(:func:`form_groups`). In dask mode both are necessary: ``apply_to_fileset`` builds a dataset's events from one
form, the first file's, whose ``MET_pt`` a v15 file cannot give and whose ``uint8`` another file's ``int32``
values would be misread as, silently.

A read error inside a file (a corrupt compressed basket, a decompression or deserialization error, a
truncation found only while reading: :data:`READ_ERRORS`) skips the chunk it hits, in both modes, and the run
goes on: the chunk's events are neither processed nor counted (the processor runs on no events in its place,
so that its outputs keep their layout), and the chunk is reported with its file, entry range and reason in
:attr:`FeatureResult.skipped_chunks` and ``cutflow.json``. In dask mode uproot catches these errors
(``allow_read_errors_with_report``, its report gives each failed partition); in virtual mode the processor is
wrapped, and an error counts as a read error only when it was raised while uproot was reading (a frame of
uproot in its traceback): an error of the processor itself is never skipped. ``strict=True`` makes any skipped
file or chunk an error, and ``require_readable=True`` a dataset without a readable file
(:func:`check_inputs`); either leaves nothing written.

The per-event tables (``tables=``) are gathered into the client (``"memory"``: what the search and the LHC
Olympics protocol use), written by the tasks themselves (``"workers"``: the client then holds only histograms,
cutflows and small summaries), or not made (``"none"``). Written tables are folders of parquet parts::

    TABLE_FOLDER/{dataset}.parquet/part-{file:05d}-{entry start:012d}.parquet

one part per chunk, named by the chunk's file (its position in the fileset) and first entry: the same names
whenever the same files are run with the same step size. The parts are written into a hidden temporary folder
beside the target (``.{dataset}.parquet.tmp-{token}``), which is renamed into place once the whole run
succeeded; a failed run removes it and leaves any earlier table in place. ``TABLE_FOLDER`` may be an fsspec
URL: there too a failed run leaves no partial table, but the final move is a copy of each part on object
stores (it is one rename only on local disks), so a client killed during that move can leave a partial folder.

Output folder layout (:func:`write_outputs`)::

    OUTDIR/histograms.root          {dataset}/{partition}_{region}/{variable}  (TH1D, Sumw2, flow bins)
    OUTDIR/cutflow.json             counts per region, files processed/skipped (and each file's MET
                                    collection), chunks skipped for read errors (file, entries, reason)
                                    and the entries they lost, features computed/left out
    OUTDIR/features/{dataset}.parquet   one row per event (see coffea_ad.processing.tables): a file for
                                        tables gathered in memory, a folder of parts for written ones
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import logging
import lzma
import os
import shutil
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import awkward as ak
import cramjam
import uproot
from coffea import processor as coffea_processor
from uproot.deserialization import DeserializationError

from coffea_ad.errors import ConfigurationError, InputFileError
from coffea_ad.features import FEATURES, FeatureConfig, missing_branches, resolve_feature_names, select_features
from coffea_ad.features.arrays import no_events
from coffea_ad.features.regions import RegionConfig, check_cutflow, cutflow, flag_names, partition_layout
from coffea_ad.paths import write_json
from coffea_ad.progress import progress_bar
from coffea_ad.processing.fileset import DatasetFiles, SkippedChunk, SkippedFile, safe_name
from coffea_ad.processing.histograms import book_histograms, write_root
from coffea_ad.processing.tables import EVENT_ID_COLUMNS, empty_table, sort_by_event_id, write_parquet, write_part

__all__ = [
    "MODES",
    "TABLES",
    "READ_ERRORS",
    "FeatureResult",
    "check_inputs",
    "log_skipped_chunks",
    "met_groups",
    "form_groups",
    "merge_outputs",
    "run_processor",
    "write_outputs",
    "cutflow_summary",
    "dask_client",
    "part_name",
]

logger = logging.getLogger(__name__)

MODES = ("dask", "virtual")
#: Where the per-event tables go: gathered into the client, written by the workers, or nowhere.
TABLES = ("memory", "workers", "none")
#: The errors that skip the chunk they hit while it is read: I/O and truncation (OSError), a basket that does not
#: decompress (zlib, lzma, cramjam's LZ4/ZSTD; ValueError for a bad checksum or block header) or deserialize.
READ_ERRORS: tuple[type[BaseException], ...] = (
    OSError, ValueError, zlib.error, lzma.LZMAError, cramjam.DecompressionError, DeserializationError,
)
_QUALIFIED = {kind.__name__: f"{kind.__module__.lstrip('_')}.{kind.__qualname__}"
              for kind in READ_ERRORS if kind.__module__ != "builtins"}
_UPROOT_FOLDER = os.path.dirname(uproot.__file__) + os.sep


@dataclasses.dataclass
class FeatureResult:
    """Computed outputs of one run, per dataset: tables, histograms, cutflows; plus the files and chunks skipped.

    ``met_collections`` gives, per dataset and file, the MET collection its ``met``/``met_phi`` were read from
    (None where no MET feature was computed). ``tables`` holds the tables gathered into the client
    (``tables="memory"``, else empty); ``written`` the folder (path or fsspec URL) of each table the workers wrote
    (``tables="workers"``, else empty). ``skipped`` are the files left out before the run, ``skipped_chunks``
    the chunks left out for a read error during it (in fileset order): their entries are in no table, histogram
    or count.
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
    written: dict[str, str] = dataclasses.field(default_factory=dict)
    skipped_chunks: list[SkippedChunk] = dataclasses.field(default_factory=list)


def part_name(file_index: int, entry_start: int) -> str:
    """The file name of the table part of the chunk starting at ``entry_start`` of the dataset's file number
    ``file_index`` (in fileset order): names sort as the chunks run."""
    return f"part-{file_index:05d}-{entry_start:012d}.parquet"


def _join(folder: str, name: str) -> str:
    return f"{folder.rstrip('/')}/{name}"


@dataclasses.dataclass(frozen=True)
class _TableSink:
    """What becomes of a dataset's per-event table in each task: reduced, then kept, written or dropped.

    Picklable (it travels with the tasks); ``folder`` is the dataset's temporary folder when written.
    """

    tables: str
    dataset: str
    reduce: Callable[[ak.Array], ak.Array] | None = None
    folder: str | None = None
    file_index: tuple[tuple[str, int], ...] = ()

    def chunk(self, table: ak.Array) -> ak.Array:
        """The table as it is kept or written: passed through ``reduce`` if any."""
        return table if self.reduce is None else self.reduce(table)

    def write(self, table: ak.Array, name: str) -> ak.Array:
        """Write one part; a one-row array of its row count (what the task returns to the client)."""
        rows = write_part(_join(self.folder, name), self.chunk(table), self.dataset)
        return ak.Array([rows])

    def write_chunk(self, table: ak.Array, metadata: Mapping[str, Any]) -> ak.Array:
        """Write the part of a virtual-mode chunk, named by its file and first entry."""
        index = dict(self.file_index)[metadata["filename"]]
        return self.write(table, part_name(index, int(metadata["entrystart"])))


@dataclasses.dataclass(frozen=True)
class _DaskPartWriter:
    """The map_partitions function writing partition ``block_index`` of a dask table as part ``names[i]``."""

    sink: _TableSink
    names: tuple[str, ...]

    def __call__(self, table: ak.Array, block_index: tuple[int, ...]) -> ak.Array:
        return self.sink.write(table, self.names[block_index[0]])


def _reason(kind: str, message: str) -> str:
    """A read error in one line, the same in both modes: its type (qualified unless built in) and message."""
    return f"{_QUALIFIED.get(kind, kind)}: {' '.join(str(message).split())}"


def _raised_by_uproot(error: BaseException) -> bool:
    traceback = error.__traceback__
    while traceback is not None:
        if traceback.tb_frame.f_code.co_filename.startswith(_UPROOT_FOLDER):
            return True
        traceback = traceback.tb_next
    return False


def _read_error(error: BaseException) -> BaseException | None:
    """The read error behind ``error`` (itself or one of its causes): one of :data:`READ_ERRORS` raised while
    uproot was reading; None for any other error, which is the processor's own and is never skipped."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, READ_ERRORS) and _raised_by_uproot(current):
            return current
        current = current.__cause__ or current.__context__
    return None


class _ChunkTables(coffea_processor.ProcessorABC):
    """A processor around another one (virtual mode): a chunk that cannot be read is skipped and reported, and the
    chunk's table is kept, written by the task, or dropped."""

    def __init__(self, inner: Any, sink: _TableSink) -> None:
        self.inner = inner
        self.sink = sink

    def process(self, events: Any) -> dict[str, Any]:
        """The inner processor's output, with each dataset's ``table`` replaced as the sink says and the chunk in
        ``skipped_chunks`` when a read error skipped it (the output is then that of no events)."""
        skipped: list[SkippedChunk] = []
        try:
            output = self.inner.process(events)
        except Exception as error:
            cause = _read_error(error)
            if cause is None:
                raise
            metadata = events.metadata
            skipped.append(SkippedChunk(
                self.sink.dataset, metadata["filename"], int(metadata["entrystart"]), int(metadata["entrystop"]),
                _reason(type(cause).__name__, str(cause)),
            ))
            output = self.inner.process(no_events(events))
        for per_dataset in output.values():
            per_dataset["skipped_chunks"] = list(skipped)
            table = ak.concatenate(per_dataset.pop("table"))
            if self.sink.tables == "memory":
                per_dataset["table"] = [self.sink.chunk(table)]
            elif self.sink.tables == "workers":
                per_dataset["table_rows"] = int(self.sink.write_chunk(table, events.metadata)[0])
        return output

    def postprocess(self, accumulator: Any) -> Any:
        """The inner processor's postprocess."""
        return self.inner.postprocess(accumulator)


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


def _branches_read(feature_names: Iterable[str], config: FeatureConfig) -> list[str]:
    """The branches the features read under ``config``, with the event ids and each collection's counter."""
    branches = set(EVENT_ID_COLUMNS)
    for name in feature_names:
        for branch in FEATURES[name].required_branches(config):
            branches.add(branch)
            collection, separator, _ = branch.partition("_")
            if separator:
                branches.add(f"n{collection}")
    return sorted(branches)


def form_groups(dataset: str, files: DatasetFiles, branches: Iterable[str]) -> list[DatasetFiles]:
    """The readable files of ``dataset`` grouped by the types of ``branches`` (uproot's typename), in file order.

    In dask mode ``apply_to_fileset`` reads every file of a dataset with the first file's form: a branch stored
    as ``uint8`` in one file and ``int32`` in another (``Electron_cutBased`` in NanoAOD v12 simulation and in
    older files) is then misread, silently. Files that agree on every branch read form one group each.
    """
    branches = list(branches)
    groups: dict[tuple, list[str]] = {}
    for path in files.files:
        types = files.file_types.get(path, {})
        groups.setdefault(tuple(types.get(branch) for branch in branches), []).append(path)
    if len(groups) == 1:
        return [files]
    differing = [branch for position, branch in enumerate(branches) if len({key[position] for key in groups}) > 1]
    logger.info(
        "dataset %r runs as %d groups of files: their branch types differ (%s)",
        dataset,
        len(groups),
        ", ".join(f"{branch}: {'/'.join(sorted({str(key[branches.index(branch)]) for key in groups}))}"
                  for branch in differing),
    )
    return [files.subset(paths) for paths in groups.values()]


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
    if any(FEATURES[name].reads_met for name in kept_names):
        met_plan = [(resolved[collection], group) for collection, group in groups.items()]
        met_by_file = {path: collection for collection, group in groups.items() for path in group.files}
    else:
        met_plan, met_by_file = [(config, files)], dict.fromkeys(files.files)
    runs = [
        (group_config, files_of_form)
        for group_config, group in met_plan
        for files_of_form in form_groups(dataset, group, _branches_read(kept_names, group_config))
    ]
    return _DatasetPlan(kept_names, left_out, runs, {path: met_by_file[path] for path in files.files})


def merge_outputs(outputs: list[dict[str, Any]]) -> dict[str, Any]:
    """One dataset's processor output from those of its groups of files: the tables gathered in memory
    concatenated, the rows written by the workers summed, histograms and counts added
    (``coffea.processor.accumulate``)."""
    if len(outputs) == 1:
        return outputs[0]
    from coffea.processor import accumulate

    tables = ("table", "table_rows")
    merged = accumulate([{key: value for key, value in output.items() if key not in tables} for output in outputs])
    if "table" in outputs[0]:
        merged["table"] = ak.concatenate([output["table"] for output in outputs])
    if "table_rows" in outputs[0]:
        merged["table_rows"] = sum(int(ak.sum(output["table_rows"])) for output in outputs)
    return merged


def _step_name(processors: Mapping[str, Any]) -> str:
    """The progress-bar label of a run: the processor's class and the number of datasets."""
    count = len(processors)
    return f"{type(next(iter(processors.values()))).__name__} on {count} dataset{'s' * (count != 1)}"


def _dask_table(table: Any, sink: _TableSink, steps: Mapping[str, Any]) -> Any:
    """The dask collection standing for a dataset's table: reduced rows, one row count per written part, or
    None (no table: its columns are then not even read unless a histogram needs them).

    ``steps`` are the dataset's preprocessed files (path -> spec with ``.steps``), in partition order.
    """
    import dask_awkward as dak
    import numpy as np
    from dask.blockwise import BlockIndex

    if sink.tables == "none":
        return None
    if sink.tables == "memory":
        return table if sink.reduce is None else dak.map_partitions(sink.reduce, table, label="coffea-ad-reduce-table")
    index = dict(sink.file_index)
    names = tuple(
        part_name(index[path], int(start)) for path, spec in steps.items() for start, _ in spec.steps
    )
    if len(names) != table.npartitions:
        raise ConfigurationError(
            f"dataset {sink.dataset!r}: {table.npartitions} partitions for {len(names)} preprocessed steps"
        )
    meta = ak.Array(ak.Array(np.zeros(0, np.int64)).layout.to_typetracer(forget_length=True))
    rows = dak.map_partitions(
        _DaskPartWriter(sink, names), table, BlockIndex((table.npartitions,)), label="coffea-ad-write-table",
        meta=meta,
    )
    # The writer reads every column of the table, as dask_awkward.to_parquet does.
    rows.dask.layers[rows.name].annotations = {"ak_output": True}
    return rows


def _failed_chunks(dataset: str, report: ak.Array) -> list[SkippedChunk]:
    """The chunks that uproot's read report (one row per partition, ``allow_read_errors_with_report``) gives as
    failed; its ``args`` are the reprs of (file path, tree, entry start, entry stop, is_chunk)."""
    chunks = []
    for row in report[~ak.is_none(report.exception)].to_list():
        path, _, start, stop = (ast.literal_eval(argument) for argument in row["args"][:4])
        chunks.append(SkippedChunk(dataset, path, int(start), int(stop), _reason(row["exception"], row["message"])))
    return chunks


def _run_dask(processors: Mapping[str, Any], checked: Mapping[str, DatasetFiles], step_size: int,
              client: Any, progress: bool, sinks: Mapping[str, _TableSink]) -> dict[str, Any]:
    """steps -> apply_to_fileset -> one compute of every dataset's outputs (tables written in it too, and
    uproot's read report, which gives the chunks skipped for a read error)."""
    import dask
    from coffea.dataset_tools import apply_to_fileset
    from coffea.dataset_tools.filespec import DataGroupSpec

    # The steps of coffea's preprocess, from the entries and UUIDs that check_fileset read (preprocess would
    # open every file again, about 0.1 s each).
    available = DataGroupSpec.model_validate(
        {
            name: {"files": checked[name].steps(step_size), "metadata": checked[name].metadata, "form": None}
            for name in processors
        }
    )
    graphs = {}
    reading = {"allow_read_errors_with_report": READ_ERRORS}
    for name, processor in processors.items():
        dataset = DataGroupSpec.model_validate({name: available[name]})
        outputs, reports = apply_to_fileset(processor, dataset, uproot_options=reading)
        graphs[name] = outputs[name][name]
        graphs[name]["read_report"] = reports[name]
        table = _dask_table(graphs[name].pop("table"), sinks[name], available[name].files)
        if table is not None:
            graphs[name]["table" if sinks[name].tables == "memory" else "table_rows"] = table
    if client is None or not progress:
        (computed,) = dask.compute(graphs)
    else:
        from distributed import as_completed, futures_of

        # Persist, then count the partitions as they finish: one bar for the whole step, not one line per 0.1 s.
        collections, repack = dask.base.unpack_collections(graphs)
        persisted = client.persist(list(collections))
        futures = futures_of(persisted)
        with progress_bar(len(futures), _step_name(processors), unit="partition") as bar:
            for _ in as_completed(futures):
                bar.update(1)
        (computed,) = repack(client.compute(persisted, sync=True))
    for name, output in computed.items():
        output["skipped_chunks"] = _failed_chunks(name, output.pop("read_report"))
    return computed


def _run_virtual(processors: Mapping[str, Any], checked: Mapping[str, DatasetFiles], step_size: int,
                 client: Any, progress: bool, sinks: Mapping[str, _TableSink]) -> dict[str, Any]:
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
            output = runner(files, processor_instance=_ChunkTables(instance, sinks[name]))
            computed[name] = output[name]
            if sinks[name].tables == "memory":
                computed[name]["table"] = ak.concatenate(output[name]["table"])
            bar.update(1)
    return computed


def _is_local(folder: str | os.PathLike) -> bool:
    return not isinstance(folder, str) or "://" not in folder or folder.startswith("file://")


@contextlib.contextmanager
def _staged_tables(folder: str | os.PathLike, datasets: Iterable[str]) -> Iterator[dict[str, tuple[str, str]]]:
    """Per dataset (temporary folder, final folder) under ``folder``; moved into place if the block succeeds.

    A failure inside the block removes the temporary folders and leaves any earlier table untouched.
    """
    from fsspec.core import url_to_fs

    filesystem, root = url_to_fs(os.fspath(folder))
    token = uuid.uuid4().hex[:12]
    names = {dataset: f"{safe_name(dataset)}.parquet" for dataset in datasets}
    if len(set(names.values())) != len(names):
        raise ConfigurationError(f"dataset names collide once made file-safe: {names}")
    staged = {
        dataset: (_join(root, f".{name}.tmp-{token}"), _join(root, name)) for dataset, name in names.items()
    }
    try:
        for temporary, _ in staged.values():
            filesystem.makedirs(temporary, exist_ok=True)
    except OSError as error:
        raise InputFileError(f"cannot create table folder in {folder}: {error.strerror or error}") from error
    # Local folders are handed to the tasks as paths, others as URLs (a path without its protocol is local).
    location = (lambda path: path) if _is_local(folder) else filesystem.unstrip_protocol
    try:
        yield {dataset: (location(temporary), location(final)) for dataset, (temporary, final) in staged.items()}
    except BaseException:
        for temporary, _ in staged.values():
            if filesystem.exists(temporary):
                filesystem.rm(temporary, recursive=True)
        raise
    for dataset, (temporary, final) in staged.items():
        if _is_local(folder):
            _replace_folder(Path(temporary), Path(final))
        else:
            if filesystem.exists(final):
                filesystem.rm(final, recursive=True)
            filesystem.mv(temporary, final, recursive=True)
        logger.info("wrote table %s of dataset %r", location(final), dataset)


def _replace_folder(temporary: Path, final: Path) -> None:
    """Rename ``temporary`` to ``final``; an earlier table there (file or folder) is removed only after."""
    old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:12]}")
    if final.exists():
        final.rename(old)
    os.replace(temporary, final)
    if old.is_dir():
        shutil.rmtree(old)
    else:
        old.unlink(missing_ok=True)


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
    tables: str = "memory",
    table_folder: str | os.PathLike | None = None,
    reduce_table: Callable[[ak.Array], ak.Array] | None = None,
    strict: bool = False,
    require_readable: bool = False,
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

    ``tables`` (one of :data:`TABLES`): ``"memory"`` gathers each dataset's table into ``result.tables``,
    ordered by event id (when it has the id columns); ``"workers"`` has the tasks write it under
    ``table_folder`` (a local folder or an fsspec URL the workers can reach) as
    ``{dataset}.parquet/part-*.parquet``, moved into place once the run succeeded (see the module docstring),
    and lists the folders in ``result.written``; ``"none"`` makes no table. ``reduce_table`` (picklable), if
    given, turns each chunk's table into the rows and columns to keep before it is gathered or written, on the
    worker (the score workflow keeps the control-region scores).

    A chunk that a read error hits (:data:`READ_ERRORS`) is skipped, listed in ``result.skipped_chunks`` with
    its file, entries and reason, and counted nowhere; the rest of the fileset is processed. ``strict`` makes any
    skipped file (of ``skipped``) or chunk an error, ``require_readable`` a dataset without a readable file
    (:func:`check_inputs`): the skipped files are refused before the run, the chunks after it, and no table is
    then moved into place.
    """
    if mode not in MODES:
        raise ConfigurationError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if tables not in TABLES:
        raise ConfigurationError(f"tables must be one of {', '.join(TABLES)}, got {tables!r}")
    if (tables == "workers") != (table_folder is not None):
        raise ConfigurationError(f"table_folder is needed with tables='workers' and only then (tables={tables!r})")
    if step_size < 1:
        raise ConfigurationError(f"step_size must be a positive number of events, got {step_size}")
    skipped = list(skipped)
    checking = strict or require_readable
    if checking:
        check_inputs(checked, skipped, strict=strict)
    feature_config = feature_config or FeatureConfig()
    region_config = region_config or RegionConfig()
    plan = {name: _plan_dataset(name, files, features, optional, feature_config) for name, files in checked.items()}
    run = _run_dask if mode == "dask" else _run_virtual
    staging = _staged_tables(table_folder, checked) if tables == "workers" else contextlib.nullcontext({})
    with staging as folders:
        sinks = {
            name: _TableSink(
                tables,
                name,
                reduce_table,
                folders[name][0] if folders else None,
                tuple((path, index) for index, path in enumerate(files.files)),
            )
            for name, files in checked.items()
        }
        parts: dict[str, list[dict[str, Any]]] = {}
        # One run per group index: a dataset's first group of files in the first run, its second (another MET
        # collection) in the second; a fileset without mixed MET collections runs once. Part names number the
        # files within the whole dataset, so that the groups' parts never collide.
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
            group_files = {name: files for name, (_, files) in members.items()}
            for name, output in run(processors, group_files, step_size, client, progress, sinks).items():
                parts.setdefault(name, []).append(output)
        computed = {name: merge_outputs(outputs) for name, outputs in parts.items()}
        chunks = _in_fileset_order(checked, [chunk for output in computed.values()
                                             for chunk in output.pop("skipped_chunks")])
        if checking:
            check_inputs(checked, skipped, chunks, strict=strict)
        result = _collect(computed, checked, plan, sinks, histogram_variables, region_config)
        result.mode, result.skipped, result.skipped_chunks = mode, skipped, chunks
    result.written = {name: final for name, (_, final) in folders.items()}
    return result


def _in_fileset_order(checked: Mapping[str, DatasetFiles], chunks: Iterable[SkippedChunk]) -> list[SkippedChunk]:
    datasets = {name: position for position, name in enumerate(checked)}
    files = {(name, path): position for name, dataset in checked.items() for position, path in enumerate(dataset.files)}
    return sorted(chunks, key=lambda chunk: (datasets[chunk.dataset], files[chunk.dataset, chunk.path],
                                             chunk.entry_start))


def _listed(descriptions: list[str], limit: int = 5) -> str:
    shown = "; ".join(descriptions[:limit])
    return shown if len(descriptions) <= limit else f"{shown}; and {len(descriptions) - limit} more"


def check_inputs(
    checked: Mapping[str, DatasetFiles],
    skipped: Iterable[SkippedFile] = (),
    skipped_chunks: Iterable[SkippedChunk] = (),
    *,
    strict: bool = False,
) -> None:
    """Refuse inputs that fell short, with :class:`~coffea_ad.errors.InputFileError` naming each file or chunk
    and its reason: a dataset left without a readable file (every file with entries skipped, or every entry of
    its files lost to skipped chunks); under ``strict``, any skipped file or chunk at all.

    A dataset whose files are all readable and empty (a tree of 0 entries) is not refused: it has no events.
    """
    skipped, skipped_chunks = list(skipped), list(skipped_chunks)
    if strict and (skipped or skipped_chunks):
        described = [f"{entry.path} (dataset {entry.dataset!r}): {entry.reason}" for entry in skipped]
        described += [chunk.describe() for chunk in skipped_chunks]
        raise InputFileError(
            f"{len(skipped)} file(s) and {len(skipped_chunks)} chunk(s) skipped, and strict makes any skipped "
            f"input an error: {_listed(described)}"
        )
    for name, files in checked.items():
        lost = [file for file in skipped if file.dataset == name]
        if not files.files and lost:
            reasons = _listed([f"{file.path}: {file.reason}" for file in lost])
            raise InputFileError(f"dataset {name!r} has no readable file: {reasons}")
        chunks = [chunk for chunk in skipped_chunks if chunk.dataset == name]
        if files.n_entries and sum(chunk.n_entries for chunk in chunks) >= files.n_entries:
            reasons = _listed([chunk.describe() for chunk in chunks])
            raise InputFileError(
                f"dataset {name!r}: none of the {files.n_entries} entries of its files could be read: {reasons}"
            )


def log_skipped_chunks(chunks: Iterable[SkippedChunk]) -> None:
    """One warning per chunk skipped for a read error (file, entries, reason): on the terminal, the line that
    :func:`~coffea_ad.processing.check_fileset` writes for each skipped file."""
    for chunk in chunks:
        logger.warning("skipped %s", chunk.describe())


def _check_written(dataset: str, rows: Any, n_events: int) -> None:
    """Refuse a written table whose parts do not hold one row per event (``rows``: a count, or one per part)."""
    written = int(rows if isinstance(rows, int) else ak.sum(rows))
    if written != int(n_events):
        raise InputFileError(f"dataset {dataset!r}: the workers wrote {written} table rows for {n_events} events")


def _collect(
    computed: Mapping[str, Any],
    checked: Mapping[str, DatasetFiles],
    plan: Mapping[str, _DatasetPlan],
    sinks: Mapping[str, _TableSink],
    histogram_variables: Iterable[str] | None,
    region_config: RegionConfig,
) -> FeatureResult:
    """The run's outputs per dataset; empty ones for datasets without readable events (written as one empty
    part when the workers write the tables)."""
    gathered, histograms, cutflows = {}, {}, {}
    for name, files in checked.items():
        kept = plan[name].features
        layout = partition_layout(kept, region_config)
        sink = sinks[name]
        if name in computed:
            output = computed[name]
            if sink.tables == "memory":
                table = output["table"]
                gathered[name] = sort_by_event_id(table) if set(EVENT_ID_COLUMNS) <= set(table.fields) else table
            elif sink.tables == "workers" and sink.reduce is None:
                _check_written(name, output["table_rows"], output["cutflow"]["n_events"])
            histograms[name] = output["histograms"]
            counts = output["cutflow"]["regions"].values()
            cutflows[name] = cutflow(counts, layout, output["cutflow"]["n_events"])
        else:
            flags = flag_names(layout)
            empty = empty_table(kept, flags, gen_weight=not files.files or "genWeight" in files.branches)
            if sink.tables == "memory":
                gathered[name] = sink.chunk(empty)
            elif sink.tables == "workers":
                sink.write(empty, part_name(0, 0))
            histograms[name] = book_histograms(histogram_variables or kept, flags)
            cutflows[name] = cutflow([0] * len(flags), layout, 0)
        check_cutflow(cutflows[name], source=f"dataset {name!r}")
    return FeatureResult(
        mode="",  # run_processor sets the mode and the skipped files
        tables=gathered,
        histograms=histograms,
        cutflows=cutflows,
        features={name: plan[name].features for name in checked},
        left_out={name: plan[name].left_out for name in checked},
        files=dict(checked),
        skipped=[],
        met_collections={name: plan[name].met_collections for name in checked},
    )


def write_outputs(result: FeatureResult, outdir: str | Path) -> dict[str, Path | str]:
    """Write ``histograms.root``, ``cutflow.json`` and the tables gathered in memory as
    ``features/{dataset}.parquet`` under ``outdir``; the returned paths also list the tables the workers wrote."""
    outdir = Path(outdir)
    names = {dataset: safe_name(dataset) for dataset in result.histograms}
    if len(set(names.values())) != len(names):
        raise ConfigurationError(f"dataset names collide once made file-safe: {names}")
    try:
        (outdir / "features" if result.tables else outdir).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputFileError(f"cannot create output folder {outdir}: {error.strerror or error}") from error
    paths: dict[str, Path | str] = {"histograms": outdir / "histograms.root", "cutflow": outdir / "cutflow.json"}
    write_root(paths["histograms"], {names[dataset]: hists for dataset, hists in result.histograms.items()})
    for dataset, table in result.tables.items():
        paths[f"table:{dataset}"] = write_parquet(outdir / "features" / f"{names[dataset]}.parquet", table, dataset)
    paths.update({f"table:{dataset}": folder for dataset, folder in result.written.items()})
    write_json(paths["cutflow"], cutflow_summary(result))
    return paths


def cutflow_summary(result: FeatureResult) -> dict[str, Any]:
    """The content of ``cutflow.json``: per dataset counts, features and files (skipped files and chunks with
    their reasons, and the entries the chunks lost: ``n_events + n_entries_skipped`` is every entry of the
    dataset's readable files); totals of files, chunks and entries skipped."""
    skipped_by_dataset: dict[str, list[dict[str, str]]] = {}
    for skipped in result.skipped:
        skipped_by_dataset.setdefault(skipped.dataset, []).append({"file": skipped.path, "reason": skipped.reason})
    chunks_by_dataset: dict[str, list[dict[str, Any]]] = {}
    for chunk in result.skipped_chunks:
        chunks_by_dataset.setdefault(chunk.dataset, []).append({
            "file": chunk.path,
            "entry_start": chunk.entry_start,
            "entry_stop": chunk.entry_stop,
            "entries": chunk.n_entries,
            "reason": chunk.reason,
        })
    datasets = {}
    for name, counts in result.cutflows.items():
        files = result.files[name]
        chunks = chunks_by_dataset.get(name, [])
        datasets[name] = {
            **counts,
            "n_entries_skipped": sum(chunk["entries"] for chunk in chunks),
            "features": result.features[name],
            "features_left_out": result.left_out[name],
            "files": {
                "processed": list(files.files),
                "met_collection": result.met_collections.get(name, {}),
                "empty": files.empty_files,
                "skipped": skipped_by_dataset.get(name, []),
                "skipped_chunks": chunks,
            },
        }
    return {
        "mode": result.mode,
        "n_files_processed": sum(len(files.files) + len(files.empty_files) for files in result.files.values()),
        "n_files_skipped": len(result.skipped),
        "n_chunks_skipped": len(result.skipped_chunks),
        "n_entries_skipped": sum(chunk.n_entries for chunk in result.skipped_chunks),
        "datasets": datasets,
    }


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None) -> Iterator[Any]:
    """A distributed client: connected to ``scheduler`` if given, else on a new LocalCluster of ``workers``.

    The LocalCluster's workers keep glibc's adaptive ``malloc``: distributed's default
    ``MALLOC_TRIM_THRESHOLD_=65536`` fixes the threshold and so makes every array above 128 kB a fresh
    ``mmap``, page-faulted in and returned at each free; that made a 100k-event chunk 25 % slower
    (``benchmarks/feature_throughput.py``, README Performance, which also gives the workers' memory).
    """
    import dask
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
    adaptive_malloc = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
    with dask.config.set(adaptive_malloc), LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        scheduler_kwargs={"dashboard": False},
    ) as cluster:
        with Client(cluster) as client:
            yield client
