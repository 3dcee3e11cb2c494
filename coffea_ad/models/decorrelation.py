"""Keeping a score from sculpting the resonant variable during training: the DisCo penalty.

:func:`distance_correlation` is added to a classifier loss on background events (``Supervised(disco=...)``)
so that the score becomes independent of ``mjj``. The other remedy, a cut that depends on ``mjj``, is a
selection: :class:`coffea_ad.selection.MassDependentThreshold`.

References:
    Kasieczka, Shih, "Robust Jet Classifiers through Distance Correlation" (DisCo), arXiv:2001.05310.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["distance_correlation"]


def distance_correlation(x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Squared distance correlation of two 1-d samples (0 if and only if independent), differentiable.

    References:
        Székely, Rizzo, Bakirov, Ann. Statist. 35 (2007) 2769; Kasieczka, Shih, arXiv:2001.05310.
    """
    import torch

    weights = torch.ones_like(x) if weights is None else weights / weights.mean()

    def centred(values: torch.Tensor) -> torch.Tensor:
        distance = (values[:, None] - values[None, :]).abs()
        row = (distance * weights[None, :]).mean(dim=1, keepdim=True)
        total = (row[:, 0] * weights).mean()
        return distance - row - row.T + total

    a, b = centred(x), centred(y)
    covariance = ((a * b * weights[None, :]).mean(dim=1) * weights).mean()
    variance_x = ((a * a * weights[None, :]).mean(dim=1) * weights).mean()
    variance_y = ((b * b * weights[None, :]).mean(dim=1) * weights).mean()
    return covariance / torch.sqrt(variance_x * variance_y).clamp_min(1e-12)
