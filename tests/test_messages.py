"""The small messages of issue 15, one fault injected per case: an output folder that cannot be written or
created, no empty output folder after a failure, a histogram with a NaN bin, a model input whose branch the
file lacks, and training below a minimum number of rows."""

from __future__ import annotations

import json
import logging
import os
import textwrap
from pathlib import Path

import hist
import numpy as np
import pytest
import uproot

from coffea_ad.cli import main
from coffea_ad.errors import InputFileError
from coffea_ad.paths import check_output_folder, cleanup_new_folder, output_folder
from synthetic_tables import dijet_table

UNWRITABLE_PROC = Path("/proc/self")  # a folder no one, root included, can create files in


@pytest.fixture
def table(tmp_path) -> Path:
    path = tmp_path / "table.parquet"
    dijet_table(600, seed=2).to_parquet(path)
    return path


@pytest.fixture
def no_training(monkeypatch):
    """Make any training fail loudly: a check that should come first must refuse before it."""
    from coffea_ad.models.base import Estimator

    def fit(self, *args, **kwargs):
        raise AssertionError("the training started")

    monkeypatch.setattr(Estimator, "fit", fit)


def one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"coffea-ad {command}: error: ") and "\n" not in err, err
    return err


# ---- train checks its output folder before it starts ------------------------------------------------------


def unwritable_folders(tmp_path: Path) -> list[Path]:
    folders = []
    if UNWRITABLE_PROC.is_dir():
        folders.append(UNWRITABLE_PROC)
    if os.geteuid() != 0:  # root writes into a folder whatever its mode
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        folders.append(locked)
    return folders


def test_train_refuses_an_unwritable_folder_before_training(table, tmp_path, capsys, no_training):
    folders = unwritable_folders(tmp_path)
    if not folders:
        pytest.skip("no folder here that this user cannot write into")
    for folder in folders:
        assert main(["train", "autoencoder", str(table), "-o", str(folder), "--no-progress"]) == 1
        err = one_line_error(capsys, "train")
        assert f"cannot write into {folder} (-o/--output): the folder is not writable" in err
        # and below it: a folder that cannot be created
        assert main(["train", "autoencoder", str(table), "-o", str(folder / "model"), "--no-progress"]) == 1
        assert f"cannot create {folder / 'model'} (-o/--output): {folder} is not writable" in one_line_error(
            capsys, "train"
        )


def test_train_refuses_a_folder_under_a_file_in_one_line(table, tmp_path, capsys, no_training):
    blocker = tmp_path / "results"
    blocker.write_text("a file, not a folder")
    assert main(["train", "autoencoder", str(table), "-o", str(blocker / "a" / "model"), "--no-progress"]) == 1
    assert f"{blocker} is a file, not a folder" in one_line_error(capsys, "train")
    assert main(["train", "autoencoder", str(table), "-o", str(blocker), "--no-progress"]) == 1
    assert f"cannot write into {blocker} (-o/--output): it is a file, not a folder" in one_line_error(capsys, "train")
    assert blocker.read_text() == "a file, not a folder"


def test_the_python_api_checks_the_folder_before_training(table, no_training):
    from coffea_ad.workflow.train import train_to_folder

    with pytest.raises(InputFileError, match="is not writable"):
        train_to_folder("autoencoder", table, UNWRITABLE_PROC / "model", progress=False)


# ---- no empty output folder after an error ----------------------------------------------------------------


def test_train_failing_on_bad_input_leaves_no_folder(tmp_path, capsys):
    pytest.importorskip("torch")
    table = tmp_path / "sidebands_only.parquet"
    data = dijet_table(600, seed=3)
    data[(data.mjj < 3300) | (data.mjj >= 3700)].to_parquet(table)  # no event in the signal region
    output = tmp_path / "new" / "model"
    assert main(["train", "cwola", str(table), "-o", str(output), "--folds", "1", "--no-progress"]) == 1
    assert "signal region" in one_line_error(capsys, "train")
    assert not (tmp_path / "new").exists()


