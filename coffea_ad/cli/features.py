"""``coffea-ad features``: features, region flags, histograms and cutflow of a fileset, on a dask cluster.

Writes ``OUTDIR/features/{dataset}.parquet`` (the table ``coffea-ad train`` reads: a folder of parquet parts
that the workers write, unless ``--no-tables``), ``OUTDIR/histograms.root``
(``{dataset}/{partition}_{region}/{variable}``) and ``OUTDIR/cutflow.json``; see
:mod:`coffea_ad.workflow.features`.

Which features may be left out (:func:`optional_features`): without ``--features``, every feature the input
cannot give is left out with a warning (all the input allows). A feature or feature set named in
``--features`` is explicitly requested: one that cannot be computed is an error (exit 1), unless ``--optional``
names it; the set ``all`` keeps its meaning, all the input allows. A file that cannot be read or a chunk hit by
a read error is skipped with a warning line on stderr, and the last line says how many were; a dataset left
without a readable file is an error, and so is any skipped input under ``--strict``.
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

__all__ = ["SUMMARY", "add_arguments", "run", "optional_features", "skipped_features_on_stderr", "print_outputs"]

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
        default=None,
        metavar="NAMES",
        help="features left out with a warning when a branch is absent: names, 'all' or 'none' (default: all "
        "without --features; with it, those reached only through the set 'all': a feature or set named in "
        "--features that cannot be computed is an error)",
    )
    options.MET.add(parser)
    options.STEP_SIZE.add(parser)
    options.NO_TABLES.add(parser)
    options.STRICT.add(parser)
    options.NO_PROGRESS.add(parser)


def optional_features(features: list[str] | None, optional: str | None = None) -> bool | list[str]:
    """The features that may be left out when the input lacks a branch (the ``optional`` of
    :func:`coffea_ad.processing.run_processor`).

    ``optional`` (``--optional``) as given: ``"all"``, ``"none"`` or comma-separated names. Otherwise it
    follows ``features`` (``--features``): not given, every feature is optional (all the input allows); given,
    the features it names, and those of the sets it names, are explicitly requested and never optional, while
    those reached only through the set ``all`` stay optional (``all`` means all the input allows).
    """
    if optional is not None:
        return {"all": True, "none": False}.get(optional, options.names(optional))
    if features is None:
        return True
    from coffea_ad.features import resolve_feature_names

    requested = set(resolve_feature_names([name for name in features if name != "all"]))
    return [name for name in resolve_feature_names(features) if name not in requested]


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


def skipped_inputs_line(files: int, chunks: int, entries: int) -> str:
    """The last line of a command that read NanoAOD: files and chunks skipped, zero included."""
    return f"files skipped: {files}, chunks skipped: {chunks} ({entries} entries not read)"


def print_outputs(result: Any, paths: Mapping[str, Path]) -> None:
    """Events and features per dataset, files and chunks skipped (always said, zero included), files written."""
    for dataset, counts in result.cutflows.items():
        print(f"{dataset}: {counts['n_events']} events, {len(result.features[dataset])} features")
    print(skipped_inputs_line(len(result.skipped), len(result.skipped_chunks),
                              sum(chunk.n_entries for chunk in result.skipped_chunks)))
    for path in paths.values():
        print(f"wrote {path}")


def run(args: argparse.Namespace) -> int:
    """Run the feature processor over the fileset and write the outputs."""
    from coffea_ad.features import FeatureConfig
    from coffea_ad.workflow.features import run_features

    options.quiet_distributed(args.verbose)
    with skipped_features_on_stderr():
        result, paths = run_features(
            args.fileset,
            args.output,
            mode=args.mode,
            scheduler=args.scheduler,
            workers=args.workers,
            progress=not args.no_progress,
            features=args.features or ["all", "user"],
            optional=optional_features(args.features, args.optional),
            feature_config=FeatureConfig(met_collection=args.met),
            step_size=args.step_size,
            tables="none" if args.no_tables else "workers",
            strict=args.strict,
        )
    print_outputs(result, paths)
    return 0
