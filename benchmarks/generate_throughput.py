"""Generation throughput per core, next to the bare Pythia8 ``next()`` rate measured in the same run.

For each process: (1) a bare Pythia instance with the same settings runs ``next()`` N times; (2) the
full coffea_ad pipeline (``nextBatch`` + extraction + fastjet clustering, soft drop, N-subjettiness +
smearing + NanoAOD writing) makes N events in one worker. The ratio pipeline time / bare time says what
the reconstruction costs on top of the generation (goal: <= 2).

    python benchmarks/generate_throughput.py [--events N] [--processes qcd_dijet wprime_xy ...]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from coffea_ad.generate import PROCESSES, generate
from coffea_ad.generate.reconstruction import silence_fastjet_banner
from coffea_ad.generate.sample import _new_pythia


def bare_pythia_rate(process: str, n_events: int, seed: int) -> float:
    spec = PROCESSES[process]
    with silence_fastjet_banner():
        pythia = _new_pythia((*spec.pythia_settings(spec.resolve({})), "Random:setSeed = on", f"Random:seed = {seed}"))
        pythia.init()
        start = time.perf_counter()
        for _ in range(n_events):
            pythia.next()
    return n_events / (time.perf_counter() - start)


def pipeline_rate(process: str, n_events: int, seed: int, folder: Path):
    start = time.perf_counter()
    output = folder / f"{process}.root"
    summary = generate(process, n_events, output, seed=seed, workers=1, chunk_size=n_events, progress=False)
    return n_events / (time.perf_counter() - start), summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500, help="events per process and measurement (default 500)")
    parser.add_argument("--processes", nargs="+", default=list(PROCESSES), choices=list(PROCESSES))
    args = parser.parse_args()
    print("| process | bare Pythia next() [events/s/core] | coffea_ad generate [events/s/core] | time ratio | "
          "reconstruction+writing share |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for process in args.processes:
            bare = bare_pythia_rate(process, args.events, seed=3)
            full, summary = pipeline_rate(process, args.events, 3, Path(folder))
            share = 1 - summary.seconds_pythia / (args.events / full)
            print(f"| {process} | {bare:.0f} | {full:.0f} | {bare / full:.2f} | {share:.0%} |", flush=True)


if __name__ == "__main__":
    main()
