"""The estimator contract every coffea_ad model follows: the fit sequence, written once, and the hooks a
method implements.

``Estimator.fit(table, features=None, **inputs)`` runs, for every method:

1. resolve the method inputs (:meth:`Estimator.resolve_inputs`): each class declares the inputs it
   :attr:`~Estimator.requires` and :attr:`~Estimator.accepts` (``signal_region``, ``mass``, ``label``,
   ``background``, ``simulation``, ``context``, ``signal_flag``) with :attr:`~Estimator.input_defaults`; a
   missing one raises naming it and its ``coffea-ad train`` option;
2. resolve the features: ``features=None`` takes the method's :attr:`~Estimator.default_features`;
3. read the table (and the ``background`` / ``simulation`` table) with one reader
   (:func:`coffea_ad.models.data.read_training_data`): rows inside ``region``, rows lacking a value in a used
   column dropped and counted (``rows_``), the signal-region / sideband (or control-region) split;
4. record the fitted description (``features_``, ``region_``, ``conditions_``, ``inputs_``, ``rows_``,
   ``table_hash_``) and let the method check its data (:meth:`Estimator._prepare`);
5. seeded: build the empty networks (:meth:`Estimator._build`), then train them (:meth:`Estimator._train`),
   each network through :meth:`Estimator._train_network` (train/validation split, preprocessing fitted on
   the training part, the shared loop of :mod:`coffea_ad.models.training`, ``history_[name]``).

Adding a method is one class (declare ``method``, ``networks``, ``requires``/``accepts``,
``default_features``, ``default_folds``; implement ``_build``, ``_train``, ``_modules`` and
``_scoring_module``) plus one entry in :data:`coffea_ad.models.METHODS`. Steps 1-3 are
:meth:`Estimator._read_inputs` and steps 4-5 :meth:`Estimator._fit_data`; cross-training (below) loops over
:meth:`Estimator._fit_data` in this class, without touching the methods.

``score(table)`` returns one float per row, higher = more anomalous, for every method;
``scoring_module()`` is the torch module from raw input columns to that score, which ``export_onnx``
writes to ONNX with its preprocessing inside; ``save``/``load`` use JSON for hyperparameters and fitted
attributes and ``torch.load(weights_only=True)`` for tensors, so loading never unpickles arbitrary objects.

Cross-training (``folds`` = K > 1; ``folds=None`` takes the method's :attr:`Estimator.default_folds`: 5 for
the weakly supervised methods, which learn from the data they later score, 1 for the others): every row
gets the fold :func:`coffea_ad.features.folds.event_fold` of its ``run``, ``luminosityBlock`` and ``event``
(a hash of the event identity, never the row order), and K models of the same class are trained, model
``k`` on the rows of the other folds only (:meth:`Estimator._fit_data` on :meth:`TrainingData.subset
<coffea_ad.models.data.TrainingData.subset>`, seed derived from ``(seed, k)``, checkpoints in
``checkpoint_dir/fold{k}``, history under ``fold{k}/{network}``). Every event, in ``score(table)``, in the
exported ONNX (input ``fold``) and in :class:`coffea_ad.onnx.scorer.OnnxScorer`, is scored by the model of
its fold, so a training event is never scored by a model that saw it. Events that were never in training
(another dataset, simulation, a later run) are scored the same way, by the model of their fold: each fold
model was trained on (K-1)/K of the same data, so which one scores them changes nothing systematic, and
the answer stays a deterministic function of the event. The ``background`` / ``simulation`` table of a
method is a template, not the data that is scored: every fold model uses it whole.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from coffea_ad import __version__
from coffea_ad.errors import ConfigurationError, InputFileError
from coffea_ad.features.folds import EVENT_ID_BRANCHES, FOLD_HASH, event_fold
from coffea_ad.models.data import TrainingData, parse_signal_region, read_training_data
from coffea_ad.models.training import TrainingResult, fingerprint, resolve_device, train_module
from coffea_ad.onnx.export import check_folds
from coffea_ad.paths import atomic_output, write_json
from coffea_ad.processing.tables import Table, column_array, column_names, feature_matrix, open_table, table_hash

__all__ = ["INPUT_OPTIONS", "Training", "Estimator", "FoldPlan", "NotFittedError", "fold_seed"]

logger = logging.getLogger(__name__)

_STATE_FILE = "weights.pt"
_CONFIG_FILE = "estimator.json"

#: The method inputs of ``fit`` (besides ``region`` and ``checkpoint_dir``) and their ``coffea-ad train`` options.
INPUT_OPTIONS: dict[str, str] = {
    "signal_region": "--signal-region",
    "mass": "--mass",
    "label": "--label",
    "background": "--background",
    "simulation": "--simulation",
    "context": "--context",
    "signal_flag": "--signal-flag",
}
_TABLE_INPUTS = ("background", "simulation")


class NotFittedError(ConfigurationError):
    """An estimator was used before ``fit`` (or ``load``)."""


def fold_seed(seed: int, fold: int) -> int:
    """The seed of fold ``fold``'s model of a cross-trained estimator with seed ``seed`` (deterministic,
    distinct per fold, below 2**30 so that derived seeds stay valid for scikit-learn)."""
    return int(np.random.SeedSequence([int(seed), int(fold)]).generate_state(1)[0] >> 2)


@dataclass(frozen=True)
class FoldPlan:
    """The training rows of a cross-trained fit, read once (:meth:`Estimator.plan_folds`): what each fold's
    training (:meth:`Estimator.fit_fold`) needs, wherever it runs."""

    features: list[str]
    region: str | None
    inputs: dict[str, Any]
    data: TrainingData
    reference: TrainingData | None


class _FoldSelect(nn.Module):
    """``(features [N, F], fold [N] int64) -> score [N]``: each row scored by the model of its fold."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        super().__init__()
        self.models = nn.ModuleList(models)

    def forward(self, x: torch.Tensor, fold: torch.Tensor) -> torch.Tensor:
        scores = torch.stack([model(x) for model in self.models], dim=1)
        return scores.gather(1, fold.view(-1, 1)).view(-1)


