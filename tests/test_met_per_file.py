"""The MET collection is found per file (MET, else PFMET, else PuppiMET), on the real NanoAOD v12 and v15 files.

The v12 file has ``MET_*`` (and ``PuppiMET_*``), the v15 file ``PFMET_*`` and ``PuppiMET_*`` and no ``MET_*``:
a dataset of both keeps ``met`` for every event, each with the value of its own file's collection, in both
execution modes, and says which collection each file gave.
"""

from __future__ import annotations

import json
import warnings

import awkward as ak
import hist
import numpy as np
import pytest
import uproot
from coffea import processor
from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

from coffea_ad.cli import main
from coffea_ad.errors import ConfigurationError
from coffea_ad.features import EventContext, FeatureConfig, MissingBranchError, compute_features, select_features
from coffea_ad.processing import check_fileset, normalize_fileset, run_processor, write_outputs
from coffea_ad.processing.tables import read_parquet
from processors import AnomalyFeatureProcessor

#: Which collection ``met_collection="auto"`` must take from each file.
EXPECTED = {"nano_tt_v12.root": "MET", "nano_tt_v15.root": "PFMET"}


@pytest.fixture(scope="module")
def files(shared_nanoaod):
    return {name: str(shared_nanoaod / name) for name in EXPECTED}


@pytest.fixture(scope="module")
def raw_met(files):
    """(run, luminosityBlock, event) -> {collection: (pt, phi)} for every event of both files, read with uproot."""
    values = {}
    for path in files.values():
        with uproot.open(path) as handle:
            tree = handle["Events"]
            collections = [name for name in ("MET", "PFMET", "PuppiMET") if f"{name}_pt" in tree.keys()]
            branches = ["run", "luminosityBlock", "event", *(f"{c}_{f}" for c in collections for f in ("pt", "phi"))]
            arrays = tree.arrays(branches, library="np")
        for row in range(len(arrays["event"])):
            key = (int(arrays["run"][row]), int(arrays["luminosityBlock"][row]), int(arrays["event"][row]))
            values[key] = {c: (float(arrays[f"{c}_pt"][row]), float(arrays[f"{c}_phi"][row])) for c in collections}
    return values


@pytest.fixture(scope="module")
def mixed(files):
    """One dataset of the v12 and the v15 file, checked."""
    checked, skipped = check_fileset(normalize_fileset({"ttbar": [files["nano_tt_v12.root"],
                                                                   files["nano_tt_v15.root"]]}))
    assert not skipped
    return checked


def expected_met(table, raw_met, collection_of):
    """The raw (pt, phi) of each table row, from the collection ``collection_of(key)`` of its event."""
    keys = zip(table.run.tolist(), table.luminosityBlock.tolist(), table.event.tolist())
    return np.array([raw_met[key][collection_of(key)] for key in keys])


def test_the_two_files_really_differ_in_met(raw_met):
    """What the other tests rely on: v15 has no MET, and PFMET differs from PuppiMET (so the choice shows)."""
    v15 = [collections for collections in raw_met.values() if "MET" not in collections]
    assert len(v15) == 200 and all(set(c) == {"PFMET", "PuppiMET"} for c in v15)
    assert sum(c["PFMET"][0] != pytest.approx(c["PuppiMET"][0], rel=1e-3) for c in v15) > 150
    v12 = [collections for collections in raw_met.values() if "MET" in collections]
    assert len(v12) == 200 and sum(c["MET"][0] != pytest.approx(c["PuppiMET"][0], rel=1e-3) for c in v12) > 150


