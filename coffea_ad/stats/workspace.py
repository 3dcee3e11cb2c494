"""HistFactory workspaces from ``hist`` histograms: one validated spec dict -> ``pyhf.Workspace``.

The fit specification is a plain dict (JSON-like, histograms allowed in place of lists)::

    {
        "poi": "mu",
        "channels": [
            {
                "name": "SR",
                "data": hist_or_counts,
                "samples": [
                    {"name": "signal", "yields": h_sig, "modifiers": [{"type": "normfactor", "name": "mu"}]},
                    {"name": "qcd", "yields": h_qcd, "modifiers": [
                        {"type": "staterror", "name": "staterror_SR"},
                        {"type": "normsys", "name": "xsec_qcd", "lo": 0.9, "hi": 1.1},
                        {"type": "histosys", "name": "jes", "lo": h_down, "hi": h_up},
                    ]},
                ],
            },
        ],
    }

Optional keys: ``"measurement"`` (its name) and ``"parameters"`` (pyhf parameter settings such as
``{"name": "mu", "bounds": [[0, 50]]}``, passed through to the measurement).

:func:`build_workspace` copies and validates it (names, bin counts, non-negative yields, known modifier
types), turns every modifier into its pyhf form through :data:`MODIFIER_BUILDERS` (a registry: an unknown
``type`` raises an error listing the valid ones) and hands the result to ``pyhf.Workspace``, which checks it
against the HistFactory JSON schema. :func:`channel_spec` and :func:`fit_spec` are convenience builders
that only build such a dict, the way ``pyhf.simplemodels`` does.

Template statistics: ``staterror`` (one Gaussian-constrained parameter per bin shared by the samples of a
channel, Barlow–Beeston lite) or ``shapesys`` (one Poisson-constrained parameter per bin and sample). Their
absolute uncertainties default to the square root of the histogram's variances (``Weight`` storage) or of
its counts.

References:
    HistFactory: Cranmer et al., CERN-OPEN-2012-016. pyhf: Heinrich, Feickert, Stark, Cranmer, JOSS 6 (2021) 2823.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import hist
import numpy as np
from numpy.typing import ArrayLike
import pyhf

from coffea_ad.errors import ConfigurationError, InputFileError
from coffea_ad.paths import write_json

__all__ = [
    "MODIFIER_BUILDERS",
    "TEMPLATE_STATISTICS",
    "build_workspace",
    "channel_spec",
    "fit_spec",
    "histogram_counts",
    "weighted_histogram",
    "write_workspace",
    "read_workspace",
    "asimov_data",
]

logger = logging.getLogger(__name__)

TEMPLATE_STATISTICS = ("staterror", "shapesys", "none")


def weighted_histogram(
    values: ArrayLike, edges: ArrayLike, variances: ArrayLike | None = None, *, label: str = ""
) -> hist.Hist:
    """A 1D ``hist.Hist`` with ``Weight`` storage from yields (variances default to the yields)."""
    values = np.asarray(values, dtype=np.float64)
    histogram = hist.Hist(
        hist.axis.Variable(np.asarray(edges, dtype=np.float64), name="x", label=label), storage=hist.storage.Weight()
    )
    histogram.view(flow=False).value = values
    histogram.view(flow=False).variance = values if variances is None else np.asarray(variances, dtype=np.float64)
    return histogram


def histogram_counts(histogram: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(counts, variances)`` of a 1D ``hist`` histogram, a uproot histogram or an array of yields.

    Arrays get Poisson variances (the counts themselves); histograms without stored variances likewise.
    """
    if hasattr(histogram, "to_hist"):
        histogram = histogram.to_hist()
    if hasattr(histogram, "values") and callable(histogram.values):
        if histogram.ndim != 1:
            raise ConfigurationError(f"{name} must be a 1D histogram, got {histogram.ndim} axes")
        counts = np.asarray(histogram.values(flow=False), dtype=np.float64)
        variances = histogram.variances(flow=False)
        variances = counts.copy() if variances is None else np.asarray(variances, dtype=np.float64)
    else:
        counts = np.atleast_1d(np.asarray(histogram, dtype=np.float64))
        if counts.ndim != 1:
            raise ConfigurationError(f"{name} must be one-dimensional, got shape {counts.shape}")
        variances = counts.copy()
    if counts.size == 0:
        raise ConfigurationError(f"{name} has no bins")
    if not np.all(np.isfinite(counts)):
        raise ConfigurationError(f"{name} contains NaN or infinite yields")
    return counts, np.clip(variances, 0.0, None)


def _uncertainty(modifier: Mapping, nominal: np.ndarray, variances: np.ndarray, where: str) -> list[float]:
    if "uncertainty" in modifier:
        values, _ = histogram_counts(modifier["uncertainty"], f"{where} uncertainty")
        if values.shape != nominal.shape:
            raise ConfigurationError(f"{where} uncertainty has {values.size} bins, the sample has {nominal.size}")
        if np.any(values < 0):
            raise ConfigurationError(f"{where} uncertainty must be non-negative")
        return values.tolist()
    return np.sqrt(variances).tolist()


