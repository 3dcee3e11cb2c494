"""Null test (a) of cross-training at full scale: on background only, a cut on a weakly supervised score must pass
the same signal-region/sideband ratio on its own training events as on an independent sample.

Samples: the QCD feature tables of ../shared/data/lhco_like (10 x 100k events; files 401-405 are sample A,
files 406-410 sample B; each file is given its own run number, so that the event ids are unique), the events of
2.9-4.1 TeV (the 3.3-3.7 TeV signal region and 400 GeV sidebands), the same number in both samples. Without
../shared, two QCD samples are generated and their features computed (``--generate`` events each, cached;
smaller, slower). Every configuration is trained on A and compared with B, then trained on B and compared with
A: the two samples differ by their own statistical fluctuation, common to all seeds, which enters the two
directions with opposite signs, while a bias of the training events enters both with the same sign; the mean
pull of the two directions measures that bias.

For every method, number of folds and seed: train on the training sample, cut at ``--efficiency`` of the
sidebands of each sample, and compare the SR/SB pass-fraction ratio (binomial errors) on the training events
with the independent one; the pull is their difference over the combined error. The local Z is a counting
significance of the signal region after the cut against the sideband pass fraction times the signal-region
events (flat-efficiency expectation, as a sideband fit would assume): Z = sign(n - b) sqrt(2 (n ln(n/b) - n + b)).

    python benchmarks/null_tests.py                                    # CWoLa, folds 1 and 5, seeds 1-3
    python benchmarks/null_tests.py --methods cwola cathode --events 60000 --seeds 2

Writes benchmarks/results/null_tests.json (``--output``).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from coffea_ad.paths import cache_dir, write_json

FEATURES = ["mj_min", "delta_mj", "tau21_j1", "tau21_j2"]
SIGNAL_REGION = (3300.0, 3700.0)
WINDOW = (2900.0, 4100.0)
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lhco_like"
TRAINING_FILES = (401, 402, 403, 404, 405)
INDEPENDENT_FILES = (406, 407, 408, 409, 410)


def _window(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.dropna(subset=["mjj", *FEATURES])
    return frame[(frame.mjj >= WINDOW[0]) & (frame.mjj < WINDOW[1])]


def shared_samples(n_events: int | None) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(sample A, sample B, description) from the shared QCD tables, ``n_events`` window events each."""
    columns = ["run", "luminosityBlock", "event", "mjj", *FEATURES]
    samples = []
    for files in (TRAINING_FILES, INDEPENDENT_FILES):
        frames = []
        for seed in files:
            frame = pd.read_parquet(SHARED / f"qcd_100k_seed{seed}.parquet", columns=columns)
            frame["run"] = np.uint32(seed)  # every file has run 1 and events 1..N: one run per file
            frames.append(_window(frame))
        samples.append(pd.concat(frames, ignore_index=True))
    n = min(len(samples[0]), len(samples[1]), n_events or sys.maxsize)
    first, second = (sample.iloc[:n].reset_index(drop=True) for sample in samples)
    return first, second, f"shared/data/lhco_like: A = files {TRAINING_FILES}, B = files {INDEPENDENT_FILES}"