def test_v15_alone_reads_pfmet_without_being_told(files, raw_met):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # coffea: cross-references absent from small files
        events = NanoEventsFactory.from_root({files["nano_tt_v15.root"]: "Events"}, schemaclass=NanoAODSchema,
                                             mode="eager").events()
    assert EventContext(events, FeatureConfig()).met_collection == "PFMET"
    features = compute_features(events, ["met", "met_phi"])
    pfmet = np.array([raw_met[key]["PFMET"] for key in zip(events.run.tolist(), events.luminosityBlock.tolist(),
                                                               events.event.tolist())])
    np.testing.assert_allclose(ak.to_numpy(features.met), pfmet[:, 0], rtol=1e-7)
    np.testing.assert_allclose(ak.to_numpy(features.met_phi), pfmet[:, 1], rtol=1e-7)


def test_resolution_order_and_the_feature_selection():
    both = {"MET_pt", "MET_phi", "PFMET_pt", "PFMET_phi", "PuppiMET_pt", "PuppiMET_phi"}
    assert FeatureConfig().find_met_collection(both) == "MET"
    assert FeatureConfig().find_met_collection(both - {"MET_phi"}) == "PFMET"
    assert FeatureConfig().find_met_collection({"PuppiMET_pt", "PuppiMET_phi"}) == "PuppiMET"
    assert FeatureConfig().find_met_collection({"Jet_pt"}) is None
    assert FeatureConfig().resolve({"PFMET_pt", "PFMET_phi"}).met_collection == "PFMET"
    assert FeatureConfig().resolve({"Jet_pt"}).met_collection == "auto"
    assert FeatureConfig(met_collection="PuppiMET").find_met_collection(both) == "PuppiMET"
    with pytest.raises(MissingBranchError, match="MET_pt.*auto.*PFMET_pt, PuppiMET_pt"):
        select_features("context", {"Jet_pt", "Jet_eta"})
    # A chosen collection that is absent only matters to the MET features.
    assert [f.name for f in select_features("ht", {"Jet_pt", "Jet_eta"}, config=FeatureConfig(met_collection="X"))]


@pytest.mark.parametrize("mode", ["virtual", "dask"])
def test_a_v12_plus_v15_dataset_keeps_each_files_met(mode, mixed, raw_met, tmp_path):
    result = run_processor(mixed, features=["context", "met_phi", "mjj"], mode=mode, step_size=120,
                           make_processor=AnomalyFeatureProcessor)
    assert result.features["ttbar"] == ["ht", "met", "met_phi", "mjj"] and result.left_out["ttbar"] == {}
    table = result.tables["ttbar"]
    assert len(table) == 400 and result.cutflows["ttbar"]["n_events"] == 400
    assert not ak.any(ak.is_none(table.met)) and not ak.any(ak.is_none(table.met_phi))
    v12_events = {key for key, collections in raw_met.items() if "MET" in collections}
    expected = expected_met(table, raw_met, lambda key: "MET" if key in v12_events else "PFMET")
    np.testing.assert_allclose(ak.to_numpy(table.met), expected[:, 0], rtol=1e-7)
    np.testing.assert_allclose(ak.to_numpy(table.met_phi), expected[:, 1], rtol=1e-7)
    # The histograms of the two groups of files were added: per partition, every event once.
    met = result.histograms["ttbar"]["met"]
    context = [met.axes["region"].metadata.index(f"context_{region}") for region in ("sr", "cr", "missing")]
    summed = sum(met[{"region": hist.loc(position)}].values(flow=True) for position in context)
    reference = hist.Hist(hist.axis.Regular(100, 0.0, 2000.0)).fill(expected[:, 0]).values(flow=True)
    np.testing.assert_array_equal(summed, reference)
    assert sum(result.cutflows["ttbar"]["partitions"]["context"].values()) == 400
    # Which collection each file gave, in the result and in cutflow.json.
    by_name = {path.rsplit("/", 1)[-1]: collection for path, collection in result.met_collections["ttbar"].items()}
    assert by_name == EXPECTED
    paths = write_outputs(result, tmp_path)
    recorded = json.loads(paths["cutflow"].read_text())["datasets"]["ttbar"]["files"]["met_collection"]
    assert recorded == result.met_collections["ttbar"]
    written = read_parquet(tmp_path / "features" / "ttbar.parquet")
    np.testing.assert_allclose(ak.to_numpy(written.met), ak.to_numpy(table.met))


