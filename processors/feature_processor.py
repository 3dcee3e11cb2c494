"""AnomalyFeatureProcessor: features, region flags, histograms per region, per-event table and cutflow.

Thin glue around :mod:`coffea_ad.features`, :mod:`coffea_ad.features.regions`, :mod:`coffea_ad.processing.histograms` and
:mod:`coffea_ad.processing.tables`. Works on dask-awkward events (``coffea.dataset_tools.apply_to_fileset``) and on
virtual/eager events (``coffea.processor.Runner``). :func:`coffea_ad.workflow.features.run_features` drives
it over a fileset and writes the outputs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import awkward as ak
import dask_awkward as dak
from coffea import processor

from coffea_ad.features import (
    FeatureConfig,
    compute_features,
    events_have_branch,
    resolve_feature_names,
    select_features,
    user_features,
)
from coffea_ad.features.arrays import on_concrete
from coffea_ad.processing.histograms import count_regions, fill_histograms, histogram_rows
from coffea_ad.features.regions import RegionConfig, flag_names, partition_layout, partitions, region_flags, region_ids
from coffea_ad.processing.tables import EVENT_ID_COLUMNS, WEIGHT_BRANCH, feature_table

__all__ = ["AnomalyFeatureProcessor"]


class AnomalyFeatureProcessor(processor.ProcessorABC):
    """Compute anomaly-detection features and their region bookkeeping for every event.

    Arguments:
        features: feature and feature-set names (see ``coffea_ad.features.FEATURE_SETS``), the user's own
            (:func:`coffea_ad.features.define_feature`) included: their definitions travel with the processor.
        optional: features that may be left out when a branch is absent (``True`` for all).
        feature_config: object definitions (thresholds, b-tag working point, MET collection).
        region_config: region boundaries (mjj windows, Δη cut, HT/MET thresholds).
        histogram_variables: features to histogram (default: every computed feature).
        weight_branch: per-event weight of the histograms, e.g. ``"genWeight"`` (default: each event 1).

    ``process`` returns ``{dataset: {"table": ..., "histograms": ..., "cutflow": ...}}``: the per-event
    table (a dask-awkward array in dask mode; otherwise a one-element list of awkward arrays, so that coffea's
    accumulation concatenates chunks instead of adding them), one histogram per variable with a ``region``
    axis (:mod:`coffea_ad.processing.histograms`), and ``{"n_events": N, "regions": counter}`` for the cutflow.

    Example:
        >>> from coffea.dataset_tools import apply_to_fileset
        >>> output = apply_to_fileset(AnomalyFeatureProcessor("lhco"), preprocessed_fileset)
    """

    def __init__(
        self,
        features: str | Iterable[str] = "all",
        *,
        optional: bool | str | Iterable[str] = (),
        feature_config: FeatureConfig | None = None,
        region_config: RegionConfig | None = None,
        histogram_variables: Iterable[str] | None = None,
        weight_branch: str | None = None,
    ) -> None:
        self.features = features if isinstance(features, str) else tuple(features)
        # Unpickling these defines the user's features on the worker (coffea_ad.features.user).
        self.user_features = user_features(resolve_feature_names(self.features))
        self.optional = optional if isinstance(optional, (bool, str)) else tuple(optional)
        self.feature_config = feature_config or FeatureConfig()
        self.region_config = region_config or RegionConfig()
        self.histogram_variables = None if histogram_variables is None else tuple(histogram_variables)
        self.weight_branch = weight_branch

    def process(self, events: Any) -> dict[str, Any]:
        """Features, flags, histograms, table and cutflow of one chunk (or one dask collection) of events."""
        dask_mode = isinstance(events, dak.Array)
        metadata = events.metadata if isinstance(getattr(events, "metadata", None), Mapping) else {}
        source = metadata.get("filename") or f"dataset {metadata.get('dataset', '?')!r}"
        selected = select_features(
            self.features, events_have_branch(events), optional=self.optional, config=self.feature_config, source=source
        )
        names = [feature.name for feature in selected]
        flags = flag_names(partition_layout(names, self.region_config))
        variables = [name for name in self.histogram_variables or names if name in names]
        if dask_mode:
            per_event = dak.map_partitions(
                self.event_record, events, names, variables, label="coffea-ad-features", traverse=False
            )
        else:
            per_event = self.event_record(events, names, variables)
        return {metadata.get("dataset", "events"): self.outputs(per_event, flags, dask_mode)}

    def outputs(self, per_event: Any, flags: list[str], dask_mode: bool) -> dict[str, Any]:
        """The chunk's outputs from its per-event record (:meth:`event_record`)."""
        table = self.chunk_table(per_event)
        return {
            "table": table if dask_mode else [ak.materialize(table)],
            "histograms": fill_histograms(per_event["rows"], flags, dask=dask_mode),
            "cutflow": {
                "n_events": ak.num(per_event, axis=0),
                "regions": count_regions(per_event["region_ids"], flags, dask=dask_mode),
            },
        }

    def chunk_table(self, per_event: Any) -> Any:
        """The per-event table of a chunk from its :meth:`event_record` (a subclass adds columns here)."""
        return per_event["table"]

    def event_record(self, events: Any, names: list[str], variables: list[str]) -> ak.Array:
        """Per event: ``table`` (ids, features, flags), ``region_ids`` and the histogram ``rows``.

        Runs on one eager/virtual chunk, or on each partition in dask mode (one task per partition; on a
        typetracer while dask-awkward learns the columns read: :func:`coffea_ad.features.arrays.on_concrete`).
        """
        features = compute_features(events, names, config=self.feature_config)
        fields = on_concrete(self._chunk_fields, events, self.branches_read(events), features, variables)
        fields.update(self.extra_fields(events, features, fields["rows"]))
        return ak.zip(fields, depth_limit=1, behavior={})

    def branches_read(self, events: Any) -> list[str]:
        """The branches :meth:`event_record` reads besides the features: the event ids, ``genWeight`` (kept in
        the table when present) and the histogram weight."""
        branches = [*EVENT_ID_COLUMNS, *([WEIGHT_BRANCH] if WEIGHT_BRANCH in events.fields else [])]
        return branches + ([self.weight_branch] if self.weight_branch else [])

    def _chunk_fields(self, events: Any, features: Any, variables: list[str]) -> dict[str, ak.Array]:
        """Table, region ids and histogram rows of concrete ``events`` with their ``features``."""
        features = ak.typetracer.length_zero_if_typetracer(features)
        masks = partitions(features, self.region_config)
        ids = region_ids(masks)
        weight = None if self.weight_branch is None else events[self.weight_branch]
        return {
            "table": feature_table(events, features, region_flags(masks)),
            "region_ids": ak.Array(ids),
            "rows": histogram_rows(features, ids, variables, weight=weight),
        }

    def extra_fields(self, events: Any, features: Any, rows: Any) -> dict[str, Any]:
        """Per-event fields a subclass adds to :meth:`event_record` (none here), from the chunk's ``events``,
        its ``features`` and histogram ``rows`` (region positions, their combination and the weight: histograms of
        further columns reuse them with :func:`coffea_ad.processing.histograms.histogram_rows_like`)."""
        return {}

    def postprocess(self, accumulator: Any) -> Any:
        """Nothing to do: the pipeline writes the outputs."""
        return accumulator
