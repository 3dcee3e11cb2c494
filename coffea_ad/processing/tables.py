"""The per-event feature table: written as parquet by the workers, read by training, scoring and the examples.

On disk a table is one parquet file, or a folder of parquet parts (``features/{dataset}.parquet/part-*.parquet``,
the layout Spark and dask write, which the workers of :func:`coffea_ad.processing.run_processor` write): every
reader here takes either, as a local path or an fsspec URL, and reads a folder as one table, its parts in the
order of their names. Rows are ordered by part, then as the events of the chunk were; a table gathered in
memory is ordered by event id (:func:`sort_by_event_id`); join on :data:`EVENT_ID_COLUMNS`, never on row order.

Columns, in order: ``dataset`` (added when written), the event identifiers ``run``, ``luminosityBlock``,
``event`` (to join rows back to the NanoAOD events), ``genWeight`` for simulation (absent for data), every
computed feature (None where an object is missing) and every region flag ``{partition}_{region}`` (bool).

This module is the one owner of reading tables (numpy, pyarrow and awkward only; no torch). A :data:`Table`
is a parquet path, a pyarrow Table, a pandas DataFrame, an awkward record array or a mapping of column name to
array. A value is *missing* where it is None or NaN (a feature whose object is absent); missing values are
never turned into numbers: :func:`complete_rows` and :func:`missing_values` find the rows that have them,
:func:`feature_matrix` refuses them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from coffea_ad.errors import ConfigurationError, InputFileError
from coffea_ad.features import FEATURES
from coffea_ad.paths import atomic_output

__all__ = [
    "EVENT_ID_COLUMNS",
    "WEIGHT_BRANCH",
    "Table",
    "open_table",
    "column_names",
    "column_array",
    "float_column",
    "missing_values",
    "complete_rows",
    "feature_matrix",
    "region_mask",
    "table_hash",
    "take_rows",
    "concatenate_tables",
    "feature_table",
    "empty_table",
    "sort_by_event_id",
    "write_parquet",
    "write_part",
    "read_parquet",
]

#: The identifiers that make a row joinable to its NanoAOD event, with their NanoAOD types.
EVENT_ID_COLUMNS: dict[str, str] = {"run": "uint32", "luminosityBlock": "uint32", "event": "uint64"}
#: The per-event generator weight of simulation, kept in the table when the input has it.
WEIGHT_BRANCH = "genWeight"
_WEIGHT = (WEIGHT_BRANCH, "float32")

Table = Any
"""A parquet path, a pyarrow Table, a pandas DataFrame, an awkward record array or a mapping column -> array."""


def _is_url(path: str | os.PathLike) -> bool:
    return isinstance(path, str) and "://" in path


def _read_arrow(path: str | os.PathLike) -> Any:
    """A parquet file or folder of parts (local path or fsspec URL) as one pyarrow Table."""
    import pyarrow.dataset as ds

    if _is_url(path):
        from fsspec.core import url_to_fs

        filesystem, location = url_to_fs(path)
        if not filesystem.exists(location):
            raise InputFileError(f"table {path} does not exist")
    else:
        filesystem, location = None, Path(path)
        if not location.exists():
            raise InputFileError(f"table {location} does not exist")
    try:
        # A folder: every part not hidden (a run's temporary folder is), in the order of their names.
        return ds.dataset(str(location), filesystem=filesystem, format="parquet").to_table()
    except Exception as error:  # pyarrow raises several unrelated types for a bad file
        raise InputFileError(f"cannot read table {path} as parquet: {error}") from error


def _source(table: Table) -> tuple[Any, list[str], str]:
    """Return (column source, column names, a description of the table for error messages)."""
    if isinstance(table, str | os.PathLike):
        arrow = _read_arrow(table)
        return arrow, list(arrow.column_names), str(table)
    if isinstance(table, ak.Array):
        return table, list(table.fields), "the table"
    if hasattr(table, "column_names") and hasattr(table, "column"):  # pyarrow.Table
        return table, list(table.column_names), "the table"
    if hasattr(table, "columns") and hasattr(table, "__getitem__"):  # pandas.DataFrame
        return table, [str(name) for name in table.columns], "the table"
    if isinstance(table, Mapping):
        return table, list(table), "the table"
    raise ConfigurationError(
        "a table must be a parquet path, a pyarrow Table, a pandas DataFrame, an awkward record array or a dict "
        f"of columns; got {type(table).__name__}"
    )


def open_table(table: Table) -> Table:
    """Read a parquet path once into a pyarrow Table; other tables are returned unchanged."""
    return _source(table)[0] if isinstance(table, str | os.PathLike) else table


def column_names(table: Table) -> list[str]:
    """The column names of ``table``, in order."""
    return _source(table)[1]


def _check_columns(names: Sequence[str], known: Sequence[str], description: str, what: str = "column") -> None:
    missing = [name for name in names if name not in known]
    if missing:
        raise ConfigurationError(
            f"{what}(s) {', '.join(map(repr, missing))} not in {description}; its columns are: {', '.join(known)}"
        )


def _get(source: Any, name: str) -> np.ndarray:
    if isinstance(source, ak.Array):
        column = source[name]
        return ak.to_numpy(ak.fill_none(column, np.nan) if column.layout.is_option else column)
    if hasattr(source, "column_names"):
        return source.column(name).to_numpy(zero_copy_only=False)
    return np.asarray(source[name])


def column_array(table: Table, name: str, *, dtype: Any = None) -> np.ndarray:
    """One column of ``table`` as a numpy array; a missing column raises, naming the known ones."""
    source, names, description = _source(table)
    _check_columns([name], names, description)
    values = _get(source, name)
    return values if dtype is None else values.astype(dtype)


def _as_float(values: np.ndarray, name: str, description: str) -> np.ndarray:
    if values.dtype == object:
        values = np.where(np.equal(values, None), np.nan, values)
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ConfigurationError(f"column {name!r} of {description} is not numeric: {error}") from error


def float_column(table: Table, name: str) -> np.ndarray:
    """One numeric column as float64, NaN where a value is missing (None in the table)."""
    source, names, description = _source(table)
    _check_columns([name], names, description)
    return _as_float(_get(source, name), name, description)


def missing_values(table: Table, columns: Iterable[str]) -> dict[str, np.ndarray]:
    """Per column, the boolean mask of the rows where its value is missing (None or NaN)."""
    table = open_table(table)
    return {name: np.isnan(float_column(table, name)) for name in columns}


def complete_rows(table: Table, columns: Iterable[str]) -> dict[str, np.ndarray]:
    """``columns`` of ``table`` as float64 numpy arrays, keeping only the rows where every one is present.

    A feature is None where its object is missing (e.g. ``mjj`` without two fat jets); such rows are
    dropped, never turned into a number. An unknown column raises, naming the ones the table has.
    """
    table = open_table(table)
    values = {name: float_column(table, name) for name in columns}
    present = np.ones(len(next(iter(values.values()))) if values else 0, dtype=bool)
    for column in values.values():
        present &= ~np.isnan(column)
    return {name: column[present] for name, column in values.items()}


def feature_matrix(table: Table, features: Sequence[str], *, rows: np.ndarray | None = None) -> np.ndarray:
    """The float32 matrix ``[n_rows, len(features)]`` of ``table``, checked column by column.

    A missing column raises :class:`ConfigurationError` naming it; missing (None/NaN) or infinite values
    raise naming the column and how many rows are affected (select complete rows first, e.g. with
    :func:`complete_rows`). ``rows`` (a boolean mask or indices) selects rows before the check.
    """
    if isinstance(features, str) or len(features) == 0:
        raise ConfigurationError(f"features must be a non-empty list of column names, got {features!r}")
    if len(set(features)) != len(features):
        raise ConfigurationError(f"features lists a column twice: {list(features)}")
    source, names, description = _source(table)
    _check_columns(features, names, description, "feature column")
    columns = []
    for name in features:
        values = _get(source, name)
        values = _as_float(values if rows is None else values[rows], name, description)
        bad = ~np.isfinite(values)
        if bad.any():
            n_nan = int(np.isnan(values).sum())
            raise ConfigurationError(
                f"feature column {name!r} of {description} has {int(bad.sum())} row(s) with missing or infinite "
                f"values ({n_nan} missing (None/NaN), {int(bad.sum()) - n_nan} infinite)"
            )
        columns.append(values.astype(np.float32))
    return np.ascontiguousarray(np.stack(columns, axis=1))


def region_mask(table: Table, region: str | None) -> np.ndarray | None:
    """The boolean mask of the region column ``region`` (``None`` when no region is asked for)."""
    if region is None:
        return None
    values = column_array(table, region)
    if values.dtype != np.bool_:
        raise ConfigurationError(f"region column {region!r} must be boolean, it has dtype {values.dtype}")
    if not values.any():
        raise ConfigurationError(f"region {region!r} selects no events of the table: no background to train on")
    return values


def table_hash(columns: Sequence[str], *arrays: np.ndarray) -> str:
    """SHA-256 of the column names and the arrays read from them: identifies the table a model was trained on."""
    digest = hashlib.sha256(json.dumps(list(columns)).encode())
    for array in arrays:
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array, dtype=np.float32).tobytes())
    return digest.hexdigest()


def take_rows(table: Table, rows: np.ndarray) -> dict[str, np.ndarray]:
    """The rows ``rows`` (a boolean mask or indices) of every column of ``table``, as a dict of numpy arrays."""
    source, names, _ = _source(table)
    return {name: _get(source, name)[rows] for name in names}


def concatenate_tables(*tables: Table) -> dict[str, np.ndarray]:
    """The rows of ``tables`` one after the other (as a dict of numpy arrays); every table needs the first
    one's columns."""
    if not tables:
        raise ConfigurationError("concatenate_tables needs at least one table")
    sources = [_source(table) for table in tables]
    names = sources[0][1]
    for _, known, description in sources[1:]:
        _check_columns(names, known, description)
    return {name: np.concatenate([_get(source, name) for source, _, _ in sources]) for name in names}


