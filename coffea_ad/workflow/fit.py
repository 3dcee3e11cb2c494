"""``coffea-ad fit``: from a ROOT file of histograms to a workspace, fit results and plots in one folder.

The file is what ``coffea-ad features`` or ``coffea-ad score`` writes: histograms ``{dataset}/{region}/{variable}``
(region = a flag such as ``deta_sr``). The samples are named by dataset; each of data, background and signal
may be a sum of datasets. Defaults, each said in the output (``inputs`` of ``fit_results.json``):

- data: the dataset called ``data`` if the file has one, else the sum of every dataset;
- score: the one model of the file (score writes ``{mass}_{score}_pass``); with none or several, none;
- variable: ``{mass}_{score}_pass`` (the mass after the anomaly cut) with a score, else ``{mass}``; the
  score distribution ``{score}`` for method ``score``;
- region: the signal region recorded by ``coffea-ad score`` in ``scores.json`` beside the file, else
  ``deta_sr`` (|Δη_jj| < 1.3 over the whole mjj range);
- backgrounds (method ``score``): every dataset that is neither data nor signal (with data the sum of every
  dataset, every dataset but the signal).

A name the file does not hold is refused with the datasets, regions or variables it holds.

Methods and what they write into the output folder (every file atomically; a fit that fails removes what it
wrote, and the folder if it created it):

- ``bumphunt``: the data mass spectrum of one region; :func:`bump_hunt` over a window grid.
  ``workspace.json`` and ``datacard.txt`` + ``shapes.root`` (the most significant window),
  ``fit_results.json``, ``fit.png`` (sideband fit over data with pulls), ``local_significance.png``; with a
  signal also ``cls_scan.png``.
- ``score``: the anomaly-score histograms of every region as one multi-channel workspace (one channel per
  region; signal scaled by mu, backgrounds with template statistics; samples named by their dataset).
  ``workspace.json``, ``fit_results.json`` (observed/expected Z, CLs limit), ``fit_REGION.png`` per region
  (post-fit stack over data with pulls), ``cls_scan.png``, ``datacard.txt`` + ``shapes.root`` (Combine).
- ``abcd``: four regions A, B, C, D (in that order); data in B, C, D predict A; closure on the summed
  backgrounds when given. ``workspace.json`` (one bin: the ABCD prediction with its uncertainty),
  ``fit_results.json``; with a signal also ``cls_scan.png``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hist
import numpy as np

from coffea_ad.errors import ConfigurationError, InputFileError
from coffea_ad.paths import output_folder, write_json
from coffea_ad.plotting import save_figure
from coffea_ad.plotting.fits import plot_cls_scan, plot_fit, plot_local_significance
from coffea_ad.stats.abcd import abcd_prediction, closure_test
from coffea_ad.stats.bumphunt import bump_hunt, fit_range, mjj_histogram
from coffea_ad.stats.datacard import write_combine
from coffea_ad.stats.inference import best_fit, model_significance, upper_limit
from coffea_ad.stats.workspace import build_workspace, channel_spec, fit_spec, histogram_counts, write_workspace

__all__ = ["FIT_METHODS", "HistogramFile", "FitInputs", "read_histogram", "resolve_inputs", "run_fit", "describe_fit"]

logger = logging.getLogger(__name__)

FIT_METHODS = ("bumphunt", "score", "abcd")
_SHOWN = 15


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown + (f", ... ({len(names) - _SHOWN} more)" if len(names) > _SHOWN else "") if names else "none"


@dataclasses.dataclass(frozen=True)
class HistogramFile:
    """What a ROOT file of histograms holds: every histogram path, and its datasets, regions and variables."""

    path: Path
    keys: tuple[str, ...]

    @classmethod
    def read(cls, file: Any, path: str | os.PathLike) -> HistogramFile:
        """The inventory of an open uproot file."""
        keys = sorted(
            key.rsplit(";", 1)[0]
            for key, classname in file.classnames().items()
            if classname.startswith(("TH1", "TH2"))
        )
        return cls(Path(path), tuple(keys))

    def _component(self, position: int) -> list[str]:
        parts = (key.split("/") for key in self.keys)
        return sorted({part[position] for part in parts if len(part) == 3})

    @property
    def datasets(self) -> list[str]:
        """The first components of the ``{dataset}/{region}/{variable}`` paths."""
        return self._component(0)

    @property
    def regions(self) -> list[str]:
        """The region flags of the file."""
        return self._component(1)

    @property
    def variables(self) -> list[str]:
        """The histogrammed variables of the file."""
        return self._component(2)

    def scores(self, mass: str) -> list[str]:
        """The models whose cut the file holds: ``x`` for every variable ``{mass}_x_pass``."""
        prefix, suffix = f"{mass}_", "_pass"
        return [v[len(prefix):-len(suffix)] for v in self.variables if v.startswith(prefix) and v.endswith(suffix)]

    def require(self, kind: str, name: str, source: str) -> None:
        """Refuse a dataset, region or variable the file does not hold, listing those it holds."""
        present = {"dataset": self.datasets, "region": self.regions, "variable": self.variables}[kind]
        if name not in present:
            raise InputFileError(
                f"{kind} {name!r} ({source}) is not in {self.path}; its {kind}s: {_listing(present)}"
            )


@dataclasses.dataclass(frozen=True)
class FitInputs:
    """The histograms one fit reads: datasets summed as data, backgrounds, signal; regions; variable."""

    data: tuple[str, ...]
    backgrounds: tuple[str, ...]
    signal: str | None
    regions: tuple[str, ...]
    variable: str
    mass: str = "mjj"
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The ``inputs`` entry of ``fit_results.json``."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in vars(self).items()}


def _names(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _score_record(histograms: Path) -> tuple[Path, dict[str, Any] | None]:
    """``scores.json`` beside the file, and its content (None when there is none)."""
    record = histograms.with_name("scores.json")
    if not record.is_file():
        return record, None
    try:
        return record, json.loads(record.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise InputFileError(f"cannot read {record}: {error}") from error


def _refuse_without_threshold(histograms: Path) -> None:
    """Refuse a file that ``coffea-ad score`` wrote without a control region: it holds no cut to fit."""
    record, models = _score_record(histograms)
    unset = sorted(name for name, entry in (models or {}).items() if entry.get("threshold", 0) is None)
    if unset:
        raise ConfigurationError(
            f"{histograms} was scored without a control region: {record} records no threshold for "
            f"{', '.join(unset)}, so there is no cut to fit; rerun 'coffea-ad score' with --control-region FLAG"
        )


def _recorded_signal_region(histograms: Path, score: str | None) -> tuple[str, str]:
    """The signal region ``coffea-ad score`` recorded beside the file, else the default; and where it came from."""
    from coffea_ad.workflow.score import DEFAULT_SIGNAL_REGION

    record, models = _score_record(histograms)
    if models is not None:
        regions = [entry.get("signal_region") for name, entry in models.items() if score in (None, name)]
        regions = sorted({region for region in regions if region})
        if len(regions) == 1:
            return regions[0], f"the signal region recorded in {record}"
    return DEFAULT_SIGNAL_REGION, "the default signal region"


def resolve_inputs(
    content: HistogramFile,
    method: str,
    *,
    data: str | Sequence[str] | None = None,
    backgrounds: str | Sequence[str] | None = None,
    signal: str | None = None,
    regions: Sequence[str] | None = None,
    mass: str = "mjj",
    score: str | None = None,
) -> FitInputs:
    """Fill in the defaults (see the module docstring) and check every name against the file's content."""
    _refuse_without_threshold(content.path)
    notes = []
    observed = ()  # the datasets that are data, not simulation
    if data is None:
        if "data" in content.datasets:
            data = observed = ("data",)
        else:
            data = tuple(content.datasets)
            notes.append(f"data: the sum of every dataset ({', '.join(data)}): the file has no dataset 'data'")
    else:
        data = observed = _names(data)
    for name in (*data, *_names(backgrounds), *_names(signal)):
        content.require("dataset", name, "--data, --background or --signal")
    if backgrounds is None:
        backgrounds = [name for name in content.datasets if name not in observed and name != signal]
        if method == "score":
            notes.append(f"backgrounds: every dataset but data and signal ({', '.join(backgrounds) or 'none'})")
    backgrounds = _names(backgrounds)
    if score is None:
        found = content.scores(mass)
        if len(found) == 1:
            score = found[0]
            notes.append(f"score: {score}, the one model of the file")
        elif found:
            notes.append(f"score: none of the models {', '.join(found)} (choose one with --score)")
    if method == "score":
        if score is None:
            raise ConfigurationError(
                f"method score needs --score NAME; the file holds the scores {_listing(content.scores(mass))}"
            )
        if signal is None:
            raise ConfigurationError(f"method score needs --signal DATASET; datasets: {_listing(content.datasets)}")
        variable = score
    else:
        variable = f"{mass}_{score}_pass" if score else mass
    content.require("variable", variable, "--mass and --score" if score else "--mass")
    if regions is None:
        if method == "abcd":
            raise ConfigurationError(
                f"method abcd needs four --region flags A,B,C,D (in that order); regions: {_listing(content.regions)}"
            )
        region, source = _recorded_signal_region(content.path, score)
        regions = (region,)
        notes.append(f"region: {region}, {source}")
    regions = tuple(regions)
    for region in regions:
        content.require("region", region, "--region")
    if method == "bumphunt" and len(regions) != 1:
        raise ConfigurationError(f"method bumphunt fits one region, got {len(regions)}: {', '.join(regions)}")
    if method == "abcd" and len(regions) != 4:
        raise ConfigurationError(
            f"method abcd needs exactly four regions A B C D (in that order), got {len(regions)}"
        )
    return FitInputs(data, backgrounds, signal, regions, variable, mass, tuple(notes))


