"""The one training loop every torch estimator of coffea_ad uses.

Mini-batch Adam with one progress bar per trained network (total = epochs, postfix = the training and
validation losses), a validation loss after every epoch, early stopping, the ``k``
best epochs kept (for ensembles of best epochs), and a checkpoint written atomically after every epoch
from which an interrupted run resumes and ends exactly where the uninterrupted run would have ended
(the shuffling generator and torch's global random state are checkpointed as well).
"""

from __future__ import annotations

import copy
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from coffea_ad.errors import ConfigurationError, InputFileError
from coffea_ad.paths import atomic_output
from coffea_ad.progress import progress_bar

__all__ = [
    "LossFunction",
    "TrainingResult",
    "resolve_device",
    "train_module",
    "fingerprint",
]

logger = logging.getLogger(__name__)

LossFunction = Callable[[nn.Module, Sequence[torch.Tensor]], torch.Tensor]
"""``loss(module, batch) -> scalar``; ``batch`` is one slice of each training tensor; lower is better."""


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cuda"`` without a GPU raises."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ConfigurationError(f"device must be auto, cpu or cuda, got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigurationError(f"device {device!r} asked for, but torch sees no CUDA device")
    return torch.device(device)


def fingerprint(*parts: object) -> str:
    """A short hash of hyperparameters and data hashes: a checkpoint is resumed only by the same run."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


@dataclass
class TrainingResult:
    """What :func:`train_module` returns: per-epoch losses, the best epoch and the best states."""

    train_loss: list[float] = field(default_factory=list)
    validation_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    stopped_early: bool = False
    best_states: list[dict[str, torch.Tensor]] = field(default_factory=list)
    best_state_losses: list[float] = field(default_factory=list)

    def summary(self) -> dict:
        """JSON-ready summary (without the states)."""
        return {
            "train_loss": self.train_loss,
            "validation_loss": self.validation_loss,
            "best_epoch": self.best_epoch,
            "best_validation_loss": min(self.validation_loss) if self.validation_loss else None,
            "epochs_run": len(self.train_loss),
            "stopped_early": self.stopped_early,
        }


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().to("cpu", copy=True) for key, value in module.state_dict().items()}


@torch.no_grad()
def _evaluate(module: nn.Module, loss: LossFunction, tensors: Sequence[torch.Tensor], batch_size: int) -> float:
    module.eval()
    total, count = 0.0, 0
    for start in range(0, len(tensors[0]), batch_size):
        batch = [tensor[start : start + batch_size] for tensor in tensors]
        total += float(loss(module, batch)) * len(batch[0])
        count += len(batch[0])
    return total / max(count, 1)


def _save_checkpoint(path: Path, payload: dict) -> None:
    with atomic_output(path) as tmp:
        torch.save(payload, tmp)


def _load_checkpoint(path: Path, run_id: str) -> dict:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file: torch raises several types
        raise InputFileError(f"cannot read checkpoint {path}: {error}") from error
    if payload.get("run_id") != run_id:
        raise ConfigurationError(
            f"checkpoint {path} belongs to a different training run (other data or hyperparameters); "
            "remove it or choose another checkpoint folder"
        )
    return payload


def train_module(
    module: nn.Module,
    loss: LossFunction,
    train: Sequence[torch.Tensor],
    validation: Sequence[torch.Tensor],
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    weight_decay: float = 0.0,
    patience: int | None = 10,
    keep_best: int = 1,
    seed: int = 0,
    checkpoint: str | Path | None = None,
    run_id: str = "",
    progress: bool = True,
    description: str = "training",
    on_epoch_end: Callable[[int, TrainingResult], None] | None = None,
) -> TrainingResult:
    """Train ``module`` in place by minimising ``loss``; return the history and the best states.

    The tensors must already be on the module's device. After training the module holds the state of the
    best validation epoch. ``keep_best`` > 1 keeps the states of that many best epochs (an ensemble of best
    epochs, as in CATHODE). With ``checkpoint`` (a file path) the loop state is saved after every epoch and
    an existing checkpoint of the same ``run_id`` is resumed. ``on_epoch_end(epoch, result)`` is called
    after each epoch's checkpoint (tests use it to interrupt a run).
    """
    if epochs < 1 or batch_size < 1 or keep_best < 1:
        raise ConfigurationError(
            f"epochs, batch_size and keep_best must be >= 1, got {epochs}, {batch_size}, {keep_best}"
        )
    if len(train[0]) == 0 or len(validation[0]) == 0:
        raise ConfigurationError(
            "training needs events in both the training and validation splits "
            f"(got {len(train[0])} and {len(validation[0])})"
        )
    optimizer = torch.optim.Adam(module.parameters(), lr=learning_rate, weight_decay=weight_decay)
    shuffler = torch.Generator().manual_seed(seed)
    result = TrainingResult()
    start_epoch, since_best = 0, 0
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists():
        payload = _load_checkpoint(path, run_id)
        module.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        shuffler.set_state(payload["shuffler"])
        torch.set_rng_state(payload["torch_rng"])
        if torch.cuda.is_available() and "cuda_rng" in payload:
            torch.cuda.set_rng_state_all(payload["cuda_rng"])
        result.train_loss = list(payload["train_loss"])
        result.validation_loss = list(payload["validation_loss"])
        result.best_states = list(payload["best_states"])
        result.best_state_losses = list(payload["best_state_losses"])
        result.best_epoch = int(payload["best_epoch"])
        start_epoch, since_best = int(payload["epoch"]) + 1, int(payload["since_best"])
        logger.info("resuming %s from %s at epoch %d", description, path, start_epoch)
    n_train = len(train[0])
    with progress_bar(epochs, description, unit="epoch", enabled=progress, initial=start_epoch) as bar:
        for epoch in range(start_epoch, epochs):
            if patience is not None and since_best >= patience:
                result.stopped_early = True
                break
            module.train()
            order = torch.randperm(n_train, generator=shuffler).to(train[0].device)
            running = 0.0
            for start in range(0, n_train, batch_size):
                index = order[start : start + batch_size]
                value = loss(module, [tensor[index] for tensor in train])
                if not torch.isfinite(value):
                    raise ConfigurationError(
                        f"{description}: the loss became {float(value)} at epoch {epoch + 1}; lower the learning rate "
                        "or check the feature transforms"
                    )
                optimizer.zero_grad(set_to_none=True)
                value.backward()
                optimizer.step()
                running += float(value.detach()) * len(index)
            result.train_loss.append(running / n_train)
            validation_loss = _evaluate(module, loss, validation, batch_size)
            result.validation_loss.append(validation_loss)
            logger.debug(
                "%s epoch %d: train %.5g validation %.5g",
                description, epoch + 1, result.train_loss[-1], validation_loss,
            )
            bar.set_postfix(train=f"{result.train_loss[-1]:.4g}", validation=f"{validation_loss:.4g}", refresh=False)
            bar.update()
            if result.best_epoch < 0 or validation_loss < result.validation_loss[result.best_epoch]:
                result.best_epoch, since_best = epoch, 0
            else:
                since_best += 1
            if len(result.best_states) < keep_best or validation_loss < max(result.best_state_losses):
                if len(result.best_states) == keep_best:
                    worst = result.best_state_losses.index(max(result.best_state_losses))
                    del result.best_states[worst], result.best_state_losses[worst]
                result.best_states.append(_cpu_state(module))
                result.best_state_losses.append(validation_loss)
            if path is not None:
                payload = {
                    "run_id": run_id,
                    "epoch": epoch,
                    "since_best": since_best,
                    "best_epoch": result.best_epoch,
                    "model": _cpu_state(module),
                    "optimizer": copy.deepcopy(optimizer.state_dict()),
                    "shuffler": shuffler.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "train_loss": result.train_loss,
                    "validation_loss": result.validation_loss,
                    "best_states": result.best_states,
                    "best_state_losses": result.best_state_losses,
                }
                if torch.cuda.is_available():
                    payload["cuda_rng"] = torch.cuda.get_rng_state_all()
                _save_checkpoint(path, payload)
            if on_epoch_end is not None:
                on_epoch_end(epoch, result)
    stop = ", stopped early" if result.stopped_early else ""
    logger.info(
        "%s: %d epoch(s), best %d (validation loss %.5g)%s", description, len(result.train_loss),
        result.best_epoch + 1, result.validation_loss[result.best_epoch], stop,
    )
    order = sorted(range(len(result.best_states)), key=result.best_state_losses.__getitem__)
    result.best_states = [result.best_states[i] for i in order]
    result.best_state_losses = [result.best_state_losses[i] for i in order]
    module.load_state_dict(result.best_states[0])
    module.eval()
    return result
