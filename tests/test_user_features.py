"""A physicist's own analysis: user-defined features computed like built-in ones (eager, virtual, dask, on a
cluster whose workers cannot import the user's module), models that travel with their scorer (a worker that cannot
see the model's folder, a replaced file, a model on arbitrary inputs with a prepare function), and the example
analysis of the README run with processor.Runner and apply_to_fileset on the real CMS NanoAOD files."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from coffea_ad.cli import main
from coffea_ad.errors import ConfigurationError, InputFileError
from coffea_ad.features import FEATURE_SETS, FEATURES, compute_features, define_feature, load_feature_module
from coffea_ad.onnx.scorer import OnnxScorer

REPOSITORY = Path(__file__).resolve().parents[1]
EXAMPLE = REPOSITORY / "examples" / "dimuon_user_feature.py"


@pytest.fixture
def dimuon(shared_nanoaod):
    return shared_nanoaod / "nano_dimuon.root"


def events_of(path: Path, mode: str = "eager"):
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    return NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=NanoAODSchema, mode=mode).events()


def dimuon_mass_from_branches(path: Path) -> np.ndarray:
    """The opposite-charge mass of the two leading muons from the raw branches (NaN where undefined)."""
    arrays = uproot.open(path)["Events"].arrays(["Muon_pt", "Muon_eta", "Muon_phi", "Muon_mass", "Muon_charge"])
    masses = np.full(len(arrays), np.nan)
    for row, event in enumerate(arrays.tolist()):
        if len(event["Muon_pt"]) < 2 or event["Muon_charge"][0] == event["Muon_charge"][1]:
            continue
        pt, eta, phi, mass = (np.asarray(event[f"Muon_{name}"][:2], float) for name in ("pt", "eta", "phi", "mass"))
        energy = np.sqrt((pt * np.cosh(eta)) ** 2 + mass**2).sum()
        px, py, pz = (pt * np.cos(phi)).sum(), (pt * np.sin(phi)).sum(), (pt * np.sinh(eta)).sum()
        masses[row] = np.sqrt(max(energy**2 - px**2 - py**2 - pz**2, 0.0))
    return masses


def as_numpy(column) -> np.ndarray:
    return ak.to_numpy(ak.fill_none(column, np.nan)).astype(float)


def linear_model(path: Path, feature_names: list[str], weights: list[float]) -> Path:
    """An ONNX graph with coffea_ad metadata whose score is ``features @ weights`` (order matters)."""
    import onnx
    from onnx import TensorProto, helper

    inputs = helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", len(feature_names)])
    score = helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])
    weight = helper.make_tensor("weights", TensorProto.FLOAT, [len(weights)], weights)
    graph = helper.make_graph([helper.make_node("MatMul", ["features", "weights"], ["score"])], "linear", [inputs],
                              [score], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    metadata = {"feature_names": json.dumps(feature_names), "method": "linear", "region": "",
                "coffea_ad_version": "test", "training_table_hash": "none", "params": "{}"}
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


# --- user features ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["eager", "virtual", "dask"])
def test_a_user_feature_is_the_dimuon_mass_in_every_mode(dimuon, mode):
    assert load_feature_module(EXAMPLE) == ["mumu_mass"]
    features = compute_features(events_of(dimuon, mode), ["mumu_mass", "n_muons"])
    features = features.compute() if mode == "dask" else ak.materialize(features)
    expected = dimuon_mass_from_branches(dimuon)
    np.testing.assert_allclose(as_numpy(features.mumu_mass), expected, rtol=2e-5, equal_nan=True)
    # the Z peak of the collision data: 5 of its 22 opposite-charge pairs within 3 GeV of m_Z, none in the 6 GeV
    # on either side
    pairs = expected[np.isfinite(expected)]
    assert len(pairs) == 22 and np.sum(np.abs(pairs - 91.19) < 3) == 5
    assert np.sum((np.abs(pairs - 91.19) >= 3) & (np.abs(pairs - 91.19) < 9)) == 0
    assert FEATURES["mumu_mass"].unit == "GeV" and FEATURE_SETS["user"] == ("mumu_mass",)


def test_definitions_and_results_are_checked_naming_the_feature(dimuon):
    events = events_of(dimuon)
    axis = ("regular", 10, 0.0, 1.0)
    with pytest.raises(ConfigurationError, match="'mjj' is a built-in feature"):
        define_feature(lambda events: events.MET.pt, name="mjj", branches=["MET_pt"], axis=axis)
    with pytest.raises(ConfigurationError, match="axis must be"):
        define_feature(lambda events: events.MET.pt, name="met_copy", branches=["MET_pt"], axis=("regular", 0, 1, 0))
    with pytest.raises(ConfigurationError, match="'run' is a table column"):
        define_feature(lambda events: events.run, name="run", branches=["run"], axis=axis)

    @define_feature(branches=["Muon_pt"], axis=axis)
    def muon_pts(events):
        return events.Muon.pt

    with pytest.raises(ConfigurationError, match=r"user feature 'muon_pts' .* must be one number per event"):
        compute_features(events, "muon_pts")

    @define_feature(branches=["Muon_pt"], axis=axis, nullable=False)
    def leading_muon_pt(events):
        return ak.firsts(events.Muon.pt)

    with pytest.raises(ConfigurationError, match="'leading_muon_pt' .* declared not nullable"):
        compute_features(events, "leading_muon_pt")

    @define_feature(branches=["Muon_pt"], axis=axis)
    def too_short(events):
        return np.zeros(3)

    with pytest.raises(ConfigurationError, match="'too_short' .* has 3 values for 40 events"):
        compute_features(events, "too_short")


def test_a_feature_module_that_is_missing_or_defines_nothing_is_refused(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        load_feature_module(tmp_path / "missing.py")
    empty = tmp_path / "empty_features.py"
    empty.write_text("x = 1\n")
    with pytest.raises(ConfigurationError, match="defines no feature"):
        load_feature_module(empty)


@pytest.mark.parametrize("mode", ["dask", "virtual"])
def test_coffea_ad_features_tables_and_histograms_a_user_feature_on_a_cluster(dimuon, tmp_path, mode, capsys):
    """The workers of the LocalCluster are new processes that cannot import the example by its module name: the
    feature reaches them inside the processor."""
    fileset = tmp_path / "fileset.json"
    fileset.write_text(json.dumps({"data": {"files": {str(dimuon): "Events"}}}))
    out = tmp_path / "out"
    argv = ["features", str(fileset), "-o", str(out), "--feature-module", str(EXAMPLE), "--features",
            "mumu_mass,n_muons", "-j", "1", "--mode", mode, "--no-progress"]
    assert main(argv) == 0, capsys.readouterr().err
    from coffea_ad.processing.tables import column_array, open_table

    table = open_table(out / "features" / "data.parquet")
    expected = dict(zip(uproot.open(dimuon)["Events"]["event"].array(library="np"), dimuon_mass_from_branches(dimuon)))
    written = dict(zip(column_array(table, "event"), column_array(table, "mumu_mass", dtype=float)))
    assert written.keys() == expected.keys()
    np.testing.assert_allclose([written[event] for event in expected], list(expected.values()), rtol=2e-5,
                               equal_nan=True)
    assert column_array(table, "inclusive_all").all()
    histogram = uproot.open(out / "histograms.root")["data/inclusive_all/mumu_mass"]
    assert histogram.values(flow=True).sum() == np.isfinite(list(expected.values())).sum()


# --- models that travel with the scorer ------------------------------------------------------------------------


def test_a_model_on_a_user_feature_scores_on_workers_that_cannot_see_the_model(dimuon, tmp_path):
    """The model is deleted after the scorer is built: the workers' view of its folder is empty."""
    from coffea_ad.processing import dask_client

    load_feature_module(EXAMPLE)
    folder = tmp_path / "models"
    folder.mkdir()
    path = linear_model(folder / "dimuon.onnx", ["mumu_mass", "n_muons"], [1.0, 1000.0])
    scorer = OnnxScorer(path)
    eager = as_numpy(scorer(events_of(dimuon)))
    n_muons = as_numpy(compute_features(events_of(dimuon), "n_muons").n_muons)
    expected = dimuon_mass_from_branches(dimuon) + 1000.0 * n_muons
    np.testing.assert_allclose(eager, expected, rtol=1e-5, equal_nan=True)
    path.unlink()
    assert not any(folder.iterdir())
    with dask_client(workers=1) as client:
        lazy = client.compute(scorer(events_of(dimuon, "dask")), sync=True)
    np.testing.assert_array_equal(as_numpy(lazy), eager)


