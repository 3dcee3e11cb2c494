"""Non-resonant search with context variables HT and MET: Reweight, Generate and Morph compared.

"Simulation" is Pythia8 QCD dijets with the Monash tune (``qcd_dijet``); "data" is the same QCD with the
ATLAS A14 tune (``qcd_dijet_alt``: another shower and underlying event) and a documented mismodelling on top
(:data:`DATA_MISMODELLING`: final-state radiation with αS(mZ) = 0.115 instead of the tune's 0.127, and a jet
energy scale 3 % above the simulation's, about twice a typical JES uncertainty at these pT), plus
semi-visible jets from a Z' -> dark quarks (``semivisible``, large MET) injected on top. The two tunes alone
hardly differ in these features (the raw simulation closed at AUC 0.51 in the control region): the
mismodelling gives the corrections something to correct. The context variables HT and MET split the
events (HT above a trigger-like threshold) into a signal region (SR: high HT and high MET) and a control
region (CR: the rest). Each method builds a background template of the SR features (mjj and the
N-subjettiness ratios of both jets) from what it learns in the CR, and a classifier of SR data vs that
template is the anomaly score (CWoLa):

* no correction: the raw simulation is the template (fails if the tunes differ);
* Reweight: a CR classifier data vs simulation on (features, HT, MET) reweights the SR simulation;
* Generate: a flow p(features | HT, MET) trained on CR data is sampled at the SR contexts;
* Morph: a flow on simulation and a second flow, trained on CR data, that moves simulation onto data.

The example measures the closure of every template against the true background of the data (the A14
events; a classifier AUC of template vs truth near 0.5, :func:`coffea_ad.models.closure.classifier_closure_auc`,
and a χ² per feature) in the CR and in the SR, and
the sensitivity (ROC, max SIC) of every data-vs-template classifier on SR data events held out from the
training. The truth (which sample an event came from) is used only for these evaluations.

    python examples/nonresonant_reweight_generate_morph.py [-o FOLDER] [--epochs N] [--n-data N] ...

References:
    Bai, Mastandrea, Nachman, "Non-resonant Anomaly Detection with Background Extrapolation", arXiv:2311.12924.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from coffea_ad.errors import ConfigurationError
from coffea_ad.paths import cache_dir, write_json

NAME = "nonresonant_reweight_generate_morph"
#: Features of the SR classifier (the paper: mjj and N-subjettiness) and the context variables.
FEATURES = ["mjj", "tau21_j1", "tau21_j2", "tau32_j1", "tau32_j2"]
CONTEXT = ["ht", "met"]
#: How "data" differs from the simulation beyond the A14 tune: less final-state radiation (narrower jets, lower
#: τ21) and a jet energy scale 3 % high (mjj, HT and the jet masses shift, MET follows the jets).
DATA_MISMODELLING = {"TimeShower:alphaSvalue": 0.115, "jet_energy_scale": 1.03}
METHODS = ("none", "reweight", "generate", "morph")
LABELS = {"none": "No correction", "reweight": "Reweight", "generate": "Generate", "morph": "Morph"}
AXIS_LABELS = {
    "mjj": r"$m_{jj}$ [GeV]",
    "tau21_j1": r"$\tau_{21}^{j1}$",
    "tau21_j2": r"$\tau_{21}^{j2}$",
    "tau32_j1": r"$\tau_{32}^{j1}$",
    "tau32_j2": r"$\tau_{32}^{j2}$",
    "ht": r"$H_T$ [GeV]",
    "met": r"$E_T^{miss}$ [GeV]",
}
BINS = {
    "mjj": np.linspace(2000.0, 6000.0, 21),
    "tau21_j1": np.linspace(0.0, 1.2, 21),
    "tau21_j2": np.linspace(0.0, 1.2, 21),
    "tau32_j1": np.linspace(0.2, 1.1, 19),
    "tau32_j2": np.linspace(0.2, 1.1, 19),
    "ht": np.linspace(2500.0, 5000.0, 21),
    "met": np.linspace(0.0, 800.0, 21),
}

log = logging.getLogger(NAME)


def read_events(path: str | Path, ht_preselection: float, ht_min: float, met_min: float) -> dict[str, np.ndarray]:
    """Features, context and the ``signal_region`` flag of the events of a NanoAOD file that have two fat jets
    and HT >= ``ht_preselection``; the SR is :func:`coffea_ad.features.regions.context_split` (HT >= ``ht_min`` and
    MET >= ``met_min``)."""
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    from coffea_ad.features import compute_features
    from coffea_ad.features.regions import context_split

    events = NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=NanoAODSchema, mode="eager").events()
    features = compute_features(events, [*FEATURES, *CONTEXT])
    keep = features.ht >= ht_preselection
    for name in FEATURES:
        keep = keep & ~ak.is_none(features[name])
    features = features[keep]
    table = {name: ak.to_numpy(ak.drop_none(features[name])).astype(np.float64) for name in (*FEATURES, *CONTEXT)}
    table["signal_region"] = ak.to_numpy(context_split(features.ht, features.met, ht_min, met_min)["sr"])
    return table


def _concat(tables: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([table[name] for table in tables]) for name in tables[0]}


def _take(table: Mapping[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    return {name: values[rows] for name, values in table.items()}


def _matrix(table: Mapping[str, np.ndarray], names: Sequence[str]) -> np.ndarray:
    return np.stack([table[name] for name in names], axis=1).astype(np.float32)


def train_methods(
    train: Mapping[str, np.ndarray], simulation: Mapping[str, np.ndarray], *, epochs: int, seed: int, progress: bool
) -> dict[str, Any]:
    """Fit the four data-vs-template classifiers: raw simulation (``none``), Reweight, Generate and Morph."""
    from coffea_ad.models import Generate, Morph, Reweight, Supervised

    training = {"epochs": epochs, "patience": 5, "keep_best": 3, "progress": progress}
    flow_training = {"epochs": epochs, "patience": 5, "progress": progress}
    flow = {"transforms": 4, "flow_hidden": (64, 64), "feature_transforms": {"mjj": "log"}}
    # folds=1: one model each, evaluated on the separate test events and used for its background template
    classifier = {"hidden": (64, 64), "training": training, "seed": seed, "folds": 1}
    with_flow = {**classifier, **flow, "training": {"flow": flow_training, "classifier": training}}
    data_sr = {name: train[name][train["signal_region"]] for name in FEATURES}
    sim_sr = {name: simulation[name][simulation["signal_region"]] for name in FEATURES}
    raw = _concat([{**data_sr, "is_data": np.ones(len(data_sr["mjj"]))},
                   {**sim_sr, "is_data": np.zeros(len(sim_sr["mjj"]))}])
    region = {"signal_flag": "signal_region", "context": CONTEXT}
    models = {}
    steps = [
        ("none", lambda: Supervised(**classifier).fit(raw, FEATURES, label="is_data")),
        ("reweight", lambda: Reweight(**classifier).fit(train, FEATURES, simulation=simulation, **region)),
        ("generate", lambda: Generate(**with_flow, oversampling=4).fit(train, FEATURES, **region)),
        ("morph", lambda: Morph(**with_flow).fit(
            train, FEATURES, simulation=simulation, **region)),
    ]
    for method, fit in steps:
        start = time.perf_counter()
        models[method] = fit()
        log.info("%s trained in %.0f s", method, time.perf_counter() - start)
    return models


def background_template(
    method: str, model: Any, simulation: Mapping[str, np.ndarray], contexts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The background template ``(features, weights)`` a method predicts in one region.

    ``simulation`` holds the simulated events of the region; ``contexts`` the (HT, MET) of the true
    background events there, at which Generate samples its flow (one sample per event). ``none`` is the
    raw simulation; the estimators give their own template (``background_template``).
    """
    if method == "none":
        x_sim = _matrix(simulation, FEATURES)
        return x_sim, np.ones(len(x_sim))
    if method not in METHODS:
        raise ConfigurationError(f"unknown method {method!r}; valid ones: {', '.join(METHODS)}")
    return model.background_template(simulation, contexts)