def read_histogram(file: Any, path: str, *, filename: str | os.PathLike) -> hist.Hist:
    """Read one histogram as ``hist.Hist``; a missing name lists the available ones, an empty one is refused."""
    try:
        obj = file[path]
    except KeyError:
        available = HistogramFile.read(file, filename).keys
        raise InputFileError(
            f"histogram {path!r} not found in {filename}; {len(available)} histograms, e.g.: {_listing(available)}"
        ) from None
    if not hasattr(obj, "to_hist"):
        raise InputFileError(f"{path!r} in {filename} is a {type(obj).__name__}, not a histogram")
    return obj.to_hist()


def _refuse_nan(histogram: hist.Hist, path: str, filename: Path) -> None:
    """Refuse a histogram with a NaN count or variance, naming its first such bin (index and edges)."""
    variances = histogram.variances()
    for kind, values in (("count", histogram.values()), ("variance", variances)):
        if values is None or not np.isnan(values).any():
            continue
        index = tuple(int(i) for i in np.argwhere(np.isnan(values))[0])
        edges = ", ".join(
            f"{axis.edges[i]:g}-{axis.edges[i + 1]:g}" if hasattr(axis, "edges") else str(axis.value(i))
            for axis, i in zip(histogram.axes, index, strict=True)
        )
        n_nan = int(np.isnan(values).sum())
        where = index[0] if len(index) == 1 else index
        raise InputFileError(
            f"histogram {path!r} in {filename} has a NaN {kind} in bin {where} ({edges})"
            + (f" and in {n_nan - 1} more bin(s)" if n_nan > 1 else "")
            + ": the job that filled it met a NaN weight or a NaN value; fix the input, then fill it again"
        )