def feature_table(events: Any, features: Any, flags: Mapping[str, Any]) -> Any:
    """One record per event: event identifiers, ``genWeight`` if present, features and region flags."""
    columns = {name: events[name] for name in EVENT_ID_COLUMNS}
    if _WEIGHT[0] in events.fields:
        columns[_WEIGHT[0]] = events[_WEIGHT[0]]
    columns.update({name: features[name] for name in features.fields})
    columns.update(flags)
    return ak.zip(
        {name: ak.without_parameters(column) for name, column in columns.items()}, depth_limit=1, behavior={}
    )


def empty_table(feature_names: Iterable[str], flag_names: Iterable[str], *, gen_weight: bool) -> ak.Array:
    """A table with no rows and the columns and types a non-empty one would have (``genWeight`` if asked)."""
    columns: dict[str, Any] = {name: np.empty(0, dtype) for name, dtype in EVENT_ID_COLUMNS.items()}
    if gen_weight:
        columns[_WEIGHT[0]] = np.empty(0, _WEIGHT[1])
    for name in feature_names:
        column = ak.Array(np.empty(0, FEATURES[name].dtype))
        columns[name] = ak.mask(column, np.ones(0, bool)) if FEATURES[name].nullable else column
    columns.update({name: np.empty(0, bool) for name in flag_names})
    return ak.zip(columns, depth_limit=1)


