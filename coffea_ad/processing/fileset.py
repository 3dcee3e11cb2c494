"""Coffea filesets: reading, validating and checking every file before a run.

A fileset is ``{dataset: {"files": {path: tree} | [path, ...], "metadata": {...}}}`` (coffea's
convention). Before anything runs, every file is opened: a file that cannot be read, is empty (0 bytes), is
truncated (shorter than its ROOT header says) or has no ``Events`` tree is reported and skipped
(:class:`SkippedFile`), never silently. A read error found later, inside a file (a corrupt compressed basket),
skips one chunk of it: :class:`SkippedChunk`, reported by :func:`coffea_ad.processing.run_processor`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from coffea_ad.errors import ConfigurationError, InputFileError

__all__ = [
    "DEFAULT_TREE",
    "SkippedFile",
    "SkippedChunk",
    "DatasetFiles",
    "load_fileset",
    "normalize_fileset",
    "read_fileset",
    "check_fileset",
    "safe_name",
]

logger = logging.getLogger(__name__)

DEFAULT_TREE = "Events"


@dataclasses.dataclass(frozen=True)
class SkippedFile:
    """A file left out of the run, and why."""

    dataset: str
    path: str
    reason: str


@dataclasses.dataclass(frozen=True)
class SkippedChunk:
    """The entries ``[entry_start, entry_stop)`` of a file left out of the run by a read error, and why."""

    dataset: str
    path: str
    entry_start: int
    entry_stop: int
    reason: str

    @property
    def n_entries(self) -> int:
        """The number of entries (events) lost."""
        return self.entry_stop - self.entry_start

    def describe(self) -> str:
        """``entries 50-100 (50) of FILE (dataset 'ttbar'): REASON``: the chunk in one line."""
        return (f"entries {self.entry_start}-{self.entry_stop} ({self.n_entries}) of {self.path} "
                f"(dataset {self.dataset!r}): {self.reason}")


@dataclasses.dataclass
class DatasetFiles:
    """The readable files of one dataset, with what they hold.

    ``branches`` are the branches every file has; ``file_branches``, ``file_types`` and ``file_entries`` hold
    each file's own branch names, branch types (uproot's ``typename``, e.g. ``uint8_t[]``) and number of entries:
    what decides its MET collection, and which files can share one form in dask mode. ``file_uuids`` are the
    ROOT files' UUIDs, which with the entries let dask mode split the files into steps without opening them again.
    """

    files: dict[str, str]
    metadata: dict[str, Any]
    branches: frozenset[str]
    n_entries: int
    empty_files: list[str] = dataclasses.field(default_factory=list)
    file_branches: dict[str, frozenset[str]] = dataclasses.field(default_factory=dict)
    file_entries: dict[str, int] = dataclasses.field(default_factory=dict)
    file_types: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    file_uuids: dict[str, str] = dataclasses.field(default_factory=dict)

    def subset(self, paths: Iterable[str]) -> DatasetFiles:
        """The same dataset restricted to ``paths`` (some of its readable files), without its empty files."""
        paths = list(paths)
        branch_sets = [self.file_branches[path] for path in paths]
        return DatasetFiles(
            files={path: self.files[path] for path in paths},
            metadata=dict(self.metadata),
            branches=frozenset.intersection(*branch_sets) if branch_sets else frozenset(),
            n_entries=sum(self.file_entries[path] for path in paths),
            file_branches={path: self.file_branches[path] for path in paths},
            file_entries={path: self.file_entries[path] for path in paths},
            file_types={path: self.file_types[path] for path in paths if path in self.file_types},
            file_uuids={path: self.file_uuids[path] for path in paths if path in self.file_uuids},
        )

    def steps(self, step_size: int) -> dict[str, dict[str, Any]]:
        """The files as coffea's ``preprocess`` describes them (object path, steps, entries, UUID), from what
        :func:`check_fileset` read: the steps that ``preprocess(..., step_size)`` makes (each file cut into
        ``round(entries / step_size)`` steps, at least one, of equal size but the last), without reopening it.
        Where that size overshoots (120 entries in steps of 7: 17 steps of 8), preprocess ends with steps that
        start past the file's end, which coffea then refuses; here the file simply ends the last step."""
        described = {}
        for path, tree in self.files.items():
            entries = self.file_entries[path]
            size = math.ceil(entries / max(round(entries / step_size), 1))
            described[path] = {
                "object_path": tree,
                "steps": [[start, min(start + size, entries)] for start in range(0, entries, size)],
                "num_entries": entries,
                "uuid": self.file_uuids[path],
            }
        return described


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


def _open_tree(path: str, tree_name: str) -> tuple[int, dict[str, str], str]:
    """(entries, branch name -> type name, file UUID) of a readable tree; raises OSError/ValueError/KeyError
    otherwise."""
    import uproot

    with uproot.open(path) as handle:
        expected, actual = handle.file.fEND, handle.file.source.num_bytes
        if actual is not None and actual < expected:
            raise OSError(f"truncated: {actual} bytes, the ROOT header says {expected}")
        tree = handle[tree_name]
        types = {name: tree[name].typename for name in tree.keys(recursive=False)}
        return tree.num_entries, types, str(handle.file.uuid)


def _reason(path: str, error: BaseException) -> str:
    """Why a file is skipped, in one line: the error's whole message (uproot's spans several lines)."""
    if isinstance(error, OSError) and os.path.isfile(path) and os.path.getsize(path) == 0:
        return "OSError: the file is empty (0 bytes), not a ROOT file"
    return f"{type(error).__name__}: {' '.join(str(error).split())}".strip()


def check_fileset(fileset: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, DatasetFiles], list[SkippedFile]]:
    """Open every file; return the readable files per dataset and the files skipped (with the reason)."""
    checked: dict[str, DatasetFiles] = {}
    skipped: list[SkippedFile] = []
    for dataset, spec in fileset.items():
        files: dict[str, str] = {}
        branch_sets: dict[str, frozenset[str]] = {}
        types_by_file: dict[str, dict[str, str]] = {}
        entries_by_file: dict[str, int] = {}
        uuids: dict[str, str] = {}
        empty: list[str] = []
        for path, tree_name in spec["files"].items():
            try:
                entries, types, uuids[path] = _open_tree(path, tree_name)
            except (OSError, ValueError, KeyError, TypeError) as error:
                reason = _reason(path, error)
                logger.warning("skipping %s (dataset %s): %s", path, dataset, reason)
                skipped.append(SkippedFile(dataset, path, reason))
                continue
            if entries == 0:
                empty.append(path)
                continue
            files[path] = tree_name
            branch_sets[path] = frozenset(types)
            types_by_file[path] = types
            entries_by_file[path] = entries
        common = frozenset.intersection(*branch_sets.values()) if branch_sets else frozenset()
        checked[dataset] = DatasetFiles(
            files,
            dict(spec["metadata"]),
            common,
            sum(entries_by_file.values()),
            empty,
            branch_sets,
            entries_by_file,
            types_by_file,
            {path: uuids[path] for path in files},
        )
    return checked, skipped


def read_fileset(fileset: str | Path | Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A fileset given as a JSON path (:func:`load_fileset`) or a mapping (:func:`normalize_fileset`)."""
    return normalize_fileset(fileset) if isinstance(fileset, Mapping) else load_fileset(fileset)
