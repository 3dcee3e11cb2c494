"""Histograms of features per region: booking, filling (at once or per dask partition) and the ROOT file layout.

In memory there is one histogram per variable with two axes: ``region`` (an integer category, the position
of the region flag; the flag names ``{partition}_{region}`` are the axis ``metadata``) and the feature.
Each event counts once per partition, in the region it belongs to. A region counter (the same ``region``
axis, no variable) gives the cutflow.

Filling is numpy arithmetic, not one ``hist`` fill per event and partition: each variable is binned once
per event, the sums of weights and of squared weights per bin are accumulated with ``numpy.bincount`` per
combination of regions, and those are added into the regions (:func:`_fill_regions`); the result is the
same histogram. The region bookkeeping (combinations, weights) is read once per chunk and shared by every
histogram filled from it. In dask mode one task per partition fills every histogram of a call, the
partitions' histograms are summed in a tree, as ``hist.dask`` does, and each histogram is a collection that
computes to a ``hist.Hist``.

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
    "histogram_rows_like",
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


def histogram_rows_like(rows: Any, columns: Mapping[str, Any]) -> ak.Array:
    """Histogram rows of further ``columns`` of the same events as ``rows`` (:func:`histogram_rows`), whose
    region positions, their combination and weight are reused rather than computed again (typetracer inputs
    give a typetracer)."""
    kept = ["region", "combination", *(["weight"] if "weight" in rows.fields else [])]
    if is_typetracer(rows) or any(is_typetracer(column) for column in columns.values()):
        concrete = {name: ak.typetracer.length_zero_if_typetracer(column) if is_typetracer(column) else column
                    for name, column in columns.items()}
        return as_typetracer(histogram_rows_like(ak.typetracer.length_zero_if_typetracer(rows), concrete))
    fields = {name: rows[name] for name in kept}
    fields.update({name: numeric(column) for name, column in columns.items()})
    return ak.zip(fields, depth_limit=1)


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


class _RegionRows:
    """The region bookkeeping of concrete histogram rows, read once and shared by every histogram filled from
    them: region positions (events × partitions), their combination index, the weights, and how each
    combination fills the ``region`` axis (:func:`_combination_matrix`)."""

    def __init__(self, rows: Any, n_flags: int) -> None:
        self.n_flags = n_flags
        self.region = ak.to_numpy(rows["region"])
        self.combination = ak.to_numpy(rows["combination"])
        self.n_combinations = int(self.combination.max(initial=-1)) + 1
        self.weight = ak.to_numpy(rows["weight"]).astype(np.float64) if "weight" in rows.fields else None

    @functools.cached_property
    def category(self) -> np.ndarray:
        return _combination_matrix(self.region, self.combination, self.n_flags)


def _fill_regions(histogram: Any, rows: Any, columns: Sequence[str], regions: _RegionRows | None = None) -> Any:
    """Fill ``histogram`` (region × the axes of ``columns``, Weight storage) from concrete ``rows``.

    The same result as one ``fill`` per event and partition, computed as sums of weights and of squared
    weights per bin with ``numpy.bincount``: per combination of regions, then added into the regions, when
    the histogram is small next to the events (one bincount over the events); else directly per event and
    partition (one bincount over events × partitions). A row where a column is NaN is left out. ``regions``:
    the rows' region bookkeeping when several histograms are filled from the same rows.
    """
    regions = regions or _RegionRows(rows, len(histogram.axes["region"]))
    n_flags = regions.n_flags
    keep = np.ones(len(rows), dtype=bool)
    flat_bin = np.zeros(len(rows), dtype=np.int64)
    for name in columns:
        values = ak.to_numpy(rows[name]).astype(np.float64, copy=False)
        axis = histogram.axes[name]
        defined = ~np.isnan(values)
        bins, inside = _bin_indices(axis, np.where(defined, values, 0.0))
        keep &= defined & inside
        flat_bin = flat_bin * axis.extent + bins
    n_bins = int(np.prod([histogram.axes[name].extent for name in columns]))
    weight = regions.weight
    n_partitions = regions.region.shape[1]
    # A row left out goes to one extra bin past the last, dropped after the bincount (no copy of the kept rows).
    if (n_flags + 1) * regions.n_combinations * n_bins <= len(rows) * n_partitions:
        n_combinations = regions.n_combinations
        category = regions.category
        index = regions.combination * n_bins + flat_bin
        index[~keep] = n_combinations * n_bins

        def accumulate(weights: np.ndarray | None) -> np.ndarray:
            per_combination = np.bincount(index, weights=weights, minlength=n_combinations * n_bins + 1)[:-1]
            return category.T @ per_combination.reshape(n_combinations, n_bins)
    else:
        index = _region_bins(regions.region, n_flags) * n_bins + flat_bin[:, None]
        index[~keep] = (n_flags + 1) * n_bins
        index = index.ravel()

        def accumulate(weights: np.ndarray | None) -> np.ndarray:
            repeated = None if weights is None else np.repeat(weights, n_partitions)
            return np.bincount(index, weights=repeated, minlength=(n_flags + 1) * n_bins + 1)[:-1]
    sum_w = accumulate(weight)
    sum_w2 = sum_w if weight is None else accumulate(weight**2)
    view = histogram.view(flow=True)
    view["value"] += np.reshape(sum_w, view.shape)
    view["variance"] += np.reshape(sum_w2, view.shape)
    return histogram


def _fill_all(histograms: Mapping[str, Any], rows: Any, columns: Mapping[str, Sequence[str]]) -> Histograms:
    """Fill every one of ``histograms`` from the same concrete ``rows`` (the columns of histogram ``name`` are
    ``columns[name]``), their region bookkeeping read once."""
    regions = _RegionRows(rows, len(next(iter(histograms.values())).axes["region"])) if histograms else None
    return {name: _fill_regions(histogram, rows, columns[name], regions) for name, histogram in histograms.items()}


def _fill_partition(rows: Any, *, histograms: Mapping[str, Any], columns: Mapping[str, tuple[str, ...]]) -> Histograms:
    """One dask partition's histograms: copies of the empty ``histograms`` filled from ``rows`` (a typetracer
    while dask-awkward learns which columns are read: those are touched and nothing is filled)."""
    needed = ["region", "combination", *{column: None for names in columns.values() for column in names}]
    rows = ak.typetracer.length_zero_if_typetracer(rows[needed + (["weight"] if "weight" in rows.fields else [])])
    return _fill_all({name: histogram.copy() for name, histogram in histograms.items()}, rows, columns)


def _booked_fill(histograms: Mapping[str, Any], rows: Any, columns: Mapping[str, Sequence[str]], dask: bool,
                 label: str) -> Histograms:
    """``histograms`` filled from ``rows`` (histogram ``name`` from ``columns[name]``): at once (concrete rows),
    or (dask-awkward rows) as dask collections that compute to ``hist.Hist`` objects, every histogram of a
    partition filled in one task, as :func:`_fill_regions` does, and the partitions' summed in a tree."""
    if not dask:
        return _fill_all(histograms, rows, columns)
    fill = functools.partial(
        _fill_partition, histograms=histograms, columns={name: tuple(names) for name, names in columns.items()}
    )
    return _summed_over_partitions(fill, rows, histograms, label)


