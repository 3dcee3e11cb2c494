"""The LHC Olympics R&D comparison of weakly supervised methods, on coffea_ad's samples.

Follows the CATHODE study's protocol (Hallin et al., arXiv:2109.00546; see :mod:`coffea_ad.contrib.lhco`): W' events
injected into QCD at a chosen S/B in the 3.3-3.7 TeV signal region, features mj_min, Delta mj, tau21 of both
jets, every method trained on the "data" and evaluated on independent test events of the signal region by
its maximum SIC (FPR > 1/N_bkg,test); the median and 68 % band over several seeds (each seed draws other
injected events and trains other networks). Also: the scan in S/B, and a run with the jet-mass features
made to depend on mjj.

The published numbers (LHC Olympics R&D, S/B = 0.6 %) are printed beside ours as ratios to the supervised
classifier of the same study, since the samples differ.

Two sample sources:

* published scale (the default when ``../shared/data/lhco_like/`` holds the feature tables, or ``--tables FOLDER``):
  the data hold the published 121,352 QCD events in the signal region (:func:`coffea_ad.contrib.lhco.load_tables`),
  the S/B points are the published 772/121,352 = 0.64 % (3 seeds) and the scan 0.4, 0.25, 0.1 % (3 seeds each),
  and the results go to ``benchmarks/results/lhco_published_scale.json`` in the repository;
* generated (``--generated``, or when the tables are absent): smaller samples generated and cached on first use
  (60k + 60k + 40k QCD, 20k W': about 18 minutes on 2 free cores), S/B 0.6 and 2.4 %, results in
  ``OUTPUT/results.json``.

    python benchmarks/lhco_like.py                      # everything, as in the README table
    python benchmarks/lhco_like.py --classifier hgb --methods supervised iad cwola --seeds 1 --scan \
        --correlated-seeds 0                            # boosted-tree ensembles, one quick pass
    python benchmarks/lhco_like.py --classifier hgb --noise-features 10   # with 10 Gaussian noise features
    python benchmarks/lhco_like.py --classifier hgb --features extended   # plus tau32, tau43 of both jets
    python benchmarks/lhco_like.py --classifier hgb --tree-ensemble 50    # the paper's 50 tree models

One record per training (method, classifier, feature set, noise features, S/B, seed, max SIC, ratio to the supervised
classifier of the same setup, S/B and seed, ...) is written after every training, atomically, so an interrupted
run resumes where it stopped and a record already present is never retrained.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from coffea_ad.contrib import lhco
from coffea_ad.errors import ConfigurationError
from coffea_ad.models import get_estimator
from coffea_ad.paths import cache_dir, write_json

#: LHC Olympics R&D, S/B = 0.6 %: max SIC medians of the CATHODE study (arXiv:2109.00546).
PUBLISHED_MAX_SIC = {"supervised": 17.6, "iad": 15.1, "cathode": 14.0, "cwola": 10.8, "anode": 6.5}
#: The results of the published-scale runs, committed with the repository.
PUBLISHED_SCALE_RESULTS = Path(__file__).parent / "results" / "lhco_published_scale.json"
#: Defaults of the options that depend on the sample source: published-scale tables or generated samples.
MODE_DEFAULTS = {
    "tables": {
        "s_over_b": [lhco.PUBLISHED_S_OVER_B], "seeds": 3, "scan": list(lhco.PUBLISHED_SCAN), "scan_seeds": 3,
        "correlated_s_over_b": [lhco.PUBLISHED_S_OVER_B],
    },
    "generated": {
        "s_over_b": [0.006, 0.024], "seeds": 5, "scan": [0.003, 0.001, 0.012, 0.048], "scan_seeds": 3,
        "correlated_s_over_b": [0.024],
    },
}


def setup(
    variant: str,
    method: str,
    classifier: str,
    noise_features: int,
    feature_set: str = "nominal",
    tree_ensemble: int = lhco.TREE_ENSEMBLE,
) -> str:
    """The name of a training setup: the variant, the classifier of a classifier-based method unless the
    default MLP (with its number of tree models unless :data:`~coffea_ad.contrib.lhco.TREE_ENSEMBLE`), the feature
    set unless ``nominal`` and the number of noise features unless 0 (``nominal``, ``nominal/hgb/noise10``,
    ``nominal/hgb50``, ``nominal/hgb/extended``, ...)."""
    parts = [variant]
    if classifier != "mlp" and "classifier" in get_estimator(method).networks:
        parts.append(classifier if tree_ensemble == lhco.TREE_ENSEMBLE else f"{classifier}{tree_ensemble}")
    if feature_set != "nominal":
        parts.append(feature_set)
    if noise_features:
        parts.append(f"noise{noise_features}")
    return "/".join(parts)


def _key(setup_name: str, s_over_b: float, seed: int, method: str) -> str:
    return f"{setup_name}/{s_over_b:g}/{seed}/{method}"


def fill_ratios(records: dict) -> None:
    """Set ``ratio_to_supervised`` of every record: its max SIC over that of the supervised classifier of the
    same setup (variant, noise features, classifier; the MLP for ANODE), requested S/B and seed (``None`` while
    that one is not trained)."""
    supervised = {
        (r.get("setup", r["variant"]), r["requested_s_over_b"], r["seed"]): r["max_sic"]
        for r in records.values() if r["method"] == "supervised"
    }
    for record in records.values():
        reference_setup = record.get("setup", record["variant"])
        if record["method"] == "anode":
            reference_setup = setup(
                record["variant"], "supervised", "mlp", record.get("noise_features", 0), record.get("feature_set", "nominal")
            )
        reference = supervised.get((reference_setup, record["requested_s_over_b"], record["seed"]))
        record["ratio_to_supervised"] = record["max_sic"] / reference if reference else None


def _samples(arguments: argparse.Namespace) -> lhco.LHCOSamples:
    """The nominal samples: the published-scale tables, or generated samples (``arguments.tables`` is None)."""
    start = time.perf_counter()
    if arguments.tables is not None:
        samples = lhco.load_tables(arguments.tables, features=lhco.PROTOCOL_FEATURE_SETS[arguments.features])
        print(f"published-scale tables from {arguments.tables} read in {time.perf_counter() - start:.0f} s")
    else:
        if arguments.features != "nominal":
            raise ConfigurationError(
                f"--features {arguments.features} needs the published-scale tables: the generated samples hold the "
                "nominal features only"
            )
        folder = Path(arguments.output)
        paths = lhco.generate_samples(arguments.sample_folder, lhco.sample_sizes(arguments), workers=arguments.workers)
        print(f"samples ready in {time.perf_counter() - start:.0f} s: " + ", ".join(p.name for p in paths.values()))
        start = time.perf_counter()
        samples = lhco.load_samples(paths, folder / "features", workers=arguments.workers, progress=True)
        print(f"features in {time.perf_counter() - start:.0f} s")
    print(json.dumps(samples.describe()))
    return samples


def read_results(path: Path) -> dict:
    """The records of a results file (``{}`` when it does not exist yet)."""
    if not path.exists():
        return {}
    content = json.loads(path.read_text())
    records = content.get("records", content)  # results files before the published scale held the records only
    for record in records.values():
        record.setdefault("feature_set", "nominal")  # records from before --features trained the nominal set
    return records


def results_header(path: Path, samples: lhco.LHCOSamples, feature_set: str) -> dict:
    """The header of a results file: a description, and per feature set the samples' counts and provenance
    (``feature_sets``; the feature sets drop different rows with a null value). Those of other feature sets already
    in ``path`` are kept; a file from before the option holds the nominal set's at its top level."""
    content = json.loads(path.read_text()) if path.exists() else {}
    feature_sets = content.get("feature_sets", {})
    if "samples" in content:
        feature_sets.setdefault("nominal", {"samples": content["samples"], "provenance": content["provenance"]})
    feature_sets[feature_set] = {"samples": samples.describe(), "provenance": samples.provenance}
    return {
        "description": "LHC Olympics R&D protocol (coffea_ad.contrib.lhco, benchmarks/lhco_like.py): one record per "
        "training; max SIC on the test events of 3.3-3.7 TeV with FPR > 1/N_bkg,test (max_sic) and, in records "
        "written since it exists, with FPR >= 20/N_bkg,test (max_sic_robust)",
        "feature_sets": feature_sets,
    }