def feature_chi2(template: np.ndarray, weights: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """χ²/ndf of the shape of each feature, template vs truth (:func:`coffea_ad.stats.shape_chi2`)."""
    import hist

    from coffea_ad.stats import shape_chi2

    result = {}
    for column, name in enumerate(FEATURES):
        axis = hist.axis.Variable(BINS[name])
        h_template = hist.Hist(axis, storage=hist.storage.Weight()).fill(template[:, column], weight=weights)
        h_truth = hist.Hist(axis, storage=hist.storage.Weight()).fill(truth[:, column])
        result[name] = shape_chi2(h_truth, h_template).chi2_per_ndf
    return result


def run(
    output: str | Path | None = None,
    *,
    n_simulation: int = 15000,
    n_data: int = 15000,
    n_signal: int = 1500,
    mass_zprime: float = 5000.0,
    ht_preselection: float = 2500.0,
    ht_min: float = 2800.0,
    met_min: float = 150.0,
    epochs: int = 40,
    seed: int = 1,
    workers: int = 1,
    progress: bool = True,
    sample_files: Mapping[str, str | Path] | None = None,
    data_mismodelling: Mapping[str, float] | None = DATA_MISMODELLING,
) -> dict[str, Any]:
    """Generate (or reuse) the samples, train the four methods, measure closure and sensitivity, write the
    plots and ``summary.json`` into ``output``; return the summary.

    ``data_mismodelling``: the generation settings of the data background beyond the A14 tune (None: the tune
    alone).

    ``sample_files`` (``{"simulation": ..., "data_background": ..., "signal": ...}``) replaces the generated
    samples by existing NanoAOD files; the ``n_*`` and ``mass_zprime`` arguments are then not used.
    """
    from coffea_ad import plotting
    from coffea_ad.generate import cached_sample
    from coffea_ad.models.closure import classifier_closure_auc
    from coffea_ad.selection import metrics

    for name, value in {"n_simulation": n_simulation, "n_data": n_data, "n_signal": n_signal, "epochs": epochs}.items():
        if value < 1:
            raise ConfigurationError(f"{name} must be a positive integer, got {value}")
    if not ht_min >= ht_preselection:
        raise ConfigurationError(f"ht_min ({ht_min:g} GeV) must not be below ht_preselection ({ht_preselection:g} GeV)")
    start = time.perf_counter()
    folder = Path(output) if output else cache_dir() / "examples" / NAME
    folder.mkdir(parents=True, exist_ok=True)
    samples = {
        "simulation": ("qcd_dijet", n_simulation, seed * 10 + 1, None),
        "data_background": ("qcd_dijet_alt", n_data, seed * 10 + 2, dict(data_mismodelling or {}) or None),
        "signal": ("semivisible", n_signal, seed * 10 + 3, {"mass_zprime": mass_zprime}),
    }
    tables = {}
    if sample_files is not None and set(sample_files) != set(samples):
        raise ConfigurationError(f"sample_files must name exactly {sorted(samples)}, got {sorted(sample_files)}")
    for key, (process, n_events, sample_seed, settings) in samples.items():
        if sample_files is None:
            path = cached_sample(folder, process, n_events, seed=sample_seed, settings=settings, workers=workers,
                                 progress=progress)
        else:
            path = Path(sample_files[key])
        tables[key] = read_events(path, ht_preselection, ht_min, met_min)
    generated = time.perf_counter()
    simulation = tables["simulation"]
    data = _concat([
        {**tables["data_background"], "is_signal": np.zeros(len(tables["data_background"]["mjj"]), bool)},
        {**tables["signal"], "is_signal": np.ones(len(tables["signal"]["mjj"]), bool)},
    ])
    # Half of the SR data (chosen at random) is held out: the classifiers are evaluated on events they never saw.
    held_out = data["signal_region"] & (np.random.default_rng(seed).random(len(data["mjj"])) < 0.5)
    train, test = _take(data, ~held_out), _take(data, held_out)
    counts = {
        "simulation": {"cr": int((~simulation["signal_region"]).sum()), "sr": int(simulation["signal_region"].sum())},
        "data_background": {r: int(((data["signal_region"] == (r == "sr")) & ~data["is_signal"]).sum())
                            for r in ("cr", "sr")},
        "data_signal": {r: int(((data["signal_region"] == (r == "sr")) & data["is_signal"]).sum())
                        for r in ("cr", "sr")},
        "sr_held_out": {"background": int((~test["is_signal"]).sum()), "signal": int(test["is_signal"].sum())},
    }
    if min(counts["sr_held_out"].values()) == 0 or min(counts["data_background"].values()) == 0:
        raise ConfigurationError(f"too few events for the search (per region: {counts}); generate more events")

    models = train_methods(train, simulation, epochs=epochs, seed=seed, progress=progress)
    trained = time.perf_counter()

    summary: dict[str, Any] = {
        "settings": {
            "n_simulation": n_simulation, "n_data": n_data, "n_signal": n_signal, "mass_zprime": mass_zprime,
            "ht_preselection": ht_preselection, "ht_min": ht_min, "met_min": met_min, "epochs": epochs, "seed": seed,
            "features": FEATURES, "context": CONTEXT,
            "data_mismodelling": dict(data_mismodelling or {}) if sample_files is None else "sample_files",
        },
        "events": counts,
        "signal_over_background_sr": counts["data_signal"]["sr"] / counts["data_background"]["sr"],
        "methods": {},
    }
    background = _take(data, ~data["is_signal"])
    rocs = {}
    closure_plots = {}
    for region_name, in_sr in (("cr", False), ("sr", True)):
        truth_rows = background["signal_region"] == in_sr
        truth = _matrix(_take(background, truth_rows), FEATURES)
        contexts = _matrix(_take(background, truth_rows), CONTEXT)
        sim_region = _take(simulation, simulation["signal_region"] == in_sr)
        closure_plots[region_name] = {"Data background (A14)": (truth, np.ones(len(truth)))}
        for method in METHODS:
            template, weights = background_template(method, models[method], sim_region, contexts)
            closure_plots[region_name][LABELS[method]] = (template, weights)
            result = summary["methods"].setdefault(method, {})
            result[f"closure_auc_{region_name}"] = classifier_closure_auc(
                template, truth, template_weights=weights, seed=seed
            )
            result[f"chi2_per_ndf_{region_name}"] = feature_chi2(template, weights, truth)
    for method, model in models.items():
        scores = model.score(test)
        rocs[LABELS[method]] = roc = metrics.roc_curve(scores[test["is_signal"]], scores[~test["is_signal"]])
        summary["methods"][method].update({"auc_sr": metrics.auc(roc), "max_sic_sr": metrics.max_sic(roc)})

    figure = plotting.plot_feature_distributions(
        {
            "Data (A14 + signal)": (_matrix(_take(data, ~data["signal_region"]), [*FEATURES, *CONTEXT]), None),
            "Simulation (Monash)": (_matrix(_take(simulation, ~simulation["signal_region"]), [*FEATURES, *CONTEXT]),
                                    None),
        },
        [*FEATURES, *CONTEXT], BINS, axis_labels=AXIS_LABELS, title="Control region",
    )
    plotting.save_figure(figure, folder / "features_sim_vs_data_cr.png")
    for region_name, title in (("cr", "Control region"), ("sr", "Signal region")):
        figure = plotting.plot_feature_distributions(
            closure_plots[region_name], FEATURES, BINS, axis_labels=AXIS_LABELS, title=title
        )
        plotting.save_figure(figure, folder / f"closure_{region_name}.png")
    plotting.save_figure(plotting.plot_roc(rocs), folder / "roc_sr.png")
    plotting.save_figure(plotting.plot_sic(rocs), folder / "sic_sr.png")
    summary["seconds"] = {
        "samples": generated - start, "training": trained - generated, "total": time.perf_counter() - start
    }
    write_json(folder / "summary.json", summary)
    summary["folder"] = str(folder)
    return summary


def describe(summary: Mapping[str, Any]) -> str:
    """A short text summary of :func:`run`'s result."""
    events = summary["events"]
    lines = [
        f"Non-resonant search, SR = HT >= {summary['settings']['ht_min']:g} GeV and MET >= "
        f"{summary['settings']['met_min']:g} GeV; data background CR/SR {events['data_background']['cr']}/"
        f"{events['data_background']['sr']}, signal CR/SR {events['data_signal']['cr']}/{events['data_signal']['sr']} "
        f"(S/B in SR {summary['signal_over_background_sr']:.2f}); evaluated on {events['sr_held_out']['background']} "
        f"background + {events['sr_held_out']['signal']} signal held-out SR events",
        f"{'method':14s} {'closure AUC CR':>14s} {'closure AUC SR':>14s} {'max chi2/ndf SR':>15s} "
        f"{'AUC SR':>7s} {'max SIC SR':>10s}",
    ]
    for method, result in summary["methods"].items():
        lines.append(
            f"{LABELS[method]:14s} {result['closure_auc_cr']:14.3f} {result['closure_auc_sr']:14.3f} "
            f"{max(result['chi2_per_ndf_sr'].values()):15.2f} {result['auc_sr']:7.3f} {result['max_sic_sr']:10.2f}"
        )
    seconds = summary["seconds"]
    lines.append(
        f"{seconds['total']:.0f} s (samples {seconds['samples']:.0f} s, training {seconds['training']:.0f} s); "
        f"plots and summary.json in {summary['folder']}"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: parse the options, run the example, print the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", help=f"output folder (default: {cache_dir() / 'examples' / NAME})")
    parser.add_argument("--n-simulation", type=int, default=15000, help="qcd_dijet (Monash) events (simulation)")
    parser.add_argument("--n-data", type=int, default=15000, help="qcd_dijet_alt (A14) events (data background)")
    parser.add_argument("--n-signal", type=int, default=1500, help="semi-visible Z' events injected into the data")
    parser.add_argument("--mass-zprime", type=float, default=5000.0, help="Z' mass of the signal [GeV]")
    parser.add_argument("--ht-preselection", type=float, default=2500.0, help="events need HT above this [GeV]")
    parser.add_argument("--ht-min", type=float, default=2800.0, help="signal region: HT above this [GeV]")
    parser.add_argument("--met-min", type=float, default=150.0, help="signal region: MET above this [GeV]")
    parser.add_argument("--epochs", type=int, default=40, help="maximum epochs of every flow and classifier")
    parser.add_argument("--seed", type=int, default=1, help="seed of the samples, the split and the training")
    parser.add_argument("-j", "--workers", type=int, default=1, help="generation worker processes")
    parser.add_argument("--fsr-alphas", type=float, default=DATA_MISMODELLING["TimeShower:alphaSvalue"],
                        help="final-state radiation alpha_s(mZ) of the data (the A14 tune's own: 0.127)")
    parser.add_argument("--jet-energy-scale", type=float, default=DATA_MISMODELLING["jet_energy_scale"],
                        help="jet energy scale of the data relative to the simulation (1: none)")
    parser.add_argument("--tunes-only", action="store_true",
                        help="data = the A14 tune without the FSR and JES mismodelling")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    import torch

    torch.set_num_threads(1)
    summary = run(
        args.output, n_simulation=args.n_simulation, n_data=args.n_data, n_signal=args.n_signal,
        mass_zprime=args.mass_zprime, ht_preselection=args.ht_preselection, ht_min=args.ht_min,
        met_min=args.met_min, epochs=args.epochs, seed=args.seed, workers=args.workers,
        data_mismodelling=None if args.tunes_only else {"TimeShower:alphaSvalue": args.fsr_alphas,
                                                         "jet_energy_scale": args.jet_energy_scale},
    )
    print(describe(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
