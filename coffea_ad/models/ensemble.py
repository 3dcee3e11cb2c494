"""An ensemble of models of one method that differ only in their seed: the score is the mean of theirs.

The CMS search for dijet resonances with anomalous substructure (arXiv:2412.03747) averages four models per
fold: the networks of a weakly supervised method trained on a few hundred signal-region events vary from
seed to seed, and their mean ranks events more stably than any one of them. Each member is a complete
estimator (cross-trained when its method is, every event scored by the member's model that did not see it),
so the mean of out-of-fold scores is out-of-fold too. Member 0 has the ensemble's seed, member ``m`` the
seed :func:`member_seed` ``(seed, m)``: a one-member ensemble is the plain estimator.

The ONNX export is one graph with the members' scoring modules inside (input ``fold`` when cross-trained),
so :class:`coffea_ad.onnx.scorer.OnnxScorer` scores an ensemble as it scores a single model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from coffea_ad.errors import ConfigurationError, InputFileError
from coffea_ad.models.base import Estimator

__all__ = ["Ensemble", "member_seed"]


def member_seed(seed: int, member: int) -> int:
    """The seed of ensemble member ``member`` of an ensemble with seed ``seed`` (member 0: ``seed`` itself)."""
    if member == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), 1_000_003, int(member)]).generate_state(1)[0] >> 2)


class _MeanScore(nn.Module):
    """The mean of the members' scores (same inputs for every member: features, and fold when cross-trained)."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(*inputs) for member in self.members], dim=0).mean(dim=0)


class Ensemble:
    """Fitted estimators of one method on the same inputs, differing only in their seed; scores are their mean.

    Build it from fitted members (``Ensemble(members)``); :meth:`save` / :meth:`load` keep each member in
    its own folder ``member{m}``.
    """

    def __init__(self, members: Sequence[Estimator]) -> None:
        members = list(members)
        if not members:
            raise ConfigurationError("an ensemble needs at least one member")
        first = members[0]
        for m, member in enumerate(members[1:], start=1):
            if type(member) is not type(first) or member.input_columns != first.input_columns:
                raise ConfigurationError(f"ensemble member {m} is not a {first.method} on {first.input_columns}")
            if member.n_folds != first.n_folds or member.inputs_ != first.inputs_:
                raise ConfigurationError(f"ensemble member {m} has other folds or inputs than member 0")
        self.members = members

    @property
    def method(self) -> str:
        return self.members[0].method

    @property
    def n_folds(self) -> int:
        return self.members[0].n_folds

    @property
    def cross_trained(self) -> bool:
        return self.members[0].cross_trained

    @property
    def input_columns(self) -> list[str]:
        """The columns every member scores, in order."""
        return self.members[0].input_columns

    def scoring_module(self) -> nn.Module:
        """The torch module of the mean score (inputs as a member's :meth:`Estimator.scoring_module`)."""
        return _MeanScore([member.scoring_module() for member in self.members]).eval()

    def score_array(self, x: np.ndarray, fold: np.ndarray | None = None) -> np.ndarray:
        """The mean of the members' :meth:`Estimator.score_array` (``fold``: each row's fold, when cross-trained)."""
        return np.mean([member.score_array(x, fold) for member in self.members], axis=0)

    def export_onnx(self, path: str | Path) -> Path:
        """Write the mean score of the members as one ONNX graph, with the metadata of member 0 and the number
        of members and their seeds."""
        return self.members[0].export_module(
            self.scoring_module(),
            path,
            extra={
                "ensemble": str(len(self.members)),
                "member_seeds": json.dumps([member.seed for member in self.members]),
            },
        )

    def save(self, folder: str | Path) -> Path:
        """Save every member (:meth:`Estimator.save`) into ``folder/member{m}``."""
        folder = Path(folder)
        for m, member in enumerate(self.members):
            member.save(folder / f"member{m}")
        return folder

    @classmethod
    def load(cls, folder: str | Path, n_members: int) -> Ensemble:
        """The ensemble of ``n_members`` members saved by :meth:`save` in ``folder``."""
        folder = Path(folder)
        missing = [f"member{m}" for m in range(n_members) if not (folder / f"member{m}").is_dir()]
        if missing:
            raise InputFileError(f"{folder} holds no ensemble of {n_members}: {', '.join(missing)} missing")
        return cls([Estimator.load(folder / f"member{m}") for m in range(n_members)])

    def summary(self) -> dict[str, Any]:
        """Member 0's summary with the members' seeds and histories."""
        summary = self.members[0].summary()
        summary["ensemble"] = len(self.members)
        summary["member_seeds"] = [member.seed for member in self.members]
        summary["history"] = {
            f"member{m}/{name}": history
            for m, member in enumerate(self.members)
            for name, history in member.history_.items()
        }
        return summary
