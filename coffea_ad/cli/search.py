"""``coffea-ad search``: the sliding-window resonant anomaly search, trained and fitted on a Dask cluster.

See :func:`coffea_ad.workflow.search.run_search`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from coffea_ad.cli import options
from coffea_ad.cli.features import skipped_inputs_line

__all__ = ["SUMMARY", "add_arguments", "run"]

SUMMARY = "sliding-window resonant anomaly search: train per mjj window on the cluster, cut, fit, local/global Z"


def _efficiencies(text: str) -> list[float]:
    values = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"an efficiency is a number in (0, 1), got {part!r}") from None
        if not 0 < value < 1:
            raise argparse.ArgumentTypeError(f"an efficiency is the fraction of events a cut keeps, in (0, 1): {part}")
        values.append(value)
    return values


def _windows(text: str) -> str | list[str]:
    return "auto" if text == "auto" else [part for part in text.split(",") if part]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """DATA -o FOLDER and the options of the search."""
    from coffea_ad.workflow.search import DEFAULT_EFFICIENCIES, SEARCH_METHODS

    parser.add_argument(
        "data", metavar="DATA", type=Path,
        help="a coffea fileset JSON (NanoAOD or generated ROOT files, run through the feature processor on the "
        "cluster) or a feature table (.parquet) from 'coffea-ad features'",
    )
    options.add_output(parser, "search folder: search.json, summary.txt, index.html, plots/, windows/")
    parser.add_argument(
        "--method", default="cathode", choices=SEARCH_METHODS,
        help="the weakly supervised method trained in each window (default: %(default)s)",
    )
    parser.add_argument(
        "--windows", type=_windows, default="auto", metavar="auto|LO:HI,...",
        help="signal regions in GeV: auto (default: two staggered sets of ~20%% windows over the fit range "
        "above the turn-on) or a comma-separated list such as 3000:3600,3300:3900",
    )
    parser.add_argument(
        "--efficiency", type=_efficiencies, default=list(DEFAULT_EFFICIENCIES), metavar="EFF,...",
        help="fractions of the sideband events the cuts keep, comma-separated (default: 0.1,0.01)",
    )
    parser.add_argument(
        "--folds", type=options.positive_int, default=None, metavar="K",
        help="cross-training folds per window, at least 2 (default: the method's, 5)",
    )
    parser.add_argument(
        "--ensemble", type=options.positive_int, default=1, metavar="N",
        help="models per fold with different seeds, scores averaged (default: %(default)s; CMS uses 4)",
    )
    options.FEATURES.add(parser)
    options.FEATURE_MODULE.add(parser)
    options.MASS.add(parser)
    options.REGION.add(parser)
    parser.add_argument(
        "--data-dataset", dest="datasets", type=options.names, default=None, metavar="NAMES",
        help="the fileset's datasets that are the data, comma-separated (default: every dataset, summed)",
    )
    parser.add_argument(
        "--background", type=Path, default=None, metavar="TABLE", help="the background sample, a feature table (iad)"
    )
    parser.add_argument(
        "--simulation", type=Path, default=None, metavar="TABLE", help="simulated background table (salad)"
    )
    parser.add_argument(
        "--inject", type=Path, default=None, metavar="FILE",
        help="signal-injection test: a ROOT file, fileset or feature table whose events are injected into the data "
        "(truth never reaches training)",
    )
    parser.add_argument("--n-signal", type=options.positive_int, default=None, metavar="N",
                        help="events of --inject to inject, drawn at random (--seed; default: all)")
    parser.add_argument("--mjj-min", type=float, default=None, metavar="GEV",
                        help="start of the fit range (default: found above the turn-on)")
    parser.add_argument("--mjj-max", type=float, default=None, metavar="GEV", help="end of the fit range")
    parser.add_argument(
        "--parameters", default="auto", choices=("auto", "3", "4", "5"),
        help="dijet-function parameters: auto (an F-test per fit, default) or a fixed number",
    )
    parser.add_argument(
        "--epochs", type=options.positive_int, default=None, help="maximum epochs (default: the method's)"
    )
    parser.add_argument(
        "--batch-size", type=options.positive_int, default=None, help="events per batch (default: the method's)"
    )
    options.SEED.add(parser)
    options.DEVICE.add(parser)
    where = parser.add_mutually_exclusive_group()
    options.SCHEDULER.add(where)
    options.WORKERS.add(where)
    options.STRICT.add(parser)
    options.NO_PROGRESS.add(parser)


def run(args: argparse.Namespace) -> int:
    """Run the search and print its summary."""
    from coffea_ad.workflow.search import run_search

    options.quiet_distributed(args.verbose)
    training = {key: value for key, value in (("epochs", args.epochs), ("batch_size", args.batch_size)) if value}
    result = run_search(
        args.data,
        args.output,
        method=args.method,
        features=args.features,
        mass=args.mass or options.DEFAULT_MASS,
        windows=args.windows,
        efficiencies=args.efficiency,
        folds=args.folds,
        ensemble=args.ensemble,
        seed=args.seed,
        background=args.background,
        simulation=args.simulation,
        datasets=args.datasets,
        region=options.one_region(args.region),
        inject=args.inject,
        n_signal=args.n_signal,
        mjj_min=args.mjj_min,
        mjj_max=args.mjj_max,
        n_parameters=args.parameters if args.parameters == "auto" else int(args.parameters),
        training=training or None,
        device=args.device,
        scheduler=args.scheduler,
        workers=args.workers,
        progress=not args.no_progress,
        strict=args.strict,
    )
    print(result["summary_text"])
    skipped = result["inputs_skipped"]
    print(skipped_inputs_line(skipped["files"], skipped["chunks"], skipped["entries"]))
    print(f"  wrote {args.output / 'index.html'} (open it in a browser), search.json, summary.txt, plots/, windows/")
    return 0
