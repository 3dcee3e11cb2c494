"""Inline anomaly scoring: a coffea_ad ONNX model as a new column of NanoEvents, on any Dask worker.

:class:`OnnxScorer` follows the pattern of ``coffea.ml_tools`` (wrappers for torch, xgboost, tensorflow
and triton, none for ONNX): the heavy object, the onnxruntime session, is created lazily on the worker and
never pickled; awkward inputs are turned into a contiguous float32 matrix for a numpy call; dask-awkward
inputs go through ``dask_awkward.map_partitions`` with a meta computed on length-one arrays. It does not
import ``coffea.ml_tools`` itself, because that package's ``__init__`` imports torch whenever torch is
installed, and the inference path must stay torch-free.

The scorer carries the model itself: the ONNX file is read once, when the scorer is built, and its bytes are
pickled with it (models are kilobytes to megabytes), so a worker scores without seeing the file (no shared file
system needed), and the metadata (input order, folds) always belongs to the bytes that are scored. Replacing the
file afterwards changes nothing for that scorer; a new scorer reads the new file with its own metadata. Sessions are
cached per worker process by the SHA-256 of the model and the thread setting, so the many copies of a scorer
that a task graph carries share one session.

Inputs are the model's features by name, computed by :func:`coffea_ad.features.compute_features` (built-in or
user-defined with :func:`coffea_ad.features.define_feature`), or, for a model on arbitrary inputs, whatever a
``prepare`` function builds from the events (the ``prepare_awkward`` idea of ``coffea.ml_tools``): a mapping from
the model's input names to one number per event, checked for names, count and type.

A cross-trained model (one model per fold in one file) is given the fold of every event, computed here from
its ``run``, ``luminosityBlock`` and ``event`` (:func:`coffea_ad.features.folds.event_fold`): each event is
scored by the model that was trained without its fold, so an event of the training data is never scored by
a model that saw it. Events that were never in training (another dataset, simulation, a later run) are
scored the same way, by the model of their fold: every fold model is trained on the same kind of events, so
which one scores them changes nothing but keeps the answer deterministic.

Example:
    >>> scorer = OnnxScorer("model.onnx")                       # doctest: +SKIP
    >>> events["anomaly_score"] = scorer(events)                # eager, virtual or dask events
    >>> scorer = OnnxScorer("dimuon.onnx", prepare=lambda events: {"mumu_pt": ..., "mumu_y": ...})  # doctest: +SKIP
"""

from __future__ import annotations

import collections
import hashlib
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import awkward as ak
import cloudpickle
import dask
import dask_awkward
import numpy as np

from coffea_ad.errors import ConfigurationError, InputFileError
from coffea_ad.features import FEATURES, FeatureConfig, compute_features, event_column, user_features
from coffea_ad.features.arrays import nullable, numeric
from coffea_ad.features.folds import EVENT_ID_BRANCHES, event_fold
from coffea_ad.features.user import travel_by_value
from coffea_ad.onnx.export import FOLD_INPUT_NAME, INPUT_NAME, OUTPUT_NAME, check_folds, open_session, read_metadata

__all__ = ["OnnxScorer"]


_SESSIONS: collections.OrderedDict[tuple[str, int], Any] = collections.OrderedDict()
_SESSIONS_LOCK = threading.Lock()
#: Sessions kept per process (least recently used dropped first).
MAX_SESSIONS = 16


def _cached_session(model: bytes, digest: str, threads: int, source: str):
    """The session of the model of SHA-256 ``digest`` in this process, opened from ``model`` on first use."""
    key = (digest, threads)
    with _SESSIONS_LOCK:
        session = _SESSIONS.get(key)
        if session is not None:
            _SESSIONS.move_to_end(key)
            return session
    session = open_session(model, threads=threads, source=source)
    with _SESSIONS_LOCK:
        _SESSIONS[key] = session
        while len(_SESSIONS) > MAX_SESSIONS:
            _SESSIONS.popitem(last=False)
    return session


def _shape(dimensions: Sequence) -> str:
    return "[" + ", ".join(str(dimension) for dimension in dimensions) + "]"


