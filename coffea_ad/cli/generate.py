"""``coffea-ad generate``: Pythia8 events clustered with fastjet, written as a NanoAOD ROOT file."""

from __future__ import annotations

import argparse

from coffea_ad.cli import options

__all__ = ["SUMMARY", "add_arguments", "run"]

SUMMARY = "generate Pythia8 events, cluster them with fastjet and write a NanoAOD ROOT file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """PROCESS, -n EVENTS, -o FILE.root and the generation options."""
    from coffea_ad.generate.processes import PROCESSES

    parser.add_argument(
        "process", metavar="PROCESS", help=f"one of: {', '.join(PROCESSES)} (see 'coffea-ad processes')"
    )
    parser.add_argument("-n", "--events", type=int, required=True, help="number of events to write")
    options.add_output(parser, "the NanoAOD ROOT file to write (it appears only once complete)")
    options.SEED.add(parser)
    options.SET.add(parser)
    options.WORKERS.add(parser)
    parser.add_argument(
        "--chunk-size",
        type=options.positive_int,
        default=None,
        metavar="N",
        help="events per independently seeded chunk (default: 2000); the file depends on it, not on --workers",
    )
    options.NO_PROGRESS.add(parser)


def run(args: argparse.Namespace) -> int:
    """Generate the file and print its summary (events, cross section, time)."""
    from coffea_ad.generate import generate

    summary = generate(
        args.process,
        args.events,
        args.output,
        seed=args.seed,
        settings=options.parse_settings(args.settings),
        workers=args.workers,
        chunk_size=args.chunk_size,
        progress=not args.no_progress,
    )
    print(summary.describe())
    return 0
