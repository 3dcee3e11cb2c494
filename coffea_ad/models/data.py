"""Training tables: reading, validating and splitting the feature tables of ``coffea-ad features``.

A table is a pandas DataFrame, a pyarrow Table or the path of a parquet file. The estimators never look at
column names beyond the explicit list of feature columns they are given, the resonant variable (``mjj`` by
default), an optional boolean region column and an optional label column. Everything here is numpy-only.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from coffea_ad.errors import ConfigurationError, InputFileError

__all__ = [
    "Table",
    "open_table",
    "column_array",
    "feature_matrix",
    "parse_signal_region",
    "region_mask",
    "table_hash",
    "ResonantSplit",
    "resonant_split",
    "context_split",
]

Table = Any
"""A pandas DataFrame, a pyarrow Table, a mapping of column name to array, or a parquet path."""


def _columns(table: Table) -> tuple[dict[str, np.ndarray] | Any, list[str], str]:
    """Return (column source, column names, a description of the table for error messages)."""
    if isinstance(table, str | os.PathLike):
        path = Path(table)
        if not path.exists():
            raise InputFileError(f"training table {path} does not exist")
        import pyarrow.parquet as pq

        try:
            arrow = pq.read_table(path)
        except Exception as error:  # pyarrow raises several unrelated types for a bad file
            raise InputFileError(f"cannot read training table {path} as parquet: {error}") from error
        return arrow, list(arrow.column_names), str(path)
    if hasattr(table, "column_names") and hasattr(table, "column"):  # pyarrow.Table
        return table, list(table.column_names), "the training table"
    if hasattr(table, "columns") and hasattr(table, "__getitem__"):  # pandas.DataFrame
        return table, [str(name) for name in table.columns], "the training table"
    if isinstance(table, dict):
        return table, list(table), "the training table"
    raise ConfigurationError(
        f"a training table must be a pandas DataFrame, a pyarrow Table, a dict of columns or a parquet path; "
        f"got {type(table).__name__}"
    )


def open_table(table: Table) -> Table:
    """Read a parquet path once into a pyarrow Table; other tables are returned unchanged."""
    if isinstance(table, str | os.PathLike):
        return _columns(table)[0]
    return table


def _get(source: Any, name: str) -> np.ndarray:
    if hasattr(source, "column_names"):
        return source.column(name).to_numpy(zero_copy_only=False)
    return np.asarray(source[name])


def column_array(table: Table, name: str, *, dtype: Any = None) -> np.ndarray:
    """Return one column of ``table`` as a numpy array; a missing column raises, naming the known ones."""
    source, names, description = _columns(table)
    if name not in names:
        raise ConfigurationError(f"column {name!r} is not in {description}; its columns are: {', '.join(names)}")
    values = _get(source, name)
    return values if dtype is None else values.astype(dtype)


def feature_matrix(table: Table, features: Sequence[str], *, rows: np.ndarray | None = None) -> np.ndarray:
    """Return the float32 matrix ``[n_rows, len(features)]`` of ``table``, checked column by column.

    A missing column raises :class:`ConfigurationError` naming it; NaN or infinite values raise naming the
    column and how many rows are affected. ``rows`` (a boolean mask) selects rows before the check.
    """
    if isinstance(features, str) or len(features) == 0:
        raise ConfigurationError(f"features must be a non-empty list of column names, got {features!r}")
    if len(set(features)) != len(features):
        raise ConfigurationError(f"features lists a column twice: {list(features)}")
    source, names, description = _columns(table)
    missing = [name for name in features if name not in names]
    if missing:
        raise ConfigurationError(
            f"feature column(s) {', '.join(map(repr, missing))} not in {description}; "
            f"its columns are: {', '.join(names)}"
        )
    columns = []
    for name in features:
        values = _get(source, name)
        if rows is not None:
            values = values[rows]
        try:
            values = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ConfigurationError(f"feature column {name!r} of {description} is not numeric: {error}") from error
        bad = ~np.isfinite(values)
        if bad.any():
            n_nan = int(np.isnan(values).sum())
            raise ConfigurationError(
                f"feature column {name!r} of {description} has {int(bad.sum())} row(s) with NaN or infinite values "
                f"({n_nan} NaN, {int(bad.sum()) - n_nan} infinite); drop or fill them before training"
            )
        columns.append(values.astype(np.float32))
    return np.ascontiguousarray(np.stack(columns, axis=1))


def region_mask(table: Table, region: str | None) -> np.ndarray | None:
    """Return the boolean mask of the region column ``region`` (``None`` when no region is asked for)."""
    if region is None:
        return None
    values = column_array(table, region)
    if values.dtype != np.bool_:
        raise ConfigurationError(f"region column {region!r} must be boolean, it has dtype {values.dtype}")
    if not values.any():
        raise ConfigurationError(
            f"region {region!r} selects no events of the training table: no background to train on"
        )
    return values


def parse_signal_region(text: str | Sequence[float]) -> tuple[float, float]:
    """Parse a signal region ``"LO:HI"`` (or a pair of numbers) into ``(lo, hi)`` with ``lo < hi``."""
    if isinstance(text, str):
        lo_text, sep, hi_text = text.partition(":")
        try:
            if not sep:
                raise ValueError
            bounds = (float(lo_text), float(hi_text))
        except ValueError:
            raise ConfigurationError(f"signal region must be LO:HI (e.g. 3300:3700), got {text!r}") from None
    else:
        bounds = tuple(float(value) for value in text)
        if len(bounds) != 2:
            raise ConfigurationError(f"signal region must be two numbers (lo, hi), got {text!r}")
    lo, hi = bounds
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ConfigurationError(f"signal region needs finite LO < HI, got {lo}:{hi}")
    return lo, hi


def table_hash(features: Sequence[str], *arrays: np.ndarray) -> str:
    """SHA-256 of the feature names and the training arrays: identifies the table a model was trained on."""
    digest = hashlib.sha256(json.dumps(list(features)).encode())
    for array in arrays:
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array, dtype=np.float32).tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class ResonantSplit:
    """Features and resonant variable (or context variables, ``m`` of shape ``[N, k]``) of a table, split
    into signal region (SR) and sidebands or control region (SB)."""

    x: np.ndarray
    m: np.ndarray
    in_sr: np.ndarray

    @property
    def x_sr(self) -> np.ndarray:
        return self.x[self.in_sr]

    @property
    def m_sr(self) -> np.ndarray:
        return self.m[self.in_sr]

    @property
    def x_sb(self) -> np.ndarray:
        return self.x[~self.in_sr]

    @property
    def m_sb(self) -> np.ndarray:
        return self.m[~self.in_sr]


def resonant_split(
    table: Table,
    features: Sequence[str],
    mass: str,
    signal_region: tuple[float, float],
    region: str | None = None,
) -> ResonantSplit:
    """Read ``features`` and the resonant variable ``mass`` and split the rows at ``signal_region``.

    Rows outside an optional boolean ``region`` column are dropped first. Either side being empty raises.
    """
    if mass in features:
        raise ConfigurationError(f"the resonant variable {mass!r} must not also be a feature")
    table = open_table(table)
    rows = region_mask(table, region)
    x = feature_matrix(table, features, rows=rows)
    m = feature_matrix(table, [mass], rows=rows)[:, 0]
    lo, hi = signal_region
    in_sr = (m >= lo) & (m < hi)
    where = f" of region {region!r}" if region else ""
    if not in_sr.any():
        raise ConfigurationError(f"signal region {mass} in [{lo}, {hi}) holds no events{where}")
    if in_sr.all():
        raise ConfigurationError(
            f"sidebands outside {mass} in [{lo}, {hi}) hold no events{where}: no background to learn"
        )
    return ResonantSplit(x=x, m=m, in_sr=in_sr)


def context_split(
    table: Table,
    features: Sequence[str],
    context: Sequence[str],
    signal_flag: str,
    region: str | None = None,
) -> ResonantSplit:
    """Read ``features`` and the ``context`` columns (e.g. HT, MET) and split at the boolean ``signal_flag``.

    For non-resonant searches: the signal region is a set of cuts on the context, given as a region flag of
    the feature table; the control region is its complement (inside ``region``). Either being empty raises.
    """
    overlap = sorted(set(context) & set(features))
    if overlap:
        raise ConfigurationError(f"context column(s) {overlap} must not also be features")
    table = open_table(table)
    rows = region_mask(table, region)
    x = feature_matrix(table, features, rows=rows)
    c = feature_matrix(table, context, rows=rows)
    flag = column_array(table, signal_flag)
    if flag.dtype != np.bool_:
        raise ConfigurationError(f"signal-region flag {signal_flag!r} must be boolean, it has dtype {flag.dtype}")
    in_sr = flag if rows is None else flag[rows]
    where = f" of region {region!r}" if region else ""
    if not in_sr.any():
        raise ConfigurationError(f"signal region {signal_flag!r} holds no events{where}")
    if in_sr.all():
        raise ConfigurationError(
            f"the control region (not {signal_flag!r}) holds no events{where}: no background to learn"
        )
    return ResonantSplit(x=x, m=c, in_sr=in_sr)
