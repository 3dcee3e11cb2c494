"""The ``coffea-ad`` command line: one module per command, the shared options defined once.

Each command is a module of this package with ``SUMMARY`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``, registered in :data:`COMMANDS`; the options several commands share are defined in
:mod:`coffea_ad.cli.options`. Errors derived from :class:`coffea_ad.CoffeaADError` are printed as one line
and exit with status 1; argument errors exit with status 2 (argparse's convention); an interrupt exits
with 130.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from types import ModuleType

from coffea_ad import __version__
from coffea_ad.cli import demo, features, fit, generate, processes, score, search, train
from coffea_ad.errors import CoffeaADError

__all__ = ["COMMANDS", "build_parser", "load_user_features", "main"]

#: Command name -> its module, in the order of the workflow.
COMMANDS: dict[str, ModuleType] = {
    "generate": generate,
    "processes": processes,
    "features": features,
    "train": train,
    "score": score,
    "fit": fit,
    "search": search,
    "demo": demo,
}


def build_parser() -> argparse.ArgumentParser:
    """The ``coffea-ad`` parser with one subparser per command of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="coffea-ad", description="Machine-learned anomaly scores for coffea analyses."
    )
    parser.add_argument("--version", action="version", version=f"coffea-ad {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        sub = commands.add_parser(name, help=module.SUMMARY, description=module.SUMMARY)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def load_user_features(modules: Sequence[str]) -> list[str]:
    """Define the features of the installed entry points and of ``--feature-module`` modules; return their names."""
    from coffea_ad.features import load_entry_point_features, load_feature_module

    defined = load_entry_point_features()
    for module in modules:
        defined.extend(name for name in load_feature_module(module) if name not in defined)
    return defined


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``coffea-ad`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        if hasattr(args, "feature_modules"):
            load_user_features(args.feature_modules)
        return args.run(args)
    except CoffeaADError as error:
        print(f"coffea-ad {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"coffea-ad {args.command}: interrupted", file=sys.stderr)
        return 130
