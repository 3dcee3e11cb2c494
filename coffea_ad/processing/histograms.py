"""Histograms of features per region: booking, filling (at once or per dask partition) and the ROOT file layout.

In memory there is one histogram per variable with two axes: ``region`` (an integer category, the position
of the region flag; the flag names ``{partition}_{region}`` are the axis ``metadata``) and the feature.
Each event counts once per partition, in the region it belongs to. A region counter (the same ``region``
axis, no variable) gives the cutflow.

Filling is numpy arithmetic, not one ``hist`` fill per event and partition: each variable is binned once
per event, the sums of weights and of squared weights per bin are accumulated with ``numpy.bincount`` per
combination of regions, and those are added into the regions (:func:`_fill_regions`); the result is the
same histogram. In dask mode each partition is filled that way and the partitions' histograms are summed
in a tree, as ``hist.dask`` does; the collections compute to ``hist.Hist`` objects.

On disk (:func:`write_root`) each histogram is split into one-dimensional histograms named
``{dataset}/{partition}_{region}/{variable}``, with ``Weight`` storage (sum of weights and of squared weights,
i.e. TH1D with Sumw2) and under/overflow bins.

A variable's histogram holds the events of the region where the variable is defined (not None): the
``missing`` regions of the partition built on that same variable are therefore empty by construction,
while the cutflow counts every event.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import awkward as ak
import hist
import numpy as np

from coffea_ad.errors import ConfigurationError
from coffea_ad.features import FEATURES
from coffea_ad.features.arrays import as_typetracer, is_typetracer, numeric
from coffea_ad.paths import atomic_output

__all__ = [
    "feature_axis",
    "book_histograms",
    "book_region_counter",
    "histogram_rows",
    "fill_histograms",
    "count_regions",
    "fill_score_histograms",
    "score_histogram_name",
    "region_histograms",
    "write_root",
    "root_key",
]

#: The fields of histogram rows that are not variables: region positions, their combination, the weight.
_BOOKKEEPING = ("region", "combination", "weight")

#: Histograms of one dataset: variable -> 2-D histogram (region × variable).
Histograms = dict[str, Any]


def feature_axis(name: str) -> hist.axis.AxesMixin:
    """The default histogram axis of feature ``name`` (binning from :data:`coffea_ad.features.FEATURES`)."""
    if name not in FEATURES:
        raise ConfigurationError(f"no histogram binning for {name!r}: not a feature ({', '.join(FEATURES)})")
    feature = FEATURES[name]
    label = f"{name} [{feature.unit}]" if feature.unit else name
    kind, *parameters = feature.axis
    if kind == "integer":
        low, high = parameters
        return hist.axis.Integer(low, high, name=name, label=label)
    bins, low, high = parameters
    return hist.axis.Regular(bins, low, high, name=name, label=label)


def _region_axis(flags: Sequence[str]) -> hist.axis.IntCategory:
    return hist.axis.IntCategory(range(len(flags)), name="region", metadata=tuple(flags))


def book_histograms(variables: Iterable[str], flags: Sequence[str]) -> Histograms:
    """Empty histograms (region × variable) for every variable; ``flags`` are the region flag names."""
    return {
        variable: hist.Hist(_region_axis(flags), feature_axis(variable), storage=hist.storage.Weight())
        for variable in variables
    }


def book_region_counter(flags: Sequence[str]) -> Any:
    """An empty event counter per region flag (the cutflow)."""
    return hist.Hist(_region_axis(flags), storage=hist.storage.Int64())


def histogram_rows(features: Any, ids: Any, variables: Iterable[str], *, weight: Any = None) -> ak.Array:
    """Per event: its ``region`` positions (one per partition), the ``variables`` and the ``weight``.

    ``ids`` are the per-event region positions (:func:`coffea_ad.features.regions.region_ids`, shape (events,
    partitions)); ``weight`` is a per-event weight column or None (each event counts 1). Values are float64 with
    NaN for None, so that an event is left out only of the histograms of its undefined variables. Built from
    flat numpy arrays (in dask mode inside the processor's one ``map_partitions``); typetracer inputs give a
    typetracer.
    """
    columns = {"region": ids, **{variable: features[variable] for variable in variables}}
    if weight is not None:
        columns["weight"] = weight
    if not any(is_typetracer(column) for column in columns.values()):
        return _rows(columns)
    return as_typetracer(_rows({name: ak.typetracer.length_zero_if_typetracer(column) if is_typetracer(column)
                                else column for name, column in columns.items()}))


def _rows(columns: Mapping[str, Any]) -> ak.Array:
    ids = columns["region"]
    region = np.asarray(ak.to_numpy(ids), dtype=np.int64)
    fields = {"region": region, "combination": _combination_index(region)}
    fields.update({name: numeric(column) for name, column in columns.items() if name != "region"})
    return ak.zip(fields, depth_limit=1)


def _combination_index(region: np.ndarray) -> np.ndarray:
    """For each event, a number 0, 1, ... for its combination of regions (its row of ``region``; -1 allowed).

    Events share few combinations: each variable is binned once per event and the sums per combination are
    then added into its regions (:func:`_fill_regions`), instead of one fill per event and partition.
    """
    key = np.zeros(len(region), dtype=np.int64)
    bound = 1
    base = int(region.max(initial=-1)) + 2
    for column in region.T:
        if bound * base >= 2**62:
            key = np.unique(key, return_inverse=True)[1].reshape(-1)
            bound = int(key.max(initial=0)) + 1
        key = key * base + (column + 1)
        bound *= base
    return np.unique(key, return_inverse=True)[1].reshape(-1).astype(np.int64)


def _region_bins(region: np.ndarray, n_flags: int) -> np.ndarray:
    """Region positions as bins of the ``region`` axis: a partition's -1 goes to its overflow bin ``n_flags``."""
    return np.where(region >= 0, region, n_flags)


def _combination_matrix(region: np.ndarray, combination: np.ndarray, n_flags: int) -> np.ndarray:
    """``category[c, k]``: how often region combination ``c`` fills bin ``k`` of the ``region`` axis."""
    n_combinations = int(combination.max(initial=-1)) + 1
    example = np.zeros(n_combinations, dtype=np.int64)
    example[combination] = np.arange(len(combination))  # any row of a combination: they share their regions
    category = np.zeros((n_combinations, n_flags + 1))
    for column in _region_bins(region[example], n_flags).T:
        np.add.at(category, (np.arange(n_combinations), column), 1.0)
    return category


def _bin_indices(axis: Any, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flow-inclusive bin positions of ``values`` along ``axis`` (as in ``view(flow=True)``), and which values
    land in a bin at all (an axis without under- or overflow drops what falls outside)."""
    index = np.asarray(axis.index(values), dtype=np.int64)
    underflow, overflow = int(axis.traits.underflow), int(axis.traits.overflow)
    inside = (index >= -underflow) & (index < len(axis) + overflow)
    return index + underflow, inside


def _fill_regions(histogram: Any, rows: Any, columns: Sequence[str]) -> Any:
    """Fill ``histogram`` (region × the axes of ``columns``, Weight storage) from concrete ``rows``.

    The same result as one ``fill`` per event and partition, computed as sums of weights and of squared
    weights per bin with ``numpy.bincount``: per combination of regions, then added into the regions, when
    the histogram is small next to the events (one bincount over the events); else directly per event and
    partition (one bincount over events × partitions). A row where a column is NaN is left out.
    """
    n_flags = len(histogram.axes["region"])
    region = ak.to_numpy(rows["region"])
    combination = ak.to_numpy(rows["combination"])
    keep = np.ones(len(rows), dtype=bool)
    flat_bin = np.zeros(len(rows), dtype=np.int64)
    for name in columns:
        values = ak.to_numpy(rows[name]).astype(np.float64, copy=False)
        axis = histogram.axes[name]
        defined = ~np.isnan(values)
        bins = np.zeros(len(values), dtype=np.int64)
        bins[defined], inside = _bin_indices(axis, values[defined])
        keep &= defined
        keep[defined] &= inside
        flat_bin = flat_bin * axis.extent + bins
    n_bins = int(np.prod([histogram.axes[name].extent for name in columns]))
    weight = ak.to_numpy(rows["weight"]).astype(np.float64)[keep] if "weight" in rows.fields else None
    region, combination, flat_bin = region[keep], combination[keep], flat_bin[keep]
    n_combinations = int(combination.max(initial=-1)) + 1
    if (n_flags + 1) * n_combinations * n_bins <= region.size:
        category = _combination_matrix(region, combination, n_flags)
        index = combination * n_bins + flat_bin

        def accumulate(weights: np.ndarray | None) -> np.ndarray:
            per_combination = np.bincount(index, weights=weights, minlength=n_combinations * n_bins)
            return category.T @ per_combination.reshape(n_combinations, n_bins)
    else:
        n_partitions = region.shape[1]
        index = (_region_bins(region, n_flags) * n_bins + flat_bin[:, None]).ravel()

        def accumulate(weights: np.ndarray | None) -> np.ndarray:
            repeated = None if weights is None else np.repeat(weights, n_partitions)
            return np.bincount(index, weights=repeated, minlength=(n_flags + 1) * n_bins)
    sum_w = accumulate(weight)
    sum_w2 = sum_w if weight is None else accumulate(weight**2)
    view = histogram.view(flow=True)
    view["value"] += np.reshape(sum_w, view.shape)
    view["variance"] += np.reshape(sum_w2, view.shape)
    return histogram


def _fill_partition(rows: Any, *, histogram: Any, columns: tuple[str, ...]) -> Any:
    """One dask partition's histogram: a copy of the empty ``histogram`` filled from ``rows`` (a typetracer
    while dask-awkward learns which columns are read: those are touched and nothing is filled)."""
    needed = ["region", "combination", *columns, *(["weight"] if "weight" in rows.fields else [])]
    rows = ak.typetracer.length_zero_if_typetracer(rows[needed])
    return _fill_regions(histogram.copy(), rows, columns)


def _booked_fill(histogram: Any, rows: Any, columns: Sequence[str], dask: bool, label: str) -> Any:
    """``histogram`` filled from ``rows``: at once (concrete rows), or as a dask collection whose partitions are
    filled as :func:`_fill_regions` does and summed in a tree (dask-awkward rows), which computes to a
    ``hist.Hist``."""
    if not dask:
        return _fill_regions(histogram, rows, columns)
    fill = functools.partial(_fill_partition, histogram=histogram, columns=tuple(columns))
    return _summed_over_partitions(fill, rows, histogram, label)


def _summed_over_partitions(fill: Callable[[Any], Any], collection: Any, histogram: Any, label: str) -> Any:
    """A dask collection computing to ``histogram`` filled by ``fill`` on every partition of dask-awkward
    ``collection``, the partitions' histograms summed in a tree (as ``hist.dask`` does, with our own fill)."""
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph
    from dask_awkward.lib.core import partitionwise_layer
    from dask_histogram.core import PartitionedHistogram

    name = f"{label}-{tokenize(collection, histogram, fill)}"
    layer = partitionwise_layer(fill, name, collection)
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[collection])
    return PartitionedHistogram(graph, name, collection.npartitions, histref=histogram).collapse()


