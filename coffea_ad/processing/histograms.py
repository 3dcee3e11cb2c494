"""Histograms of features per region: booking, filling (hist or hist.dask) and the ROOT file layout.

In memory there is one histogram per variable with two axes: ``region`` (an integer category, the position
of the region flag; the flag names ``{partition}_{region}`` are the axis ``metadata``) and the feature.
Each event is filled once per partition, into the region it belongs to, so that one fill per variable
covers every region: this keeps the dask graph small. A region counter (the same ``region`` axis, no
variable) gives the cutflow.

On disk (:func:`write_root`) each histogram is split into one-dimensional histograms named
``{dataset}/{partition}_{region}/{variable}``, with ``Weight`` storage (sum of weights and of squared weights,
i.e. TH1D with Sumw2) and under/overflow bins.

A variable's histogram holds the events of the region where the variable is defined (not None): the
``missing`` regions of the partition built on that same variable are therefore empty by construction,
while the cutflow counts every event.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import awkward as ak
import hist
import numpy as np

from coffea_ad.errors import ConfigurationError
from coffea_ad.features import FEATURES
from coffea_ad.features.kinematics import as_float64
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


def _hist_class(dask: bool) -> type:
    if dask:
        from hist import dask as hist_dask

        return hist_dask.Hist
    return hist.Hist


def book_histograms(variables: Iterable[str], flags: Sequence[str], *, dask: bool = False) -> Histograms:
    """Empty histograms (region × variable) for every variable; ``flags`` are the region flag names."""
    kind = _hist_class(dask)
    return {
        variable: kind(_region_axis(flags), feature_axis(variable), storage=hist.storage.Weight())
        for variable in variables
    }


def book_region_counter(flags: Sequence[str], *, dask: bool = False) -> Any:
    """An empty event counter per region flag (the cutflow)."""
    return _hist_class(dask)(_region_axis(flags), storage=hist.storage.Int64())


def histogram_rows(features: Any, ids: Any, variables: Iterable[str], *, weight: Any = None) -> Any:
    """Per event, one row per partition: its ``region`` position, the ``variables`` and the ``weight``.

    ``ids`` are the per-event region positions (:func:`coffea_ad.features.regions.region_ids`); ``weight`` is a
    per-event weight column or None (each event counts 1). Values are float64 with NaN for None: a None
    broadcast into the rows would remove the event's rows for every variable, not just for its own. Built
    with one broadcast for all variables (inside one ``map_partitions`` in dask mode), which keeps both the
    graph and the awkward overhead small.
    """
    fields = {"region": ids}
    fields.update({variable: ak.fill_none(as_float64(features[variable]), np.nan) for variable in variables})
    if weight is not None:
        fields["weight"] = weight
    return ak.zip(fields)


def fill_histograms(rows: Any, flags: Sequence[str], *, dask: bool = False) -> Histograms:
    """Book and fill one histogram per variable of ``rows`` (:func:`histogram_rows`); ``flags``: region names.

    Rows where the variable is NaN (None in the features) are left out of that variable's histogram.
    """
    variables = [name for name in rows.fields if name not in ("region", "weight")]
    histograms = book_histograms(variables, flags, dask=dask)
    entries = ak.flatten(rows, axis=1)
    for variable, histogram in histograms.items():
        values = entries[variable]
        defined = ~np.isnan(values)
        weight = {"weight": entries["weight"][defined]} if "weight" in rows.fields else {}
        values = values[defined]
        if FEATURES[variable].dtype == "int64":
            values = ak.values_astype(values, np.int64)
        histogram.fill(region=entries["region"][defined], **{variable: values}, **weight)
    return histograms


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
    kind = _hist_class(dask)
    entries = ak.flatten(rows, axis=1)
    fit_values = entries[fit_variable]
    histograms = {}
    for score, edges in score_edges.items():
        histogram = kind(
            _region_axis(flags),
            hist.axis.Variable(edges, name=score, label=f"{score} anomaly score"),
            feature_axis(fit_variable),
            storage=hist.storage.Weight(),
        )
        defined = ~np.isnan(entries[score]) & ~np.isnan(fit_values)
        weight = {"weight": entries["weight"][defined]} if "weight" in rows.fields else {}
        histogram.fill(
            region=entries["region"][defined],
            **{score: entries[score][defined], fit_variable: fit_values[defined]},
            **weight,
        )
        histograms[score_histogram_name(score, fit_variable)] = histogram
    return histograms


def count_regions(ids: Any, flags: Sequence[str], *, dask: bool = False) -> Any:
    """Count the events of every region flag; an id of -1 (a region bug) goes to the overflow bin."""
    counter = book_region_counter(flags, dask=dask)
    counter.fill(region=ak.flatten(ids, axis=1))
    return counter


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