def test_a_replaced_model_file_is_never_mixed_with_the_old_metadata(shared_nanoaod, tmp_path):
    """The scorer built before keeps scoring with the model it read; one built after reads the new file with its
    own input order. Today's bug: the new bytes were scored in the old order."""
    events = events_of(shared_nanoaod / "nano_tt_v12.root")
    features = compute_features(events, ["mj_min", "mj_max"])
    mj_min, mj_max = as_numpy(features.mj_min), as_numpy(features.mj_max)
    assert np.sum(mj_max > mj_min) >= 10
    path = linear_model(tmp_path / "model.onnx", ["mj_min", "mj_max"], [1.0, 0.0])
    before = OnnxScorer(path)
    np.testing.assert_allclose(as_numpy(before(events)), mj_min, rtol=1e-6, equal_nan=True)
    os.utime(linear_model(path, ["mj_max", "mj_min"], [1.0, 0.0]), (1, 1))
    np.testing.assert_allclose(as_numpy(before(events)), mj_min, rtol=1e-6, equal_nan=True)
    after = OnnxScorer(path)
    assert after.feature_names == ["mj_max", "mj_min"] and after.model_hash != before.model_hash
    np.testing.assert_allclose(as_numpy(after(events)), mj_max, rtol=1e-6, equal_nan=True)


