"""The estimator contract every coffea_ad model follows.

Hyperparameters are stored by ``__init__`` and nothing else happens there; ``fit(table, features, ...)``
returns ``self``; ``score(table)`` returns one float per row, higher = more anomalous, for every method;
``scoring_module()`` is the torch module from raw feature columns to that score, which ``export_onnx``
writes to ONNX with its preprocessing inside; ``save``/``load`` use JSON for hyperparameters and fitted
attributes and ``torch.load(weights_only=True)`` for tensors, so loading never unpickles arbitrary objects.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from coffea_ad import __version__
from coffea_ad.errors import ConfigurationError, InputFileError
from coffea_ad.models.data import Table, feature_matrix, open_table, region_mask, table_hash
from coffea_ad.models.training import TrainingResult, fingerprint, resolve_device, train_module
from coffea_ad.paths import atomic_output, write_json

__all__ = ["Training", "Estimator", "NotFittedError"]

logger = logging.getLogger(__name__)

_STATE_FILE = "weights.pt"
_CONFIG_FILE = "estimator.json"


class NotFittedError(ConfigurationError):
    """An estimator was used before ``fit`` (or ``load``)."""


@dataclass(frozen=True)
class Training:
    """Settings of the shared training loop (:func:`coffea_ad.models.training.train_module`).

    Arguments:
        epochs: maximum number of epochs.
        batch_size: events per mini-batch.
        learning_rate: Adam learning rate.
        weight_decay: Adam weight decay.
        patience: stop after this many epochs without a better validation loss (``None``: never).
        validation_fraction: fraction of the training events held out for validation and early stopping.
        keep_best: number of best epochs kept; classifiers average them (an ensemble of best epochs).
        progress: show a tqdm bar per epoch.
    """

    epochs: int = 100
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    patience: int | None = 10
    validation_fraction: float = 0.2
    keep_best: int = 1
    progress: bool = True

    @classmethod
    def coerce(cls, value: Training | dict | None) -> Training:
        """Accept a :class:`Training`, a dict of its fields, or ``None`` (defaults)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            unknown = sorted(set(value) - {field.name for field in dataclasses.fields(cls)})
            if unknown:
                valid = ", ".join(field.name for field in dataclasses.fields(cls))
                raise ConfigurationError(f"unknown training setting(s) {unknown}; valid ones: {valid}")
            return cls(**value)
        raise ConfigurationError(f"training must be a Training or a dict, got {type(value).__name__}")


