"""Anomaly-detection estimators (torch, zuko, scikit-learn; the ``[train]`` extra).

Every estimator follows one contract (:mod:`coffea_ad.models.base`): hyperparameters in ``__init__``,
``fit(table, features=None, **inputs)`` returning ``self`` (the sequence written once in the base class),
``score(table)`` (higher = more anomalous), ``save``/``load`` and ``export_onnx``. :data:`METHODS` maps each
method name of ``coffea-ad train`` to its class: adding a method is one class plus one entry here. The
classes are imported on first use, so that ``import coffea_ad.models`` alone (e.g. to list the methods)
does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from coffea_ad.errors import ConfigurationError

if TYPE_CHECKING:
    from coffea_ad.models.base import Estimator

__all__ = [
    "METHODS",
    "get_estimator",
    "Estimator",
    "NotFittedError",
    "Training",
    "AutoEncoder",
    "VariationalAutoEncoder",
    "NormalizingFlow",
    "RealNVP",
    "MAF",
    "ClassifierMethod",
    "CWoLa",
    "BDT",
    "CATHODE",
    "LaCATHODE",
    "CURTAINs",
    "ANODE",
    "RANODE",
    "IdealizedAD",
    "Supervised",
    "SALAD",
    "Reweight",
    "Generate",
    "Morph",
    "FETA",
]

METHODS: dict[str, str] = {
    "autoencoder": "outlier:AutoEncoder",
    "vae": "outlier:VariationalAutoEncoder",
    "realnvp": "flows:RealNVP",
    "maf": "flows:MAF",
    "cwola": "weak:CWoLa",
    "bdt": "weak:BDT",
    "cathode": "cathode:CATHODE",
    "lacathode": "cathode:LaCATHODE",
    "curtains": "cathode:CURTAINs",
    "anode": "cathode:ANODE",
    "ranode": "cathode:RANODE",
    "iad": "weak:IdealizedAD",
    "supervised": "weak:Supervised",
    "salad": "reweighting:SALAD",
    "reweight": "reweighting:Reweight",
    "generate": "cathode:Generate",
    "morph": "cathode:Morph",
    "feta": "cathode:FETA",
}
"""Method name -> ``module:Class`` inside :mod:`coffea_ad.models`."""

_OTHER_NAMES = {
    "Estimator": "base",
    "NotFittedError": "base",
    "Training": "base",
    "NormalizingFlow": "flows",
    "ClassifierMethod": "weak",
}


def get_estimator(method: str) -> type[Estimator]:
    """The estimator class of ``method``; an unknown name raises, listing the valid ones."""
    if method not in METHODS:
        raise ConfigurationError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
    module, name = METHODS[method].split(":")
    return getattr(importlib.import_module(f"coffea_ad.models.{module}"), name)


def __getattr__(name: str):
    for method, target in METHODS.items():
        if target.endswith(f":{name}"):
            return get_estimator(method)
    if name in _OTHER_NAMES:
        return getattr(importlib.import_module(f"coffea_ad.models.{_OTHER_NAMES[name]}"), name)
    raise AttributeError(f"module 'coffea_ad.models' has no attribute {name!r}")
