"""ONNX export of coffea_ad models and the torch-free helpers that read them back.

The ONNX contract (every method, every version):

* one input named ``features``: float32, shape ``[N, n_features]``, columns in the order of the
  ``feature_names`` metadata entry; ``N`` is a dynamic axis (0 and 1 work);
* one output named ``score``: float32, shape ``[N]``, higher = more anomalous;
* the graph holds the preprocessing (log/logit transforms, standardisation) and the score itself;
* ``metadata_props``: ``feature_names`` (JSON list, input order), ``method``, ``region`` (empty when the
  whole table was used), ``coffea_ad_version``, ``training_table_hash`` (SHA-256 of the training features),
  and ``params`` (JSON hyperparameters);
* a cross-trained model (``K`` fold models in one file, see :mod:`coffea_ad.features.folds`) has a second
  input named ``fold``: int64, shape ``[N]``, the fold of each event, and the metadata ``n_folds`` (``K``) and
  ``fold_hash`` (the recipe of :func:`coffea_ad.features.folds.event_fold`); the graph scores each event with
  the model of its fold, i.e. the one trained without it. Models without folds have neither.

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
    "FOLD_INPUT_NAME",
    "OUTPUT_NAME",
    "METADATA_KEYS",
    "OPSET",
    "ModelMetadata",
    "open_session",
    "read_metadata",
    "score_onnx",
    "check_folds",
    "export_module",
]

logger = logging.getLogger(__name__)

INPUT_NAME = "features"
FOLD_INPUT_NAME = "fold"
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
    n_folds: int = 0
    fold_hash: str | None = None

    @property
    def cross_trained(self) -> bool:
        """True when the file holds one model per fold and takes the ``fold`` input."""
        return self.n_folds > 0


def open_session(model: str | os.PathLike | bytes, *, threads: int | None = None, source: str | None = None):
    """An onnxruntime CPU session on ``model``, a path or the file's bytes; a missing, truncated or non-ONNX
    model raises InputFileError (``source`` names bytes in the message).

    ``threads`` sets the intra-op threads (None: onnxruntime's default, all cores).
    """
    import onnxruntime

    if isinstance(model, bytes):
        source = source or "the ONNX model bytes"
    else:
        path = Path(model)
        source = str(path)
        if not path.is_file():
            raise InputFileError(f"ONNX model {path} does not exist")
        model = str(path)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own Fail/InvalidProtobuf types
        raise InputFileError(f"{source} is not a readable ONNX model: {error}") from error


def read_metadata(model: str | os.PathLike | bytes, *, session: Any = None, source: str | None = None) -> ModelMetadata:
    """Read the coffea_ad metadata of an ONNX model, a path or the file's bytes (onnxruntime only, no torch).

    Given the model's onnxruntime ``session``, reads it from there instead of opening the model again.
    """
    source = source or (str(model) if not isinstance(model, bytes) else "the ONNX model bytes")
    props = (session or open_session(model, source=source)).get_modelmeta().custom_metadata_map
    missing = [key for key in METADATA_KEYS if key not in props]
    if missing:
        raise InputFileError(f"{source} is not a coffea_ad model: metadata key(s) {missing} missing")
    try:
        names = json.loads(props["feature_names"])
        params = json.loads(props["params"])
        n_folds = int(props.get("n_folds", "0"))
    except (json.JSONDecodeError, ValueError) as error:
        raise InputFileError(f"{source}: malformed metadata: {error}") from error
    if n_folds:
        from coffea_ad.features.folds import FOLD_HASH

        if props.get("fold_hash") != FOLD_HASH:
            raise InputFileError(
                f"{source} is cross-trained with the fold recipe {props.get('fold_hash')!r}, but this coffea_ad "
                f"assigns folds with {FOLD_HASH!r}: its events would be scored by models that saw them"
            )
    return ModelMetadata(
        feature_names=list(names),
        method=props["method"],
        region=props["region"] or None,
        coffea_ad_version=props["coffea_ad_version"],
        training_table_hash=props["training_table_hash"],
        params=params,
        n_folds=n_folds,
        fold_hash=props.get("fold_hash"),
    )


def score_onnx(path: str | os.PathLike, features: np.ndarray, fold: np.ndarray | None = None) -> np.ndarray:
    """Score a ``[N, n_features]`` array with an exported model in onnxruntime (columns in metadata order).

    A cross-trained model also needs ``fold``, the fold of each row
    (:func:`coffea_ad.features.folds.event_fold` of its run, luminosityBlock and event).
    """
    session = open_session(path)
    array = np.ascontiguousarray(features, dtype=np.float32)
    inputs = {i.name: i for i in session.get_inputs()}
    expected = inputs[INPUT_NAME].shape[1]
    if array.ndim != 2 or array.shape[1] != expected:
        raise ConfigurationError(f"{path} expects features of shape [N, {expected}], got {list(array.shape)}")
    feed = {INPUT_NAME: array}
    if FOLD_INPUT_NAME in inputs:
        if fold is None:
            raise ConfigurationError(
                f"{path} is cross-trained: give the fold of each row (coffea_ad.features.folds.event_fold)"
            )
        feed[FOLD_INPUT_NAME] = check_folds(fold, len(array), read_metadata(path).n_folds, str(path))
    elif fold is not None:
        raise ConfigurationError(f"{path} is not cross-trained: it takes no fold input")
    return session.run([OUTPUT_NAME], feed)[0]


def check_folds(fold: Any, n_rows: int, n_folds: int, source: str) -> np.ndarray:
    """``fold`` as a contiguous int64 vector of ``n_rows`` values in ``[0, n_folds)``; anything else raises."""
    array = np.ascontiguousarray(fold, dtype=np.int64)
    if array.shape != (n_rows,):
        raise ConfigurationError(f"{source}: fold must have one value per row ({n_rows}), got shape {array.shape}")
    if n_rows and (array.min() < 0 or array.max() >= n_folds):
        raise ConfigurationError(f"{source}: folds must lie in 0..{n_folds - 1}, got {array.min()}..{array.max()}")
    return array


def export_module(
    module: Any,
    path: str | os.PathLike,
    *,
    feature_names: list[str],
    method: str,
    region: str | None,
    training_table_hash: str,
    n_folds: int = 0,
    extra: dict[str, str] | None = None,
) -> Path:
    """Export a torch module ``[N, F] -> [N]`` to ONNX at ``path`` (atomically) with the coffea_ad metadata.

    With ``n_folds`` = K > 0 the module is cross-trained: it takes ``(features [N, F], fold [N] int64)`` and
    returns the score of each row's fold model. Traced with ``torch.onnx.export(..., dynamo=False)`` at opset
    :data:`OPSET`, with a dynamic batch axis.
    """
    import onnx
    import torch

    from coffea_ad import __version__

    path = Path(path)
    example = (torch.zeros(3, len(feature_names)) + 0.5,)
    input_names = [INPUT_NAME]
    if n_folds:
        example += (torch.arange(3, dtype=torch.int64) % n_folds,)
        input_names.append(FOLD_INPUT_NAME)
    with torch.no_grad():
        out = module(*example)
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
            example,
            str(tmp),
            input_names=input_names,
            output_names=[OUTPUT_NAME],
            dynamic_axes={name: {0: "batch"} for name in [*input_names, OUTPUT_NAME]},
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
        if n_folds:
            from coffea_ad.features.folds import FOLD_HASH

            props.update(n_folds=str(n_folds), fold_hash=FOLD_HASH)
        props.setdefault("params", "{}")
        del model.metadata_props[:]
        for key, value in props.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp))
    logger.info("wrote %s (%s, %d features)", path, method, len(feature_names))
    return path
