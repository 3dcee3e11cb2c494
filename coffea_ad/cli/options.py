"""The options the ``coffea-ad`` commands share, each defined once: one spelling, one meaning, one default.

A command adds a shared option with ``OPTION.add(parser)`` (or :func:`add_cluster` for the three that say
where a fileset runs, :func:`add_output` for ``-o/--output``), never with its own ``add_argument``, so that
``--seed``, ``-j/--workers``, ``--features`` or ``--region`` cannot drift apart between commands. A default
of None means "the command's default", which the help says.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from coffea_ad.errors import ConfigurationError

__all__ = [
    "Option",
    "names",
    "positive_int",
    "parse_settings",
    "one_region",
    "add_output",
    "add_cluster",
    "quiet_distributed",
    "DEFAULT_MASS",
    "WORKERS",
    "SCHEDULER",
    "MODE",
    "SEED",
    "DEVICE",
    "FEATURES",
    "REGION",
    "MASS",
    "NO_PROGRESS",
    "SET",
    "STEP_SIZE",
    "MET",
    "NO_TABLES",
    "STRICT",
    "SHARED",
]

#: The resonant variable when ``--mass`` is not given.
DEFAULT_MASS = "mjj"


def names(text: str) -> list[str]:
    """A comma-separated list of names (``"lhco, deta_jj"`` -> ``["lhco", "deta_jj"]``)."""
    return [name.strip() for name in text.split(",") if name.strip()]


def positive_int(text: str) -> int:
    """An integer of at least 1 (an argparse ``type``: anything else is a usage error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def parse_settings(pairs: Sequence[str]) -> dict[str, str]:
    """``--set KEY=VALUE`` arguments as a dict; a pair without ``=`` is a :class:`ConfigurationError`."""
    settings: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigurationError(f"--set expects KEY=VALUE, got {pair!r}")
        settings[key.strip()] = value.strip()
    return settings


def one_region(regions: Sequence[str] | None) -> str | None:
    """The single region flag of a command that takes one (``--region a,b`` is refused, naming both)."""
    if not regions:
        return None
    if len(regions) > 1:
        raise ConfigurationError(f"--region takes one region flag here, got {len(regions)}: {', '.join(regions)}")
    return regions[0]


@dataclasses.dataclass(frozen=True)
class Option:
    """One command-line option: its flags and its argparse settings (type, default, help, ...)."""

    flags: tuple[str, ...]
    settings: dict[str, Any] = dataclasses.field(hash=False)

    def add(self, parser: argparse.ArgumentParser | Any) -> argparse.Action:
        """Add the option to ``parser`` (a parser or an argument group) and return its action."""
        return parser.add_argument(*self.flags, **self.settings)


WORKERS = Option(
    ("-j", "--workers"),
    {"type": positive_int, "default": None, "metavar": "N", "help": "worker processes (default: one per CPU core)"},
)
SCHEDULER = Option(
    ("--scheduler",),
    {
        "default": None,
        "metavar": "ADDRESS",
        "help": "address of a running dask scheduler (default: a new LocalCluster of --workers processes)",
    },
)
MODE = Option(
    ("--mode",),
    {
        "choices": ("dask", "virtual"),
        "default": "dask",
        "help": "dask: coffea.dataset_tools on dask-awkward; virtual: processor.Runner (default: %(default)s)",
    },
)
SEED = Option(
    ("--seed",),
    {"type": int, "default": 0, "help": "random seed (default: %(default)s); the same seed gives the same output"},
)
DEVICE = Option(
    ("--device",),
    {
        "choices": ("auto", "cpu", "cuda"),
        "default": "auto",
        "help": "torch device (default: %(default)s, i.e. CUDA when available)",
    },
)
FEATURES = Option(
    ("--features",),
    {
        "type": names,
        "default": None,
        "metavar": "NAMES",
        "help": "comma-separated features or feature sets (lhco, dijet, event, leptons, context, nonresonant, all; "
        "'coffea-ad features' writes them as table columns); default: all the input allows, for train the "
        "method's default inputs",
    },
)
FEATURE_MODULE = Option(
    ("--feature-module",),
    {
        "dest": "feature_modules",
        "action": "append",
        "default": [],
        "metavar": "MODULE",
        "help": "a module defining your own features with coffea_ad.features.define_feature: a dotted name or a .py "
        "file; repeatable (installed packages can declare theirs under the entry point group coffea_ad.features)",
    },
)
REGION = Option(
    ("--region",),
    {
        "type": names,
        "default": None,
        "metavar": "FLAG",
        "help": "region flag {partition}_{region} as 'coffea-ad features' writes it (e.g. deta_sr, mjj3500_sb); "
        "comma-separated where a command takes several; default: the command's (see its description)",
    },
)
MASS = Option(
    ("--mass",),
    {"default": None, "metavar": "NAME", "help": f"the resonant variable (default: {DEFAULT_MASS})"},
)
NO_PROGRESS = Option(("--no-progress",), {"action": "store_true", "help": "do not show progress bars"})
SET = Option(
    ("--set",),
    {
        "dest": "settings",
        "action": "append",
        "default": [],
        "metavar": "KEY=VALUE",
        "help": "a parameter of the process or of the detector card (e.g. mass_wprime=3000, fatjet_radius=1.0), or "
        "a raw Pythia setting (e.g. 'TimeShower:alphaSvalue=0.12'); repeatable; 'coffea-ad processes' lists them",
    },
)
STEP_SIZE = Option(
    ("--step-size",),
    {"type": positive_int, "default": 100_000, "metavar": "N", "help": "events per chunk (default: %(default)s)"},
)
MET = Option(
    ("--met",),
    {
        "default": "auto",
        "metavar": "COLLECTION",
        "help": "MET collection of met/met_phi: 'auto' (default) takes, for each file, MET if it has it, else PFMET "
        "(NanoAOD v15), else PuppiMET; a name (e.g. PuppiMET) is used for every file, and a file without it is an "
        "error",
    },
)
NO_TABLES = Option(
    ("--no-tables",),
    {
        "action": "store_true",
        "help": "write no per-event tables, only histograms and cutflow (default: the workers write "
        "features/{dataset}.parquet, a folder of parquet parts)",
    },
)

STRICT = Option(
    ("--strict",),
    {
        "action": "store_true",
        "help": "make any skipped input an error (exit 1, nothing written): a file that cannot be read, or a chunk "
        "of a file hit by a read error such as a corrupt basket (default: skip them, report each on stderr and in "
        "cutflow.json, and process the rest)",
    },
)

#: Every shared option (``-o/--output`` aside, whose help says what each command writes).
SHARED: tuple[Option, ...] = (WORKERS, SCHEDULER, MODE, SEED, DEVICE, FEATURES, FEATURE_MODULE, REGION, MASS,
                              NO_PROGRESS, SET, STEP_SIZE, MET, NO_TABLES, STRICT)


def add_output(parser: argparse.ArgumentParser, what: str, *, required: bool = True) -> argparse.Action:
    """``-o/--output PATH``: where the command writes ``what`` (a folder, or generate's ROOT file)."""
    return parser.add_argument("-o", "--output", type=Path, required=required, metavar="PATH", help=what)


def add_cluster(parser: argparse.ArgumentParser) -> None:
    """Where a fileset runs: ``--scheduler ADDRESS`` or ``-j/--workers N`` (a new LocalCluster), and ``--mode``."""
    where = parser.add_mutually_exclusive_group()
    SCHEDULER.add(where)
    WORKERS.add(where)
    MODE.add(parser)


def quiet_distributed(verbose: bool) -> None:
    """Set the loggers of ``distributed`` to WARNING unless ``verbose`` (importing it sets them to INFO)."""
    if not verbose:
        import distributed

        logging.getLogger(distributed.__name__).setLevel(logging.WARNING)
