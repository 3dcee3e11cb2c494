"""Training data: the rows of a feature table a method trains on, and their split into signal region and
sidebands (resonant) or signal and control region (non-resonant).

Reading goes through :mod:`coffea_ad.processing.tables` (the one owner of table reading). Rows with a
missing (None/NaN) value in any column a method uses are dropped and counted per column (never filled);
infinite values raise. Everything here is numpy-only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from coffea_ad.errors import ConfigurationError
from coffea_ad.features.regions import DEFAULT_SIGNAL_REGION
from coffea_ad.processing.tables import Table, column_array, float_column, open_table, region_mask

__all__ = [
    "RESONANT_INPUT_DEFAULTS",
    "RowCounts",
    "TrainingData",
    "parse_signal_region",
    "read_training_data",
    "resonant_split",
    "context_split",
]

#: The default inputs of the resonant methods: the resonant variable ``mjj`` and the signal region of
#: :data:`coffea_ad.features.regions.DEFAULT_SIGNAL_REGION`.
RESONANT_INPUT_DEFAULTS: dict[str, Any] = {"mass": "mjj", "signal_region": DEFAULT_SIGNAL_REGION}


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


@dataclass(frozen=True)
class RowCounts:
    """How many rows of a table were read, were inside the region, lacked a value, and were used.

    ``missing`` counts, per used column, the rows (inside the region) whose value is None or NaN; a row
    lacking several values counts in each of those columns but once in ``dropped``. ``held_out`` counts the
    complete rows left out of one fold model's training (the rows of its own fold, cross-training).
    """

    read: int
    in_region: int
    missing: dict[str, int] = field(default_factory=dict)
    dropped: int = 0
    held_out: int = 0

    @property
    def used(self) -> int:
        """Rows the method trains on."""
        return self.in_region - self.dropped - self.held_out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counts (``missing`` lists only the columns that lack a value somewhere; ``held_out_fold``
        appears for a fold model only)."""
        missing = {name: count for name, count in self.missing.items() if count}
        counts = {"read": self.read, "in_region": self.in_region, "dropped_missing": self.dropped,
                  "missing_by_column": missing, "used": self.used}
        if self.held_out:
            counts["held_out_fold"] = self.held_out
        return counts


@dataclass(frozen=True)
class TrainingData:
    """The complete rows of one table: features ``x`` ``[N, F]``, the condition ``[N, k]`` (the resonant
    variable or the context columns; ``None`` if the method has none), the signal-region flag, the label
    (0/1), the row indices in the table they came from, with the :class:`RowCounts` of the read, and the
    cross-training fold of each row (``None`` without cross-training)."""

    x: np.ndarray
    condition: np.ndarray | None
    in_signal_region: np.ndarray | None
    label: np.ndarray | None
    rows: np.ndarray
    counts: RowCounts
    fold: np.ndarray | None = None

    def subset(self, keep: np.ndarray) -> TrainingData:
        """The rows where the boolean ``keep`` is true (a fold model's training rows); the others are counted
        as ``held_out`` in :attr:`counts`."""
        keep = np.asarray(keep, dtype=bool)
        if keep.shape != (len(self.x),):
            raise ConfigurationError(f"subset needs one flag per row ({len(self.x)}), got shape {keep.shape}")

        def take(array: np.ndarray | None) -> np.ndarray | None:
            return None if array is None else array[keep]

        counts = dataclasses.replace(self.counts, held_out=self.counts.held_out + int((~keep).sum()))
        return TrainingData(
            x=self.x[keep], condition=take(self.condition), in_signal_region=take(self.in_signal_region),
            label=take(self.label), rows=self.rows[keep], counts=counts, fold=take(self.fold),
        )

    @property
    def x_sr(self) -> np.ndarray:
        """Features of the signal-region rows."""
        return self.x[self.in_signal_region]

    @property
    def x_sb(self) -> np.ndarray:
        """Features of the sideband / control-region rows."""
        return self.x[~self.in_signal_region]

    @property
    def m_sr(self) -> np.ndarray:
        """Condition ``[N_sr, k]`` of the signal-region rows."""
        return self.condition[self.in_signal_region]

    @property
    def m_sb(self) -> np.ndarray:
        """Condition ``[N_sb, k]`` of the sideband / control-region rows."""
        return self.condition[~self.in_signal_region]

    def arrays(self) -> list[np.ndarray]:
        """Every array read from the table (for the training-table hash)."""
        return [array for array in (self.x, self.condition, self.label) if array is not None]


