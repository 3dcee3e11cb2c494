"""Benchmark of ``coffea-ad search``: signal injection, background only, and the wall time on 1 vs 2 workers.

The search (:func:`coffea_ad.workflow.search.run_search`, the sliding-window search of CMS arXiv:2412.03747) runs
on a QCD feature table: the first ``--events`` events of the shared QCD tables of ../shared/data/lhco_like
(files 401, 402, ...; each file is given its own run number, so that the event ids are unique), written once as
one combined parquet table in the cache folder (``coffea_ad.paths.cache_dir() / "benchmarks" / "search"``), and
the W' (3.5 TeV -> X 500 GeV, Y 100 GeV) table of the same folder as the injected signal. Without ../shared (or
with ``--generate N``), N QCD and N / 4 W' events are generated and their features computed (cached; smaller,
slower, and the benchmark says so).

The windows are the search's own auto windows of that table (two staggered sets of ~20 % windows over the fit
range above the turn-on), of which ``--windows`` are searched: the *true window* (the auto window holding the
largest fraction of the W' events), the next one above it (the other staggered set) and the others spread over
the auto windows above them, given to the search explicitly. Measured:

1. **Signal injection**: for every ``--s-over-sqrt-b`` target Z, ``n_signal`` W' events are injected, with
   n_signal = Z sqrt(B) / f (B: the QCD events in the true window, f: the fraction of the W' events in it).
   For each method, the local Z at the true window after each cut next to the inclusive local Z there (the
   same fit without a cut), the injected events kept by each cut, the global Z and the expected limit.
2. **Background only** (no injection): the largest local Z of the scan (windows x efficiencies, among the good
   sideband fits), the global Z with the trials factor, the number of poor sideband fits, per method.
3. **Wall time on 1 vs 2 workers** of the background-only search of ``--scaling-method`` (same data, same seed):
   both runs must give identical numbers (checked: thresholds and local Z of every window and efficiency).

Every search writes into a fresh folder (a window trained before would be reused, not retrained, and the time
would not be the training's); the folders stay in the cache folder (``index.html``, ``plots/local_p_scan.png``).

    python benchmarks/search.py --quick            # ~3 minute smoke run (small sample, 2 windows, 1 epoch)
    python benchmarks/search.py                    # the README numbers: 300k QCD, cathode and cwola (~25 min)
    python benchmarks/search.py --parts scaling --scaling-repeats 3   # remeasure only the 1 vs 2 worker times
    python benchmarks/search.py --methods cwola --events 200000 --epochs 5 --windows 4
    python benchmarks/search.py --epochs cathode=4 cwola=8          # better trained, about twice as long

Writes benchmarks/results/search.json (``--output``; ``--quick`` writes search_quick.json in the cache folder).
The default run takes about 25 minutes on 2 cores (4 CATHODE searches of ~4 minutes, 6 CWoLa searches of
~1.5 minutes). Run as a script, it imports the installed coffea_ad (``benchmarks/`` is first on sys.path, not
the checkout): from another checkout, set ``PYTHONPATH`` to it. The 1 vs 2 worker times are only as good as the
machine is quiet (each run records the load average when it starts).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from coffea_ad.paths import atomic_output, cache_dir, write_json

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lhco_like"
QCD_FILES = tuple(range(401, 411))
SIGNAL_FILE = "wprime_30k_seed451.parquet"
#: Run number of the injected W' events: unlike every QCD file's, so that no event id is shared.
SIGNAL_RUN = 451
FEATURES = ["mj_min", "delta_mj", "tau21_j1", "tau21_j2"]
COLUMNS = ["run", "luminosityBlock", "event", "mjj", *FEATURES]
#: Settings of the default run and of ``--quick``.
#: Epochs are per method (CATHODE's flow and classifier cost about 6 times CWoLa's classifier per epoch).
DEFAULTS = {"events": 300_000, "windows": 3, "epochs": {"cathode": 2, "cwola": 4}, "folds": 5,
            "s_over_sqrt_b": [1.0, 2.0, 3.0]}
QUICK = {"events": 100_000, "windows": 2, "epochs": {"cathode": 1, "cwola": 1}, "folds": 2, "s_over_sqrt_b": [3.0]}
#: Epochs of a method that the settings do not name.
OTHER_EPOCHS = 3
#: The measurements, in the order they run.
PARTS = ("background", "injection", "scaling")
#: What two result files must share for the parts of one to be kept beside those of the other.
SETTINGS = ("source", "events", "methods", "folds", "epochs", "seed", "efficiencies", "workers", "windows")


def benchmark_folder() -> Path:
    """The cache folder of this benchmark (tables and search outputs)."""
    folder = cache_dir() / "benchmarks" / "search"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _write_table(frame: pd.DataFrame, path: Path) -> Path:
    with atomic_output(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return path


def shared_samples(n_events: int, folder: Path) -> tuple[Path, Path, str]:
    """(QCD table, W' table, description): the first ``n_events`` events of the shared QCD files (401, 402, ...,
    as many as needed), one run number per file, and the W' file with run :data:`SIGNAL_RUN`, written once
    into ``folder``."""
    background = folder / f"qcd_shared_{n_events}.parquet"
    used = []
    if not background.is_file():
        frames, total = [], 0
        for seed in QCD_FILES:
            path = SHARED / f"qcd_100k_seed{seed}.parquet"
            if total >= n_events or not path.is_file():
                break
            frame = pd.read_parquet(path, columns=COLUMNS)
            frame["run"] = np.uint32(seed)  # every file has run 1 and events 1..N: one run per file
            frames.append(frame)
            used.append(seed)
            total += len(frame)
        if total < n_events:
            raise SystemExit(f"--events {n_events}: the shared QCD files hold only {total} events")
        _write_table(pd.concat(frames, ignore_index=True).iloc[:n_events], background)
    else:
        used = sorted(int(run) for run in pd.read_parquet(background, columns=["run"]).run.unique())
    signal = folder / "wprime_shared_30k_seed451.parquet"
    if not signal.is_file():
        frame = pd.read_parquet(SHARED / SIGNAL_FILE, columns=COLUMNS)
        frame["run"] = np.uint32(SIGNAL_RUN)
        _write_table(frame, signal)
    files = f"{used[0]}-{used[-1]}" if len(used) > 1 else str(used[0])
    return background, signal, f"shared/data/lhco_like: QCD files {files} ({n_events} events), W' {SIGNAL_FILE}"


def generated_samples(n_generated: int, folder: Path, workers: int) -> tuple[Path, Path, str]:
    """(QCD table, W' table, description) of ``n_generated`` generated QCD and ``n_generated // 4`` W' events
    (cached), with their features and one run number per sample."""
    from coffea_ad.generate import cached_sample
    from coffea_ad.workflow.features import run_features

    paths = []
    for name, process, n, run in (("qcd", "qcd_dijet", n_generated, 401),
                                  ("wprime", "wprime_xy", max(n_generated // 4, 1000), SIGNAL_RUN)):
        table = folder / f"{name}_generated_{n}.parquet"
        if not table.is_file():
            sample = cached_sample(folder / "generated", process, n, seed=run, settings={"fatjet_radius": 1.0},
                                   workers=workers)
            features = folder / "generated" / f"features_{sample.stem}"
            produced = features / "features" / f"{name}.parquet"
            if not produced.exists():
                run_features({name: {"files": {str(sample): "Events"}}}, features, features=["lhco"], workers=workers)
            frame = pd.read_parquet(produced, columns=COLUMNS)
            frame["run"] = np.uint32(run)
            _write_table(frame, table)
        paths.append(table)
    return paths[0], paths[1], f"generated: qcd_dijet {n_generated} events, wprime_xy {max(n_generated // 4, 1000)}"


def search_windows(background: pd.DataFrame, signal: pd.DataFrame, n_windows: int) -> dict:
    """The auto windows of the search on ``background`` (the same steps as ``run_search``), the true window
    (the one holding the largest fraction of the W' events) and the ``n_windows`` searched: the true window, the
    next one above it and the rest spread evenly over the windows above those."""
    from coffea_ad.stats.bumphunt import fit_range
    from coffea_ad.stats.search import auto_windows, mass_binning

    mjj = background.mjj.to_numpy()
    positive = mjj[mjj > 0]
    grid = mass_binning(float(positive.min()), float(positive.max()) * (1 + 1e-9))
    counts, _ = np.histogram(mjj, bins=grid)
    chosen = fit_range(counts, grid)
    windows = auto_windows(counts[chosen.first : chosen.stop], grid[chosen.first : chosen.stop + 1])
    signal_mjj = signal.mjj.dropna().to_numpy()
    fractions = [float(((signal_mjj >= w.low) & (signal_mjj < w.high)).mean()) for w in windows]
    true = int(np.argmax(fractions))
    searched = windows[true : true + 2][:n_windows]
    rest = windows[true + 2 :]
    if n_windows > len(searched) and rest:
        picks = np.linspace(0, len(rest) - 1, n_windows - len(searched) + 2)[1:-1]
        searched += [rest[int(round(pick))] for pick in np.unique(np.round(picks))]
    window = windows[true]
    return {
        "fit_range_GeV": [float(chosen.low), float(chosen.high)],
        "auto_windows": [w.name for w in windows],
        "searched": [(w.low, w.high) for w in searched],
        "true_window": window.name,
        "true_window_GeV": (window.low, window.high),
        "background_in_true_window": int(((mjj >= window.low) & (mjj < window.high)).sum()),
        "signal_fraction_in_true_window": fractions[true],
    }


def n_signal_for(target: float, windows: dict) -> int:
    """The W' events to inject for S / sqrt(B) = ``target`` in the true window."""
    return max(int(round(target * math.sqrt(windows["background_in_true_window"])
                         / windows["signal_fraction_in_true_window"])), 1)


def run_one(data: Path, output: Path, method: str, windows: dict, arguments: argparse.Namespace, *,
            workers: int, inject: Path | None = None, n_signal: int | None = None) -> tuple[dict, float]:
    """One search into a fresh ``output`` folder; (its result, the wall time of the call)."""
    from coffea_ad.workflow.search import run_search

    shutil.rmtree(output, ignore_errors=True)
    start = time.perf_counter()
    result = run_search(
        data, output, method=method, windows=windows["searched"], efficiencies=arguments.efficiencies,
        folds=arguments.folds, ensemble=1, seed=arguments.seed, inject=inject, n_signal=n_signal,
        training={"epochs": arguments.epochs[method]}, workers=workers, progress=arguments.progress,
    )
    return result, time.perf_counter() - start


def _window_entry(result: dict, name: str) -> dict:
    return next(window for window in result["windows"] if window["name"] == name)


def _global(test: dict | None) -> dict | None:
    if test is None:
        return None
    return {key: test[key] for key in ("name", "efficiency", "local_Z", "fit_ok", "global_Z", "global_p", "n_tests")}


def injection_numbers(result: dict, windows: dict, target: float, seconds: float) -> dict:
    """The numbers of an injected search at the true window."""
    window = _window_entry(result, windows["true_window"])
    inclusive = window["inclusive"]
    cuts = {}
    for cut in window["efficiencies"]:
        limit = cut.get("expected_limit") or {}
        cuts[f"{cut['efficiency']:g}"] = {
            "status": cut["status"],
            "local_Z": cut.get("local_Z"),
            "fit_ok": cut.get("fit_ok"),
            "fit_p_value": cut.get("fit_p_value"),
            "observed": cut.get("observed"),
            "background": cut.get("background"),
            "injected_after_cut": cut.get("injected_after_cut"),
            "expected_limit_mu": (limit.get("expected_mu") or limit.get("expected") or {}).get("median"),
            "observed_limit_mu": limit.get("observed_mu", limit.get("observed")),
        }
    injected = window["injected_in_window"]
    return {
        "method": result["method"],
        "target_s_over_sqrt_b": target,
        "n_signal": result["injection"]["n_signal"],
        "injected_in_window": injected,
        "s_over_sqrt_b": injected / math.sqrt(max(window["events_in_window"] - injected, 1)),
        "inclusive_local_Z": inclusive.get("local_Z"),
        "inclusive_fit_ok": inclusive.get("fit_ok"),
        "efficiencies": cuts,
        "global": _global(result["global"]),
        "seconds": seconds,
    }


def background_numbers(result: dict, seconds: float) -> dict:
    """The numbers of a background-only search: largest local Z, global Z, poor fits."""
    cuts = [cut for window in result["windows"] for cut in window["efficiencies"] if cut["status"] == "done"]
    inclusive = [window["inclusive"] for window in result["windows"] if window["inclusive"]["status"] == "done"]
    return {
        "method": result["method"],
        "global": _global(result["global"]),
        "inclusive_global": _global(result["inclusive_global"]),
        "largest_local_Z_any_fit": max((cut["local_Z"] for cut in cuts), default=None),
        "poor_fits": sum(not cut["fit_ok"] for cut in cuts),
        "poor_inclusive_fits": sum(not entry["fit_ok"] for entry in inclusive),
        "tests": len(cuts),
        "local_Z": {f"{window['name']}/{cut['efficiency']:g}": cut["local_Z"]
                    for window in result["windows"] for cut in window["efficiencies"] if cut["status"] == "done"},
        "seconds": seconds,
    }


def _fingerprint(result: dict) -> list[tuple]:
    """What two runs of the same search must agree on: per window and efficiency the threshold, events after
    the cut and local Z; and the inclusive local Z."""
    rows = []
    for window in result["windows"]:
        rows.append((window["name"], "inclusive", window["inclusive"].get("local_Z")))
        for cut in window["efficiencies"]:
            rows.append((window["name"], cut["efficiency"], cut["threshold"], cut["events_after_cut"],
                         cut.get("local_Z")))
    return rows


def scaling_numbers(ones: list[tuple[dict, float, float]], twos: list[tuple[dict, float, float]]) -> dict:
    """Wall time on 1 and 2 workers (median of the repeats; each run is (result, seconds, load average of the
    machine when it started)), their ratio and whether every run gave the same numbers as the first."""
    reference = _fingerprint(twos[0][0])
    one, two = float(np.median([run[1] for run in ones])), float(np.median([run[1] for run in twos]))
    return {
        "method": twos[0][0]["method"],
        "seconds_1_worker": one,
        "seconds_2_workers": two,
        "speedup": one / two,
        "identical_results": all(_fingerprint(run[0]) == reference for run in [*ones, *twos]),
        "runs_1_worker": [{"seconds": run[1], "load_average": run[2]} for run in ones],
        "runs_2_workers": [{"seconds": run[1], "load_average": run[2]} for run in twos],
    }


def _timed(data: Path, output: Path, method: str, windows: dict, arguments: argparse.Namespace,
           workers: int) -> tuple[dict, float, float]:
    load = os.getloadavg()[0]
    result, seconds = run_one(data, output, method, windows, arguments, workers=workers)
    print(f"  {method} background only on {workers} worker(s): {seconds:.0f} s (load average {load:.1f} at the "
          "start)", flush=True)
    return result, seconds, load


def run(arguments: argparse.Namespace) -> dict:
    """Prepare the tables, choose the windows, run every search and collect the numbers."""
    folder = benchmark_folder()
    if SHARED.is_dir() and not arguments.generate:
        background, signal, source = shared_samples(arguments.events, folder)
    else:
        print("../shared/data/lhco_like is not here (or --generate): generating smaller samples instead")
        background, signal, source = generated_samples(arguments.generate or 40_000, folder, arguments.workers)
    windows = search_windows(pd.read_parquet(background, columns=["mjj"]), pd.read_parquet(signal, columns=["mjj"]),
                             arguments.windows)
    print(f"data: {source}")
    print(f"auto windows: {', '.join(windows['auto_windows'])}; true window {windows['true_window']} GeV: "
          f"{windows['background_in_true_window']} QCD events, {windows['signal_fraction_in_true_window']:.1%} "
          f"of the W'; searched: {', '.join(f'{lo:.0f}-{hi:.0f}' for lo, hi in windows['searched'])}", flush=True)
    runs = folder / ("runs_quick" if arguments.quick else "runs")
    results: dict = {
        "source": source,
        "events": arguments.events if not (arguments.generate or not SHARED.is_dir()) else None,
        "methods": arguments.methods,
        "folds": arguments.folds,
        "epochs": arguments.epochs,
        "seed": arguments.seed,
        "efficiencies": arguments.efficiencies,
        "workers": arguments.workers,
        "windows": {key: value for key, value in windows.items() if key != "searched"},
        "injection": [],
        "background_only": [],
    }
    for method in arguments.methods:
        if "background" in arguments.parts:
            result, seconds = run_one(background, runs / f"{method}_background", method, windows, arguments,
                                      workers=arguments.workers)
            results["background_only"].append(background_numbers(result, seconds))
            print(_background_line(results["background_only"][-1]), flush=True)
        for target in arguments.s_over_sqrt_b if "injection" in arguments.parts else []:
            n_signal = n_signal_for(target, windows)
            result, seconds = run_one(background, runs / f"{method}_inject_z{target:g}", method, windows, arguments,
                                      workers=arguments.workers, inject=signal, n_signal=n_signal)
            results["injection"].append(injection_numbers(result, windows, target, seconds))
            print(_injection_line(results["injection"][-1], arguments.efficiencies), flush=True)
    if arguments.scaling_method and "scaling" in arguments.parts:
        method, ones, twos = arguments.scaling_method, [], []
        for repeat in range(arguments.scaling_repeats):
            twos.append(_timed(background, runs / f"{method}_scaling{repeat}_2workers", method, windows, arguments, 2))
            ones.append(_timed(background, runs / f"{method}_scaling{repeat}_1worker", method, windows, arguments, 1))
        results["scaling"] = scaling_numbers(ones, twos)
    print(f"search folders (index.html, plots/local_p_scan.png) in {runs}")
    return results


def _z(value) -> str:
    return "—" if value is None else f"{value:.2f}"


def _injection_line(row: dict, efficiencies: list[float]) -> str:
    cells = []
    for efficiency in efficiencies:
        cut = row["efficiencies"].get(f"{efficiency:g}", {})
        flag = "" if cut.get("fit_ok", True) else " (poor fit)"
        cells.append(f"{_z(cut.get('local_Z'))}{flag} ({cut.get('injected_after_cut', '—')} W')")
    return (f"| {row['method']} | {row['target_s_over_sqrt_b']:g} | {row['n_signal']} | {row['injected_in_window']} "
            f"| {row['s_over_sqrt_b']:.2f} | {_z(row['inclusive_local_Z'])} | " + " | ".join(cells)
            + f" | {_z((row['global'] or {}).get('global_Z'))} | {row['seconds']:.0f} s |")


def _background_line(row: dict) -> str:
    best = row["global"] or {}
    inclusive = row["inclusive_global"] or {}
    return (f"| {row['method']} | {_z(best.get('local_Z'))} ({best.get('name')}, eff {best.get('efficiency')}) "
            f"| {_z(best.get('global_Z'))} | {_z(inclusive.get('local_Z'))} | {_z(inclusive.get('global_Z'))} "
            f"| {row['poor_fits']}/{row['tests']} | {row['seconds']:.0f} s |")


def merge_previous(results: dict, path: Path, parts: list[str]) -> dict:
    """``results`` with the parts that were not run taken from the file at ``path``, when it holds results of
    the same settings (else ``results`` alone)."""
    if set(parts) == set(PARTS) or not path.is_file():
        return results
    previous = json.loads(path.read_text())
    different = [key for key in SETTINGS if json.dumps(previous.get(key)) != json.dumps(results.get(key))]
    if different:
        print(f"{path} holds results of other settings ({', '.join(different)}): not merged")
        return results
    keys = {"background": "background_only", "injection": "injection", "scaling": "scaling"}
    merged = {**previous, **{key: value for key, value in results.items() if key not in keys.values()}}
    for part, key in keys.items():
        if part in parts:
            merged[key] = results.get(key)
    merged["seconds"] = previous.get("seconds")
    merged["rerun"] = {"parts": list(parts), "seconds": results["seconds"]}
    return merged


def print_tables(results: dict) -> None:
    """The results as the README's markdown tables."""
    efficiencies = results["efficiencies"]
    windows = results["windows"]
    print(f"\nSignal injection at the true window {windows['true_window']} GeV "
          f"({windows['background_in_true_window']} QCD events, "
          f"{windows['signal_fraction_in_true_window']:.0%} of the W'): local Z")
    print("| method | target S/√B | injected | W' in window | S/√B | inclusive Z | "
          + " | ".join(f"Z, cut {e:g} (W' kept)" for e in efficiencies) + " | global Z | time |")
    print("|" + "---|" * (8 + len(efficiencies)))
    for row in results["injection"]:
        print(_injection_line(row, efficiencies))
    print("\nBackground only: largest local Z of the scan (good sideband fits) and global Z")
    print("| method | largest local Z | global Z | inclusive largest Z | inclusive global Z | poor fits | time |")
    print("|---|---|---|---|---|---|---|")
    for row in results["background_only"]:
        print(_background_line(row))
    if "scaling" in results:
        scaling = results["scaling"]
        print(f"\nWall time, {scaling['method']} background only: 1 worker {scaling['seconds_1_worker']:.0f} s, "
              f"2 workers {scaling['seconds_2_workers']:.0f} s (median of {len(scaling['runs_2_workers'])}), "
              f"speed-up {scaling['speedup']:.2f}; identical results: {scaling['identical_results']}; load average "
              f"at the start of each run: 1 worker {[run['load_average'] for run in scaling['runs_1_worker']]}, "
              f"2 workers {[run['load_average'] for run in scaling['runs_2_workers']]}")


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The options; ``--quick`` and the defaults fill in what is not given."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a ~3 minute smoke run (small sample, few windows)")
    parser.add_argument("--methods", nargs="+", default=["cathode", "cwola"])
    parser.add_argument("--events", type=int, default=None,
                        help=f"QCD events (default {DEFAULTS['events']}, --quick {QUICK['events']})")
    parser.add_argument("--windows", type=int, default=None,
                        help=f"windows searched: the true one, its staggered neighbour, the rest spread above (default "
                        f"{DEFAULTS['windows']})")
    parser.add_argument("--epochs", nargs="+", default=None, metavar="[METHOD=]N",
                        help="epochs of every network: N for every method, or METHOD=N (default "
                        + ", ".join(f"{m}={n}" for m, n in DEFAULTS["epochs"].items())
                        + "; --quick " + ", ".join(f"{m}={n}" for m, n in QUICK["epochs"].items()) + ")")
    parser.add_argument("--folds", type=int, default=None, help=f"cross-training folds (default {DEFAULTS['folds']})")
    parser.add_argument("--s-over-sqrt-b", type=float, nargs="+", default=None,
                        help="injected S/sqrt(B) in the true window (default 1 2 3)")
    parser.add_argument("--efficiencies", type=float, nargs="+", default=[0.1, 0.01])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("-j", "--workers", type=int, default=2, help="dask workers of every search")
    parser.add_argument("--scaling-method", default=None,
                        help="method of the 1 vs 2 worker measurement (default cwola, else the first of --methods; "
                        "'' to skip it)")
    parser.add_argument("--scaling-repeats", type=int, default=1,
                        help="pairs of runs (2 workers, then 1) of the scaling measurement, back to back")
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS,
                        help="the measurements to run (default all); with fewer, the others are kept from an "
                        "--output file of the same settings")
    parser.add_argument("--generate", type=int, default=0,
                        help="generate this many QCD events (and a quarter as many W') instead of ../shared")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    parser.add_argument("--output", default=None, help="the JSON written (default benchmarks/results/search.json)")
    arguments = parser.parse_args(argv)
    settings = QUICK if arguments.quick else DEFAULTS
    given_epochs = arguments.epochs
    for name, value in settings.items():
        if getattr(arguments, name) is None:
            setattr(arguments, name, value)
    arguments.epochs = {method: settings["epochs"].get(method, OTHER_EPOCHS) for method in arguments.methods}
    for text in given_epochs or []:
        method, _, number = text.rpartition("=")
        if method and method not in arguments.methods:
            parser.error(f"--epochs {text}: {method!r} is not one of --methods {' '.join(arguments.methods)}")
        if not number.isdigit() or int(number) < 1:
            parser.error(f"--epochs takes N or METHOD=N with N >= 1, got {text!r}")
        arguments.epochs.update({method: int(number)} if method else dict.fromkeys(arguments.methods, int(number)))
    if arguments.output is None:
        arguments.output = (benchmark_folder() / "search_quick.json" if arguments.quick
                            else Path(__file__).resolve().parent / "results" / "search.json")
    if arguments.scaling_method is None:
        arguments.scaling_method = "cwola" if "cwola" in arguments.methods else arguments.methods[0]
    if arguments.scaling_method and arguments.scaling_method not in arguments.methods:
        parser.error(f"--scaling-method {arguments.scaling_method!r}: not one of --methods")
    return arguments


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the tables and write the JSON."""
    arguments = parse_arguments(argv)
    start = time.perf_counter()
    results = run(arguments)
    results["seconds"] = time.perf_counter() - start
    results = merge_previous(results, Path(arguments.output), arguments.parts)
    print_tables(results)
    Path(arguments.output).parent.mkdir(parents=True, exist_ok=True)
    write_json(arguments.output, results)
    print(f"\n{results['seconds'] / 60:.1f} minutes; wrote {arguments.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