def _sum_histograms(items: Sequence[Histograms]) -> Histograms:
    """The histograms of several partitions (each a dict name -> histogram) added name by name."""
    return {name: sum((item[name] for item in items[1:]), items[0][name]) for name in items[0]}


def _summed_over_partitions(fill: Callable[[Any], Histograms], collection: Any, histograms: Mapping[str, Any],
                            label: str) -> Histograms:
    """One dask collection per histogram of ``histograms``, computing to it filled by ``fill`` on every partition
    of dask-awkward ``collection``: ``fill`` returns all the histograms of a partition in one task (one layer
    for all, not one per histogram: each layer costs tasks, scheduling and transfers per partition), those are
    summed in a tree (as ``hist.dask`` does, with its mockable tree reduction, so that dask-awkward's column
    optimisation can run the graph on one partition), and each histogram is then taken out of the sum."""
    import operator

    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph, MaterializedLayer
    from dask.local import identity
    from dask_awkward.lib.core import partitionwise_layer
    from dask_histogram.core import AggHistogram
    from dask_histogram.layers import MockableDataFrameTreeReduction

    token = tokenize(collection, histograms, fill)
    name, summed = f"{label}-{token}", f"{label}-sum-{token}"
    layers = {name: partitionwise_layer(fill, name, collection), summed: MockableDataFrameTreeReduction(
        name=summed, name_input=name, npartitions_input=collection.npartitions, concat_func=_sum_histograms,
        tree_node_func=identity, finalize_func=identity, split_every=8, tree_node_name=f"{label}-combine-{token}",
    )}
    dependencies = {name: {collection.name}, summed: {name}}
    keys = {}
    for position, histogram_name in enumerate(histograms):
        keys[histogram_name] = f"{label}-{position}-{token}"
        layers[keys[histogram_name]] = MaterializedLayer(
            {(keys[histogram_name], 0): (operator.getitem, (summed, 0), histogram_name)}
        )
        dependencies[keys[histogram_name]] = {summed}
    graph = HighLevelGraph.merge(collection.dask, HighLevelGraph(layers, dependencies))
    return {
        histogram_name: AggHistogram(
            HighLevelGraph(graph.layers, graph.dependencies), keys[histogram_name], histref=histograms[histogram_name]
        )
        for histogram_name in histograms
    }


def fill_histograms(rows: Any, flags: Sequence[str], *, dask: bool = False) -> Histograms:
    """Book and fill one histogram per variable of ``rows`` (:func:`histogram_rows`); ``flags``: region names.

    Rows where the variable is NaN (None in the features) are left out of that variable's histogram. With
    ``dask=True`` (dask-awkward rows) each histogram is a dask collection that computes to a ``hist.Hist``.
    """
    variables = [name for name in rows.fields if name not in _BOOKKEEPING]
    return _booked_fill(book_histograms(variables, flags), rows, {variable: [variable] for variable in variables},
                        dask, "coffea-ad-histograms")


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
    histograms = {
        score_histogram_name(score, fit_variable): hist.Hist(
            _region_axis(flags),
            hist.axis.Variable(edges, name=score, label=f"{score} anomaly score"),
            feature_axis(fit_variable),
            storage=hist.storage.Weight(),
        )
        for score, edges in score_edges.items()
    }
    columns = {score_histogram_name(score, fit_variable): [score, fit_variable] for score in score_edges}
    return _booked_fill(histograms, rows, columns, dask, "coffea-ad-score-histograms")


def _count_partition(ids: Any, *, counter: Any) -> Histograms:
    """One dask partition's region counter (see :func:`count_regions`)."""
    ids = ak.typetracer.length_zero_if_typetracer(ids)
    return {"regions": _count(counter.copy(), ids)}


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
    return _summed_over_partitions(count, ids, {"regions": counter}, "coffea-ad-region-counter")["regions"]


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
