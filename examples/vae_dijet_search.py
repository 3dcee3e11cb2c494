"""VAE dijet search: a per-jet VAE trained in |Δη_jj| ≥ 1.3, an mjj-dependent 1 % quantile cut, a bump hunt.

The strategy of Cerri et al. (CHEP 2019, arXiv:1811.10276): a variational autoencoder learns single jets
(soft-drop mass, τ21, τ32) from both jets of the events in the |Δη_jj| ≥ 1.3 control region, where an
s-channel resonance is depleted. In the |Δη_jj| < 1.3 signal region each jet gets its VAE loss L1, L2, and
three event scores combine them: L1&L2 (both jets anomalous: the smaller loss), L1|L2 (either: the larger)
and L1+L2. Jet masses grow with the jet pT, so every score rises with mjj; a cut that keeps 1 % of the
background in every mjj bin is a quantile regression of the score in mjj
(:class:`coffea_ad.selection.MassDependentThreshold`), fitted on the control region and applied
in the signal region. The selected background keeps a smooth mjj spectrum, and the dijet-function bump
hunt runs on the signal region before and after each cut.

The "data" is Pythia8 QCD dijets with W' -> X(qq) Y(qq) (3.5 TeV) events injected; which sample an event
came from is used only to evaluate (ROC, background efficiency per mjj bin, the stacks in the plots).

    python examples/vae_dijet_search.py [-o FOLDER] [--qcd-events 30000] [--wprime-events 400] [--epochs 30]
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from coffea_ad.errors import CoffeaADError, ConfigurationError
from coffea_ad.paths import cache_dir, write_json

log = logging.getLogger("vae_dijet_search")

#: Per-jet inputs of the VAE: jet 1's columns, then jet 2's in the same order (j1 = the lighter jet).
JET_FEATURES = ["mj_over_pt_j1", "tau21_j1", "tau32_j1", "mj_over_pt_j2", "tau21_j2", "tau32_j2"]
COLUMNS = ["mjj", "deta_jj", *JET_FEATURES]
#: How the two samples are called in the plots.
NAMES = {"qcd": "QCD", "wprime": "W'"}
#: Event scores from the two per-jet losses, as named in the paper.
COMBINATIONS = {"min": "L1&L2", "max": "L1|L2", "sum": "L1+L2"}
#: The plain jet-mass cut the VAE is compared with: the smaller m/pT of the two jets (both jets heavy).
JET_MASS_LABEL = "min m/pT"
DETA_MAX = 1.3
SIGNAL_WINDOW = (3300.0, 3700.0)
#: The pTHat > 1.2 TeV generation cut makes a turn-on with its maximum near 2.7 TeV: the threshold and the
#: bump hunt use mjj from here on, in bins of 100 GeV.
MJJ_MIN = 2800.0
MJJ_EDGES = np.arange(MJJ_MIN, 6001.0, 100.0)
#: Coarser bins for the background efficiency per mjj bin (enough events per bin for a 1 % quantile).
EFFICIENCY_EDGES = np.array([2800.0, 3000.0, 3200.0, 3400.0, 3600.0, 3800.0, 4100.0, 4500.0, 6000.0])


def default_output() -> Path:
    """The default output folder: ``cache_dir()/examples/vae_dijet_search``."""
    return cache_dir() / "examples" / "vae_dijet_search"


def prepare_samples(folder: Path, qcd_events: int, wprime_events: int, seed: int, workers: int = 1) -> dict[str, Path]:
    """Generate (or reuse from ``folder``) the QCD and W' samples: ``{"qcd": path, "wprime": path}``."""
    from coffea_ad.generate import cached_sample

    return {
        "qcd": cached_sample(folder, "qcd_dijet", qcd_events, seed=seed, workers=workers),
        "wprime": cached_sample(folder, "wprime_xy", wprime_events, seed=seed + 1, workers=workers),
    }


def dijet_table(path: str | Path) -> dict[str, np.ndarray]:
    """The :data:`COLUMNS` of every event of a NanoAOD file that has two fat jets and all the features."""
    import awkward as ak
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    from coffea_ad.features import compute_features

    events = NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=NanoAODSchema, mode="eager").events()
    features = compute_features(events, COLUMNS)
    complete = np.ones(len(features), dtype=bool)
    for name in COLUMNS:
        complete &= ~ak.to_numpy(ak.is_none(features[name]))
    return {name: ak.to_numpy(features[name][complete]).astype(np.float64) for name in COLUMNS}