def sort_by_event_id(table: ak.Array) -> ak.Array:
    """Rows ordered by (run, luminosityBlock, event): the same table whatever the chunking was."""
    keys = [ak.to_numpy(table[name]) for name in reversed(EVENT_ID_COLUMNS)]
    return table[np.lexsort(keys)]


def _repeated_string(value: str, length: int) -> ak.Array:
    """``length`` copies of ``value`` as an awkward string column, built from its UTF-8 bytes (a numpy array of
    Python strings costs a conversion per row)."""
    encoded = np.frombuffer(value.encode(), dtype=np.uint8)
    offsets = ak.index.Index64(np.arange(length + 1, dtype=np.int64) * len(encoded))
    characters = ak.contents.NumpyArray(np.tile(encoded, length), parameters={"__array__": "char"})
    return ak.Array(ak.contents.ListOffsetArray(offsets, characters, parameters={"__array__": "string"}))


def _with_dataset(table: ak.Array, dataset: str) -> ak.Array:
    columns = {"dataset": _repeated_string(dataset, len(table))}
    columns.update({name: table[name] for name in table.fields})
    return ak.zip(columns, depth_limit=1)


def write_parquet(path: str | Path, table: ak.Array, dataset: str) -> Path:
    """Write ``table`` with a leading ``dataset`` column to ``path`` atomically; return the path."""
    with atomic_output(path) as tmp:
        ak.to_parquet(_with_dataset(table, dataset), tmp)
    return Path(path)


def write_part(destination: str, table: ak.Array, dataset: str) -> int:
    """Write one part of a table (a local path or fsspec URL), with a leading ``dataset`` column; return its rows.

    Not atomic by itself: the runner writes parts into a temporary folder that it moves into place once the
    whole run succeeded.
    """
    ak.to_parquet(_with_dataset(table, dataset), destination)
    return len(table)


def read_parquet(path: str | Path) -> ak.Array:
    """Read a feature table: a parquet file, or a folder of parts read as one table (local path or fsspec URL)."""
    if not _is_url(path) and not Path(path).exists():
        raise InputFileError(f"feature table {path} does not exist")
    try:
        return ak.from_parquet(path)
    except (OSError, ValueError) as error:
        raise InputFileError(f"cannot read feature table {path}: {error}") from error
