"""The main job on the embedded default: what ``coffea-ad demo`` (and ``make demo``) runs.

The embedded default is a small LHC Olympics-like sample: Pythia8 QCD dijets with W' -> X(qq) Y(qq)
events injected on top, generated on first use into the cache and reused afterwards. On a
``distributed.LocalCluster`` the job computes the features, trains CATHODE and an autoencoder on all the
events (the "data"), exports them to ONNX, scores every event inline, sets each threshold at a background
efficiency measured in the mjj sidebands, and runs the bump hunt before and after the cut. It writes a
report folder (plots and ``summary.json``) and returns a short text summary.

CATHODE is cross-trained (5 folds by event identity, its default): every event is scored by the model that
was trained without it, so the cut cannot pick the events the classifier memorised. The bump hunt finds its
fit range above the turn-on of the spectrum before the cut and keeps it for the spectra after the cuts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hist
import numpy as np

from coffea_ad.errors import CoffeaADError
from coffea_ad.paths import cache_dir, write_json

__all__ = ["DEFAULT_SAMPLES", "run_demo", "text_histogram"]


#: process -> (events, seed): the embedded default. The W' events are injected on top of the QCD
#: background at S/B = 200 / 4000 overall, which is a few tens of percent in the 3.3-3.7 TeV window.
DEFAULT_SAMPLES: dict[str, tuple[int, int]] = {"qcd_dijet": (4000, 1), "wprime_xy": (200, 2)}
#: dataset name of each sample in the fileset, and its label in the plots.
DATASETS = {"qcd": "qcd_dijet", "wprime": "wprime_xy"}
LABELS = {"qcd": "QCD dijets", "wprime": "W' -> XY"}
#: The LHC Olympics features and signal region (GeV); the threshold is set in the sidebands of that window,
#: and the bump hunt runs on the |Delta eta_jj| < 1.3 events.
LHCO_FEATURES = ["mj_min", "delta_mj", "tau21_j1", "tau21_j2"]
SIGNAL_REGION = (3300.0, 3700.0)
CONTROL_REGION = "mjj3500_sb"
TARGET_EFFICIENCY = 0.05
FIT_REGION = "deta_sr"
MJJ_EDGES = np.arange(2000.0, 5001.0, 200.0)


def _finite(column) -> np.ndarray:
    import awkward as ak

    return ak.to_numpy(ak.drop_none(column)).astype(np.float64)


def text_histogram(stacks: dict[str, np.ndarray], edges: np.ndarray, width: int = 50, unit: str = "GeV") -> str:
    """A stacked histogram drawn with one character per sample (``#`` first, then ``+``, ``o``...)."""
    symbols = "#+o*"
    counts = {label: np.histogram(values, bins=edges)[0] for label, values in stacks.items()}
    total = np.sum(list(counts.values()), axis=0)
    scale = width / max(int(total.max()), 1)
    lines = []
    for i, (low, high) in enumerate(zip(edges[:-1], edges[1:])):
        bar = "".join(symbol * int(round(counts[label][i] * scale)) for symbol, label in zip(symbols, counts))
        numbers = " + ".join(str(counts[label][i]) for label in counts)
        lines.append(f"{low:6.0f}-{high:<6.0f}{unit} |{bar:<{width}}| {numbers}")
    legend = "   ".join(f"{symbol} {label}" for symbol, label in zip(symbols, counts))
    return "\n".join([*lines, f"{'':17}{legend}"])


def _region_histogram(result, dataset: str, name: str, region: str) -> hist.Hist:
    """The mjj histogram of ``region``; the bump hunt finds its fit range above the turn-on."""
    histogram = result.histograms[dataset][name]
    position = list(histogram.axes["region"].metadata).index(region)
    return histogram[{"region": hist.loc(position)}]


def _training_table(result) -> dict[str, np.ndarray]:
    """Every event, QCD and W' together: the "data" the methods see. The estimators drop (and count) the
    events without two fat jets; the event ids stay integers, since they assign each event its fold."""
    from coffea_ad.processing.tables import concatenate_tables

    return concatenate_tables(*result.tables.values())


def _train(table: dict[str, np.ndarray], folder: Path, epochs: int) -> tuple[dict[str, Path], dict[str, Any]]:
    """CATHODE (cross-trained, its default 5 folds) and an autoencoder on ``table``: the ONNX files, and
    CATHODE's closure (:func:`coffea_ad.workflow.train.resonant_closure`)."""
    from coffea_ad.models import CATHODE, AutoEncoder
    from coffea_ad.workflow.train import resonant_closure

    training = {"epochs": epochs, "progress": True}
    models = {
        "cathode": CATHODE(training=training, seed=1).fit(
            table, LHCO_FEATURES, signal_region=SIGNAL_REGION, mass="mjj"
        ),
        "autoencoder": AutoEncoder(training=training, seed=1).fit(
            table, LHCO_FEATURES
        ),
    }
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: model.export_onnx(folder / f"{name}.onnx") for name, model in models.items()}
    return paths, resonant_closure(models["cathode"], table)


