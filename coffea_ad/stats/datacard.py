"""CMS Combine datacard and shapes ROOT file from the same fit spec as the pyhf workspace.

Shapes file layout (written with uproot; TH1D with sums of squared weights). It is also the layout
cabinetry reads with ``InputPath: "shapes.root:{RegionPath}/{SamplePath}{VariationPath}"``
(RegionPath = channel, SamplePath = sample, VariationPath = "" or "_NAMEUp"/"_NAMEDown")::

    {channel}/data_obs                   observed data
    {channel}/{sample}                   nominal template
    {channel}/{sample}_{systematic}Up    histosys "hi" template
    {channel}/{sample}_{systematic}Down  histosys "lo" template

Modifier translation (pyhf -> Combine):

- ``normfactor`` named as the POI: the sample is a signal process (process index <= 0, scaled by ``r``);
  other normfactors: ``NAME rateParam CHANNEL SAMPLE 1 [0,10]``.
- ``normsys`` (lo, hi): ``lnN`` with ``lo/hi`` (asymmetric log-normal; pyhf interpolates exponentially too).
- ``histosys``: ``shape`` with the Up/Down templates (Combine morphs with a smoothed quadratic/linear
  interpolation, pyhf ``histosys`` linearly: the two agree at ±1σ).
- ``staterror``/``shapesys``: ``CHANNEL autoMCStats 0`` (Barlow–Beeston-lite from the stored sums of
  squared weights, the analogue of ``staterror``).

References:
    CMS Combine: CMS Collaboration, arXiv:2404.06614.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import uproot

from coffea_ad.errors import ConfigurationError
from coffea_ad.paths import atomic_output
from coffea_ad.stats.workspace import build_workspace, histogram_counts, weighted_histogram

__all__ = ["write_combine", "datacard_text"]

logger = logging.getLogger(__name__)


def _edges(histogram, n_bins: int) -> np.ndarray:
    source = histogram.to_hist() if hasattr(histogram, "to_hist") else histogram
    if hasattr(source, "axes"):
        return np.asarray(source.axes[0].edges, dtype=np.float64)
    return np.arange(n_bins + 1, dtype=np.float64)


def _processes(spec: Mapping, poi: str) -> tuple[list[dict], dict[str, dict]]:
    """Per channel and sample: nominal, variances, edges, signal flag and the modifiers, validated."""
    entries, systematics = [], {}
    for channel in spec["channels"]:
        data = channel.get("data")
        for sample in channel["samples"]:
            values, variances = histogram_counts(
                sample["yields"], f"channel {channel['name']!r} sample {sample['name']!r}"
            )
            entry = {
                "channel": channel["name"],
                "sample": sample["name"],
                "values": values,
                "variances": variances,
                "edges": _edges(sample["yields"] if data is None else data, values.size),
                "signal": False,
                "rate_params": [],
                "autostats": False,
            }
            for modifier in sample.get("modifiers", []):
                kind, name = modifier["type"], modifier["name"]
                if kind == "normfactor":
                    if name == poi:
                        entry["signal"] = True
                    else:
                        entry["rate_params"].append(name)
                elif kind in ("staterror", "shapesys"):
                    entry["autostats"] = True
                elif kind in ("normsys", "histosys"):
                    known = systematics.setdefault(name, {"type": kind, "by_process": {}})
                    if known["type"] != kind:
                        raise ConfigurationError(
                            f"systematic {name!r} is both normsys and histosys; Combine needs one type"
                        )
                    known["by_process"][(channel["name"], sample["name"])] = modifier
            entries.append(entry)
    return entries, systematics


def datacard_text(spec: Mapping, shapes_file: str = "shapes.root") -> str:
    """The text of a Combine datacard for a fit spec (validated by building its pyhf workspace first)."""
    workspace = build_workspace(spec)
    poi = workspace.get_measurement()["config"]["poi"]
    entries, systematics = _processes(spec, poi)
    channels = [c["name"] for c in spec["channels"]]
    observed = {o["name"]: float(np.sum(o["data"])) for o in workspace["observations"]}
    backgrounds = sorted({e["sample"] for e in entries if not e["signal"]})
    signals = sorted({e["sample"] for e in entries if e["signal"]})
    overlap = set(signals) & set(backgrounds)
    if overlap:
        raise ConfigurationError(f"samples {sorted(overlap)} are signal in one channel and background in another")
    index = {name: -i for i, name in enumerate(reversed(signals))} | {name: i + 1 for i, name in enumerate(backgrounds)}
    rule = "-" * 80
    lines = [
        "# CMS Combine datacard written by coffea_ad from the same histograms as the pyhf workspace",
        f"imax {len(channels)} number of channels",
        f"jmax {len(index) - 1} number of processes minus one",
        "kmax * number of nuisance parameters",
        rule,
        f"shapes * * {shapes_file} $CHANNEL/$PROCESS $CHANNEL/$PROCESS_$SYSTEMATIC",
        rule,
        "bin          " + " ".join(f"{c:>14}" for c in channels),
        "observation  " + " ".join(f"{observed[c]:>14.6g}" for c in channels),
        rule,
        "bin          " + " ".join(f"{e['channel']:>14}" for e in entries),
        "process      " + " ".join(f"{e['sample']:>14}" for e in entries),
        "process      " + " ".join(f"{index[e['sample']]:>14d}" for e in entries),
        "rate         " + " ".join(f"{e['values'].sum():>14.6g}" for e in entries),
        rule,
    ]
    for name, systematic in systematics.items():
        cells = []
        for entry in entries:
            modifier = systematic["by_process"].get((entry["channel"], entry["sample"]))
            if modifier is None:
                cells.append("-")
            elif systematic["type"] == "normsys":
                cells.append(f"{float(modifier['lo']):.6g}/{float(modifier['hi']):.6g}")
            else:
                cells.append("1")
        kind = "lnN" if systematic["type"] == "normsys" else "shape"
        lines.append(f"{name:<20} {kind:<6} " + " ".join(f"{c:>14}" for c in cells))
    for entry in entries:
        for name in entry["rate_params"]:
            lines.append(f"{name} rateParam {entry['channel']} {entry['sample']} 1 [0,10]")
    for channel in channels:
        if any(e["autostats"] for e in entries if e["channel"] == channel):
            lines.append(f"{channel} autoMCStats 0")
    return "\n".join(lines) + "\n"


def write_combine(
    spec: Mapping,
    datacard_path: str | os.PathLike,
    shapes_path: str | os.PathLike | None = None,
) -> tuple[Path, Path]:
    """Write the datacard and its shapes ROOT file (default: beside it, ``shapes.root``), both atomically.

    The datacard refers to the shapes file by its name, so keep the two in one folder.
    """
    datacard_path = Path(datacard_path)
    shapes_path = datacard_path.with_name("shapes.root") if shapes_path is None else Path(shapes_path)
    if shapes_path.parent.resolve() != datacard_path.parent.resolve():
        raise ConfigurationError(
            f"the shapes file {shapes_path} must be in the datacard's folder {datacard_path.parent}"
        )
    text = datacard_text(spec, shapes_path.name)
    workspace = build_workspace(spec)
    poi = workspace.get_measurement()["config"]["poi"]
    entries, systematics = _processes(spec, poi)
    edges_of = {e["channel"]: e["edges"] for e in entries}
    with atomic_output(shapes_path) as tmp:
        with uproot.recreate(tmp) as out:
            for observation in workspace["observations"]:
                values = np.asarray(observation["data"], dtype=np.float64)
                out[f"{observation['name']}/data_obs"] = weighted_histogram(
                    values, edges_of[observation["name"]], label="data_obs"
                )
            for entry in entries:
                key = f"{entry['channel']}/{entry['sample']}"
                out[key] = weighted_histogram(
                    entry["values"], entry["edges"], entry["variances"], label=entry["sample"]
                )
                for name, systematic in systematics.items():
                    modifier = systematic["by_process"].get((entry["channel"], entry["sample"]))
                    if modifier is None or systematic["type"] != "histosys":
                        continue
                    for suffix, side in (("Up", "hi"), ("Down", "lo")):
                        values, variances = histogram_counts(modifier[side], f"{key} {name} {side}")
                        out[f"{key}_{name}{suffix}"] = weighted_histogram(
                            values, entry["edges"], variances, label=f"{entry['sample']} {name}{suffix}"
                        )
    with atomic_output(datacard_path) as tmp:
        tmp.write_text(text)
    logger.info("wrote %s and %s", datacard_path, shapes_path)
    return datacard_path, shapes_path