_TRAINING_DEFAULTS: dict[str, Any] = {
    "epochs": 100,
    "batch_size": 256,
    "learning_rate": 1e-3,
    "weight_decay": 0.0,
    "patience": 10,
    "validation_fraction": 0.2,
    "keep_best": 1,
    "progress": True,
}


@dataclass(frozen=True, init=False)
class Training:
    """Settings of one network's training, the same names for every network (flows, classifiers,
    autoencoders) and for the boosted trees (``classifier="hgb"``).

    ``Training(**settings)`` takes keyword arguments only. The settings you give override the method's
    per-network defaults (e.g. CATHODE's classifier keeps its 10 best epochs); those you leave out take
    them: ``Training(epochs=5)`` and ``{"epochs": 5}`` mean the same.

    Arguments:
        epochs: maximum number of epochs (hgb: maximum boosting iterations). Default 100.
        batch_size: events per mini-batch (hgb: unused). Default 256.
        learning_rate: Adam learning rate (hgb: unused, scikit-learn's 0.1). Default 1e-3.
        weight_decay: Adam weight decay (hgb: unused). Default 0.
        patience: stop after this many epochs without a better validation loss, ``None``: never (hgb: boosting
            iterations without a better validation score). Default 10.
        validation_fraction: fraction of the training events held out for validation and early stopping
            (hgb: the members train on repeated k-fold splits with k = round(1 / validation_fraction), each
            stopping early on its held-out fold). Default 0.2.
        keep_best: number of best epochs kept; classifiers average them, an ensemble of best epochs (hgb:
            unused, the ``ensemble`` argument of the method sets the number of tree models). Default 1.
        progress: show one progress bar per network (display only: it never changes the result). Default True.
    """

    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    patience: int | None
    validation_fraction: float
    keep_best: int
    progress: bool

    def __init__(self, **settings: Any) -> None:
        unknown = sorted(set(settings) - set(_TRAINING_DEFAULTS))
        if unknown:
            valid = ", ".join(_TRAINING_DEFAULTS)
            raise ConfigurationError(f"unknown training setting(s) {unknown}; valid ones: {valid}")
        for name, default in _TRAINING_DEFAULTS.items():
            object.__setattr__(self, name, settings.get(name, default))
        object.__setattr__(self, "_given", frozenset(settings))
        if self.epochs < 1 or self.batch_size < 1 or self.keep_best < 1:
            raise ConfigurationError(
                f"epochs, batch_size and keep_best must be >= 1, got {self.epochs}, {self.batch_size}, {self.keep_best}"
            )
        if not 0.0 < self.validation_fraction < 1.0:
            raise ConfigurationError(f"validation_fraction must be in (0, 1), got {self.validation_fraction}")

    def given(self) -> dict[str, Any]:
        """The settings given explicitly (the others take the network's defaults)."""
        return {name: getattr(self, name) for name in _TRAINING_DEFAULTS if name in self._given}

    @classmethod
    def coerce(cls, value: Training | Mapping[str, Any] | None) -> Training:
        """Accept a :class:`Training`, a dict of its fields, or ``None`` (nothing given)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            return cls(**value)
        raise ConfigurationError(f"training must be a Training or a dict, got {type(value).__name__}")


def resolve_training(
    value: Training | Mapping[str, Any] | None,
    networks: Sequence[str],
    defaults: Mapping[str, Mapping[str, Any]],
) -> dict[str, Training]:
    """One complete :class:`Training` per network of a method.

    ``value`` is ``None``, one :class:`Training` (or dict of its fields) for every network, or a dict that
    maps network names to a Training/dict, optionally mixed with fields that apply to every network:
    ``{"epochs": 20, "classifier": {"keep_best": 3}}``. Layers, later ones winning: the global defaults, the
    method's ``defaults[network]``, the common settings, the network's own settings.
    """
    common: dict[str, Any] = {}
    own: dict[str, dict[str, Any]] = {}
    if isinstance(value, Training) or value is None:
        common = Training.coerce(value).given()
    elif isinstance(value, Mapping):
        unknown = sorted(set(value) - set(networks) - set(_TRAINING_DEFAULTS))
        if unknown:
            raise ConfigurationError(
                f"unknown training setting(s) or network(s) {unknown}; settings: {', '.join(_TRAINING_DEFAULTS)}; "
                f"networks of this method: {', '.join(networks)}"
            )
        common = Training(**{k: v for k, v in value.items() if k in _TRAINING_DEFAULTS}).given()
        own = {name: Training.coerce(value[name]).given() for name in networks if name in value}
    else:
        raise ConfigurationError(f"training must be a Training or a dict, got {type(value).__name__}")
    return {
        name: Training(**{**_TRAINING_DEFAULTS, **defaults.get(name, {}), **common, **own.get(name, {})})
        for name in networks
    }


class Estimator:
    """Base class: the fit sequence and the score/save/load/export machinery of every coffea_ad estimator.

    A method (subclass) declares:

    * :attr:`method`: its name in :data:`coffea_ad.models.METHODS`;
    * :attr:`networks`: the names of the networks it trains (``"flow"``, ``"classifier"``, ...), the keys
      of ``training``; :attr:`network_defaults`: per-network training defaults;
    * :attr:`requires` / :attr:`accepts` / :attr:`input_defaults`: its method inputs;
    * :attr:`default_features`: its natural feature set (the condition columns are left out);
    * :attr:`default_folds`: the number of cross-training folds of ``folds=None`` (5 for the weakly
      supervised methods, 1 otherwise);

    and implements :meth:`_build`, :meth:`_train`, :meth:`_modules`, :meth:`_scoring_module` (and optionally
    :meth:`_prepare`). ``__init__`` stores hyperparameters under the names of its arguments and nothing else
    (every method takes ``folds``, ``training``, ``seed`` and ``device`` and passes them on).
    Fitted attributes end in ``_`` and must be JSON-serialisable; :attr:`_fitted_attributes` lists those
    of the method (besides the ones every estimator has). A cross-trained estimator holds its fold models,
    each an estimator of the same class with ``folds=1``, in ``fold_models_``; the method's own fitted
    attributes (networks, shapes) live there.
    """

    method: ClassVar[str]
    networks: ClassVar[tuple[str, ...]] = ()
    network_defaults: ClassVar[dict[str, dict[str, Any]]] = {}
    requires: ClassVar[tuple[str, ...]] = ()
    accepts: ClassVar[tuple[str, ...]] = ()
    input_defaults: ClassVar[dict[str, Any]] = {}
    default_features: ClassVar[tuple[str, ...]] = ()
    default_folds: ClassVar[int] = 1
    _fitted_attributes: ClassVar[tuple[str, ...]] = ()
    _score_reads_condition: ClassVar[bool] = False
    #: (fold, number of folds) of a fold model of a cross-trained estimator, for its progress bars
    _fold_label: tuple[int, int] | None = None

    def __init__(
        self,
        *,
        folds: int | None = None,
        training: Training | Mapping[str, Any] | None = None,
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        if folds is not None and (isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 1):
            raise ConfigurationError(
                f"folds must be a positive integer (1: no cross-training) or None (the method's default, "
                f"{self.default_folds}), got {folds!r}"
            )
        self.folds = None if folds is None else int(folds)
        self.training = resolve_training(training, self.networks, self.network_defaults)
        self.seed = seed
        self.device = device

    @property
    def n_folds(self) -> int:
        """The number of cross-training folds: ``folds``, or the method's :attr:`default_folds` for ``None``."""
        return self.default_folds if self.folds is None else self.folds

    @property
    def cross_trained(self) -> bool:
        """True when the estimator trains one model per fold (``n_folds`` > 1)."""
        return self.n_folds > 1

    def __getattr__(self, name: str) -> Any:
        # only reached when the normal lookup fails: name the fold models for a method's fitted attribute
        if name.endswith("_") and not name.startswith("__") and "fold_models_" in self.__dict__:
            raise AttributeError(
                f"this {type(self).__name__} is cross-trained ({len(self.__dict__['fold_models_'])} folds): "
                f"{name!r} belongs to each fold model, fold_models_[k].{name}"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # ---- parameters -------------------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        """The constructor arguments of this estimator (scikit-learn convention)."""
        names = [name for name in inspect.signature(type(self).__init__).parameters if name != "self"]
        return {name: getattr(self, name) for name in names}

    def _params_json(self) -> dict[str, Any]:
        params = self.get_params()
        params["training"] = {name: dataclasses.asdict(value) for name, value in self.training.items()}
        return params

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"

    # ---- the fit sequence -------------------------------------------------------------------------
    @classmethod
    def resolve_inputs(cls, **inputs: Any) -> dict[str, Any]:
        """The method inputs ``fit`` will use: the given ones (``None`` = not given) checked against
        :attr:`requires` and :attr:`accepts`, the defaults of :attr:`input_defaults` filled in, the signal
        region parsed. A missing or unused input raises, naming the ``coffea-ad train`` option."""
        given = {name: value for name, value in inputs.items() if value is not None}
        unknown = sorted(set(given) - set(INPUT_OPTIONS))
        if unknown:
            raise ConfigurationError(f"fit got unknown input(s) {unknown}; the inputs are: {', '.join(INPUT_OPTIONS)}")
        usable = (*cls.requires, *cls.accepts)
        unused = [name for name in given if name not in usable]
        if unused:
            listed = ", ".join(f"{name} ({INPUT_OPTIONS[name]})" for name in usable) or "none"
            raise ConfigurationError(
                f"method {cls.method!r} does not use {', '.join(f'{n} ({INPUT_OPTIONS[n]})' for n in unused)}; "
                f"its inputs: {listed}"
            )
        for name in cls.requires:
            if name not in given:
                raise ConfigurationError(f"method {cls.method!r} needs {name} ({INPUT_OPTIONS[name]})")
        resolved = {**{k: v for k, v in cls.input_defaults.items() if k in usable}, **given}
        if "signal_region" in resolved:
            resolved["signal_region"] = parse_signal_region(resolved["signal_region"])
        if "context" in resolved:
            if isinstance(resolved["context"], str) or not resolved["context"]:
                raise ConfigurationError(f"context must be a non-empty list of columns, got {resolved['context']!r}")
            resolved["context"] = list(resolved["context"])
        return resolved

    @classmethod
    def conditions(cls, inputs: Mapping[str, Any]) -> list[str]:
        """The condition columns of resolved ``inputs``: the resonant variable, or the context columns."""
        if inputs.get("mass") is not None:
            return [inputs["mass"]]
        return list(inputs.get("context") or [])

    @classmethod
    def resolve_features(cls, features: Sequence[str] | None, inputs: Mapping[str, Any]) -> list[str]:
        """``features``, or the method's :attr:`default_features` without its condition columns."""
        if features is not None:
            if isinstance(features, str) or len(features) == 0:
                raise ConfigurationError(f"features must be a non-empty list of column names, got {features!r}")
            return list(features)
        conditions = cls.conditions(inputs)
        defaults = [name for name in cls.default_features if name not in conditions]
        if not defaults:
            raise ConfigurationError(f"method {cls.method!r} has no default features; name them (--features)")
        return defaults

    def fit(
        self,
        table: Table,
        features: Sequence[str] | None = None,
        *,
        region: str | None = None,
        checkpoint_dir: str | Path | None = None,
        **inputs: Any,
    ) -> Estimator:
        """Train on ``table``: ``features`` (default: the method's natural set), the rows of the boolean column
        ``region``, and the method inputs (``signal_region=``, ``mass=``, ``label=``, ``background=``,
        ``simulation=``, ``context=``, ``signal_flag=``: see :attr:`requires` and :attr:`accepts`).

        Rows lacking a value in a used column are dropped and counted in ``rows_``. With ``checkpoint_dir``
        every network checkpoints each epoch to ``checkpoint_dir/{name}.pt`` (``checkpoint_dir/fold{k}/{name}.pt``
        when cross-trained) and resumes from it. A cross-trained estimator (:attr:`n_folds` > 1) needs the
        columns ``run``, ``luminosityBlock`` and ``event`` and trains one model per fold, each without the rows
        of its fold (see the module docstring). Returns self.
        """
        read = self._read_inputs(table, features, region, inputs)
        if self.cross_trained:
            return self._fit_folds(*read, checkpoint_dir=checkpoint_dir)
        return self._fit_data(*read, checkpoint_dir=checkpoint_dir)

    def _check_event_ids(self, table: Table) -> None:
        """A cross-trained estimator needs the event identity columns: a table without them raises."""
        missing = [name for name in EVENT_ID_BRANCHES if name not in column_names(table)]
        if missing:
            raise ConfigurationError(
                f"{self.method} is cross-trained in {self.n_folds} folds (folds={self.folds!r}): each event's fold "
                f"comes from the columns {', '.join(EVENT_ID_BRANCHES)}, and the table has no {', '.join(missing)}; "
                f"give folds=1 (coffea-ad train --folds 1) to train a single model on every event"
            )

    def _event_folds(self, table: Table, rows: np.ndarray | None = None) -> np.ndarray:
        """The fold of each row of ``table`` (of the rows ``rows``) from its event identity."""
        self._check_event_ids(table)
        ids = [column_array(table, name) for name in EVENT_ID_BRANCHES]
        if rows is not None:
            ids = [values[rows] for values in ids]
        return event_fold(*ids, self.n_folds)

    def _read_inputs(
        self, table: Table, features: Sequence[str] | None, region: str | None, inputs: Mapping[str, Any]
    ) -> tuple[list[str], str | None, dict[str, Any], TrainingData, TrainingData | None]:
        """Steps 1-3 of the fit sequence: (features, region, resolved inputs, data, reference data)."""
        inputs = self.resolve_inputs(**inputs)
        table = open_table(table)
        if features is None:
            features = self.resolve_features(None, inputs)
            absent = [name for name in features if name not in column_names(table)]
            if absent:
                raise ConfigurationError(
                    f"method {self.method!r} trains by default on {', '.join(features)}; the table has no "
                    f"{', '.join(absent)}: name the features (--features)"
                )
        features = self.resolve_features(features, inputs)
        conditions = self.conditions(inputs)
        overlap = sorted(set(conditions) & set(features))
        if overlap:
            raise ConfigurationError(f"condition column(s) {overlap} (--mass / --context) must not also be features")
        split = {
            "region": region,
            "condition": conditions,
            "signal_region": inputs.get("signal_region"),
            "signal_flag": inputs.get("signal_flag"),
        }
        data = read_training_data(table, features, label=inputs.get("label"), **split)
        if self.cross_trained:
            data = dataclasses.replace(data, fold=self._event_folds(table, data.rows))
        reference = None
        for name in _TABLE_INPUTS:
            if name in inputs:
                reference = read_training_data(inputs[name], features, **split)
        return features, region, inputs, data, reference

    def _fit_data(
        self,
        features: list[str],
        region: str | None,
        inputs: dict[str, Any],
        data: TrainingData,
        reference: TrainingData | None,
        *,
        checkpoint_dir: str | Path | None,
    ) -> Estimator:
        """Steps 4-5 of the fit sequence, on data already read."""
        self._record(features, region, inputs, data, reference)
        self._prepare(data, reference)
        with self._seeded():
            self._build()
            self._train(data, reference, checkpoint_dir)
        return self

    def _record(
        self,
        features: list[str],
        region: str | None,
        inputs: dict[str, Any],
        data: TrainingData,
        reference: TrainingData | None,
    ) -> None:
        """Step 4: the fitted description (features, region, conditions, inputs, rows, table hash)."""
        self.features_, self.region_ = list(features), region
        self.conditions_ = self.conditions(inputs)
        self.inputs_ = {
            name: list(value) if isinstance(value, tuple) else value
            for name, value in inputs.items()
            if name not in _TABLE_INPUTS
        }
        self.rows_ = {"table": data.counts.to_dict()}
        columns = [*features, *self.conditions_, *([inputs["label"]] if "label" in inputs else [])]
        arrays = data.arrays()
        if reference is not None:
            table_input = next(name for name in _TABLE_INPUTS if name in inputs)
            self.rows_[table_input] = reference.counts.to_dict()
            arrays += reference.arrays()
        self.table_hash_ = table_hash(columns, *arrays)
        self.history_ = {}

    def _fold_estimator(self, fold: int) -> Estimator:
        """The empty model of fold ``fold``: same class and hyperparameters, ``folds=1``, seed
        :func:`fold_seed` ``(seed, fold)``."""
        model = type(self)(**{**self.get_params(), "folds": 1, "seed": fold_seed(self.seed, fold)})
        model._fold_label = (fold, self.n_folds)
        return model

    def plan_folds(
        self, table: Table, features: Sequence[str] | None = None, *, region: str | None = None, **inputs: Any
    ) -> FoldPlan:
        """Read ``table`` as :meth:`fit` does, for a cross-trained fit whose folds are trained elsewhere.

        ``estimator.assemble_folds(plan, [estimator.fit_fold(plan, k) for k in range(estimator.n_folds)])``
        is ``estimator.fit(table, features, region=region, **inputs)``; each :meth:`fit_fold` call may run in
        another process (a Dask task: the plan and the unfitted estimator pickle), which is how
        ``coffea-ad search`` trains the folds of every window on a cluster.
        """
        if not self.cross_trained:
            raise ConfigurationError(f"{self.method} with folds={self.n_folds} is not cross-trained: call fit()")
        return FoldPlan(*self._read_inputs(table, features, region, inputs))

    def fit_fold(self, plan: FoldPlan, fold: int, *, checkpoint_dir: str | Path | None = None) -> Estimator:
        """The model of fold ``fold``, fitted on the rows of the other folds of ``plan`` (see :meth:`plan_folds`)."""
        if not 0 <= fold < self.n_folds:
            raise ConfigurationError(f"fold must be in 0..{self.n_folds - 1}, got {fold}")
        held_out = plan.data.fold == fold
        if held_out.all():
            raise ConfigurationError(
                f"every one of the {len(held_out)} training rows falls in fold {fold}: too few events for "
                f"{self.n_folds} folds (give fewer folds, or folds=1)"
            )
        model = self._fold_estimator(fold)
        model._fit_data(
            plan.features, plan.region, plan.inputs, plan.data.subset(~held_out), plan.reference,
            checkpoint_dir=checkpoint_dir,
        )
        logger.info(
            "%s fold %d/%d: trained on %d rows, %d held out",
            self.method, fold, self.n_folds, int((~held_out).sum()), int(held_out.sum()),
        )
        return model

    def assemble_folds(self, plan: FoldPlan, models: Sequence[Estimator]) -> Estimator:
        """Make this estimator the cross-trained model of ``plan`` from its fold models (``models[k]`` from
        :meth:`fit_fold` ``(plan, k)``): the description of the whole table, the fold models, their rows and
        histories. Returns self."""
        if len(models) != self.n_folds:
            raise ConfigurationError(f"{self.method} has {self.n_folds} folds, got {len(models)} fold model(s)")
        self._record(plan.features, plan.region, plan.inputs, plan.data, plan.reference)
        self.fold_models_, self.fold_rows_ = list(models), []
        for fold, model in enumerate(models):
            if not isinstance(model, type(self)) or model.seed != fold_seed(self.seed, fold):
                raise ConfigurationError(f"fold model {fold} is not the fold-{fold} model of this {self.method}")
            self.history_.update({f"fold{fold}/{name}": history for name, history in model.history_.items()})
            n_held_out = int((plan.data.fold == fold).sum())
            n_rows = len(plan.data.fold)
            self.fold_rows_.append(
                {"fold": fold, "seed": model.seed, "held_out": n_held_out, "trained_on": n_rows - n_held_out}
            )
        return self

    def _fit_folds(self, *read: Any, checkpoint_dir: str | Path | None) -> Estimator:
        """Cross-training in this process: model ``k`` fitted on the rows of the other folds
        (``fold_models_[k]``), checkpoints under ``checkpoint_dir/fold{k}``."""
        plan = FoldPlan(*read)
        folders = [None if checkpoint_dir is None else Path(checkpoint_dir) / f"fold{k}" for k in range(self.n_folds)]
        models = [self.fit_fold(plan, fold, checkpoint_dir=folders[fold]) for fold in range(self.n_folds)]
        return self.assemble_folds(plan, models)

    # ---- hooks ------------------------------------------------------------------------------------
    def _prepare(self, data: TrainingData, reference: TrainingData | None) -> None:
        """Check the data and set fitted attributes known before training (default: nothing)."""

    def _build(self) -> None:
        """Create the empty modules from hyperparameters and fitted attributes (used by fit and load)."""
        raise NotImplementedError

    def _train(self, data: TrainingData, reference: TrainingData | None, checkpoint_dir: str | Path | None) -> None:
        """Train the networks on ``data`` (and the ``background`` / ``simulation`` ``reference``)."""
        raise NotImplementedError

    def _modules(self) -> dict[str, nn.Module]:
        """The modules whose ``state_dict`` holds the fitted weights, by name."""
        raise NotImplementedError

    def _scoring_module(self) -> nn.Module:
        """Torch module from the raw input columns ``[N, len(input_columns)]`` to the score ``[N]``."""
        raise NotImplementedError

    # ---- shared pieces of training ----------------------------------------------------------------
    @property
    def torch_device(self) -> torch.device:
        """The torch device this estimator trains and scores on (``device="auto"`` resolved)."""
        return resolve_device(self.device)

    @contextlib.contextmanager
    def _seeded(self) -> Iterator[None]:
        """Run a block with torch's global generators seeded from ``seed``, restoring them afterwards."""
        devices = [self.torch_device] if self.torch_device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed)
            yield

    def _split(self, n: int, network: str, salt: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Deterministic (train, validation) index split of ``n`` events with ``network``'s validation fraction."""
        order = np.random.default_rng([self.seed, salt]).permutation(n)
        n_val = max(1, int(round(self.training[network].validation_fraction * n)))
        if n - n_val < 1:
            raise ConfigurationError(f"{n} event(s) are too few to split into training and validation")
        return order[n_val:], order[:n_val]

    def _tensors(self, *arrays: np.ndarray) -> list[torch.Tensor]:
        return [torch.as_tensor(array, dtype=torch.float32, device=self.torch_device) for array in arrays]

    def _run_id(self, name: str, shapes: Sequence[tuple[int, ...]]) -> str:
        """What changes the result identifies a training run; the device and the progress bars do not."""
        params = {key: value for key, value in self._params_json().items() if key != "device"}
        params["training"] = {
            network: {k: v for k, v in settings.items() if k != "progress"}
            for network, settings in params["training"].items()
        }
        return fingerprint(type(self).__name__, params, name, list(shapes), self.table_hash_)

    def _train_network(
        self,
        network: str,
        module: nn.Module,
        loss,
        arrays: Sequence[np.ndarray],
        *,
        checkpoint_dir: str | Path | None,
        name: str | None = None,
        salt: int = 0,
    ) -> TrainingResult:
        """Train one network with the settings ``training[network]``; record ``history_[name]``.

        ``arrays`` (equal lengths) are split into training and validation rows (seeded by ``salt``);
        ``module.fit_preprocessing(*training_arrays)`` fits its preprocessing on the training rows; the
        shared loop trains it on the estimator's device, checkpointing to ``checkpoint_dir/{name}.pt``.
        The module ends on the CPU in eval mode, holding its best epoch. ``name`` defaults to ``network``.
        """
        name = name or network
        settings = self.training[network]
        train, val = self._split(len(arrays[0]), network, salt)
        module.fit_preprocessing(*[array[train] for array in arrays])
        module.to(self.torch_device)
        checkpoint = None
        if checkpoint_dir is not None:
            Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
            checkpoint = Path(checkpoint_dir) / f"{name}.pt"
        result = train_module(
            module,
            loss,
            self._tensors(*[array[train] for array in arrays]),
            self._tensors(*[array[val] for array in arrays]),
            epochs=settings.epochs,
            batch_size=settings.batch_size,
            learning_rate=settings.learning_rate,
            weight_decay=settings.weight_decay,
            patience=settings.patience,
            keep_best=settings.keep_best,
            seed=self.seed,
            checkpoint=checkpoint,
            run_id=self._run_id(name, [array[train].shape for array in arrays]),
            progress=settings.progress,
            description=self._progress_label(name),
        )
        module.cpu().eval()
        self.history_[name] = result.summary()
        return result

    def _progress_label(self, name: str) -> str:
        """The label of the progress bar of network ``name`` (with the fold of a fold model)."""
        if self._fold_label is None:
            return f"{self.method} {name}"
        fold, n_folds = self._fold_label
        return f"{self.method} {name} fold {fold}/{n_folds}"

    def _check_fitted(self) -> None:
        if not hasattr(self, "features_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit() or load() first")

    @property
    def input_columns(self) -> list[str]:
        """The table columns the score (and the ONNX input ``features``) reads, in order: the features, then
        the resonant variable for methods whose score is conditioned on it (LaCATHODE, ANODE)."""
        self._check_fitted()
        return [*self.features_, *self.conditions_] if self._score_reads_condition else list(self.features_)

    # ---- scoring ----------------------------------------------------------------------------------
    def scoring_module(self) -> nn.Module:
        """Torch module from the raw input columns ``[N, len(input_columns)]`` to the score ``[N]``; for a
        cross-trained estimator ``(features [N, F], fold [N] int64) -> score [N]``, each row scored by the
        model of its fold."""
        self._check_fitted()
        if self.cross_trained:
            return _FoldSelect([model.scoring_module() for model in self.fold_models_]).eval()
        return self._scoring_module()

    def score_array(self, x: np.ndarray, fold: np.ndarray | None = None, batch_size: int = 65536) -> np.ndarray:
        """Score a float matrix whose columns are :attr:`input_columns` (higher = more anomalous). A
        cross-trained estimator needs ``fold``, the fold of each row
        (:func:`coffea_ad.features.folds.event_fold` of its run, luminosityBlock and event)."""
        self._check_fitted()
        source = f"{type(self).__name__}.score_array"
        if self.cross_trained:
            if fold is None:
                raise ConfigurationError(
                    f"{source}: this model is cross-trained ({self.n_folds} folds): give the fold of each row "
                    f"(coffea_ad.features.folds.event_fold), or score a table with run, luminosityBlock, event"
                )
            fold = check_folds(fold, len(x), self.n_folds, source)
        elif fold is not None:
            raise ConfigurationError(f"{source}: this model is not cross-trained: it takes no fold")
        module = self.scoring_module().to(self.torch_device).eval()
        scores = []
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                batch = [torch.tensor(x[start : start + batch_size], dtype=torch.float32, device=self.torch_device)]
                if fold is not None:
                    batch.append(torch.as_tensor(fold[start : start + batch_size], device=self.torch_device))
                scores.append(module(*batch).cpu().numpy())
        return np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32)

    def score(self, table: Table) -> np.ndarray:
        """One anomaly score per row of ``table``; higher = more anomalous. A row lacking a value raises
        (select complete rows first, e.g. with :func:`coffea_ad.processing.tables.complete_rows`). A
        cross-trained estimator scores each row with the model of its fold, from the table's ``run``,
        ``luminosityBlock`` and ``event``."""
        table = open_table(table)
        fold = self._event_folds(table) if self.cross_trained else None
        return self.score_array(feature_matrix(table, self.input_columns), fold)

    # ---- export -----------------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        """What the ONNX file and ``summary.json`` record about this model."""
        self._check_fitted()
        return {
            "method": self.method,
            "region": self.region_,
            "inputs": self.inputs_,
            "training_table_hash": self.table_hash_,
            "folds": self.n_folds,
            "params": self._params_json(),
        }

    def export_onnx(self, path: str | Path) -> Path:
        """Write the ONNX graph (preprocessing + score) with its metadata to ``path``; return the path."""
        self._check_fitted()
        return self.export_module(self.scoring_module(), path)

    def export_module(self, module: nn.Module, path: str | Path, extra: Mapping[str, str] | None = None) -> Path:
        """Write ``module`` (this estimator's inputs to one score, e.g. an ensemble's mean) to ONNX at ``path``
        with this estimator's metadata, and ``extra`` metadata entries."""
        from coffea_ad.onnx.export import export_module

        meta = self.metadata()
        return export_module(
            module.to("cpu").eval(),
            path,
            feature_names=self.input_columns,
            method=self.method,
            region=meta["region"],
            training_table_hash=meta["training_table_hash"],
            n_folds=self.n_folds if self.cross_trained else 0,
            extra={"params": json.dumps(meta["params"]), **(extra or {})},
        )

    # ---- persistence ------------------------------------------------------------------------------
    def _fitted_json(self) -> dict[str, Any]:
        names = (
            "features_", "region_", "conditions_", "inputs_", "rows_", "table_hash_", "history_",
            *(("fold_rows_",) if self.cross_trained else self._fitted_attributes),
        )
        return {name: getattr(self, name) for name in names}

    def _states(self) -> dict[str, dict[str, torch.Tensor]]:
        """The weights by module name (``fold{k}/{name}`` for the fold models of a cross-trained estimator)."""
        if self.cross_trained:
            return {
                f"fold{fold}/{name}": state
                for fold, model in enumerate(self.fold_models_)
                for name, state in model._states().items()
            }
        return {name: {k: v.detach().cpu() for k, v in m.state_dict().items()} for name, m in self._modules().items()}

    def _restore(self, fitted: Mapping[str, Any], states: Mapping[str, Any], prefix: str = "") -> None:
        """Set the fitted attributes, build the modules and load their weights (those under ``prefix``)."""
        for name, value in fitted.items():
            setattr(self, name, value)
        self._build()
        for name, module in self._modules().items():
            module.load_state_dict(states[prefix + name])
            module.eval()

    def save(self, folder: str | Path) -> Path:
        """Save hyperparameters and fitted attributes (JSON) and weights (tensors only) to ``folder``."""
        self._check_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        config = {
            "class": type(self).__name__,
            "method": self.method,
            "coffea_ad_version": __version__,
            "params": self._params_json(),
            "fitted": self._fitted_json(),
        }
        if self.cross_trained:
            config["fold_models"] = [model._fitted_json() for model in self.fold_models_]
        with atomic_output(folder / _STATE_FILE) as tmp:
            torch.save(self._states(), tmp)
        write_json(folder / _CONFIG_FILE, config)
        logger.info("saved %s to %s", type(self).__name__, folder)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Estimator:
        """Load an estimator saved by :meth:`save` (any subclass when called on :class:`Estimator`)."""
        from coffea_ad.models import METHODS, get_estimator

        folder = Path(folder)
        try:
            config = json.loads((folder / _CONFIG_FILE).read_text())
            states = torch.load(folder / _STATE_FILE, map_location="cpu", weights_only=True)
        except FileNotFoundError as error:
            raise InputFileError(f"{folder} holds no saved coffea_ad model: {error.filename} is missing") from error
        except Exception as error:  # malformed JSON or a tensor file torch refuses
            raise InputFileError(f"cannot load the model saved in {folder}: {error}") from error
        method = config.get("method")
        if method not in METHODS:
            raise InputFileError(f"{folder} holds an unknown method {method!r}")
        estimator_class = get_estimator(method)
        if cls is not Estimator and not issubclass(estimator_class, cls):
            raise InputFileError(f"{folder} holds a {estimator_class.__name__}, not a {cls.__name__}")
        estimator = estimator_class(**config["params"])
        if not estimator.cross_trained:
            estimator._restore(config["fitted"], states)
            return estimator
        fold_models = config.get("fold_models", [])
        if len(fold_models) != estimator.n_folds:
            raise InputFileError(
                f"{folder} holds a {estimator.n_folds}-fold {method} with {len(fold_models)} fold model(s)"
            )
        for name, value in config["fitted"].items():
            setattr(estimator, name, value)
        estimator.fold_models_ = []
        for fold, fitted in enumerate(fold_models):
            model = estimator._fold_estimator(fold)
            model._restore(fitted, states, prefix=f"fold{fold}/")
            estimator.fold_models_.append(model)
        return estimator

    def summary(self) -> dict[str, Any]:
        """JSON-ready description: method, parameters, inputs, features, region, rows read / dropped / used, the
        folds (number, recipe and, per fold, the rows held out and trained on), losses and validation metrics."""
        self._check_fitted()
        summary = {
            **self.metadata(),
            "features": self.input_columns,
            "coffea_ad_version": __version__,
            "rows": self.rows_,
            "history": self.history_,
        }
        if self.cross_trained:
            summary["fold_hash"] = FOLD_HASH
            summary["fold_rows"] = self.fold_rows_
        return summary
