"""``coffea-ad demo``: the main job on the embedded default (see :mod:`coffea_ad.demo`)."""

from __future__ import annotations

import argparse

from coffea_ad.cli import options

__all__ = ["SUMMARY", "add_arguments", "run"]

SUMMARY = (
    "the main job on the embedded default: a sliding-window CATHODE search for W' injected into QCD dijets, "
    "trained on a LocalCluster, fitted per window, report"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """-o FOLDER, -j WORKERS, --epochs."""
    options.add_output(
        parser,
        "folder for the samples, models, outputs and the report (default: the coffea_ad cache)",
        required=False,
    )
    options.WORKERS.add(parser)
    parser.add_argument(
        "--epochs", type=options.positive_int, default=10, help="training epochs of each model (default: 10)"
    )


def run(args: argparse.Namespace) -> int:
    """Run the demo and print its summary."""
    from coffea_ad.demo import run_demo

    options.quiet_distributed(args.verbose)
    print(run_demo(args.output, workers=args.workers, epochs=args.epochs))
    return 0