def fill_histograms(rows: Any, flags: Sequence[str], *, dask: bool = False) -> Histograms:
    """Book and fill one histogram per variable of ``rows`` (:func:`histogram_rows`); ``flags``: region names.

    Rows where the variable is NaN (None in the features) are left out of that variable's histogram. With
    ``dask=True`` (dask-awkward rows) each histogram is a dask collection that computes to a ``hist.Hist``.
    """
    variables = [name for name in rows.fields if name not in _BOOKKEEPING]
    histograms = book_histograms(variables, flags)
    return {
        variable: _booked_fill(histogram, rows, [variable], dask, f"coffea-ad-hist-{variable}")
        for variable, histogram in histograms.items()
    }


def score_histogram_name(score: str, fit_variable: str) -> str:
    """Name of the (region × score × fit variable) histogram of a score: ``{score}_vs_{fit_variable}``."""
    return f"{score}_vs_{fit_variable}"


def fill_score_histograms(
    rows: Any,
    flags: Sequence[str],
    score_edges: Mapping[str, Sequence[float]],
    fit_variable: str,
    *,
    dask: bool = False,
) -> Histograms:
    """One histogram per score: region × score (bins ``score_edges[score]``) × ``fit_variable``.

    ``rows`` are :func:`histogram_rows` of the scores and the fit variable; an event whose score or fit
    variable is None (NaN in the rows) is left out.
    """
    histograms = {}
    for score, edges in score_edges.items():
        histogram = hist.Hist(
            _region_axis(flags),
            hist.axis.Variable(edges, name=score, label=f"{score} anomaly score"),
            feature_axis(fit_variable),
            storage=hist.storage.Weight(),
        )
        name = score_histogram_name(score, fit_variable)
        histograms[name] = _booked_fill(histogram, rows, [score, fit_variable], dask, f"coffea-ad-hist-{name}")
    return histograms