def test_a_model_on_arbitrary_inputs_takes_a_prepare_function_with_checked_inputs(dimuon, tmp_path):
    path = linear_model(tmp_path / "muons.onnx", ["leading_muon_pt", "muon_count"], [1.0, 100.0])
    events = events_of(dimuon)

    def prepare(events):
        return {"muon_count": ak.num(events.Muon), "leading_muon_pt": ak.firsts(events.Muon.pt)}

    scorer = OnnxScorer(path, prepare=prepare)
    arrays = uproot.open(dimuon)["Events"].arrays(["Muon_pt"])
    expected = [event[0] + 100.0 * len(event) if len(event) else np.nan for event in arrays.Muon_pt.tolist()]
    np.testing.assert_allclose(as_numpy(scorer(events)), expected, rtol=1e-6, equal_nan=True)
    lazy = scorer(events_of(dimuon, "dask")).compute()
    np.testing.assert_allclose(as_numpy(lazy), expected, rtol=1e-6, equal_nan=True)
    with pytest.raises(ConfigurationError, match=r"cannot build \['leading_muon_pt', 'muon_count'\]"):
        OnnxScorer(path)
    with pytest.raises(ConfigurationError, match=r"missing: \['muon_count'\], not inputs of the model: \['count'\]"):
        OnnxScorer(path, prepare=lambda events: {"leading_muon_pt": ak.firsts(events.Muon.pt), "count": 1})(events)
    jagged = OnnxScorer(
        path, prepare=lambda events: {"leading_muon_pt": events.Muon.pt, "muon_count": ak.num(events.Muon)}
    )
    with pytest.raises(ConfigurationError, match="input 'leading_muon_pt' .* must be one number per event"):
        jagged(events)