def _read_sum(file: Any, filename: Path, datasets: Sequence[str], region: str, variable: str) -> hist.Hist:
    """The sum of the ``{dataset}/{region}/{variable}`` histograms of ``datasets``; a histogram with a NaN bin and
    an empty sum are refused."""
    paths = [f"{name}/{region}/{variable}" for name in datasets]
    histograms = [read_histogram(file, path, filename=filename) for path in paths]
    for histogram, path in zip(histograms, paths, strict=True):
        _refuse_nan(histogram, path, filename)
    total = functools.reduce(lambda a, b: a + b, histograms)
    if not np.sum(total.values()) > 0:
        shown = " + ".join(f"{name}/{region}/{variable}" for name in datasets)
        raise InputFileError(f"histogram {shown} in {filename} is empty")
    return total


def _limit(model, data, outdir: Path, written: list[str]) -> dict:
    limit = upper_limit(model, data)
    written.append("cls_scan.png")
    save_figure(plot_cls_scan(limit), outdir / "cls_scan.png")
    return limit.to_dict()


def _bumphunt(file, filename, outdir, inputs: FitInputs, options, written) -> dict:
    (region,), variable = inputs.regions, inputs.variable
    data = _read_sum(file, filename, inputs.data, region, variable)
    signal = None
    if inputs.signal is not None:
        signal = _read_sum(file, filename, (inputs.signal,), region, variable)
    range_source = None
    uncut_paths = [f"{name}/{region}/{inputs.mass}" for name in inputs.data]
    available = set(HistogramFile.read(file, filename).keys)
    if options.get("mjj_min") is None and variable != inputs.mass and available.issuperset(uncut_paths):
        # The turn-on belongs to the selection before the anomaly cut (coffea-ad score writes both spectra): a
        # cut spectrum with few events can peak anywhere, or at the signal, so its fit range is found on the
        # uncut spectrum of the same region.
        uncut = fit_range(
            *mjj_histogram(_read_sum(file, filename, inputs.data, region, inputs.mass)),
            mjj_max=options.get("mjj_max"),
        )
        options = {**options, "mjj_min": uncut.low}
        range_source = f"the turn-on of {inputs.mass} before the cut"
    result = bump_hunt(data, signal=signal, **options)
    best = result.most_significant
    spec = result.spec()
    workspace = build_workspace(spec)
    written.extend(["workspace.json", "datacard.txt", "shapes.root"])
    write_workspace(workspace, outdir / "workspace.json")
    write_combine(spec, outdir / "datacard.txt")
    fit = best.fit
    figure = plot_fit(
        result.edges,
        result.counts,
        fit.yields(result.edges),
        uncertainty=fit.yield_uncertainties(result.edges),
        signal=result.signal,
        window=(best.low, best.high),
        goodness_of_fit=(fit.chi2, fit.ndf, fit.p_value),
    )
    written.extend(["fit.png", "local_significance.png"])
    save_figure(figure, outdir / "fit.png")
    save_figure(plot_local_significance(result), outdir / "local_significance.png")
    summary = {"method": "bumphunt", "region": region, "variable": variable, **result.to_dict()}
    if range_source is not None:
        summary["fit_range_source"] = range_source
    if signal is not None:
        model = workspace.model()
        summary["upper_limit_most_significant_window"] = _limit(model, workspace.data(model), outdir, written)
    return summary


