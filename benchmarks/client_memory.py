"""The client's peak memory of a feature run, by where the per-event tables go, at 100k and at 1M events.

For each size and each ``tables`` setting of :func:`coffea_ad.processing.run_processor` (``memory``: gathered
into the client, as before; ``workers``: written by the tasks as parquet parts; ``none``: histograms and
cutflow only), one fresh Python process starts a ``LocalCluster`` of ``--workers`` worker processes, runs the
feature processor once untimed on one file (the workers' imports), then once measured in dask mode, and
reports:

- the client's peak RSS during the measured run, above its RSS just before it: the resident memory of the
  client process (``psutil``), sampled every 10 ms in a thread; the workers are other processes and do not
  count. RSS, not ``tracemalloc``: the tables are numpy/arrow buffers that tracemalloc sees only in part;
- the events/s of the measured run (the cluster is started before the clock starts).

The events are one generated QCD sample of ``--events`` events (generated once into the coffea_ad cache, as
``feature_throughput.py`` does; or ``--file``), and a size of N events is a fileset of ceil(N / events)
symbolic links to it under different names in a temporary folder. Prints a table and the ratios
1M / 100k of the peak, and writes ``benchmarks/results/client_memory.json`` (``--output``).

    python benchmarks/client_memory.py                       # 100k-event sample: 1 and 10 links
    python benchmarks/client_memory.py --events 20000        # a smaller sample: 5 and 50 links
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "client_memory.json"
TABLES = ("memory", "workers", "none")


class PeakRSS:
    """The peak resident memory of this process while the block runs, sampled in a thread."""

    def __init__(self, interval: float = 0.01) -> None:
        import psutil

        self.process = psutil.Process()
        self.interval = interval
        self.baseline = self.peak = 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRSS:
        self.baseline = self.peak = self.process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def measure(files: list[str], tables: str, workers: int, step_size: int, outdir: str) -> dict:
    """One measured run (in this process): the client's peak RSS above its baseline, and the events/s."""
    from coffea_ad.processing import check_fileset, dask_client, normalize_fileset, run_processor
    from processors import AnomalyFeatureProcessor

    warnings.filterwarnings("ignore")
    checked, _ = check_fileset(normalize_fileset({"qcd": files}))
    warm, _ = check_fileset(normalize_fileset({"qcd": files[:1]}))
    n_events = checked["qcd"].n_entries
    options = {"optional": True, "step_size": step_size, "mode": "dask", "make_processor": AnomalyFeatureProcessor}
    where = {"tables": tables, "table_folder": Path(outdir) / tables if tables == "workers" else None}
    with dask_client(None, workers) as client:
        run_processor(warm, client=client, **options, **where)
        with PeakRSS() as rss:
            start = time.perf_counter()
            result = run_processor(checked, client=client, **options, **where)
            seconds = time.perf_counter() - start
    assert result.cutflows["qcd"]["n_events"] == n_events
    return {
        "tables": tables,
        "events": n_events,
        "files": len(files),
        "seconds": seconds,
        "events_per_s": n_events / seconds,
        "client_peak_rss_mb": rss.peak / 2**20,
        "client_peak_above_baseline_mb": (rss.peak - rss.baseline) / 2**20,
    }


def links(sample: Path, n_files: int, folder: Path) -> list[str]:
    """``n_files`` symbolic links to ``sample`` under different names in ``folder``."""
    paths = []
    for index in range(n_files):
        path = folder / f"{sample.stem}_copy{index:03d}.root"
        if not path.exists():
            path.symlink_to(sample.resolve())
        paths.append(str(path))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, help="NanoAOD file to link (default: a generated QCD sample)")
    parser.add_argument("--events", type=int, default=100_000, help="events of the generated sample (100000)")
    parser.add_argument("--sizes", default="100000,1000000", help="total events of the runs (100000,1000000)")
    parser.add_argument("--workers", type=int, default=2, help="dask worker processes (2)")
    parser.add_argument("--step-size", type=int, default=100_000, help="events per chunk (100000)")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"results JSON ({RESULTS.name})")
    parser.add_argument("--one", nargs=4, metavar=("FILES_JSON", "TABLES", "OUTDIR", "RESULT_JSON"),
                        help=argparse.SUPPRESS)  # one measurement, in a fresh process
    args = parser.parse_args()
    if args.one:
        files, tables, outdir, result = args.one
        measured = measure(json.loads(Path(files).read_text()), tables, args.workers, args.step_size, outdir)
        Path(result).write_text(json.dumps(measured))
        return

    from coffea_ad.paths import write_json

    if args.file is None:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from feature_throughput import generated_sample

        sample = generated_sample("qcd_dijet", args.events, seed=1)
    else:
        sample = args.file
    import uproot

    with uproot.open(sample) as file:
        per_file = file["Events"].num_entries
    runs = []
    with tempfile.TemporaryDirectory(prefix="client_memory_") as folder:
        folder = Path(folder)
        for size in (int(text) for text in args.sizes.split(",")):
            files = folder / f"files_{size}.json"
            files.write_text(json.dumps(links(sample, math.ceil(size / per_file), folder)))
            for tables in TABLES:
                result = folder / f"result_{size}_{tables}.json"
                subprocess.run(
                    [sys.executable, __file__, "--workers", str(args.workers), "--step-size", str(args.step_size),
                     "--one", str(files), tables, str(folder / f"out_{size}"), str(result)],
                    check=True,
                )
                runs.append(json.loads(result.read_text()))
                print(f"{runs[-1]['events']} events, tables {tables}: client peak +"
                      f"{runs[-1]['client_peak_above_baseline_mb']:.0f} MB, {runs[-1]['events_per_s']:.0f} events/s",
                      flush=True)

    print(f"\nsample {sample} ({per_file} events per file), {args.workers} dask workers, step size {args.step_size}")
    print("| events | tables | client peak RSS (MB) | above baseline (MB) | events/s |")
    print("|---|---|---|---|---|")
    for run in runs:
        print(f"| {run['events']} | {run['tables']} | {run['client_peak_rss_mb']:.0f} | "
              f"{run['client_peak_above_baseline_mb']:.0f} | {run['events_per_s']:.0f} |")
    sizes = sorted({run["events"] for run in runs})
    ratios = {}
    if len(sizes) >= 2:
        small, large = sizes[0], sizes[-1]
        for tables in TABLES:
            peak = {run["events"]: run["client_peak_above_baseline_mb"] for run in runs if run["tables"] == tables}
            ratios[tables] = peak[large] / max(peak[small], 1.0)
            print(f"client peak above baseline, {large} / {small} events, tables {tables}: {ratios[tables]:.2f}")
    write_json(args.output, {
        "sample": sample.name,
        "events_per_file": per_file,
        "workers": args.workers,
        "step_size": args.step_size,
        "memory": "client process RSS (psutil), sampled every 10 ms in a thread, peak above the RSS before the run",
        "runs": runs,
        "peak_ratio_largest_over_smallest": ratios,
    })
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
