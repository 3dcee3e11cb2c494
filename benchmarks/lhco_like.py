"""The LHC Olympics R&D comparison of weakly supervised methods, on coffea_ad's generated samples.

Follows the CATHODE study's protocol (Hallin et al., arXiv:2109.00546; see :mod:`coffea_ad.contrib.lhco`): W' events
injected into QCD at a chosen S/B in the 3.3-3.7 TeV signal region, features mj_min, Delta mj, tau21 of both
jets, every method trained on the "data" and evaluated on independent test events of the signal region by
its maximum SIC (FPR > 1/N_bkg,test); the median and 68 % band over several seeds (each seed draws other
injected events and trains other networks). Also: the scan in S/B, and a run with the jet-mass features
made to depend on mjj.

The published numbers (LHC Olympics R&D, S/B = 0.6 %) are printed beside ours as ratios to the supervised
classifier of the same study, since the samples differ.

    python benchmarks/lhco_like.py                      # everything, as in the README table
    python benchmarks/lhco_like.py --seeds 1 --s-over-b 0.024 --scan --correlated-seeds 0   # one quick pass

Results are kept in OUTPUT/results.json after every training, so an interrupted run resumes where it stopped.
Generating the default samples (60k + 60k + 40k QCD, 20k W') takes about 18 minutes on 2 free cores the first time
(QCD above pTHat = 1.2 TeV runs at about 80 events/s/core with the reconstruction); they are cached.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from coffea_ad.contrib import lhco
from coffea_ad.paths import cache_dir, write_json

#: LHC Olympics R&D, S/B = 0.6 %: max SIC medians of the CATHODE study (arXiv:2109.00546).
PUBLISHED_MAX_SIC = {"supervised": 17.6, "iad": 15.1, "cathode": 14.0, "cwola": 10.8, "anode": 6.5}


def _key(variant: str, s_over_b: float, seed: int, method: str) -> str:
    return f"{variant}/{s_over_b:g}/{seed}/{method}"


def run(arguments: argparse.Namespace) -> dict:
    """Train every (variant, S/B, seed, method) not yet in ``results.json`` and return all results."""
    folder = Path(arguments.output)
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    paths = lhco.generate_samples(
        arguments.sample_folder, lhco.sample_sizes(arguments), workers=arguments.workers,
    )
    print(f"samples ready in {time.perf_counter() - start:.0f} s: " + ", ".join(p.name for p in paths.values()))
    start = time.perf_counter()
    nominal = lhco.load_samples(paths, folder / "features", workers=arguments.workers, progress=True)
    print(f"features in {time.perf_counter() - start:.0f} s")
    print(json.dumps(nominal.describe()))
    runs = [("nominal", s, seed) for s in arguments.s_over_b for seed in range(1, arguments.seeds + 1)]
    runs += [
        ("correlated", s, seed)
        for s in arguments.correlated_s_over_b
        for seed in range(1, arguments.correlated_seeds + 1)
    ]
    runs += [("nominal", s, seed) for s in arguments.scan for seed in range(1, arguments.scan_seeds + 1)]
    variants = {"nominal": nominal, "correlated": lhco.correlate_with_mjj(nominal)}
    results_path = folder / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    todo = [
        (variant, s_over_b, seed, method)
        for variant, s_over_b, seed in runs
        for method in arguments.methods
        if _key(variant, s_over_b, seed, method) not in results
    ]
    print(f"{len(todo)} trainings to run ({len(results)} already in {results_path})")
    for index, (variant, s_over_b, seed, method) in enumerate(todo, 1):
        result = lhco.run_method(
            method, variants[variant], s_over_b, seed, epochs=arguments.epochs,
            classifier_epochs=arguments.classifier_epochs,
        )
        record = {"variant": variant, "requested_s_over_b": s_over_b, **result.to_dict()}
        results[_key(variant, s_over_b, seed, method)] = record
        write_json(results_path, results)
        print(
            f"[{index}/{len(todo)}] {variant:10s} S/B {s_over_b:.4f} seed {seed} {method:10s} max SIC "
            f"{result.max_sic:6.2f}  AUC {result.auc:.3f}  ({result.n_signal_signal_region} W' in SR, "
            f"S/sqrt(B) {result.s_over_sqrt_b:.2f}; {result.seconds:.0f} s)",
            flush=True,
        )
    return results


def summarise(results: dict, methods: list[str]) -> dict:
    """Median and 68 % band of the max SIC per (variant, S/B, method)."""
    from coffea_ad.selection.metrics import seed_band

    groups: dict[tuple[str, float, str], list[dict]] = {}
    for record in results.values():
        groups.setdefault((record["variant"], record["requested_s_over_b"], record["method"]), []).append(record)
    summary = {}
    for (variant, s_over_b, method), records in sorted(groups.items()):
        if method not in methods:
            continue
        band = seed_band([record["max_sic"] for record in records])
        summary[(variant, s_over_b, method)] = {
            "median": float(band.median), "lower": float(band.lower), "upper": float(band.upper),
            "seeds": len(records), "s_over_sqrt_b": float(np.mean([r["s_over_sqrt_b"] for r in records])),
            "n_signal_signal_region": int(np.mean([r["n_signal_signal_region"] for r in records])),
        }
    return summary


def table(summary: dict, methods: list[str], variant: str, s_over_b: float) -> str:
    """The README table: ours (median, 68 % band, ratio to our supervised) next to the published numbers."""
    rows = {method: summary.get((variant, s_over_b, method)) for method in methods}
    supervised = rows.get("supervised")
    lines = [
        "| method | max SIC, median [68 % band] | seeds | ratio to our supervised | published max SIC "
        "| published ratio to supervised |",
        "|---|---|---|---|---|---|",
    ]
    for method, row in rows.items():
        if row is None:
            continue
        ratio = f"{row['median'] / supervised['median']:.2f}" if supervised else "—"
        published = PUBLISHED_MAX_SIC.get(method)
        published_columns = (
            f"{published} | {published / PUBLISHED_MAX_SIC['supervised']:.2f}" if published else "— | —"
        )
        lines.append(
            f"| {lhco.METHOD_LABELS[method]} | {row['median']:.2f} [{row['lower']:.2f}, {row['upper']:.2f}] | "
            f"{row['seeds']} | "
            f"{ratio} | {published_columns} |"
        )
    return "\n".join(lines)


def plot_scan(summary: dict, methods: list[str], path: Path) -> None:
    """Max SIC (median and 68 % band over seeds) against the injected S/B, one line per method."""
    from coffea_ad import plotting
    from coffea_ad.selection.metrics import SeedBand

    scan = {
        lhco.METHOD_LABELS[method]: {
            s: SeedBand(median=row["median"], lower=row["lower"], upper=row["upper"])
            for (v, s, m), row in summary.items() if v == "nominal" and m == method
        }
        for method in methods
    }
    figure = plotting.plot_max_sic_scan(
        scan, xlabel="S/B in the signal region [%]", ylabel="max SIC (FPR > 1/N$_{bkg}$)"
    )
    plotting.save_figure(figure, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", default=cache_dir() / "lhco_like", help="results and plots")
    lhco.add_sample_options(parser)
    parser.add_argument("--s-over-b", type=float, nargs="+", default=[0.006, 0.024],
                        help="S/B in the signal region with --seeds seeds each: 0.6 %% (the published comparison's) "
                        "and 2.4 %% (the published S/sqrt(B) of about 2.2 with our smaller background)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per --s-over-b point (>= 5 for the band)")
    parser.add_argument("--scan", type=float, nargs="*", default=[0.003, 0.001, 0.012, 0.048],
                        help="further S/B points")
    parser.add_argument("--scan-seeds", type=int, default=3, help="seeds per --scan point")
    parser.add_argument("--correlated-s-over-b", type=float, nargs="*", default=[0.024],
                        help="S/B of the run with mjj-correlated features")
    parser.add_argument("--correlated-seeds", type=int, default=3, help="seeds of the correlated run (0: skip)")
    parser.add_argument("--methods", nargs="+", default=list(lhco.PROTOCOL_METHODS), choices=lhco.PROTOCOL_METHODS)
    parser.add_argument("--epochs", type=int, default=30, help="maximum epochs of the flows (early stopping)")
    parser.add_argument("--classifier-epochs", type=int, default=100,
                        help="epochs of every classifier (the 10 best are averaged)")
    parser.add_argument("-j", "--workers", type=int, default=None, help="generation and dask workers")
    parser.add_argument("--summary-only", action="store_true",
                        help="train nothing: summarise the results already in OUTPUT/results.json")
    arguments = parser.parse_args(argv)
    if arguments.summary_only:
        results = json.loads((Path(arguments.output) / "results.json").read_text())
    else:
        results = run(arguments)
    summary = summarise(results, arguments.methods)
    folder = Path(arguments.output)
    plot_scan(summary, arguments.methods, folder / "max_sic_vs_s_over_b.png")
    for variant, s_over_b in sorted({(v, s) for v, s, _ in summary}, key=lambda k: (k[0] != "nominal", -k[1])):
        any_row = next(row for (v, s, _), row in summary.items() if (v, s) == (variant, s_over_b))
        print(f"\n{variant} features, S/B = {100 * s_over_b:.2f} % in the signal region "
              f"({any_row['n_signal_signal_region']} W' events, S/sqrt(B) = {any_row['s_over_sqrt_b']:.2f}):")
        print(table(summary, arguments.methods, variant, s_over_b))
    write_json(folder / "summary.json", {"/".join(map(str, k)): v for k, v in summary.items()})
    print(f"\nplots and summary in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
