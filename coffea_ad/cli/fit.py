"""``coffea-ad fit``: a statistical fit of the histograms ``coffea-ad score`` (or ``features``) writes.

``coffea-ad fit [METHOD] HISTOGRAMS.root -o FOLDER``: the method is positional, as in ``coffea-ad train``
(it is what the command does; every setting is an option), and defaults to the bump hunt. Samples are
dataset names of the file; see :mod:`coffea_ad.workflow.fit` for the defaults.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from coffea_ad.cli import options

__all__ = ["SUMMARY", "add_arguments", "run"]

SUMMARY = "statistical fit of histograms (mjj bump hunt, anomaly-score template fit, ABCD): workspace, results, plots"

_METHODS = ("bumphunt", "score", "abcd")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """[METHOD] HISTOGRAMS -o FOLDER, the samples (dataset names), region, mass and the method's settings."""
    parser.description = (
        f"{SUMMARY}. Histograms are read as {{dataset}}/{{region}}/{{variable}}. Defaults: data = the dataset "
        "'data', else the sum of every dataset; the variable = {mass}_{score}_pass when the file holds one "
        "score, else {mass}; the region = the signal region 'coffea-ad score' recorded in scores.json beside "
        "the file, else deta_sr. Each default used is said in the output."
    )
    parser.add_argument(
        "method",
        nargs="?",
        choices=_METHODS,
        default="bumphunt",
        metavar="METHOD",
        help="bumphunt (default): dijet-function sideband fit of the mass with a sliding window; score: the "
        "anomaly score as the fitted variable, one channel per region; abcd: N_A = N_B N_C / N_D",
    )
    parser.add_argument("histograms", metavar="HISTOGRAMS.root", type=Path, help="histograms from 'coffea-ad score'")
    options.add_output(parser, "output folder: workspace.json, fit_results.json, datacard, plots")
    parser.add_argument(
        "--data",
        type=options.names,
        default=None,
        metavar="DATASETS",
        help="the data: a dataset of the file, or several comma-separated, summed (default: see above)",
    )
    parser.add_argument(
        "--background",
        dest="backgrounds",
        type=options.names,
        default=None,
        metavar="DATASETS",
        help="the background sample: comma-separated datasets of the file (score: default every dataset that "
        "is neither data nor signal; abcd: optional, for the closure test; bumphunt: unused)",
    )
    parser.add_argument(
        "--signal",
        default=None,
        metavar="DATASET",
        help="the signal sample: a dataset of the file (required by score; bumphunt and abcd without it report "
        "significances and no limit)",
    )
    options.REGION.add(parser)
    options.MASS.add(parser)
    parser.add_argument(
        "--score",
        default=None,
        metavar="NAME",
        help="the model whose cut is applied, by its name in 'coffea-ad score' (default: the file's only one)",
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
        "--parameters",
        type=_parameter_count,
        default="auto",
        metavar="auto|3|4|5",
        help="bumphunt: parameters of the dijet function, the normalisation included (CMS/ATLAS convention); "
        "auto (default) chooses them by a Fisher F-test on each window's sidebands",
    )
    parser.add_argument(
        "--mjj-min",
        type=float,
        default=None,
        metavar="GEV",
        help="bumphunt: start of the fit range (default: found from the data, the first bin above the "
        "spectrum's turn-on peak, moved up while the fit probability is poor)",
    )
    parser.add_argument(
        "--mjj-max", type=float, default=None, metavar="GEV", help="bumphunt: end of the fit range (default: the "
        "last filled bin)",
    )
    parser.add_argument(
        "--toys", type=int, default=0, help="bumphunt: background-only toys for the global significance"
    )
    options.SEED.add(parser)


def _parameter_count(text: str) -> int | str:
    if text == "auto":
        return text
    if text in ("3", "4", "5"):
        return int(text)
    raise argparse.ArgumentTypeError(f"expected auto, 3, 4 or 5, got {text!r}")


def run(args: argparse.Namespace) -> int:
    """Fit and print the result, with every default that was used."""
    from coffea_ad.workflow.fit import describe_fit, run_fit

    summary = run_fit(
        args.histograms,
        args.output,
        method=args.method,
        data=args.data,
        backgrounds=args.backgrounds,
        signal=args.signal,
        regions=args.region,
        mass=args.mass or options.DEFAULT_MASS,
        score=args.score,
        template_statistics=args.template_statistics,
        bumphunt_options={
            "relative_width": args.window_width,
            "n_parameters": args.parameters,
            "mjj_min": args.mjj_min,
            "mjj_max": args.mjj_max,
            "n_toys": args.toys,
            "seed": args.seed,
        },
    )
    print(describe_fit(summary))
    return 0