def run(arguments: argparse.Namespace) -> dict:
    """Train every (setup, S/B, seed, method) not yet in the results file and return all records."""
    Path(arguments.output).mkdir(parents=True, exist_ok=True)
    nominal = _samples(arguments)
    if arguments.noise_features:
        nominal = lhco.add_noise_features(nominal, arguments.noise_features)
    runs = [("nominal", s, seed) for s in arguments.s_over_b for seed in range(1, arguments.seeds + 1)]
    runs += [
        ("correlated", s, seed)
        for s in arguments.correlated_s_over_b
        for seed in range(1, arguments.correlated_seeds + 1)
    ]
    runs += [("nominal", s, seed) for s in arguments.scan for seed in range(1, arguments.scan_seeds + 1)]
    variants = {"nominal": nominal, "correlated": lhco.correlate_with_mjj(nominal)}
    results_path = Path(arguments.results)
    results = read_results(results_path)
    # the supervised reference first, so that every later record gets its ratio when it is written
    methods = sorted(arguments.methods, key=lambda method: method != "supervised")
    options = (arguments.classifier, arguments.noise_features, arguments.features, arguments.tree_ensemble)
    todo = [
        (variant, s_over_b, seed, method)
        for variant, s_over_b, seed in runs
        for method in methods
        if _key(setup(variant, method, *options), s_over_b, seed, method) not in results
    ]
    print(f"{len(todo)} trainings to run ({len(results)} already in {results_path})")
    header = results_header(results_path, nominal, arguments.features)
    for index, (variant, s_over_b, seed, method) in enumerate(todo, 1):
        name = setup(variant, method, *options)
        result = lhco.run_method(
            method, variants[variant], s_over_b, seed, epochs=arguments.epochs,
            classifier_epochs=arguments.classifier_epochs, classifier=arguments.classifier,
            tree_ensemble=arguments.tree_ensemble,
        )
        record = {
            "setup": name, "variant": variant, "feature_set": arguments.features,
            "noise_features": arguments.noise_features, "tree_ensemble": arguments.tree_ensemble,
            "requested_s_over_b": s_over_b, "flow_epochs": arguments.epochs,
            **{key: value for key, value in result.to_dict().items() if key != "sic_curve"},
        }
        # records another run wrote to the same file meanwhile are kept (runs of other methods may go in parallel)
        results = {**read_results(results_path), **results, _key(name, s_over_b, seed, method): record}
        fill_ratios(results)
        write_json(results_path, {**header, "records": results})
        ratio = record["ratio_to_supervised"]
        print(
            f"[{index}/{len(todo)}] {name:18s} S/B {s_over_b:.4f} seed {seed} {method:10s} max SIC "
            f"{result.max_sic:6.2f}  AUC {result.auc:.3f}  ratio {'—' if ratio is None else f'{ratio:.2f}'}  "
            f"({result.n_signal_signal_region} W' in SR, S/sqrt(B) {result.s_over_sqrt_b:.2f}; {result.seconds:.0f} s)",
            flush=True,
        )
    return results


