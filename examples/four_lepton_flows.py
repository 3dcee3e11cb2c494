"""Four-lepton search with normalizing flows and CLs limits, scanned in the doubly-charged Higgs mass.

A model-independent search in events with at least four tight leptons (e, μ), after the ATLAS study of
normalising flows in ≥ 4-lepton events: one RealNVP flow per lepton-flavour region (4e, 2e2μ, 4μ) is
trained on simulated SM ZZ → 4ℓ only; the anomaly score is −log p of an event under its region's flow;
the score distribution of every region is the fitted variable (one pyhf channel per region) for 95 % CLs
upper limits on the signal strength μ of a doubly-charged Higgs, H++H−− → 4ℓ. The ZZ sample is split in
two halves: the flows learn from the first; the second is the expected background of the fit. The same
fit on the four-lepton mass alone is the baseline.

The flows never see a signal, so they are trained once and the fits are repeated for every H++ mass of the
scan (default 100, 200, 300 and 500 GeV). At 500 GeV the pair's m4ℓ (above 1 TeV) is far from ZZ's (mostly
below 300 GeV) and m4ℓ alone separates them: the flows can only tie. Lighter H++ pairs sit on the ZZ
continuum in m4ℓ (a 100 GeV pair starts at 200 GeV), and there the lepton pTs that the flows also learn
carry what m4ℓ no longer does.

    python examples/four_lepton_flows.py [-o FOLDER] [--masses 100 200 300 500] [--zz-events 30000]
                                         [--hpp-events 3000] [--epochs 60]

Writes into FOLDER (default: the cache, ``examples/four_lepton_flows``) the samples, the flows as ONNX, per
mass M ``workspace_flow_mM.json``, ``workspace_m4l_mM.json`` and the plots (``scores_REGION_mM.png``,
``roc_REGION_mM.png``, ``cls_flow_mM.png``, ``cls_m4l_mM.png``), ``limits.png`` (flow and m4ℓ at every mass)
and ``summary.json``.

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


def _mass_tag(mass: float) -> str:
    return f"m{mass:g}"


def run_four_lepton_search(
    output: str | Path | None = None,
    *,
    masses_hpp: tuple[float, ...] = (100.0, 200.0, 300.0, 500.0),
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
    """Generate (or reuse) the samples, train one flow per flavour region on ZZ, fit the scores and m4ℓ at every
    H++ mass of ``masses_hpp``; return ``(summary, text)`` and write the plots, the workspaces and
    ``summary.json`` into ``output``."""
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
    if not masses_hpp or any(mass <= 0 for mass in masses_hpp):
        raise ConfigurationError(f"masses_hpp must be positive H++ masses in GeV, got {list(masses_hpp)}")
    start = time.perf_counter()
    folder = Path(output) if output else cache_dir() / "examples" / "four_lepton_flows"
    (folder / "models").mkdir(parents=True, exist_ok=True)
    lines = [f"Four-lepton search with normalizing flows in {folder}"]
    summary: dict[str, Any] = {"luminosity_fb": luminosity_fb, "samples": {"hpp": {}}, "regions": {}, "masses": {}}
    samples = [("zz", "zz4l", zz_events, seed, {})]
    samples += [(_mass_tag(mass), "hpp4l", hpp_events, seed + 1, {"mass_hpp": mass}) for mass in masses_hpp]
    tables = {}
    for kind, process, n_events, sample_seed, settings in samples:
        path = cached_sample(folder, process, n_events, seed=sample_seed, settings=settings, workers=workers)
        metadata = read_sample_metadata(path)
        sigma_fb = 1000.0 * metadata["cross_section_pb"]
        tables[kind] = _region_tables(path, sigma_fb * luminosity_fb / metadata["n_events"])
        record = {"process": process, "events": metadata["n_events"], "cross_section_fb": sigma_fb,
                  "file": path.name, **settings}
        if kind == "zz":
            summary["samples"]["zz"] = record
        else:
            summary["samples"]["hpp"][kind] = record
        lines.append(f"  {process:6s} {''.join(f'{v:g} GeV ' for v in settings.values()):9s}{metadata['n_events']:6d} "
                     f"events, sigma = {sigma_fb:.4g} fb, {sigma_fb * luminosity_fb:.1f} events in "
                     f"{luminosity_fb:g} fb^-1")
    generated = time.perf_counter()

    training = {"epochs": epochs, "batch_size": 128, "patience": 10, "progress": progress}
    background, flows = {}, {}
    for region in REGIONS:
        train, background[region] = _split_half(tables["zz"][region], seed)
        if len(train["weight"]) < MIN_TRAINING_EVENTS:
            raise ConfigurationError(
                f"only {len(train['weight'])} ZZ training events in region {region}: raise zz_events"
            )
        flow = RealNVP(transforms=transforms, hidden=hidden, feature_transforms=dict.fromkeys(FLOW_FEATURES, "log"),
                       training=training, seed=seed).fit(train, FLOW_FEATURES)
        flows[region] = flow.export_onnx(folder / "models" / f"flow_{region}.onnx")
        summary["regions"][region] = {
            "zz_training_events": len(train["weight"]),
            "zz_background_events": len(background[region]["weight"]),
            "zz_expected": float(background[region]["weight"].sum()),
            "best_validation_nll": flow.history_["flow"]["best_validation_loss"],
        }
    trained = time.perf_counter()

    def score(region: str, table: dict[str, np.ndarray]) -> np.ndarray:
        return score_onnx(flows[region], np.stack([table[name] for name in FLOW_FEATURES], axis=1))

    zz_scores = {region: score(region, background[region]) for region in REGIONS}
    limits = {}
    for mass in masses_hpp:
        tag = _mass_tag(mass)
        signal = tables[tag]
        scores = {"zz": zz_scores, "hpp": {region: score(region, signal[region]) for region in REGIONS}}
        m4l = {kind: {region: table[region]["m4l"] for region in REGIONS}
               for kind, table in (("zz", background), ("hpp", signal))}
        per_mass: dict[str, Any] = {"regions": {}, "limits": {}}
        fit_edges = {}
        for name, variable, label in (("flow", scores, r"flow score $-\log p$"),
                                      ("m4l", m4l, r"$m_{4\ell}$ [GeV]")):
            workspace, fit = _fit(variable, background, signal, min_entries, label)
            stats.write_workspace(workspace, folder / f"workspace_{name}_{tag}.json")
            plotting.save_figure(plotting.plot_cls_scan(fit["limit"]), folder / f"cls_{name}_{tag}.png")
            limits[f"{name}, {mass:g} GeV"] = fit["limit"]
            fit_edges[name] = fit["edges"]
            per_mass["limits"][name] = {
                "observed": fit["limit"].observed,
                "expected": dict(zip(("-2sigma", "-1sigma", "median", "+1sigma", "+2sigma"), fit["limit"].expected)),
                "expected_z_at_mu_1": fit["significance"].expected_z,
                "bins": {region: len(edges) - 1 for region, edges in fit["edges"].items()},
            }
        for region in REGIONS:
            rocs = {name: metrics.roc_curve(values["hpp"][region], values["zz"][region])
                    for name, values in (("flow", scores), ("m4l", m4l))}
            per_mass["regions"][region] = {
                "hpp_events": len(signal[region]["weight"]),
                "hpp_expected": float(signal[region]["weight"].sum()),
                "auc_flow": metrics.auc(rocs["flow"]),
                "auc_m4l": metrics.auc(rocs["m4l"]),
            }
            edges = fit_edges["flow"][region]
            figure = plotting.plot_score_distributions(
                {LABELS["zz"]: scores["zz"][region], LABELS["hpp"]: scores["hpp"][region]},
                weights={LABELS["zz"]: background[region]["weight"], LABELS["hpp"]: signal[region]["weight"]},
                bins=np.linspace(edges[0], edges[-1], 50),
                xlabel=rf"flow score $-\log p$, {region}, $m_{{H^{{\pm\pm}}}}$ = {mass:g} GeV",
            )
            plotting.save_figure(figure, folder / f"scores_{region}_{tag}.png")
            plotting.save_figure(plotting.plot_roc({f"{region} {name}": roc for name, roc in rocs.items()}),
                                 folder / f"roc_{region}_{tag}.png")
        per_mass["mixed_flavour_hpp_fraction"] = (
            1.0 - sum(len(signal[region]["weight"]) for region in REGIONS) / summary["samples"]["hpp"][tag]["events"]
        )
        flow_limit, m4l_limit = (per_mass["limits"][name]["expected"]["median"] for name in ("flow", "m4l"))
        per_mass["flow_over_m4l_expected_limit"] = flow_limit / m4l_limit
        summary["masses"][f"{mass:g}"] = per_mass
    figure = plotting.plot_limits(
        limits, xlabel=r"95 % CL$_s$ upper limit on $\mu$ ($H^{\pm\pm}H^{\mp\mp}$)",
        observed_label="observed (background-only Asimov)", log=len(masses_hpp) > 1,
    )
    plotting.save_figure(figure, folder / "limits.png")
    fitted = time.perf_counter()

    summary["seconds"] = {"samples": generated - start, "training": trained - generated, "fits": fitted - trained,
                          "total": fitted - start}
    for region, numbers in summary["regions"].items():
        lines.append(f"  {region:6s} ZZ {numbers['zz_training_events']:5d} train / {numbers['zz_background_events']:5d} "
                     f"fit ({numbers['zz_expected']:7.1f} expected)")
    for mass, per_mass in summary["masses"].items():
        lines.append(f"  H++ at {mass} GeV ({per_mass['mixed_flavour_hpp_fraction']:.1%} of its events in "
                     f"mixed-flavour or < 4-lepton events, not fitted):")
        for region, numbers in per_mass["regions"].items():
            lines.append(f"    {region:6s} H++ {numbers['hpp_events']:4d} ({numbers['hpp_expected']:7.2f} expected); "
                         f"AUC flow {numbers['auc_flow']:.3f}, m4l {numbers['auc_m4l']:.3f}")
        for name, numbers in per_mass["limits"].items():
            expected = numbers["expected"]
            lines.append(
                f"    95% CLs limit on mu, {name:4s}: observed {numbers['observed']:.4g}, expected "
                f"{expected['median']:.4g} (+1s {expected['+1sigma']:.4g}, -1s {expected['-1sigma']:.4g}); "
                f"expected Z(mu=1) = {numbers['expected_z_at_mu_1']:.2f}"
            )
        lines.append(f"    expected limit flow / m4l: {per_mass['flow_over_m4l_expected_limit']:.2f}")
    lines.append(f"  {summary['seconds']['total']:.0f} s (samples {summary['seconds']['samples']:.0f} s, training "
                 f"{summary['seconds']['training']:.0f} s, fits and plots {summary['seconds']['fits']:.0f} s); "
                 f"plots and summary.json in {folder}")
    write_json(folder / "summary.json", summary)
    return summary, "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: parse ``argv``, run the search, print the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", help="folder for samples, models, plots (default: the cache)")
    parser.add_argument("--masses", type=float, nargs="+", default=[100.0, 200.0, 300.0, 500.0],
                        help="H++ masses of the scan in GeV (100 200 300 500)")
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
        args.output, masses_hpp=tuple(args.masses), zz_events=args.zz_events, hpp_events=args.hpp_events, luminosity_fb=args.luminosity,
        epochs=args.epochs, min_entries=args.min_entries, seed=args.seed, workers=args.workers,
    )
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
