"""Read errors and exit statuses (issue 15), one fault injected per case.

The bad file is a copy of the real CMS file ``nano_tt_v12.root`` (``../shared``; skipped with a reason where it
is absent) rewritten with one basket per 50 entries and its event numbers shifted by 10,000, in which bytes in
the middle of one zlib-compressed basket of ``FatJet_pt`` (entries 50-100) are flipped, the header intact. Run
beside the original in one dataset with a step size of 50, ``coffea-ad features`` and ``coffea-ad score``, in
dask and in virtual mode, must process the good file and the three good chunks of the bad one, report the
bad chunk (file, entries, reason) in ``cutflow.json`` and on stderr, count none of its events, and with
``--strict`` exit 1 writing nothing. Then: every file of a dataset failing, every chunk failing, an explicitly
requested feature set or MET collection that cannot be computed, the message of an empty file, and an error
of the processor itself, which is never taken for a read error.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import zlib
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from coffea_ad.cli import main
from coffea_ad.cli.features import optional_features
from coffea_ad.errors import InputFileError
from coffea_ad.processing import check_fileset, normalize_fileset, run_processor
from coffea_ad.processing.tables import read_parquet
from processors import AnomalyFeatureProcessor

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning", "ignore::UserWarning")

BASKET = 50  # entries per basket of the rewritten copy, and the step size of the runs
BAD_BASKET = 1  # the corrupt basket: entries 50-100
EVENT_OFFSET = 10**12  # above any event number of the original
BAD_ENTRIES = (BAD_BASKET * BASKET, (BAD_BASKET + 1) * BASKET)
REPOSITORY = Path(__file__).resolve().parents[1]


def rewrite_in_baskets(source: Path, target: Path) -> None:
    """Every branch of ``source``'s Events tree written again, one basket per ``BASKET`` entries, with the event
    numbers shifted by ``EVENT_OFFSET`` (so that its rows are told apart from the original's)."""
    with uproot.open(source) as file:
        tree = file["Events"]
        arrays = tree.arrays(library="ak")
        collections: dict[str, dict[str, ak.Array]] = {}
        content: dict[str, object] = {}
        for name, branch in tree.items():
            counter = branch.count_branch
            if counter is not None and name.startswith(f"{counter.name[1:]}_"):
                collection = counter.name[1:]
                collections.setdefault(collection, {})[name[len(collection) + 1 :]] = arrays[name]
            else:  # a flat branch, or a jagged one named as its counter's collection (LHEScaleWeight)
                content[name] = arrays[name] if arrays[name].ndim > 1 else ak.to_numpy(arrays[name])
    for collection, fields in collections.items():
        content.pop(f"n{collection}", None)  # written again by uproot from the collection's record
        content[collection] = ak.zip(fields)
    content["event"] = content["event"] + np.uint64(EVENT_OFFSET)
    types = {name: value.type if isinstance(value, ak.Array) else value.dtype for name, value in content.items()}
    with uproot.recreate(target, compression=uproot.ZLIB(1)) as output:
        events = output.mktree("Events", types)
        for start in range(0, len(content["event"]), BASKET):
            events.extend({name: value[start : start + BASKET] for name, value in content.items()})


def corrupt_basket(path: Path, branch: str, basket: int) -> None:
    """Flip 8 bytes in the middle of the compressed data of one basket of ``branch``, past its key and its 9-byte
    compression header: the file still opens, and only that basket fails to decompress."""
    with uproot.open(path) as file:
        events = file["Events"][branch]
        seek, size = int(events.member("fBasketSeek")[basket]), int(events.member("fBasketBytes")[basket])
        model = events.basket(basket)
        assert model.compressed_bytes < model.uncompressed_bytes, "the basket is stored uncompressed"
        header = model.member("fKeylen") + 9
    middle = seek + header + (size - header) // 2
    data = bytearray(path.read_bytes())
    data[middle : middle + 8] = bytes(byte ^ 0xFF for byte in data[middle : middle + 8])
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def files(shared_nanoaod, tmp_path_factory):
    folder = tmp_path_factory.mktemp("read_errors")
    good = shared_nanoaod / "nano_tt_v12.root"
    bad = folder / "nano_tt_v12_corrupt_basket.root"
    rewrite_in_baskets(good, bad)
    corrupt_basket(bad, "FatJet_pt", BAD_BASKET)
    return {"good": good, "bad": bad}


def test_the_fault_is_one_corrupt_basket_in_a_file_that_opens(files):
    with uproot.open(files["bad"]) as file:
        events = file["Events"]
        assert events.num_entries == 200 and events["FatJet_pt"].num_baskets == 4
        for basket in range(4):
            start, stop = basket * BASKET, (basket + 1) * BASKET
            if basket == BAD_BASKET:
                with pytest.raises(zlib.error):
                    events["FatJet_pt"].array(entry_start=start, entry_stop=stop)
            else:
                events["FatJet_pt"].array(entry_start=start, entry_stop=stop)
        events["Jet_pt"].array()  # the other branches are whole
    checked, skipped = check_fileset(normalize_fileset({"ttbar": [str(files["bad"])]}))
    assert not skipped and checked["ttbar"].n_entries == 200


@pytest.fixture(scope="module")
def fileset(files, tmp_path_factory):
    path = tmp_path_factory.mktemp("fileset") / "fileset.json"
    path.write_text(json.dumps({"ttbar": [str(files["good"]), str(files["bad"])]}))
    return path


@pytest.fixture(scope="module")
def model(files, tmp_path_factory):
    """A small autoencoder on (ht, n_jets): every event has a score."""
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    from coffea_ad.features import compute_features
    from coffea_ad.models import AutoEncoder

    names = ["ht", "n_jets"]
    events = NanoEventsFactory.from_root({str(files["good"]): "Events"}, schemaclass=NanoAODSchema, mode="eager")
    features = compute_features(events.events(), names)
    table = {name: ak.to_numpy(features[name]).astype(np.float64) for name in names}
    path = tmp_path_factory.mktemp("model") / "ae.onnx"
    autoencoder = AutoEncoder(latent=1, hidden=(8,), training={"epochs": 2, "progress": False}, seed=1)
    autoencoder.fit(table, names).export_onnx(path)
    return path


def chunk_warnings(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records
            if record.levelno == logging.WARNING and record.getMessage().startswith("skipped entries")]


def check_the_bad_chunk_is_reported(outdir: Path, files, caplog, capsys) -> dict:
    """The run's outputs say the one bad chunk, its entries are in no count, and the rest is all there."""
    (warning,) = chunk_warnings(caplog)
    assert warning.startswith(f"skipped entries 50-100 (50) of {files['bad']} (dataset 'ttbar'): zlib.error: ")
    assert "files skipped: 0, chunks skipped: 1 (50 entries not read)" in capsys.readouterr().out
    summary = json.loads((outdir / "cutflow.json").read_text())
    dataset = summary["datasets"]["ttbar"]
    assert summary["n_chunks_skipped"] == 1 and summary["n_entries_skipped"] == 50 and summary["n_files_skipped"] == 0
    (chunk,) = dataset["files"]["skipped_chunks"]
    assert chunk["file"] == str(files["bad"]) and (chunk["entry_start"], chunk["entry_stop"]) == BAD_ENTRIES
    assert chunk["entries"] == 50 and chunk["reason"].startswith("zlib.error: Error -3 while decompressing data")
    # Honest counts: the skipped entries are neither processed nor counted, the others all are.
    assert dataset["n_events"] == 350 and dataset["n_events"] + dataset["n_entries_skipped"] == 400
    assert all(sum(regions.values()) == 350 for regions in dataset["partitions"].values())
    with uproot.open(outdir / "histograms.root") as histograms:
        n_jets = sum(histograms[f"ttbar/deta_{region}/n_jets"].values(flow=True).sum() for region in
                     dataset["partitions"]["deta"])
    assert n_jets == 350
    table = read_parquet(outdir / "features" / "ttbar.parquet")
    good = table[table.event < EVENT_OFFSET]
    bad = table[table.event >= EVENT_OFFSET]
    assert len(good) == 200 and len(bad) == 150
    with uproot.open(files["good"]) as file:
        events = file["Events"]["event"].array(library="np")
    kept = np.r_[0 : BAD_ENTRIES[0], BAD_ENTRIES[1] : 200]
    assert sorted(ak.to_numpy(bad.event) - EVENT_OFFSET) == sorted(events[kept])
    # The good chunks of the bad file give what the same events give in the good file, column by column.
    by_event = {int(event): row for event, row in zip(ak.to_numpy(good.event), ak.to_list(good))}
    for row in ak.to_list(bad):
        twin = by_event[row["event"] - EVENT_OFFSET]
        assert {key: value for key, value in row.items() if key != "event"} == {
            key: value for key, value in twin.items() if key != "event"
        }
    return summary


@pytest.mark.parametrize("mode", ["dask", "virtual"])
def test_features_skip_the_corrupt_chunk_and_process_the_rest(mode, fileset, files, client, tmp_path, caplog,
                                                             capsys):
    outdir = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        status = main(["features", str(fileset), "-o", str(outdir), "--scheduler", client.scheduler.address,
                       "--mode", mode, "--step-size", str(BASKET), "--no-progress"])
    assert status == 0
    check_the_bad_chunk_is_reported(outdir, files, caplog, capsys)


@pytest.mark.parametrize("mode", ["dask", "virtual"])
def test_score_skips_the_corrupt_chunk_and_scores_the_rest(mode, fileset, files, model, client, tmp_path, caplog,
                                                          capsys):
    outdir = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        status = main(["score", str(fileset), "--model", f"ae={model}", "-o", str(outdir), "--scheduler",
                       client.scheduler.address, "--mode", mode, "--step-size", str(BASKET), "--control-region",
                       "none", "--no-progress"])
    assert status == 0
    check_the_bad_chunk_is_reported(outdir, files, caplog, capsys)
    table = read_parquet(outdir / "features" / "ttbar.parquet")
    assert not ak.any(ak.is_none(table.ae))  # every processed event is scored (the twins' scores agree above)
    scores = json.loads((outdir / "scores.json").read_text())["ae"]
    assert sum(counts["all"] for counts in scores["events"]["ttbar"].values()) > 0


@pytest.mark.parametrize(("command", "mode"), [("features", "dask"), ("features", "virtual"), ("score", "dask"),
                                               ("score", "virtual")])
def test_strict_makes_the_corrupt_chunk_an_error_and_writes_nothing(command, mode, fileset, files, model, client,
                                                                   tmp_path, capsys):
    outdir = tmp_path / "out"
    models = ["--model", f"ae={model}", "--control-region", "none"] if command == "score" else []
    status = main([command, str(fileset), *models, "-o", str(outdir), "--scheduler", client.scheduler.address,
                   "--mode", mode, "--step-size", str(BASKET), "--strict", "--no-progress"])
    assert status == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"coffea-ad {command}: error: 0 file(s) and 1 chunk(s) skipped, and strict makes any")
    assert f"entries 50-100 (50) of {files['bad']} (dataset 'ttbar'): zlib.error" in error
    assert not outdir.exists()