def test_explicit_puppimet_is_used_for_every_file(mixed, raw_met):
    result = run_processor(mixed, features="context", mode="virtual",
                           feature_config=FeatureConfig(met_collection="PuppiMET"),
                           make_processor=AnomalyFeatureProcessor)
    table = result.tables["ttbar"]
    np.testing.assert_allclose(ak.to_numpy(table.met), expected_met(table, raw_met, lambda key: "PuppiMET")[:, 0],
                               rtol=1e-7)
    assert set(result.met_collections["ttbar"].values()) == {"PuppiMET"}


def test_an_explicit_absent_collection_names_the_file_and_the_collection(mixed, files):
    for optional in (False, True):
        with pytest.raises(ConfigurationError, match=r"nano_tt_v15\.root.*'MET'.*MET_pt") as raised:
            run_processor(mixed, features="context", optional=optional, mode="virtual",
                          feature_config=FeatureConfig(met_collection="MET"), make_processor=AnomalyFeatureProcessor)
        assert "nano_tt_v12.root" not in str(raised.value)
    # Without a MET feature the choice does not matter.
    result = run_processor(mixed, features=["ht", "mjj"], mode="virtual",
                           feature_config=FeatureConfig(met_collection="MET"),
                           make_processor=AnomalyFeatureProcessor)
    assert len(result.tables["ttbar"]) == 400 and set(result.met_collections["ttbar"].values()) == {None}


class _UserProcessor(processor.ProcessorABC):
    """A user's processor calling compute_features with the default configuration, as OnnxScorer does."""

    def process(self, events):
        features = compute_features(events, "context")
        table = ak.zip({"run": events.run, "luminosityBlock": events.luminosityBlock, "event": events.event,
                        "met": features.met})
        return {"table": [ak.materialize(table)]}

    def postprocess(self, accumulator):
        return accumulator


def test_a_users_processor_on_virtual_chunks_resolves_each_chunk(files, raw_met):
    """processor.Runner builds events per chunk: the default configuration resolves there, file by file."""
    runner = processor.Runner(executor=processor.IterativeExecutor(status=False), schema=NanoAODSchema,
                              chunksize=150)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        output = runner({"ttbar": {"files": {path: "Events" for path in files.values()}}},
                        processor_instance=_UserProcessor())
    table = ak.concatenate(output["table"])
    assert len(table) == 400
    v12_events = {key for key, collections in raw_met.items() if "MET" in collections}
    expected = expected_met(table, raw_met, lambda key: "MET" if key in v12_events else "PFMET")
    np.testing.assert_allclose(ak.to_numpy(table.met), expected[:, 0], rtol=1e-7)


def test_cli_default_and_explicit_absent_met(files, tmp_path, capsys):
    fileset = tmp_path / "fileset.json"
    fileset.write_text(json.dumps({"ttbar": list(files.values())}))
    status = main(["features", str(fileset), "-o", str(tmp_path / "out"), "--workers", "1", "--features", "context",
                   "--no-progress"])
    assert status == 0
    summary = json.loads((tmp_path / "out" / "cutflow.json").read_text())["datasets"]["ttbar"]
    assert "met" in summary["features"]
    assert {path.rsplit("/", 1)[-1]: c for path, c in summary["files"]["met_collection"].items()} == EXPECTED
    capsys.readouterr()
    status = main(["features", str(fileset), "-o", str(tmp_path / "out2"), "--workers", "1", "--met", "MET",
                   "--features", "context", "--no-progress"])
    error = capsys.readouterr().err.strip()
    assert status == 1 and "nano_tt_v15.root" in error and "'MET'" in error and "\n" not in error
    assert not (tmp_path / "out2").exists()
