"""AnomalyScoreProcessor and coffea-ad score on a distributed cluster: scores as columns, thresholds at a
control-region efficiency, histograms in bins of score, no event lost or counted twice - also when a worker
dies in the middle of the run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from coffea_ad.cli import main
from coffea_ad.processing.tables import read_parquet
from coffea_ad.workflow.score import run_scoring

LHCO = ["mj_min", "delta_mj", "tau21_j1", "tau21_j2"]
REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def samples(generated_sample):
    return {"qcd": generated_sample("qcd_dijet", 400, seed=31), "wprime": generated_sample("wprime_xy", 200, seed=32)}


@pytest.fixture(scope="module")
def fileset(samples):
    return {name: {"files": {str(path): "Events"}} for name, path in samples.items()}


@pytest.fixture(scope="module")
def model(samples, tmp_path_factory):
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    from coffea_ad.features import compute_features
    from coffea_ad.models import AutoEncoder

    events = NanoEventsFactory.from_root({str(samples["qcd"]): "Events"}, schemaclass=NanoAODSchema, mode="eager")
    features = compute_features(events.events(), LHCO)
    table = {name: ak.to_numpy(ak.drop_none(features[name])) for name in LHCO}
    path = tmp_path_factory.mktemp("score_model") / "ae.onnx"
    autoencoder = AutoEncoder(latent=2, hidden=(16,), training={"epochs": 3, "progress": False}, seed=1)
    autoencoder.fit(table, LHCO).export_onnx(path)
    return path


def entries(path: Path) -> int:
    with uproot.open(path) as file:
        return file["Events"].num_entries


@pytest.fixture(scope="module")
def dask_run(fileset, model, tmp_path_factory):
    outdir = tmp_path_factory.mktemp("score_dask")
    return run_scoring(fileset, {"ae": model}, outdir, target_efficiency=0.1, workers=2, step_size=150,
                       tables="memory"), outdir


def test_every_event_is_scored_once_and_the_cutflow_conserves_events(dask_run, samples):
    (result, _, _), _ = dask_run
    for dataset, path in samples.items():
        table = result.tables[dataset]
        assert result.cutflows[dataset]["n_events"] == len(table) == entries(path)
        assert len(np.unique(ak.to_numpy(table.event))) == len(table)
        two_fat_jets = ~ak.to_numpy(ak.is_none(table.mj_min))
        assert np.array_equal(~ak.to_numpy(ak.is_none(table.ae)), two_fat_jets)


def test_threshold_keeps_the_target_fraction_of_the_control_region_and_histograms_agree_with_tables(dask_run):
    (result, summary, paths), _ = dask_run
    model = summary["ae"]
    threshold = model["threshold"]
    control = np.concatenate(
        [ak.to_numpy(ak.drop_none(table.ae[table.mjj3500_sb])) for table in result.tables.values()]
    )
    assert model["control_region_efficiency"] == pytest.approx(np.mean(control >= threshold))
    assert model["control_region_efficiency"] == pytest.approx(0.1, abs=1.5 / len(control) + 0.01)
    for dataset, table in result.tables.items():
        in_window = ak.to_numpy(table.mjj3500_sr) & ~ak.to_numpy(ak.is_none(table.ae))
        above = np.sum(ak.to_numpy(ak.fill_none(table.ae, -np.inf))[in_window] >= threshold)
        assert model["events"][dataset]["mjj3500_sr"]["above"] == above
    with uproot.open(paths["histograms"]) as file:
        passing = file["wprime/mjj3500_sr/mjj_ae_pass"].to_hist()
        assert passing.sum(flow=True).value == model["events"]["wprime"]["mjj3500_sr"]["above"]
        assert file["qcd/mjj3500_sb/ae_vs_mjj"].classname == "TH2D"
    assert json.loads(paths["scores"].read_text())["ae"]["threshold"] == threshold


def test_virtual_mode_gives_the_dask_tables_and_histograms(dask_run, fileset, model, tmp_path):
    (dask_result, dask_summary, _), _ = dask_run
    edges = {"ae": dask_summary["ae"]["edges"]}
    result, summary, _ = run_scoring(
        fileset, {"ae": model}, tmp_path, target_efficiency=0.1, score_edges_by_model=edges, mode="virtual", workers=1,
        tables="memory",
    )
    for dataset in fileset:
        ours, theirs = ak.to_list(result.tables[dataset].ae), ak.to_list(dask_result.tables[dataset].ae)
        assert ours == theirs
        ours, theirs = result.histograms[dataset]["ae_vs_mjj"], dask_result.histograms[dataset]["ae_vs_mjj"]
        assert np.array_equal(ours.values(flow=True), theirs.values(flow=True))
    assert summary["ae"]["threshold"] == dask_summary["ae"]["threshold"]


def test_a_worker_killed_mid_run_is_retried_and_no_event_is_lost(fileset, model, samples, tmp_path):
    from distributed import Client, LocalCluster
    from distributed.diagnostics.plugin import WorkerPlugin

    flag = tmp_path / "killed"

    class KillOnThirdPartition(WorkerPlugin):
        """Fault injection: the worker that starts the third feature partition dies (once per test)."""

        def setup(self, worker):
            self.started = 0

        def transition(self, key, start, finish, **kwargs):
            if finish == "executing" and "coffea-ad-features" in str(key):
                self.started += 1
                if self.started == 3 and not flag.exists():
                    flag.touch()
                    os._exit(1)

    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster) as client:
        client.register_plugin(KillOnThirdPartition())
        result, _, _ = run_scoring(
            fileset, {"ae": model}, tmp_path / "out", target_efficiency=0.1,
            scheduler=cluster.scheduler_address, step_size=50,
        )
    assert flag.exists(), "the fault was never injected"
    for dataset, path in samples.items():  # the parts the workers wrote, a killed worker's retried
        table = read_parquet(result.written[dataset])
        assert result.cutflows[dataset]["n_events"] == len(table) == entries(path)
        assert len(np.unique(ak.to_numpy(table.event))) == len(table)


def test_cli_scores_by_scheduler_address_and_refuses_bad_input(fileset, model, tmp_path, capsys):
    from distributed import LocalCluster

    fileset_path = tmp_path / "fileset.json"
    fileset_path.write_text(json.dumps(fileset))
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        status = main(["score", str(fileset_path), "--model", f"anomaly={model}", "-o", str(tmp_path / "out"),
                       "--scheduler", cluster.scheduler_address, "--efficiency", "0.1", "--no-progress"])
    assert status == 0
    assert "anomaly: threshold" in capsys.readouterr().out
    assert "anomaly" in json.loads((tmp_path / "out" / "scores.json").read_text())
    assert main(["score", str(fileset_path), "--model", str(tmp_path / "absent.onnx"), "-o", str(tmp_path / "x")]) == 1
    assert "absent.onnx does not exist" in capsys.readouterr().err
    status = main(["score", str(fileset_path), "--model", str(model), "-o", str(tmp_path / "y"), "--workers", "1",
                   "--control-region", "nowhere_sb", "--no-progress"])
    assert status == 1
    error = capsys.readouterr().err
    assert "control region 'nowhere_sb'" in error and "mjj3500_sb" in error


def test_the_three_line_example_runs_on_a_generated_sample(samples, model):
    example = REPOSITORY / "examples" / "add_score_to_existing_analysis.py"
    result = subprocess.run(
        [sys.executable, str(example), "--model", str(model), "--score-cut", "0", str(samples["wprime"])],
        capture_output=True, text=True, check=True, cwd=REPOSITORY,
    )
    assert "events with two fat jets" in result.stdout


def test_the_three_line_example_runs_on_real_cms_nanoaod(model, shared_nanoaod):
    example = REPOSITORY / "examples" / "add_score_to_existing_analysis.py"
    result = subprocess.run(
        [sys.executable, str(example), "--model", str(model), str(shared_nanoaod / "nano_tt_v12.root")],
        capture_output=True, text=True, check=True, cwd=REPOSITORY,
    )
    assert "events with two fat jets" in result.stdout


def test_region_features_name_what_each_partition_is_built_from():
    from coffea_ad.workflow.score import region_features

    assert region_features("deta_cr") == ["deta_jj"]
    assert region_features("mjj3500_sb") == ["mjj"]
    assert sorted(region_features("context_sr")) == ["ht", "met"]
    # a flag of none of the built-in partitions (one a user's processor adds) needs no feature; the run checks
    # that the tables have it (test_cli_scores_by_scheduler_address_and_refuses_bad_input)
    assert region_features("deta_xx") == []


def test_the_control_region_can_be_any_region_flag_of_the_tables(fileset, model, tmp_path, capsys):
    """deta_cr was refused: the first pass computed only the models' inputs and mjj, so no Δη flag existed."""
    fileset_path = tmp_path / "fileset.json"
    fileset_path.write_text(json.dumps(fileset))
    status = main(["score", str(fileset_path), "--model", f"ae={model}", "-o", str(tmp_path / "out"), "-j", "2",
                   "--control-region", "deta_cr", "--efficiency", "0.1", "--features", "lhco", "--no-progress"])
    assert status == 0
    assert "keeps" in capsys.readouterr().out
    summary = json.loads((tmp_path / "out" / "scores.json").read_text())["ae"]
    tables = [read_parquet(path) for path in sorted((tmp_path / "out" / "features").glob("*.parquet"))]
    assert all("deta_cr" in table.fields for table in tables)
    control = np.concatenate([ak.to_numpy(ak.drop_none(table.ae[table.deta_cr])) for table in tables])
    assert summary["control_region"] == "deta_cr" and summary["signal_region"] == "deta_sr"
    assert summary["control_region_efficiency"] == pytest.approx(np.mean(control >= summary["threshold"]))
    assert abs(summary["control_region_efficiency"] - 0.1) < 3 * np.sqrt(0.1 * 0.9 / len(control)) + 1 / len(control)


