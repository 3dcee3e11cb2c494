"""Cross-training folds: the fold of an event is a fixed function of its identity, and one ONNX file holds a
model per fold and scores each event with the model of its fold."""

from __future__ import annotations

import numpy as np
import pytest

from coffea_ad.errors import ConfigurationError, InputFileError
from coffea_ad.features.folds import FOLD_HASH, event_fold


def _ids(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return (
        rng.integers(1, 400_000, n).astype(np.uint32),
        rng.integers(1, 5_000, n).astype(np.uint32),
        rng.integers(1, 2**40, n).astype(np.uint64),
    )


def test_folds_are_balanced_and_do_not_depend_on_the_row_order():
    run, block, event = _ids(100_000)
    fold = event_fold(run, block, event, 5)
    counts = np.bincount(fold, minlength=5)
    # multinomial: each count is 20000 +- 126
    assert np.all(np.abs(counts - 20_000) < 5 * 126), counts
    order = np.random.default_rng(1).permutation(len(run))
    assert np.array_equal(event_fold(run[order], block[order], event[order], 5), fold[order])


def test_neighbouring_events_and_runs_land_in_unrelated_folds():
    """Consecutive event numbers (as in a real luminosity block) must not cycle through the folds."""
    event = np.arange(1, 50_001, dtype=np.uint64)
    fold = event_fold(np.ones_like(event), np.ones_like(event), event, 2)
    # a fold sequence of a fair coin: runs of equal neighbours have mean length 2
    changes = np.count_nonzero(np.diff(fold))
    assert abs(changes - 25_000) < 5 * 112
    other_run = event_fold(np.full_like(event, 2), np.ones_like(event), event, 2)
    assert abs(np.mean(other_run == fold) - 0.5) < 0.02


def test_bad_identifiers_are_refused_by_name():
    with pytest.raises(ConfigurationError, match="luminosityBlock must be integers"):
        event_fold([1], [1.5], [3], 5)
    with pytest.raises(ConfigurationError, match="different lengths"):
        event_fold([1, 1], [1], [3], 5)
    with pytest.raises(ConfigurationError, match="positive integer"):
        event_fold([1], [1], [3], 0)
    with pytest.raises(ConfigurationError, match="event has negative values"):
        event_fold([1], [1], [-3], 5)


def test_a_cross_trained_onnx_file_scores_each_row_with_its_fold_model(tmp_path):
    torch = pytest.importorskip("torch")

    from coffea_ad.onnx.export import export_module, read_metadata, score_onnx

    class PerFold(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weights = torch.nn.Parameter(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))

        def forward(self, x, fold):
            scores = x @ self.weights.T  # [N, K]: every fold model's score
            return scores.gather(1, fold.view(-1, 1)).view(-1)

    path = export_module(
        PerFold(), tmp_path / "folds.onnx", feature_names=["a", "b"], method="test", region=None,
        training_table_hash="0", n_folds=3,
    )
    metadata = read_metadata(path)
    assert metadata.n_folds == 3 and metadata.fold_hash == FOLD_HASH and metadata.cross_trained
    x = np.random.default_rng(2).normal(size=(1000, 2)).astype(np.float32)
    fold = np.random.default_rng(3).integers(0, 3, 1000)
    expected = np.choose(fold, [x[:, 0], x[:, 1], x[:, 0] + x[:, 1]])
    assert np.allclose(score_onnx(path, x, fold), expected, atol=1e-6)
    with pytest.raises(ConfigurationError, match="cross-trained: give the fold"):
        score_onnx(path, x)
    with pytest.raises(ConfigurationError, match="folds must lie in 0..2"):
        score_onnx(path, x, np.full(1000, 3))


def test_a_model_from_another_fold_recipe_is_refused(tmp_path):
    onnx = pytest.importorskip("onnx")
    torch = pytest.importorskip("torch")

    from coffea_ad.onnx.export import export_module, read_metadata

    class First(torch.nn.Module):
        def forward(self, x, fold):
            return x[:, 0] + 0 * fold

    path = export_module(
        First(), tmp_path / "old.onnx", feature_names=["a"], method="test", region=None, training_table_hash="0",
        n_folds=2,
    )
    model = onnx.load(str(path))
    for entry in model.metadata_props:
        if entry.key == "fold_hash":
            entry.value = "row order v0"
    onnx.save(model, str(path))
    with pytest.raises(InputFileError, match="fold recipe 'row order v0'"):
        read_metadata(path)
