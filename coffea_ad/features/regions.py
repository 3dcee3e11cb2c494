"""Named event regions as boolean masks, grouped in partitions, and a cutflow that conserves events.

A *partition* is a set of mutually exclusive regions that together hold every event exactly once. Each
partition has a ``missing`` region for events whose deciding feature is None (fewer than two fat jets,
fewer than four leptons, ...), so that such events never fall silently into a signal or control region.
A region's flag name is ``{partition}_{region}``, e.g. ``mjj3500_sr``, ``deta_cr``, ``leptons_2e2mu``.

Partitions (with the defaults of :class:`RegionConfig`):

- ``mjj{centre}`` for each window centre (GeV): ``sr`` centre ± half width, half-open (LHCO: 3.3–3.7 TeV
  around 3.5 TeV), ``sb`` the sidebands of ``sideband_width`` on each side (all other mjj when
  ``sideband_width`` is None), ``outside`` the rest, ``missing``.
- ``deta``: ``sr`` |Δη_jj| < 1.3, ``cr`` |Δη_jj| ≥ 1.3, ``missing``.
- ``context``: ``sr`` HT ≥ ``ht_min`` and MET ≥ ``met_min``, ``cr`` the rest, ``missing``.
- ``leptons``: ``lt4`` fewer than four tight leptons, else the flavour of the four leading ones
  (``4e``, ``3e1mu``, ``2e2mu``, ``1e3mu``, ``4mu``).
- ``charge4l``: ``neutral`` (total charge 0) and ``charged`` for ≥ 4 leptons, ``missing`` otherwise.
- ``inclusive``: one region ``all`` holding every event, only when no other partition applies (features of a
  user's own analysis, none of the above): its histograms are the inclusive distributions.

References:
    CWoLa hunting, arXiv:1902.02634 (sliding mjj windows with sidebands); dijet VAE search (|Δη| < 1.3 signal
    region, |Δη| ≥ 1.3 sideband); arXiv:2311.12924 (HT/MET context regions).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import awkward as ak
import numpy as np

from coffea_ad.errors import CoffeaADError, ConfigurationError
from coffea_ad.features.arrays import numeric
from coffea_ad.features.leptons import FLAVOUR_4L

__all__ = [
    "DEFAULT_SIGNAL_REGION",
    "INCLUSIVE",
    "RegionConfig",
    "CutflowError",
    "Partition",
    "mass_window",
    "deta_split",
    "context_split",
    "lepton_flavour_split",
    "lepton_charge_split",
    "partition_layout",
    "partitions",
    "region_flags",
    "flag_names",
    "region_ids",
    "cutflow",
    "check_cutflow",
]

logger = logging.getLogger(__name__)

#: The partition of every event, used when the features allow no other.
INCLUSIVE = "inclusive"

#: A partition: region name -> boolean mask, the regions mutually exclusive and covering every event.
Partition = dict[str, Any]


class CutflowError(CoffeaADError):
    """A partition's regions do not add up to the number of events (an event lost or counted twice)."""


#: The 3.5 TeV window of :class:`RegionConfig` (the LHC Olympics R&D signal region, GeV): the default signal
#: region of the resonant methods, whose sidebands ``mjj3500_sb`` are ``coffea-ad score``'s default control
#: region, so that ``train`` and ``score`` agree when neither is told.
DEFAULT_SIGNAL_REGION: tuple[float, float] = (3300.0, 3700.0)


@dataclasses.dataclass(frozen=True)
class RegionConfig:
    """Boundaries of the regions (GeV where dimensioned); see the module docstring for the definitions."""

    mjj_window_centres: tuple[float, ...] = (2500.0, 3000.0, 3500.0, 4000.0, 4500.0)
    mjj_window_half_width: float = 200.0
    mjj_sideband_width: float | None = 400.0
    deta_max: float = 1.3
    ht_min: float = 1000.0
    met_min: float = 100.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "mjj_window_centres", tuple(float(c) for c in self.mjj_window_centres))
        for name in ("mjj_window_half_width", "deta_max", "ht_min", "met_min"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigurationError(f"RegionConfig.{name} must be a finite non-negative number, got {value!r}")
        if self.mjj_sideband_width is not None and not self.mjj_sideband_width > 0:
            raise ConfigurationError(
                f"RegionConfig.mjj_sideband_width must be positive or None, got {self.mjj_sideband_width!r}"
            )
        names = [_window_name(centre) for centre in self.mjj_window_centres]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"RegionConfig.mjj_window_centres repeat a centre (GeV, rounded): {names}")