def _score(file, filename, outdir, inputs: FitInputs, template_statistics, written) -> dict:
    regions, variable = inputs.regions, inputs.variable
    if not inputs.backgrounds:
        raise ConfigurationError("method score needs a background dataset (--background)")
    channels, shown = [], {}
    for region in regions:
        data = _read_sum(file, filename, inputs.data, region, variable)
        signal = _read_sum(file, filename, (inputs.signal,), region, variable)
        backgrounds = {name: _read_sum(file, filename, (name,), region, variable) for name in inputs.backgrounds}
        total = np.sum([h.values() for h in backgrounds.values()], axis=0)
        if np.any(total <= 0):
            raise ConfigurationError(
                f"the background in region {region!r} is not positive in bins {np.flatnonzero(total <= 0).tolist()}: "
                "merge bins or choose another binning"
            )
        channels.append(
            channel_spec(
                region,
                backgrounds,
                signal=signal,
                signal_name=inputs.signal,
                data=data,
                template_statistics=template_statistics,
            )
        )
        shown[region] = (data, signal, backgrounds)
    spec = fit_spec(channels)
    workspace = build_workspace(spec)
    model = workspace.model()
    data = workspace.data(model)
    written.extend(["workspace.json", "datacard.txt", "shapes.root"])
    write_workspace(workspace, outdir / "workspace.json")
    write_combine(spec, outdir / "datacard.txt")
    parameters = best_fit(model, data)
    by_sample = model.main_model.expected_data(parameters, return_by_sample=True)
    for region in regions:
        histogram_data, _, _ = shown[region]
        bins = model.config.channel_slices[region]
        components = {name: np.asarray(by_sample[i][bins]) for i, name in enumerate(model.config.samples)}
        edges = histogram_data.axes[0].edges
        figure = plot_fit(
            edges,
            histogram_data.values(),
            np.sum(list(components.values()), axis=0),
            components=components,
            xlabel=f"{variable} ({region})",
            prediction_label="post-fit total",
        )
        written.append(f"fit_{region}.png")
        save_figure(figure, outdir / f"fit_{region}.png")
    mu_hat = float(parameters[model.config.poi_index])
    return {
        "method": "score",
        "regions": list(regions),
        "variable": variable,
        "template_statistics": template_statistics,
        "best_fit_mu": mu_hat,
        "discovery": model_significance(model, data).to_dict(),
        "upper_limit": _limit(model, data, outdir, written),
    }