def test_inline_scores_of_a_cross_trained_model_are_its_out_of_fold_scores(samples, fileset, tmp_path):
    """The fold of an event comes from its ids on both sides: the score column that ``coffea-ad score`` writes
    (dask, on a cluster) equals ``estimator.score`` of the training table, event by event, so every event is
    scored by the fold model that did not see it."""
    from coffea_ad.features import compute_features
    from coffea_ad.models import CWoLa
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    events = NanoEventsFactory.from_root({str(samples["qcd"]): "Events"}, schemaclass=NanoAODSchema, mode="eager")
    events = events.events()
    features = compute_features(events, ["mjj", *LHCO])
    table = {name: ak.to_numpy(ak.fill_none(features[name], np.nan)) for name in ["mjj", *LHCO]}
    table.update({name: ak.to_numpy(events[name]) for name in ("run", "luminosityBlock", "event")})
    cwola = CWoLa(hidden=(16,), folds=3, training={"epochs": 2, "progress": False}, seed=2, device="cpu")
    cwola.fit(table, LHCO, signal_region=(3000.0, 4000.0))
    path = cwola.export_onnx(tmp_path / "cwola.onnx")
    result, _, _ = run_scoring({"qcd": fileset["qcd"]}, {"cwola": path}, tmp_path / "scored", target_efficiency=0.1,
                               workers=1, step_size=150, tables="memory")
    scored = result.tables["qcd"]
    inline = ak.to_numpy(ak.fill_none(scored["cwola"], np.nan))
    complete = np.isfinite(inline)
    assert complete.sum() > 300
    order = np.argsort(table["event"])
    rows = order[np.searchsorted(table["event"][order], ak.to_numpy(scored["event"])[complete])]
    expected = cwola.score({name: values[rows] for name, values in table.items()})
    assert np.allclose(inline[complete], expected, rtol=1e-5, atol=1e-6)
    # and the folds matter: the first fold's model alone gives other scores for the other folds' events
    single = cwola.fold_models_[0].score({name: values[rows] for name, values in table.items()})
    assert not np.allclose(single, expected, rtol=1e-3)
