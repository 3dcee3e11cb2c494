"""Feature-processor throughput per core, next to a bare uproot read of the same branches in the same run.

Measured on the same files, in this order, after one untimed read that warms the page cache:

1. bare read: ``uproot`` reads exactly the branches the features need (plus the event ids), one core;
2. processor, one core: ``AnomalyFeatureProcessor`` through ``coffea.processor.Runner`` (virtual
   NanoEvents) in this process; the time ratio processor / bare read is the cost of the physics
   (goal: <= 1.5);
3. processor in dask mode (``preprocess`` -> ``apply_to_fileset`` -> compute) on a ``LocalCluster`` with 1
   and with 2 worker processes, the events split into ``--partitions`` chunks: events/s and the speedup
   1 -> 2 workers (each after one untimed run that warms the workers).

    python benchmarks/feature_throughput.py [FILE.root ...] [--fileset FILESET.json] [--events N]

Without files, a QCD dijet sample of ``--events`` events (default 100000) is generated once with
``coffea_ad.generate`` into the coffea_ad cache and reused.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import uproot

from coffea_ad.processing import check_fileset, dask_client, load_fileset, normalize_fileset, run_processor
from processors import AnomalyFeatureProcessor
from coffea_ad.features import FEATURES, FeatureConfig
from coffea_ad.paths import cache_dir
from coffea_ad.processing.tables import EVENT_ID_COLUMNS


def generated_sample(process: str, n_events: int, seed: int) -> Path:
    """A cached generated sample (generated on first use with every core)."""
    from coffea_ad.generate import generate, read_sample_metadata

    path = cache_dir() / f"benchmark_{process}_{n_events}_seed{seed}.root"
    if path.exists() and read_sample_metadata(path)["n_events"] == n_events:
        return path
    print(f"generating {n_events} {process} events into {path} (once)", flush=True)
    generate(process, n_events, path, seed=seed, workers=os.cpu_count(), progress=True)
    return path


def needed_branches(config: FeatureConfig) -> list[str]:
    """The branches the features read, plus the event ids the table keeps."""
    branches = {branch for feature in FEATURES.values() for branch in feature.required_branches(config)}
    return sorted(branches | set(EVENT_ID_COLUMNS))


def bare_read(files: dict[str, str], branches: list[str], step_size: int) -> float:
    """Seconds to read ``branches`` of every file with uproot, in chunks of ``step_size`` entries."""
    start = time.perf_counter()
    for path, tree in files.items():
        for _ in uproot.open(path)[tree].iterate(branches, step_size=step_size, library="ak"):
            pass
    return time.perf_counter() - start


def timed_run(checked, **options) -> float:
    start = time.perf_counter()
    run_processor(checked, make_processor=AnomalyFeatureProcessor, **options)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, help="NanoAOD files (tree Events)")
    parser.add_argument("--fileset", type=Path, help="coffea fileset JSON instead of files")
    parser.add_argument("--events", type=int, default=100_000, help="events to generate without files (100000)")
    parser.add_argument("--process", default="qcd_dijet", help="process to generate without files (qcd_dijet)")
    parser.add_argument("--step-size", type=int, default=100_000, help="events per chunk, 1-core runs (100000)")
    parser.add_argument("--partitions", type=int, default=8, help="dask partitions for the 1 vs 2 worker runs (8)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=RuntimeWarning)  # coffea: absent cross-references

    if args.fileset:
        fileset = load_fileset(args.fileset)
    else:
        files = args.files or [generated_sample(args.process, args.events, seed=1)]
        fileset = normalize_fileset({"benchmark": [str(path) for path in files]})
    checked, skipped = check_fileset(fileset)
    if skipped:
        print(f"skipped {len(skipped)} unreadable files: {[entry.path for entry in skipped]}")
    n_events = sum(files.n_entries for files in checked.values())
    all_files = {path: tree for files in checked.values() for path, tree in files.files.items()}
    branches = needed_branches(FeatureConfig())
    options = {"optional": True, "step_size": args.step_size}

    bare_read(all_files, branches, args.step_size)  # warm the page cache
    bare = bare_read(all_files, branches, args.step_size)
    one_core = timed_run(checked, mode="virtual", client=None, **options)
    dask_options = {"optional": True, "step_size": max(1, -(-n_events // args.partitions))}
    dask_seconds = {}
    for workers in (1, 2):
        with dask_client(None, workers) as client:
            timed_run(checked, mode="dask", client=client, **dask_options)  # warm the workers' imports
            dask_seconds[workers] = timed_run(checked, mode="dask", client=client, **dask_options)

    print(f"{n_events} events in {len(all_files)} files, {len(branches)} branches, step size {args.step_size} "
          f"(dask runs: {dask_options['step_size']})")
    print("| measurement | seconds | events/s | events/s/core |")
    print("|---|---|---|---|")
    print(f"| bare uproot read of the same branches (1 core) | {bare:.2f} | {n_events / bare:.0f} | "
          f"{n_events / bare:.0f} |")
    print(f"| feature processor, virtual, 1 core | {one_core:.2f} | {n_events / one_core:.0f} | "
          f"{n_events / one_core:.0f} |")
    for workers, seconds in dask_seconds.items():
        print(f"| feature processor, dask, {workers} worker(s) | {seconds:.2f} | {n_events / seconds:.0f} | "
              f"{n_events / seconds / workers:.0f} |")
    print(f"time ratio processor / bare read (1 core): {one_core / bare:.2f}  (goal <= 1.5)")
    print(f"speedup 1 -> 2 dask workers: {dask_seconds[1] / dask_seconds[2]:.2f}")


if __name__ == "__main__":
    main()