def summarise(results: dict, methods: list[str]) -> dict:
    """Median and 68 % band of the max SIC, and the median ratio to supervised, per (setup, S/B, method)."""
    from coffea_ad.selection.metrics import seed_band

    groups: dict[tuple[str, float, str], list[dict]] = {}
    for record in results.values():
        key = (record.get("setup", record["variant"]), record["requested_s_over_b"], record["method"])
        groups.setdefault(key, []).append(record)
    summary = {}
    for (name, s_over_b, method), records in sorted(groups.items()):
        if method not in methods:
            continue
        band = seed_band([record["max_sic"] for record in records])
        ratios = [r["ratio_to_supervised"] for r in records if r.get("ratio_to_supervised") is not None]
        robust = [r["max_sic_robust"] for r in records if r.get("max_sic_robust") is not None]
        summary[(name, s_over_b, method)] = {
            "median": float(band.median), "lower": float(band.lower), "upper": float(band.upper),
            "robust_median": float(np.median(robust)) if robust else None,
            "ratio_to_supervised": float(np.median(ratios)) if ratios else None,
            "seeds": len(records), "s_over_sqrt_b": float(np.mean([r["s_over_sqrt_b"] for r in records])),
            "n_signal_signal_region": int(np.mean([r["n_signal_signal_region"] for r in records])),
        }
    return summary


