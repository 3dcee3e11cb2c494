"""The feature processor on a real distributed cluster: dask == virtual, bad files counted, outputs on disk."""

from __future__ import annotations

import json
import pickle

import awkward as ak
import numpy as np
import pytest
import uproot

from coffea_ad.cli import main
from coffea_ad.features import FEATURES, FeatureConfig
from coffea_ad.features.regions import RegionConfig
from coffea_ad.processing import check_fileset, normalize_fileset, run_processor, write_outputs
from coffea_ad.processing.tables import read_parquet
from processors.feature_processor import AnomalyFeatureProcessor

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning", "ignore::UserWarning")


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, shared_nanoaod):
    """A truncated copy of a good file and a file that is not ROOT at all."""
    folder = tmp_path_factory.mktemp("bad_files")
    good = shared_nanoaod / "nano_tt_v12.root"
    truncated = folder / "nano_tt_v12_truncated.root"
    truncated.write_bytes(good.read_bytes()[: int(good.stat().st_size * 0.9)])
    not_root = folder / "not_root.root"
    not_root.write_bytes(b"this is not a ROOT file" * 10)
    return truncated, not_root


@pytest.fixture(scope="module")
def fileset(shared_nanoaod, bad_files):
    """Simulation with a truncated file beside a good one, old open data, collision data, and only a broken file."""
    truncated, not_root = bad_files
    return normalize_fileset({
        "ttbar": {"files": {str(shared_nanoaod / "nano_tt_v12.root"): "Events", str(truncated): "Events"}},
        "open_data_2015": [str(shared_nanoaod / "nanoAOD_2015_CMS_Open_Data_ttbar.root")],
        "dimuon_data": [str(shared_nanoaod / "nano_dimuon.root")],
        "unreadable": [str(not_root)],
    })


REGIONS = RegionConfig(mjj_window_centres=(300.0, 3500.0), mjj_window_half_width=100.0, ht_min=300.0, met_min=50.0)


@pytest.fixture(scope="module")
def results(fileset, client):
    checked, skipped = check_fileset(fileset)
    return {
        mode: run_processor(
            checked, skipped, mode=mode, client=client, optional=True, region_config=REGIONS,
            make_processor=AnomalyFeatureProcessor,
        )
        for mode in ("dask", "virtual")
    }


def test_dask_and_virtual_give_identical_tables_histograms_and_cutflows(results):
    dask_result, virtual_result = results["dask"], results["virtual"]
    assert list(dask_result.tables) == list(virtual_result.tables)
    for dataset, table in dask_result.tables.items():
        other = virtual_result.tables[dataset]
        assert table.fields == other.fields, dataset
        assert ak.array_equal(table, other, equal_nan=True), dataset
        assert dask_result.cutflows[dataset] == virtual_result.cutflows[dataset]
        for variable, histogram in dask_result.histograms[dataset].items():
            other_histogram = virtual_result.histograms[dataset][variable]
            np.testing.assert_array_equal(histogram.values(flow=True), other_histogram.values(flow=True))
            np.testing.assert_array_equal(histogram.variances(flow=True), other_histogram.variances(flow=True))


def test_every_file_is_either_processed_or_reported(results):
    result = results["dask"]
    skipped = {entry.path.rsplit("/", 1)[1]: entry for entry in result.skipped}
    assert sorted(skipped) == ["nano_tt_v12_truncated.root", "not_root.root"]
    assert "truncated" in skipped["nano_tt_v12_truncated.root"].reason
    assert skipped["not_root.root"].dataset == "unreadable"
    expected_events = {"ttbar": 200, "open_data_2015": 200, "dimuon_data": 40, "unreadable": 0}
    assert {name: counts["n_events"] for name, counts in result.cutflows.items()} == expected_events
    assert {name: len(table) for name, table in result.tables.items()} == expected_events
    # Features were chosen per dataset from the branches all its files have.
    assert "mj_min" not in result.features["open_data_2015"] and "mjj" in result.features["open_data_2015"]
    assert result.left_out["open_data_2015"]["mj_min"] == ["FatJet_msoftdrop"]
    assert "genWeight" not in result.tables["dimuon_data"].fields and "genWeight" in result.tables["ttbar"].fields


