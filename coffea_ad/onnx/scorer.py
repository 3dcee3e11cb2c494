"""Inline anomaly scoring: a coffea_ad ONNX model as a new column of NanoEvents, on any Dask worker.

:class:`OnnxScorer` follows the pattern of ``coffea.ml_tools`` (wrappers for torch, xgboost, tensorflow
and triton, none for ONNX): the heavy object, the onnxruntime session, is created lazily on the worker and
never pickled; awkward inputs are turned into a contiguous float32 matrix for a numpy call; dask-awkward
inputs go through ``dask_awkward.map_partitions`` with a meta computed on length-one arrays. It does not
import ``coffea.ml_tools`` itself, because that package's ``__init__`` imports torch whenever torch is
installed, and the inference path must stay torch-free.

Sessions are cached per worker process (one per model file and thread setting), so the many copies of a
scorer that a task graph carries share one session.

A cross-trained model (one model per fold in one file) is given the fold of every event, computed here from
its ``run``, ``luminosityBlock`` and ``event`` (:func:`coffea_ad.features.folds.event_fold`): each event is
scored by the model that was trained without its fold, so an event of the training data is never scored by
a model that saw it. Events that were never in training (another dataset, simulation, a later run) are
scored the same way, by the model of their fold: every fold model is trained on the same kind of events, so
which one scores them changes nothing but keeps the answer deterministic.

Example:
    >>> scorer = OnnxScorer("model.onnx")                       # doctest: +SKIP
    >>> events["anomaly_score"] = scorer(events)                # eager, virtual or dask events
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import awkward as ak
import dask
import dask_awkward
import numpy as np

from coffea_ad.errors import ConfigurationError
from coffea_ad.features.folds import EVENT_ID_BRANCHES, event_fold
from coffea_ad.onnx.export import FOLD_INPUT_NAME, INPUT_NAME, OUTPUT_NAME, check_folds, open_session, read_metadata
from coffea_ad.features import FEATURES, FeatureConfig, compute_features

__all__ = ["OnnxScorer"]


@functools.lru_cache(maxsize=16)
def _cached_session(path: str, threads: int, modified: float):
    # ``modified`` (the file's mtime) is part of the key so that a retrained model is not served stale.
    return open_session(path, threads=threads)


def _shape(dimensions: Sequence) -> str:
    return "[" + ", ".join(str(dimension) for dimension in dimensions) + "]"


class OnnxScorer:
    """The score of a coffea_ad ONNX model, computed from NanoEvents as one value per event.

    Arguments:
        path: the ONNX file written by ``coffea-ad train`` / ``Estimator.export_onnx``. On a cluster every
            worker opens it by this path, so it must be readable there (a shared file system).
        feature_config: object selections used to build the features (e.g. ``met_collection="PuppiMET"``
            for NanoAOD v15); the default is :class:`coffea_ad.features.FeatureConfig`.
        feature_names: the features the caller expects the model to take, in order; refused with both
            lists shown if the model's metadata says otherwise. By default, the model's own list.
        threads: onnxruntime intra-op threads per session (default 1: Dask parallelises over partitions).

    Calling the scorer on events (awkward or dask-awkward) returns a float32 array of one score per
    event, None where an input feature is missing (e.g. an event with a single fat jet). Higher scores
    are more anomalous. A model whose inputs do not match its features (count, dtype, names, order), or a
    file that is not a readable ONNX model, is refused when the scorer is built, not on the workers.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        feature_config: FeatureConfig | None = None,
        feature_names: Sequence[str] | None = None,
        threads: int = 1,
    ) -> None:
        self.path = os.path.abspath(path)
        self.threads = threads
        self.feature_config = feature_config or FeatureConfig()
        self.metadata = read_metadata(self.path)
        self.feature_names = list(self.metadata.feature_names)
        if feature_names is not None and list(feature_names) != self.feature_names:
            raise ConfigurationError(
                f"{self.path} takes features {self.feature_names}, but {list(feature_names)} were expected"
            )
        unknown = [name for name in self.feature_names if name not in FEATURES]
        if unknown:
            raise ConfigurationError(
                f"{self.path} takes features {self.feature_names}; coffea_ad.features cannot build {unknown} "
                f"(known features: {', '.join(FEATURES)})"
            )
        self._check_signature()

    @property
    def session(self):
        """The onnxruntime session of this process (created on first use, shared, never pickled)."""
        return _cached_session(self.path, self.threads, os.path.getmtime(self.path))

    def _check_signature(self) -> None:
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        model_side = [f"{i.name}: {i.type} {_shape(i.shape)}" for i in inputs]
        model_side += [f"-> {o.name}: {o.type} {_shape(o.shape)}" for o in outputs]
        ours = f"{INPUT_NAME}: tensor(float) [N, {len(self.feature_names)}] ({', '.join(self.feature_names)})"
        if self.metadata.cross_trained:
            ours += f"; {FOLD_INPUT_NAME}: tensor(int64) [N]"
        folds_match = (
            len(inputs) == 2 and inputs[1].name == FOLD_INPUT_NAME and inputs[1].type == "tensor(int64)"
            if self.metadata.cross_trained
            else len(inputs) == 1
        )
        matches = (
            folds_match
            and inputs[0].name == INPUT_NAME
            and inputs[0].type == "tensor(float)"
            and len(inputs[0].shape) == 2
            and inputs[0].shape[1] == len(self.feature_names)
            and any(output.name == OUTPUT_NAME and output.type == "tensor(float)" for output in outputs)
        )
        if not matches:
            raise ConfigurationError(
                f"{self.path} does not match its features: the model has {'; '.join(model_side)}; "
                f"coffea_ad builds {ours} -> {OUTPUT_NAME}: tensor(float) [N]"
            )

    def __call__(self, events):
        """One score per event of ``events`` (eager/virtual awkward or dask-awkward NanoEvents)."""
        features = compute_features(events, self.feature_names, config=self.feature_config)
        columns = self.input_columns(features, events)
        if not dask.is_dask_collection(events):
            return self.score_columns(*columns)

        meta = self.score_columns(*(column._meta for column in columns))
        return dask_awkward.map_partitions(self.score_columns, *columns, label="onnx-anomaly-score", meta=meta)

    def input_columns(self, features, events) -> list:
        """What :meth:`score_columns` takes: the model's features from ``features`` (the record of
        :func:`coffea_ad.features.compute_features`) in its order, then, for a cross-trained model, the event
        ids ``run``, ``luminosityBlock``, ``event`` of ``events``."""
        columns = [features[name] for name in self.feature_names]
        if not self.metadata.cross_trained:
            return columns
        missing = [name for name in EVENT_ID_BRANCHES if name not in events.fields]
        if missing:
            raise ConfigurationError(
                f"{self.path} is cross-trained ({self.metadata.n_folds} folds): its events need the branches "
                f"{', '.join(EVENT_ID_BRANCHES)} to find the model that did not see them; missing: {missing}"
            )
        return [*columns, *(events[name] for name in EVENT_ID_BRANCHES)]

    def score_columns(self, *columns: ak.Array) -> ak.Array:
        """Score one partition given the feature columns in the model's order (None -> a None score); a
        cross-trained model takes the columns run, luminosityBlock and event after them."""
        typetracer = any(ak.backend(column) == "typetracer" for column in columns)
        if typetracer:
            columns = tuple(ak.typetracer.length_one_if_typetracer(column) for column in columns)
        fold = None
        if self.metadata.cross_trained:
            ids = [ak.to_numpy(ak.materialize(column)) for column in columns[-len(EVENT_ID_BRANCHES):]]
            columns = columns[: -len(EVENT_ID_BRANCHES)]
            fold = event_fold(*ids, self.metadata.n_folds)
        # ak.to_numpy gives a masked array for a column with None (integer features too): masked -> NaN.
        matrix = np.stack(
            [np.ma.filled(ak.to_numpy(column).astype(np.float32), np.nan) for column in columns], axis=1
        )
        complete = np.isfinite(matrix).all(axis=1)
        scores = np.full(len(matrix), np.nan, dtype=np.float32)
        if complete.any():
            inputs = {INPUT_NAME: np.ascontiguousarray(matrix[complete])}
            if fold is not None:
                inputs[FOLD_INPUT_NAME] = check_folds(
                    fold[complete], int(complete.sum()), self.metadata.n_folds, str(self.path)
                )
            scores[complete] = self.session.run([OUTPUT_NAME], inputs)[0]
        result = ak.from_numpy(np.ma.MaskedArray(scores, mask=~complete))
        if typetracer:
            return ak.Array(result.layout.to_typetracer(forget_length=True))
        return result

    def __repr__(self) -> str:
        return f"OnnxScorer({self.path!r}, method={self.metadata.method!r}, features={self.feature_names})"
