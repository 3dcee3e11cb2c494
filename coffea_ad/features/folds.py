"""Cross-training folds: an event's fold is a fixed function of its identity (run, luminosityBlock, event).

Weakly supervised models see the data they will later score. To score every event with a model that never
saw it, a method is trained ``K`` times, model ``k`` without the events of fold ``k``, and each event is
scored by the model of its own fold. The fold is a hash of the event identity, never of the row order, so
that the training table (which carries ``run``, ``luminosityBlock``, ``event``) and inline scoring on
NanoEvents agree without sharing any state, whatever the chunking, the file order or the selection.

The hash is SplitMix64 (Steele, Lea, Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014)
applied in turn to run, luminosityBlock and event; the fold is the hash modulo ``K``. Its name and version,
:data:`FOLD_HASH`, are written into every cross-trained ONNX model, so that a later change of the recipe
cannot silently pair events with the wrong models.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from coffea_ad.errors import ConfigurationError

__all__ = ["FOLD_HASH", "EVENT_ID_BRANCHES", "event_fold"]

#: Name and version of the fold recipe (recorded in the ONNX metadata of cross-trained models).
FOLD_HASH = "splitmix64(run, luminosityBlock, event) v1"

#: The NanoAOD branches (and table columns) that identify an event.
EVENT_ID_BRANCHES = ("run", "luminosityBlock", "event")

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(z: np.ndarray) -> np.ndarray:
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def _ids(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ConfigurationError(f"{name} must be one value per event, got an array of shape {array.shape}")
    if array.dtype.kind not in "iu":
        raise ConfigurationError(f"{name} must be integers (the NanoAOD branch), got dtype {array.dtype}")
    if array.dtype.kind == "i" and array.size and array.min() < 0:
        raise ConfigurationError(f"{name} has negative values: not an event identifier")
    return array.astype(np.uint64)


def event_fold(run: Any, luminosityBlock: Any, event: Any, n_folds: int) -> np.ndarray:
    """The fold (``0 .. n_folds - 1``, int64) of each event from its ``run``, ``luminosityBlock`` and ``event``.

    Arguments are one-dimensional integer arrays of equal length (numpy, or flat awkward arrays).

    Example:
        >>> event_fold([1, 1], [7, 7], [1001, 1002], 5)
        array([2, 1])
    """
    if not isinstance(n_folds, (int, np.integer)) or n_folds < 1:
        raise ConfigurationError(f"the number of folds must be a positive integer, got {n_folds!r}")
    runs, blocks, events = (_ids(v, n) for v, n in zip((run, luminosityBlock, event), EVENT_ID_BRANCHES))
    if not len(runs) == len(blocks) == len(events):
        raise ConfigurationError(
            f"run, luminosityBlock and event have different lengths: {len(runs)}, {len(blocks)}, {len(events)}"
        )
    with np.errstate(over="ignore"):
        digest = _splitmix64(_splitmix64(_splitmix64(runs) ^ blocks) ^ events)
    return (digest % np.uint64(n_folds)).astype(np.int64)
