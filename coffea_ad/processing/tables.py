"""The per-event feature table: one row per event, written as parquet for training.

Columns, in order: ``dataset`` (added when written), the event identifiers ``run``, ``luminosityBlock``,
``event`` (to join rows back to the NanoAOD events), ``genWeight`` for simulation (absent for data), every
computed feature (None where an object is missing) and every region flag ``{partition}_{region}`` (bool).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from coffea_ad.errors import InputFileError
from coffea_ad.features import FEATURES
from coffea_ad.paths import atomic_output

__all__ = [
    "EVENT_ID_COLUMNS",
    "complete_rows",
    "feature_table",
    "empty_table",
    "sort_by_event_id",
    "write_parquet",
    "read_parquet",
]

#: The identifiers that make a row joinable to its NanoAOD event, with their NanoAOD types.
EVENT_ID_COLUMNS: dict[str, str] = {"run": "uint32", "luminosityBlock": "uint32", "event": "uint64"}
_WEIGHT = ("genWeight", "float32")


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


def complete_rows(table: ak.Array, columns: Iterable[str]) -> dict[str, np.ndarray]:
    """``columns`` of ``table`` as float64 numpy arrays, keeping only the rows where every one is present.

    A feature is None where its object is missing (e.g. ``mjj`` without two fat jets); such rows are
    dropped, never turned into a number. An unknown column raises, naming the ones the table has.
    """
    columns = list(columns)
    unknown = [name for name in columns if name not in table.fields]
    if unknown:
        raise InputFileError(f"feature table has no column(s) {unknown}; it has {table.fields}")
    present = np.ones(len(table), dtype=bool)
    for name in columns:
        present &= ~ak.to_numpy(ak.is_none(table[name]))
    return {name: ak.to_numpy(ak.drop_none(table[name][present])).astype(np.float64) for name in columns}


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


def write_parquet(path: str | Path, table: ak.Array, dataset: str) -> Path:
    """Write ``table`` with a leading ``dataset`` column to ``path`` atomically; return the path."""
    columns = {"dataset": np.full(len(table), dataset, dtype=object).astype(str)}
    columns.update({name: table[name] for name in table.fields})
    with atomic_output(path) as tmp:
        ak.to_parquet(ak.zip(columns, depth_limit=1), tmp)
    return Path(path)


def read_parquet(path: str | Path) -> ak.Array:
    """Read a feature table written by :func:`write_parquet`."""
    try:
        return ak.from_parquet(path)
    except (OSError, ValueError) as error:
        raise InputFileError(f"cannot read feature table {path}: {error}") from error
