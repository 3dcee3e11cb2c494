"""The LHC Olympics R&D protocol on coffea_ad's samples: weakly supervised resonant searches compared.

The CATHODE study (Hallin et al., arXiv:2109.00546) compares methods on the LHC Olympics R&D dataset:
QCD dijets with W' -> X(qq) Y(qq) events injected at a chosen S/B in the 3.3-3.7 TeV signal region, the
features mj_min, Delta mj and tau21 of both jets, every method trained on the "data" (which sample an event
came from is not used), and evaluated on independent background and signal events of the signal region by
its maximum significance improvement SIC = TPR/sqrt(FPR), with FPR > 1/N_bkg.

Here the samples are coffea_ad's (Pythia8 + fastjet, anti-kT R = 1.0 fat jets as in the R&D dataset), the
features come from the feature processor on a ``distributed`` cluster, and every method is the one in
:mod:`coffea_ad.models`. Four generated files play the R&D dataset's roles:

* ``background``: the QCD events the "data" are made of (plus the injected W' events);
* ``idealized_background``: independent QCD, the idealized detector's perfect background template (also the
  supervised classifier's background); like the published template it is larger than the data's QCD;
* ``test_background``: independent QCD on which every method is evaluated;
* ``signal``: W' events, split in three fixed parts: the test signal, the supervised classifier's signal and
  the pool the injected events are drawn from (a different draw for every seed).

At the published scale the same roles come from the feature tables in ``../shared/data/lhco_like/`` (ten files
of 100k QCD events, seeds 401-410, and 30k W' events, seed 451; see :func:`load_tables`): the data hold the
published 121,352 QCD events in the signal region, the test QCD is the last file, and the idealized background is
the rest. Without the tables the samples are generated (:func:`generate_samples`, :func:`load_samples`).

``examples/lhco_method_comparison.py`` and ``benchmarks/lhco_like.py`` are built on this module.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from coffea_ad.errors import ConfigurationError, InputFileError
from coffea_ad.features.folds import EVENT_ID_BRANCHES
from coffea_ad.features.dijet import safe_ratio
from coffea_ad.processing.tables import (
    EVENT_ID_COLUMNS,
    Table,
    complete_rows,
    concatenate_tables,
    float_column,
    take_rows,
)

__all__ = [
    "LHCO_FEATURES",
    "PROTOCOL_METHODS",
    "PROTOCOL_CLASSIFIERS",
    "PROTOCOL_FEATURE_SETS",
    "METHOD_LABELS",
    "SAMPLE_SETTINGS",
    "SIGNAL_REGION",
    "PUBLISHED_BACKGROUND_SR",
    "PUBLISHED_SIGNAL_SR",
    "PUBLISHED_S_OVER_B",
    "PUBLISHED_SCAN",
    "Injection",
    "LHCOSamples",
    "MethodResult",
    "add_noise_features",
    "add_sample_options",
    "correlate_with_mjj",
    "default_tables_folder",
    "evaluate",
    "fit_method",
    "generate_samples",
    "inject_signal",
    "load_samples",
    "load_tables",
    "mismodelled_simulation",
    "run_method",
    "sample_sizes",
    "tables_present",
]

logger = logging.getLogger(__name__)

#: The R&D comparison's features (mjj is the resonant variable, not a feature).
LHCO_FEATURES: tuple[str, ...] = ("mj_min", "delta_mj", "tau21_j1", "tau21_j2")
#: The protocol's feature sets: the R&D comparison's (``nominal``) and the extended substructure set of
#: arXiv:2309.13111 (``extended``: plus τ32 and τ43 of both jets).
PROTOCOL_FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "nominal": LHCO_FEATURES,
    "extended": (*LHCO_FEATURES, "tau32_j1", "tau32_j2", "tau43_j1", "tau43_j2"),
}
#: Features the tables of :func:`load_tables` do not store, formed from their raw N-subjettiness columns as the
#: feature registry forms them (:func:`coffea_ad.features.dijet.safe_ratio`): name -> (numerator, denominator).
TABLE_DERIVED_COLUMNS: dict[str, tuple[str, str]] = {
    f"tau43_{jet}": (f"tau4_{jet}", f"tau3_{jet}") for jet in ("j1", "j2")
}
#: The signal region in mjj (GeV) around the 3.5 TeV W'.
SIGNAL_REGION: tuple[float, float] = (3300.0, 3700.0)
#: The methods compared, from the fully supervised reference to the pure density-ratio method.
PROTOCOL_METHODS: tuple[str, ...] = (
    "supervised", "iad", "cathode", "lacathode", "curtains", "feta", "cwola", "anode", "ranode",
)
#: How each method is called in plots and tables.
METHOD_LABELS: dict[str, str] = {
    "supervised": "supervised",
    "iad": "idealized AD",
    "cathode": "CATHODE",
    "lacathode": "LaCATHODE",
    "curtains": "CURTAINs",
    "feta": "FETA",
    "cwola": "CWoLa hunting",
    "anode": "ANODE",
    "ranode": "R-ANODE",
}
#: Generation settings of the samples: the R&D dataset clusters its fat jets with anti-kT R = 1.0.
SAMPLE_SETTINGS: dict[str, float] = {"fatjet_radius": 1.0}
#: Process and seed of each sample role.
SAMPLE_ROLES: dict[str, tuple[str, int]] = {
    "background": ("qcd_dijet", 102),
    "idealized_background": ("qcd_dijet", 105),
    "test_background": ("qcd_dijet", 104),
    "signal": ("wprime_xy", 103),
}
#: Default number of events of each sample role (about 18 minutes of generation on 2 cores).
DEFAULT_EVENTS: dict[str, int] = {
    "background": 60_000,
    "idealized_background": 60_000,
    "test_background": 40_000,
    "signal": 20_000,
}
#: FETA's simulation in the protocol: the idealized background with its jet masses (``mj_min``, ``delta_mj``) scaled
#: by this factor, a jet mass scale mismodelled by 3 % (see :func:`mismodelled_simulation`).
SIMULATION_JET_MASS_SCALE = 1.03
#: The stricter max SIC of :class:`MethodResult`: at least this many test QCD events pass the cut (FPR >= 20/N).
ROBUST_MIN_BACKGROUND = 20
#: Width (GeV) of each of CWoLa hunting's two sidebands, next to the signal region.
CWOLA_SIDEBAND_WIDTH = 200.0
#: The SIC curves are stored on this grid of signal efficiencies.
TPR_GRID = np.linspace(0.02, 1.0, 50)
#: The classifiers a classifier-based method can use in the protocol: the MLP of the CATHODE study, or an
#: ensemble of boosted trees (arXiv:2309.13111).
PROTOCOL_CLASSIFIERS: tuple[str, ...] = ("mlp", "hgb")
#: The tree ensemble of ``classifier="hgb"``: members (repeated 5-fold splits, see
#: :func:`coffea_ad.models.classifiers.fit_classifier`), maximum boosting iterations and early-stopping patience.
TREE_ENSEMBLE = 10
TREE_MAX_ITERATIONS = 200
TREE_PATIENCE = 10

#: LHC Olympics R&D signal region (arXiv:2109.00546): 121,352 QCD and 772 W' events, S/B = 0.64 %.
PUBLISHED_BACKGROUND_SR = 121_352
PUBLISHED_SIGNAL_SR = 772
PUBLISHED_S_OVER_B = PUBLISHED_SIGNAL_SR / PUBLISHED_BACKGROUND_SR
#: The S/B scan below the published point, down to 0.1 %.
PUBLISHED_SCAN: tuple[float, ...] = (0.004, 0.0025, 0.001)
#: The feature tables of ``../shared/data/lhco_like/``: QCD files by seed (in the order the data take them;
#: the last ``TABLE_TEST_FILES`` are the test QCD) and the W' file.
TABLE_QCD_SEEDS: tuple[int, ...] = tuple(range(401, 411))
TABLE_SIGNAL_SEED = 451
TABLE_TEST_FILES = 1


def _qcd_table_name(seed: int) -> str:
    return f"qcd_100k_seed{seed}.parquet"


def _signal_table_name(seed: int) -> str:
    return f"wprime_30k_seed{seed}.parquet"

def _in_window(table: Table, window: Sequence[float]) -> np.ndarray:
    return (table["mjj"] >= window[0]) & (table["mjj"] < window[1])


def add_sample_options(parser) -> None:
    """Add ``--sample-folder`` and one ``--{role}-events`` option per sample role to an argparse parser."""
    from coffea_ad.paths import cache_dir

    parser.add_argument("--sample-folder", default=cache_dir() / "lhco_like",
                        help="generated samples, cached (shared by the LHCO example and benchmark)")
    for role, n_events in DEFAULT_EVENTS.items():
        parser.add_argument(f"--{role.replace('_', '-')}-events", type=int, default=n_events,
                            help=f"events of the {role.replace('_', ' ')} sample (default {n_events})")


def sample_sizes(arguments) -> dict[str, int]:
    """Events per sample role, from the options of :func:`add_sample_options`."""
    return {role: getattr(arguments, f"{role}_events") for role in SAMPLE_ROLES}


def generate_samples(
    folder: str | Path,
    n_events: Mapping[str, int],
    *,
    workers: int | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """The samples of the protocol in ``folder``, ``n_events[role]`` events for each role of
    :data:`SAMPLE_ROLES`, generated on first use (see :func:`coffea_ad.generate.cached_sample`);
    returns ``{role: path}``."""
    from coffea_ad.generate import cached_sample

    missing = sorted(set(SAMPLE_ROLES) - set(n_events))
    if missing:
        raise ConfigurationError(f"no number of events given for sample role(s) {missing}")
    return {
        role: cached_sample(
            folder, process, n_events[role], seed=seed, settings=SAMPLE_SETTINGS, workers=workers, progress=progress
        )
        for role, (process, seed) in SAMPLE_ROLES.items()
    }


_ROLE_TABLES = (
    "background", "idealized_background", "test_background", "supervised_signal", "test_signal", "injection_pool"
)


@dataclass(frozen=True)
class LHCOSamples:
    """Feature tables (column name -> array; events with two fat jets) of the protocol's samples, split into
    their fixed roles. Build it with :func:`load_samples`."""

    background: Table
    idealized_background: Table
    test_background: Table
    supervised_signal: Table
    test_signal: Table
    injection_pool: Table
    features: tuple[str, ...] = LHCO_FEATURES
    #: Where each role's events come from (files and event ranges), for the results files.
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def tables(self) -> dict[str, Table]:
        """The six role tables by name."""
        return {name: getattr(self, name) for name in _ROLE_TABLES}

    def describe(self, signal_region: Sequence[float] = SIGNAL_REGION) -> dict[str, dict[str, int]]:
        """Events per table: all, and inside ``signal_region``."""
        return {
            name: {"events": len(table["mjj"]), "signal_region": int(_in_window(table, signal_region).sum())}
            for name, table in self.tables().items()
        }


def load_samples(
    paths: Mapping[str, str | Path],
    folder: str | Path,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
) -> LHCOSamples:
    """Run the feature processor on the samples (a ``distributed.LocalCluster`` with ``workers`` workers,
    or the cluster at ``scheduler``), write its outputs to ``folder`` and split the signal.

    ``paths`` maps each role of :data:`SAMPLE_ROLES` to its file. The signal split is fixed (independent of
    any training seed): 40 % test, 30 % supervised training and 30 % injection pool.
    """
    from coffea_ad.workflow.features import run_features

    missing = sorted(set(SAMPLE_ROLES) - set(paths))
    if missing:
        raise ConfigurationError(f"no file given for sample role(s) {missing}; roles: {list(SAMPLE_ROLES)}")
    fileset = {role: {"files": {str(paths[role]): "Events"}} for role in SAMPLE_ROLES}
    # strict: the protocol needs every event of every sample, so a skipped file or chunk is an error
    result, _ = run_features(
        fileset, folder, features=["lhco"], workers=workers, scheduler=scheduler, progress=progress, tables="memory",
        strict=True,
    )
    columns = ["mjj", *LHCO_FEATURES]
    tables = {role: complete_rows(result.tables[role], columns) for role in SAMPLE_ROLES}
    return LHCOSamples(
        background=tables["background"],
        idealized_background=tables["idealized_background"],
        test_background=tables["test_background"],
        **_split_signal(tables["signal"]),
    )


def _split_signal(signal: Table) -> dict[str, Table]:
    """The fixed split of the W' events (independent of any training seed): 40 % test, 30 % supervised
    training, 30 % injection pool."""
    order = np.random.default_rng(0).permutation(len(signal["mjj"]))
    test, supervised, pool = np.split(order, [int(0.4 * len(order)), int(0.7 * len(order))])
    return {
        "supervised_signal": take_rows(signal, np.sort(supervised)),
        "test_signal": take_rows(signal, np.sort(test)),
        "injection_pool": take_rows(signal, np.sort(pool)),
    }


def default_tables_folder() -> Path:
    """``../shared/data/lhco_like`` next to the repository (it may not exist)."""
    return Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "lhco_like"


def tables_present(folder: str | Path | None = None) -> bool:
    """True when ``folder`` (default :func:`default_tables_folder`) holds every feature table :func:`load_tables`
    reads."""
    folder = Path(folder) if folder is not None else default_tables_folder()
    names = [*map(_qcd_table_name, TABLE_QCD_SEEDS), _signal_table_name(TABLE_SIGNAL_SEED)]
    return all((folder / name).is_file() for name in names)


def _read_table(path: Path, seed: int, columns: Sequence[str]) -> tuple[dict[str, np.ndarray], int]:
    """The complete rows of ``columns`` (plus the event identity) of one feature table, and how many rows had a
    null or NaN in one of ``columns`` (events without two fat jets, or a zero tau1): those are dropped, never
    filled. ``run`` becomes the file's generator ``seed`` (every file numbers its events 1 ... N in run 1), so
    that ``(run, luminosityBlock, event)`` names one event across files, as the folds and the checks need."""
    import pyarrow.parquet as pq

    if not path.is_file():
        raise InputFileError(f"LHCO feature table {path} does not exist")
    derived = {name: TABLE_DERIVED_COLUMNS[name] for name in columns if name in TABLE_DERIVED_COLUMNS}
    stored = [name for name in columns if name not in derived]
    read = list(dict.fromkeys([*EVENT_ID_BRANCHES, *stored, *(raw for pair in derived.values() for raw in pair)]))
    try:
        arrow = pq.read_table(path, columns=read)
    except (OSError, ValueError, KeyError) as error:  # pyarrow: unreadable file, or a column it lacks
        raise InputFileError(f"cannot read columns {read} of {path}: {error}") from error
    values = {name: float_column(arrow, name) for name in read}
    for name, (numerator, denominator) in derived.items():
        values[name] = safe_ratio(values[numerator], values[denominator])
    table = complete_rows(values, [*EVENT_ID_BRANCHES, *columns])
    n_dropped = arrow.num_rows - len(table["mjj"])
    table["run"] = np.full(len(table["mjj"]), seed, dtype=EVENT_ID_COLUMNS["run"])
    for name in EVENT_ID_BRANCHES[1:]:
        table[name] = table[name].astype(EVENT_ID_COLUMNS[name])
    return table, n_dropped


def _event_ranges(table: Table) -> list[dict[str, int]]:
    """Per file (``run`` = seed) of a table read by :func:`load_tables`: its first and last event and row count."""
    return [
        {
            "seed": int(seed),
            "first_event": int(table["event"][table["run"] == seed].min()),
            "last_event": int(table["event"][table["run"] == seed].max()),
            "events": int((table["run"] == seed).sum()),
        }
        for seed in np.unique(table["run"])
    ]


def load_tables(
    folder: str | Path | None = None,
    *,
    features: Sequence[str] = LHCO_FEATURES,
    n_background_signal_region: int = PUBLISHED_BACKGROUND_SR,
    signal_region: Sequence[float] = SIGNAL_REGION,
) -> LHCOSamples:
    """The protocol's samples at the published scale, from the feature tables in ``folder`` (default
    :func:`default_tables_folder`; see its README).

    Deterministic roles, with the QCD files in seed order 401, 402, ... 410 and each file in event order:

    * ``background`` (the data's QCD): the first events, up to and including the ``n_background_signal_region``-th
      one in ``signal_region`` (default the published 121,352): files 401-407 and the first ~66 % of 408;
    * ``test_background``: the last :data:`TABLE_TEST_FILES` file(s) (410: 100k events, ~15.8k in the signal
      region);
    * ``idealized_background``: everything in between (the rest of 408 and all of 409: ~134k events, ~21.2k in
      the signal region);
    * the W' file (seed 451) split as :func:`load_samples` does: 40 % test, 30 % supervised, 30 % injection pool.

    ``features`` are table columns or :data:`TABLE_DERIVED_COLUMNS` (τ43, formed from the raw τ columns; see
    :data:`PROTOCOL_FEATURE_SETS`). ``run`` of every row is its file's seed, so that no event identity appears
    twice. Rows with a null or NaN in ``mjj`` or a feature are dropped (and counted in ``provenance``). Returns the samples with their
    ``provenance`` (the folder relative to the repository, the files and event ranges of every role).
    """
    folder = Path(folder) if folder is not None else default_tables_folder()
    if not folder.is_dir():
        raise InputFileError(f"LHCO feature-table folder {folder} does not exist")
    columns = ["mjj", *(name for name in features if name != "mjj")]
    qcd, dropped = [], {}
    for seed in TABLE_QCD_SEEDS:
        table, dropped[_qcd_table_name(seed)] = _read_table(folder / _qcd_table_name(seed), seed, columns)
        qcd.append(table)
    signal, dropped[_signal_table_name(TABLE_SIGNAL_SEED)] = _read_table(
        folder / _signal_table_name(TABLE_SIGNAL_SEED), TABLE_SIGNAL_SEED, columns
    )
    test_files = len(TABLE_QCD_SEEDS) - TABLE_TEST_FILES
    before_test = concatenate_tables(*qcd[:test_files])
    in_sr = np.flatnonzero(_in_window(before_test, signal_region))
    if len(in_sr) < n_background_signal_region:
        raise ConfigurationError(
            f"n_background_signal_region = {n_background_signal_region}: the QCD files before the test file(s) of "
            f"{folder} hold {len(in_sr)} signal-region events"
        )
    cut = in_sr[n_background_signal_region - 1] + 1
    roles = {
        "background": take_rows(before_test, slice(0, cut)),
        "idealized_background": take_rows(before_test, slice(cut, None)),
        "test_background": concatenate_tables(*qcd[test_files:]),
    }
    signal_parts = _split_signal(signal)
    provenance = {
        "folder": os.path.relpath(os.path.normpath(folder.absolute()), Path(__file__).resolve().parents[2]),
        "run": "the file's generator seed (every file numbers its events 1 ... N in run 1)",
        "dropped_rows_with_null": dropped,
        **{role: _event_ranges(table) for role, table in roles.items()},
        "signal": _event_ranges(signal),
    }
    logger.info("LHCO tables from %s: %s", folder, {role: len(t["mjj"]) for role, t in roles.items()})
    return LHCOSamples(**roles, **signal_parts, features=tuple(features), provenance=provenance)


def correlate_with_mjj(samples: LHCOSamples, slope: float = 0.1) -> LHCOSamples:
    """The same samples with the jet-mass features made to depend on mjj: ``mj_min`` and ``delta_mj``
    become ``mj_min + slope * mjj`` and ``delta_mj + slope * mjj`` (columns ``*_shifted``).

    A stress test of background interpolation: the sidebands then differ from the signal region in those
    features even without signal, which a sideband-vs-signal-region classifier (CWoLa) learns, while a
    density conditioned on mjj (CATHODE, ANODE) follows it.
    """
    def shift(role: str, table: Table) -> Table:
        shifted = dict(table)
        for name in ("mj_min", "delta_mj"):
            shifted[f"{name}_shifted"] = table[name] + slope * table["mjj"]
        return shifted

    features = tuple(f"{name}_shifted" if name in ("mj_min", "delta_mj") else name for name in samples.features)
    return _map_tables(samples, shift, features)


def _map_tables(samples: LHCOSamples, change: Callable[[str, Table], Table], features: Sequence[str]) -> LHCOSamples:
    """``samples`` with every role table replaced by ``change(role, table)`` and the features ``features``."""
    changed = {role: change(role, table) for role, table in samples.tables().items()}
    return dataclasses.replace(samples, **changed, features=tuple(features))


def add_noise_features(samples: LHCOSamples, n_features: int, seed: int = 0) -> LHCOSamples:
    """The same samples with ``n_features`` uninformative features ``noise_0`` ... appended: independent standard
    normal values per event (fixed by ``seed`` and the role, so every training sees the same noise).

    The robustness test of arXiv:2309.13111: boosted-tree ensembles keep their sensitivity with 10 such
    features, where neural classifiers lose most of theirs. An injected W' event carries the noise of its pool row.

    References:
        Finke et al., "Back To The Roots: Tree-Based Algorithms for Weakly Supervised Anomaly Detection",
        arXiv:2309.13111.
    """
    if n_features < 0:
        raise ConfigurationError(f"the number of noise features must be >= 0, got {n_features}")
    names = [f"noise_{index}" for index in range(n_features)]

    def add_noise(role: str, table: Table) -> Table:
        rng = np.random.default_rng([seed, _ROLE_TABLES.index(role)])
        noise = rng.standard_normal((len(table["mjj"]), n_features))
        return {**table, **{name: noise[:, index] for index, name in enumerate(names)}}

    return _map_tables(samples, add_noise, (*samples.features, *names))


@dataclass(frozen=True)
class Injection:
    """The "data" of one pseudo-experiment: the background with W' events injected."""

    data: Table
    n_background_signal_region: int
    n_signal_signal_region: int
    n_signal: int

    @property
    def is_signal(self) -> np.ndarray:
        """True for the injected W' rows of :attr:`data` (for evaluation only: the methods never see it)."""
        n_rows = len(self.data["mjj"])
        return np.arange(n_rows) >= n_rows - self.n_signal

    @property
    def s_over_b(self) -> float:
        """Signal over background in the signal region."""
        return self.n_signal_signal_region / self.n_background_signal_region

    @property
    def s_over_sqrt_b(self) -> float:
        """Signal over the square root of the background in the signal region."""
        return self.n_signal_signal_region / np.sqrt(self.n_background_signal_region)


def inject_signal(
    samples: LHCOSamples, s_over_b: float, seed: int, signal_region: Sequence[float] = SIGNAL_REGION
) -> Injection:
    """Inject W' events drawn at random (``seed``) from the injection pool into the background so that the
    signal region holds ``s_over_b`` times as many signal as background events.

    Whole events are injected, with their mjj, so some fall in the sidebands as they would in data.
    Asking for more signal than the pool holds raises.
    """
    if s_over_b < 0:
        raise ConfigurationError(f"s_over_b must be >= 0, got {s_over_b}")
    n_background_sr = int(_in_window(samples.background, signal_region).sum())
    target = int(round(s_over_b * n_background_sr))
    pool = samples.injection_pool
    order = np.random.default_rng([seed, 17]).permutation(len(pool["mjj"]))
    in_sr = _in_window(pool, signal_region)[order]
    if target > in_sr.sum():
        raise ConfigurationError(
            f"S/B = {s_over_b:g} needs {target} signal-region W' events; the injection pool holds "
            f"{int(in_sr.sum())}: generate a larger signal sample"
        )
    n_injected = int(np.searchsorted(np.cumsum(in_sr), target) + 1) if target else 0
    injected = take_rows(pool, np.sort(order[:n_injected]))
    return Injection(
        data=concatenate_tables(samples.background, injected),
        n_background_signal_region=n_background_sr,
        n_signal_signal_region=target,
        n_signal=n_injected,
    )


def mismodelled_simulation(table: Table, jet_mass_scale: float = SIMULATION_JET_MASS_SCALE) -> Table:
    """``table`` as a mismodelled background simulation: every jet-mass column (``mj_min``, ``delta_mj`` and their
    ``*_shifted`` forms) multiplied by ``jet_mass_scale``; mjj and the substructure ratios unchanged.

    FETA learns to move simulation onto data in the sidebands. With the idealized background itself as simulation
    there would be nothing to move, and FETA would be the idealized detector with a detour; a jet mass scale off
    by a few per cent, of the size of the CMS jet mass scale uncertainty, gives it the task it exists for.
    """
    return {
        name: values * jet_mass_scale if name.startswith(("mj_min", "delta_mj")) else values
        for name, values in table.items()
    }


def _protocol_arguments(
    method: str, injection: Injection, samples: LHCOSamples, window: tuple[float, float]
) -> tuple[dict[str, Any], Table, dict[str, Any]]:
    """(constructor arguments, training table, fit inputs) of ``method`` in the protocol."""
    data = injection.data
    if method == "supervised":
        background = take_rows(samples.idealized_background, _in_window(samples.idealized_background, window))
        signal = take_rows(samples.supervised_signal, _in_window(samples.supervised_signal, window))
        table = concatenate_tables(background, signal)
        table["is_signal"] = np.r_[np.zeros(len(background["mjj"])), np.ones(len(signal["mjj"]))]
        return {}, table, {"label": "is_signal"}
    if method == "iad":
        return {}, data, {"background": samples.idealized_background, "signal_region": window}
    if method == "feta":
        simulation = mismodelled_simulation(samples.idealized_background)
        return {}, data, {"simulation": simulation, "signal_region": window}
    if method == "cwola":
        near = _in_window(data, (window[0] - CWOLA_SIDEBAND_WIDTH, window[1] + CWOLA_SIDEBAND_WIDTH))
        return {}, take_rows(data, near), {"signal_region": window}
    return {}, data, {"signal_region": window}


def fit_method(
    method: str,
    injection: Injection,
    samples: LHCOSamples,
    *,
    seed: int,
    epochs: int = 30,
    classifier_epochs: int = 100,
    classifier: str = "mlp",
    tree_ensemble: int = TREE_ENSEMBLE,
    signal_region: Sequence[float] = SIGNAL_REGION,
    progress: bool = False,
):
    """Train ``method`` (one of :data:`PROTOCOL_METHODS`) on the injected data as the protocol prescribes.

    * ``supervised``: supervised W' vs idealized background events of the signal region (true labels);
    * ``iad``: signal-region data vs the idealized background template;
    * ``cathode``, ``lacathode``, ``anode``, ``ranode``: the sideband flow interpolated into the signal region;
    * ``curtains``: sideband events carried into the signal region by a transport trained between sideband masses;
    * ``feta``: the idealized background with a 3 % jet mass scale mismodelling
      (:func:`mismodelled_simulation`) as simulation, moved onto the data by a transport trained in the sidebands;
    * ``cwola``: signal region vs the sidebands next to it, :data:`CWOLA_SIDEBAND_WIDTH` wide on each side
      (one classifier).

    Every method trains a single model (``folds=1``, no cross-training): the protocol scores the independent
    test events, which no model saw, so one model trained on all the data is what the published comparison
    measures.

    ``classifier`` (one of :data:`PROTOCOL_CLASSIFIERS`; ANODE has none and ignores it) is the classifier of
    every classifier-based method. ``"mlp"``, as in the CATHODE study: trains for ``classifier_epochs`` epochs
    without early stopping and is the average of its 10 best epochs by validation loss, batches of 512 events.
    ``"hgb"``, as in arXiv:2309.13111: the average of ``tree_ensemble`` (default :data:`TREE_ENSEMBLE`; the
    paper averages 50) histogram gradient-boosted tree models, each trained on 4/5 of the events and
    early-stopped (:data:`TREE_PATIENCE` iterations, at most :data:`TREE_MAX_ITERATIONS`) on the other fifth, the
    fifths of repeated 5-fold splits. The flows train for at most ``epochs`` epochs with early stopping
    (patience 5). The estimator comes from the registry (:func:`coffea_ad.models.get_estimator`).

    References:
        Hallin et al., arXiv:2109.00546; Finke et al., arXiv:2309.13111.
    """
    from coffea_ad.models import get_estimator

    if method not in PROTOCOL_METHODS:
        raise ConfigurationError(f"unknown method {method!r}; the protocol compares {', '.join(PROTOCOL_METHODS)}")
    if classifier not in PROTOCOL_CLASSIFIERS:
        raise ConfigurationError(
            f"unknown classifier {classifier!r}; the protocol's classifiers are {', '.join(PROTOCOL_CLASSIFIERS)}"
        )
    classifiers = {
        "mlp": ({}, {"epochs": classifier_epochs, "batch_size": 512, "patience": None, "keep_best": 10}),
        "hgb": (
            {"classifier": "hgb", "ensemble": tree_ensemble},
            {"epochs": TREE_MAX_ITERATIONS, "patience": TREE_PATIENCE, "validation_fraction": 0.2},
        ),
    }
    classifier_init, classifier_training = classifiers[classifier]
    settings = {
        "flow": {"epochs": epochs, "batch_size": 512, "patience": 5, "progress": progress},
        "classifier": {**classifier_training, "progress": progress},
    }
    estimator_class = get_estimator(method)
    training = {network: settings[network] for network in estimator_class.networks}
    init, table, inputs = _protocol_arguments(method, injection, samples, tuple(signal_region))
    if "classifier" in estimator_class.networks:
        init = {**init, **classifier_init}
    # folds=1: evaluated on the independent test events only (see the docstring), like the published numbers
    estimator = estimator_class(**init, folds=1, training=training, seed=seed)
    return estimator.fit(table, list(samples.features), **inputs)


@dataclass
class MethodResult:
    """One method trained once: its test performance in the signal region."""

    method: str
    #: The classifier of a classifier-based method (``None`` for ANODE).
    classifier: str | None
    seed: int
    s_over_b: float
    s_over_sqrt_b: float
    n_signal_signal_region: int
    #: Injected W' events in all (some fall in the sidebands) and QCD events of the data's signal region.
    n_signal_injected: int
    n_background_signal_region: int
    #: The features every method trained on.
    features: list[str]
    #: Per trained network, the epochs it ran (boosted trees: the boosting iterations of each member).
    epochs: dict[str, Any]
    max_sic: float
    #: Max SIC where at least :data:`ROBUST_MIN_BACKGROUND` test QCD events pass (FPR >= 20/N): the protocol's
    #: floor (FPR > 1/N) lets the maximum sit where two QCD events are left, on a TPR of a few signal events.
    max_sic_robust: float
    auc: float
    #: SIC at the signal efficiencies :data:`TPR_GRID` (NaN where FPR <= 1/N_bkg).
    sic_curve: list[float]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable record."""
        return {key: getattr(self, key) for key in self.__dataclass_fields__}


def evaluate(estimator, samples: LHCOSamples, signal_region: Sequence[float] = SIGNAL_REGION):
    """The ROC of ``estimator`` on the test W' vs test QCD events of ``signal_region``."""
    from coffea_ad.selection import metrics

    signal = take_rows(samples.test_signal, _in_window(samples.test_signal, signal_region))
    background = take_rows(samples.test_background, _in_window(samples.test_background, signal_region))
    return metrics.roc_curve(estimator.score(signal), estimator.score(background))


def run_method(
    method: str,
    samples: LHCOSamples,
    s_over_b: float,
    seed: int,
    *,
    epochs: int = 30,
    classifier_epochs: int = 100,
    classifier: str = "mlp",
    tree_ensemble: int = TREE_ENSEMBLE,
    signal_region: Sequence[float] = SIGNAL_REGION,
    progress: bool = False,
) -> MethodResult:
    """Inject W' at ``s_over_b`` (draw ``seed``), train ``method`` (seed ``seed``, ``classifier``, see
    :func:`fit_method`) and evaluate it."""
    from coffea_ad.models import get_estimator
    from coffea_ad.selection import metrics

    start = time.perf_counter()
    injection = inject_signal(samples, s_over_b, seed, signal_region)
    estimator = fit_method(
        method, injection, samples, seed=seed, epochs=epochs, classifier_epochs=classifier_epochs,
        classifier=classifier, tree_ensemble=tree_ensemble, signal_region=signal_region, progress=progress,
    )
    roc = evaluate(estimator, samples, signal_region)
    return MethodResult(
        method=method,
        classifier=classifier if "classifier" in get_estimator(method).networks else None,
        seed=seed,
        s_over_b=injection.s_over_b,
        s_over_sqrt_b=injection.s_over_sqrt_b,
        n_signal_signal_region=injection.n_signal_signal_region,
        n_signal_injected=injection.n_signal,
        n_background_signal_region=injection.n_background_signal_region,
        features=list(samples.features),
        epochs={name: run.get("epochs_run", run.get("trees")) for name, run in estimator.history_.items()},
        max_sic=metrics.max_sic(roc),
        max_sic_robust=metrics.max_sic(roc, min_fpr=(ROBUST_MIN_BACKGROUND - 0.5) / roc.n_background),
        auc=metrics.auc(roc),
        sic_curve=[float(value) for value in metrics.sic_at(roc, TPR_GRID)],
        seconds=time.perf_counter() - start,
    )