def generated_samples(n_generated: int, n_events: int | None) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(sample A, sample B, description) from two generated QCD samples (cached)."""
    from coffea_ad.generate import cached_sample
    from coffea_ad.workflow.features import run_features

    samples = []
    for seed in (401, 406):
        folder = cache_dir() / "null_tests"
        path = cached_sample(folder, "qcd_dijet", n_generated, seed=seed, settings={"fatjet_radius": 1.0})
        features = folder / f"features_{path.stem}"
        table = features / "features" / "qcd.parquet"
        if not table.exists():
            run_features({"qcd": {"files": {str(path): "Events"}}}, features, mode="virtual", workers=1)
        frame = pd.read_parquet(table)
        frame["run"] = np.uint32(seed)
        samples.append(_window(frame))
    n = min(len(samples[0]), len(samples[1]), n_events or sys.maxsize)
    first, second = (sample.iloc[:n].reset_index(drop=True) for sample in samples)
    return first, second, f"generated qcd_dijet, {n_generated} events: A = seed 401, B = seed 406"


def cut_statistics(scores: np.ndarray, mjj: np.ndarray, efficiency: float) -> dict[str, float]:
    """SR/SB pass-fraction ratio (and binomial error) and the counting Z of a cut at ``efficiency`` of the
    sidebands."""
    in_sr = (mjj >= SIGNAL_REGION[0]) & (mjj < SIGNAL_REGION[1])
    cut = np.quantile(scores[~in_sr], 1.0 - efficiency)
    n_sr, n_sb = int(in_sr.sum()), int((~in_sr).sum())
    passed = int((scores[in_sr] > cut).sum())
    p_sr, p_sb = passed / n_sr, float((scores[~in_sr] > cut).mean())
    ratio = p_sr / p_sb
    error = ratio * np.sqrt((1 - p_sr) / (p_sr * n_sr) + (1 - p_sb) / (p_sb * n_sb))
    expected = n_sr * p_sb
    z = np.sign(passed - expected) * np.sqrt(2 * (passed * np.log(passed / expected) - passed + expected))
    return {"ratio": ratio, "error": float(error), "passed_sr": passed, "expected_sr": expected, "local_z": float(z)}


def estimator(method: str, folds: int, seed: int, epochs: int, patience: int | None, device: str):
    """The estimator of one run: the methods' usual sizes, ``epochs`` epochs, early stopping after ``patience``
    epochs without a better validation loss (``None``: never)."""
    from coffea_ad.models import get_estimator

    training = {"epochs": epochs, "batch_size": 512, "patience": patience, "progress": False}
    if method == "cathode":
        return get_estimator(method)(
            transforms=4, oversampling=4, folds=folds, seed=seed, device=device,
            training={**training, "classifier": {"keep_best": 5}},
        )
    return get_estimator(method)(folds=folds, training=training, seed=seed, device=device)


def run(arguments: argparse.Namespace) -> dict:
    """Every (method, folds, seed, direction): fit on one sample, the cut statistics on both."""
    if SHARED.is_dir() and not arguments.generate:
        first, second, source = shared_samples(arguments.events)
    else:
        first, second, source = generated_samples(arguments.generate or 20000, arguments.events)
    print(f"{len(first)} events of {WINDOW[0]:g}-{WINDOW[1]:g} GeV in each sample ({source})")
    directions = [("A", first, second), ("B", second, first)]
    rows = []
    for method in arguments.methods:
        for folds in arguments.folds:
            for seed, (name, training, independent) in itertools.product(range(1, arguments.seeds + 1), directions):
                start = time.perf_counter()
                patience = arguments.patience or None
                model = estimator(method, folds, seed, arguments.epochs, patience, arguments.device)
                model.fit(training, FEATURES, signal_region=SIGNAL_REGION)
                on_training = cut_statistics(model.score(training), training.mjj.to_numpy(), arguments.efficiency)
                on_independent = cut_statistics(
                    model.score(independent), independent.mjj.to_numpy(), arguments.efficiency
                )
                pull = (on_training["ratio"] - on_independent["ratio"]) / np.hypot(
                    on_training["error"], on_independent["error"]
                )
                row = {"method": method, "folds": folds, "seed": seed, "trained_on": name, "training": on_training,
                       "independent": on_independent, "pull": float(pull), "seconds": time.perf_counter() - start}
                rows.append(row)
                print(_line(row), flush=True)
    summary = {}
    for method, folds in itertools.product(arguments.methods, arguments.folds):
        pulls = [row["pull"] for row in rows if row["method"] == method and row["folds"] == folds]
        summary[f"{method}/folds={folds}"] = {"mean_pull": float(np.mean(pulls)), "runs": len(pulls)}
        print(f"{method}, folds={folds}: mean pull over seeds and both directions {np.mean(pulls):+.2f}")
    return {
        "source": source,
        "events_per_sample": len(first),
        "summary": summary,
        "window": WINDOW,
        "signal_region": SIGNAL_REGION,
        "sideband_efficiency": arguments.efficiency,
        "epochs": arguments.epochs,
        "patience": arguments.patience or None,
        "runs": rows,
    }


def _line(row: dict) -> str:
    training, independent = row["training"], row["independent"]
    return (
        f"| {row['method']} | {row['folds']} | {row['seed']} | {row['trained_on']} | "
        f"{training['ratio']:.3f} ± {training['error']:.3f} | "
        f"{independent['ratio']:.3f} ± {independent['error']:.3f} | {row['pull']:+.2f} | "
        f"{training['local_z']:+.2f} | {independent['local_z']:+.2f} | {row['seconds']:.0f} s |"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the null tests, print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=["cwola"], choices=["cwola", "bdt", "cathode"])
    parser.add_argument("--folds", nargs="+", type=int, default=[1, 5])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--events", type=int, default=None, help="window events per sample (default: all)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--patience", type=int, default=5, help="early-stopping patience (0: train every epoch)")
    parser.add_argument("--efficiency", type=float, default=0.05, help="sideband efficiency of the cut")
    parser.add_argument("--generate", type=int, default=0, help="generate QCD samples of this size instead")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--output", default=Path(__file__).resolve().parent / "results" / "null_tests.json")
    arguments = parser.parse_args(argv)
    print("| method | folds | seed | trained on | SR/SB ratio, training events | independent | pull | Z training | "
          "Z independent | time |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    results = run(arguments)
    Path(arguments.output).parent.mkdir(parents=True, exist_ok=True)
    write_json(arguments.output, results)
    print(f"wrote {arguments.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
