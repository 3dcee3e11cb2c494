"""Outlier detection with autoencoders: trained on background-dominated data, score = how badly an event
is reconstructed (and, for the VAE, how unusual its latent code is).

References:
    Farina, Nakai, Shih, "Searching for New Physics with Deep Autoencoders", arXiv:1808.08992;
    Heimel, Kasieczka, Plehn, Thompson, "QCD or What?", arXiv:1808.08979;
    Kingma, Welling, "Auto-Encoding Variational Bayes", arXiv:1312.6114;
    Cerri et al., "Variational Autoencoders for New Physics Mining at the Large Hadron Collider", arXiv:1811.10276.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import zuko
from torch import nn

from coffea_ad.errors import ConfigurationError
from coffea_ad.models.base import Estimator, Training
from coffea_ad.models.data import TrainingData
from coffea_ad.models.preprocessing import Preprocessor
from coffea_ad.processing.tables import Table, feature_matrix, open_table

__all__ = [
    "AutoEncoder",
    "VariationalAutoEncoder",
    "VAE_SCORES",
    "JET_COMBINATIONS",
    "JET_SUBSTRUCTURE",
    "combine_jet_scores",
]

VAE_SCORES = ("loss", "kl")
"""VAE per-jet scores: the full loss (reconstruction + KL) or the KL term alone."""

JET_COMBINATIONS = {"min": "L1&L2", "max": "L1|L2", "sum": "L1+L2", "product": "L1*L2"}
"""How per-jet VAE scores combine into an event score (names as in arXiv:1811.10276 and its CHEP talk)."""


JET_SUBSTRUCTURE = ("tau21_j1", "tau32_j1", "tau21_j2", "tau32_j2")
"""The autoencoders' default features: the N-subjettiness ratios of the two leading fat jets, jet 1 then jet 2
in the same order (so that ``VariationalAutoEncoder(jets=2)`` learns single jets)."""


def combine_jet_scores(per_jet: np.ndarray, combine: str) -> np.ndarray:
    """Event scores from per-jet scores ``[N, jets]`` (e.g. :meth:`VariationalAutoEncoder.score_jets`).

    ``combine`` is a key of :data:`JET_COMBINATIONS`: ``"min"`` (L1&L2: every jet above a threshold),
    ``"max"`` (L1|L2: any jet above it), ``"sum"`` (L1+L2) or ``"product"``; the same as the event score of a
    ``VariationalAutoEncoder(combine=...)``, so one trained VAE gives every combination.

    References:
        Cerri et al., arXiv:1811.10276 and its CHEP 2019 talk (L1&L2, L1|L2, L1+L2).

    Example:
        >>> combine_jet_scores(np.array([[1.0, 3.0]]), "min")
        array([1.])
    """
    per_jet = np.asarray(per_jet)
    if per_jet.ndim != 2:
        raise ConfigurationError(f"per-jet scores must be a 2-d array [events, jets], got shape {per_jet.shape}")
    operations = {"min": np.min, "max": np.max, "sum": np.sum, "product": np.prod}
    if combine not in operations:
        raise ConfigurationError(f"combine must be one of {', '.join(JET_COMBINATIONS)}, got {combine!r}")
    return operations[combine](per_jet, axis=1)


class _AutoEncoderNet(nn.Module):
    def __init__(self, n_features: int, latent: int, hidden: Sequence[int], variational: bool) -> None:
        super().__init__()
        self.variational = variational
        self.encoder = zuko.nn.MLP(n_features, latent * (2 if variational else 1), tuple(hidden))
        self.decoder = zuko.nn.MLP(latent, n_features, tuple(reversed(hidden)))

    def encode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log-variance) of the latent code (log-variance zero for a plain autoencoder)."""
        code = self.encoder(z)
        if not self.variational:
            return code, torch.zeros_like(code)
        mean, log_var = code.chunk(2, dim=-1)
        return mean, torch.clamp(log_var, -12.0, 12.0)


def _reconstruction_error(net: _AutoEncoderNet, z: torch.Tensor) -> torch.Tensor:
    mean, _ = net.encode(z)
    return ((net.decoder(mean) - z) ** 2).mean(dim=-1)


