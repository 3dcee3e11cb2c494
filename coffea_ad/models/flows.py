"""Normalizing flows (zuko): density estimators whose anomaly score is ``-log p(x)``.

The flows live in the preprocessed space; the score adds the preprocessing log-Jacobian so that it is the
negative log-density of the raw features. Conditional flows ``p(x | c)`` (the building block of CATHODE,
LaCATHODE, ANODE, Generate and Morph, with ``c = mjj`` or ``c = (HT, MET)``) use the same
:class:`ConditionalDensity` module.

References:
    Dinh, Sohl-Dickstein, Bengio, "Density estimation using Real NVP", arXiv:1605.08803;
    Papamakarios, Pavlakou, Murray, "Masked Autoregressive Flow for Density Estimation", arXiv:1705.07057;
    Rozet et al., zuko (https://github.com/probabilists/zuko).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import zuko
from torch import nn
from zuko.flows.coupling import GeneralCouplingTransform

from coffea_ad.errors import ConfigurationError
from coffea_ad.features import FEATURE_SETS
from coffea_ad.models.base import Estimator, Training
from coffea_ad.models.data import TrainingData
from coffea_ad.models.preprocessing import Preprocessor
from coffea_ad.processing.tables import Table

__all__ = [
    "FLOW_TYPES",
    "build_flow",
    "start_at_identity",
    "ConditionalDensity",
    "negative_log_likelihood",
    "NormalizingFlow",
    "RealNVP",
    "MAF",
]

FLOW_TYPES = ("maf", "realnvp")


def build_flow(flow_type: str, features: int, context: int, transforms: int, hidden: Sequence[int]) -> zuko.flows.Flow:
    """A zuko MAF or RealNVP (affine coupling) flow of ``features`` dimensions and ``context`` conditions."""
    if flow_type == "maf":
        return zuko.flows.MAF(features, context, transforms=transforms, hidden_features=tuple(hidden))
    if flow_type == "realnvp":
        if features < 2:
            raise ConfigurationError("a RealNVP coupling flow needs at least two features; use MAF for one")
        return zuko.flows.RealNVP(features, context, transforms=transforms, hidden_features=tuple(hidden))
    raise ConfigurationError(f"unknown flow type {flow_type!r}; valid ones: {', '.join(FLOW_TYPES)}")


def start_at_identity(transform: nn.Module) -> nn.Module:
    """Make a zuko flow's transform (``flow.transform``) the identity before training: the last layer of each
    autoregressive or coupling network is zeroed (shift 0, log-scale 0). A transport between two nearly equal
    distributions then starts where it should end up, instead of at a random map it must first unlearn."""
    for lazy in transform.transforms:
        hyper = getattr(lazy, "hyper", None)
        if hyper is None:
            continue
        last = [module for module in hyper.modules() if isinstance(module, nn.Linear)][-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
    return transform


def _pad(x: torch.Tensor) -> torch.Tensor:
    """Append one row of ones: zuko's masked networks reshape with ``-1``, which an empty batch cannot
    resolve in ONNX Runtime; the padded row is dropped again from the result."""
    return torch.cat([x, x.new_ones((1, x.shape[-1]))], dim=0)


class ConditionalDensity(nn.Module):
    """``log p(x | c)`` of raw features: preprocessing (with its log-Jacobian) + a zuko flow.

    ``c`` is preprocessed by its own standardisation (no Jacobian: the density is in ``x`` only).
    """

    def __init__(self, flow: zuko.flows.Flow, pre_x: Preprocessor, pre_c: Preprocessor | None) -> None:
        super().__init__()
        self.flow = flow
        self.pre_x = pre_x
        self.pre_c = pre_c

    def fit_preprocessing(self, x: np.ndarray, c: np.ndarray | None = None) -> None:
        """Set the standardisations of ``x`` and of the context ``c`` from the training rows."""
        self.pre_x.fit(x)
        if self.pre_c is not None and c is not None:
            self.pre_c.fit(c)

    def context(self, c: torch.Tensor | None) -> torch.Tensor | None:
        """The preprocessed context (``None`` for an unconditional flow)."""
        return None if self.pre_c is None or c is None else self.pre_c(c)[0]

    def _latent_and_log_det(self, x: torch.Tensor, c: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        z, log_det = self.pre_x(x)
        context = self.context(c)
        for lazy in self.flow.transform.transforms:
            if isinstance(lazy, GeneralCouplingTransform):
                # zuko merges the two halves by in-place index assignment, which the TorchScript-based ONNX
                # exporter mistranslates; a concatenation and a fixed permutation give the same result.
                idx_a = lazy.mask.nonzero().squeeze(-1).tolist()
                idx_b = (~lazy.mask).nonzero().squeeze(-1).tolist()
                inverse = torch.argsort(torch.tensor(idx_a + idx_b)).tolist()
                y_b, ladj = lazy.meta(context, z[..., idx_a]).call_and_ladj(z[..., idx_b])
                z = torch.cat([z[..., idx_a], y_b], dim=-1)[..., inverse]
            else:
                z, ladj = lazy(context).call_and_ladj(z)
            log_det = log_det + ladj
        return z, log_det

    def log_prob(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """``log p(x | c)`` per event, including the preprocessing log-Jacobian."""
        x, c = _pad(x), None if c is None else _pad(c)
        z, log_det = self._latent_and_log_det(x, c)
        return (self.flow.base(None).log_prob(z) + log_det)[:-1]

    def latent(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """The flow's latent (standard normal) coordinates of ``x`` given ``c``."""
        x, c = _pad(x), None if c is None else _pad(c)
        return self._latent_and_log_det(x, c)[0][:-1]

    def sample_preprocessed(self, c: torch.Tensor) -> torch.Tensor:
        """One sample per row of ``c``, in the preprocessed space of ``x``."""
        return self.flow(self.context(c)).sample()


