"""The ``coffea-ad`` command line: one module per command, the shared options defined once.

Each command is a module of this package with ``SUMMARY`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``, registered in :data:`COMMANDS`; the options several commands share are defined in
:mod:`coffea_ad.cli.options`. Errors derived from :class:`coffea_ad.CoffeaADError` are printed as one line
and exit with status 1; argument errors exit with status 2 (argparse's convention); an interrupt exits
with 130 (Ctrl-C, SIGINT) or 143 (SIGTERM, what batch systems send: 128 + 15). SIGTERM takes the path of Ctrl-C:
it raises :class:`Terminated`, a ``KeyboardInterrupt``, so that every context manager on the way out runs
(temporary outputs removed, worker pools and Dask clusters stopped) before the command exits. A command that
writes a folder has it checked before any work (one that cannot be written or created is refused at once), and
leaves no empty output folder behind when it fails or is interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from types import ModuleType

from coffea_ad import __version__
from coffea_ad.cli import demo, features, fit, generate, processes, score, search, train
from coffea_ad.errors import CoffeaADError
from coffea_ad.paths import check_output_folder, cleanup_new_folder

__all__ = ["COMMANDS", "Terminated", "build_parser", "load_user_features", "main"]

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

#: The commands whose ``-o/--output`` is a file; every other one writes a folder.
_FILE_OUTPUT = ("generate",)


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: raised in the main thread where Ctrl-C raises ``KeyboardInterrupt``, so that the same
    cleanup runs; told apart from Ctrl-C only for the exit status (143 instead of 130)."""


#: Loggers of the Dask cluster's teardown: after a SIGTERM their errors (tasks cancelled, workers lost) are the
#: interruption itself, not news; ``-v`` keeps them.
_TEARDOWN_LOGGERS = ("asyncio", "distributed", "tornado")


def _terminate(verbose: bool, signum: int, frame: object) -> None:
    # Later SIGTERMs (a batch system may repeat it) must not interrupt the cleanup the first one started.
    signal.signal(signal.SIGTERM, _ignore_repeat)
    if not verbose:
        for name in _TEARDOWN_LOGGERS:
            logging.getLogger(name).setLevel(logging.CRITICAL)
    raise Terminated(f"signal {signal.Signals(signum).name}")


def _ignore_repeat(signum: int, frame: object) -> None:
    logging.getLogger(__name__).info("signal %s again: still cleaning up", signal.Signals(signum).name)


@contextlib.contextmanager
def _sigterm_as_interrupt(verbose: bool) -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (in the main thread only: elsewhere Python cannot
    install a signal handler, and the caller's handling is kept)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, functools.partial(_terminate, verbose))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _output_folder(args: argparse.Namespace) -> contextlib.AbstractContextManager:
    """For a command that writes a folder: refuse at once one that cannot be written or created, and remove
    it again if the command fails (or is interrupted) in a folder it created and leaves it empty."""
    folder = getattr(args, "output", None)
    if folder is None or args.command in _FILE_OUTPUT:
        return contextlib.nullcontext()
    check_output_folder(folder)
    return cleanup_new_folder(folder)


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
        with _sigterm_as_interrupt(args.verbose), _output_folder(args):
            if hasattr(args, "feature_modules"):
                load_user_features(args.feature_modules)
            return args.run(args)
    except CoffeaADError as error:
        print(f"coffea-ad {args.command}: error: {error}", file=sys.stderr)
        return 1
    except Terminated:
        print(f"coffea-ad {args.command}: terminated (SIGTERM)", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print(f"coffea-ad {args.command}: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