def _kl_divergence(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    return 0.5 * (mean**2 + log_var.exp() - 1.0 - log_var).sum(dim=-1)


class _TrainingModel(nn.Module):
    """Preprocessing + network, as trained (the VAE loss samples the latent code)."""

    def __init__(self, pre: Preprocessor, net: _AutoEncoderNet, beta: float) -> None:
        super().__init__()
        self.pre = pre
        self.net = net
        self.beta = beta

    def fit_preprocessing(self, x: np.ndarray) -> None:
        """Set the standardisation from the training jets."""
        self.pre.fit(x)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        z, _ = self.pre(x)
        if not self.net.variational:
            return _reconstruction_error(self.net, z).mean()
        mean, log_var = self.net.encode(z)
        code = mean + torch.randn_like(mean) * (0.5 * log_var).exp() if self.training else mean
        reconstruction = ((self.net.decoder(code) - z) ** 2).sum(dim=-1)
        return (reconstruction + self.beta * _kl_divergence(mean, log_var)).mean()


def _model_loss(module: _TrainingModel, batch: Sequence[torch.Tensor]) -> torch.Tensor:
    return module.loss(batch[0])


class _AutoEncoderScore(nn.Module):
    """Raw event features -> event score (deterministic: the latent mean is decoded)."""

    def __init__(self, model: _TrainingModel, n_jets: int, kind: str, combine: str) -> None:
        super().__init__()
        self.model = model
        self.n_jets = n_jets
        self.kind = kind
        self.combine = combine

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        jets = x.reshape(-1, x.shape[-1] // self.n_jets)
        z, _ = self.model.pre(jets)
        net = self.model.net
        mean, log_var = net.encode(z)
        kl = _kl_divergence(mean, log_var)
        if self.kind == "kl":
            per_jet = kl
        elif net.variational:
            per_jet = ((net.decoder(mean) - z) ** 2).sum(dim=-1) + self.model.beta * kl
        else:
            per_jet = ((net.decoder(mean) - z) ** 2).mean(dim=-1)
        per_event = per_jet.reshape(-1, self.n_jets)
        if self.combine == "min":
            return per_event.min(dim=-1).values
        if self.combine == "max":
            return per_event.max(dim=-1).values
        if self.combine == "product":
            return per_event.prod(dim=-1)
        return per_event.sum(dim=-1)


class AutoEncoder(Estimator):
    """Autoencoder; score = mean squared reconstruction error of the standardised features.

    References:
        Farina, Nakai, Shih, arXiv:1808.08992; Heimel, Kasieczka, Plehn, Thompson, arXiv:1808.08979.

    Arguments:
        latent: size of the bottleneck.
        hidden: encoder hidden widths (the decoder mirrors them).
        feature_transforms: ``{column: "log" | "logit"}`` applied before standardisation.
        training: :class:`~coffea_ad.models.base.Training` of the network ``"autoencoder"``.
        folds: cross-training folds (``None``: the method's ``default_folds``; 1: a single model), see
            :mod:`coffea_ad.models.base`.
        seed: random seed (same seed, same model).
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.

    Default features: :data:`JET_SUBSTRUCTURE`. Inputs: none besides ``region``.

    Example:
        >>> ae = AutoEncoder(latent=2, training={"epochs": 5})
        >>> ae.fit(table, ["mj_min", "delta_mj", "tau21_j1", "tau21_j2"])
        >>> scores = ae.score(table)
    """

    method: ClassVar[str] = "autoencoder"
    networks: ClassVar[tuple[str, ...]] = ("autoencoder",)
    default_features: ClassVar[tuple[str, ...]] = JET_SUBSTRUCTURE
    _variational: ClassVar[bool] = False

    def __init__(
        self,
        latent: int = 2,
        hidden: Sequence[int] = (32, 32),
        feature_transforms: Mapping[str, str] | None = None,
        *,
        folds: int | None = None,
        training: Training | dict | None = None,
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        super().__init__(folds=folds, training=training, seed=seed, device=device)
        self.latent = latent
        self.hidden = list(hidden)
        self.feature_transforms = dict(feature_transforms or {})

    @property
    def _n_jets(self) -> int:
        return 1

    @property
    def _kl_weight(self) -> float:
        return 0.0

    def _jet_transforms(self) -> list[str]:
        per_feature = Preprocessor.resolve(self.features_, self.feature_transforms)
        width = len(per_feature) // self._n_jets
        groups = [per_feature[i * width : (i + 1) * width] for i in range(self._n_jets)]
        if any(group != groups[0] for group in groups):
            raise ConfigurationError(f"every jet needs the same feature transforms, got {groups}")
        return groups[0]

    def _build(self) -> None:
        if len(self.features_) % self._n_jets:
            raise ConfigurationError(
                f"{len(self.features_)} features cannot be split into {self._n_jets} jets of equal size"
            )
        width = len(self.features_) // self._n_jets
        net = _AutoEncoderNet(width, self.latent, self.hidden, self._variational)
        self.model_ = _TrainingModel(Preprocessor(width, self._jet_transforms()), net, self._kl_weight)

    def _modules(self) -> dict[str, nn.Module]:
        return {"model": self.model_}

    def _train(self, data: TrainingData, reference: TrainingData | None, checkpoint_dir: str | Path | None) -> None:
        jets = data.x.reshape(-1, data.x.shape[1] // self._n_jets)
        self._train_network("autoencoder", self.model_, _model_loss, [jets], checkpoint_dir=checkpoint_dir)

    def _scoring_module(self) -> nn.Module:
        self._check_fitted()
        return _AutoEncoderScore(self.model_, 1, "reconstruction", "sum").eval()


class VariationalAutoEncoder(AutoEncoder):
    """Variational autoencoder; per-jet score = reconstruction + beta * KL (``score_terms="loss"``) or KL alone
    (``score_terms="kl"``).

    With ``jets=2`` the features are two equal groups (jet 1's columns, then jet 2's in the same order);
    one VAE learns single jets and the event score combines the two jets' scores with ``combine``:
    ``"min"`` (L1&L2: both jets anomalous), ``"max"`` (L1|L2), ``"sum"`` (L1+L2) or ``"product"``.

    References:
        Kingma, Welling, arXiv:1312.6114; Cerri et al., arXiv:1811.10276 (per-jet VAE, L1&L2 / L1|L2 / L1+L2,
        mjj-dependent quantile cut).

    Example:
        >>> vae = VariationalAutoEncoder(jets=2, combine="min", training={"epochs": 5})
        >>> vae.fit(table, ["tau21_j1", "tau32_j1", "tau21_j2", "tau32_j2"]).score(table)
    """

    method: ClassVar[str] = "vae"
    _variational: ClassVar[bool] = True

    def __init__(
        self,
        latent: int = 2,
        hidden: Sequence[int] = (32, 32),
        feature_transforms: Mapping[str, str] | None = None,
        beta: float = 1.0,
        score_terms: str = "loss",
        jets: int = 1,
        combine: str = "min",
        *,
        folds: int | None = None,
        training: Training | dict | None = None,
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        super().__init__(latent, hidden, feature_transforms, folds=folds, training=training, seed=seed, device=device)
        if score_terms not in VAE_SCORES:
            raise ConfigurationError(f"score_terms must be one of {', '.join(VAE_SCORES)}, got {score_terms!r}")
        if combine not in JET_COMBINATIONS:
            raise ConfigurationError(f"combine must be one of {', '.join(JET_COMBINATIONS)}, got {combine!r}")
        if jets < 1:
            raise ConfigurationError(f"jets must be >= 1, got {jets}")
        self.beta = beta
        self.score_terms = score_terms
        self.jets = jets
        self.combine = combine

    @property
    def _n_jets(self) -> int:
        return self.jets

    @property
    def _kl_weight(self) -> float:
        return self.beta

    def _scoring_module(self) -> nn.Module:
        self._check_fitted()
        return _AutoEncoderScore(self.model_, self.jets, self.score_terms, self.combine).eval()

    def score_jets(self, table: Table) -> np.ndarray:
        """Per-jet scores ``[N, jets]`` (before combining into an event score)."""
        self._check_fitted()
        x = feature_matrix(open_table(table), self.input_columns)
        module = _AutoEncoderScore(self.model_, 1, self.score_terms, "sum").eval()
        with torch.no_grad():
            per_jet = module(torch.as_tensor(x.reshape(-1, x.shape[1] // self.jets)))
        return per_jet.numpy().reshape(-1, self.jets)