def test_runs_on_every_real_nanoaod_file(shared_nanoaod):
    files = sorted(shared_nanoaod.glob("*.root"))
    assert len(files) == 6
    fileset = normalize_fileset({path.stem: [str(path)] for path in files})
    checked, skipped = check_fileset(fileset)
    result = run_processor(
        checked, skipped, mode="virtual", optional=True, region_config=REGIONS, make_processor=AnomalyFeatureProcessor
    )
    assert not skipped
    entries = {path.stem: uproot.open(path)["Events"].num_entries for path in files}
    assert {name: len(table) for name, table in result.tables.items()} == entries
    # NanoAOD v15 has no MET_*: its met comes from PFMET (met_collection="auto"), nothing is left out.
    assert result.met_collections["nano_tt_v15"] == {str(shared_nanoaod / "nano_tt_v15.root"): "PFMET"}
    assert all(not result.left_out[name] for name in ("nano_tt_v12", "nano_tt_v15", "nano_dy", "nano_dimuon", "pfnano"))


def test_empty_dataset_gives_an_empty_table_and_zero_histograms(results):
    result = results["dask"]
    table = result.tables["unreadable"]
    assert len(table) == 0
    assert set(result.tables["ttbar"].fields) == set(table.fields)
    assert str(table.type.content.fields) == str(result.tables["ttbar"].type.content.fields)
    assert all(histogram.sum(flow=True).value == 0 for histogram in result.histograms["unreadable"].values())
    assert set(result.histograms["unreadable"]) == set(result.histograms["ttbar"])
    partitions = result.cutflows["unreadable"]["partitions"].values()
    assert all(count == 0 for regions in partitions for count in regions.values())


def test_table_flags_histograms_and_cutflow_agree(results):
    result = results["dask"]
    table, counts, histograms = result.tables["ttbar"], result.cutflows["ttbar"], result.histograms["ttbar"]
    for partition, regions in counts["partitions"].items():
        assert sum(regions.values()) == counts["n_events"] == len(table)
        for region, count in regions.items():
            assert ak.sum(table[f"{partition}_{region}"]) == count
    # n_jets is never None: its histogram in a region holds exactly the region's events.
    regions_axis = histograms["n_jets"].axes["region"].metadata
    for position, flag in enumerate(regions_axis):
        assert histograms["n_jets"][{"region": position}].sum(flow=True).value == ak.sum(table[flag])
    # mjj is None without two fat jets: nothing in the missing region, the rest where it is defined.
    mjj = histograms["mjj"]
    assert mjj[{"region": regions_axis.index("deta_missing")}].sum(flow=True).value == 0
    assert mjj[{"region": regions_axis.index("deta_sr")}].sum(flow=True).value == counts["partitions"]["deta"]["sr"]
    keys = ak.to_numpy(table.event)
    assert len(np.unique(keys)) == len(keys)
    assert ak.all(table.event[1:] > table.event[:-1])  # ordered by event id whatever the chunking


def test_outputs_on_disk(results, tmp_path):
    result = results["dask"]
    paths = write_outputs(result, tmp_path / "out")
    summary = json.loads(paths["cutflow"].read_text())
    assert summary["n_files_skipped"] == 2 and summary["n_files_processed"] == 3
    assert summary["datasets"]["ttbar"]["partitions"] == result.cutflows["ttbar"]["partitions"]
    assert summary["datasets"]["unreadable"]["files"]["skipped"][0]["file"].endswith("not_root.root")
    with uproot.open(paths["histograms"]) as histograms:
        stored = histograms["ttbar/deta_sr/n_jets"]
        position = result.histograms["ttbar"]["n_jets"].axes["region"].metadata.index("deta_sr")
        expected = result.histograms["ttbar"]["n_jets"][{"region": position}]
        np.testing.assert_array_equal(stored.values(flow=True), expected.values(flow=True))
        np.testing.assert_array_equal(stored.variances(flow=True), expected.variances(flow=True))
        assert histograms["unreadable/mjj300_sr/mjj"].values().sum() == 0
        assert "open_data_2015/mjj300_sr/mjj" in histograms and "open_data_2015/mjj300_sr/mj_min" not in histograms
    table = read_parquet(tmp_path / "out" / "features" / "ttbar.parquet")
    assert table.fields[:4] == ["dataset", "run", "luminosityBlock", "event"]
    assert set(table.dataset.tolist()) == {"ttbar"}
    assert table[table.fields[1:]].tolist() == result.tables["ttbar"].tolist()
    assert len(read_parquet(tmp_path / "out" / "features" / "unreadable.parquet")) == 0
    assert not list((tmp_path / "out").rglob("*.tmp"))


