"""The ``coffea-ad`` command line.

Each subcommand is a pair of functions, ``_NAME_arguments(parser)`` and ``_NAME_run(args)``, registered
in :data:`SUBCOMMANDS`. Errors derived from :class:`coffea_ad.CoffeaADError` are printed as one line and
exit with status 1; argument errors exit with status 2 (argparse's convention).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from coffea_ad import __version__
from coffea_ad.errors import CoffeaADError, ConfigurationError

__all__ = ["main"]


def _parse_settings(pairs: Sequence[str]) -> dict[str, str]:
    settings: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigurationError(f"--set expects KEY=VALUE, got {pair!r}")
        settings[key.strip()] = value.strip()
    return settings


def _name_list(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """Where a fileset runs: a scheduler address or a new LocalCluster, in dask or virtual mode."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", help="address of a running dask scheduler")
    where.add_argument(
        "--workers", type=int, default=None, metavar="N", help="worker processes of a new LocalCluster (default: cores)"
    )
    parser.add_argument("--mode", choices=("dask", "virtual"), default="dask", help="execution mode (default: dask)")


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by the commands that process a fileset."""
    parser.add_argument("--met", default="MET", help="MET collection: MET (default) or PuppiMET (NanoAOD v15)")
    parser.add_argument("--step-size", type=int, default=100_000, help="events per chunk (default: 100000)")
    parser.add_argument("--no-progress", action="store_true", help="do not show a progress bar")


def _quiet_distributed(args: argparse.Namespace) -> None:
    if not args.verbose:
        import distributed  # importing it sets its loggers to INFO: quieten them afterwards

        logging.getLogger(distributed.__name__).setLevel(logging.WARNING)


def _generate_arguments(parser: argparse.ArgumentParser) -> None:
    from coffea_ad.generate.processes import PROCESSES

    parser.add_argument("process", metavar="PROCESS", help=f"one of: {', '.join(PROCESSES)}")
    parser.add_argument("-n", "--events", type=int, required=True, help="number of events to write")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default: 1); same seed, same file")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output NanoAOD ROOT file")
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="process parameter (e.g. mass_wprime=3000, fatjet_radius=1.0) or a raw Pythia setting "
        "(e.g. 'TimeShower:alphaSvalue=0.12'); repeatable. 'coffea-ad generate --list' shows the parameters",
    )
    parser.add_argument("-j", "--workers", type=int, default=None, help="worker processes (default: all cores)")
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help="events per independently seeded chunk (default: 500); the file depends on it, not on --workers",
    )
    parser.add_argument("--no-progress", action="store_true", help="do not show a progress bar")


def _generate_run(args: argparse.Namespace) -> int:
    from coffea_ad.generate import generate

    summary = generate(
        args.process,
        args.events,
        args.output,
        seed=args.seed,
        settings=_parse_settings(args.settings),
        workers=args.workers,
        chunk_size=args.chunk_size,
        progress=not args.no_progress,
    )
    print(summary.describe())
    return 0


def _processes_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("process", nargs="?", help="show only this process")


def _processes_run(args: argparse.Namespace) -> int:
    from coffea_ad.generate.detector import DetectorCard
    from coffea_ad.generate.processes import describe_processes

    print(describe_processes(args.process))
    if args.process is None:
        print(DetectorCard.describe())
    return 0


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help="folder for the samples, models, outputs and the report (default: the coffea_ad cache)",
    )
    parser.add_argument("-j", "--workers", type=int, default=None, help="worker processes (default: all cores)")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs of each model (default: 30)")


def _demo_run(args: argparse.Namespace) -> int:
    from coffea_ad.demo import run_demo

    _quiet_distributed(args)
    print(run_demo(args.output, workers=args.workers, epochs=args.epochs))
    return 0


def _fit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "histograms", metavar="HISTOGRAMS", type=Path, help="ROOT file of histograms (written with uproot)"
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder (created if missing)")
    parser.add_argument(
        "--method",
        choices=("bumphunt", "score", "abcd"),
        default="bumphunt",
        help="bumphunt: dijet-function sideband fit of mjj with a sliding window; score: the anomaly score as the "
        "fitted variable, one channel per region; abcd: N_A = N_B N_C / N_D (default: bumphunt)",
    )
    parser.add_argument(
        "--region",
        dest="regions",
        action="append",
        default=None,
        help="region filled into {region}; repeatable (default: SR; abcd: A B C D, in that order)",
    )
    parser.add_argument("--variable", default=None, help="variable filled into {variable} (default: mjj; score: score)")
    parser.add_argument(
        "--data", default="data/{region}/{variable}", help="path of the data histogram (default: %(default)s)"
    )
    parser.add_argument(
        "--background",
        dest="backgrounds",
        action="append",
        default=None,
        help="path of a background histogram; repeatable; the sample name is its first path component "
        "(score: default background/{region}/{variable}; abcd: optional, for the closure test; bumphunt: unused)",
    )
    parser.add_argument(
        "--signal",
        default=None,
        help="path of the signal histogram (default: signal/{region}/{variable} for score; none for bumphunt and "
        "abcd, which then report significances and no limit)",
    )
    parser.add_argument(
        "--template-statistics",
        choices=("staterror", "shapesys", "none"),
        default="staterror",
        help="score: template statistics modifier (default: %(default)s)",
    )
    parser.add_argument(
        "--window-width", type=float, default=0.2, help="bumphunt: relative window width (default: 0.2)"
    )
    parser.add_argument(
        "--parameters", type=int, choices=(3, 4), default=4, help="bumphunt: dijet-function parameters (default: 4)"
    )
    parser.add_argument(
        "--toys", type=int, default=0, help="bumphunt: background-only toys for the global significance"
    )
    parser.add_argument("--seed", type=int, default=0, help="bumphunt: seed of the toys (default: 0)")


def _fit_run(args: argparse.Namespace) -> int:
    from coffea_ad.workflow.fit import HistogramPaths, describe_fit, run_fit

    signal, backgrounds = args.signal, tuple(args.backgrounds or ())
    if args.method == "score":
        signal = signal or "signal/{region}/{variable}"
        backgrounds = backgrounds or ("background/{region}/{variable}",)
    paths = HistogramPaths(data=args.data, backgrounds=backgrounds, signal=signal)
    summary = run_fit(
        args.histograms,
        args.output,
        method=args.method,
        paths=paths,
        regions=args.regions,
        variable=args.variable,
        template_statistics=args.template_statistics,
        bumphunt_options={
            "relative_width": args.window_width,
            "n_parameters": args.parameters,
            "n_toys": args.toys,
            "seed": args.seed,
        },
    )
    print(describe_fit(summary))
    return 0


def _score_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("fileset", metavar="FILESET.json", type=Path, help="coffea fileset JSON")
    parser.add_argument(
        "--model",
        dest="models",
        action="append",
        required=True,
        metavar="[NAME=]MODEL.onnx",
        help="ONNX model from 'coffea-ad train'; repeatable; the score column is NAME (default: the file's stem)",
    )
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUTDIR", help="output folder")
    _cluster_arguments(parser)
    parser.add_argument(
        "--control-region",
        default="mjj3500_sb",
        help="region flag where the background efficiency is measured (default: %(default)s)",
    )
    parser.add_argument(
        "--efficiency", type=float, default=0.01, help="target background efficiency of the cut (default: 0.01)"
    )
    parser.add_argument("--fit-variable", default="mjj", help="variable histogrammed in bins of score (default: mjj)")
    parser.add_argument("--features", default="", metavar="NAMES", help="further features for the table and histograms")
    _run_arguments(parser)


def _score_run(args: argparse.Namespace) -> int:
    from coffea_ad.features import FeatureConfig
    from coffea_ad.workflow.score import run_scoring

    _quiet_distributed(args)
    models = {}
    for text in args.models:
        name, sep, path = text.rpartition("=")
        models[name if sep else Path(path).stem] = path
    result, summary, paths = run_scoring(
        args.fileset,
        models,
        args.output,
        control_region=args.control_region,
        target_efficiency=args.efficiency,
        fit_variable=args.fit_variable,
        features=_name_list(args.features),
        mode=args.mode,
        scheduler=args.scheduler,
        workers=args.workers,
        progress=not args.no_progress,
        feature_config=FeatureConfig(met_collection=args.met),
        step_size=args.step_size,
    )
    for dataset, counts in result.cutflows.items():
        print(f"{dataset}: {counts['n_events']} events")
    for name, model in summary.items():
        print(
            f"{name}: threshold {model['threshold']:.4g} keeps {model['control_region_efficiency']:.4f} of "
            f"{model['control_region']} (target {model['target_efficiency']})"
        )
        for dataset, regions in model["events"].items():
            control = regions[model["control_region"]]
            print(f"  {dataset}: {control['above']:.0f} of {control['all']:.0f} {model['control_region']} events above")
    print(f"files skipped: {len(result.skipped)}")
    for path in paths.values():
        print(f"wrote {path}")
    return 0


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    from coffea_ad.models import METHODS

    parser.add_argument("method", metavar="METHOD", help=f"one of: {', '.join(METHODS)}")
    parser.add_argument(
        "table", metavar="FEATURES", type=Path, help="feature table (parquet) from 'coffea-ad features'"
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="model folder: model.onnx + summary.json")
    parser.add_argument(
        "--features",
        default=None,
        help="comma-separated feature columns (default: every float column except --mass and --context)",
    )
    parser.add_argument("--region", default=None, help="boolean region column: train on its rows only")
    parser.add_argument(
        "--signal-region", default=None, metavar="LO:HI", help="signal region of --mass (resonant methods)"
    )
    parser.add_argument("--mass", default=None, help="resonant variable column (default: mjj)")
    parser.add_argument("--label", default=None, help="0/1 signal label column (supervised; default: is_signal)")
    parser.add_argument("--background", type=Path, default=None, help="background-only table (iad)")
    parser.add_argument("--simulation", type=Path, default=None, help="simulated background table (salad, reweight)")
    parser.add_argument(
        "--context", default=None, help="comma-separated context columns (reweight, generate; default: ht,met)"
    )
    parser.add_argument(
        "--signal-flag", default=None, help="boolean signal-region column (non-resonant: reweight, generate)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0); same seed, same model")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: auto")
    parser.add_argument("--epochs", type=int, default=None, help="maximum epochs (default: the method's)")
    parser.add_argument("--batch-size", type=int, default=None, help="events per batch (default: the method's)")
    parser.add_argument("--checkpoint-dir", type=Path, default=None, help="checkpoint every epoch here; resume from it")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-progress", action="store_true", help="do not show progress bars")


def _train_run(args: argparse.Namespace) -> int:
    import json

    from coffea_ad.workflow.train import train_to_folder

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    training = {"progress": not args.no_progress}
    if args.epochs is not None:
        training["epochs"] = args.epochs
    if args.batch_size is not None:
        training["batch_size"] = args.batch_size
    summary = train_to_folder(
        args.method,
        args.table,
        args.output,
        features=_name_list(args.features) if args.features else None,
        region=args.region,
        signal_region=args.signal_region,
        mass=args.mass,
        label=args.label,
        background=args.background,
        simulation=args.simulation,
        context=_name_list(args.context) if args.context else None,
        signal_flag=args.signal_flag,
        seed=args.seed,
        device=args.device,
        training=training,
        checkpoint_dir=args.checkpoint_dir,
    )
    metrics = {
        name: {key: part[key] for key in ("best_validation_loss", "validation_auc") if part.get(key) is not None}
        for name, part in summary["history"].items()
    }
    print(
        f"{args.method}: wrote {args.output / 'model.onnx'} ({summary['training_seconds']:.1f} s); "
        f"validation: {json.dumps(metrics)}"
    )
    return 0


def _features_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("fileset", metavar="FILESET.json", type=Path, help="coffea fileset JSON")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUTDIR", help="output folder")
    _cluster_arguments(parser)
    parser.add_argument(
        "--features",
        default="all",
        metavar="NAMES",
        help="comma-separated features or feature sets (lhco, nonresonant, context, dijet, event, leptons, all)",
    )
    parser.add_argument(
        "--optional",
        default="all",
        metavar="NAMES",
        help="features left out with a warning when a branch is absent: names, 'all' (default) or 'none'",
    )
    _run_arguments(parser)


def _features_run(args: argparse.Namespace) -> int:
    import warnings

    from coffea_ad.workflow.features import run_features
    from coffea_ad.features import FeatureConfig, FeatureSkippedWarning

    _quiet_distributed(args)
    optional: bool | list[str] = {"all": True, "none": False}.get(args.optional, _name_list(args.optional))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FeatureSkippedWarning)
        result, paths = run_features(
            args.fileset,
            args.output,
            mode=args.mode,
            scheduler=args.scheduler,
            workers=args.workers,
            progress=not args.no_progress,
            features=_name_list(args.features),
            optional=optional,
            feature_config=FeatureConfig(met_collection=args.met),
            step_size=args.step_size,
        )
    for warning in caught:
        if issubclass(warning.category, FeatureSkippedWarning):
            print(f"warning: {warning.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    for dataset, counts in result.cutflows.items():
        print(f"{dataset}: {counts['n_events']} events, {len(result.features[dataset])} features")
    print(f"files skipped: {len(result.skipped)}")
    for path in paths.values():
        print(f"wrote {path}")
    return 0


SUBCOMMANDS: dict[str, tuple[str, Callable, Callable]] = {
    "generate": (
        "generate Pythia8 events, cluster them with fastjet and write a NanoAOD ROOT file",
        _generate_arguments,
        _generate_run,
    ),
    "processes": ("list the processes 'generate' knows and their parameters", _processes_arguments, _processes_run),
    "features": (
        "compute features, region flags, histograms and cutflow of a fileset on a dask cluster",
        _features_arguments,
        _features_run,
    ),
    "train": (
        "fit an anomaly-detection method on a feature table; write model.onnx + summary.json",
        _train_arguments,
        _train_run,
    ),
    "score": (
        "anomaly scores of a fileset as columns, on a dask cluster: tables, histograms in bins of score, thresholds",
        _score_arguments,
        _score_run,
    ),
    "fit": (
        "statistical fit of histograms (mjj bump hunt, anomaly-score template fit, ABCD): workspace, results, plots",
        _fit_arguments,
        _fit_run,
    ),
    "demo": (
        "the main job on the embedded default: a W' search in QCD dijets with CATHODE and an autoencoder, "
        "scored on a LocalCluster, bump hunt, report",
        _demo_arguments,
        _demo_run,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coffea-ad", description="Machine-learned anomaly scores for coffea analyses."
    )
    parser.add_argument("--version", action="version", version=f"coffea-ad {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (summary, add_arguments, run) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=summary, description=summary)
        add_arguments(sub)
        sub.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``coffea-ad`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.run(args)
    except CoffeaADError as error:
        print(f"coffea-ad {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"coffea-ad {args.command}: interrupted", file=sys.stderr)
        return 130