def _normfactor(modifier, nominal, variances, where):
    return {"name": modifier["name"], "type": "normfactor", "data": None}


def _staterror(modifier, nominal, variances, where):
    return {"name": modifier["name"], "type": "staterror", "data": _uncertainty(modifier, nominal, variances, where)}


def _shapesys(modifier, nominal, variances, where):
    return {"name": modifier["name"], "type": "shapesys", "data": _uncertainty(modifier, nominal, variances, where)}


def _normsys(modifier, nominal, variances, where):
    try:
        hi, lo = float(modifier["hi"]), float(modifier["lo"])
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigurationError(f"{where} (normsys) needs numeric 'hi' and 'lo' factors, e.g. 1.1 and 0.9") from error
    if hi <= 0 or lo <= 0:
        raise ConfigurationError(f"{where} (normsys) factors must be positive, got hi={hi:g}, lo={lo:g}")
    return {"name": modifier["name"], "type": "normsys", "data": {"hi": hi, "lo": lo}}


def _histosys(modifier, nominal, variances, where):
    templates = {}
    for key in ("hi", "lo"):
        if key not in modifier:
            raise ConfigurationError(f"{where} (histosys) needs '{key}' (the {key} template, a histogram or array)")
        values, _ = histogram_counts(modifier[key], f"{where} {key} template")
        if values.shape != nominal.shape:
            raise ConfigurationError(f"{where} {key} template has {values.size} bins, the sample has {nominal.size}")
        templates[f"{key}_data"] = values.tolist()
    return {"name": modifier["name"], "type": "histosys", "data": templates}


#: ``type`` -> builder ``(modifier, nominal, variances, where) -> pyhf modifier dict``.
MODIFIER_BUILDERS: dict[str, Callable[[Mapping, np.ndarray, np.ndarray, str], dict]] = {
    "normfactor": _normfactor,
    "staterror": _staterror,
    "shapesys": _shapesys,
    "normsys": _normsys,
    "histosys": _histosys,
}


def _require(mapping: Any, key: str, where: str):
    if not isinstance(mapping, Mapping):
        raise ConfigurationError(f"{where} must be a dict, got {type(mapping).__name__}")
    if key not in mapping:
        raise ConfigurationError(f"{where} has no {key!r}")
    return mapping[key]


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip() or "/" in value:
        raise ConfigurationError(f"{where} must be a non-empty name without '/', got {value!r}")
    return value


def _build_sample(sample: Mapping, n_bins: int | None, channel: str, index: int) -> dict:
    name = _name(_require(sample, "name", f"channel {channel!r} sample {index}"), f"channel {channel!r} sample name")
    where = f"channel {channel!r} sample {name!r}"
    nominal, variances = histogram_counts(_require(sample, "yields", where), f"{where} yields")
    if n_bins is not None and nominal.size != n_bins:
        raise ConfigurationError(f"{where} has {nominal.size} bins, the channel data has {n_bins}")
    if np.any(nominal < 0):
        raise ConfigurationError(f"{where} has negative yields in bins {np.flatnonzero(nominal < 0).tolist()}")
    modifiers = []
    for modifier in sample.get("modifiers", []):
        kind = _require(modifier, "type", f"{where} modifier")
        if kind not in MODIFIER_BUILDERS:
            raise ConfigurationError(
                f"{where}: unknown modifier type {kind!r}; valid types: {', '.join(MODIFIER_BUILDERS)}"
            )
        _name(_require(modifier, "name", f"{where} {kind} modifier"), f"{where} {kind} modifier name")
        modifiers.append(
            MODIFIER_BUILDERS[kind](modifier, nominal, variances, f"{where} modifier {modifier['name']!r}")
        )
    return {"name": name, "data": nominal.tolist(), "modifiers": modifiers}


