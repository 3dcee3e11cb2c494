"""ONNX export of coffea_ad models and the torch-free helpers that read them back.

The ONNX contract (every method, every version):

* one input named ``features``: float32, shape ``[N, n_features]``, columns in the order of the
  ``feature_names`` metadata entry; ``N`` is a dynamic axis (0 and 1 work);
* one output named ``score``: float32, shape ``[N]``, higher = more anomalous;
* the graph holds the preprocessing (log/logit transforms, standardisation) and the score itself;
* ``metadata_props``: ``feature_names`` (JSON list, input order), ``method``, ``region`` (empty when the
  whole table was used), ``coffea_ad_version``, ``training_table_hash`` (SHA-256 of the training features),
  and ``params`` (JSON hyperparameters).

Reading a model (:func:`read_metadata`, :func:`score_onnx`) needs only onnxruntime; writing one
(:func:`export_module`) imports torch and onnx, i.e. the ``[train]`` extra.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from coffea_ad.errors import ConfigurationError, InputFileError
from coffea_ad.paths import atomic_output

__all__ = [
    "INPUT_NAME",
    "OUTPUT_NAME",
    "METADATA_KEYS",
    "OPSET",
    "ModelMetadata",
    "open_session",
    "read_metadata",
    "score_onnx",
    "export_module",
]

logger = logging.getLogger(__name__)

INPUT_NAME = "features"
OUTPUT_NAME = "score"
OPSET = 17
METADATA_KEYS = ("feature_names", "method", "region", "coffea_ad_version", "training_table_hash", "params")


@dataclass(frozen=True)
class ModelMetadata:
    """The metadata of a coffea_ad ONNX model."""

    feature_names: list[str]
    method: str
    region: str | None
    coffea_ad_version: str
    training_table_hash: str
    params: dict[str, Any] = field(default_factory=dict)


def open_session(path: str | os.PathLike, *, threads: int | None = None):
    """An onnxruntime CPU session on ``path``; a missing, truncated or non-ONNX file raises InputFileError.

    ``threads`` sets the intra-op threads (None: onnxruntime's default, all cores).
    """
    import onnxruntime

    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"ONNX model {path} does not exist")
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own Fail/InvalidProtobuf types
        raise InputFileError(f"{path} is not a readable ONNX model: {error}") from error


def read_metadata(path: str | os.PathLike) -> ModelMetadata:
    """Read the coffea_ad metadata of an ONNX model (onnxruntime only, no torch)."""
    props = open_session(path).get_modelmeta().custom_metadata_map
    missing = [key for key in METADATA_KEYS if key not in props]
    if missing:
        raise InputFileError(f"{path} is not a coffea_ad model: metadata key(s) {missing} missing")
    try:
        names = json.loads(props["feature_names"])
        params = json.loads(props["params"])
    except json.JSONDecodeError as error:
        raise InputFileError(f"{path}: malformed JSON in its metadata: {error}") from error
    return ModelMetadata(
        feature_names=list(names),
        method=props["method"],
        region=props["region"] or None,
        coffea_ad_version=props["coffea_ad_version"],
        training_table_hash=props["training_table_hash"],
        params=params,
    )


def score_onnx(path: str | os.PathLike, features: np.ndarray) -> np.ndarray:
    """Score a ``[N, n_features]`` array with an exported model in onnxruntime (columns in metadata order)."""
    session = open_session(path)
    array = np.ascontiguousarray(features, dtype=np.float32)
    expected = session.get_inputs()[0].shape[1]
    if array.ndim != 2 or array.shape[1] != expected:
        raise ConfigurationError(f"{path} expects features of shape [N, {expected}], got {list(array.shape)}")
    return session.run([OUTPUT_NAME], {INPUT_NAME: array})[0]


def export_module(
    module: Any,
    path: str | os.PathLike,
    *,
    feature_names: list[str],
    method: str,
    region: str | None,
    training_table_hash: str,
    extra: dict[str, str] | None = None,
) -> Path:
    """Export a torch module ``[N, F] -> [N]`` to ONNX at ``path`` (atomically) with the coffea_ad metadata.

    Traced with ``torch.onnx.export(..., dynamo=False)`` at opset :data:`OPSET`, with a dynamic batch axis.
    """
    import onnx
    import torch

    from coffea_ad import __version__

    path = Path(path)
    example = torch.zeros(3, len(feature_names)) + 0.5
    with torch.no_grad():
        out = module(example)
    if tuple(out.shape) != (3,):
        raise ConfigurationError(f"the scoring module of {method} returns shape {tuple(out.shape)}, expected [N]")
    with atomic_output(path) as tmp, warnings.catch_warnings():
        # constants taken from tensors while tracing (masks, permutations) are constants by design
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # the TorchScript exporter is chosen on purpose (dynamo=False: zuko's flows trace with it); its own
        # deprecation notices are not the caller's to act on
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module,
            (example,),
            str(tmp),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
        model = onnx.load(str(tmp))
        props = {
            "feature_names": json.dumps(list(feature_names)),
            "method": method,
            "region": region or "",
            "coffea_ad_version": __version__,
            "training_table_hash": training_table_hash,
            **(extra or {}),
        }
        props.setdefault("params", "{}")
        del model.metadata_props[:]
        for key, value in props.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp))
    logger.info("wrote %s (%s, %d features)", path, method, len(feature_names))
    return path
