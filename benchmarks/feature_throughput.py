"""Feature- and score-processor throughput per core, next to a bare uproot read of the same branches in the same run.

Measured on the same events, each measurement the fastest of ``--repeat`` runs (3) after an untimed one
(page cache, imports, workers warm), the runs of the in-process measurements interleaved, then those of each
cluster: a fileset of ``--copies``
symbolic links to one sample (default 4 links to 100k generated QCD events), so that the dask runs have
several partitions at the default chunk size.

1. bare read: ``uproot`` reads exactly the branches the features need (plus the event ids and ``genWeight``,
   which the table keeps), one core, in chunks of ``--step-size`` entries;
2. feature processor, virtual mode, one core: ``AnomalyFeatureProcessor`` through ``coffea.processor.Runner``
   in this process (``run_processor(mode="virtual")``, per-event tables gathered in memory); the time ratio
   processor / bare read is the cost of the physics (goal <= 2); again with the tables written as parquet by
   the tasks (what ``coffea-ad features`` does);
3. score processor, virtual mode, one core: ``AnomalyScoreProcessor`` with an autoencoder, then with an
   autoencoder and a MAF (trained here for 3 epochs as ``score_throughput.py`` does, exported to ONNX), each
   with its score x mjj histograms, on the same files: the time ratio score / feature processor is the cost of
   adding anomaly scores (goal <= 1.10);
4. feature processor in dask mode (steps -> ``apply_to_fileset`` -> compute) on a ``LocalCluster`` of
   1 and of 2 worker processes at the same chunk size, tables written by the workers, each after one untimed
   run that warms the workers: events/s per core against the virtual mode with tables written (goal >= 0.8),
   the speed-up 1 -> 2 workers (goal >= 1.8), each worker's resident memory when idle and its peak during one
   more such run (Linux ``VmHWM``, reset before the run); and with 1 worker and the tables gathered into the
   client.

    python benchmarks/feature_throughput.py [FILE.root] [--events N] [--copies K]

Without a file, a QCD dijet sample of ``--events`` events (default 100000) is generated once with
``coffea_ad.generate`` into the coffea_ad cache and reused. Prints a table and writes
``benchmarks/results/feature_throughput.json`` (``--output``).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import uproot

from coffea_ad.features import FEATURES, FeatureConfig
from coffea_ad.paths import cache_dir
from coffea_ad.processing import check_fileset, dask_client, normalize_fileset, run_processor
from coffea_ad.processing.tables import EVENT_ID_COLUMNS, WEIGHT_BRANCH
from processors import AnomalyFeatureProcessor, AnomalyScoreProcessor
from timing import best_of

RESULTS = Path(__file__).resolve().parent / "results" / "feature_throughput.json"


def generated_sample(process: str, n_events: int, seed: int) -> Path:
    """A cached generated sample (generated on first use with every core)."""
    from coffea_ad.generate import generate, read_sample_metadata

    path = cache_dir() / f"benchmark_{process}_{n_events}_seed{seed}.root"
    if path.exists() and read_sample_metadata(path)["n_events"] == n_events:
        return path
    print(f"generating {n_events} {process} events into {path} (once)", flush=True)
    generate(process, n_events, path, seed=seed, workers=os.cpu_count(), progress=True)
    return path


def needed_branches(config: FeatureConfig, available: set[str]) -> list[str]:
    """The branches the features read, plus those the table keeps: the event ids and ``genWeight`` (when the
    file has it)."""
    branches = {branch for feature in FEATURES.values() for branch in feature.required_branches(config)}
    return sorted(branches | set(EVENT_ID_COLUMNS) | ({WEIGHT_BRANCH} & available))


def bare_read(files: dict[str, str], branches: list[str], step_size: int) -> float:
    """Seconds to read ``branches`` of every file with uproot, in chunks of ``step_size`` entries."""
    start = time.perf_counter()
    for path, tree in files.items():
        for _ in uproot.open(path)[tree].iterate(branches, step_size=step_size, library="ak"):
            pass
    return time.perf_counter() - start


def timed_run(checked, make_processor, **options) -> None:
    run_processor(checked, make_processor=make_processor, **options)


def interleaved(measurements: dict, repeat: int) -> dict[str, float]:
    """The fastest of ``repeat`` runs of each measurement, after one untimed run of each (page cache, imports,
    workers warm); the runs interleaved, so that a slower spell of the machine slows every measurement alike."""
    for run in measurements.values():
        run()
    seconds = {name: float("inf") for name in measurements}
    for _ in range(repeat):
        for name, run in measurements.items():
            seconds[name] = min(seconds[name], best_of(run, 1))
    return seconds


def links(sample: Path, copies: int, folder: Path) -> list[str]:
    """``copies`` symbolic links to ``sample`` under different names in ``folder``."""
    paths = []
    for index in range(copies):
        path = folder / f"{sample.stem}_copy{index:02d}.root"
        path.symlink_to(sample.resolve())
        paths.append(str(path))
    return paths


def exported_models(sample: Path, folder: Path) -> dict[str, str]:
    """The autoencoder and MAF of ``score_throughput.py`` trained on ``sample``, exported to ONNX in ``folder``."""
    from score_throughput import events_of, trained_models

    return {name: str(path) for name, (_, path) in trained_models(events_of([sample], "eager"), folder).items()}


def _reset_peak_rss() -> float:
    """Reset this process's peak resident memory (Linux: ``clear_refs`` 5) and return its resident memory, MB."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_mb("VmRSS")


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def worker_memory_mb(client, run) -> dict[str, list[float]]:
    """Each worker's resident memory before ``run()`` and its peak during it (MB; the peak is reset first, so
    earlier runs on the same workers do not count)."""
    before = client.run(_reset_peak_rss)
    run()
    peak = client.run(_status_mb, "VmHWM")
    return {"idle": [before[worker] for worker in sorted(before)], "peak": [peak[worker] for worker in sorted(peak)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", type=Path, help="NanoAOD file (tree Events); default: generated QCD")
    parser.add_argument("--events", type=int, default=100_000, help="events to generate without a file (100000)")
    parser.add_argument("--process", default="qcd_dijet", help="process to generate without a file (qcd_dijet)")
    parser.add_argument("--copies", type=int, default=4, help="links to the sample in the fileset (4)")
    parser.add_argument("--step-size", type=int, default=100_000, help="events per chunk in every run (100000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement, the fastest kept (3)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="results JSON")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=RuntimeWarning)  # coffea: absent cross-references

    sample = args.file or generated_sample(args.process, args.events, seed=1)
    with tempfile.TemporaryDirectory(prefix="coffea_ad_throughput_") as folder:
        fileset = normalize_fileset({"benchmark": links(sample, args.copies, Path(folder))})
        checked, _ = check_fileset(fileset)
        n_events = sum(files.n_entries for files in checked.values())
        all_files = {path: tree for files in checked.values() for path, tree in files.files.items()}
        branches = needed_branches(FeatureConfig(), set(uproot.open(str(sample))["Events"].keys()))
        options = {"optional": True, "step_size": args.step_size}
        models = exported_models(sample, Path(folder))
        edges = {name: np.linspace(-20.0, 20.0, 81) for name in models}
        scorers = {
            "score processor (autoencoder), virtual": functools.partial(
                AnomalyScoreProcessor, {"autoencoder": models["autoencoder"]},
                score_edges={"autoencoder": edges["autoencoder"]},
            ),
            "score processor (autoencoder + MAF), virtual": functools.partial(
                AnomalyScoreProcessor, models, score_edges=edges
            ),
        }
        written = iter(range(100))

        def on_workers() -> dict:
            return {"tables": "workers", "table_folder": str(Path(folder) / f"tables{next(written)}")}

        in_process = {
            "bare read": lambda: bare_read(all_files, branches, args.step_size),
            "feature processor, virtual": lambda: timed_run(checked, AnomalyFeatureProcessor, mode="virtual",
                                                            **options),
            "feature processor, virtual, tables written": lambda: timed_run(
                checked, AnomalyFeatureProcessor, mode="virtual", **options, **on_workers()
            ),
            **{name: functools.partial(timed_run, checked, scorer, mode="virtual", **options)
               for name, scorer in scorers.items()},
        }
        seconds = interleaved(in_process, args.repeat)
        peaks = {}
        # One cluster at a time: a LocalCluster's scheduler runs in this process and would slow the others.
        for workers in (1, 2):
            with dask_client(None, workers) as client:
                runs = {
                    f"feature processor, dask, tables written, {workers} worker(s)": functools.partial(
                        lambda client: timed_run(checked, AnomalyFeatureProcessor, mode="dask", client=client,
                                                 **options, **on_workers()), client)
                }
                if workers == 1:
                    runs["feature processor, dask, 1 worker(s)"] = functools.partial(
                        timed_run, checked, AnomalyFeatureProcessor, mode="dask", client=client, **options
                    )
                seconds.update(interleaved(runs, args.repeat))
                written_run = runs[f"feature processor, dask, tables written, {workers} worker(s)"]
                peaks[workers] = worker_memory_mb(client, written_run)

    cores = {name: int(name.split(", ")[-1].split()[0]) if "worker" in name else 1 for name in seconds}
    virtual = seconds["feature processor, virtual"]
    dask_written = {workers: seconds[f"feature processor, dask, tables written, {workers} worker(s)"]
                    for workers in (1, 2)}
    virtual_written = seconds["feature processor, virtual, tables written"]
    ratios = {
        "feature processor / bare read (goal <= 2)": virtual / seconds["bare read"],
        "score processor (autoencoder) / feature processor (goal <= 1.10)":
            seconds["score processor (autoencoder), virtual"] / virtual,
        "score processor (autoencoder + MAF) / feature processor":
            seconds["score processor (autoencoder + MAF), virtual"] / virtual,
        "dask per core / virtual, tables written, 1 worker (goal >= 0.8)": virtual_written / dask_written[1],
        "dask per core / virtual, tables written, 2 workers (goal >= 0.8)": virtual_written / (2 * dask_written[2]),
        "dask per core / virtual, tables gathered, 1 worker": virtual / seconds["feature processor, dask, 1 worker(s)"],
        "speed-up 1 -> 2 dask workers, tables written (goal >= 1.8)": dask_written[1] / dask_written[2],
    }
    print(f"{n_events} events in {len(all_files)} files ({args.copies} links to {sample.name}), "
          f"{len(branches)} branches, {args.step_size} events per chunk")
    print("| measurement | seconds | events/s | events/s/core |")
    print("|---|---|---|---|")
    for name, value in seconds.items():
        print(f"| {name} | {value:.2f} | {n_events / value:,.0f} | {n_events / value / cores[name]:,.0f} |")
    for name, value in ratios.items():
        print(f"{name}: {value:.2f}")
    for workers, memory in peaks.items():
        print(f"worker memory, {workers} worker(s), tables written: idle {', '.join(f'{v:.0f}' for v in memory['idle'])} "
              f"MB, peak during one run {', '.join(f'{v:.0f}' for v in memory['peak'])} MB")
    record = {
        "date": datetime.date.today().isoformat(),
        "sample": sample.name,
        "events": n_events,
        "files": len(all_files),
        "step_size": args.step_size,
        "repeat": args.repeat,
        "cpu_count": os.cpu_count(),
        "seconds": seconds,
        "events_per_s_per_core": {name: n_events / value / cores[name] for name, value in seconds.items()},
        "ratios": ratios,
        "worker_memory_mb": {str(workers): memory for workers, memory in peaks.items()},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.output.with_name(f".{args.output.name}.tmp")
    temporary.write_text(json.dumps(record, indent=1) + "\n")
    temporary.replace(args.output)
    print(f"written {args.output}")


if __name__ == "__main__":
    main()
