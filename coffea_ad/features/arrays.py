"""Chunk arithmetic on flat numpy arrays, for every coffea execution mode.

The built-in features, the regions and the histogram filling compute a chunk of events on flat numpy
arrays: the same arithmetic through awkward's jagged and option types costs several times more per event
than reading the branches. Three kinds of input reach them:

- a concrete chunk (eager or virtual NanoEvents, or the partition that a dask task computes): computed as is;
- a typetracer (dask-awkward runs a ``map_partitions`` function on one to learn its output type and the
  columns it reads): the branches the computation reads are touched, the computation runs on a chunk of no
  events, and the result is handed back as a typetracer (:func:`on_concrete`);
- a dask-awkward collection: one ``map_partitions`` over its partitions (done by the callers).

Missing values travel as NaN inside these functions and become None (an option type) in what they return.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import awkward as ak
import numpy as np

__all__ = [
    "is_typetracer",
    "no_events",
    "branch_array",
    "touch_branches",
    "as_typetracer",
    "on_concrete",
    "jagged",
    "numeric",
    "nullable",
]


def is_typetracer(array: Any) -> bool:
    """Whether ``array`` is an awkward typetracer (no data: a type and a length, maybe unknown)."""
    return isinstance(array, ak.Array) and ak.backend(array) == "typetracer"


def no_events(events: Any) -> ak.Array:
    """Concrete events with the form, behaviour and metadata of ``events`` and none of its entries (nothing is
    read): what a computation runs on in place of a typetracer, or of a chunk that cannot be read."""
    return ak.Array(events.layout.form.length_zero_array(), behavior=events.behavior, attrs=events.attrs)


def branch_array(events: Any, branch: str) -> Any:
    """The NanoAOD branch ``branch`` of NanoEvents ``events``: ``Coll_field`` as ``events.Coll["field"]``, or a flat
    field such as ``genWeight``."""
    if branch in events.fields:
        return events[branch]
    collection, _, field = branch.partition("_")
    return events[collection][field]


def touch_branches(events: Any, branches: Iterable[str]) -> None:
    """Mark ``branches`` of typetracer ``events`` as read (what dask-awkward's column projection then loads)."""
    for branch in branches:
        ak.typetracer.touch_data(branch_array(events, branch))


def as_typetracer(array: Any) -> ak.Array:
    """A concrete awkward array as a typetracer of unknown length, with its behaviour and attributes."""
    layout = ak.to_layout(array).to_typetracer(forget_length=True)
    return ak.Array(layout, behavior=array.behavior, attrs=array.attrs)


def on_concrete(function: Callable[..., Any], events: Any, branches: Iterable[str], *args: Any,
                **kwargs: Any) -> Any:
    """``function(events, *args, **kwargs)`` for concrete ``events``; for typetracer ``events``, the same on a chunk
    of no events after touching ``branches`` (exactly what ``function`` reads), with every awkward array of the
    result (an array, or a dict of arrays) made a typetracer."""
    if not is_typetracer(events):
        return function(events, *args, **kwargs)
    touch_branches(events, branches)
    result = function(no_events(events), *args, **kwargs)
    if isinstance(result, dict):
        return {name: as_typetracer(value) if isinstance(value, ak.Array) else value for name, value in result.items()}
    return as_typetracer(result)


def jagged(column: Any, dtype: Any = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """A jagged column (one list per event, no None) as its flat values in ``dtype`` and the counts per event."""
    counts = ak.to_numpy(ak.num(column, axis=1))
    values = ak.to_numpy(ak.flatten(column, axis=1))
    return values.astype(dtype, copy=False), counts


def numeric(column: Any) -> np.ndarray:
    """One number per event as float64, NaN where None: awkward (option types included) or numpy input.

    The option type of the features (:func:`nullable`, a byte mask over numbers) is read from its buffers
    directly, at a fifth of the cost of a masked array.
    """
    layout = column.layout if isinstance(column, ak.Array) else None
    if (
        isinstance(layout, ak.contents.ByteMaskedArray)
        and isinstance(layout.content, ak.contents.NumpyArray)
        and layout.content.data.ndim == 1
        and ak.backend(column) == "cpu"
    ):
        values = np.array(ak.to_numpy(layout.content)[: len(layout)], dtype=np.float64)
        values[np.asarray(layout.mask, dtype=np.int8).astype(bool) != layout.valid_when] = np.nan
        return values
    values = column if isinstance(column, np.ndarray) else ak.to_numpy(column, allow_missing=True)
    if isinstance(values, np.ma.MaskedArray):
        return values.astype(np.float64).filled(np.nan)
    return values.astype(np.float64, copy=False)


def nullable(values: np.ndarray, defined: np.ndarray | None = None) -> ak.Array:
    """An option-typed awkward column: ``values`` where ``defined`` (default: where not NaN), None elsewhere."""
    if defined is None:
        defined = ~np.isnan(values)
    return ak.Array(ak.contents.ByteMaskedArray(
        ak.index.Index8(defined.astype(np.int8)), ak.contents.NumpyArray(values), valid_when=True
    ))
