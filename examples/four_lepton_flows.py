"""Four-lepton search with normalizing flows and CLs limits.

A model-independent search in events with at least four tight leptons (e, μ), after the ATLAS study of
normalising flows in ≥ 4-lepton events: one RealNVP flow per lepton-flavour region (4e, 2e2μ, 4μ) is
trained on simulated SM ZZ → 4ℓ only; the anomaly score is −log p of an event under its region's flow;
the score distribution of every region is the fitted variable (one pyhf channel per region) for 95 % CLs
upper limits on the signal strength μ of a doubly-charged Higgs, H++H−− → 4ℓ. The ZZ sample is split in
two halves: the flows learn from the first; the second is the expected background of the fit. The same
fit on the four-lepton mass alone is the baseline.

    python examples/four_lepton_flows.py [-o FOLDER] [--zz-events 30000] [--hpp-events 3000] [--epochs 60]

Writes into FOLDER (default: the cache, ``examples/four_lepton_flows``) the samples, the flows as ONNX,
``workspace_flow.json``, ``workspace_m4l.json``, the plots (``scores_REGION.png``, ``roc_REGION.png``,
``cls_flow.png``, ``cls_m4l.png``, ``limits.png``) and ``summary.json``.

References:
    J. Harrison (ATLAS), "Anomaly detection with not-so-dense(ity) estimators at ATLAS": RealNVP flows per
    ≥ 4-lepton region trained on background simulation, the score as the fitted variable.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from pathlib import Path
from typing import Any

import hist
import numpy as np

from coffea_ad.errors import ConfigurationError
from coffea_ad.generate import cached_sample, read_sample_metadata
from coffea_ad.paths import cache_dir, write_json

#: Flavour regions of the ``leptons`` partition of :mod:`coffea_ad.features.regions` that ZZ → 4ℓ populates. The
#: mixed-flavour ones (3e1μ, 1e3μ) hold H++ → e±μ± events but no ZZ event: a flow cannot be trained there.
REGIONS = ("4e", "2e2mu", "4mu")
#: Flow inputs: the four-lepton mass and the four lepton pTs (log-transformed inside the flow).
FLOW_FEATURES = ["m4l", "lep1_pt", "lep2_pt", "lep3_pt", "lep4_pt"]
#: The lepton selection of the CMS H → ZZ → 4ℓ analyses (electrons pT > 7 GeV, muons pT > 5 GeV) with the loose
#: electron ID: the four-lepton acceptance matters more here than fake rejection (there are no fakes in ZZ).
LEPTON_SELECTION = {"electron_pt_min": 7.0, "electron_cut_based_min": 2, "muon_pt_min": 5.0}
#: Fewer ZZ training events than this in a region stop the run (raise the ZZ sample size).
MIN_TRAINING_EVENTS = 10
#: Relative uncertainty of the ZZ normalisation (a normsys in every channel).
ZZ_NORMALISATION_UNCERTAINTY = 0.10
LABELS = {"zz": r"ZZ $\to 4\ell$", "hpp": r"$H^{\pm\pm}H^{\mp\mp} \to 4\ell$"}


def _region_tables(path: Path, weight: float) -> dict[str, dict[str, np.ndarray]]:
    """The flow inputs and per-event weights of the events of each flavour region of ``REGIONS``."""
    import awkward as ak
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    from coffea_ad.features import FeatureConfig, compute_features
    from coffea_ad.features.regions import lepton_flavour_split

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # coffea: cross-references absent from generated files
        events = NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=NanoAODSchema, mode="eager").events()
    config = FeatureConfig(**LEPTON_SELECTION)
    features = compute_features(events, [*FLOW_FEATURES, "n_leptons", "flavour_4l"], config=config)
    masks = lepton_flavour_split(features.n_leptons, features.flavour_4l)
    tables = {}
    for region in REGIONS:
        mask = ak.to_numpy(ak.fill_none(masks[region], False))
        table = {name: ak.to_numpy(features[name][mask]).astype(np.float64) for name in FLOW_FEATURES}
        table["weight"] = np.full(int(mask.sum()), weight)
        tables[region] = table
    return tables


def _split_half(table: dict[str, np.ndarray], seed: int) -> tuple[dict, dict]:
    """Two random halves of a table: (training, expected background); the second keeps its lumi weights ×2."""
    n = len(table["weight"])
    order = np.random.default_rng(seed).permutation(n)
    first, second = order[: n // 2], order[n // 2 :]
    train = {name: column[first] for name, column in table.items()}
    test = {name: column[second] for name, column in table.items()}
    test["weight"] = test["weight"] * n / max(len(second), 1)
    return train, test


def _histogram(values: np.ndarray, weights: np.ndarray, edges: np.ndarray, label: str) -> hist.Hist:
    histogram = hist.Hist(hist.axis.Variable(edges, name="x", label=label), storage=hist.storage.Weight())
    return histogram.fill(np.clip(values, edges[0], np.nextafter(edges[-1], -np.inf)), weight=weights)


def _fit(variable: dict[str, dict[str, np.ndarray]], background: dict, signal: dict, min_entries: int,
         label: str) -> tuple[Any, dict]:
    """The workspace with one channel per region (signal × mu, ZZ with staterror and a normsys, data = the
    expected background), and its 95 % CLs limit; ``variable[kind][region]`` are the fitted values."""
    from coffea_ad import stats
    from coffea_ad.selection import background_efficiency_edges

    channels, edges = [], {}
    for region in REGIONS:
        bkg, sig = variable["zz"][region], variable["hpp"][region]
        edges[region] = background_efficiency_edges(
            bkg, min_entries=min_entries, high=float(sig.max()) if sig.size else None
        )
        h_bkg = _histogram(bkg, background[region]["weight"], edges[region], label)
        h_sig = _histogram(sig, signal[region]["weight"], edges[region], label)
        channels.append(
            stats.channel_spec(
                region, {"zz": h_bkg}, signal=h_sig, data=h_bkg.values(), signal_name="hpp",
                systematics={"zz": [{"type": "normsys", "name": "zz_norm", "lo": 1 - ZZ_NORMALISATION_UNCERTAINTY,
                                     "hi": 1 + ZZ_NORMALISATION_UNCERTAINTY}]},
            )
        )
    workspace = stats.build_workspace(stats.fit_spec(channels))
    model = workspace.model()
    data = workspace.data(model)
    return workspace, {
        "limit": stats.upper_limit(model, data),
        "significance": stats.model_significance(model, stats.asimov_data(model, mu=1.0)),
        "edges": edges,
    }


def run_four_lepton_search(
    output: str | Path | None = None,
    *,
    zz_events: int = 30_000,
    hpp_events: int = 3_000,
    luminosity_fb: float = 140.0,
    epochs: int = 60,
    transforms: int = 4,
    hidden: tuple[int, ...] = (32, 32),
    min_entries: int = 10,
    seed: int = 1,
    workers: int | None = 1,
    progress: bool = True,
) -> tuple[dict, str]:
    """Generate (or reuse) the samples, train one flow per flavour region, fit the scores; return
    ``(summary, text)`` and write the plots, the workspaces and ``summary.json`` into ``output``."""
    from coffea_ad import plotting, stats
    from coffea_ad.selection import metrics
    from coffea_ad.onnx.export import score_onnx
    from coffea_ad.models import RealNVP

    for name, value in {"zz_events": zz_events, "hpp_events": hpp_events, "epochs": epochs,
                        "min_entries": min_entries}.items():
        if value < 1:
            raise ConfigurationError(f"{name} must be positive, got {value}")
    if luminosity_fb <= 0:
        raise ConfigurationError(f"luminosity_fb must be positive, got {luminosity_fb}")
    start = time.perf_counter()
    folder = Path(output) if output else cache_dir() / "examples" / "four_lepton_flows"
    (folder / "models").mkdir(parents=True, exist_ok=True)
    lines = [f"Four-lepton search with normalizing flows in {folder}"]
    summary: dict[str, Any] = {"luminosity_fb": luminosity_fb, "samples": {}, "regions": {}}
    tables = {}
    for kind, process, n_events, sample_seed in (("zz", "zz4l", zz_events, seed), ("hpp", "hpp4l", hpp_events,
                                                                                     seed + 1)):
        path = cached_sample(folder, process, n_events, seed=sample_seed, workers=workers)
        metadata = read_sample_metadata(path)
        sigma_fb = 1000.0 * metadata["cross_section_pb"]
        tables[kind] = _region_tables(path, sigma_fb * luminosity_fb / metadata["n_events"])
        summary["samples"][kind] = {"process": process, "events": metadata["n_events"], "cross_section_fb": sigma_fb,
                                    "file": path.name}
        lines.append(f"  {process:6s} {metadata['n_events']:6d} events, sigma = {sigma_fb:.4g} fb, "
                     f"{sigma_fb * luminosity_fb:.1f} events in {luminosity_fb:g} fb^-1")
    generated = time.perf_counter()

    training = {"epochs": epochs, "batch_size": 128, "patience": 10, "progress": progress}
    signal = tables["hpp"]
    background, scores, m4l = {}, {"zz": {}, "hpp": {}}, {"zz": {}, "hpp": {}}
    rocs = {}
    for region in REGIONS:
        train, background[region] = _split_half(tables["zz"][region], seed)
        if len(train["weight"]) < MIN_TRAINING_EVENTS:
            raise ConfigurationError(
                f"only {len(train['weight'])} ZZ training events in region {region}: raise zz_events"
            )
        flow = RealNVP(transforms=transforms, hidden=hidden, feature_transforms=dict.fromkeys(FLOW_FEATURES, "log"),
                       training=training, seed=seed).fit(train, FLOW_FEATURES)
        onnx_path = flow.export_onnx(folder / "models" / f"flow_{region}.onnx")
        for kind, table in (("zz", background[region]), ("hpp", signal[region])):
            scores[kind][region] = score_onnx(onnx_path, np.stack([table[f] for f in FLOW_FEATURES], axis=1))
            m4l[kind][region] = table["m4l"]
        rocs[region] = {
            name: metrics.roc_curve(values["hpp"][region], values["zz"][region])
            for name, values in (("flow", scores), ("m4l", m4l))
        }
        summary["regions"][region] = {
            "zz_training_events": len(train["weight"]),
            "zz_background_events": len(background[region]["weight"]),
            "hpp_events": len(signal[region]["weight"]),
            "zz_expected": float(background[region]["weight"].sum()),
            "hpp_expected": float(signal[region]["weight"].sum()),
            "auc_flow": metrics.auc(rocs[region]["flow"]),
            "auc_m4l": metrics.auc(rocs[region]["m4l"]),
            "best_validation_nll": flow.history_["flow"]["best_validation_loss"],
        }
    trained = time.perf_counter()

    fits = {}
    for name, variable, label in (("flow", scores, r"flow score $-\log p$"), ("m4l", m4l, r"$m_{4\ell}$ [GeV]")):
        workspace, fits[name] = _fit(variable, background, signal, min_entries, label)
        stats.write_workspace(workspace, folder / f"workspace_{name}.json")
        plotting.save_figure(plotting.plot_cls_scan(fits[name]["limit"]), folder / f"cls_{name}.png")
    figure = plotting.plot_limits(
        {name: fit["limit"] for name, fit in fits.items()},
        xlabel=r"95 % CL$_s$ upper limit on $\mu$ ($H^{\pm\pm}H^{\mp\mp}$, $m = 500$ GeV)",
        observed_label="observed (background-only Asimov)",
    )
    plotting.save_figure(figure, folder / "limits.png")
    for region in REGIONS:
        edges = fits["flow"]["edges"][region]
        figure = plotting.plot_score_distributions(
            {LABELS["zz"]: scores["zz"][region], LABELS["hpp"]: scores["hpp"][region]},
            weights={LABELS["zz"]: background[region]["weight"], LABELS["hpp"]: signal[region]["weight"]},
            bins=np.linspace(edges[0], edges[-1], 50), xlabel=rf"flow score $-\log p$, {region}",
        )
        plotting.save_figure(figure, folder / f"scores_{region}.png")
        plotting.save_figure(plotting.plot_roc({f"{region} {name}": roc for name, roc in rocs[region].items()}),
                    folder / f"roc_{region}.png")
    fitted = time.perf_counter()

    summary["mixed_flavour_hpp_fraction"] = 1.0 - sum(len(signal[r]["weight"]) for r in REGIONS) / hpp_events
    summary["limits"] = {
        name: {
            "observed": fit["limit"].observed,
            "expected": dict(zip(("-2sigma", "-1sigma", "median", "+1sigma", "+2sigma"), fit["limit"].expected)),
            "expected_z_at_mu_1": fit["significance"].expected_z,
            "bins": {region: len(edges) - 1 for region, edges in fit["edges"].items()},
        }
        for name, fit in fits.items()
    }
    summary["seconds"] = {"samples": generated - start, "training": trained - generated, "fits": fitted - trained,
                          "total": fitted - start}
    for region, numbers in summary["regions"].items():
        lines.append(
            f"  {region:6s} ZZ {numbers['zz_training_events']:5d} train / {numbers['zz_background_events']:5d} fit "
            f"({numbers['zz_expected']:7.1f} expected), H++ {numbers['hpp_events']:4d} ({numbers['hpp_expected']:6.1f} "
            f"expected); AUC flow {numbers['auc_flow']:.3f}, m4l {numbers['auc_m4l']:.3f}"
        )
    lines.append(f"  H++ events in mixed-flavour or < 4-lepton events (not fitted): "
                 f"{summary['mixed_flavour_hpp_fraction']:.1%}")
    for name, numbers in summary["limits"].items():
        expected = numbers["expected"]
        lines.append(
            f"  95% CLs limit on mu, {name:4s}: observed {numbers['observed']:.4f}, expected {expected['median']:.4f} "
            f"(+1s {expected['+1sigma']:.4f}, -1s {expected['-1sigma']:.4f}, +2s {expected['+2sigma']:.4f}, "
            f"-2s {expected['-2sigma']:.4f}); expected Z(mu=1) = {numbers['expected_z_at_mu_1']:.2f}"
        )
    lines.append(f"  {summary['seconds']['total']:.0f} s (samples {summary['seconds']['samples']:.0f} s, training "
                 f"{summary['seconds']['training']:.0f} s, fits and plots {summary['seconds']['fits']:.0f} s); "
                 f"plots and summary.json in {folder}")
    write_json(folder / "summary.json", summary)
    return summary, "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: parse ``argv``, run the search, print the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", help="folder for samples, models, plots (default: the cache)")
    parser.add_argument("--zz-events", type=int, default=30_000, help="ZZ -> 4l events to generate (30000)")
    parser.add_argument("--hpp-events", type=int, default=3_000, help="H++H-- -> 4l events to generate (3000)")
    parser.add_argument("--luminosity", type=float, default=140.0, help="integrated luminosity in fb^-1 (140)")
    parser.add_argument("--epochs", type=int, default=60, help="maximum training epochs of each flow (60)")
    parser.add_argument("--min-entries", type=int, default=10, help="ZZ entries per fitted bin, at least (10)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the ZZ sample, the split and the flows (1)")
    parser.add_argument("-j", "--workers", type=int, default=1, help="generation worker processes (1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    _, text = run_four_lepton_search(
        args.output, zz_events=args.zz_events, hpp_events=args.hpp_events, luminosity_fb=args.luminosity,
        epochs=args.epochs, min_entries=args.min_entries, seed=args.seed, workers=args.workers,
    )
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