def test_train_failing_after_writing_removes_what_it_wrote_and_nothing_else(table, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from coffea_ad.workflow import train

    def broken_closure(*args, **kwargs):
        raise RuntimeError("closure failed")

    monkeypatch.setattr(train, "resonant_closure", broken_closure)  # after model.onnx and the estimator
    new = tmp_path / "new" / "model"
    with pytest.raises(RuntimeError, match="closure failed"):
        train.train_to_folder("autoencoder", table, new, features=["mj_min"], training={"epochs": 1}, progress=False)
    assert not (tmp_path / "new").exists()
    existing = tmp_path / "mine"
    existing.mkdir()
    (existing / "notes.txt").write_text("keep me")
    with pytest.raises(RuntimeError, match="closure failed"):
        train.train_to_folder("autoencoder", table, existing, features=["mj_min"], training={"epochs": 1},
                              progress=False)
    assert (existing / "notes.txt").read_text() == "keep me"


def test_output_folder_removes_only_what_the_failed_run_created(tmp_path):
    written: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        with output_folder(tmp_path / "a" / "b", written) as folder:
            (folder / "sub").mkdir()
            written.append("result.json")
            (folder / "result.json").write_text("{}")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    # a file the run did not list (a checkpoint kept for a resumed run) keeps its folder
    with pytest.raises(ValueError):
        with cleanup_new_folder(tmp_path / "c") as folder:
            (folder / "checkpoints").mkdir(parents=True)
            (folder / "checkpoints" / "flow.pt").write_text("state")
            (folder / "empty").mkdir()
            raise ValueError
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "c", "c/checkpoints", "c/checkpoints/flow.pt"
    ]
    # a folder that existed is left as it was, empty or not
    (tmp_path / "d").mkdir()
    with pytest.raises(ValueError):
        with output_folder(tmp_path / "d", ["x"]) as folder:
            (folder / "x").write_text("")
            raise ValueError
    assert (tmp_path / "d" / "x").exists()
    with output_folder(tmp_path / "e") as folder:
        pass
    assert folder.is_dir()
    assert check_output_folder(tmp_path / "f" / "g") == tmp_path / "f" / "g" and not (tmp_path / "f").exists()


# ---- fit: a histogram with a NaN bin ------------------------------------------------------------------------


def histogram_file(path: Path, nan_bin: int | None) -> Path:
    """``data/deta_sr/mjj``: a falling spectrum in 40 bins of 100 GeV from 1 TeV, one count set to NaN."""
    edges = np.arange(1000.0, 5001.0, 100.0)
    centres = 0.5 * (edges[1:] + edges[:-1])
    counts = np.round(2e5 * (centres / 1000.0) ** -6)
    histogram = hist.Hist(hist.axis.Variable(edges, name="mjj"), storage=hist.storage.Weight())
    view = histogram.view()
    view.value, view.variance = counts, counts
    if nan_bin is not None:
        view.value[nan_bin] = np.nan
    with uproot.recreate(path) as file:
        file["data/deta_sr/mjj"] = histogram
    return path


def test_fit_names_the_histogram_and_the_nan_bin(tmp_path, capsys):
    path = histogram_file(tmp_path / "histograms.root", nan_bin=7)
    output = tmp_path / "fit"
    assert main(["fit", str(path), "-o", str(output)]) == 1
    err = one_line_error(capsys, "fit")
    assert "histogram 'data/deta_sr/mjj'" in err and "NaN count in bin 7 (1700-1800)" in err
    assert "empty" not in err
    assert not output.exists()  # no empty output folder either


