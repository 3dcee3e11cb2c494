"""``coffea-ad score``: anomaly scores of a fileset as columns, histograms in bins of score, thresholds.

Writes the outputs of ``coffea-ad features`` plus a score column per model, ``{mass}_{model}_pass`` and
``{model}`` histograms per region and ``scores.json``; see :mod:`coffea_ad.workflow.score`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from coffea_ad.cli import options
from coffea_ad.cli.features import optional_features, print_outputs, skipped_features_on_stderr
from coffea_ad.errors import ConfigurationError

__all__ = ["SUMMARY", "add_arguments", "run", "parse_models"]

SUMMARY = "anomaly scores of a fileset as columns, on a dask cluster: tables, histograms in bins of score, thresholds"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """FILESET.json --model MODEL.onnx -o OUTDIR, the control region and the efficiency of the cut."""
    parser.description = (
        f"{SUMMARY}. The threshold keeps --efficiency of the --control-region events (all datasets together); "
        "--region is the signal region, recorded in scores.json, that 'coffea-ad fit' then fits by default "
        "(default: deta_sr, i.e. |deta_jj| < 1.3). With --control-region none there is no threshold: the score "
        "columns and score histograms only, which 'coffea-ad fit' refuses."
    )
    parser.add_argument("fileset", metavar="FILESET.json", type=Path, help="coffea fileset JSON")
    parser.add_argument(
        "--model",
        dest="models",
        action="append",
        required=True,
        metavar="[NAME=]MODEL.onnx",
        help="ONNX model from 'coffea-ad train'; repeatable; the score column is NAME (default: the file's stem, "
        "or its folder's name for model.onnx)",
    )
    options.add_output(parser, "output folder: the feature outputs with score columns, and scores.json")
    options.add_cluster(parser)
    parser.add_argument(
        "--control-region",
        default=None,
        metavar="FLAG",
        help="region flag where the background efficiency of the cut is measured, any boolean region flag of the "
        "tables (default: mjj3500_sb, the sidebands of the 3.5 TeV window); 'none': no threshold",
    )
    options.REGION.add(parser)
    parser.add_argument(
        "--efficiency", type=float, default=0.01, help="target background efficiency of the cut (default: 0.01)"
    )
    options.MASS.add(parser)
    options.FEATURES.add(parser)
    options.FEATURE_MODULE.add(parser)
    options.MET.add(parser)
    options.STEP_SIZE.add(parser)
    options.NO_TABLES.add(parser)
    options.STRICT.add(parser)
    options.NO_PROGRESS.add(parser)


def parse_models(texts: list[str]) -> dict[str, Path]:
    """``[NAME=]MODEL.onnx`` arguments as name -> path; without NAME the file's stem, or for ``model.onnx``
    (what ``coffea-ad train`` writes) its folder's name."""
    models = {}
    for text in texts:
        name, sep, path = text.rpartition("=")
        path = Path(path)
        if not sep:
            name = path.parent.name if path.name == "model.onnx" and path.parent.name else path.stem
        if name in models:
            raise ConfigurationError(f"two --model arguments give the score name {name!r}: name them NAME=MODEL.onnx")
        models[name] = path
    return models


def run(args: argparse.Namespace) -> int:
    """Score the fileset, write the outputs and print each model's threshold and events above it."""
    from coffea_ad.features import FeatureConfig
    from coffea_ad.workflow.score import run_scoring

    options.quiet_distributed(args.verbose)
    regions = {"control_region": args.control_region, "signal_region": options.one_region(args.region)}
    regions = {name: flag for name, flag in regions.items() if flag is not None}
    if regions.get("control_region") == "none":
        regions["control_region"] = None
    with skipped_features_on_stderr():
        result, summary, paths = run_scoring(
            args.fileset,
            parse_models(args.models),
            args.output,
            **regions,
            target_efficiency=args.efficiency,
            mass=args.mass or options.DEFAULT_MASS,
            features=args.features or "all",
            optional=optional_features(args.features),
            mode=args.mode,
            scheduler=args.scheduler,
            workers=args.workers,
            progress=not args.no_progress,
            feature_config=FeatureConfig(met_collection=args.met),
            step_size=args.step_size,
            tables="none" if args.no_tables else "workers",
            strict=args.strict,
        )
    for name, model in summary.items():
        if model["threshold"] is None:
            print(f"{name}: no control region, no threshold: score columns and histograms only")
            continue
        print(
            f"{name}: threshold {model['threshold']:.4g} keeps {model['control_region_efficiency']:.4f} of "
            f"{model['control_region']} (target {model['target_efficiency']})"
        )
        for dataset, regions in model["events"].items():
            shown = ", ".join(
                f"{regions[flag]['above']:.0f} of {regions[flag]['all']:.0f} {flag}"
                for flag in dict.fromkeys((model["control_region"], model["signal_region"]))
            )
            print(f"  {dataset}: above the threshold {shown} events")
    print_outputs(result, paths)
    return 0