def read_training_data(
    table: Table,
    features: Sequence[str],
    *,
    region: str | None = None,
    condition: Sequence[str] = (),
    signal_region: tuple[float, float] | None = None,
    signal_flag: str | None = None,
    label: str | None = None,
) -> TrainingData:
    """Read ``features``, the ``condition`` columns and the ``label`` of the rows inside ``region``.

    Rows missing a value in any of those columns are dropped and counted. ``signal_region`` (on the first
    condition column, the resonant variable) or the boolean column ``signal_flag`` splits the rows into
    signal region and sidebands / control region; either side being empty raises.
    """
    if isinstance(features, str) or len(features) == 0:
        raise ConfigurationError(f"features must be a non-empty list of column names, got {features!r}")
    used = [*features, *condition, *([label] if label else [])]
    if len(set(used)) != len(used):
        raise ConfigurationError(
            f"a column is used twice among features {list(features)}, condition {list(condition)} and label {label!r}"
        )
    table = open_table(table)
    mask = region_mask(table, region)
    values = {name: float_column(table, name) for name in used}
    n_read = len(values[used[0]])
    inside = np.arange(n_read) if mask is None else np.flatnonzero(mask)
    values = {name: column[inside] for name, column in values.items()}
    missing = {name: np.isnan(column) for name, column in values.items()}
    incomplete = np.logical_or.reduce(list(missing.values()))
    keep = ~incomplete
    for name, column in values.items():
        infinite = int(np.isinf(column[keep]).sum())
        if infinite:
            raise ConfigurationError(f"column {name!r} of the table has {infinite} row(s) with infinite values")
    counts = RowCounts(
        read=n_read,
        in_region=len(inside),
        missing={name: int(flags.sum()) for name, flags in missing.items()},
        dropped=int(incomplete.sum()),
    )
    where = f" of region {region!r}" if region else ""
    if counts.used == 0:
        raise ConfigurationError(f"no row{where} has a value in every column used ({', '.join(used)})")
    rows = inside[keep]
    x = np.ascontiguousarray(np.stack([values[name][keep] for name in features], axis=1), dtype=np.float32)
    cond = None
    if condition:
        cond = np.ascontiguousarray(np.stack([values[name][keep] for name in condition], axis=1), dtype=np.float32)
    labels = None
    if label:
        labels = values[label][keep]
        if not np.isin(labels, (0.0, 1.0)).all():
            raise ConfigurationError(f"label column {label!r} must hold 0/1 or booleans")
    in_sr = None
    if signal_region is not None:
        lo, hi = signal_region
        in_sr = (cond[:, 0] >= lo) & (cond[:, 0] < hi)
        inside_name = f"signal region {condition[0]} in [{lo}, {hi}) holds"
        outside_name = f"sidebands outside {condition[0]} in [{lo}, {hi}) hold"
    elif signal_flag is not None:
        flag = column_array(table, signal_flag)
        if flag.dtype != np.bool_:
            raise ConfigurationError(f"signal-region flag {signal_flag!r} must be boolean, it has dtype {flag.dtype}")
        in_sr = flag[rows]
        inside_name = f"signal region {signal_flag!r} holds"
        outside_name = f"the control region (not {signal_flag!r}) holds"
    if in_sr is not None:
        if not in_sr.any():
            raise ConfigurationError(f"{inside_name} no events{where}")
        if in_sr.all():
            raise ConfigurationError(f"{outside_name} no events{where}: no background to learn")
    return TrainingData(x=x, condition=cond, in_signal_region=in_sr, label=labels, rows=rows, counts=counts)


def resonant_split(
    table: Table,
    features: Sequence[str],
    mass: str,
    signal_region: tuple[float, float],
    region: str | None = None,
) -> TrainingData:
    """Read ``features`` and the resonant variable ``mass`` and split the rows at ``signal_region``."""
    if mass in features:
        raise ConfigurationError(f"the resonant variable {mass!r} must not also be a feature")
    return read_training_data(table, features, region=region, condition=[mass], signal_region=signal_region)


def context_split(
    table: Table,
    features: Sequence[str],
    context: Sequence[str],
    signal_flag: str,
    region: str | None = None,
) -> TrainingData:
    """Read ``features`` and the ``context`` columns (e.g. HT, MET) and split at the boolean ``signal_flag``.

    For non-resonant searches: the signal region is a set of cuts on the context, given as a region flag of
    the feature table; the control region is its complement (inside ``region``).
    """
    overlap = sorted(set(context) & set(features))
    if overlap:
        raise ConfigurationError(f"context column(s) {overlap} must not also be features")
    return read_training_data(table, features, region=region, condition=list(context), signal_flag=signal_flag)