def _abcd(file, filename, outdir, inputs: FitInputs, written) -> dict:
    regions, variable = inputs.regions, inputs.variable

    def total(datasets: Sequence[str], region: str) -> tuple[float, float]:
        values, variances = histogram_counts(
            _read_sum(file, filename, datasets, region, variable), f"{'+'.join(datasets)}/{region}/{variable}"
        )
        return float(values.sum()), float(variances.sum())

    data = {name: total(inputs.data, region) for name, region in zip("ABCD", regions, strict=True)}
    prediction = abcd_prediction(data["B"][0], data["C"][0], data["D"][0])
    summary = {"method": "abcd", "regions": dict(zip("ABCD", regions, strict=True)), "variable": variable}
    summary["prediction"] = prediction.to_dict()
    summary["observed_A"] = data["A"][0]
    if inputs.backgrounds:
        background = {name: np.zeros(2) for name in "ABCD"}
        for dataset in inputs.backgrounds:
            for name, region in zip("ABCD", regions, strict=True):
                background[name] += total((dataset,), region)
        summary["closure_on_background"] = closure_test({name: tuple(v) for name, v in background.items()}).to_dict()
    signal_yield = prediction.value
    if inputs.signal is not None:
        signal_yield = total((inputs.signal,), regions[0])[0]
    spec = {
        "poi": "mu",
        "channels": [
            {
                "name": "A",
                "data": [data["A"][0]],
                "samples": [
                    {"name": "signal", "yields": [signal_yield], "modifiers": [{"type": "normfactor", "name": "mu"}]},
                    {
                        "name": "abcd",
                        "yields": [prediction.value],
                        "modifiers": [
                            {"type": "shapesys", "name": "abcd_uncertainty", "uncertainty": [prediction.uncertainty]}
                        ],
                    },
                ],
            }
        ],
    }
    workspace = build_workspace(spec)
    model = workspace.model()
    written.append("workspace.json")
    write_workspace(workspace, outdir / "workspace.json")
    summary["discovery"] = model_significance(model, workspace.data(model), poi_upper_bound=100.0).to_dict()
    if inputs.signal is not None:
        summary["upper_limit"] = _limit(model, workspace.data(model), outdir, written)
    return summary


def run_fit(
    histograms: str | os.PathLike,
    outdir: str | os.PathLike,
    *,
    method: str = "bumphunt",
    data: str | Sequence[str] | None = None,
    backgrounds: str | Sequence[str] | None = None,
    signal: str | None = None,
    regions: Sequence[str] | None = None,
    mass: str = "mjj",
    score: str | None = None,
    template_statistics: str = "staterror",
    bumphunt_options: Mapping | None = None,
) -> dict:
    """Run one method on a ROOT file of histograms and write its outputs into ``outdir``; returns the summary.

    ``data``, ``backgrounds`` and ``signal`` are dataset names of the file (data and backgrounds may be
    several: data is their sum); ``regions`` are region flags; ``score`` the model whose cut is applied.
    The defaults are in the module docstring (:func:`resolve_inputs`). ``bumphunt_options`` are passed to
    :func:`~coffea_ad.stats.bumphunt.bump_hunt` (``relative_width``, ``n_parameters``, ``centres``,
    ``n_toys``, ``seed``, ``background_uncertainty``).
    """
    import uproot

    if method not in FIT_METHODS:
        raise ConfigurationError(f"unknown method {method!r}; valid methods: {', '.join(FIT_METHODS)}")
    histograms = Path(histograms)
    if not histograms.is_file():
        raise InputFileError(f"histogram file {histograms} does not exist")
    try:
        file = uproot.open(histograms)
    except Exception as error:  # uproot raises several types for a file that is not ROOT
        raise InputFileError(f"cannot open {histograms} as a ROOT file: {error}") from error
    written: list[str] = []
    with file:
        inputs = resolve_inputs(
            HistogramFile.read(file, histograms),
            method,
            data=data,
            backgrounds=backgrounds,
            signal=signal,
            regions=regions,
            mass=mass,
            score=score,
        )
        for note in inputs.notes:
            logger.info("coffea-ad fit: %s", note)
        # a fit that fails (a NaN bin, a background without events) removes what it wrote, and the folder if new
        with output_folder(outdir, written) as outdir:
            if method == "bumphunt":
                summary = _bumphunt(file, histograms, outdir, inputs, dict(bumphunt_options or {}), written)
            elif method == "score":
                summary = _score(file, histograms, outdir, inputs, template_statistics, written)
            else:
                summary = _abcd(file, histograms, outdir, inputs, written)
            summary["input"] = str(histograms)
            summary["inputs"] = inputs.to_dict()
            written.append("fit_results.json")
            write_json(outdir / "fit_results.json", summary)
    summary["written"] = written
    logger.info("coffea-ad fit (%s) wrote %s into %s", method, ", ".join(written), outdir)
    return summary