def _count_partition(ids: Any, *, counter: Any) -> Any:
    """One dask partition's region counter (see :func:`count_regions`)."""
    ids = ak.typetracer.length_zero_if_typetracer(ids)
    return _count(counter.copy(), ids)


def _count(counter: Any, ids: Any) -> Any:
    region = ak.to_numpy(ids)
    n_flags = len(counter.axes["region"])
    counter.view(flow=True)[:] += np.bincount(np.where(region >= 0, region, n_flags).ravel(), minlength=n_flags + 1)
    return counter


def count_regions(ids: Any, flags: Sequence[str], *, dask: bool = False) -> Any:
    """Count the events of every region flag; an id of -1 (a region bug) goes to the overflow bin."""
    counter = book_region_counter(flags)
    if not dask:
        return _count(counter, ids)
    count = functools.partial(_count_partition, counter=counter)
    return _summed_over_partitions(count, ids, counter, "coffea-ad-region-counter")


def region_histograms(histograms: Histograms) -> Iterator[tuple[str, str, hist.Hist]]:
    """Yield ``(region flag, variable, 1-D histogram)`` for every region of every variable."""
    for variable, histogram in histograms.items():
        for position, flag in enumerate(histogram.axes["region"].metadata):
            yield flag, variable, histogram[{"region": hist.loc(position)}]


def root_key(dataset: str, region: str, variable: str) -> str:
    """The path of a histogram inside ``histograms.root``: ``{dataset}/{region}/{variable}``."""
    return f"{dataset}/{region}/{variable}"


def write_root(path: str | Path, histograms_by_dataset: Mapping[str, Histograms]) -> int:
    """Write every region histogram of every dataset into one ROOT file, atomically; return how many."""
    import uproot

    written = 0
    with atomic_output(path) as tmp:
        with uproot.recreate(tmp) as output:
            for dataset, histograms in histograms_by_dataset.items():
                for region, variable, histogram in region_histograms(histograms):
                    output[root_key(dataset, region, variable)] = histogram
                    written += 1
    return written