def test_processor_is_picklable_and_stateless(shared_nanoaod):
    processor = AnomalyFeatureProcessor("lhco", feature_config=FeatureConfig(met_collection="PuppiMET"))
    restored = pickle.loads(pickle.dumps(processor))
    assert restored.features == "lhco" and restored.feature_config.met_collection == "PuppiMET"
    assert vars(restored).keys() == vars(processor).keys()


def test_cli_on_a_scheduler_by_address(shared_nanoaod, client, tmp_path, capsys):
    fileset = tmp_path / "fileset.json"
    fileset.write_text(json.dumps({"ttbar": {"files": {str(shared_nanoaod / "nano_tt_v15.root"): "Events"}}}))
    status = main(["features", str(fileset), "-o", str(tmp_path / "out"), "--scheduler", client.scheduler.address,
                   "--mode", "virtual", "--met", "PuppiMET", "--features", "lhco,context", "--no-progress"])
    assert status == 0
    output = capsys.readouterr().out
    assert "ttbar: 200 events, 7 features" in output and "files skipped: 0" in output
    table = read_parquet(tmp_path / "out" / "features" / "ttbar.parquet")
    assert {"mjj", "tau21_j2", "met", "context_sr", "mjj3500_sr"} <= set(table.fields)
    assert "deta_sr" not in table.fields  # the Δη split needs deta_jj, which was not asked for
    assert (tmp_path / "out" / "histograms.root").is_file()


def test_cli_errors_are_one_line_with_a_nonzero_status(tmp_path, capsys):
    assert main(["features", str(tmp_path / "absent.json"), "-o", str(tmp_path / "out"), "--workers", "1"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("coffea-ad features: error: cannot read fileset") and "\n" not in error
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"ttbar": {"files": 3}}))
    assert main(["features", str(bad), "-o", str(tmp_path / "out")]) == 1
    assert "'files'" in capsys.readouterr().err


def test_generated_wprime_and_qcd_samples(generated_sample, client):
    signal = generated_sample("wprime_xy", 300, seed=3)
    background = generated_sample("qcd_dijet", 300, seed=3)
    checked, skipped = check_fileset(normalize_fileset({"wprime": [str(signal)], "qcd": [str(background)]}))
    assert not skipped
    result = run_processor(checked, mode="dask", client=client, features="all", make_processor=AnomalyFeatureProcessor)
    assert result.left_out == {"wprime": {}, "qcd": {}}
    wprime, qcd = result.tables["wprime"], result.tables["qcd"]
    assert len(wprime) == 300 and len(qcd) == 300
    # W' (3.5 TeV) -> X (500 GeV) Y (100 GeV), both to quarks: the LHC Olympics signal.
    assert np.median(ak.to_numpy(ak.drop_none(wprime.mjj))) == pytest.approx(3500, rel=0.06)

    def near(column, mass):
        return np.mean(np.abs(ak.to_numpy(ak.fill_none(column, 0.0)) / mass - 1) < 0.15)

    # X loses a prong outside the R = 0.8 jet in part of the events (see test_generate_physics), so only a
    # fraction sits at (mj_min, mj_max) = (100, 500) GeV; QCD jets almost never do.
    assert near(wprime.mj_max, 500) > 0.25 and near(qcd.mj_max, 500) < 0.05
    assert near(wprime.mj_min, 100) > 0.25 and near(wprime.mj_min, 100) > 3 * near(qcd.mj_min, 100)
    # Two-prong jets have a smaller tau21 than QCD jets.
    assert np.median(ak.to_numpy(ak.drop_none(wprime.tau21_j2))) < np.median(ak.to_numpy(ak.drop_none(qcd.tau21_j2)))
    signal_region = result.cutflows["wprime"]["partitions"]["mjj3500"]
    assert signal_region["sr"] > signal_region["sb"]
    assert sum(signal_region.values()) == 300
    assert set(FEATURES) == set(result.features["qcd"])


def test_histograms_weighted_by_a_branch(shared_nanoaod):
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    path = shared_nanoaod / "nano_tt_v12.root"
    events = NanoEventsFactory.from_root(
        {str(path): "Events"}, schemaclass=NanoAODSchema, mode="eager", metadata={"dataset": "ttbar"}
    ).events()
    output = AnomalyFeatureProcessor("context", weight_branch="genWeight").process(events)["ttbar"]
    weights = ak.to_numpy(uproot.open(path)["Events"]["genWeight"].array()).astype(np.float64)
    histogram = output["histograms"]["ht"]
    assert histogram.axes["region"].metadata == ("context_sr", "context_cr", "context_missing")
    assert histogram.sum(flow=True).value == pytest.approx(weights.sum())
    assert histogram.sum(flow=True).variance == pytest.approx((weights**2).sum())
    assert output["cutflow"]["n_events"] == 200 and output["cutflow"]["regions"].values().sum() == 200