def describe_fit(summary: Mapping) -> str:
    """A few lines for the terminal from the summary :func:`run_fit` returns."""
    inputs = summary["inputs"]
    lines = [
        f"coffea-ad fit ({summary['method']}) on {summary['input']}: {inputs['variable']} in "
        f"{', '.join(inputs['regions'])}, data = {' + '.join(inputs['data'])}"
    ]
    lines.extend(f"  {note}" for note in inputs["notes"])
    if summary["method"] == "bumphunt":
        best = summary["most_significant_window"]
        if "fit_range_GeV" in summary:
            low, high = summary["fit_range_GeV"]
            how = {"turn-on": "from the data (turn-on)", "mjj_min": "from --mjj-min"}[summary["fit_range_method"]]
            if "fit_range_source" in summary:
                how = f"from {summary['fit_range_source']}"
            lines.append(f"  fit range {low:.0f}-{high:.0f} GeV, {how}")
        fit = best["sideband_fit"]
        lines.append(
            f"  sideband fit of that window: {fit['n_parameters']} parameters, chi2/ndf = "
            f"{fit['chi2']:.1f}/{fit['ndf']} (bins merged to >= 5 expected events), p = {fit['p_value']:.3g}; "
            f"{summary['n_windows_flagged']} of {summary['n_windows']} windows flagged for a poor sideband fit"
        )
        lines.append(
            f"  most significant window {best['window_GeV'][0]:.0f}-{best['window_GeV'][1]:.0f} GeV: "
            f"observed {best['observed']:.0f}, "
            f"background {best['background']:.1f} ± {best['background_uncertainty']:.1f}, "
            f"local Z = {summary['local_Z']:.2f}"
        )
        lines.append(
            f"  global Z = {summary['global_Z']:.2f} "
            f"({summary['global_method']}, trials factor {summary['trials_factor']:.1f})"
        )
        if "warning" in summary:
            lines.append(f"  warning: {summary['warning']}")
    elif summary["method"] == "abcd":
        prediction = summary["prediction"]
        lines.append(
            f"  region A: observed {summary['observed_A']:.0f}, ABCD prediction {prediction['predicted_A']:.1f} ± "
            f"{prediction['uncertainty']:.1f}"
        )
        if "closure_on_background" in summary:
            lines.append(f"  closure on background: pull {summary['closure_on_background']['pull']:.2f}")
    if "discovery" in summary:
        lines.append(f"  discovery: p0 = {summary['discovery']['p0']:.3g}, Z = {summary['discovery']['Z']:.2f}")
    for key in ("upper_limit", "upper_limit_most_significant_window"):
        if key in summary:
            limit = summary[key]
            lines.append(
                f"  {limit['confidence_level']:.0%} CLs upper limit on mu: "
                f"observed {limit['observed']:.3g}, expected {limit['expected']['median']:.3g}"
            )
    lines.append(f"  wrote {', '.join(summary['written'])}")
    return "\n".join(lines)