def test_fit_failing_keeps_an_existing_folder_as_it_was(tmp_path, capsys):
    path = histogram_file(tmp_path / "histograms.root", nan_bin=0)
    output = tmp_path / "fit"
    output.mkdir()
    (output / "notes.txt").write_text("mine")
    assert main(["fit", str(path), "-o", str(output)]) == 1
    assert "NaN count in bin 0 (1000-1100)" in one_line_error(capsys, "fit")
    assert [p.name for p in output.iterdir()] == ["notes.txt"]


def test_fit_without_nan_runs(tmp_path):
    path = histogram_file(tmp_path / "histograms.root", nan_bin=None)
    assert main(["fit", str(path), "-o", str(tmp_path / "fit")]) == 0
    assert json.loads((tmp_path / "fit" / "fit_results.json").read_text())["method"] == "bumphunt"


# ---- score: a model input whose branch the file lacks ------------------------------------------------------

TRACK_FEATURE = '''
    import awkward as ak

    from coffea_ad.features import define_feature


    @define_feature(branches=("Track_pt",), unit="GeV", axis=("regular", 20, 0.0, 2000.0))
    def issue15_track_ht(events):
        """Scalar sum of the track transverse momenta (NanoAOD has no Track collection)."""
        return ak.sum(events.Track.pt, axis=1)
'''


def test_a_model_input_the_file_cannot_give_names_the_model(generated_sample, tmp_path, capsys):
    pytest.importorskip("torch")
    from coffea_ad.workflow.train import train_to_folder

    module = tmp_path / "track_feature.py"
    module.write_text(textwrap.dedent(TRACK_FEATURE))
    data = dijet_table(600, seed=5)
    data["issue15_track_ht"] = data["ht"] * 0.6
    train_to_folder("autoencoder", data, tmp_path / "tracks", features=["issue15_track_ht", "mj_min"],
                    training={"epochs": 1}, progress=False)
    sample = generated_sample("qcd_dijet", 200, seed=5)
    fileset = tmp_path / "fileset.json"
    fileset.write_text(json.dumps({"qcd": {"files": {str(sample): "Events"}}}))
    argv = ["score", str(fileset), "--model", f"tracks={tmp_path / 'tracks' / 'model.onnx'}", "-o",
            str(tmp_path / "scored"), "--feature-module", str(module), "-j", "1", "--no-progress"]
    assert main(argv) == 1
    err = one_line_error(capsys, "score")
    assert "feature 'issue15_track_ht' needs branch Track_pt, absent from" in err and str(sample) in err
    assert "it is an input of model 'tracks'" in err and "cannot score" in err
    assert "mark the feature optional" not in err
    assert not (tmp_path / "scored").exists()


# ---- a warning below a minimum training size ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "minimum"),
    [("autoencoder", 500), ("vae", 500), ("cwola", 500), ("supervised", 500), ("maf", 2000), ("cathode", 2000),
     ("anode", 2000), ("ranode", 2000), ("salad", 500)],
)
def test_the_minimum_training_size_follows_the_method_family(method, minimum):
    pytest.importorskip("torch")
    from coffea_ad.models import get_estimator
    from coffea_ad.workflow.train import minimum_training_rows

    assert minimum_training_rows(get_estimator(method)()) == minimum


def test_training_on_five_events_warns_with_the_rows_and_the_minimum(tmp_path, caplog):
    pytest.importorskip("torch")
    from coffea_ad.workflow.train import train_to_folder

    with caplog.at_level(logging.WARNING, logger="coffea_ad.workflow.train"):
        summary = train_to_folder("autoencoder", dijet_table(5, seed=1), tmp_path / "small",
                                  features=["mj_min", "delta_mj"], training={"epochs": 1}, progress=False)
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert "autoencoder trained on 5 table rows, below its minimum of 500" in warnings[0]
    assert summary["warnings"] == warnings
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="coffea_ad.workflow.train"):
        summary = train_to_folder("autoencoder", dijet_table(600, seed=1), tmp_path / "enough",
                                  features=["mj_min", "delta_mj"], training={"epochs": 1}, progress=False)
    assert summary["warnings"] == [] and not caplog.records