def negative_log_likelihood(module: ConditionalDensity, batch: Sequence[torch.Tensor]) -> torch.Tensor:
    """Training loss of a density: mean ``-log p(x | c)``; ``batch`` is ``(x,)`` or ``(x, c)``."""
    return -module.log_prob(batch[0], batch[1] if len(batch) > 1 else None).mean()


class _NegativeLogDensity(nn.Module):
    def __init__(self, density: ConditionalDensity) -> None:
        super().__init__()
        self.density = density

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -self.density.log_prob(x)


class NormalizingFlow(Estimator):
    """Outlier detection with a normalizing flow: score = ``-log p(x)`` of the raw features.

    Use :class:`RealNVP` or :class:`MAF`; they differ only in :attr:`flow_type`.

    References:
        Dinh et al., arXiv:1605.08803 (RealNVP); Papamakarios et al., arXiv:1705.07057 (MAF).

    Arguments:
        transforms: number of autoregressive / coupling transforms.
        hidden: hidden layer widths of each transform's network.
        feature_transforms: ``{column: "log" | "logit"}`` applied before standardisation.
        training: :class:`~coffea_ad.models.base.Training` of the network ``"flow"``.
        folds: cross-training folds (``None``: the method's ``default_folds``; 1: a single model), see
            :mod:`coffea_ad.models.base`.
        seed: random seed (same seed, same model).
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.

    Default features: the LHC Olympics set (``mj_min, delta_mj, tau21_j1, tau21_j2``). Inputs: none besides
    ``region``.

    Example:
        >>> flow = MAF(training={"epochs": 5}).fit(table, ["mj_min", "delta_mj", "tau21_j1", "tau21_j2"])
        >>> scores = flow.score(table)
    """

    method: ClassVar[str]
    flow_type: ClassVar[str]
    networks: ClassVar[tuple[str, ...]] = ("flow",)
    default_features: ClassVar[tuple[str, ...]] = tuple(name for name in FEATURE_SETS["lhco"] if name != "mjj")

    def __init__(
        self,
        transforms: int = 5,
        hidden: Sequence[int] = (64, 64),
        feature_transforms: Mapping[str, str] | None = None,
        *,
        folds: int | None = None,
        training: Training | dict | None = None,
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        super().__init__(folds=folds, training=training, seed=seed, device=device)
        self.transforms = transforms
        self.hidden = list(hidden)
        self.feature_transforms = dict(feature_transforms or {})

    def _build(self) -> None:
        n = len(self.features_)
        flow = build_flow(self.flow_type, n, 0, self.transforms, self.hidden)
        pre = Preprocessor(n, Preprocessor.resolve(self.features_, self.feature_transforms))
        self.density_ = ConditionalDensity(flow, pre, None)

    def _modules(self) -> dict[str, nn.Module]:
        return {"density": self.density_}

    def _train(self, data: TrainingData, reference: TrainingData | None, checkpoint_dir: str | Path | None) -> None:
        self._train_network("flow", self.density_, negative_log_likelihood, [data.x], checkpoint_dir=checkpoint_dir)

    def _scoring_module(self) -> nn.Module:
        self._check_fitted()
        return _NegativeLogDensity(self.density_).eval()

    def log_prob(self, table: Table) -> np.ndarray:
        """``log p(x)`` of the raw features of every row (the negative of :meth:`score`)."""
        return -self.score(table)


class RealNVP(NormalizingFlow):
    """Normalizing flow of affine coupling layers (RealNVP); score = ``-log p(x)``.

    References:
        Dinh, Sohl-Dickstein, Bengio, "Density estimation using Real NVP", arXiv:1605.08803.
    """

    method: ClassVar[str] = "realnvp"
    flow_type: ClassVar[str] = "realnvp"


class MAF(NormalizingFlow):
    """Masked autoregressive flow; score = ``-log p(x)``.

    References:
        Papamakarios, Pavlakou, Murray, "Masked Autoregressive Flow for Density Estimation", arXiv:1705.07057.
    """

    method: ClassVar[str] = "maf"
    flow_type: ClassVar[str] = "maf"