@pytest.mark.parametrize("mode", ["dask", "virtual"])
def test_progress_is_one_bar_of_a_few_lines_in_a_log(shared_nanoaod, client, capsys, mode):
    checked, _ = check_fileset(normalize_fileset({"ttbar": [str(shared_nanoaod / "nano_tt_v12.root")]}))
    result = run_processor(
        checked, mode=mode, client=client, features="lhco", step_size=50, progress=True,
        make_processor=AnomalyFeatureProcessor,
    )
    assert result.cutflows["ttbar"]["n_events"] == len(result.tables["ttbar"])
    log = capsys.readouterr().err  # not a terminal: whole lines, no carriage returns
    assert "\r" not in log
    lines = log.splitlines()
    assert 1 <= len(lines) <= 3 and lines[-1].startswith("AnomalyFeatureProcessor on 1 dataset: 100%"), log


@pytest.mark.parametrize("order", ["tt_first", "dy_first"])
def test_a_dataset_whose_files_store_a_branch_in_different_types_keeps_every_value(shared_nanoaod, client, order):
    """``Electron_cutBased`` is uint8 in the v12 ttbar file and int32 in the Drell-Yan file: read with one form
    (dask mode reads a dataset with its first file's), the electron counts came out wrong (34 instead of 42) or
    the run crashed, depending on the order. The files run as two groups now, and every count is each file's own."""
    paths = [str(shared_nanoaod / "nano_tt_v12.root"), str(shared_nanoaod / "nano_dy.root")]
    if order == "dy_first":
        paths.reverse()
    checked, _ = check_fileset(normalize_fileset({"mixed": paths}))
    types = {path: checked["mixed"].file_types[path]["Electron_cutBased"] for path in paths}
    assert sorted(types.values()) == ["int32_t[]", "uint8_t[]"]
    names = ["n_electrons", "n_muons", "ht"]
    expected = {}
    for path in paths:
        single, _ = check_fileset(normalize_fileset({"one": [path]}))
        table = run_processor(single, features=names, make_processor=AnomalyFeatureProcessor).tables["one"]
        expected.update({(path, int(event)): (int(n_e), int(n_mu)) for event, n_e, n_mu in
                         zip(table["event"], table["n_electrons"], table["n_muons"])})
    for mode in ("dask", "virtual"):
        table = run_processor(checked, features=names, mode=mode, client=client,
                              make_processor=AnomalyFeatureProcessor).tables["mixed"]
        counts = sorted((int(event), int(n_e), int(n_mu)) for event, n_e, n_mu in
                        zip(table["event"], table["n_electrons"], table["n_muons"]))
        assert counts == sorted((event, *count) for (_, event), count in expected.items()), mode
    assert len(expected) == 240 and sum(n_e for n_e, _ in expected.values()) == 42


@pytest.mark.parametrize("step_size", [7, 100, 333, 1_000_000])
def test_steps_are_those_of_coffea_preprocess_without_reopening_the_files(generated_sample, step_size):
    """Dask mode splits the files as coffea's preprocess does, from the entries and UUIDs the file check read;
    in steps of 7, where preprocess makes steps past the end of these files (and coffea refuses them), each file is
    still covered once, in steps of at most 8."""
    from coffea.dataset_tools import preprocess

    files = {str(generated_sample("qcd_dijet", 120, seed=31)): "Events", str(generated_sample("zz4l", 400)): "Events"}
    checked, _ = check_fileset(normalize_fileset({"data": {"files": files}}))
    ours = checked["data"].steps(step_size)
    for described in ours.values():
        steps = np.array(described["steps"])
        assert steps[0, 0] == 0 and steps[-1, 1] == described["num_entries"]
        assert np.all(steps[1:, 0] == steps[:-1, 1]) and np.all(steps[:, 1] > steps[:, 0])
    if step_size == 7:
        assert max(stop - start for described in ours.values() for start, stop in described["steps"]) == 8
        return
    available, _ = preprocess({"data": {"files": files}}, step_size=step_size, skip_bad_files=False)
    theirs = available["data"]["files"]
    assert list(ours) == list(theirs)
    for path, described in ours.items():
        assert described == {key: theirs[path][key] for key in ("object_path", "steps", "num_entries", "uuid")}
