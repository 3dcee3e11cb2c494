"""``coffea-ad search``: the sliding-window resonant anomaly search, trained on a Dask cluster and fitted.

What the CMS search for dijet resonances with anomalous substructure (arXiv:2412.03747) and the ATLAS
CWoLa-hunting search (arXiv:2005.02983) did by hand, as one command:

1. **Events.** A fileset goes through the feature processor on the cluster (or a feature table is read); the
   events with every feature, the mass and the event ids are the data. ``inject`` adds ``n_signal`` events
   drawn from a signal file: which events were injected is known only to the evaluation, never to training.
2. **Fit range and windows.** The uncut mjj spectrum, in log-uniform bins (:func:`~coffea_ad.stats.search.
   mass_binning`), gives the fit range above the turn-on (:func:`~coffea_ad.stats.bumphunt.fit_range`);
   ``windows="auto"`` places two staggered sets of ~20 % windows in it (:func:`~coffea_ad.stats.search.
   auto_windows`), or the windows are given as ``LO:HI``.
3. **Training on the cluster.** In each window the method is trained with the window as its signal region,
   cross-trained in ``folds`` folds of the event ids, ``ensemble`` members per fold: every (window, member,
   fold) model is one Dask task, so the wall time shrinks with the workers. A finished window is saved in
   ``windows/{LO-HI}/`` (the members, ``model.onnx``, ``training.json`` last) and not retrained when the
   search runs again with the same data and settings.
4. **Scores and cuts.** Every event is scored by the mean of the members' models that did not see it
   (out of fold); the cut keeps the fraction ``efficiency`` of the events of the window's sidebands (the fit
   range outside the window), for each efficiency.
5. **Fits.** The mjj spectrum after the cut is fitted outside the window with the dijet function (parameters
   chosen by an F-test, poor fits flagged) and the window is tested with pyhf
   (:func:`~coffea_ad.stats.bumphunt.fit_window`): local p-value and Z per window and efficiency. The same fit
   without a cut is the inclusive search. The global significance corrects the smallest local p-value of the
   windows with a good sideband fit with the trials factor N = windows × efficiencies.
6. **Signal injection.** With ``inject``, each window also gets the expected CLs limit on the injected
   signal's template (its mjj after the cut, scaled to the injected events).

Outputs in the output folder, each written atomically: ``search.json``, ``summary.txt``, ``index.html`` (one
self-contained page), ``plots/local_p_scan.png`` and ``plots/fit_{window}_eff{e}.png``, and per window its
models and, per efficiency, ``workspace_eff{e}.json`` (pyhf) and ``datacard_eff{e}.txt`` +
``shapes_eff{e}.root`` (Combine).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from coffea_ad.errors import CoffeaADError, ConfigurationError, InputFileError
from coffea_ad.features.folds import EVENT_ID_BRANCHES, event_fold
from coffea_ad.models import get_estimator
from coffea_ad.models.base import INPUT_OPTIONS, Training
from coffea_ad.paths import write_json
from coffea_ad.processing.tables import (
    Table,
    column_array,
    column_names,
    concatenate_tables,
    float_column,
    open_table,
    region_mask,
    table_hash,
    take_rows,
)
from coffea_ad.progress import progress_bar
from coffea_ad.stats.bumphunt import fit_range, fit_window
from coffea_ad.stats.search import (
    MIN_WINDOW_EVENTS,
    SearchWindow,
    auto_windows,
    check_windows,
    global_significance,
    mass_binning,
    parse_windows,
    window_binning,
)

__all__ = [
    "SEARCH_METHODS",
    "DEFAULT_EFFICIENCIES",
    "SMOOTHNESS_ALPHA",
    "run_search",
    "describe_search",
]

logger = logging.getLogger(__name__)

#: The resonant methods a search trains per window (iad needs ``background``, salad ``simulation``).
SEARCH_METHODS = ("cathode", "lacathode", "anode", "cwola", "salad", "iad")
#: The fractions of the sideband events each cut keeps.
DEFAULT_EFFICIENCIES = (0.1, 0.01)
#: Rows of each window on which the exported ONNX is compared with torch.
_CHECK_ROWS = 2000
#: A cut whose efficiency next to the window is not a power law of mjj (χ² probability below this) is flagged.
SMOOTHNESS_ALPHA = 0.01
#: Relative precision of the CLs limits of a signal-injection test (a percent is plenty for a limit).
_LIMIT_RTOL = 0.01


def _efficiency_label(efficiency: float) -> str:
    return f"{efficiency:g}"


def _check_settings(
    method: str, efficiencies: Sequence[float], folds: int | None, ensemble: int, inputs: Mapping[str, Any]
) -> tuple[type, int]:
    """Refuse, before any work, a method the search cannot run, a missing or unused input, an efficiency
    outside (0, 1), fewer than two folds, an ensemble below one. Returns the class and the number of folds."""
    if method not in SEARCH_METHODS:
        raise ConfigurationError(
            f"the search trains a resonant method per window: one of {', '.join(SEARCH_METHODS)}, got {method!r}"
        )
    estimator_class = get_estimator(method)
    for name in estimator_class.requires:
        if inputs.get(name) is None:
            raise ConfigurationError(f"method {method!r} needs a {name} sample ({INPUT_OPTIONS[name]} TABLE)")
    for name, value in inputs.items():
        if value is not None and name not in (*estimator_class.requires, *estimator_class.accepts):
            raise ConfigurationError(f"method {method!r} does not use {INPUT_OPTIONS[name]}")
    if not efficiencies:
        raise ConfigurationError("give at least one efficiency (--efficiency)")
    for efficiency in efficiencies:
        if not 0 < efficiency < 1:
            raise ConfigurationError(
                f"an efficiency is the fraction of events a cut keeps, in (0, 1); got {efficiency:g}"
            )
    n_folds = estimator_class.default_folds if folds is None else int(folds)
    if n_folds < 2:
        raise ConfigurationError(
            f"a search scores the events it trains on, so it needs cross-training: folds >= 2, got {n_folds} "
            "(each event is scored by the models that were trained without it)"
        )
    if ensemble < 1:
        raise ConfigurationError(f"ensemble must be at least 1, got {ensemble}")
    return estimator_class, n_folds


def _read_events(
    data: str | Path | Mapping[str, Any],
    output: Path,
    columns: Sequence[str],
    *,
    datasets: Sequence[str] | None,
    region: str | None,
    scheduler: str | None,
    progress: bool,
    what: str,
    strict: bool = False,
) -> tuple[dict[str, np.ndarray], str, list[str], dict[str, int]]:
    """The complete rows of ``columns`` (and the event ids) of a feature table (``.parquet``) or of a fileset
    run through the feature processor on the cluster; ``datasets`` selects the fileset's datasets; ``strict``
    makes a file or chunk the processor skips an error (else it is a note, and counted: the last return)."""
    from coffea_ad.workflow.features import run_features

    wanted = list(dict.fromkeys([*columns, *EVENT_ID_BRANCHES]))
    notes: list[str] = []
    skipped_inputs = {"files": 0, "chunks": 0, "entries": 0}
    if isinstance(data, (str, Path)) and Path(data).suffix == ".parquet":
        if not Path(data).exists():
            raise InputFileError(f"{what} table {data} does not exist")
        table = open_table(Path(data))
        source = str(data)
    else:
        names = [name for name in columns if name not in EVENT_ID_BRANCHES]
        result, _ = run_features(
            data, output / "features" / what.replace(" ", "_"), features=names, scheduler=scheduler, progress=progress,
            tables="memory", strict=strict,
        )
        for skipped in result.skipped:
            notes.append(f"{what}: skipped {skipped.path} ({skipped.dataset}): {skipped.reason}")
        notes.extend(f"{what}: skipped {chunk.describe()}" for chunk in result.skipped_chunks)
        skipped_inputs = {"files": len(result.skipped), "chunks": len(result.skipped_chunks),
                          "entries": sum(chunk.n_entries for chunk in result.skipped_chunks)}
        chosen = list(result.tables) if datasets is None else list(datasets)
        unknown = sorted(set(chosen) - set(result.tables))
        if unknown:
            raise ConfigurationError(f"dataset(s) {unknown} are not in the {what} fileset; its datasets: "
                                     f"{', '.join(result.tables)}")
        if not chosen:
            raise InputFileError(f"no dataset of the {what} fileset could be read")
        table = concatenate_tables(*(result.tables[name] for name in chosen))
        source = f"fileset {data}" if isinstance(data, (str, Path)) else f"fileset ({', '.join(chosen)})"
        if len(chosen) > 1:
            notes.append(f"{what}: the sum of the datasets {', '.join(chosen)}")
    if region is not None:
        table = take_rows(table, region_mask(table, region))
    missing = [name for name in wanted if name not in column_names(table)]
    if missing:
        raise InputFileError(f"the {what} ({source}) has no column(s) {', '.join(missing)}")
    values = {name: float_column(table, name) for name in columns}
    present = ~np.any([np.isnan(column) for column in values.values()], axis=0)
    # the event ids stay integers: they give each event its fold
    complete = {name: column[present] for name, column in values.items()}
    complete.update({name: column_array(table, name)[present] for name in EVENT_ID_BRANCHES})
    n_used = int(present.sum())
    if n_used < present.size:
        notes.append(f"{what}: {present.size - n_used} of {present.size} events lack a feature or the mass: not used")
    return complete, source, notes, skipped_inputs


def _inject(
    events: dict[str, np.ndarray], signal: dict[str, np.ndarray], n_signal: int, seed: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``events`` with ``n_signal`` rows of ``signal`` drawn at random (``seed``) appended; and the flags of the
    injected rows (for the evaluation only)."""
    n_available = len(next(iter(signal.values())))
    if not 0 < n_signal <= n_available:
        raise ConfigurationError(
            f"--n-signal must be in 1..{n_available} (the signal events with every feature), got {n_signal}"
        )
    rows = np.sort(np.random.default_rng([seed, 29]).choice(n_available, n_signal, replace=False))
    data = concatenate_tables(events, take_rows(signal, rows))
    n_events = len(next(iter(events.values())))
    return data, np.arange(n_events + n_signal) >= n_events