def test_search_strict_refuses_the_corrupt_chunk_before_any_training(fileset, files, client, tmp_path, capsys):
    """search runs the feature processor with its default step size: the bad file is one chunk, lost whole."""
    outdir = tmp_path / "search"
    status = main(["search", str(fileset), "-o", str(outdir), "--scheduler", client.scheduler.address, "--strict",
                   "--no-progress"])
    assert status == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("coffea-ad search: error: 0 file(s) and 1 chunk(s) skipped, and strict makes any")
    assert f"entries 0-200 (200) of {files['bad']} (dataset 'ttbar'): zlib.error" in error
    assert not outdir.exists()


def test_the_skipped_chunk_is_one_line_on_the_real_stderr(fileset, files, client, tmp_path):
    """Outside pytest's log capture: the warning line the CLI writes, and the summary line."""
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-m", "coffea_ad.cli", "features", str(fileset), "-o", str(tmp_path / "out"),
         "--scheduler", client.scheduler.address, "--step-size", str(BASKET), "--no-tables", "--no-progress"],
        capture_output=True, text=True, cwd=REPOSITORY,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "skipped entries" in line]
    assert lines == [
        f"WARNING coffea_ad.processing.runner: skipped entries 50-100 (50) of {files['bad']} (dataset 'ttbar'): "
        "zlib.error: Error -3 while decompressing data: incorrect data check"
    ]
    assert "files skipped: 0, chunks skipped: 1 (50 entries not read)" in result.stdout


