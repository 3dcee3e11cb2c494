"""Generation throughput per core, next to the bare Pythia8 ``next()`` rate measured in the same run.

For each process, in one worker: (1) a bare Pythia instance with the same settings runs ``next()`` N times
(after ``init()``, which is not timed); (2) the full coffea_ad pipeline makes N events as ``coffea-ad generate``
does, in chunks of the default size: per chunk a Pythia ``init()``, then ``nextBatch`` + clustering, soft drop,
N-subjettiness, leptons, smearing, and the NanoAOD writing. The time ratio pipeline / bare is what
coffea_ad costs on top of the generation itself (goal: <= 1.5). The two measurements alternate
``--repeat`` times and the fastest of each is kept, because this machine's speed drifts between runs.

    python benchmarks/generate_throughput.py [--events N] [--processes qcd_dijet wprime_xy ...]

Writes ``benchmarks/results/generate_throughput.json`` (``--output``).
"""

from __future__ import annotations

import argparse
import datetime
import tempfile
import time
from pathlib import Path

from coffea_ad.generate import PROCESSES, generate
from coffea_ad.generate.reconstruction import silence_fastjet_banner
from coffea_ad.generate.sample import DEFAULT_CHUNK_SIZE, _new_pythia
from coffea_ad.paths import write_json

RESULTS = Path(__file__).parent / "results" / "generate_throughput.json"


def bare_pythia_seconds(process: str, n_events: int, seed: int) -> float:
    spec = PROCESSES[process]
    with silence_fastjet_banner():
        pythia = _new_pythia((*spec.pythia_settings(spec.resolve({})), "Random:setSeed = on", f"Random:seed = {seed}"))
        pythia.init()
        start = time.perf_counter()
        for _ in range(n_events):
            pythia.next()
    return time.perf_counter() - start


def pipeline_seconds(process: str, n_events: int, seed: int, folder: Path):
    start = time.perf_counter()
    summary = generate(process, n_events, folder / f"{process}.root", seed=seed, workers=1, progress=False)
    return time.perf_counter() - start, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--events", type=int, default=DEFAULT_CHUNK_SIZE,
        help=f"events per process and measurement (default {DEFAULT_CHUNK_SIZE}, one default chunk)",
    )
    parser.add_argument("--processes", nargs="+", default=list(PROCESSES), choices=list(PROCESSES))
    parser.add_argument("--repeat", type=int, default=2, help="alternating runs of each measurement (default 2)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    print("| process | bare Pythia next() [events/s/core] | coffea_ad generate [events/s/core] | time ratio | "
          "reconstruction share |")
    print("|---|---|---|---|---|")
    records = []
    with tempfile.TemporaryDirectory() as folder:
        pipeline_seconds(args.processes[0], 20, 1, Path(folder))  # imports and first-use costs, not timed
        for process in args.processes:
            bare, full = float("inf"), float("inf")
            for repeat in range(args.repeat):
                bare = min(bare, bare_pythia_seconds(process, args.events, seed=3 + repeat))
                seconds, summary = pipeline_seconds(process, args.events, 3 + repeat, Path(folder))
                if seconds < full:
                    full, share = seconds, summary.seconds_reconstruction / seconds
            record = {
                "process": process,
                "events": args.events,
                "chunk_size": DEFAULT_CHUNK_SIZE,
                "bare_events_per_second": args.events / bare,
                "generate_events_per_second": args.events / full,
                "time_ratio": full / bare,
                "reconstruction_share": share,
            }
            records.append(record)
            print(f"| {process} | {record['bare_events_per_second']:.0f} | {record['generate_events_per_second']:.0f} | "
                  f"{record['time_ratio']:.2f} | {share:.0%} |", flush=True)
    write_json(args.output, {"date": datetime.date.today().isoformat(), "repeat": args.repeat, "results": records})


if __name__ == "__main__":
    main()
