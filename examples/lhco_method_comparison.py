"""LHC Olympics-like resonant dijet search: the protocol's methods on the same samples, a signal-injection scan,
and CATHODE in sliding signal-region windows.

W' -> X(qq) Y(qq) events (3.5 TeV) are injected into Pythia8 QCD dijets; the features are mj_min, Delta mj
and tau21 of both fat jets, the resonant variable is mjj. On the same samples the script

1. trains the supervised classifier, the idealized anomaly detector, CATHODE, LaCATHODE, CURTAINs, FETA,
   CWoLa hunting, ANODE and R-ANODE (``coffea_ad.contrib.lhco.PROTOCOL_METHODS``) at each injected S/B of the
   scan, and plots their SIC curves and max SIC against S/B;
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
import sys
import time
from pathlib import Path

import numpy as np

from coffea_ad.contrib import lhco
from coffea_ad.paths import cache_dir, write_json

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


def run(arguments: argparse.Namespace) -> dict:
    """Generate (or reuse) the samples, run the scan and the sliding windows, write plots and summary.json."""
    from coffea_ad import plotting

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
    labelled = {lhco.METHOD_LABELS[method]: result for method, result in scan[reference].items()}
    figure = plotting.plot_sic_curves(
        lhco.TPR_GRID, {label: result.sic_curve for label, result in labelled.items()},
        max_sic={label: result.max_sic for label, result in labelled.items()},
        title=f"S/B = {100 * reference:.2g} % in 3.3-3.7 TeV",
    )
    plotting.save_figure(figure, folder / "sic_curves.png")
    figure = plotting.plot_max_sic_scan({
        lhco.METHOD_LABELS[method]: {s_over_b: scan[s_over_b][method].max_sic for s_over_b in scan}
        for method in scan[reference]
    })
    plotting.save_figure(figure, folder / "max_sic_vs_s_over_b.png")
    if arguments.windows:
        print(f"sliding signal-region windows, CATHODE, W' injected at S/B = {100 * reference:.2g} %:")
        rows = sliding_windows(
            samples, reference, arguments.windows, arguments.window_width, arguments.seed, arguments.epochs,
            arguments.classifier_epochs,
        )
        summary["sliding_windows"] = rows
        figure = plotting.plot_window_significance(
            [row["window"] for row in rows],
            {
                "before the cut": [row["s_over_sqrt_b_before"] for row in rows],
                f"after CATHODE, {100 * WINDOW_CUT_EFFICIENCY:g} % QCD efficiency":
                    [row["s_over_sqrt_b_after"] for row in rows],
            },
            signal_mass=(3500.0, "W' mass"),
        )
        plotting.save_figure(figure, folder / "sliding_windows.png")
    write_json(folder / "summary.json", summary)
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