def table(summary: dict, methods: list[str], setup_name: str, s_over_b: float) -> str:
    """The README table: ours (median, 68 % band, median ratio to our supervised of the same seed, and the median
    max SIC with at least :data:`~coffea_ad.contrib.lhco.ROBUST_MIN_BACKGROUND` test QCD events passing, for records
    that have it) next to the published numbers."""
    rows = {method: summary.get((setup_name, s_over_b, method)) for method in methods}
    lines = [
        "| method | max SIC, median [68 % band] | seeds | ratio to our supervised | max SIC, FPR ≥ "
        f"{lhco.ROBUST_MIN_BACKGROUND}/N | published max SIC | published ratio to supervised |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, row in rows.items():
        if row is None:
            continue
        ratio = "—" if row["ratio_to_supervised"] is None else f"{row['ratio_to_supervised']:.2f}"
        published = PUBLISHED_MAX_SIC.get(method)
        published_columns = (
            f"{published} | {published / PUBLISHED_MAX_SIC['supervised']:.2f}" if published else "— | —"
        )
        robust = "—" if row.get("robust_median") is None else f"{row['robust_median']:.2f}"
        lines.append(
            f"| {lhco.METHOD_LABELS[method]} | {row['median']:.2f} [{row['lower']:.2f}, {row['upper']:.2f}] | "
            f"{row['seeds']} | {ratio} | {robust} | {published_columns} |"
        )
    return "\n".join(lines)


def plot_scan(summary: dict, methods: list[str], options: tuple, path: Path) -> None:
    """Max SIC (median and 68 % band over seeds) against the injected S/B, one line per method of this run's
    setup (``options``: classifier, noise features, feature set, tree ensemble) with the nominal samples; the
    supervised classifier, which sees no injection, as a horizontal reference."""
    from coffea_ad import plotting
    from coffea_ad.selection.metrics import SeedBand

    scan: dict[str, dict[float, SeedBand]] = {}
    references: dict[str, float] = {}
    for method in methods:
        name = setup("nominal", method, *options)
        points = {s_over_b: row for (setup_name, s_over_b, row_method), row in summary.items()
                  if setup_name == name and row_method == method}
        if not points:
            continue
        if method == "supervised":
            references[lhco.METHOD_LABELS[method]] = float(np.median([row["median"] for row in points.values()]))
            continue
        scan[lhco.METHOD_LABELS[method]] = {
            s_over_b: SeedBand(median=row["median"], lower=row["lower"], upper=row["upper"])
            for s_over_b, row in points.items()
        }
    if not scan:
        return
    figure = plotting.plot_max_sic_scan(
        scan, xlabel="S/B in the signal region [%]", ylabel="max SIC (FPR > 1/N$_{bkg}$)", references=references,
    )
    plotting.save_figure(figure, path)


def resolve_mode(arguments: argparse.Namespace) -> str:
    """``"tables"`` (published scale) or ``"generated"``; fills in ``arguments.tables``, ``arguments.results`` and
    the mode-dependent defaults (:data:`MODE_DEFAULTS`) left at ``None``."""
    if arguments.generated:
        arguments.tables = None
    elif arguments.tables is None and lhco.tables_present():
        arguments.tables = lhco.default_tables_folder()
    mode = "generated" if arguments.tables is None else "tables"
    for name, value in MODE_DEFAULTS[mode].items():
        if getattr(arguments, name) is None:
            setattr(arguments, name, value)
    if arguments.results is None:
        arguments.results = PUBLISHED_SCALE_RESULTS if mode == "tables" else Path(arguments.output) / "results.json"
    return mode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", default=cache_dir() / "lhco_like", help="plots and summary")
    parser.add_argument("--tables", type=Path, default=None,
                        help="folder of the published-scale feature tables (default ../shared/data/lhco_like when "
                        "present)")
    parser.add_argument("--generated", action="store_true",
                        help="use generated samples (--*-events) even when the feature tables are present")
    parser.add_argument("--results", type=Path, default=None,
                        help="the results file (default: benchmarks/results/lhco_published_scale.json with the "
                        "tables, OUTPUT/results.json with generated samples)")
    lhco.add_sample_options(parser)
    parser.add_argument("--s-over-b", type=float, nargs="+", default=None,
                        help="S/B in the signal region with --seeds seeds each (tables: the published 0.64 %%; "
                        "generated: 0.6 %% and 2.4 %%, the published S/sqrt(B) with the smaller background)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per --s-over-b point (tables: 3, generated: 5)")
    parser.add_argument("--scan", type=float, nargs="*", default=None,
                        help="further S/B points (tables: 0.004 0.0025 0.001; generated: 0.003 0.001 0.012 0.048)")
    parser.add_argument("--scan-seeds", type=int, default=None, help="seeds per --scan point (3)")
    parser.add_argument("--correlated-s-over-b", type=float, nargs="*", default=None,
                        help="S/B of the run with mjj-correlated features (tables: 0.64 %%, generated: 2.4 %%)")
    parser.add_argument("--correlated-seeds", type=int, default=3, help="seeds of the correlated run (0: skip)")
    parser.add_argument("--methods", nargs="+", default=list(lhco.PROTOCOL_METHODS), choices=lhco.PROTOCOL_METHODS)
    parser.add_argument("--classifier", default="mlp", choices=lhco.PROTOCOL_CLASSIFIERS,
                        help="classifier of the classifier-based methods: the MLP of the CATHODE study or an "
                        "ensemble of boosted trees (arXiv:2309.13111)")
    parser.add_argument("--features", default="nominal", choices=list(lhco.PROTOCOL_FEATURE_SETS),
                        help="feature set (tables only): nominal = mj_min, delta_mj, tau21 of both jets (the R&D "
                        "comparison); extended = plus tau32 and tau43 of both jets (arXiv:2309.13111)")
    parser.add_argument("--tree-ensemble", type=int, default=lhco.TREE_ENSEMBLE,
                        help=f"boosted-tree models averaged per classifier with --classifier hgb (default "
                        f"{lhco.TREE_ENSEMBLE}; arXiv:2309.13111 averages 50)")
    parser.add_argument("--noise-features", type=int, default=0,
                        help="append this many Gaussian noise features to the features (arXiv:2309.13111 uses 10)")
    parser.add_argument("--epochs", type=int, default=30, help="maximum epochs of the flows (early stopping)")
    parser.add_argument("--classifier-epochs", type=int, default=100,
                        help="epochs of every MLP classifier (the 10 best are averaged)")
    parser.add_argument("-j", "--workers", type=int, default=None, help="generation and dask workers")
    parser.add_argument("--summary-only", action="store_true",
                        help="train nothing: summarise the records already in the results file")
    arguments = parser.parse_args(argv)
    mode = resolve_mode(arguments)
    print(f"samples: {'published-scale tables in ' + str(arguments.tables) if mode == 'tables' else 'generated'}; "
          f"results in {arguments.results}")
    results = read_results(Path(arguments.results)) if arguments.summary_only else run(arguments)
    summary = summarise(results, arguments.methods)
    folder = Path(arguments.output)
    folder.mkdir(parents=True, exist_ok=True)
    options = (arguments.classifier, arguments.noise_features, arguments.features, arguments.tree_ensemble)
    plot_scan(summary, arguments.methods, options, folder / "max_sic_vs_s_over_b.png")
    points = sorted({(n, s) for n, s, _ in summary}, key=lambda k: (not k[0].startswith("nominal"), k[0], -k[1]))
    for name, s_over_b in points:
        any_row = next(row for (n, s, _), row in summary.items() if (n, s) == (name, s_over_b))
        print(f"\n{name}, S/B = {100 * s_over_b:.2f} % in the signal region "
              f"({any_row['n_signal_signal_region']} W' events, S/sqrt(B) = {any_row['s_over_sqrt_b']:.2f}):")
        print(table(summary, arguments.methods, name, s_over_b))
    write_json(folder / "summary.json", {"/".join(map(str, k)): v for k, v in summary.items()})
    print(f"\nplots and summary in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
