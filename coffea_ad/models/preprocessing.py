"""Preprocessing as a torch module that carries its log-Jacobian.

Each feature goes through an optional monotonic transform (``log`` or ``logit``) and is then standardised.
The module returns the transformed features and ``log |det J|`` per event, so that a density learned in
the transformed space gives the correct density of the raw features:
``log p_x(x) = log p_z(T(x)) + log |det dT/dx|``. It is exported inside every ONNX graph, so that the
ONNX model takes the raw feature columns.

References:
    Hallin et al., "Classifying anomalies through outer density estimation" (CATHODE), arXiv:2109.00546
    (logit preprocessing of bounded features before a flow).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from coffea_ad.errors import ConfigurationError

__all__ = ["TRANSFORMS", "Preprocessor"]

TRANSFORMS = ("none", "log", "logit")
"""The per-feature transforms: identity, ``log(x)`` (x > 0) and ``logit(x)`` (0 < x < 1)."""

_EPSILON = 1e-6


class Preprocessor(nn.Module):
    """Per-feature log/logit transform followed by standardisation, with its log-Jacobian.

    Arguments:
        n_features: number of input columns.
        transforms: one of :data:`TRANSFORMS` per column (default: ``"none"`` for all).

    Call :meth:`fit` on the training matrix before use; the fitted means and widths are buffers, so they are
    saved with ``state_dict`` and exported to ONNX.

    Example:
        >>> pre = Preprocessor(2, ["log", "none"]).fit(np.array([[1.0, 0.0], [10.0, 2.0]]))
        >>> z, log_det = pre(torch.tensor([[3.0, 1.0]]))
    """

    def __init__(self, n_features: int, transforms: Sequence[str] | None = None) -> None:
        super().__init__()
        transforms = list(transforms) if transforms is not None else ["none"] * n_features
        if len(transforms) != n_features:
            raise ConfigurationError(f"expected {n_features} transforms, got {len(transforms)}: {transforms}")
        unknown = sorted(set(transforms) - set(TRANSFORMS))
        if unknown:
            raise ConfigurationError(f"unknown transform(s) {unknown}; valid ones: {', '.join(TRANSFORMS)}")
        self.transforms = transforms
        codes = torch.tensor([TRANSFORMS.index(name) for name in transforms], dtype=torch.int64)
        self.register_buffer("is_log", codes == 1)
        self.register_buffer("is_logit", codes == 2)
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("scale", torch.ones(n_features))

    @staticmethod
    def resolve(features: Sequence[str], transforms: Mapping[str, str] | None) -> list[str]:
        """Turn a ``{column: transform}`` mapping into one transform per feature, refusing unknown columns."""
        transforms = dict(transforms or {})
        unknown = sorted(set(transforms) - set(features))
        if unknown:
            raise ConfigurationError(f"transforms name column(s) {unknown} that are not features {list(features)}")
        return [transforms.get(name, "none") for name in features]

    def _transform(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The log/logit step alone: (y, per-column log-derivative)."""
        x_log = torch.clamp(x, min=_EPSILON)
        u = torch.clamp(x, min=_EPSILON, max=1.0 - _EPSILON)
        y = torch.where(self.is_log, torch.log(x_log), torch.where(self.is_logit, torch.log(u) - torch.log1p(-u), x))
        dy = torch.where(
            self.is_log,
            -torch.log(x_log),
            torch.where(self.is_logit, -torch.log(u) - torch.log1p(-u), torch.zeros_like(x)),
        )
        return y, dy

    def fit(self, x: np.ndarray) -> Preprocessor:
        """Check the transforms' domains and set the standardisation from the training matrix ``x``."""
        for column, name in enumerate(self.transforms):
            values = x[:, column]
            if name == "log" and (values <= 0).any():
                bad = (values <= 0).sum()
                raise ConfigurationError(f"log transform of column {column} needs x > 0; {bad} row(s) are not")
            if name == "logit" and ((values <= 0) | (values >= 1)).any():
                bad = ((values <= 0) | (values >= 1)).sum()
                raise ConfigurationError(f"logit transform of column {column} needs 0 < x < 1; {bad} row(s) are not")
        with torch.no_grad():
            y, _ = self._transform(torch.as_tensor(x, dtype=torch.float32, device=self.mean.device))
            y = y.double()
            self.mean.copy_(y.mean(dim=0).float())
            std = y.std(dim=0).float() if len(y) > 1 else torch.ones_like(self.scale)
            self.scale.copy_(torch.where(std > 0, std, torch.ones_like(std)))
        return self

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """Raw features from preprocessed ones (used to turn flow samples into table-like rows)."""
        y = z * self.scale + self.mean
        return torch.where(self.is_log, torch.exp(y), torch.where(self.is_logit, torch.sigmoid(y), y))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(z, log_det)``: the preprocessed features ``[N, F]`` and ``log |det dz/dx|`` ``[N]``."""
        y, dy = self._transform(x)
        z = (y - self.mean) / self.scale
        log_det = dy.sum(dim=-1) - torch.log(self.scale).sum()
        return z, log_det
