"""Anomaly-detection estimators (torch, zuko, scikit-learn; the ``[train]`` extra).

Every estimator follows one contract: hyperparameters in ``__init__``, ``fit(table, features, ...)``
returning ``self``, ``score(table)`` (higher = more anomalous), ``save``/``load`` and ``export_onnx``.
:data:`ESTIMATORS` maps each method name of ``coffea-ad train`` to its class.
"""

from __future__ import annotations

from coffea_ad.errors import ConfigurationError
from coffea_ad.models.base import Estimator, NotFittedError, Training
from coffea_ad.models.cathode import ANODE, CATHODE, LaCATHODE
from coffea_ad.models.flows import MAF, NormalizingFlow, RealNVP
from coffea_ad.models.outlier import AutoEncoder, VariationalAutoEncoder
from coffea_ad.models.weak import BDT, ClassifierMethod, CWoLa, IdealizedAD, Supervised

__all__ = [
    "ESTIMATORS",
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
    "ANODE",
    "IdealizedAD",
    "Supervised",
    "get_estimator",
]

ESTIMATORS: dict[str, type[Estimator]] = {
    cls.method: cls
    for cls in (
        AutoEncoder,
        VariationalAutoEncoder,
        RealNVP,
        MAF,
        CWoLa,
        CATHODE,
        LaCATHODE,
        ANODE,
        IdealizedAD,
        Supervised,
        BDT,
    )
}
"""Method name -> estimator class."""


def get_estimator(method: str) -> type[Estimator]:
    """The estimator class of ``method``; an unknown name raises, listing the valid ones."""
    try:
        return ESTIMATORS[method]
    except KeyError:
        raise ConfigurationError(f"unknown method {method!r}; valid methods: {', '.join(ESTIMATORS)}") from None