# --- the example of a user's analysis ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dimuon_model(tmp_path_factory):
    """The README chain of the example: coffea-ad features with the user's module, coffea-ad train on its column."""
    from conftest import SHARED_NANOAOD

    if not SHARED_NANOAOD.is_dir():
        pytest.skip(f"real NanoAOD files not found at {SHARED_NANOAOD} (../shared is only beside developer checkouts)")
    folder = tmp_path_factory.mktemp("dimuon_analysis")
    files = [str(SHARED_NANOAOD / name) for name in ("nano_dimuon.root", "nano_dy.root")]
    fileset = folder / "fileset.json"
    fileset.write_text(json.dumps({"data": {"files": {path: "Events" for path in files}}}))
    before, user = dict(FEATURES), FEATURE_SETS["user"]
    try:
        assert main(["features", str(fileset), "-o", str(folder / "out"), "--feature-module", str(EXAMPLE),
                     "--features", "mumu_mass,ht", "-j", "1", "--no-progress"]) == 0
    finally:
        FEATURES.clear()
        FEATURES.update(before)
        FEATURE_SETS["user"] = user
    assert main(["train", "autoencoder", str(folder / "out" / "features" / "data.parquet"), "--features",
                 "mumu_mass,ht", "--epochs", "20", "-o", str(folder / "model"), "--no-progress"]) == 0
    return files, folder / "model" / "model.onnx"


def test_the_example_analysis_adds_a_score_in_three_lines_with_runner_and_apply_to_fileset(dimuon_model):
    """The example's processor (coffea's documentation style) on the real files: processor.Runner with the
    FuturesExecutor and dask apply_to_fileset on a LocalCluster give the same histograms, and the pairs above the
    score cut are those the scorer puts there event by event."""
    import importlib.util

    from coffea import processor
    from coffea.dataset_tools import apply_to_fileset, preprocess
    from coffea.dataset_tools.filespec import DataGroupSpec
    from coffea.nanoevents import NanoAODSchema

    from coffea_ad.processing import dask_client

    files, model = dimuon_model
    source = EXAMPLE.read_text()
    assert source.count("# coffea_ad (") == 3
    spec = importlib.util.spec_from_file_location("dimuon_user_feature", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)

    pairs, masses = [], []
    for path in files:
        events = events_of(Path(path))
        muons = events.Muon
        selected = events[(ak.num(muons) == 2) & (ak.sum(muons.charge, axis=1) == 0)]
        pairs.append(as_numpy(OnnxScorer(model)(selected)))
        masses.append(as_numpy((selected.Muon[:, 0] + selected.Muon[:, 1]).mass))
    scores = np.concatenate(pairs)
    cut = float(np.median(scores))
    # two datasets: the collision data and the simulation have different branches (one form per dataset in dask)
    fileset = {Path(path).stem: {"files": {path: "Events"}} for path in files}

    runner = processor.Runner(executor=processor.FuturesExecutor(workers=2, status=False), schema=NanoAODSchema)
    with_runner = runner(fileset, processor_instance=example.DimuonProcessor(str(model), cut))
    with dask_client(workers=2) as client:
        available, _ = preprocess(DataGroupSpec.model_validate(fileset), step_size=20, save_form=False)
        graph = apply_to_fileset(example.DimuonProcessor(str(model), cut), available, schemaclass=NanoAODSchema)
        (with_dask,) = client.compute([graph], sync=True)
    with_dask = {name: with_dask[name][name] for name in fileset}

    assert sum(with_runner[name]["entries"] for name in fileset) == len(scores)
    for dataset in fileset:
        assert with_runner[dataset]["entries"] == with_dask[dataset]["entries"]
        for name in ("mass", "mass_anomalous"):
            np.testing.assert_allclose(
                with_runner[dataset][name].values(flow=True), with_dask[dataset][name].values(flow=True)
            )
    above = sum(with_runner[name]["mass_anomalous"].sum(flow=True).value for name in fileset)
    assert above == np.sum(scores > cut) > 0
    # the Z peak of the collision data: 4 selected pairs (exactly two muons) in 87.5-95 GeV
    peak = with_runner["nano_dimuon"]["mass"][hist_loc(87.5):hist_loc(95.0)].sum().value
    assert peak == np.sum((masses[0] >= 87.5) & (masses[0] < 95.0)) == 4


