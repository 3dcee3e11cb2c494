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

from coffea_ad.errors import CoffeaADError, ConfigurationError
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


def _defined(column: Any) -> Any:
    """True where ``column`` is not None."""
    return ~ak.is_none(column, axis=0)


def _both(condition: Any, defined: Any) -> Any:
    """``condition`` where defined, False where None: a None never passes a cut."""
    return ak.fill_none(condition, False) & defined


def mass_window(mjj: Any, centre: float, half_width: float, sideband_width: float | None) -> Partition:
    """Signal region ``sr`` [centre − half_width, centre + half_width), sidebands ``sb``, ``outside``, ``missing``.

    The sidebands are [low − sideband_width, low) and [high, high + sideband_width), or every defined mjj
    outside the signal region when ``sideband_width`` is None. Half-open intervals, so that adjacent windows
    tile the mjj axis without overlap.
    """
    defined = _defined(mjj)
    low, high = centre - half_width, centre + half_width
    signal = _both((mjj >= low) & (mjj < high), defined)
    if sideband_width is None:
        sideband = defined & ~signal
    else:
        sideband = _both((mjj >= low - sideband_width) & (mjj < high + sideband_width), defined) & ~signal
    return {"sr": signal, "sb": sideband, "outside": defined & ~signal & ~sideband, "missing": ~defined}


def deta_split(deta_jj: Any, deta_max: float) -> Partition:
    """``sr`` |Δη_jj| < deta_max, ``cr`` |Δη_jj| ≥ deta_max, ``missing``."""
    defined = _defined(deta_jj)
    signal = _both(abs(deta_jj) < deta_max, defined)
    return {"sr": signal, "cr": defined & ~signal, "missing": ~defined}


def context_split(ht: Any, met: Any, ht_min: float, met_min: float) -> Partition:
    """``sr`` HT ≥ ht_min and MET ≥ met_min, ``cr`` otherwise, ``missing`` where either is None."""
    defined = _defined(ht) & _defined(met)
    signal = _both((ht >= ht_min) & (met >= met_min), defined)
    return {"sr": signal, "cr": defined & ~signal, "missing": ~defined}


def lepton_flavour_split(n_leptons: Any, flavour_4l: Any) -> Partition:
    """``lt4`` for fewer than four leptons, else one region per flavour of the four leading leptons."""
    four = _both(n_leptons >= 4, _defined(n_leptons))
    regions = {"lt4": ~four}
    for muons, name in FLAVOUR_4L.items():
        regions[name] = _both(flavour_4l == muons, four)
    return regions


def lepton_charge_split(charge_4l: Any) -> Partition:
    """``neutral`` (total charge 0) or ``charged`` four-lepton events, ``missing`` for fewer than four."""
    defined = _defined(charge_4l)
    neutral = _both(charge_4l == 0, defined)
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

    A partition that needs an absent feature is left out (logged at INFO level).
    """
    present = set(features.fields if hasattr(features, "fields") else features)
    result = {}
    for name, (needed, _, build) in _partition_builders(config or RegionConfig()).items():
        if present.issuperset(needed):
            result[name] = build(features)
        else:
            logger.info("partition %s left out: needs features %s", name, ", ".join(sorted(set(needed) - present)))
    if not result and present:
        column = features[next(iter(present))]
        result[INCLUSIVE] = {"all": ak.is_none(column) | ~ak.is_none(column)}
    return result


def region_flags(partition_masks: Mapping[str, Partition]) -> dict[str, Any]:
    """Flatten partitions into ``{partition}_{region}`` flags."""
    return {f"{name}_{region}": mask for name, regions in partition_masks.items() for region, mask in regions.items()}


def flag_names(layout: Mapping[str, Iterable[str]]) -> list[str]:
    """``{partition}_{region}`` names of a partition layout (see :func:`partition_layout`), in order."""
    return [f"{name}_{region}" for name, regions in layout.items() for region in regions]


def region_ids(partition_masks: Mapping[str, Partition]) -> Any:
    """Per event, the list of its flags' positions in :func:`region_flags` order, one per partition.

    An event that a partition puts in no region or in several (a bug in a region definition) gets -1 for
    that partition instead, so that it shows up as a loss in the cutflow rather than in a wrong region.
    """
    columns = []
    offset = 0
    for regions in partition_masks.values():
        masks = list(regions.values())
        position = sum(mask * index for index, mask in enumerate(masks))
        n_regions = sum(ak.values_astype(mask, "int64") for mask in masks)
        # [:, None], not ak.unflatten(..., 1): that fails on a chunk of no events (a chunk skipped for a read error)
        columns.append(ak.where(n_regions == 1, position + offset, -1)[:, None])
        offset += len(masks)
    return ak.from_regular(ak.concatenate(columns, axis=1), axis=1)


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