def _flag(hunt) -> str:
    """What the text summary says about the windows whose background-only sideband fit is poor."""
    if not hunt.flagged:
        return ""
    verdict = "" if hunt.fit_ok else ": every window, so no discovery"
    return f" [{len(hunt.flagged)} of {len(hunt.windows)} windows flagged for a poor sideband fit{verdict}]"


def run_demo(output: str | Path | None = None, workers: int | None = None, *, epochs: int = 30) -> str:
    """The main job on the embedded default: features -> CATHODE and an autoencoder -> ONNX -> inline scores
    on a LocalCluster -> histograms -> bump hunt; writes a report folder and returns a text summary.

    The events of both samples form the "data" the methods train on; which sample an event came from is
    used only to evaluate them (ROC, SIC in the signal region) and to draw the mjj stacks.
    """
    from distributed import Client, LocalCluster

    from coffea_ad import plotting
    from coffea_ad.selection import metrics
    from coffea_ad.workflow.features import run_features
    from coffea_ad.generate import cached_sample, read_sample_metadata
    from coffea_ad.plotting import save_figure
    from coffea_ad.workflow.score import run_scoring
    from coffea_ad.stats import bump_hunt

    folder = Path(output) if output else cache_dir() / "demo"
    report = folder / "report"
    report.mkdir(parents=True, exist_ok=True)
    lines = [f"coffea_ad demo: LHC Olympics-like dijet search in {folder}"]
    summary: dict[str, Any] = {"events": {}, "models": {}}
    paths = {}
    for process, (n_events, seed) in DEFAULT_SAMPLES.items():
        paths[process] = cached_sample(folder, process, n_events, seed=seed, workers=workers)
        metadata = read_sample_metadata(paths[process])
        summary["events"][f"generated_{process}"] = metadata["n_events"]
        lines.append(
            f"  {process:10s} {metadata['n_events']:6d} events  sigma = {metadata['cross_section_pb']:.4g} "
            f"+- {metadata['cross_section_error_pb']:.2g} pb  ({metadata['n_tried']} tried)  {paths[process].name}"
        )
    fileset = {dataset: {"files": {str(paths[process]): "Events"}} for dataset, process in DATASETS.items()}
    with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster):
        address = cluster.scheduler_address
        features, _ = run_features(
            fileset, folder / "features", features=["lhco", "deta_jj"], scheduler=address, progress=True
        )
        table = _training_table(features)
        summary["events"]["with_two_fat_jets"] = int(np.isfinite(table["mjj"]).sum())
        models, closure = _train(table, folder / "models", epochs)
        summary["cathode_closure"] = closure
        scored, thresholds, _ = run_scoring(
            fileset, models, folder / "scored", control_region=CONTROL_REGION, target_efficiency=TARGET_EFFICIENCY,
            features=["deta_jj"], scheduler=address, progress=True,
        )

    in_window = {dataset: tab[_finite(tab.mjj3500_sr).astype(bool)] for dataset, tab in scored.tables.items()}
    rocs = {}
    for model in models:
        signal, background = (_finite(in_window[dataset][model]) for dataset in ("wprime", "qcd"))
        rocs[model] = metrics.roc_curve(signal, background)
        figure = plotting.plot_score_distributions({"QCD": background, "W'": signal}, xlabel=f"{model} score")
        save_figure(figure, report / f"scores_{model}.png")
    save_figure(plotting.plot_roc(rocs), report / "roc.png")
    save_figure(plotting.plot_sic(rocs), report / "sic.png")

    before = {dataset: _region_histogram(scored, dataset, "mjj", FIT_REGION) for dataset in DATASETS}
    hunt_before = bump_hunt(sum(before.values()))
    low, high = (hist.loc(edge) for edge in SIGNAL_REGION)
    window = {dataset: float(h[low:high].sum().value) for dataset, h in before.items()}
    summary["events"]["signal_region_before_cut"] = window
    summary["bump_hunt_before_cut"] = hunt_before.to_dict()
    save_figure(plotting.plot_bump_hunt_fit(hunt_before, sum(before.values())), report / "fit_before_cut.png")
    best = hunt_before.most_significant
    lines.append(
        f"  before any cut ({FIT_REGION}): {window['qcd']:.0f} QCD and {window['wprime']:.0f} W' events in "
        f"3.3-3.7 TeV; bump hunt on {hunt_before.fit_range.low:.0f}-{hunt_before.fit_range.high:.0f} GeV: "
        f"local Z = {best.significance.z:.2f} at {best.centre:.0f} GeV{_flag(hunt_before)}"
    )
    flat, template = closure["sideband_flatness"], closure["sideband_template_auc"]
    flatness = "" if flat is None else (
        f"flatness of a {flat['efficiency']:.0%} cut in mjj p = {flat['sideband_sculpting']['p_value']:.2f}, "
    )
    lines.append(
        "  cathode: cross-trained in 5 folds (each event scored by the model that did not see it); closure in "
        f"the sidebands: {flatness}template vs data AUC {template['auc']:.3f} "
        f"(0.5 +- {template['statistical_spread']:.3f} if closed)"
        + "".join(f"\n    warning: {warning}" for warning in closure["warnings"])
    )
    for model in models:
        after = {dataset: _region_histogram(scored, dataset, f"mjj_{model}_pass", FIT_REGION) for dataset in DATASETS}
        kept = {dataset: float(h.sum().value) for dataset, h in after.items()}
        summary["models"][model] = {
            "threshold": thresholds[model]["threshold"],
            "control_region_efficiency": thresholds[model]["control_region_efficiency"],
            "auc_signal_region": metrics.auc(rocs[model]),
            "max_sic_signal_region": metrics.max_sic(rocs[model]),
            "events_after_cut": kept,
        }
        figure = plotting.plot_mass_spectra(
            {LABELS[name]: h for name, h in before.items()},
            {LABELS[name]: h for name, h in after.items()},
            cut=f"{model} cut",
            xlim=(hunt_before.fit_range.low, 6000),
        )
        save_figure(figure, report / f"mjj_{model}.png")
        line = (
            f"  {model}: AUC {metrics.auc(rocs[model]):.3f}, max SIC {metrics.max_sic(rocs[model]):.2f} in 3.3-3.7 "
            f"TeV; the cut keeps {thresholds[model]['control_region_efficiency']:.3f} of the sidebands and "
            f"{kept['qcd']:.0f} QCD + {kept['wprime']:.0f} W' events"
        )
        try:
            # the turn-on is a property of the selection before the cut: the cut spectrum is fitted on the same range
            hunt = bump_hunt(sum(after.values()), mjj_min=hunt_before.fit_range.low)
        except CoffeaADError as error:
            summary["models"][model]["bump_hunt_after_cut"] = {"error": str(error)}
            lines.append(f"{line}; no bump hunt: {error}")
            continue
        best = hunt.most_significant
        summary["models"][model]["bump_hunt_after_cut"] = hunt.to_dict()
        save_figure(plotting.plot_bump_hunt_fit(hunt, sum(after.values())), report / f"fit_{model}.png")
        lines.append(
            f"{line}; bump hunt: local Z = {best.significance.z:.2f} at {best.centre:.0f} GeV "
            f"(global Z = {hunt.global_z:.2f}){_flag(hunt)}"
        )
    write_json(report / "summary.json", summary)
    lines.append(f"  report: {report} (summary.json, roc.png, sic.png, scores_*, mjj_*, fit_*.png)")
    mjj = {LABELS[dataset]: _finite(features.tables[dataset].mjj) for dataset in DATASETS}
    lines.append(text_histogram(mjj, MJJ_EDGES))
    return "\n".join(lines)