def hist_loc(value: float):
    import hist

    return hist.loc(value)


# --- a cluster started by hand, whose worker cannot see the user's folder ----------------------------------------


def hide_command(folder: Path, command: list[str]) -> list[str]:
    """``command`` in a private mount namespace where ``folder`` is an empty tmpfs (``unshare -Urm``)."""
    script = f"mount -t tmpfs none {shlex.quote(str(folder))} && exec " + " ".join(map(shlex.quote, command))
    return ["unshare", "-Urm", "sh", "-c", script]


@pytest.fixture
def hand_started_cluster(tmp_path):
    """``dask scheduler`` and one ``dask worker`` started as separate commands; the worker's view of
    ``tmp_path / "analysis"`` (the user's models and feature modules) is an empty folder."""
    analysis = tmp_path / "analysis"
    analysis.mkdir()
    (analysis / "visible").write_text("")
    probe = subprocess.run(hide_command(analysis, ["ls", "-A", str(analysis)]), capture_output=True, text=True)
    if probe.returncode != 0 or probe.stdout.strip():
        pytest.skip(f"cannot hide a folder from a process here (unshare -Urm: {probe.stderr.strip() or probe.stdout})")
    (analysis / "visible").unlink()
    dask = str(Path(sys.executable).with_name("dask"))
    scheduler_file = tmp_path / "scheduler.json"
    scheduler = subprocess.Popen(
        [dask, "scheduler", "--scheduler-file", str(scheduler_file), "--no-dashboard", "--port", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    worker = None
    try:
        for _ in range(300):
            if scheduler_file.exists() and scheduler_file.stat().st_size:
                break
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text())["address"]
        worker = subprocess.Popen(
            hide_command(analysis, [dask, "worker", address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path,
        )
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(1, timeout=60)
        yield address, analysis
    finally:
        for process in (worker, scheduler):
            if process is not None:
                process.terminate()
                process.wait(timeout=30)


def test_coffea_ad_score_on_a_cluster_whose_worker_sees_neither_the_model_nor_the_feature_module(
    hand_started_cluster, dimuon, tmp_path, capsys
):
    """The issue's measurement: `dask scheduler` and `dask worker` started by hand, the worker unable to see the
    user's folder, died with FileNotFoundError. Model and feature module now reach the worker inside the tasks."""
    address, analysis = hand_started_cluster
    module = analysis / "my_features.py"
    module.write_text(EXAMPLE.read_text())
    model = linear_model(analysis / "dimuon.onnx", ["mumu_mass", "n_muons"], [1.0, 1000.0])
    fileset = tmp_path / "fileset.json"
    fileset.write_text(json.dumps({"data": {"files": {str(dimuon): "Events"}}}))
    out = tmp_path / "scored"
    argv = ["score", str(fileset), "--model", f"dimuon={model}", "--feature-module", str(module),
            "--control-region", "none", "--scheduler", address, "-o", str(out), "--no-progress"]
    assert main(argv) == 0, capsys.readouterr().err
    from coffea_ad.processing.tables import column_array, open_table

    table = open_table(out / "features" / "data.parquet")
    masses = dict(zip(uproot.open(dimuon)["Events"]["event"].array(library="np"), dimuon_mass_from_branches(dimuon)))
    scores = column_array(table, "dimuon", dtype=float) - 1000.0 * column_array(table, "n_muons", dtype=float)
    np.testing.assert_allclose(scores, [masses[event] for event in column_array(table, "event")], rtol=2e-5,
                               equal_nan=True)
