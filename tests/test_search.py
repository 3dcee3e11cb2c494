"""The sliding-window search: windows and binning, the distributed fold training, ensembles, and
``run_search`` / ``coffea-ad search`` end to end at small scale (signal injected and found, background only
finds nothing, a second run reuses the trained windows, bad input refused before any training)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import norm

from coffea_ad.cli import main
from coffea_ad.errors import ConfigurationError
from coffea_ad.stats import search as windows_stats
from synthetic_tables import FEATURES, dijet_table

WINDOWS = ["2900:3300", "3300:3700", "3700:4100"]


def test_auto_windows_are_two_staggered_sets_of_20_percent_windows_on_bin_edges():
    edges = windows_stats.mass_binning(2500.0, 8000.0)
    ratio = edges[1:] / edges[:-1]
    assert np.allclose(ratio, 1.22 ** (1 / 6))
    counts = np.full(edges.size - 1, 100.0)
    windows = windows_stats.auto_windows(counts, edges)
    assert all(np.isclose(w.high / w.low, 1.22) for w in windows)
    assert [w.staggered_set for w in windows[:4]] == [0, 1, 0, 1]
    # each window starts half a window (a factor sqrt(1.22)) above the one before, on a bin edge
    starts = np.array([w.low for w in windows])
    assert np.allclose(starts[1:] / starts[:-1], np.sqrt(1.22))
    assert np.all(np.isin(np.round(starts, 6), np.round(edges, 6)))
    # half a window of sideband on both sides inside the range
    assert windows[0].low >= edges[0] * np.sqrt(1.22) * 0.999 and windows[-1].high * np.sqrt(1.22) <= edges[-1] * 1.001
    # a falling spectrum: the windows end where a window holds fewer than min_events
    falling = 1e4 * np.exp(-np.arange(edges.size - 1) / 4.0)
    sparse = windows_stats.auto_windows(falling, edges, min_events=200)
    assert len(sparse) < len(windows)
    last = sparse[-1]
    inside = (edges[:-1] >= last.low - 1e-6) & (edges[1:] <= last.high + 1e-6)
    assert falling[inside].sum() >= 200


def test_explicit_windows_are_parsed_checked_and_become_whole_bins():
    windows = windows_stats.parse_windows(["3300:3700", "2900:3300"])
    assert [w.name for w in windows] == ["2900-3300", "3300-3700"]
    for bad in ["3300", "3700:3300", "a:b", "0:100"]:
        with pytest.raises(ConfigurationError, match="window"):
            windows_stats.parse_windows([bad])
    with pytest.raises(ConfigurationError, match="2000-2400 GeV are not inside the fit range 2600-8000"):
        windows_stats.check_windows(windows_stats.parse_windows(["2000:2400"]), 2600.0, 8000.0, "turn-on")
    edges = windows_stats.window_binning(windows_stats.mass_binning(2600.0, 8000.0), windows)
    for edge in (2900.0, 3300.0, 3700.0):
        assert np.any(np.isclose(edges, edge))
    widths = np.diff(edges) / edges[:-1]
    assert widths.min() > 0.5 * (1.22 ** (1 / 6) - 1) and np.all(np.diff(edges) > 0)


def test_global_significance_uses_every_test_as_trials_and_skips_poor_fits():
    tests = [
        {"name": "a", "local_p0": norm.sf(4.0), "local_Z": 4.0, "fit_ok": False},
        {"name": "b", "local_p0": norm.sf(3.0), "local_Z": 3.0, "fit_ok": True},
        {"name": "c", "local_p0": 0.5, "local_Z": 0.0, "fit_ok": True},
    ]
    result = windows_stats.global_significance(tests)
    assert result["name"] == "b" and result["n_tests"] == 3
    assert result["global_p"] == pytest.approx(1 - (1 - norm.sf(3.0)) ** 3)
    assert windows_stats.global_significance([]) is None


@pytest.fixture(scope="module")
def training_table():
    table = dijet_table(3000, 0, seed=5)
    return {name: table[name].to_numpy() for name in table.columns}


def test_folds_trained_one_by_one_elsewhere_are_the_fit_of_the_whole(training_table):
    import pickle

    from coffea_ad.models import CWoLa

    settings = {"epochs": 2, "progress": False}
    whole = CWoLa(folds=3, training=settings, seed=4).fit(training_table, FEATURES, signal_region="3000:3400")
    parts = CWoLa(folds=3, training=settings, seed=4)
    plan = parts.plan_folds(training_table, FEATURES, signal_region="3000:3400")
    # as a Dask task would: the plan and the estimator travel pickled, the fold model comes back pickled
    def travel(value):
        return pickle.loads(pickle.dumps(value))

    models = [travel(travel(parts).fit_fold(travel(plan), k)) for k in range(3)]
    parts.assemble_folds(plan, models)
    assert np.array_equal(parts.score(training_table), whole.score(training_table))
    assert parts.fold_rows_ == whole.fold_rows_ and parts.table_hash_ == whole.table_hash_
    with pytest.raises(ConfigurationError, match="fold model 0 is not the fold-0 model"):
        CWoLa(folds=3, training=settings, seed=5).assemble_folds(plan, models)


def test_an_ensemble_scores_the_mean_of_its_members_and_exports_it_to_onnx(training_table, tmp_path):
    from coffea_ad.features.folds import event_fold
    from coffea_ad.models import CWoLa
    from coffea_ad.models.ensemble import Ensemble, member_seed
    from coffea_ad.onnx.export import read_metadata, score_onnx

    assert member_seed(7, 0) == 7 and len({member_seed(7, m) for m in range(4)}) == 4
    members = [
        CWoLa(folds=2, training={"epochs": 2, "progress": False}, seed=member_seed(3, m)).fit(
            training_table, FEATURES, signal_region="3000:3400"
        )
        for m in range(2)
    ]
    ensemble = Ensemble(members)
    x = np.stack([training_table[name] for name in FEATURES], axis=1).astype(np.float32)
    fold = event_fold(training_table["run"], training_table["luminosityBlock"], training_table["event"], 2)
    mean = ensemble.score_array(x, fold)
    assert np.allclose(mean, (members[0].score(training_table) + members[1].score(training_table)) / 2)
    assert not np.allclose(members[0].score(training_table), members[1].score(training_table))
    path = ensemble.export_onnx(tmp_path / "model.onnx")
    assert np.max(np.abs(score_onnx(path, x, fold) - mean)) < 1e-5 * np.max(np.abs(mean))
    assert read_metadata(path).n_folds == 2
    reloaded = Ensemble.load(ensemble.save(tmp_path / "members"), 2)
    assert np.array_equal(reloaded.score_array(x, fold), mean)


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    """Data (QCD-like background), an independent background sample, and a signal sample, as parquet tables."""
    folder = tmp_path_factory.mktemp("search_samples")
    dijet_table(20_000, 0, seed=11).to_parquet(folder / "data.parquet")
    dijet_table(20_000, 0, seed=12).to_parquet(folder / "background.parquet")
    dijet_table(0, 1000, seed=13).to_parquet(folder / "signal.parquet")
    return folder


def test_injected_signal_is_found_in_its_window_where_the_inclusive_search_sees_little(samples, tmp_path):
    from coffea_ad.workflow.search import run_search

    result = run_search(
        samples / "data.parquet", tmp_path / "search", method="iad", background=samples / "background.parquet",
        windows=WINDOWS, folds=3, training={"epochs": 5}, inject=samples / "signal.parquet", n_signal=100,
        workers=1, progress=False,
    )
    by_name = {window["name"]: window for window in result["windows"]}
    true = by_name["3300-3700"]
    assert true["injected_in_window"] > 90 and result["events"]["injected"] == 100
    # S/sqrt(B) = 100 / sqrt(2900) ~ 1.9 before the cut (the synthetic spectrum is not quite a dijet function:
    # the inclusive fit finds 3-4 sigma here); after the 1 % cut the W' stands far above the fitted background
    assert true["inclusive"]["status"] == "done"
    tight = next(cut for cut in true["efficiencies"] if cut["efficiency"] == 0.01)
    assert tight["status"] == "done" and tight["fit_ok"]
    assert tight["local_Z"] > 5.0 and tight["local_Z"] > true["inclusive"]["local_Z"] + 3
    assert tight["injected_after_cut"] > 60
    # the cut keeps 1 % of the sidebands: the background under the window is ~1 % of it
    assert tight["background"] == pytest.approx(0.01 * true["events_in_window"], rel=0.5)
    limit = tight["expected_limit"]
    assert limit["status"] == "done" and limit["expected_mu"]["median"] < 1.0
    assert result["global"]["name"] == "3300-3700" and result["global"]["global_Z"] > 4.0
    for away in ("2900-3300", "3700-4100"):
        assert all(cut["local_Z"] < 3.0 for cut in by_name[away]["efficiencies"] if cut["status"] == "done")
    folder = tmp_path / "search"
    for name in ("search.json", "summary.txt", "index.html", "plots/local_p_scan.png",
                 "windows/3300-3700/model.onnx", "windows/3300-3700/training.json",
                 "windows/3300-3700/workspace_eff0.01.json", "windows/3300-3700/datacard_eff0.01.txt",
                 "windows/3300-3700/shapes_eff0.01.root", "plots/fit_3300-3700_eff0.01.png"):
        assert (folder / name).stat().st_size > 0, name
    saved = json.loads((folder / "search.json").read_text())
    assert saved["global"]["local_Z"] == pytest.approx(result["global"]["local_Z"])
    assert "3300-3700" in (folder / "index.html").read_text()
    assert not list(folder.rglob("*.tmp"))


def test_background_only_search_finds_nothing_and_a_rerun_reuses_the_trained_windows(samples, tmp_path):
    from coffea_ad.workflow.search import run_search

    options = dict(method="cwola", windows=WINDOWS, folds=3, training={"epochs": 4}, workers=2, progress=False)
    first = run_search(samples / "data.parquet", tmp_path / "null", **options)
    tests = [cut for window in first["windows"] for cut in window["efficiencies"] if cut["status"] == "done"]
    assert len(tests) == 6 and first["global"]["n_tests"] == 6
    assert max(cut["local_Z"] for cut in tests) < 3.0
    assert first["global"]["global_Z"] < 2.0
    assert all(window["training"]["status"] == "trained" for window in first["windows"])
    record = tmp_path / "null" / "windows" / "3300-3700" / "training.json"
    assert json.loads(record.read_text())["onnx_max_abs_diff_over_max_abs_score"] < 1e-5
    second = run_search(samples / "data.parquet", tmp_path / "null", **options)
    assert all(window["training"]["status"] == "reused" for window in second["windows"])
    assert [cut["local_Z"] for window in second["windows"] for cut in window["efficiencies"]] == [
        cut["local_Z"] for window in first["windows"] for cut in window["efficiencies"]
    ]
    # another seed is another training: nothing is reused
    third = run_search(samples / "data.parquet", tmp_path / "null", **{**options, "seed": 1, "windows": WINDOWS[1:2]})
    assert third["windows"][0]["training"]["status"] == "trained"


def test_a_window_too_sparse_to_train_is_reported_as_skipped_with_its_reason(samples, tmp_path):
    from coffea_ad.workflow.search import run_search

    result = run_search(
        samples / "data.parquet", tmp_path / "sparse", method="cwola", windows=["3300:3700", "6000:7300"], folds=2,
        training={"epochs": 2}, efficiencies=[0.1], workers=1, progress=False,
    )
    sparse = result["windows"][1]
    assert sparse["status"] == "skipped" and "events in the window: at least 200 are needed" in sparse["reason"]
    assert not (tmp_path / "sparse" / "windows" / "6000-7300" / "model.onnx").exists()
    assert "skipped: only" in result["summary_text"]


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--windows", "1000:1400"], "1000-1400 GeV are not inside the fit range"),
        (["--method", "iad"], "method 'iad' needs a background sample (--background TABLE)"),
        (["--folds", "1"], "needs cross-training: folds >= 2"),
        (["--n-signal", "10"], "--n-signal needs --inject FILE"),
    ],
)
def test_bad_input_is_one_line_and_exit_1_before_any_training(samples, tmp_path, capsys, arguments, message):
    output = tmp_path / "bad"
    status = main(["search", str(samples / "data.parquet"), "-o", str(output), "--no-progress", "-j", "1", *arguments])
    error = capsys.readouterr().err.strip()
    assert status == 1 and message in error and len(error.splitlines()) == 1
    assert not (output / "windows").exists()


def test_an_efficiency_outside_0_1_is_a_usage_error(samples, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["search", str(samples / "data.parquet"), "-o", str(tmp_path), "--efficiency", "0.1,1.5"])
    assert exit_info.value.code == 2 and "in (0, 1)" in capsys.readouterr().err


@pytest.fixture(scope="module")
def hand_started_cluster(tmp_path_factory):
    """A scheduler and two single-thread workers started with the ``dask`` command line, as on a facility."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    folder = tmp_path_factory.mktemp("cluster")
    scheduler_file = folder / "scheduler.json"
    dask = str(Path(sys.executable).with_name("dask"))
    common = ["--no-dashboard"]
    processes = [subprocess.Popen([dask, "scheduler", "--port", "0", "--scheduler-file", str(scheduler_file), *common],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for _ in range(600):
            if scheduler_file.is_file() and scheduler_file.stat().st_size:
                break
            time.sleep(0.05)
        processes.append(subprocess.Popen(
            [dask, "worker", "--scheduler-file", str(scheduler_file), "--nworkers", "2", "--nthreads", "1", *common],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))
        address = json.loads(scheduler_file.read_text())["address"]
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


@pytest.mark.parametrize("method", ["cathode", "lacathode", "anode", "salad"])
def test_every_resonant_method_trains_per_window_on_a_hand_started_cluster(samples, tmp_path, hand_started_cluster,
                                                                           method):
    from coffea_ad.workflow.search import run_search

    result = run_search(
        samples / "data.parquet", tmp_path / method, method=method, windows=["3300:3700"], folds=2,
        training={"epochs": 1}, efficiencies=[0.1], scheduler=hand_started_cluster, progress=False,
        simulation=samples / "background.parquet" if method == "salad" else None,
    )
    (window,) = result["windows"]
    assert window["status"] == "done" and window["efficiencies"][0]["status"] == "done"
    record = json.loads((tmp_path / method / "windows" / "3300-3700" / "training.json").read_text())
    assert record["onnx_max_abs_diff_over_max_abs_score"] < 1e-5
    assert [row["fold"] for row in record["summary"]["fold_rows"]] == [0, 1]
    # background only: the cut keeps about 10 % of the sidebands, and of the window for a method that does not sculpt
    cut = window["efficiencies"][0]
    assert cut["events_after_cut"] == pytest.approx(0.1 * cut["events_before_cut"], rel=0.1)


def test_the_command_runs_on_the_cluster_given_by_its_address(samples, tmp_path, hand_started_cluster, capsys):
    output = tmp_path / "cli"
    status = main([
        "search", str(samples / "data.parquet"), "-o", str(output), "--method", "cwola", "--windows", "3300:3700",
        "--folds", "2", "--epochs", "1", "--efficiency", "0.05", "--ensemble", "2", "--scheduler",
        hand_started_cluster, "--no-progress",
    ])
    printed = capsys.readouterr().out
    assert status == 0 and "cwola (2 folds x 2 member(s))" in printed and "index.html" in printed
    summary = json.loads((output / "windows" / "3300-3700" / "training.json").read_text())["summary"]
    assert summary["ensemble"] == 2 and len(set(summary["member_seeds"])) == 2
    assert (output / "windows" / "3300-3700" / "members" / "member1" / "weights.pt").is_file()


def test_a_cut_whose_efficiency_jumps_across_the_window_is_flagged_a_power_law_is_not():
    from coffea_ad.workflow.search import _near_sideband_smoothness

    rng = np.random.default_rng(3)
    mass = 2500.0 + rng.exponential(700.0, 400_000)
    window = windows_stats.SearchWindow(3300.0, 3700.0)
    power_law = rng.random(mass.size) < 0.01 * (mass / 3500.0) ** 3
    assert _near_sideband_smoothness(power_law, mass, window)["smooth"]
    # what a classifier that learned mjj does: 0.5 % below the window, 2 % above it
    jump = rng.random(mass.size) < np.where(mass < 3500.0, 0.005, 0.02)
    flagged = _near_sideband_smoothness(jump, mass, window)
    assert not flagged["smooth"] and flagged["p_value"] < 1e-6


def test_a_cwola_cut_on_features_that_grow_with_mjj_is_flagged_not_evidence(tmp_path):
    from coffea_ad.workflow.search import run_search

    table = dijet_table(40_000, 0, seed=21)
    # jet masses that grow with mjj, as in Pythia: CWoLa learns the signal region's mass, not a signal
    for name in ("mj_min", "delta_mj"):
        table[name] = table[name] + 0.1 * (table["mjj"] - 2500.0)
    table.to_parquet(tmp_path / "correlated.parquet")
    result = run_search(
        tmp_path / "correlated.parquet", tmp_path / "search", method="cwola", windows=["3300:3700"], folds=3,
        training={"epochs": 5}, workers=1, progress=False,
    )
    cuts = result["windows"][0]["efficiencies"]
    assert all(cut["status"] == "done" for cut in cuts)
    # at 10 % the efficiency climbs by 2.5x across the neighbouring sidebands, with a step at the window
    loose = next(cut for cut in cuts if cut["efficiency"] == 0.1)
    assert not loose["near_sideband_efficiency"]["smooth"] and not loose["evidence_ok"] and loose["fit_ok"]
    assert "~" in result["summary_text"] and result["global"]["global_Z"] < 2.0
