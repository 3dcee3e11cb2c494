"""What ``coffea-ad train`` does: fit one method on a feature table and write the model folder.

The folder holds ``model.onnx`` (the ONNX contract of :mod:`coffea_ad.onnx.export`), ``summary.json``
(method, parameters, features, region, losses per epoch, validation metrics, the ONNX-vs-torch check)
and the estimator itself (``estimator.json`` + ``weights.pt``, reloadable with ``Estimator.load``).
Every file is written atomically.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from coffea_ad.errors import ConfigurationError
from coffea_ad.onnx.export import score_onnx
from coffea_ad.models import get_estimator
from coffea_ad.models.base import Estimator
from coffea_ad.models.data import Table, feature_matrix, open_table, region_mask
from coffea_ad.paths import write_json

__all__ = ["default_features", "train_to_folder"]

logger = logging.getLogger(__name__)

_BOOKKEEPING = ("run", "luminosityBlock", "event")


def default_features(table: Table, exclude: Sequence[str]) -> list[str]:
    """Every floating-point column except those in ``exclude`` (the resonant variable and the context
    variables); flags, ids and strings are skipped."""
    import pyarrow as pa

    table = open_table(table)
    if hasattr(table, "schema"):
        names = [f.name for f in table.schema if pa.types.is_floating(f.type)]
    else:
        names = [str(name) for name in table.columns if np.issubdtype(np.asarray(table[name]).dtype, np.floating)]
    features = [name for name in names if name not in exclude and name not in _BOOKKEEPING]
    if not features:
        raise ConfigurationError("the table has no floating-point feature columns; name them with --features")
    return features


def _fit_arguments(estimator: Estimator, options: dict[str, Any]) -> dict[str, Any]:
    """The options ``estimator.fit`` accepts; a required one that is missing raises, naming it."""
    parameters = inspect.signature(estimator.fit).parameters
    arguments = {}
    for name, parameter in parameters.items():
        if name in ("table", "features"):
            continue
        if options.get(name) is not None:
            arguments[name] = options[name]
        elif parameter.default is inspect.Parameter.empty:
            flag = "--" + name.replace("_", "-")
            raise ConfigurationError(f"method {estimator.method!r} needs {flag}")
    ignored = sorted(name for name, value in options.items() if value is not None and name not in parameters)
    if ignored:
        logger.warning("method %s ignores %s", estimator.method, ", ".join(ignored))
    return arguments


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
    background: str | Path | None = None,
    simulation: str | Path | None = None,
    context: Sequence[str] | None = None,
    signal_flag: str | None = None,
    seed: int = 0,
    device: str = "cpu",
    training: dict | None = None,
    checkpoint_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Fit ``method`` on ``table`` and write ``output/model.onnx``, ``output/summary.json`` and the estimator.

    Returns the summary. ``features=None`` takes :func:`default_features`; ``training`` (a dict of
    :class:`~coffea_ad.models.base.Training` fields) applies to every network of the method.
    """
    estimator_class = get_estimator(method)
    table = open_table(table)
    features = list(features) if features else default_features(table, [mass or "mjj", *(context or ())])
    settings = {"seed": seed, "device": device, "training": training}
    if training is not None and "flow_training" in inspect.signature(estimator_class).parameters:
        settings["flow_training"] = training
    estimator = estimator_class(**settings)
    options = {
        "region": region,
        "signal_region": signal_region,
        "mass": mass,
        "label": label,
        "background": open_table(background) if background is not None else None,
        "simulation": open_table(simulation) if simulation is not None else None,
        "context": list(context) if context else None,
        "signal_flag": signal_flag,
        "checkpoint_dir": checkpoint_dir,
    }
    arguments = _fit_arguments(estimator, options)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    estimator.fit(table, features, **arguments)
    seconds = time.perf_counter() - start
    onnx_path = estimator.export_onnx(output / "model.onnx")
    estimator.save(output)
    check = feature_matrix(table, estimator.input_columns, rows=region_mask(table, region))[:2000]
    reference = estimator.score_array(check)
    exported = score_onnx(onnx_path, check)
    scale = max(float(np.abs(reference).max()), 1e-30) if len(reference) else 1.0
    summary = {
        **estimator.summary(),
        "training_seconds": seconds,
        "device": str(estimator.torch_device),
        "onnx": {
            "path": "model.onnx",
            "max_abs_diff_over_max_abs_score": float(np.abs(exported - reference).max() / scale),
        },
    }
    write_json(output / "summary.json", summary)
    return summary
