"""``coffea-ad fit``: from a ROOT file of histograms to a workspace, fit results and plots in one folder.

Histograms are read with uproot (``.to_hist()``) by path inside the file; a path may contain ``{region}``
and ``{variable}``, filled in for every region. The feature processor writes ``{dataset}/{region}/{variable}``,
so the defaults are ``data/{region}/{variable}``, ``background/{region}/{variable}`` and
``signal/{region}/{variable}``. A background's sample name is the first component of its path.

Methods and what they write into the output folder (every file atomically):

- ``bumphunt``: the data mjj spectrum (after the anomaly cut) of the first region; :func:`bump_hunt` over a
  window grid. ``workspace.json`` and ``datacard.txt`` + ``shapes.root`` (the most significant window),
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

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hist
import numpy as np

from coffea_ad.errors import ConfigurationError, InputFileError
from coffea_ad.paths import write_json
from coffea_ad.plotting import save_figure
from coffea_ad.stats.abcd import abcd_prediction, closure_test
from coffea_ad.stats.bumphunt import bump_hunt
from coffea_ad.stats.datacard import write_combine
from coffea_ad.stats.inference import best_fit, model_significance, upper_limit
from coffea_ad.plotting.fits import plot_cls_scan, plot_fit, plot_local_significance
from coffea_ad.stats.workspace import build_workspace, channel_spec, fit_spec, histogram_counts, write_workspace

__all__ = ["FIT_METHODS", "DEFAULT_VARIABLES", "HistogramPaths", "read_histogram", "run_fit", "describe_fit"]

logger = logging.getLogger(__name__)

FIT_METHODS = ("bumphunt", "score", "abcd")
DEFAULT_VARIABLES = {"bumphunt": "mjj", "score": "score", "abcd": "mjj"}
DEFAULT_REGIONS = {"bumphunt": ("SR",), "score": ("SR",), "abcd": ("A", "B", "C", "D")}


class HistogramPaths:
    """Path templates of the data, background and signal histograms inside the ROOT file."""

    def __init__(
        self,
        data: str = "data/{region}/{variable}",
        backgrounds: Sequence[str] = ("background/{region}/{variable}",),
        signal: str | None = "signal/{region}/{variable}",
    ) -> None:
        self.data = data
        self.backgrounds = tuple(backgrounds)
        self.signal = signal

    @staticmethod
    def fill(template: str, region: str, variable: str) -> str:
        try:
            return template.format(region=region, variable=variable)
        except (KeyError, IndexError, ValueError) as error:
            raise ConfigurationError(
                f"histogram path {template!r} may only use the placeholders {{region}} and {{variable}}"
            ) from error

    @staticmethod
    def sample_name(template: str) -> str:
        """The first component of a path (the dataset), without placeholder braces."""
        return template.split("/", 1)[0].replace("{", "").replace("}", "")

    def background_names(self) -> list[str]:
        names = [self.sample_name(template) for template in self.backgrounds]
        if len(set(names)) != len(names):
            names = [t.replace("/", "_").replace("{", "").replace("}", "") for t in self.backgrounds]
        return names


def _available(file) -> list[str]:
    return sorted(
        key.rsplit(";", 1)[0] for key, classname in file.classnames().items() if classname.startswith(("TH1", "TH2"))
    )


def read_histogram(file: Any, path: str, *, filename: str | os.PathLike) -> hist.Hist:
    """Read one histogram as ``hist.Hist``; a missing name lists the available ones, an empty one is refused."""
    try:
        obj = file[path]
    except KeyError:
        available = _available(file)
        # Show first the names of the same sample and variable (the regions one could mean), then the
        # sample's, and keep the line readable.
        sample, variable = path.split("/", 1)[0], path.rsplit("/", 1)[-1]
        same_sample = [name for name in available if name.split("/", 1)[0] == sample]
        nearby = [name for name in same_sample if name.rsplit("/", 1)[-1] == variable] or same_sample or available
        shown = ", ".join(nearby[:20]) + (f", ... ({len(nearby) - 20} more)" if len(nearby) > 20 else "")
        raise InputFileError(
            f"histogram {path!r} not found in {filename}; {len(available)} histograms, e.g.: {shown or 'none'}"
        ) from None
    if not hasattr(obj, "to_hist"):
        raise InputFileError(f"{path!r} in {filename} is a {type(obj).__name__}, not a histogram")
    histogram = obj.to_hist()
    if not np.sum(histogram.values()) > 0:
        raise InputFileError(f"histogram {path!r} in {filename} is empty")
    return histogram


def _limit(model, data, outdir: Path, written: list[str]) -> dict:
    limit = upper_limit(model, data)
    save_figure(plot_cls_scan(limit), outdir / "cls_scan.png")
    written.append("cls_scan.png")
    return limit.to_dict()


def _bumphunt(file, filename, outdir, paths, region, variable, options, written) -> dict:
    data = read_histogram(file, paths.fill(paths.data, region, variable), filename=filename)
    signal = None
    if paths.signal is not None:
        signal = read_histogram(file, paths.fill(paths.signal, region, variable), filename=filename)
    result = bump_hunt(data, signal=signal, **options)
    best = result.most_significant
    spec = result.spec()
    workspace = build_workspace(spec)
    write_workspace(workspace, outdir / "workspace.json")
    write_combine(spec, outdir / "datacard.txt")
    written.extend(["workspace.json", "datacard.txt", "shapes.root"])
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
    save_figure(figure, outdir / "fit.png")
    save_figure(plot_local_significance(result), outdir / "local_significance.png")
    written.extend(["fit.png", "local_significance.png"])
    summary = {"method": "bumphunt", "region": region, "variable": variable, **result.to_dict()}
    if signal is not None:
        model = workspace.model()
        summary["upper_limit_most_significant_window"] = _limit(model, workspace.data(model), outdir, written)
    return summary


def _score(file, filename, outdir, paths, regions, variable, template_statistics, written) -> dict:
    if paths.signal is None:
        raise ConfigurationError("--method score needs a signal histogram (--signal)")
    channels, shown = [], {}
    for region in regions:
        data = read_histogram(file, paths.fill(paths.data, region, variable), filename=filename)
        signal = read_histogram(file, paths.fill(paths.signal, region, variable), filename=filename)
        backgrounds = {
            name: read_histogram(file, paths.fill(template, region, variable), filename=filename)
            for name, template in zip(paths.background_names(), paths.backgrounds, strict=True)
        }
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
                signal_name=paths.sample_name(paths.signal),
                data=data,
                template_statistics=template_statistics,
            )
        )
        shown[region] = (data, signal, backgrounds)
    spec = fit_spec(channels)
    workspace = build_workspace(spec)
    model = workspace.model()
    data = workspace.data(model)
    write_workspace(workspace, outdir / "workspace.json")
    write_combine(spec, outdir / "datacard.txt")
    written.extend(["workspace.json", "datacard.txt", "shapes.root"])
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
        save_figure(figure, outdir / f"fit_{region}.png")
        written.append(f"fit_{region}.png")
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


def _abcd(file, filename, outdir, paths, regions, variable, written) -> dict:
    if len(regions) != 4:
        raise ConfigurationError(
            f"--method abcd needs exactly four regions A B C D (in that order), got {len(regions)}"
        )

    def total(template: str, region: str) -> tuple[float, float]:
        values, variances = histogram_counts(
            read_histogram(file, paths.fill(template, region, variable), filename=filename), template
        )
        return float(values.sum()), float(variances.sum())

    data = {name: total(paths.data, region) for name, region in zip("ABCD", regions, strict=True)}
    prediction = abcd_prediction(data["B"][0], data["C"][0], data["D"][0])
    summary = {"method": "abcd", "regions": dict(zip("ABCD", regions, strict=True)), "variable": variable}
    summary["prediction"] = prediction.to_dict()
    summary["observed_A"] = data["A"][0]
    if paths.backgrounds:
        background = {name: np.zeros(2) for name in "ABCD"}
        for template in paths.backgrounds:
            for name, region in zip("ABCD", regions, strict=True):
                background[name] += total(template, region)
        summary["closure_on_background"] = closure_test({name: tuple(v) for name, v in background.items()}).to_dict()
    signal_yield = prediction.value
    if paths.signal is not None:
        signal_yield = total(paths.signal, regions[0])[0]
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
    write_workspace(workspace, outdir / "workspace.json")
    written.append("workspace.json")
    summary["discovery"] = model_significance(model, workspace.data(model), poi_upper_bound=100.0).to_dict()
    if paths.signal is not None:
        summary["upper_limit"] = _limit(model, workspace.data(model), outdir, written)
    return summary


def run_fit(
    histograms: str | os.PathLike,
    outdir: str | os.PathLike,
    *,
    method: str = "bumphunt",
    paths: HistogramPaths | None = None,
    regions: Sequence[str] | None = None,
    variable: str | None = None,
    template_statistics: str = "staterror",
    bumphunt_options: Mapping | None = None,
) -> dict:
    """Run one method on a ROOT file of histograms and write its outputs into ``outdir``; returns the summary.

    ``bumphunt_options`` are passed to :func:`~coffea_ad.stats.bumphunt.bump_hunt` (``relative_width``,
    ``n_parameters``, ``centres``, ``n_toys``, ``seed``, ``background_uncertainty``).
    """
    import uproot

    if method not in FIT_METHODS:
        raise ConfigurationError(f"unknown method {method!r}; valid methods: {', '.join(FIT_METHODS)}")
    histograms = Path(histograms)
    if not histograms.is_file():
        raise InputFileError(f"histogram file {histograms} does not exist")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = paths or HistogramPaths()
    regions = tuple(regions or DEFAULT_REGIONS[method])
    variable = variable or DEFAULT_VARIABLES[method]
    written: list[str] = []
    try:
        file = uproot.open(histograms)
    except Exception as error:  # uproot raises several types for a file that is not ROOT
        raise InputFileError(f"cannot open {histograms} as a ROOT file: {error}") from error
    with file:
        if method == "bumphunt":
            summary = _bumphunt(
                file, histograms, outdir, paths, regions[0], variable, dict(bumphunt_options or {}), written
            )
        elif method == "score":
            summary = _score(file, histograms, outdir, paths, regions, variable, template_statistics, written)
        else:
            summary = _abcd(file, histograms, outdir, paths, regions, variable, written)
    summary["input"] = str(histograms)
    write_json(outdir / "fit_results.json", summary)
    written.append("fit_results.json")
    summary["written"] = written
    logger.info("coffea-ad fit (%s) wrote %s into %s", method, ", ".join(written), outdir)
    return summary


def describe_fit(summary: Mapping) -> str:
    """A few lines for the terminal from the summary :func:`run_fit` returns."""
    lines = [f"coffea-ad fit ({summary['method']}) on {summary['input']}"]
    if summary["method"] == "bumphunt":
        best = summary["most_significant_window"]
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