# ---- exit statuses ----------------------------------------------------------------------------------------


def test_a_dataset_whose_every_file_fails_is_exit_1(files, model, tmp_path, capsys):
    empty = tmp_path / "empty.root"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.root"
    truncated.write_bytes(files["good"].read_bytes()[:100_000])
    typo = tmp_path / "nano_tt_v21.root"
    fileset = tmp_path / "fileset.json"
    fileset.write_text(json.dumps({"ttbar": [str(typo), str(empty), str(truncated)]}))
    for command in (["features"], ["score", "--model", str(model)]):
        capsys.readouterr()
        status = main([*command, str(fileset), "-o", str(tmp_path / "out"), "--workers", "1", "--no-progress"])
        assert status == 1
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert error.startswith(f"coffea-ad {command[0]}: error: dataset 'ttbar' has no readable file: ")
        assert f"{typo}: FileNotFoundError" in error
        assert f"{empty}: OSError: the file is empty (0 bytes), not a ROOT file" in error
        assert f"{truncated}: OSError: truncated: 100000 bytes, the ROOT header says" in error
        assert not (tmp_path / "out").exists()
    # One good dataset does not make up for one without a readable file.
    fileset.write_text(json.dumps({"good": [str(files["good"])], "ttbar": [str(typo)]}))
    assert main(["features", str(fileset), "-o", str(tmp_path / "out"), "--workers", "1", "--no-progress"]) == 1
    assert "dataset 'ttbar' has no readable file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_empty_root_file_is_named_whole(tmp_path, files):
    empty = tmp_path / "empty.root"
    empty.write_bytes(b"")
    short = tmp_path / "short.root"
    short.write_bytes(files["good"].read_bytes()[:100])
    _, skipped = check_fileset(normalize_fileset({"d": [str(empty), str(short)]}))
    reasons = {Path(entry.path).name: entry.reason for entry in skipped}
    assert reasons["empty.root"] == "OSError: the file is empty (0 bytes), not a ROOT file"
    # uproot's message spans three lines: all of it, on one line, file path included
    assert reasons["short.root"].startswith("OSError: expected Chunk of length ")
    assert "received 100 bytes" in reasons["short.root"] and str(short) in reasons["short.root"]
    assert "\n" not in reasons["short.root"]