def _data_table(qcd: dict[str, np.ndarray], wprime: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """QCD and W' as one "data" table; ``is_signal`` (truth) is kept for the evaluation only."""
    table = {name: np.concatenate([qcd[name], wprime[name]]) for name in COLUMNS}
    table["is_signal"] = np.r_[np.zeros(len(qcd["mjj"]), bool), np.ones(len(wprime["mjj"]), bool)]
    table["signal_region"] = table["deta_jj"] < DETA_MAX
    table["control_region"] = ~table["signal_region"]
    return table


def _subset(table: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    return {name: values[mask] for name, values in table.items()}


def _histogram(values: np.ndarray, edges: np.ndarray = MJJ_EDGES):
    import hist

    return hist.Hist(hist.axis.Variable(edges, name="mjj", label=r"$m_{jj}$ [GeV]")).fill(values)


def _bump_hunt(histogram, mjj_min: float | None = None) -> dict[str, Any]:
    """The bump hunt above the turn-on of ``histogram``, or from ``mjj_min`` (the range before the cut)."""
    from coffea_ad.stats import bump_hunt

    try:
        hunt = bump_hunt(histogram, mjj_min=mjj_min)
    except CoffeaADError as error:  # the fits can fail on windows with a few events
        return {"error": f"{type(error).__name__}: {error}"}
    best = hunt.most_significant
    return {
        "local_Z": best.significance.z, "global_Z": hunt.global_z, "centre_GeV": best.centre,
        "window_GeV": [best.low, best.high], "observed": best.observed, "background_fit": best.background,
        "fit_range_GeV": [hunt.fit_range.low, hunt.fit_range.high], "n_parameters": best.fit.n_parameters,
        "sideband_fit_p": best.fit.p_value, "fit_ok": best.fit_ok, "n_windows_flagged": len(hunt.flagged),
        "_hunt": hunt,
    }


def run_search(
    qcd_path: str | Path,
    wprime_path: str | Path,
    output: str | Path,
    *,
    epochs: int = 30,
    seed: int = 1,
    efficiency: float = 0.01,
    degree: int = 2,
    latent: int = 2,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the per-jet VAE in the control region, cut at the mjj-dependent quantile, bump hunt.

    Writes the plots and ``summary.json`` into ``output`` and returns the summary (a JSON-ready dict).
    """
    import torch

    from coffea_ad import plotting
    from coffea_ad.models import VariationalAutoEncoder
    from coffea_ad.selection import MassDependentThreshold
    from coffea_ad.models.outlier import combine_jet_scores
    from coffea_ad.selection import metrics
    from coffea_ad.stats import sculpting_test

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data = _data_table(dijet_table(qcd_path), dijet_table(wprime_path))
    signal_region, control_region = _subset(data, data["signal_region"]), _subset(data, data["control_region"])
    summary: dict[str, Any] = {
        "settings": {"epochs": epochs, "seed": seed, "efficiency": efficiency, "degree": degree, "latent": latent,
                     "jet_features": JET_FEATURES, "deta_max": DETA_MAX, "mjj_min_GeV": MJJ_MIN},
        "events": {
            region: {"qcd": int((~table["is_signal"]).sum()), "wprime": int(table["is_signal"].sum())}
            for region, table in (("control_region", control_region), ("signal_region", signal_region))
        },
    }

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        vae = VariationalAutoEncoder(
            latent=latent, jets=2, training={"epochs": epochs, "progress": progress}, seed=seed
        ).fit(control_region, JET_FEATURES)
        per_jet = {"sr": vae.score_jets(signal_region), "cr": vae.score_jets(control_region)}
    finally:
        torch.set_num_threads(threads)
    vae.export_onnx(output / "vae_L1andL2.onnx")
    loss, is_signal = np.log10(np.clip(per_jet["sr"], 1e-3, None)), signal_region["is_signal"]
    figure = plotting.plot_score_distributions(
        {
            "QCD, lighter jet": loss[~is_signal, 0],
            "QCD, heavier jet": loss[~is_signal, 1],
            "W', lighter jet": loss[is_signal, 0],
            "W', heavier jet": loss[is_signal, 1],
        },
        xlabel=r"$\log_{10}$ per-jet VAE loss ($|\Delta\eta_{jj}| < 1.3$)",
    )
    plotting.save_figure(figure, output / "jet_losses.png")

    in_window = (signal_region["mjj"] >= SIGNAL_WINDOW[0]) & (signal_region["mjj"] < SIGNAL_WINDOW[1])
    fit_cr = control_region["mjj"] >= MJJ_MIN
    sr_qcd = ~signal_region["is_signal"]
    before = {name: _histogram(signal_region["mjj"][mask]) for name, mask in (("qcd", sr_qcd), ("wprime", ~sr_qcd))}
    hunt_before = _bump_hunt(sum(before.values()))
    if "_hunt" in hunt_before:
        plotting.save_figure(
            plotting.plot_bump_hunt_fit(hunt_before.pop("_hunt"), sum(before.values())), output / "fit_no_cut.png"
        )
    summary["no_cut"] = {
        "signal_window": {
            "qcd": int((in_window & sr_qcd).sum()), "wprime": int((in_window & ~sr_qcd).sum())
        },
        "bump_hunt": hunt_before,
    }

    rocs, efficiencies = {}, {}

    def cut_and_hunt(combine: str, label: str, score: dict[str, np.ndarray]) -> dict[str, Any]:
        """The 1 % mjj-dependent cut on ``score`` (per region), its efficiencies and the bump hunt after it."""
        rocs[label] = metrics.roc_curve(score["sr"][in_window & ~sr_qcd], score["sr"][in_window & sr_qcd])
        cut = MassDependentThreshold(efficiency=efficiency, degree=degree).fit(
            score["cr"][fit_cr], control_region["mjj"][fit_cr]
        )
        cut.save(output / f"threshold_{combine}.json")
        passes = cut.passes(score["sr"], signal_region["mjj"])
        figure = plotting.plot_threshold_map(
            score["cr"][fit_cr], control_region["mjj"][fit_cr], cut, MJJ_EDGES, ylabel=f"event score {label}",
            colorbar_label=r"events, $|\Delta\eta_{jj}| \geq 1.3$",
        )
        plotting.save_figure(figure, output / f"threshold_{combine}.png")
        eff, unc, total = cut.efficiency_per_bin(score["sr"][sr_qcd], signal_region["mjj"][sr_qcd], EFFICIENCY_EDGES)
        efficiencies[label] = (eff, unc)
        above = signal_region["mjj"] >= MJJ_MIN
        cr_efficiency = float(cut.passes(score["cr"][fit_cr], control_region["mjj"][fit_cr]).mean())
        after = {"qcd": _histogram(signal_region["mjj"][sr_qcd & passes]),
                 "wprime": _histogram(signal_region["mjj"][~sr_qcd & passes])}
        figure = plotting.plot_mass_spectra(
            {NAMES[name]: h for name, h in before.items()}, {NAMES[name]: h for name, h in after.items()},
            cut=f"{label} cut", no_cut="no cut", xlabel=r"$m_{jj}$ [GeV], $|\Delta\eta_{jj}| < 1.3$",
            ylabel="Events / 100 GeV",
        )
        plotting.save_figure(figure, output / f"mjj_{combine}.png")
        sculpting = sculpting_test(before["qcd"], after["qcd"])
        hunt = _bump_hunt(sum(after.values()), hunt_before.get("fit_range_GeV", [None])[0])
        if "_hunt" in hunt:
            plotting.save_figure(
                plotting.plot_bump_hunt_fit(hunt.pop("_hunt"), sum(after.values())), output / f"fit_{combine}.png"
            )
        return {
            "label": label,
            "auc_signal_window": metrics.auc(rocs[label]),
            "max_sic_signal_window": metrics.max_sic(rocs[label]),
            "control_region_efficiency": cr_efficiency,
            "signal_region_qcd_efficiency": float(passes[sr_qcd & above].mean()),
            "signal_region_wprime_efficiency": float(passes[~sr_qcd & above].mean()),
            "qcd_efficiency_per_mjj_bin": {
                "edges_GeV": EFFICIENCY_EDGES.tolist(), "efficiency": eff.tolist(), "uncertainty": unc.tolist(),
                "qcd_events": total.tolist(),
            },
            "sculpting_test": sculpting.to_dict(),
            "signal_window": {
                "qcd": int((in_window & sr_qcd & passes).sum()), "wprime": int((in_window & ~sr_qcd & passes).sum())
            },
            "bump_hunt": hunt,
            "threshold": cut.to_dict(),
        }

    summary["combinations"] = {
        combine: cut_and_hunt(combine, label, {region: combine_jet_scores(values, combine)
                                               for region, values in per_jet.items()})
        for combine, label in COMBINATIONS.items()
    }
    # The baseline a VAE must beat: both jets heavy, i.e. the smaller of the two jets' m/pT (the VAE's own mass
    # input), cut the same way.
    jet_mass = {region: np.minimum(table["mj_over_pt_j1"], table["mj_over_pt_j2"])
                for region, table in (("sr", signal_region), ("cr", control_region))}
    summary["jet_mass_cut"] = cut_and_hunt("jet_mass", JET_MASS_LABEL, jet_mass)
    baseline = summary["jet_mass_cut"]
    summary["vae_over_jet_mass"] = {
        combine: {
            "max_sic": result["max_sic_signal_window"] / baseline["max_sic_signal_window"],
            "auc_difference": result["auc_signal_window"] - baseline["auc_signal_window"],
            "wprime_efficiency": result["signal_region_wprime_efficiency"]
            / max(baseline["signal_region_wprime_efficiency"], 1e-12),
        }
        for combine, result in summary["combinations"].items()
    }
    plotting.save_figure(plotting.plot_roc(rocs), output / "roc.png")
    figure = plotting.plot_efficiency_per_bin(
        EFFICIENCY_EDGES, efficiencies, efficiency, ylabel=r"QCD efficiency, $|\Delta\eta_{jj}| < 1.3$"
    )
    plotting.save_figure(figure, output / "qcd_efficiency_vs_mjj.png")
    summary["seconds"] = time.perf_counter() - started
    write_json(output / "summary.json", summary)
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """A few lines: events per region, then AUC, efficiencies and the bump hunt per combination."""
    events, before = summary["events"], summary["no_cut"]
    lines = [
        f"control region |deta| >= {DETA_MAX}: {events['control_region']['qcd']} QCD + "
        f"{events['control_region']['wprime']} W' events (VAE training, threshold fit)",
        f"signal region  |deta| <  {DETA_MAX}: {events['signal_region']['qcd']} QCD + "
        f"{events['signal_region']['wprime']} W' events",
        f"  no cut: {before['signal_window']['qcd']} QCD + {before['signal_window']['wprime']} W' in 3.3-3.7 TeV; "
        + _hunt_text(before["bump_hunt"]),
    ]
    for result in [*summary["combinations"].values(), summary["jet_mass_cut"]]:
        window = result["signal_window"]
        lines.append(
            f"  {result['label']:6s} AUC {result['auc_signal_window']:.3f}"
            f"  max SIC {result['max_sic_signal_window']:.2f}"
            f"  QCD eff CR {result['control_region_efficiency']:.4f} SR {result['signal_region_qcd_efficiency']:.4f}"
            f" (sculpting p = {result['sculpting_test']['p_value']:.2f})"
            f"  W' eff {result['signal_region_wprime_efficiency']:.3f}"
            f"  3.3-3.7 TeV: {window['qcd']} QCD + {window['wprime']} W'; " + _hunt_text(result["bump_hunt"])
        )
    for combine, ratios in summary["vae_over_jet_mass"].items():
        lines.append(
            f"  {COMBINATIONS[combine]:6s} / {JET_MASS_LABEL} cut: max SIC x {ratios['max_sic']:.2f}, AUC "
            f"{ratios['auc_difference']:+.3f}, W' efficiency at the cut x {ratios['wprime_efficiency']:.2f}"
        )
    return "\n".join(lines)


def _hunt_text(hunt: dict[str, Any]) -> str:
    if "error" in hunt:
        return f"no bump hunt ({hunt['error']})"
    flag = "" if hunt["fit_ok"] else ", sideband fit poor: not a discovery"
    return (
        f"bump hunt: local Z = {hunt['local_Z']:.2f} at {hunt['centre_GeV']:.0f} GeV (global {hunt['global_Z']:.2f}"
        f"{flag})"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command line: generate (or reuse) the samples, run the search, print the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=None, help="folder for samples and results "
                        "(default: the coffea_ad cache, examples/vae_dijet_search)")
    parser.add_argument("--qcd-events", type=int, default=30000, help="QCD dijet events to generate (default 30000)")
    parser.add_argument("--wprime-events", type=int, default=400, help="W' events injected (default 400)")
    parser.add_argument("--epochs", type=int, default=30, help="VAE training epochs (default 30)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the QCD sample and the VAE; W' uses seed + 1")
    parser.add_argument("--efficiency", type=float, default=0.01, help="background kept per mjj bin (default 0.01)")
    parser.add_argument("--degree", type=int, default=2, help="polynomial degree of the threshold in mjj (default 2)")
    parser.add_argument("-j", "--workers", type=int, default=1, help="generation worker processes (default 1)")
    args = parser.parse_args(argv)
    for name in ("qcd_events", "wprime_events", "epochs"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    folder = args.output or default_output()
    started = time.perf_counter()
    try:
        samples = prepare_samples(folder, args.qcd_events, args.wprime_events, args.seed, args.workers)
        summary = run_search(
            samples["qcd"], samples["wprime"], folder / "results", epochs=args.epochs, seed=args.seed,
            efficiency=args.efficiency, degree=args.degree,
        )
    except (CoffeaADError, ConfigurationError) as error:
        parser.exit(1, f"vae_dijet_search: error: {error}\n")
    print(f"VAE dijet search in {folder} ({time.perf_counter() - started:.0f} s)")
    print(format_summary(summary))
    print(f"plots and summary.json: {folder / 'results'}")
    return summary


if __name__ == "__main__":
    main()