def build_workspace(spec: Mapping) -> pyhf.Workspace:
    """Validate a coffea_ad fit spec (see the module docstring) and return the ``pyhf.Workspace``.

    The spec is deep-copied first; histograms in it are converted to lists, never modified.
    """
    if not isinstance(spec, Mapping):
        raise ConfigurationError(f"the fit spec must be a dict, got {type(spec).__name__}")
    spec = copy.deepcopy(dict(spec))
    poi = _name(spec.get("poi", "mu"), "the fit spec 'poi'")
    channels = _require(spec, "channels", "the fit spec")
    if not isinstance(channels, Sequence) or not channels:
        raise ConfigurationError("the fit spec needs a non-empty list of channels")
    pyhf_channels, observations, seen = [], [], set()
    for index, channel in enumerate(channels):
        name = _name(_require(channel, "name", f"channel {index}"), f"channel {index} name")
        if name in seen:
            raise ConfigurationError(f"channel {name!r} appears twice in the fit spec")
        seen.add(name)
        observed = None
        if channel.get("data") is not None:
            observed, _ = histogram_counts(channel["data"], f"channel {name!r} data")
            if np.any(observed < 0):
                raise ConfigurationError(f"channel {name!r} data has negative counts")
        samples = _require(channel, "samples", f"channel {name!r}")
        if not samples:
            raise ConfigurationError(f"channel {name!r} has no samples")
        n_bins = None if observed is None else observed.size
        built = []
        for number, sample in enumerate(samples):
            built.append(_build_sample(sample, n_bins, name, number))
            n_bins = len(built[-1]["data"])
        total = np.sum([sample["data"] for sample in built], axis=0)
        if observed is None:
            observed = total
        pyhf_channels.append({"name": name, "samples": built})
        observations.append({"name": name, "data": observed.tolist()})
    kinds = {m["name"]: m["type"] for c in pyhf_channels for s in c["samples"] for m in s["modifiers"]}
    if kinds.get(poi) != "normfactor":
        raise ConfigurationError(
            f"the parameter of interest {poi!r} must be the name of a normfactor modifier; "
            f"normfactors in the spec: {', '.join(n for n, k in kinds.items() if k == 'normfactor') or 'none'}"
        )
    parameters = [dict(p) for p in spec.get("parameters", [])]
    workspace = {
        "channels": pyhf_channels,
        "observations": observations,
        "measurements": [
            {"name": spec.get("measurement", "measurement"), "config": {"poi": poi, "parameters": parameters}}
        ],
        "version": "1.0.0",
    }
    try:
        return pyhf.Workspace(workspace)
    except pyhf.exceptions.InvalidSpecification as error:
        raise ConfigurationError(f"the fit spec does not give a valid HistFactory workspace: {error}") from error


def channel_spec(
    name: str,
    backgrounds: Mapping[str, Any],
    *,
    signal: Any = None,
    data: Any = None,
    signal_name: str = "signal",
    poi: str = "mu",
    template_statistics: str = "staterror",
    systematics: Mapping[str, Sequence[Mapping]] | None = None,
) -> dict:
    """One channel of a fit spec from histograms: signal (scaled by ``poi``), backgrounds and observed data.

    ``template_statistics`` is ``"staterror"``, ``"shapesys"`` or ``"none"``; it is added to every sample.
    ``systematics`` maps a sample name to extra modifier dicts (``normsys``/``histosys``/...).
    """
    if template_statistics not in TEMPLATE_STATISTICS:
        raise ConfigurationError(
            f"template_statistics must be one of {', '.join(TEMPLATE_STATISTICS)}, got {template_statistics!r}"
        )
    if not backgrounds:
        raise ConfigurationError(f"channel {name!r} needs at least one background histogram")
    if signal is not None and signal_name in backgrounds:
        raise ConfigurationError(f"channel {name!r}: a background is named like the signal, {signal_name!r}")
    systematics = dict(systematics or {})
    samples = []
    entries = ([(signal_name, signal)] if signal is not None else []) + list(backgrounds.items())
    for sample_name, histogram in entries:
        modifiers: list[dict] = []
        if sample_name == signal_name and signal is not None:
            modifiers.append({"type": "normfactor", "name": poi})
        if template_statistics == "staterror":
            modifiers.append({"type": "staterror", "name": f"staterror_{name}"})
        elif template_statistics == "shapesys":
            modifiers.append({"type": "shapesys", "name": f"shapesys_{name}_{sample_name}"})
        modifiers.extend(dict(m) for m in systematics.pop(sample_name, []))
        samples.append({"name": sample_name, "yields": histogram, "modifiers": modifiers})
    if systematics:
        raise ConfigurationError(
            f"systematics given for unknown samples {sorted(systematics)} in channel {name!r}; "
            f"samples: {', '.join(n for n, _ in entries)}"
        )
    return {"name": name, "data": data, "samples": samples}


def fit_spec(channels: Sequence[Mapping], *, poi: str = "mu") -> dict:
    """A fit spec from channel dicts (e.g. from :func:`channel_spec`, one per region)."""
    return {"poi": poi, "channels": list(channels)}


def asimov_data(model: pyhf.pdf.Model, *, mu: float = 1.0) -> np.ndarray:
    """Expected data (main + auxiliary) of ``model`` at the suggested initial parameters with the POI at ``mu``."""
    pars = np.asarray(model.config.suggested_init(), dtype=np.float64)
    pars[model.config.poi_index] = mu
    return np.asarray(model.expected_data(pars), dtype=np.float64)


def write_workspace(workspace: pyhf.Workspace, path: str | os.PathLike) -> Path:
    """Write ``workspace`` as HistFactory JSON (readable by ``pyhf`` and cabinetry), atomically."""
    path = Path(path)
    write_json(path, dict(workspace), sort_keys=True)
    logger.info("wrote workspace %s", path)
    return path


def read_workspace(path: str | os.PathLike) -> pyhf.Workspace:
    """Read and validate a HistFactory JSON workspace."""
    path = Path(path)
    try:
        content = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise InputFileError(f"workspace file {path} does not exist") from error
    except (OSError, json.JSONDecodeError) as error:
        raise InputFileError(f"cannot read workspace {path}: {error}") from error
    try:
        return pyhf.Workspace(content)
    except pyhf.exceptions.InvalidSpecification as error:
        raise InputFileError(f"{path} is not a valid HistFactory workspace: {error}") from error
