"""LHC Olympics-like resonant dijet search: six methods on the same samples, a signal-injection scan, and
CATHODE in sliding signal-region windows.

W' -> X(qq) Y(qq) events (3.5 TeV) are injected into Pythia8 QCD dijets; the features are mj_min, Delta mj
and tau21 of both fat jets, the resonant variable is mjj. On the same samples the script

1. trains the supervised classifier, the idealized anomaly detector, CATHODE, LaCATHODE, CWoLa hunting
   and ANODE at each injected S/B of the scan, and plots their SIC curves and max SIC against S/B;
2. slides the signal-region window across mjj and trains CATHODE in each window on the same data: the
   significance of the injected signal after the cut grows only in the windows that hold the W'.

Which sample an event came from is used only to evaluate (ROC, SIC, S/sqrt(B)), never to train, except by
the supervised and idealized references. The samples are those of ``benchmarks/lhco_like.py`` (shared cache
folder): about 18 minutes of generation on 2 free cores the first time, then cached; ``--background-events`` etc.
make smaller ones.

    python examples/lhco_method_comparison.py
    python examples/lhco_method_comparison.py --background-events 60000 --s-over-b 0.01 0.03 --epochs 20
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from coffea_ad.contrib import lhco
from coffea_ad.paths import atomic_output, cache_dir

#: Background efficiency of the cut that the sliding windows apply.
WINDOW_CUT_EFFICIENCY = 0.01


def injection_scan(samples, s_over_b_values, methods, seed: int, epochs: int, classifier_epochs: int) -> dict:
    """Every method at every S/B (one seed): ``{s_over_b: {method: MethodResult}}``."""
    scan = {}
    for s_over_b in s_over_b_values:
        scan[s_over_b] = {}
        for method in methods:
            result = lhco.run_method(
                method, samples, s_over_b, seed, epochs=epochs, classifier_epochs=classifier_epochs
            )
            scan[s_over_b][method] = result
            print(
                f"  S/B {100 * s_over_b:5.2f} % ({result.n_signal_signal_region} W' in the signal region, "
                f"S/sqrt(B) {result.s_over_sqrt_b:.2f})  {lhco.METHOD_LABELS[method]:14s} "
                f"max SIC {result.max_sic:6.2f}  "
                f"AUC {result.auc:.3f}  ({result.seconds:.0f} s)",
                flush=True,
            )
    return scan


def sliding_windows(
    samples, s_over_b: float, centres, width: float, seed: int, epochs: int, classifier_epochs: int
) -> list[dict]:
    """CATHODE trained in each mjj window on one data set (W' injected at ``s_over_b`` in 3.3-3.7 TeV).

    For each window: the W' and QCD events of the data inside it, and S/sqrt(B) before and after the cut
    that keeps :data:`WINDOW_CUT_EFFICIENCY` of the test QCD (its signal efficiency measured on test W').
    """
    injection = lhco.inject_signal(samples, s_over_b, seed)
    is_signal = injection.is_signal
    rows = []
    for centre in centres:
        window = (centre - width / 2, centre + width / 2)
        start = time.perf_counter()
        cathode = lhco.fit_method(
            "cathode", injection, samples, seed=seed, epochs=epochs, classifier_epochs=classifier_epochs,
            signal_region=window,
        )
        roc = lhco.evaluate(cathode, samples, window)
        signal_efficiency = float(np.interp(WINDOW_CUT_EFFICIENCY, roc.fpr, roc.tpr))
        inside = (injection.data["mjj"] >= window[0]) & (injection.data["mjj"] < window[1])
        n_signal, n_qcd = int((inside & is_signal).sum()), int((inside & ~is_signal).sum())
        before = n_signal / np.sqrt(n_qcd)
        after = signal_efficiency * n_signal / np.sqrt(WINDOW_CUT_EFFICIENCY * n_qcd)
        rows.append({
            "window": list(window), "signal": n_signal, "background": n_qcd,
            "s_over_sqrt_b_before": before, "signal_efficiency": signal_efficiency,
            "s_over_sqrt_b_after": after, "test_signal_events": roc.n_signal,
        })
        print(
            f"  window {window[0]:.0f}-{window[1]:.0f} GeV: {n_signal} W' + {n_qcd} QCD, S/sqrt(B) {before:.2f} -> "
            f"{after:.2f} after the CATHODE cut at {100 * WINDOW_CUT_EFFICIENCY:g} % QCD efficiency "
            f"({time.perf_counter() - start:.0f} s)",
            flush=True,
        )
    return rows


def plot_sic_curves(results: dict, path: Path, s_over_b: float) -> None:
    from coffea_ad.plotting import cms_style, new_figure, save_figure

    with cms_style():
        figure, axis = new_figure()
        for method, result in results.items():
            axis.plot(lhco.TPR_GRID, result.sic_curve, label=f"{lhco.METHOD_LABELS[method]} (max {result.max_sic:.1f})")
        axis.axhline(1.0, color="grey", linestyle="--", label="random")
        axis.set_xlabel("Signal efficiency (TPR)")
        axis.set_ylabel("SIC = TPR/√FPR")
        axis.set_title(f"S/B = {100 * s_over_b:.2g} % in 3.3-3.7 TeV", fontsize=16)
        axis.legend(fontsize=14)
    save_figure(figure, path)


def plot_scan(scan: dict, path: Path) -> None:
    from coffea_ad.plotting import cms_style, new_figure, save_figure

    values = sorted(scan)
    with cms_style():
        figure, axis = new_figure()
        for method in scan[values[0]]:
            axis.plot([100 * s for s in values], [scan[s][method].max_sic for s in values], marker="o",
                      label=lhco.METHOD_LABELS[method])
        axis.axhline(1.0, color="grey", linestyle="--", label="random")
        axis.set_xscale("log")
        axis.set_xticks([100 * s for s in values], [f"{100 * s:g}" for s in values], minor=False)
        axis.xaxis.set_minor_formatter("")
        axis.set_xlabel("Injected S/B in the signal region [%]")
        axis.set_ylabel("max SIC")
        axis.legend(fontsize=14)
    save_figure(figure, path)


def plot_windows(rows: list[dict], path: Path) -> None:
    from coffea_ad.plotting import cms_style, new_figure, save_figure

    centres = [(row["window"][0] + row["window"][1]) / 2 for row in rows]
    with cms_style():
        figure, axis = new_figure()
        axis.plot(centres, [row["s_over_sqrt_b_before"] for row in rows], marker="o", label="before the cut")
        axis.plot(centres, [row["s_over_sqrt_b_after"] for row in rows], marker="s",
                  label=f"after CATHODE, {100 * WINDOW_CUT_EFFICIENCY:g} % QCD efficiency")
        axis.axvline(3500, color="grey", linestyle=":", label="W' mass")
        axis.set_xticks(centres, [f"{centre / 1000:g}" for centre in centres])
        axis.set_xlabel(r"centre of the signal-region window in $m_{jj}$ [TeV]")
        axis.set_ylabel("S/√B in the window")
        axis.legend(fontsize=14)
    save_figure(figure, path)


def run(arguments: argparse.Namespace) -> dict:
    """Generate (or reuse) the samples, run the scan and the sliding windows, write plots and summary.json."""
    folder = Path(arguments.output)
    folder.mkdir(parents=True, exist_ok=True)
    paths = lhco.generate_samples(
        arguments.sample_folder, lhco.sample_sizes(arguments), workers=arguments.workers, progress=arguments.progress,
    )
    samples = lhco.load_samples(paths, folder / "features", workers=arguments.workers, progress=arguments.progress)
    summary: dict = {"samples": samples.describe()}
    print("signal-injection scan:")
    scan = injection_scan(
        samples, arguments.s_over_b, arguments.methods, arguments.seed, arguments.epochs, arguments.classifier_epochs
    )
    summary["injection_scan"] = {
        f"{s_over_b:g}": {method: result.to_dict() for method, result in results.items()}
        for s_over_b, results in scan.items()
    }
    reference = max(scan)
    plot_sic_curves(scan[reference], folder / "sic_curves.png", reference)
    plot_scan(scan, folder / "max_sic_vs_s_over_b.png")
    if arguments.windows:
        print(f"sliding signal-region windows, CATHODE, W' injected at S/B = {100 * reference:.2g} %:")
        rows = sliding_windows(
            samples, reference, arguments.windows, arguments.window_width, arguments.seed, arguments.epochs,
            arguments.classifier_epochs,
        )
        summary["sliding_windows"] = rows
        plot_windows(rows, folder / "sliding_windows.png")
    with atomic_output(folder / "summary.json") as temporary:
        Path(temporary).write_text(json.dumps(summary, indent=1))
    print(f"plots and summary.json in {folder}")
    return summary


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", default=cache_dir() / "examples" / "lhco_method_comparison")
    lhco.add_sample_options(parser)
    parser.add_argument("--s-over-b", type=float, nargs="+", default=[0.006, 0.012, 0.024],
                        help="injected S/B in 3.3-3.7 TeV; the largest is used for the SIC curves and the windows")
    parser.add_argument("--methods", nargs="+", default=list(lhco.PROTOCOL_METHODS), choices=lhco.PROTOCOL_METHODS)
    parser.add_argument("--windows", type=float, nargs="*", default=[3100, 3300, 3500, 3700, 3900],
                        help="centres of the sliding signal-region windows in GeV (none: skip)")
    parser.add_argument("--window-width", type=float, default=400.0, help="width of each window in GeV")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=30, help="maximum epochs of the flows (early stopping)")
    parser.add_argument("--classifier-epochs", type=int, default=100,
                        help="epochs of every classifier (the 10 best are averaged)")
    parser.add_argument("-j", "--workers", type=int, default=None, help="generation and dask workers")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    run(parse_arguments(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