def _window_name(centre: float) -> str:
    return f"mjj{centre:.0f}"


def mass_window(mjj: Any, centre: float, half_width: float, sideband_width: float | None) -> Partition:
    """Signal region ``sr`` [centre − half_width, centre + half_width), sidebands ``sb``, ``outside``, ``missing``.

    The sidebands are [low − sideband_width, low) and [high, high + sideband_width), or every defined mjj
    outside the signal region when ``sideband_width`` is None. Half-open intervals, so that adjacent windows
    tile the mjj axis without overlap. Masks are numpy boolean arrays (as are those of every partition).
    """
    mjj = numeric(mjj)
    defined = ~np.isnan(mjj)
    low, high = centre - half_width, centre + half_width
    signal = (mjj >= low) & (mjj < high)
    if sideband_width is None:
        sideband = defined & ~signal
    else:
        sideband = (mjj >= low - sideband_width) & (mjj < high + sideband_width) & ~signal
    return {"sr": signal, "sb": sideband, "outside": defined & ~signal & ~sideband, "missing": ~defined}


def deta_split(deta_jj: Any, deta_max: float) -> Partition:
    """``sr`` |Δη_jj| < deta_max, ``cr`` |Δη_jj| ≥ deta_max, ``missing``."""
    deta_jj = numeric(deta_jj)
    defined = ~np.isnan(deta_jj)
    signal = np.abs(deta_jj) < deta_max
    return {"sr": signal, "cr": defined & ~signal, "missing": ~defined}


def context_split(ht: Any, met: Any, ht_min: float, met_min: float) -> Partition:
    """``sr`` HT ≥ ht_min and MET ≥ met_min, ``cr`` otherwise, ``missing`` where either is None."""
    ht, met = numeric(ht), numeric(met)
    defined = ~np.isnan(ht) & ~np.isnan(met)
    signal = (ht >= ht_min) & (met >= met_min)
    return {"sr": signal, "cr": defined & ~signal, "missing": ~defined}


def lepton_flavour_split(n_leptons: Any, flavour_4l: Any) -> Partition:
    """``lt4`` for fewer than four leptons, else one region per flavour of the four leading leptons."""
    four = numeric(n_leptons) >= 4
    flavour_4l = numeric(flavour_4l)
    regions = {"lt4": ~four}
    for muons, name in FLAVOUR_4L.items():
        regions[name] = (flavour_4l == muons) & four
    return regions


def lepton_charge_split(charge_4l: Any) -> Partition:
    """``neutral`` (total charge 0) or ``charged`` four-lepton events, ``missing`` for fewer than four."""
    charge_4l = numeric(charge_4l)
    defined = ~np.isnan(charge_4l)
    neutral = charge_4l == 0
    return {"neutral": neutral, "charged": defined & ~neutral, "missing": ~defined}


def _partition_builders(config: RegionConfig) -> dict[str, tuple[tuple[str, ...], tuple[str, ...], Any]]:
    """Partition name -> (features it needs, its region names, function of the features building it)."""
    window_regions = ("sr", "sb", "outside", "missing")
    split_regions = ("sr", "cr", "missing")
    builders = {
        _window_name(centre): (
            ("mjj",),
            window_regions,
            lambda f, centre=centre: mass_window(
                f["mjj"], centre, config.mjj_window_half_width, config.mjj_sideband_width
            ),
        )
        for centre in config.mjj_window_centres
    }
    builders["deta"] = (("deta_jj",), split_regions, lambda f: deta_split(f["deta_jj"], config.deta_max))
    builders["context"] = (
        ("ht", "met"),
        split_regions,
        lambda f: context_split(f["ht"], f["met"], config.ht_min, config.met_min),
    )
    builders["leptons"] = (
        ("n_leptons", "flavour_4l"),
        ("lt4", *FLAVOUR_4L.values()),
        lambda f: lepton_flavour_split(f["n_leptons"], f["flavour_4l"]),
    )
    builders["charge4l"] = (
        ("charge_4l",),
        ("neutral", "charged", "missing"),
        lambda f: lepton_charge_split(f["charge_4l"]),
    )
    return builders


