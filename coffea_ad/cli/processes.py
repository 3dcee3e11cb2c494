"""``coffea-ad processes``: the processes ``coffea-ad generate`` knows, their parameters and the detector card."""

from __future__ import annotations

import argparse

__all__ = ["SUMMARY", "add_arguments", "run"]

SUMMARY = "list the processes 'generate' knows, their parameters and the detector card"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """An optional PROCESS to show alone."""
    parser.add_argument("process", nargs="?", metavar="PROCESS", help="show only this process")


def run(args: argparse.Namespace) -> int:
    """Print the processes (and, without PROCESS, the detector card's parameters)."""
    from coffea_ad.generate.detector import DetectorCard
    from coffea_ad.generate.processes import describe_processes

    print(describe_processes(args.process))
    if args.process is None:
        print(DetectorCard.describe())
    return 0
