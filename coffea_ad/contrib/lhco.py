"""The LHC Olympics R&D protocol on coffea_ad's generated samples: weakly supervised resonant searches compared.

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

``examples/lhco_method_comparison.py`` and ``benchmarks/lhco_like.py`` are built on this module.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from coffea_ad.errors import ConfigurationError
from coffea_ad.processing.tables import Table, complete_rows, concatenate_tables, take_rows

__all__ = [
    "LHCO_FEATURES",
    "PROTOCOL_METHODS",
    "METHOD_LABELS",
    "SAMPLE_SETTINGS",
    "SIGNAL_REGION",
    "Injection",
    "LHCOSamples",
    "MethodResult",
    "add_sample_options",
    "correlate_with_mjj",
    "evaluate",
    "fit_method",
    "generate_samples",
    "inject_signal",
    "load_samples",
    "run_method",
    "sample_sizes",
]

#: The R&D comparison's features (mjj is the resonant variable, not a feature).
LHCO_FEATURES: tuple[str, ...] = ("mj_min", "delta_mj", "tau21_j1", "tau21_j2")
#: The signal region in mjj (GeV) around the 3.5 TeV W'.
SIGNAL_REGION: tuple[float, float] = (3300.0, 3700.0)
#: The methods compared, from the fully supervised reference to the pure density-ratio method.
PROTOCOL_METHODS: tuple[str, ...] = ("supervised", "iad", "cathode", "lacathode", "cwola", "anode")
#: How each method is called in plots and tables.
METHOD_LABELS: dict[str, str] = {
    "supervised": "supervised",
    "iad": "idealized AD",
    "cathode": "CATHODE",
    "lacathode": "LaCATHODE",
    "cwola": "CWoLa hunting",
    "anode": "ANODE",
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
#: Width (GeV) of each of CWoLa hunting's two sidebands, next to the signal region.
CWOLA_SIDEBAND_WIDTH = 200.0
#: The SIC curves are stored on this grid of signal efficiencies.
TPR_GRID = np.linspace(0.02, 1.0, 50)

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

    def describe(self, signal_region: Sequence[float] = SIGNAL_REGION) -> dict[str, dict[str, int]]:
        """Events per table: all, and inside ``signal_region``."""
        tables = {
            "background": self.background,
            "idealized_background": self.idealized_background,
            "test_background": self.test_background,
            "supervised_signal": self.supervised_signal,
            "test_signal": self.test_signal,
            "injection_pool": self.injection_pool,
        }
        return {
            name: {"events": len(table["mjj"]), "signal_region": int(_in_window(table, signal_region).sum())}
            for name, table in tables.items()
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
    signal = tables["signal"]
    order = np.random.default_rng(0).permutation(len(signal["mjj"]))
    test, supervised, pool = np.split(order, [int(0.4 * len(order)), int(0.7 * len(order))])
    return LHCOSamples(
        background=tables["background"],
        idealized_background=tables["idealized_background"],
        test_background=tables["test_background"],
        supervised_signal=take_rows(signal, np.sort(supervised)),
        test_signal=take_rows(signal, np.sort(test)),
        injection_pool=take_rows(signal, np.sort(pool)),
    )


def correlate_with_mjj(samples: LHCOSamples, slope: float = 0.1) -> LHCOSamples:
    """The same samples with the jet-mass features made to depend on mjj: ``mj_min`` and ``delta_mj``
    become ``mj_min + slope * mjj`` and ``delta_mj + slope * mjj`` (columns ``*_shifted``).

    A stress test of background interpolation: the sidebands then differ from the signal region in those
    features even without signal, which a sideband-vs-signal-region classifier (CWoLa) learns, while a
    density conditioned on mjj (CATHODE, ANODE) follows it.
    """
    def shift(table: Table) -> Table:
        shifted = dict(table)
        for name in ("mj_min", "delta_mj"):
            shifted[f"{name}_shifted"] = table[name] + slope * table["mjj"]
        return shifted

    features = tuple(f"{name}_shifted" if name in ("mj_min", "delta_mj") else name for name in samples.features)
    return LHCOSamples(
        background=shift(samples.background),
        idealized_background=shift(samples.idealized_background),
        test_background=shift(samples.test_background),
        supervised_signal=shift(samples.supervised_signal),
        test_signal=shift(samples.test_signal),
        injection_pool=shift(samples.injection_pool),
        features=features,
    )


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
    signal_region: Sequence[float] = SIGNAL_REGION,
    progress: bool = False,
):
    """Train ``method`` (one of :data:`PROTOCOL_METHODS`) on the injected data as the protocol prescribes.

    * ``supervised``: supervised W' vs idealized background events of the signal region (true labels);
    * ``iad``: signal-region data vs the idealized background template;
    * ``cathode``, ``lacathode``, ``anode``: the sideband flow interpolated into the signal region;
    * ``cwola``: signal region vs the sidebands next to it, :data:`CWOLA_SIDEBAND_WIDTH` wide on each side
      (one classifier).

    Every method trains a single model (``folds=1``, no cross-training): the protocol scores the independent
    test events, which no model saw, so one model trained on all the data is what the published comparison
    measures.

    As in the CATHODE study every classifier trains for ``classifier_epochs`` epochs without early stopping
    and is the average of its 10 best epochs by validation loss; the flows train for at most ``epochs``
    epochs with early stopping (patience 5). Batches of 512 events. The estimator comes from the registry
    (:func:`coffea_ad.models.get_estimator`).
    """
    from coffea_ad.models import get_estimator

    if method not in PROTOCOL_METHODS:
        raise ConfigurationError(f"unknown method {method!r}; the protocol compares {', '.join(PROTOCOL_METHODS)}")
    settings = {
        "flow": {"epochs": epochs, "batch_size": 512, "patience": 5, "progress": progress},
        "classifier": {
            "epochs": classifier_epochs, "batch_size": 512, "patience": None, "keep_best": 10, "progress": progress
        },
    }
    estimator_class = get_estimator(method)
    training = {network: settings[network] for network in estimator_class.networks}
    init, table, inputs = _protocol_arguments(method, injection, samples, tuple(signal_region))
    # folds=1: evaluated on the independent test events only (see the docstring), like the published numbers
    estimator = estimator_class(**init, folds=1, training=training, seed=seed)
    return estimator.fit(table, list(samples.features), **inputs)


@dataclass
class MethodResult:
    """One method trained once: its test performance in the signal region."""

    method: str
    seed: int
    s_over_b: float
    s_over_sqrt_b: float
    n_signal_signal_region: int
    max_sic: float
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
    signal_region: Sequence[float] = SIGNAL_REGION,
    progress: bool = False,
) -> MethodResult:
    """Inject W' at ``s_over_b`` (draw ``seed``), train ``method`` (seed ``seed``) and evaluate it."""
    from coffea_ad.selection import metrics

    start = time.perf_counter()
    injection = inject_signal(samples, s_over_b, seed, signal_region)
    estimator = fit_method(
        method, injection, samples, seed=seed, epochs=epochs, classifier_epochs=classifier_epochs,
        signal_region=signal_region, progress=progress,
    )
    roc = evaluate(estimator, samples, signal_region)
    return MethodResult(
        method=method,
        seed=seed,
        s_over_b=injection.s_over_b,
        s_over_sqrt_b=injection.s_over_sqrt_b,
        n_signal_signal_region=injection.n_signal_signal_region,
        max_sic=metrics.max_sic(roc),
        auc=metrics.auc(roc),
        sic_curve=[float(value) for value in metrics.sic_at(roc, TPR_GRID)],
        seconds=time.perf_counter() - start,
    )