def partition_layout(feature_names: Iterable[str], config: RegionConfig | None = None) -> dict[str, tuple[str, ...]]:
    """Partition name -> region names, for the partitions that ``feature_names`` allow (no data needed)."""
    present = set(feature_names)
    layout = {
        name: regions
        for name, (needed, regions, _) in _partition_builders(config or RegionConfig()).items()
        if present.issuperset(needed)
    }
    return layout or {INCLUSIVE: ("all",)}


def partitions(features: Any, config: RegionConfig | None = None) -> dict[str, Partition]:
    """Every partition whose features are present in ``features`` (a record array or a mapping of columns).

    A partition that needs an absent feature is left out (logged at INFO level). Each mask is a numpy boolean
    array; each feature is converted to numpy once.
    """
    present = set(features.fields if hasattr(features, "fields") else features)
    builders = _partition_builders(config or RegionConfig())
    needed_by_any = {name for needed, _, _ in builders.values() for name in needed} & present
    values = {name: numeric(features[name]) for name in needed_by_any}
    result = {}
    for name, (needed, _, build) in builders.items():
        if present.issuperset(needed):
            result[name] = build(values)
        else:
            logger.info("partition %s left out: needs features %s", name, ", ".join(sorted(set(needed) - present)))
    if not result and present:
        result[INCLUSIVE] = {"all": np.ones(len(features[next(iter(present))]), dtype=bool)}
    return result


def region_flags(partition_masks: Mapping[str, Partition]) -> dict[str, Any]:
    """Flatten partitions into ``{partition}_{region}`` flags."""
    return {f"{name}_{region}": mask for name, regions in partition_masks.items() for region, mask in regions.items()}


def flag_names(layout: Mapping[str, Iterable[str]]) -> list[str]:
    """``{partition}_{region}`` names of a partition layout (see :func:`partition_layout`), in order."""
    return [f"{name}_{region}" for name, regions in layout.items() for region in regions]


def region_ids(partition_masks: Mapping[str, Partition]) -> np.ndarray:
    """Per event, its flags' positions in :func:`region_flags` order, one per partition: an integer array of
    shape (events, partitions).

    An event that a partition puts in no region or in several (a bug in a region definition) gets -1 for
    that partition instead, so that it shows up as a loss in the cutflow rather than in a wrong region.
    """
    columns = []
    offset = 0
    for regions in partition_masks.values():
        position = n_regions = None
        for index, mask in enumerate(regions.values()):
            mask = np.asarray(ak.to_numpy(mask), dtype=bool)
            if position is None:
                position, n_regions = np.full(len(mask), -1, dtype=np.int64), np.zeros(len(mask), dtype=np.int32)
            position[mask] = offset + index
            n_regions += mask
        columns.append(np.where(n_regions == 1, position, -1))
        offset += len(regions)
    return np.stack(columns, axis=1) if columns else np.zeros((0, 0), dtype=np.int64)


def cutflow(flag_counts: Sequence[Any], layout: Mapping[str, Sequence[str]], n_events: Any) -> dict[str, Any]:
    """Nest per-flag event counts (in :func:`flag_names` order) as ``{"n_events": N, "partitions": {...}}``."""
    counts = iter(int(count) for count in flag_counts)
    partitions_counts = {name: {region: next(counts) for region in regions} for name, regions in layout.items()}
    return {"n_events": int(n_events), "partitions": partitions_counts}


def check_cutflow(counts: Mapping[str, Any], source: str = "the cutflow") -> None:
    """Raise :class:`CutflowError` unless every partition's regions add up to ``n_events`` (computed counts)."""
    n_events = int(counts["n_events"])
    for name, regions in counts["partitions"].items():
        total = sum(int(count) for count in regions.values())
        if total != n_events:
            raise CutflowError(
                f"{source}: partition {name!r} holds {total} events in its regions {dict(regions)}, "
                f"but there are {n_events} events"
            )

