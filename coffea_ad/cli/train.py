"""``coffea-ad train``: fit one anomaly-detection method on a feature table; write model.onnx + summary.json.

The method is positional, as in ``coffea-ad fit``: it is what the command does, the rest are options.
See :func:`coffea_ad.workflow.train.train_to_folder`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from coffea_ad.cli import options

__all__ = ["SUMMARY", "add_arguments", "run"]

SUMMARY = "fit an anomaly-detection method on a feature table; write model.onnx + summary.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """METHOD TABLE -o FOLDER and the training options."""
    from coffea_ad.models import METHODS

    parser.add_argument("method", metavar="METHOD", help=f"one of: {', '.join(METHODS)}")
    parser.add_argument("table", metavar="TABLE", type=Path, help="feature table (parquet) from 'coffea-ad features'")
    options.add_output(parser, "model folder: model.onnx, summary.json and the estimator")
    options.FEATURES.add(parser)
    options.REGION.add(parser)
    options.MASS.add(parser)
    parser.add_argument(
        "--signal-region",
        default=None,
        metavar="LO:HI",
        help="signal region of --mass in GeV (resonant methods; default: 3300:3700, the window of the region "
        "flags mjj3500_sr/mjj3500_sb that 'coffea-ad score' cuts in by default)",
    )
    parser.add_argument(
        "--folds",
        type=options.positive_int,
        default=None,
        metavar="K",
        help="cross-training: K models, each trained without one fold of events (fold = a hash of run, "
        "luminosityBlock, event), so that no event is scored by a model that saw it; 1 = one model "
        "(default: 5 for the weakly supervised methods, 1 for the others)",
    )
    parser.add_argument("--label", default=None, help="0/1 signal label column (supervised; default: is_signal)")
    parser.add_argument(
        "--background", type=Path, default=None, metavar="TABLE", help="the background sample: a feature table (iad)"
    )
    parser.add_argument(
        "--simulation", type=Path, default=None, metavar="TABLE", help="simulated background table (salad, reweight)"
    )
    parser.add_argument(
        "--context",
        type=options.names,
        default=None,
        metavar="NAMES",
        help="comma-separated context columns (reweight, generate; default: ht,met)",
    )
    parser.add_argument(
        "--signal-flag",
        default=None,
        metavar="FLAG",
        help="region flag of the signal region (non-resonant: reweight, generate)",
    )
    options.SEED.add(parser)
    options.DEVICE.add(parser)
    parser.add_argument(
        "--epochs", type=options.positive_int, default=None, help="maximum epochs (default: the method's)"
    )
    parser.add_argument(
        "--batch-size", type=options.positive_int, default=None, help="events per batch (default: the method's)"
    )
    parser.add_argument("--checkpoint-dir", type=Path, default=None, help="checkpoint every epoch here; resume from it")
    parser.add_argument(
        "--threads", type=options.positive_int, default=None, help="torch CPU threads (default: torch's)"
    )
    options.NO_PROGRESS.add(parser)


def run(args: argparse.Namespace) -> int:
    """Train, export, and print what was written with the validation metrics."""
    from coffea_ad.workflow.train import describe_training, train_to_folder

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    training = {key: value for key, value in (("epochs", args.epochs), ("batch_size", args.batch_size)) if value}
    summary = train_to_folder(
        args.method,
        args.table,
        args.output,
        features=args.features,
        region=options.one_region(args.region),
        signal_region=args.signal_region,
        mass=args.mass,
        label=args.label,
        background=args.background,
        simulation=args.simulation,
        context=args.context,
        signal_flag=args.signal_flag,
        folds=args.folds,
        seed=args.seed,
        device=args.device,
        training=training or None,
        checkpoint_dir=args.checkpoint_dir,
        progress=not args.no_progress,
    )
    print(describe_training(summary))
    return 0