def test_a_dataset_whose_every_chunk_fails_is_an_error(files):
    """One chunk covering the whole bad file: no entry of the dataset can be read."""
    checked, skipped = check_fileset(normalize_fileset({"bad": [str(files["bad"])]}))
    arguments = {"mode": "virtual", "step_size": 200, "features": ["mjj", "n_jets"],
                 "make_processor": AnomalyFeatureProcessor}
    with pytest.raises(InputFileError, match=r"dataset 'bad': none of the 200 entries of its files could be read: "
                                             r"entries 0-200 \(200\) of .*corrupt_basket\.root"):
        run_processor(checked, skipped, require_readable=True, **arguments)
    # Without require_readable (the processing stage's default), an empty but reported result.
    result = run_processor(checked, skipped, **arguments)
    assert result.cutflows["bad"]["n_events"] == 0 and len(result.tables["bad"]) == 0
    assert [(chunk.entry_start, chunk.entry_stop) for chunk in result.skipped_chunks] == [(0, 200)]


def test_an_explicit_feature_set_that_cannot_be_computed_is_exit_1(shared_nanoaod, client, tmp_path, capsys):
    fileset = tmp_path / "fileset.json"
    fileset.write_text(json.dumps({"open_data": [str(shared_nanoaod / "nanoAOD_2015_CMS_Open_Data_ttbar.root")]}))
    where = ["--scheduler", client.scheduler.address, "--no-tables", "--no-progress"]
    assert main(["features", str(fileset), "-o", str(tmp_path / "lhco"), "--features", "lhco", *where]) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "feature 'mj_min' needs branch FatJet_msoftdrop" in error and "dataset 'open_data'" in error
    assert not (tmp_path / "lhco").exists()
    # A MET collection the file does not have (PFMET is NanoAOD v15's), chosen explicitly.
    assert main(["features", str(fileset), "-o", str(tmp_path / "met"), "--met", "PFMET", *where]) == 1
    assert "has no MET collection 'PFMET'" in capsys.readouterr().err
    # Not requested by name: the default (all the input allows) and --optional leave mj_min out, exit 0.
    for extra, name in (([], "default"), (["--features", "lhco", "--optional", "lhco"], "optional")):
        assert main(["features", str(fileset), "-o", str(tmp_path / name), *extra, *where]) == 0
        summary = json.loads((tmp_path / name / "cutflow.json").read_text())["datasets"]["open_data"]
        assert summary["features_left_out"]["mj_min"] == ["FatJet_msoftdrop"] and "mjj" in summary["features"]


def test_what_explicitly_requested_means():
    from coffea_ad.features import FEATURE_SETS

    assert optional_features(None) is True  # no --features: all the input allows
    assert optional_features(["lhco"]) == []  # a set named: each of its features required
    every = optional_features(["all"])
    assert set(every) == set(FEATURE_SETS["all"])  # 'all' keeps meaning all the input allows
    assert "mj_min" not in optional_features(["all", "lhco"]) and "ht" in optional_features(["all", "lhco"])
    assert optional_features(["lhco"], "mjj,ht") == ["mjj", "ht"] and optional_features(["lhco"], "none") is False


def test_an_error_of_the_processor_is_never_taken_for_a_read_error(files):
    """A ValueError of the processor's own (not raised while uproot reads) stops the run in virtual mode."""

    class Broken(AnomalyFeatureProcessor):
        def extra_fields(self, events, features, rows):
            raise ValueError("a bug in the analysis")

    checked, skipped = check_fileset(normalize_fileset({"good": [str(files["good"])]}))
    with pytest.raises(Exception, match="a bug in the analysis"):
        run_processor(checked, skipped, mode="virtual", features=["n_jets"], make_processor=Broken)
