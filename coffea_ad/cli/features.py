"""``coffea-ad features``: features, region flags, histograms and cutflow of a fileset, on a dask cluster.

Writes ``OUTDIR/features/{dataset}.parquet`` (the table ``coffea-ad train`` reads: a folder of parquet parts
that the workers write, unless ``--no-tables``), ``OUTDIR/histograms.root``
(``{dataset}/{partition}_{region}/{variable}``) and ``OUTDIR/cutflow.json``; see
:mod:`coffea_ad.workflow.features`.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from coffea_ad.cli import options

__all__ = ["SUMMARY", "add_arguments", "run", "skipped_features_on_stderr", "print_outputs"]

SUMMARY = "compute features, region flags, histograms and cutflow of a fileset on a dask cluster"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """FILESET.json, -o OUTDIR, where it runs and which features."""
    parser.add_argument("fileset", metavar="FILESET.json", type=Path, help="coffea fileset JSON")
    options.add_output(parser, "output folder: features/{dataset}.parquet, histograms.root, cutflow.json")
    options.add_cluster(parser)
    options.FEATURES.add(parser)
    options.FEATURE_MODULE.add(parser)
    parser.add_argument(
        "--optional",
        default="all",
        metavar="NAMES",
        help="features left out with a warning when a branch is absent: names, 'all' (default) or 'none'",
    )
    options.MET.add(parser)
    options.STEP_SIZE.add(parser)
    options.NO_TABLES.add(parser)
    options.NO_PROGRESS.add(parser)


@contextlib.contextmanager
def skipped_features_on_stderr() -> Iterator[None]:
    """Inside the block, a feature left out for an absent branch becomes one ``warning:`` line on stderr."""
    from coffea_ad.features import FeatureSkippedWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FeatureSkippedWarning)
        yield
    for warning in caught:
        if issubclass(warning.category, FeatureSkippedWarning):
            print(f"warning: {warning.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


def print_outputs(result: Any, paths: Mapping[str, Path]) -> None:
    """Events and features per dataset, files skipped, files written."""
    for dataset, counts in result.cutflows.items():
        print(f"{dataset}: {counts['n_events']} events, {len(result.features[dataset])} features")
    print(f"files skipped: {len(result.skipped)}")
    for path in paths.values():
        print(f"wrote {path}")


def run(args: argparse.Namespace) -> int:
    """Run the feature processor over the fileset and write the outputs."""
    from coffea_ad.features import FeatureConfig
    from coffea_ad.workflow.features import run_features

    options.quiet_distributed(args.verbose)
    optional: bool | list[str] = {"all": True, "none": False}.get(args.optional, options.names(args.optional))
    with skipped_features_on_stderr():
        result, paths = run_features(
            args.fileset,
            args.output,
            mode=args.mode,
            scheduler=args.scheduler,
            workers=args.workers,
            progress=not args.no_progress,
            features=args.features or ["all", "user"],
            optional=optional,
            feature_config=FeatureConfig(met_collection=args.met),
            step_size=args.step_size,
            tables="none" if args.no_tables else "workers",
        )
    print_outputs(result, paths)
    return 0