def _window_rows(method: str, mass: np.ndarray, window: SearchWindow, fit_low: float, fit_high: float) -> np.ndarray:
    """The rows a window's model trains on: CWoLa the window and half a window of sideband on each side (its
    classifier learns window vs sidebands), every other method the whole fit range."""
    if method == "cwola":
        half = np.sqrt(window.high / window.low)
        low, high = max(window.low / half, fit_low), min(window.high * half, fit_high)
    else:
        low, high = fit_low, fit_high
    return (mass >= low) & (mass < high)


def _training_key(method: str, settings: Mapping[str, Any], window: SearchWindow, digest: str) -> str:
    """Identifies a window's training: a saved window with the same key is reused, not retrained."""
    text = json.dumps({"method": method, "settings": settings, "window": [window.low, window.high], "table": digest},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class _WindowTraining:
    """One window's training: its plan, the members' estimators and fold models as the tasks finish."""

    window: SearchWindow
    folder: Path
    key: str
    rows: np.ndarray
    estimators: list[Any]
    plan: Any = None
    models: dict[tuple[int, int], Any] = field(default_factory=dict)
    ensemble: Any = None
    started: float = 0.0
    seconds: float = 0.0
    status: str = "pending"
    reason: str | None = None


def _load_trained(training: _WindowTraining, n_members: int) -> bool:
    """Reuse a window trained before with the same key; True when it was."""
    from coffea_ad.models.ensemble import Ensemble

    record = training.folder / "training.json"
    if not record.is_file():
        return False
    try:
        saved = json.loads(record.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if saved.get("key") != training.key:
        logger.info("window %s: trained with other data or settings before: retraining", training.window.name)
        return False
    training.ensemble = Ensemble.load(training.folder / "members", n_members)
    training.seconds, training.status = float(saved.get("seconds", 0.0)), "reused"
    return True


def _finish_window(training: _WindowTraining, table: Mapping[str, np.ndarray], fold: np.ndarray) -> dict[str, Any]:
    """Assemble the members from their fold models, save them, export the ONNX model, compare it with torch and
    write ``training.json`` (last: a window without it is trained again)."""
    from coffea_ad.models.ensemble import Ensemble
    from coffea_ad.workflow.train import onnx_difference

    members = []
    for m, estimator in enumerate(training.estimators):
        models = [training.models[(m, k)] for k in range(estimator.n_folds)]
        members.append(estimator.assemble_folds(training.plan, models))
    training.ensemble = Ensemble(members)
    training.ensemble.save(training.folder / "members")
    path = training.ensemble.export_onnx(training.folder / "model.onnx")
    rows = np.flatnonzero(training.rows)[:_CHECK_ROWS]
    x = np.stack([table[name][rows] for name in training.ensemble.input_columns], axis=1)
    difference = onnx_difference(training.ensemble, path, x, fold[rows])
    record = {
        "key": training.key,
        "window_GeV": [training.window.low, training.window.high],
        "seconds": training.seconds,
        "onnx_max_abs_diff_over_max_abs_score": difference,
        "summary": training.ensemble.summary(),
    }
    write_json(training.folder / "training.json", record)
    training.status = "trained"
    return record


def _train_windows(
    client: Any,
    trainings: Sequence[_WindowTraining],
    table: Mapping[str, np.ndarray],
    fold: np.ndarray,
    fit_inputs: Mapping[str, Any],
    features: Sequence[str],
    *,
    progress: bool,
) -> None:
    """Every (window, member, fold) model as one Dask task; each window is finished as its last task returns.

    A task whose worker dies is retried (twice) on another: the training is seeded, so the retry trains the
    same model."""
    from distributed import as_completed

    futures = {}
    for index, training in enumerate(trainings):
        if training.status != "pending":
            continue
        window_table = take_rows(table, training.rows)
        inputs = {**fit_inputs, "signal_region": (training.window.low, training.window.high)}
        training.plan = training.estimators[0].plan_folds(window_table, list(features), **inputs)
        plan = client.scatter(training.plan, hash=False)
        for m, estimator in enumerate(training.estimators):
            for k in range(estimator.n_folds):
                key = f"search-train-{training.window.name}-m{m}-f{k}-{uuid.uuid4().hex[:8]}"
                futures[client.submit(estimator.fit_fold, plan, k, pure=False, key=key, retries=2)] = (index, m, k)
        training.started = time.perf_counter()
    if not futures:
        return
    remaining = {index: 0 for index, _, _ in futures.values()}
    for index, _, _ in futures.values():
        remaining[index] += 1
    with progress_bar(len(futures), "search training (window, member, fold)", unit="model", enabled=progress) as bar:
        for future in as_completed(futures):
            index, m, k = futures[future]
            training = trainings[index]
            try:
                training.models[(m, k)] = future.result()
            except CoffeaADError as error:
                training.status, training.reason = "skipped", f"training failed: {error}"
            bar.update(1)
            remaining[index] -= 1
            if remaining[index] == 0 and training.status == "pending":
                training.seconds = time.perf_counter() - training.started
                _finish_window(training, table, fold)
                logger.info("window %s trained in %.0f s", training.window.name, training.seconds)
            if remaining[index] == 0:
                training.plan = None


def _cut_entry(
    scores: np.ndarray,
    mass: np.ndarray,
    edges: np.ndarray,
    window: SearchWindow,
    efficiency: float,
    options: Mapping[str, Any],
) -> tuple[dict[str, Any], Any, np.ndarray]:
    """Cut keeping ``efficiency`` of the window's sideband events, fit the spectrum after it; (entry, fit result
    and spec or None, passing flags)."""
    in_range = (mass >= edges[0]) & (mass < edges[-1])
    inside = (mass >= window.low) & (mass < window.high)
    sideband_scores = scores[in_range & ~inside]
    threshold = float(np.quantile(sideband_scores, 1 - efficiency))
    passing = in_range & (scores > threshold)
    counts, _ = np.histogram(mass[passing], bins=edges)
    entry: dict[str, Any] = {
        "efficiency": efficiency,
        "threshold": threshold,
        "events_before_cut": int(in_range.sum()),
        "events_after_cut": int(passing.sum()),
        "window_efficiency": float(passing[inside].sum() / max(inside.sum(), 1)),
    }
    fitted = _fit_spectrum(counts.astype(np.float64), edges, window, options)
    if isinstance(fitted, str):
        entry.update(status="skipped", reason=fitted)
        return entry, None, passing
    result, spec = fitted
    entry.update(status="done", reason=None, **_fit_numbers(result))
    smoothness = _near_sideband_smoothness(passing, mass, window)
    entry["near_sideband_efficiency"] = smoothness
    entry["evidence_ok"] = bool(result.fit_ok and smoothness["smooth"])
    return entry, (result, spec, counts), passing


def _near_sideband_smoothness(passing: np.ndarray, mass: np.ndarray, window: SearchWindow) -> dict[str, Any]:
    """Whether the cut's efficiency in the sidebands next to the window (one window width on each side inside
    the fit range, three bins of equal population per side) follows a power law of mjj.

    A cut whose efficiency is a power law m^k multiplies the spectrum by m^k, which the dijet function absorbs
    (its x^-p2 term): the sideband fit then interpolates the background into the window correctly. A score
    that learned mjj (the features of the data depend on it, as jet masses do) passes a fraction that jumps
    across the window, or climbs into it: the events it keeps in the window make a bump that the sideband fit
    cannot tell from a signal. Such a cut is not ``smooth``: the power law fitted to the six bin efficiencies
    (weighted least squares in log ε versus log m) leaves a χ² (binomial, on the counts) with probability below
    :data:`SMOOTHNESS_ALPHA`. A real signal's tail in the sidebands can fail it too: the test is conservative.
    """
    from scipy.stats import chi2

    ratio = window.high / window.low
    kept, totals, centres = [], [], []
    for low, high in ((window.low / ratio, window.low), (window.high, window.high * ratio)):
        side = (mass >= low) & (mass < high)
        if side.sum() < 3:
            continue
        edges = np.unique(np.quantile(mass[side], np.linspace(0.0, 1.0, 4)))
        edges[-1] = np.nextafter(edges[-1], np.inf)
        totals += list(np.histogram(mass[side], bins=edges)[0])
        kept += list(np.histogram(mass[side & passing], bins=edges)[0])
        sums = np.histogram(mass[side], bins=edges, weights=mass[side])[0]
        centres += list(sums / np.maximum(np.histogram(mass[side], bins=edges)[0], 1))
    kept, totals, centres = (np.asarray(values, dtype=np.float64) for values in (kept, totals, centres))
    used = totals > 0
    kept, totals, centres = kept[used], totals[used], centres[used]
    if kept.size < 3 or np.count_nonzero(kept) < 2:
        return {"smooth": True, "p_value": None, "power": None, "bin_efficiencies": [],
                "note": "too few sideband events to test"}
    efficiencies = kept / totals
    filled = kept > 0
    log_m, log_e = np.log(centres[filled]), np.log(efficiencies[filled])
    weights = kept[filled]  # var(log eps) ~ 1/k for a small efficiency
    design = np.stack([np.ones_like(log_m), log_m], axis=1)
    coefficients = np.linalg.lstsq(design * np.sqrt(weights)[:, None], log_e * np.sqrt(weights), rcond=None)[0]
    expected = np.clip(np.exp(coefficients[0] + coefficients[1] * np.log(centres)), 1e-12, 1 - 1e-12) * totals
    statistic = float(np.sum((kept - expected) ** 2 / (expected * (1 - expected / totals))))
    p_value = float(chi2.sf(statistic, kept.size - 2))
    return {
        "smooth": bool(p_value >= SMOOTHNESS_ALPHA),
        "p_value": p_value,
        "power": float(coefficients[1]),
        "chi2": statistic,
        "ndf": int(kept.size - 2),
        "bin_efficiencies": [float(value) for value in efficiencies],
    }


def _window_bins(edges: np.ndarray, window: SearchWindow) -> np.ndarray:
    """The bins of ``edges`` inside ``window`` (whole bins: the windows' edges are bin edges)."""
    centres = 0.5 * (edges[1:] + edges[:-1])
    return (centres >= window.low) & (centres < window.high)


def _fit_spectrum(counts: np.ndarray, edges: np.ndarray, window: SearchWindow, options: Mapping[str, Any]):
    """``fit_window`` of the window's bins, or the reason it cannot be fitted."""
    try:
        return fit_window(counts, edges, _window_bins(edges, window), **options)
    except CoffeaADError as error:
        return str(error)


def _fit_numbers(result: Any) -> dict[str, Any]:
    return {
        "observed": result.observed,
        "background": result.background,
        "background_uncertainty": result.background_uncertainty,
        "local_p0": result.significance.p0,
        "local_Z": result.significance.z,
        "fit_ok": result.fit_ok,
        "fit_p_value": result.fit.p_value,
        "sideband_fit": result.fit.to_dict(),
    }


def _write_fit_outputs(
    output: Path,
    window: SearchWindow,
    entry: dict[str, Any],
    fitted: tuple[Any, dict, np.ndarray],
    edges: np.ndarray,
    signal: np.ndarray | None,
) -> None:
    """The pyhf workspace, Combine datacard and fit plot of one (window, efficiency); their paths go in ``entry``."""
    from coffea_ad.plotting import save_figure
    from coffea_ad.plotting.fits import plot_fit
    from coffea_ad.stats.datacard import write_combine
    from coffea_ad.stats.workspace import build_workspace, write_workspace

    result, spec, counts = fitted
    label = _efficiency_label(entry["efficiency"])
    folder = output / "windows" / window.name
    folder.mkdir(parents=True, exist_ok=True)
    write_workspace(build_workspace(spec), folder / f"workspace_eff{label}.json")
    write_combine(spec, folder / f"datacard_eff{label}.txt", folder / f"shapes_eff{label}.root")
    plot = output / "plots" / f"fit_{window.name}_eff{label}.png"
    plot.parent.mkdir(parents=True, exist_ok=True)
    fit = result.fit
    figure = plot_fit(
        edges, counts, fit.yields(edges), uncertainty=fit.yield_uncertainties(edges), signal=signal,
        window=(window.low, window.high), goodness_of_fit=(fit.chi2, fit.ndf, fit.p_value),
        xlabel=rf"$m_{{jj}}$ [GeV], cut keeping {entry['efficiency']:.0%} of the sidebands",
    )
    save_figure(figure, plot)
    entry.update(
        workspace=str((folder / f"workspace_eff{label}.json").relative_to(output)),
        datacard=str((folder / f"datacard_eff{label}.txt").relative_to(output)),
        fit_plot=str(plot.relative_to(output)),
    )


def _expected_limit(
    counts: np.ndarray, edges: np.ndarray, window: SearchWindow, result: Any, template: np.ndarray
) -> dict[str, Any]:
    """The CLs limit on the injected signal's template in the window: on mu (1 = the injected yield after the cut,
    ``signal_in_window`` events) and in signal events passing the cut in the window, with the expected band.

    The CLs values are computed on a grid of 20 signal strengths up to a few standard deviations of the
    window's background above its excess (linear interpolation, a few percent precise, 20 hypothesis tests
    instead of pyhf's ~50 root-finding steps); a limit outside that grid is found by root finding."""
    from coffea_ad.stats.bumphunt import window_spec
    from coffea_ad.stats.inference import upper_limit
    from coffea_ad.stats.workspace import build_workspace

    mask = _window_bins(edges, window)
    signal_in_window = float(template[mask].sum())
    if not signal_in_window > 0:
        return {"status": "skipped", "reason": "no injected-signal event passes the cut in the window"}
    workspace = build_workspace(window_spec(counts, edges, mask, result.fit, signal=template))
    model = workspace.model()
    data = workspace.data(model)
    excess = max(result.observed - result.background, 0.0)
    spread = np.sqrt(result.background + result.background_uncertainty**2 + 1.0)
    top = (excess + 5.0 * spread) / signal_in_window
    high = float(model.config.suggested_bounds()[model.config.poi_index][1])
    try:
        # pyhf's CLs at the smallest signal strengths divide zero by zero in numpy: nothing the user can act on
        with np.errstate(divide="ignore", invalid="ignore"):
            limit = None
            if top < high:
                limit = upper_limit(model, data, scan=np.linspace(top / 20, top, 20))
                values = np.array([limit.observed, *limit.expected])
                if not (np.all(np.isfinite(values)) and np.all(values > top / 20) and np.all(values < top)):
                    limit = None
            if limit is None:
                limit = upper_limit(model, data, rtol=_LIMIT_RTOL)
    except Exception as error:  # pyhf raises several types when a limit scan does not converge
        return {"status": "skipped", "reason": f"the CLs scan failed: {error}"}
    numbers = limit.to_dict()
    return {
        "status": "done",
        "signal_in_window": signal_in_window,
        "confidence_level": numbers["confidence_level"],
        "observed_mu": numbers["observed"],
        "expected_mu": numbers["expected"],
        "expected_signal_events": {key: value * signal_in_window for key, value in numbers["expected"].items()},
    }


def _training_settings(estimator: Any, features: Sequence[str], ensemble: int) -> dict[str, Any]:
    """What a window's training depends on besides its rows (the device and progress bars aside)."""
    params = {key: value for key, value in estimator._params_json().items() if key not in ("device", "seed")}
    for settings in params.get("training", {}).values():
        settings.pop("progress", None)
    return {"features": list(features), "ensemble": ensemble, "seed": estimator.seed, "params": params}


def run_search(
    data: str | Path | Mapping[str, Any],
    output: str | Path,
    *,
    method: str = "cathode",
    features: Sequence[str] | None = None,
    mass: str = "mjj",
    windows: str | Sequence[str | Sequence[float]] = "auto",
    efficiencies: Sequence[float] = DEFAULT_EFFICIENCIES,
    folds: int | None = None,
    ensemble: int = 1,
    seed: int = 0,
    background: str | Path | Table | None = None,
    simulation: str | Path | Table | None = None,
    datasets: Sequence[str] | None = None,
    region: str | None = None,
    inject: str | Path | Mapping[str, Any] | None = None,
    n_signal: int | None = None,
    mjj_min: float | None = None,
    mjj_max: float | None = None,
    n_parameters: int | str = "auto",
    min_window_events: int = MIN_WINDOW_EVENTS,
    training: Training | Mapping[str, Any] | None = None,
    device: str = "auto",
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool = True,
    strict: bool = False,
) -> dict[str, Any]:
    """Run the sliding-window search (see the module docstring) and write its outputs into ``output``.

    ``data`` is a fileset (JSON path or mapping; ``datasets`` chooses its datasets, default all, summed) or a
    feature table (``.parquet``). ``method`` is one of :data:`SEARCH_METHODS`, trained on ``features``
    (default: the method's) with ``mass`` as the resonant variable. ``windows`` is ``"auto"`` or a list of
    ``"LO:HI"`` / ``(lo, hi)`` in GeV; ``efficiencies`` the sideband fractions the cuts keep. ``folds``
    (default: the method's, at least 2) and ``ensemble`` members per fold; ``training`` applies to every
    network. ``background`` (iad) and ``simulation`` (salad) are feature tables. ``region`` (a boolean
    column, e.g. ``deta_sr``) restricts the events. ``inject`` (a ROOT file, fileset or feature table) and
    ``n_signal`` inject that many of its events. ``mjj_min`` / ``mjj_max`` / ``n_parameters`` set the fit
    range and the dijet function as in :func:`~coffea_ad.stats.bumphunt.bump_hunt`. Training runs on the
    cluster at ``scheduler`` or on a new LocalCluster of ``workers`` processes. Files and chunks that the feature
    processor skips (unreadable, read errors) are notes of the result, counted in its ``inputs_skipped`` (files,
    chunks, entries); ``strict`` makes them an error. Returns
    the content of ``search.json``.
    """
    from coffea_ad.models.ensemble import member_seed
    from coffea_ad.processing.runner import dask_client

    start = time.perf_counter()
    output = Path(output)
    inputs = {"background": background, "simulation": simulation}
    estimator_class, n_folds = _check_settings(method, efficiencies, folds, ensemble, inputs)
    if inject is None and n_signal is not None:
        raise ConfigurationError("--n-signal needs --inject FILE: the signal sample the events are drawn from")
    explicit = None if isinstance(windows, str) and windows == "auto" else parse_windows(
        windows.split(",") if isinstance(windows, str) else windows
    )
    features = estimator_class.resolve_features(features, {"mass": mass})
    try:
        output.mkdir(parents=True, exist_ok=True)
        probe = output / ".coffea_ad_write_test"
        probe.touch()
        probe.unlink()
    except OSError as error:
        raise ConfigurationError(f"cannot write into the output folder {output}: {error}") from error
    training_settings = {**(training.given() if isinstance(training, Training) else dict(training or {})),
                         "progress": False}
    columns = [*features, mass]
    fit_inputs = {"mass": mass, **{name: open_table(value) for name, value in inputs.items() if value is not None}}
    with dask_client(scheduler, workers) as client:
        address = client.scheduler.address
        table, source, notes, skipped_inputs = _read_events(
            data, output, columns, datasets=datasets, region=region, scheduler=address, progress=progress, what="data",
            strict=strict,
        )
        n_data = len(table[mass])
        signal = None
        injected = np.zeros(n_data, dtype=bool)
        if inject is not None:
            signal_input = inject
            if isinstance(inject, (str, Path)) and Path(inject).suffix == ".root":
                signal_input = {"injected": {"files": {str(inject): "Events"}}}
            signal, injected_source, signal_notes, signal_skipped = _read_events(
                signal_input, output, columns, datasets=None, region=region, scheduler=address, progress=progress,
                what="injected signal", strict=strict,
            )
            if signal_input is not inject:
                injected_source = str(inject)
            notes += signal_notes
            skipped_inputs = {key: count + signal_skipped[key] for key, count in skipped_inputs.items()}
            n_available = len(signal[mass])
            n_signal = n_available if n_signal is None else int(n_signal)
            table, injected = _inject(table, signal, n_signal, seed)
        mjj = table[mass]
        positive = mjj[mjj > 0]
        if positive.size < min_window_events:
            raise InputFileError(f"the data ({source}) hold {positive.size} events with {mass} > 0: too few to search")
        grid = mass_binning(float(positive.min()), float(positive.max()) * (1 + 1e-9))
        grid_counts, _ = np.histogram(mjj, bins=grid)
        chosen = fit_range(grid_counts, grid, mjj_min=mjj_min, mjj_max=mjj_max, n_parameters=n_parameters)
        edges = grid[chosen.first : chosen.stop + 1]
        if explicit is None:
            window_list = auto_windows(grid_counts[chosen.first : chosen.stop], edges, min_events=min_window_events)
        else:
            check_windows(explicit, edges[0], edges[-1], f"{chosen.method} of the data")
            window_list = explicit
            edges = window_binning(edges, window_list)
        fold = event_fold(*(table[name] for name in EVENT_ID_BRANCHES), n_folds)
        trainings = []
        for window in window_list:
            estimators = [
                estimator_class(folds=n_folds, training=training_settings, seed=member_seed(seed, m), device=device)
                for m in range(ensemble)
            ]
            rows = _window_rows(method, mjj, window, float(edges[0]), float(edges[-1]))
            digest = table_hash(columns, *(table[name][rows] for name in [*columns, *EVENT_ID_BRANCHES]))
            key = _training_key(method, _training_settings(estimators[0], features, ensemble), window, digest)
            entry = _WindowTraining(window, output / "windows" / window.name, key, rows, estimators)
            n_window = int(((mjj >= window.low) & (mjj < window.high)).sum())
            if n_window < min_window_events:
                entry.status = "skipped"
                entry.reason = f"only {n_window} events in the window: at least {min_window_events} are needed to train"
            else:
                _load_trained(entry, ensemble)
            trainings.append(entry)
        reused = sum(entry.status == "reused" for entry in trainings)
        if reused:
            notes.append(f"{reused} window(s) trained before with the same data and settings: reused, not retrained")
        _train_windows(client, trainings, table, fold, fit_inputs, features, progress=progress)
    result = _evaluate(
        output, trainings, table, fold, injected, signal, mass, edges, chosen, efficiencies,
        {"n_parameters": n_parameters}, progress=progress,
    )
    result.update(
        method=method, data=source, mass=mass, features=list(features), folds=n_folds, ensemble=ensemble,
        seed=seed, efficiencies=list(efficiencies), windows_source="auto" if explicit is None else "given",
        notes=notes, inputs_skipped=skipped_inputs, seconds=time.perf_counter() - start,
        events={"data": n_data, "fit_range": int(((mjj >= edges[0]) & (mjj < edges[-1])).sum()),
                "injected": int(injected.sum())},
        injection=None if inject is None else {
            "file": injected_source,
            "n_signal": int(n_signal),
            "mass_GeV": float(np.median(mjj[injected])),
        },
    )
    _write_outputs(output, result)
    return result


def _evaluate(
    output: Path,
    trainings: Sequence[_WindowTraining],
    table: Mapping[str, np.ndarray],
    fold: np.ndarray,
    injected: np.ndarray,
    signal: Mapping[str, np.ndarray] | None,
    mass: str,
    edges: np.ndarray,
    chosen: Any,
    efficiencies: Sequence[float],
    options: Mapping[str, Any],
    *,
    progress: bool,
) -> dict[str, Any]:
    """Score, cut and fit every window; the windows, the global results and the fit range of ``search.json``."""
    mjj = table[mass]
    in_range = (mjj >= edges[0]) & (mjj < edges[-1])
    mjj_range, fold_range, injected_range = mjj[in_range], fold[in_range], injected[in_range]
    inclusive_counts, _ = np.histogram(mjj_range, bins=edges)
    signal_fold = None
    if signal is not None:
        n_folds = trainings[0].estimators[0].n_folds
        signal_fold = event_fold(*(signal[name] for name in EVENT_ID_BRANCHES), n_folds)
    windows, tests, inclusive_tests = [], [], []
    with progress_bar(len(trainings), "search fits", unit="window", enabled=progress) as bar:
        for training in trainings:
            window = training.window
            entry: dict[str, Any] = {
                **window.to_dict(),
                "status": "done" if training.ensemble is not None else "skipped",
                "reason": training.reason,
                "events_in_window": int(((mjj_range >= window.low) & (mjj_range < window.high)).sum()),
                "injected_in_window": int(((mjj_range >= window.low) & (mjj_range < window.high)
                                           & injected_range).sum()),
                "training": {"status": training.status, "seconds": training.seconds},
                "efficiencies": [],
            }
            inclusive = _fit_spectrum(inclusive_counts.astype(np.float64), edges, window, options)
            if isinstance(inclusive, str):
                entry["inclusive"] = {"status": "skipped", "reason": inclusive}
            else:
                entry["inclusive"] = {"status": "done", **_fit_numbers(inclusive[0])}
                inclusive_tests.append({"name": window.name, "window_GeV": [window.low, window.high],
                                        "efficiency": None, **_test_numbers(entry["inclusive"])})
            if training.ensemble is not None:
                entry["model"] = str((training.folder / "model.onnx").relative_to(output))
                columns = training.ensemble.input_columns
                x = np.stack([table[name][in_range] for name in columns], axis=1).astype(np.float32)
                scores = training.ensemble.score_array(x, fold_range)
                signal_scores = None
                if signal is not None:
                    signal_x = np.stack([signal[name] for name in columns], axis=1).astype(np.float32)
                    signal_scores = training.ensemble.score_array(signal_x, signal_fold)
                for efficiency in efficiencies:
                    cut, fitted, passing = _cut_entry(scores, mjj_range, edges, window, efficiency, options)
                    template = None
                    if signal_scores is not None:
                        inside = (mjj_range >= window.low) & (mjj_range < window.high)
                        cut["injected_after_cut"] = int((passing & injected_range & inside).sum())
                        kept = signal_scores > cut["threshold"]
                        template, _ = np.histogram(signal[mass][kept], bins=edges)
                        template = template * (int(injected.sum()) / len(signal_scores))
                    if fitted is not None:
                        _write_fit_outputs(output, window, cut, fitted, edges, template)
                        tests.append({"name": window.name, "window_GeV": [window.low, window.high],
                                      "efficiency": efficiency, **_test_numbers(cut)})
                        if template is not None:
                            cut["expected_limit"] = _expected_limit(fitted[2], edges, window, fitted[0], template)
                    entry["efficiencies"].append(cut)
            windows.append(entry)
            bar.update(1)
    return {
        "fit_range_GeV": [float(edges[0]), float(edges[-1])],
        "fit_range_method": chosen.method,
        "turn_on_peak_GeV": chosen.peak,
        "bin_edges_GeV": [float(edge) for edge in edges],
        "windows": windows,
        "global": global_significance(tests),
        "inclusive_global": global_significance(inclusive_tests),
    }


def _test_numbers(entry: Mapping[str, Any]) -> dict[str, Any]:
    """What the look-elsewhere correction needs of a test; ``fit_ok`` there means the test is evidence (a good
    sideband fit and, after a cut, a cut that does not depend steeply on mjj next to the window)."""
    return {"local_p0": entry["local_p0"], "local_Z": entry["local_Z"],
            "fit_ok": entry.get("evidence_ok", entry["fit_ok"])}


def _write_outputs(output: Path, result: dict[str, Any]) -> None:
    """``plots/local_p_scan.png``, ``summary.txt``, ``search.json`` and ``index.html``."""
    from coffea_ad.paths import atomic_output
    from coffea_ad.plotting import save_figure
    from coffea_ad.plotting.search import plot_local_p_scan
    from coffea_ad.workflow.report import write_search_report

    plots = output / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    result["plots"] = {"scan": "plots/local_p_scan.png"}
    save_figure(plot_local_p_scan(result), output / result["plots"]["scan"])
    result["summary_text"] = describe_search(result)
    with atomic_output(output / "summary.txt") as tmp:
        tmp.write_text(result["summary_text"] + "\n")
    result["files"] = ["search.json", "summary.txt", "index.html", result["plots"]["scan"]]
    write_json(output / "search.json", result)
    write_search_report(result, output)


def _describe_test(test: Mapping[str, Any] | None) -> str:
    if test is None:
        return "no window could be fitted"
    cut = "no cut" if test["efficiency"] is None else f"cut keeping {test['efficiency']:.0%}"
    flag = "" if test["fit_ok"] else " (no test is evidence: poor sideband fits or mjj-dependent cuts)"
    return (
        f"largest local Z = {test['local_Z']:.2f} in {test['name']} GeV ({cut}); global Z = {test['global_Z']:.2f} "
        f"(p = {test['global_p']:.3g}, trials factor {test['n_tests']}){flag}"
    )


def describe_search(result: Mapping[str, Any]) -> str:
    """The text summary of a search (``summary.txt``; what ``coffea-ad search`` prints)."""
    low, high = result["fit_range_GeV"]
    done = [w for w in result["windows"] if w["status"] == "done"]
    lines = [
        f"coffea-ad search: {result['method']} ({result['folds']} folds x {result['ensemble']} member(s)) on "
        f"{result['data']}: {result['events']['data']} events, {result['events']['fit_range']} in the fit range "
        f"{low:.0f}-{high:.0f} GeV ({result['fit_range_method']})",
        f"  features: {', '.join(result['features'])}; windows: {len(result['windows'])} ({result['windows_source']}), "
        f"{len(done)} trained; efficiencies: {', '.join(f'{e:g}' for e in result['efficiencies'])}",
    ]
    lines += [f"  note: {note}" for note in result["notes"]]
    if result.get("injection"):
        injection = result["injection"]
        lines.append(f"  injected: {injection['n_signal']} events of {injection['file']} "
                     f"(median {result['mass']} {injection['mass_GeV']:.0f} GeV)")
    header = f"  {'window [GeV]':>13} {'events':>8} {'incl. Z':>7}"
    for efficiency in result["efficiencies"]:
        header += f" | eff {efficiency:<5g} {'obs':>6} {'bkg':>9} {'Z':>5}"
    lines.append(header)
    for window in result["windows"]:
        row = f"  {window['name']:>13} {window['events_in_window']:>8}"
        inclusive = window.get("inclusive", {})
        row += f" {inclusive['local_Z']:>7.2f}" if inclusive.get("status") == "done" else f" {'-':>7}"
        if window["status"] != "done":
            lines.append(f"{row}   skipped: {window['reason']}")
            continue
        reasons = []
        for cut in window["efficiencies"]:
            if cut["status"] == "done":
                flag = "" if cut["fit_ok"] else "!"
                flag = flag or ("" if cut.get("evidence_ok", True) else "~")
                row += (f" | {'':9} {cut['observed']:>6.0f} {cut['background']:>9.1f} "
                        f"{cut['local_Z']:>4.2f}{flag or ' '}")
            else:
                row += f" | {'':9} {'skipped':>22}"
                reasons.append(f"eff {cut['efficiency']:g}: {cut['reason']}")
        lines.append(row + "".join(f"\n      {reason}" for reason in reasons))
    lines.append("  (! = poor background-only sideband fit, p < 0.01; ~ = the cut's efficiency is no power law of mjj "
                 "in the sidebands next to the window, the score learned mjj: either way that Z is no evidence)")
    lines.append(f"  search: {_describe_test(result['global'])}")
    lines.append(f"  inclusive (no cut): {_describe_test(result['inclusive_global'])}")
    return "\n".join(lines)