class OnnxScorer:
    """The score of a coffea_ad ONNX model, computed from NanoEvents as one value per event.

    Arguments:
        path: the ONNX file written by ``coffea-ad train`` / ``Estimator.export_onnx``. It is read once, here;
            the scorer carries its bytes, so workers need not see the file.
        prepare: for a model on inputs that are not coffea_ad features: a function of the events returning a
            mapping from each of the model's input names (its ``feature_names`` metadata) to one number per event
            (awkward, dask-awkward or numpy; None where undefined). Without it, the inputs are computed as
            features by name (built-in or :func:`coffea_ad.features.define_feature`).
        feature_config: object selections used to build the features (e.g. ``met_collection="PuppiMET"``
            to read PUPPI MET from every file); the default is :class:`coffea_ad.features.FeatureConfig`, whose
            MET collection is found per chunk (``MET``, else ``PFMET``, else ``PuppiMET``).
        feature_names: the features the caller expects the model to take, in order; refused with both
            lists shown if the model's metadata says otherwise. By default, the model's own list.
        threads: onnxruntime intra-op threads per session (default 1: Dask parallelises over partitions).

    Calling the scorer on events (awkward or dask-awkward) returns a float32 array of one score per
    event, None where an input is missing (e.g. an event with a single fat jet). Higher scores are more
    anomalous. A model whose inputs do not match its features (count, dtype, names, order), or a file that is
    not a readable ONNX model, is refused when the scorer is built, not on the workers; inputs from ``prepare``
    that do not match are refused when the scorer is called, naming the input.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        prepare: Callable[[Any], Mapping[str, Any]] | None = None,
        feature_config: FeatureConfig | None = None,
        feature_names: Sequence[str] | None = None,
        threads: int = 1,
    ) -> None:
        self.path = os.path.abspath(path)
        if not os.path.isfile(self.path):
            raise InputFileError(f"ONNX model {self.path} does not exist")
        with open(self.path, "rb") as stream:
            self.model = stream.read()
        self.model_hash = hashlib.sha256(self.model).hexdigest()
        self.threads = threads
        self.feature_config = feature_config or FeatureConfig()
        if prepare is not None and not callable(prepare):
            raise ConfigurationError(f"prepare must be a function of the events, got {prepare!r}")
        self.prepare = prepare
        if prepare is not None:
            travel_by_value(prepare)
        self.metadata = read_metadata(self.model, session=self.session, source=self.path)
        self.feature_names = list(self.metadata.feature_names)
        if feature_names is not None and list(feature_names) != self.feature_names:
            raise ConfigurationError(
                f"{self.path} takes features {self.feature_names}, but {list(feature_names)} were expected"
            )
        unknown = [name for name in self.feature_names if name not in FEATURES]
        if unknown and prepare is None:
            raise ConfigurationError(
                f"{self.path} takes features {self.feature_names}; coffea_ad.features cannot build {unknown}: "
                "define them (coffea_ad.features.define_feature, --feature-module) or give OnnxScorer a prepare "
                f"function (known features: {', '.join(FEATURES)})"
            )
        # Unpickling these defines the user's features on the worker (coffea_ad.features.user).
        self.user_features = () if prepare is not None else user_features(self.feature_names)
        self._check_signature()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self.prepare is not None:  # by value, so that a worker needs none of the user's modules
            state["prepare"] = cloudpickle.dumps(self.prepare)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if state.get("prepare") is not None:
            state = {**state, "prepare": cloudpickle.loads(state["prepare"])}
        self.__dict__.update(state)

    @property
    def session(self):
        """The onnxruntime session of this process (created on first use, shared by content, never pickled)."""
        return _cached_session(self.model, self.model_hash, self.threads, self.path)

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
        features = None
        if self.prepare is None:
            features = compute_features(events, self.feature_names, config=self.feature_config)
        columns = self.input_columns(features, events)
        if not dask.is_dask_collection(events):
            return self.score_columns(*columns)

        meta = self.score_columns(*(column._meta for column in columns))
        return dask_awkward.map_partitions(self.score_columns, *columns, label="onnx-anomaly-score", meta=meta)

    def prepared_columns(self, events) -> list:
        """The model's inputs from :attr:`prepare` of ``events``, in the model's order, checked."""
        prepared = self.prepare(events)
        if not isinstance(prepared, Mapping):
            raise ConfigurationError(
                f"prepare of {self.path} must return a mapping from the model's inputs {self.feature_names} to "
                f"columns, got {type(prepared).__name__}"
            )
        missing = [name for name in self.feature_names if name not in prepared]
        extra = [name for name in prepared if name not in self.feature_names]
        if missing or extra:
            raise ConfigurationError(
                f"{self.path} takes {len(self.feature_names)} inputs {self.feature_names}; prepare returned "
                f"{list(prepared)} (missing: {missing}, not inputs of the model: {extra})"
            )
        return [
            event_column(prepared[name], f"input {name!r} of {self.path} from prepare", events)
            for name in self.feature_names
        ]

    def input_columns(self, features, events) -> list:
        """What :meth:`score_columns` takes: the model's inputs in its order (from ``features``, the record of
        :func:`coffea_ad.features.compute_features`, or from :attr:`prepare` of ``events`` when given), then,
        for a cross-trained model, the event ids ``run``, ``luminosityBlock``, ``event`` of ``events``."""
        if self.prepare is not None:
            columns = self.prepared_columns(events)
        else:
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
        """Score one partition given the input columns in the model's order (None -> a None score); a
        cross-trained model takes the columns run, luminosityBlock and event after them."""
        typetracer = any(ak.backend(column) == "typetracer" for column in columns)
        if typetracer:
            columns = tuple(ak.typetracer.length_one_if_typetracer(column) for column in columns)
        fold = None
        if self.metadata.cross_trained:
            ids = [ak.to_numpy(ak.materialize(column)) for column in columns[-len(EVENT_ID_BRANCHES):]]
            columns = columns[: -len(EVENT_ID_BRANCHES)]
            fold = event_fold(*ids, self.metadata.n_folds)
        # None (a missing feature) -> NaN -> no score.
        matrix = np.stack([numeric(column) for column in columns], axis=1).astype(np.float32)
        complete = np.isfinite(matrix).all(axis=1)
        scores = np.full(len(matrix), np.nan, dtype=np.float32)
        if complete.any():
            inputs = {INPUT_NAME: matrix if complete.all() else np.ascontiguousarray(matrix[complete])}
            if fold is not None:
                inputs[FOLD_INPUT_NAME] = check_folds(
                    fold[complete], int(complete.sum()), self.metadata.n_folds, str(self.path)
                )
            scores[complete] = self.session.run([OUTPUT_NAME], inputs)[0]
        result = nullable(scores, complete)
        if typetracer:
            return ak.Array(result.layout.to_typetracer(forget_length=True))
        return result

    def __repr__(self) -> str:
        return f"OnnxScorer({self.path!r}, method={self.metadata.method!r}, features={self.feature_names})"
