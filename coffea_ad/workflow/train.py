"""What ``coffea-ad train`` does: fit one method on a feature table and write the model folder.

The folder holds ``model.onnx`` (the ONNX contract of :mod:`coffea_ad.onnx.export`), ``summary.json``
(method, parameters, inputs, features, rows read / dropped for a missing value / used, the cross-training
folds and the rows of each, losses per epoch, validation metrics, the ONNX-vs-torch check, the closure of a
resonant method, see :func:`resonant_closure`) and the estimator itself (``estimator.json`` + ``weights.pt``,
reloadable with ``Estimator.load``). Every file is written atomically. The folder is checked before the
training starts (a folder that cannot be written or created is refused at once) and created only once there is
a model to write; a run that fails or is interrupted after that removes what it wrote, and the folder if it
created it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from coffea_ad.features.folds import EVENT_ID_BRANCHES, event_fold
from coffea_ad.models import get_estimator
from coffea_ad.models.base import Training
from coffea_ad.onnx.export import score_onnx
from coffea_ad.paths import check_output_folder, output_folder, write_json
from coffea_ad.processing.tables import Table, column_array, float_column, open_table, region_mask, take_rows

__all__ = [
    "CLOSURE_EFFICIENCY",
    "describe_training",
    "minimum_training_rows",
    "onnx_difference",
    "resonant_closure",
    "train_to_folder",
]

logger = logging.getLogger(__name__)

_FILES = ("model.onnx", "summary.json", "estimator.json", "weights.pt")
_CHECK_ROWS = 2000
#: Sideband efficiency of the cut whose flatness in mjj is the closure test of a resonant method.
CLOSURE_EFFICIENCY = 0.05
#: At most this many sideband events go into the template-vs-data classifier of the closure test.
_CLOSURE_TEMPLATE_EVENTS = 50_000
#: Fewest training rows per network kind (see :func:`minimum_training_rows`); any other network: the default.
_MINIMUM_ROWS = {"flow": 2000}
_MINIMUM_ROWS_DEFAULT = 500


def minimum_training_rows(estimator: Any) -> int:
    """The fewest rows a training table should give ``estimator``; :func:`train_to_folder` warns below it.

    By method family, from the networks the method trains (the largest minimum of its networks):

    * classifiers (supervised, iad, cwola, bdt, salad, reweight) and autoencoders (autoencoder, vae): 500 rows.
      Every network chooses its epoch (and stops) on a validation split of 20 % of its rows: 500 rows leave 100
      validation events, whose mean loss then fluctuates by about 10 % (1/sqrt(100)), already as much as a good
      epoch gains; with fewer the chosen epoch, and so the exported model, is noise.
    * density estimators, the methods with a normalizing flow (realnvp, maf, and the sideband flow of cathode,
      lacathode, anode, generate, morph): 2000 rows. A conditional flow has thousands of parameters for a density
      in several dimensions, and its tails (where anomalies are scored, and where the templates are sampled) are
      set by the few events found there; the published studies train them on about 10^5 sideband events.

    A cross-trained model fits each fold on (K-1)/K of these rows.
    """
    return max((_MINIMUM_ROWS.get(name, _MINIMUM_ROWS_DEFAULT) for name in estimator.networks), default=0)


def _warn_small_training(estimator: Any) -> list[str]:
    """Log (and return) one warning per training table with fewer used rows than the method's minimum."""
    minimum = minimum_training_rows(estimator)
    warnings = [
        f"{estimator.method} trained on {counts['used']} {name} rows, below its minimum of {minimum}: with fewer "
        "the validation loss that chooses the epoch, and so the model, is noise (see minimum_training_rows)"
        for name, counts in estimator.rows_.items()
        if counts["used"] < minimum
    ]
    for warning in warnings:
        logger.warning("%s", warning)
    return warnings


def _with_progress(training: Training | Mapping[str, Any] | None, progress: bool) -> dict[str, Any]:
    """``training`` as a dict with ``progress`` added, unless it sets ``progress`` itself."""
    if isinstance(training, Training):
        training = training.given()
    return {"progress": progress, **(training or {})}