class Estimator:
    """Base class: the shared fit/score/save/load/export machinery of every coffea_ad estimator.

    Subclasses define :attr:`method`, an ``__init__`` that stores its arguments under the same names,
    :meth:`_fit` (training), :meth:`_build` (empty modules from hyperparameters and fitted shapes), and
    :meth:`scoring_module`. Fitted attributes end in ``_`` and must be JSON-serialisable.
    """

    method: ClassVar[str]
    _fitted_attributes: ClassVar[tuple[str, ...]] = ()
    _score_reads_mass: ClassVar[bool] = False

    def __init__(self, *, training: Training | dict | None = None, seed: int = 0, device: str = "cpu") -> None:
        self.training = Training.coerce(training)
        self.seed = seed
        self.device = device

    # ---- parameters -------------------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        """The constructor arguments of this estimator (scikit-learn convention)."""
        names = [name for name in inspect.signature(type(self).__init__).parameters if name != "self"]
        return {name: getattr(self, name) for name in names}

    def _params_json(self) -> dict[str, Any]:
        params = self.get_params()
        return {k: dataclasses.asdict(v) if isinstance(v, Training) else v for k, v in params.items()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"

    # ---- fitting ----------------------------------------------------------------------------------
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

    def _split(self, n: int, salt: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Deterministic (train, validation) index split of ``n`` events."""
        fraction = self.training.validation_fraction
        if not 0.0 < fraction < 1.0:
            raise ConfigurationError(f"validation_fraction must be in (0, 1), got {fraction}")
        order = np.random.default_rng([self.seed, salt]).permutation(n)
        n_val = max(1, int(round(fraction * n)))
        if n - n_val < 1:
            raise ConfigurationError(f"{n} event(s) are too few to split into training and validation")
        return order[n_val:], order[:n_val]

    def _read(self, table: Table, features: Sequence[str], region: str | None) -> np.ndarray:
        """Read and check the training features (inside ``region``); record features, region and table hash."""
        table = open_table(table)
        x = feature_matrix(table, features, rows=region_mask(table, region))
        self.features_, self.region_ = list(features), region
        self.table_hash_ = table_hash(features, x)
        return x

    def _tensors(self, *arrays: np.ndarray) -> list[torch.Tensor]:
        return [torch.as_tensor(array, dtype=torch.float32, device=self.torch_device) for array in arrays]

    def _train(
        self,
        module: nn.Module,
        loss,
        train: Sequence[np.ndarray],
        validation: Sequence[np.ndarray],
        *,
        name: str,
        checkpoint_dir: str | Path | None,
        settings: Training | None = None,
    ) -> TrainingResult:
        """Run the shared training loop on numpy arrays; the checkpoint file is ``checkpoint_dir/name.pt``.

        ``settings`` defaults to the estimator's ``training`` (methods with two networks pass another)."""
        settings = settings or self.training
        checkpoint = None
        if checkpoint_dir is not None:
            Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
            checkpoint = Path(checkpoint_dir) / f"{name}.pt"
        # what changes the result identifies the run; the device and the progress bar do not
        params = {key: value for key, value in self._params_json().items() if key != "device"}
        for key, value in params.items():
            if isinstance(value, dict) and "progress" in value:
                params[key] = {k: v for k, v in value.items() if k != "progress"}
        run_id = fingerprint(type(self).__name__, params, name, [array.shape for array in train], self.table_hash_)
        return train_module(
            module,
            loss,
            self._tensors(*train),
            self._tensors(*validation),
            epochs=settings.epochs,
            batch_size=settings.batch_size,
            learning_rate=settings.learning_rate,
            weight_decay=settings.weight_decay,
            patience=settings.patience,
            keep_best=settings.keep_best,
            seed=self.seed,
            checkpoint=checkpoint,
            run_id=run_id,
            progress=settings.progress,
            description=f"{self.method} {name}",
        )

    def _check_fitted(self) -> None:
        if not hasattr(self, "features_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit() or load() first")

    @property
    def input_columns(self) -> list[str]:
        """The table columns the score (and the ONNX input ``features``) reads, in order: the features, then
        the resonant variable for methods whose score is conditioned on it (LaCATHODE, ANODE)."""
        self._check_fitted()
        return [*self.features_, self.mass_] if self._score_reads_mass else list(self.features_)

    # ---- scoring ----------------------------------------------------------------------------------
    def scoring_module(self) -> nn.Module:
        """Torch module from the raw input columns ``[N, len(input_columns)]`` to the score ``[N]``."""
        raise NotImplementedError

    def score_array(self, x: np.ndarray, batch_size: int = 65536) -> np.ndarray:
        """Score a float matrix whose columns are :attr:`input_columns` (higher = more anomalous)."""
        self._check_fitted()
        module = self.scoring_module().to(self.torch_device).eval()
        scores = []
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                batch = torch.tensor(x[start : start + batch_size], dtype=torch.float32, device=self.torch_device)
                scores.append(module(batch).cpu().numpy())
        return np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32)

    def score(self, table: Table) -> np.ndarray:
        """One anomaly score per row of ``table``; higher = more anomalous."""
        return self.score_array(feature_matrix(open_table(table), self.input_columns))

    # ---- export -----------------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        """What the ONNX file and ``summary.json`` record about this model."""
        self._check_fitted()
        return {
            "method": self.method,
            "region": self.region_,
            "training_table_hash": self.table_hash_,
            "params": self._params_json(),
        }

    def export_onnx(self, path: str | Path) -> Path:
        """Write the ONNX graph (preprocessing + score) with its metadata to ``path``; return the path."""
        from coffea_ad.onnx.export import export_module

        self._check_fitted()
        module = self.scoring_module().to("cpu").eval()
        meta = self.metadata()
        return export_module(
            module,
            path,
            feature_names=self.input_columns,
            method=self.method,
            region=meta["region"],
            training_table_hash=meta["training_table_hash"],
            extra={"params": json.dumps(meta["params"])},
        )

    # ---- persistence ------------------------------------------------------------------------------
    def _modules(self) -> dict[str, nn.Module]:
        """The modules whose ``state_dict`` holds the fitted weights, by name."""
        raise NotImplementedError

    def _build(self) -> None:
        """Create empty modules from hyperparameters and fitted attributes (used by fit and load)."""
        raise NotImplementedError

    def _fitted_json(self) -> dict[str, Any]:
        names = ("features_", "region_", "table_hash_", "history_", *self._fitted_attributes)
        return {name: getattr(self, name) for name in names}

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
        states = {name: {k: v.detach().cpu() for k, v in m.state_dict().items()} for name, m in self._modules().items()}
        with atomic_output(folder / _STATE_FILE) as tmp:
            torch.save(states, tmp)
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
        for name, value in config["fitted"].items():
            setattr(estimator, name, value)
        estimator._build()
        for name, module in estimator._modules().items():
            module.load_state_dict(states[name])
            module.eval()
        return estimator

    def summary(self) -> dict[str, Any]:
        """JSON-ready description: method, parameters, features, region, losses and validation metrics."""
        self._check_fitted()
        return {
            **self.metadata(),
            "features": self.input_columns,
            "coffea_ad_version": __version__,
            "history": self.history_,
        }
