"""benchmarks/search.py at tiny scale: its options, the combined sample table, the true window and the injected
count, and the check that two runs of a search agree (no search is run here)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "search.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmark_search", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_defaults_quick_and_explicit_options(bench, tmp_path, monkeypatch):
    monkeypatch.setenv("COFFEA_AD_CACHE", str(tmp_path))
    full = bench.parse_arguments([])
    assert (full.events, full.windows, full.folds) == (300_000, 3, 5)
    assert full.epochs == {"cathode": 2, "cwola": 4} and full.scaling_method == "cwola"
    assert full.s_over_sqrt_b == [1.0, 2.0, 3.0] and full.methods == ["cathode", "cwola"]
    assert Path(full.output) == SCRIPT.parent / "results" / "search.json"
    quick = bench.parse_arguments(["--quick"])
    assert quick.events < full.events and all(quick.epochs[m] < full.epochs[m] for m in full.methods)
    assert Path(quick.output).parent == tmp_path / "benchmarks" / "search"  # a smoke run never touches results/
    given = bench.parse_arguments(["--quick", "--events", "5000", "--methods", "cwola", "--epochs", "7"])
    assert (given.events, given.methods, given.epochs, given.folds) == (5000, ["cwola"], {"cwola": 7}, 2)
    mixed = bench.parse_arguments(["--methods", "cathode", "anode", "--epochs", "5", "cathode=3"])
    assert mixed.epochs == {"cathode": 3, "anode": 5} and mixed.scaling_method == "cathode"
    assert bench.parse_arguments(["--methods", "anode"]).epochs == {"anode": bench.OTHER_EPOCHS}
    for wrong in (["--scaling-method", "cathode", "--methods", "cwola"], ["--epochs", "cwola=0"],
                  ["--epochs", "bdt=3"], ["--epochs", "many"]):
        with pytest.raises(SystemExit):
            bench.parse_arguments(wrong)


def _fake_file(path: Path, n: int, rng, mjj) -> None:
    frame = pd.DataFrame({
        "run": np.full(n, 1, np.uint32), "luminosityBlock": np.ones(n, np.uint32),
        "event": np.arange(1, n + 1, dtype=np.uint64), "mjj": mjj,
        **{name: rng.random(n).astype(np.float32) for name in ("mj_min", "delta_mj", "tau21_j1", "tau21_j2")},
    })
    frame.to_parquet(path)


def test_shared_samples_give_every_file_its_run_and_are_written_once(bench, tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    shared = tmp_path / "shared"
    shared.mkdir()
    for seed in (401, 402, 403):
        _fake_file(shared / f"qcd_100k_seed{seed}.parquet", 60, rng, rng.uniform(2000, 5000, 60))
    _fake_file(shared / bench.SIGNAL_FILE, 40, rng, rng.normal(3500, 100, 40))
    monkeypatch.setattr(bench, "SHARED", shared)
    background, signal, source = bench.shared_samples(100, tmp_path)
    qcd, wprime = pd.read_parquet(background), pd.read_parquet(signal)
    assert len(qcd) == 100 and sorted(qcd.run.unique()) == [401, 402]  # the third file is not needed
    assert not qcd.duplicated(["run", "luminosityBlock", "event"]).any()
    assert set(wprime.run) == {bench.SIGNAL_RUN} and len(wprime) == 40
    assert "401-402" in source
    stamp = background.stat().st_mtime_ns
    again, _, source_again = bench.shared_samples(100, tmp_path)
    assert again == background and background.stat().st_mtime_ns == stamp and source_again == source
    with pytest.raises(SystemExit):
        bench.shared_samples(1000, tmp_path)


def test_the_true_window_holds_the_signal_and_sets_the_injected_count(bench):
    rng = np.random.default_rng(5)
    # a falling dijet-like spectrum with a turn-on near 2.6 TeV, and a narrow 3.5 TeV resonance
    mjj = 2400 + rng.exponential(700, 200_000) + rng.normal(0, 80, 200_000)
    background = pd.DataFrame({"mjj": mjj})
    signal = pd.DataFrame({"mjj": np.r_[rng.normal(3500, 120, 5000), [np.nan] * 10]})
    windows = bench.search_windows(background, signal, 4)
    low, high = windows["true_window_GeV"]
    assert low < 3500 < high
    expected = float(((signal.mjj >= low) & (signal.mjj < high)).sum() / signal.mjj.notna().sum())
    assert windows["signal_fraction_in_true_window"] == pytest.approx(expected)
    assert windows["signal_fraction_in_true_window"] > 0.5
    assert windows["background_in_true_window"] == int(((mjj >= low) & (mjj < high)).sum())
    searched = windows["searched"]
    assert searched[0] == (low, high) and len(searched) == 4
    assert searched[0][0] < searched[1][0] < searched[0][1]  # the staggered neighbour overlaps it
    assert all(a[1] <= b[0] for a, b in zip(searched[1:], searched[2:]))  # the others are spread above
    n = bench.n_signal_for(2.0, windows)
    in_window = n * windows["signal_fraction_in_true_window"]
    assert in_window / math.sqrt(windows["background_in_true_window"]) == pytest.approx(2.0, rel=0.01)


def _result(z: float) -> dict:
    window = {"name": "3000-3600", "inclusive": {"local_Z": 0.5}, "training": {"seconds": 1.0},
              "efficiencies": [{"efficiency": 0.1, "threshold": 0.7, "events_after_cut": 120, "local_Z": z}]}
    return {"method": "cwola", "windows": [window]}


def test_scaling_reports_whether_every_run_agrees(bench):
    same = bench.scaling_numbers([(_result(1.25), 30.0, 1.0), (_result(1.25), 34.0, 1.0)],
                                 [(_result(1.25), 20.0, 2.0), (_result(1.25), 16.0, 2.0)])
    assert same["identical_results"] and same["speedup"] == pytest.approx(32.0 / 18.0)
    assert [run["seconds"] for run in same["runs_1_worker"]] == [30.0, 34.0]
    different = bench.scaling_numbers([(_result(1.25), 30.0, 1.0), (_result(1.2500001), 30.0, 1.0)],
                                      [(_result(1.25), 20.0, 2.0), (_result(1.25), 20.0, 2.0)])
    assert not different["identical_results"]


def test_a_partial_rerun_keeps_the_other_parts_of_the_same_settings(bench, tmp_path):
    settings = {key: 1 for key in bench.SETTINGS}
    previous = {**settings, "background_only": ["old"], "injection": ["old"], "scaling": {"speedup": 0.7},
                "seconds": 1400.0}
    path = tmp_path / "search.json"
    path.write_text(json.dumps(previous))
    rerun = {**settings, "background_only": [], "injection": [], "scaling": {"speedup": 1.8}, "seconds": 300.0}
    merged = bench.merge_previous(rerun, path, ["scaling"])
    assert merged["background_only"] == ["old"] and merged["injection"] == ["old"]
    assert merged["scaling"] == {"speedup": 1.8} and merged["seconds"] == 1400.0
    assert merged["rerun"] == {"parts": ["scaling"], "seconds": 300.0}
    other = {**rerun, "folds": 2}
    assert bench.merge_previous(other, path, ["scaling"]) is other  # other settings: nothing merged
    assert bench.merge_previous(rerun, path, list(bench.PARTS)) is rerun