def _complete_rows(
    table: Table, columns: Sequence[str], region: str | None, n_folds: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """The float64 values of ``columns`` on the rows inside ``region`` where every one is present and, for a
    cross-trained model (``n_folds`` > 1), their folds (from the exact integer event ids)."""
    mask = region_mask(table, region)
    subset = table if mask is None else take_rows(table, mask)
    values = np.stack([float_column(subset, name) for name in columns], axis=1)
    complete = ~np.isnan(values).any(axis=1)
    fold = None
    if n_folds > 1:
        fold = event_fold(*(column_array(subset, name)[complete] for name in EVENT_ID_BRANCHES), n_folds)
    return values[complete], fold


def onnx_difference(model: Any, onnx_path: str | Path, x: np.ndarray, fold: np.ndarray | None) -> float:
    """The largest difference between the exported ONNX scores and ``model.score_array`` on the first
    :data:`_CHECK_ROWS` rows of ``x`` (with their folds for a cross-trained model), over the largest score."""
    check = x[:_CHECK_ROWS].astype(np.float32)
    fold = None if fold is None else fold[:_CHECK_ROWS]
    if not len(check):
        return 0.0
    reference = model.score_array(check, fold)
    exported = score_onnx(onnx_path, check, fold)
    return float(np.abs(exported - reference).max() / max(float(np.abs(reference).max()), 1e-30))


def resonant_closure(
    estimator: Any, table: Table, region: str | None = None, *, efficiency: float = CLOSURE_EFFICIENCY
) -> dict[str, Any] | None:
    """The background closure of a resonant method on its training table, with no truth used (None for a
    method without a signal region).

    * Sideband flatness (:func:`coffea_ad.stats.sideband_closure`): the cut that keeps ``efficiency`` of the
      sideband events must keep that fraction in every mjj bin of the sidebands, where no resonant signal
      sits. A method that learned mjj (or a template that mismodels its mjj dependence) fails it.
    * For the methods that sample a background template from a sideband density (CATHODE, LaCATHODE,
      ANODE): the out-of-fold AUC of a boosted-tree classifier between the sideband data and the template
      sampled at the same mjj (:func:`coffea_ad.models.closure.classifier_closure_auc`): 0.5 when the
      template describes the data where the flow was trained to.

    Cross-trained models score each event with the model that did not see it, and sample its template from
    that model, so both numbers are honest; with ``folds=1`` the scores and the flow saw these events and
    the closure is optimistic (the summary says so). A failed check is logged as a warning and listed under
    ``warnings``.
    """
    from coffea_ad.models.closure import classifier_closure_auc
    from coffea_ad.stats import sideband_closure

    inputs = estimator.inputs_
    if not inputs.get("signal_region"):
        return None
    low, high = inputs["signal_region"]
    mass = inputs["mass"]
    columns = list(dict.fromkeys([*estimator.input_columns, mass]))
    values, fold = _complete_rows(table, columns, region, estimator.n_folds)
    x = values[:, [columns.index(name) for name in estimator.input_columns]].astype(np.float32)
    m = values[:, columns.index(mass)]
    result: dict[str, Any] = {"cross_trained": estimator.n_folds > 1, "sideband_flatness": None, "warnings": []}
    n_sideband = int(np.count_nonzero((m < low) | (m >= high)))
    # at least 5 passing events per sideband bin, 2 to 8 bins of equal population
    n_bins = min(8, int(efficiency * n_sideband // 5))
    if n_bins < 2:
        result["warnings"].append(
            f"{n_sideband} sideband events are too few to test the flatness of a {efficiency:.0%} cut: not tested"
        )
    else:
        closure = sideband_closure(estimator.score_array(x, fold), m, (low, high), efficiency=efficiency, n_bins=n_bins)
        result["sideband_flatness"] = closure.to_dict()
    if result["sideband_flatness"] is not None and not closure.closed:
        result["warnings"].append(
            f"the cut at {efficiency:.0%} of the sidebands is not flat in {mass} across the sidebands "
            f"(chi2/ndf = {closure.sculpting.chi2:.1f}/{closure.sculpting.ndf}, p = {closure.sculpting.p_value:.2g}): "
            "the method sculpts the background, and a bump hunt after its cut can find a false signal"
        )
    models = estimator.fold_models_ if estimator.n_folds > 1 else [estimator]
    if all(hasattr(model, "sample") for model in models):
        sideband = (m < low) | (m >= high)
        features = values[:, [columns.index(name) for name in estimator.features_]]
        chosen = np.flatnonzero(sideband)
        rng = np.random.default_rng([estimator.seed, 23])
        if len(chosen) > _CLOSURE_TEMPLATE_EVENTS:
            chosen = np.sort(rng.choice(chosen, _CLOSURE_TEMPLATE_EVENTS, replace=False))
        which = fold[chosen] if fold is not None else np.zeros(len(chosen), dtype=np.int64)
        template = np.empty((len(chosen), features.shape[1]))
        for k, model in enumerate(models):
            part = which == k
            template[part] = model.sample(m[chosen][part])
        finite = np.isfinite(template).all(axis=1)
        auc = classifier_closure_auc(template[finite], features[chosen][finite], seed=estimator.seed)
        n_template, n_data = int(finite.sum()), len(chosen)
        spread = float(np.sqrt((n_template + n_data) / (12.0 * n_template * n_data)))
        result["sideband_template_auc"] = {"auc": auc, "statistical_spread": spread, "events": n_data}
        if auc > 0.5 + 3 * spread:
            result["warnings"].append(
                f"a classifier tells the sideband data from the flow's template (AUC {auc:.3f}, 0.5 +- {spread:.3f} "
                "if they agreed): the background template is mismodelled where it was trained"
            )
    for warning in result["warnings"]:
        logger.warning("%s closure: %s", estimator.method, warning)
    return result


def train_to_folder(
    method: str,
    table: Table,
    output: str | Path,
    *,
    features: Sequence[str] | None = None,
    region: str | None = None,
    signal_region: str | None = None,
    mass: str | None = None,
    label: str | None = None,
    background: str | Path | Table | None = None,
    simulation: str | Path | Table | None = None,
    context: Sequence[str] | None = None,
    signal_flag: str | None = None,
    seed: int = 0,
    device: str = "auto",
    folds: int | None = None,
    training: Training | Mapping[str, Any] | None = None,
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Fit ``method`` on ``table`` and write ``output/model.onnx``, ``output/summary.json`` and the estimator.

    Returns the summary. ``features=None`` takes the method's default features (its class attribute
    ``default_features``, without the resonant variable and the context columns). The inputs left at
    ``None`` take the method's defaults; one the method needs and does not get, or gets and does not use,
    raises naming its option. Rows lacking a value in a used column are dropped and counted
    (``summary["rows"]``). ``training`` (a :class:`~coffea_ad.models.base.Training`, a dict of its fields,
    or ``{network: ...}``) applies to every network of the method; ``progress`` shows one bar per network
    (per fold). ``folds`` is the number of cross-training folds (``coffea-ad train --folds K``): ``None`` takes
    the method's default (5 for the weakly supervised methods, 1 for the others), 1 trains a single model;
    K > 1 trains one model per fold of the event ids (the table needs ``run``, ``luminosityBlock``,
    ``event``), and ``model.onnx`` scores each event with the model that was trained without it.
    """
    output = check_output_folder(output)
    estimator = get_estimator(method)(
        folds=folds, training=_with_progress(training, progress), seed=seed, device=device
    )
    table = open_table(table)
    inputs = {
        "signal_region": signal_region,
        "mass": mass,
        "label": label,
        "background": open_table(background) if background is not None else None,
        "simulation": open_table(simulation) if simulation is not None else None,
        "context": list(context) if context else None,
        "signal_flag": signal_flag,
    }
    start = time.perf_counter()
    estimator.fit(table, features, region=region, checkpoint_dir=checkpoint_dir, **inputs)
    seconds = time.perf_counter() - start
    small = _warn_small_training(estimator)
    # In a folder this run creates, every one of _FILES is this run's: a failure from here on removes them.
    with output_folder(output, _FILES):
        onnx_path = estimator.export_onnx(output / "model.onnx")
        estimator.save(output)
        values, fold = _complete_rows(table, estimator.input_columns, region, estimator.n_folds)
        difference = onnx_difference(estimator, onnx_path, values, fold)
        closure = resonant_closure(estimator, table, region)
        summary = {
            **estimator.summary(),
            **({"closure": closure} if closure is not None else {}),
            "output": str(output),
            "files": list(_FILES),
            "training_seconds": seconds,
            "device": str(estimator.torch_device),
            "onnx": {"path": "model.onnx", "max_abs_diff_over_max_abs_score": difference},
            "warnings": small,
        }
        write_json(output / "summary.json", summary)
    logger.info("%s: wrote %s", method, output)
    return summary


def _describe_rows(name: str, counts: Mapping[str, Any]) -> str:
    missing = ", ".join(f"{column}: {n}" for column, n in counts["missing_by_column"].items())
    dropped = f"{counts['dropped_missing']} dropped for a missing value" + (f" ({missing})" if missing else "")
    region = f", {counts['in_region']} in the region" if counts["in_region"] != counts["read"] else ""
    return f"{name} rows: {counts['read']} read{region}, {dropped}, {counts['used']} used"


def _describe_network(name: str, history: Mapping[str, Any]) -> str:
    parts = []
    if history.get("best_validation_loss") is not None:
        parts.append(
            f"best validation loss {history['best_validation_loss']:.5g} at epoch {history['best_epoch'] + 1} "
            f"of {history['epochs_run']}" + (" (stopped early)" if history.get("stopped_early") else "")
        )
    if history.get("validation_auc") is not None:
        parts.append(f"validation AUC {history['validation_auc']:.4f}")
    return f"  {name}: {'; '.join(parts) or 'trained'}"


def _describe_folds(summary: Mapping[str, Any]) -> str:
    if summary.get("folds", 1) == 1:
        return "folds: 1 (a single model, no cross-training: it scores its own training events)"
    held_out = ", ".join(str(row["held_out"]) for row in summary["fold_rows"])
    return (
        f"folds: {summary['folds']} (each event scored by the model trained without its fold); "
        f"rows per fold: {held_out}"
    )


def _describe_closure(closure: Mapping[str, Any]) -> list[str]:
    flat = closure["sideband_flatness"]
    honest = "" if closure["cross_trained"] else " (single model: scored on its own training events, optimistic)"
    lines = []
    if flat is not None:
        test = flat["sideband_sculpting"]
        kept = [value for value in test["bin_efficiencies"] if value is not None]
        lines.append(
            f"closure{honest}: the cut at {flat['efficiency']:.0%} of the sidebands keeps "
            f"{min(kept):.3f}-{max(kept):.3f} per sideband mjj bin, "
            f"chi2/ndf = {test['chi2']:.1f}/{test['ndf']}, p = {test['p_value']:.2g}; signal region: "
            f"{flat['signal_region_pass_fraction']:.3f} +- {flat['signal_region_pass_fraction_error']:.3f}"
        )
    if "sideband_template_auc" in closure:
        template = closure["sideband_template_auc"]
        lines.append(
            f"closure: sideband data vs template AUC {template['auc']:.3f} (0.5 +- {template['statistical_spread']:.3f}"
            " if the template describes the data)"
        )
    lines += [f"warning: {warning}" for warning in closure["warnings"]]
    return lines


def describe_training(summary: Mapping[str, Any]) -> str:
    """The lines ``coffea-ad train`` prints for a :func:`train_to_folder` summary: method and files written,
    features, rows read / dropped for a missing value (per column) / used, the folds, and the validation
    metrics (per fold)."""
    folder = Path(summary["output"])
    files = ", ".join(str(folder / name) for name in summary["files"])
    lines = [
        f"{summary['method']}: wrote {files} ({summary['training_seconds']:.1f} s on {summary['device']})",
        f"features: {', '.join(summary['features'])}",
    ]
    lines += [_describe_rows(name, counts) for name, counts in summary["rows"].items()]
    lines.append(_describe_folds(summary))
    if "closure" in summary:
        lines += _describe_closure(summary["closure"])
    lines.append("validation:")
    lines += [_describe_network(name, history) for name, history in summary["history"].items()]
    return "\n".join(lines)
