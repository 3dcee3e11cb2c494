"""The generated files: reproducible, normalisable, NanoAOD-shaped, and never half-written."""

from __future__ import annotations

import subprocess
import sys
import warnings

import awkward as ak
import numpy as np
import pytest
import uproot

from coffea_ad.cli import COMMANDS, main
from coffea_ad.errors import ConfigurationError, InputFileError
from coffea_ad.generate import cached_sample, generate, read_sample_metadata


def events_content(path):
    with uproot.open(path) as file:
        return file["Events"].arrays(library="ak")


def test_same_seed_gives_identical_events_and_other_seeds_differ(generated_sample, tmp_path):
    first = generated_sample("qcd_dijet", 120, seed=21)
    again = tmp_path / "again.root"
    generate("qcd_dijet", 120, again, seed=21, workers=1, progress=False)
    other = generated_sample("qcd_dijet", 120, seed=22)
    reference = events_content(first)
    assert ak.array_equal(reference, events_content(again))
    assert not ak.array_equal(reference.FatJet_pt, events_content(other).FatJet_pt)


def test_worker_count_does_not_change_the_file(tmp_path):
    serial, parallel = tmp_path / "serial.root", tmp_path / "parallel.root"
    generate("zz4l", 90, serial, seed=5, workers=1, chunk_size=30, progress=False)
    generate("zz4l", 90, parallel, seed=5, workers=2, chunk_size=30, progress=False)
    assert ak.array_equal(events_content(serial), events_content(parallel))
    # Three chunks, three luminosity blocks, events numbered 1..90.
    content = events_content(serial)
    assert np.unique(ak.to_numpy(content.luminosityBlock)).tolist() == [1, 2, 3]
    assert ak.to_numpy(content.event).tolist() == list(range(1, 91))
    # The three chunks are written together: one basket per branch, not one per 30-event chunk.
    with uproot.open(serial) as file:
        assert {file["Events"][name].num_baskets for name in ("event", "nJet", "Jet_pt", "FatJet_tau2")} == {1}


def test_batches_within_a_chunk_continue_one_pythia(tmp_path, monkeypatch):
    """A chunk generated in batches is one Pythia run: the same hard processes as the chunk in one batch, events
    numbered on, and the detector smearing drawn on from the chunk's one random stream."""
    from coffea_ad.generate import sample

    whole, batched = tmp_path / "whole.root", tmp_path / "batched.root"
    generate("zz4l", 60, whole, seed=5, workers=1, chunk_size=60, progress=False)
    monkeypatch.setattr(sample, "EVENTS_PER_BATCH", 25)
    generate("zz4l", 60, batched, seed=5, workers=1, chunk_size=60, progress=False)
    one, three = events_content(whole), events_content(batched)
    assert ak.to_numpy(three.event).tolist() == list(range(1, 61))
    assert ak.array_equal(one.GenPart_pdgId, three.GenPart_pdgId)
    np.testing.assert_array_equal(ak.to_numpy(ak.flatten(one.GenPart_pt)), ak.to_numpy(ak.flatten(three.GenPart_pt)))
    # the first batch draws the same smearing; later batches draw on, in another order than one batch would
    np.testing.assert_array_equal(ak.to_numpy(ak.flatten(one.Jet_pt[:25])), ak.to_numpy(ak.flatten(three.Jet_pt[:25])))
    assert not ak.array_equal(one.Jet_pt[25:], three.Jet_pt[25:])


def test_the_writer_gathers_chunks_into_baskets_of_the_asked_size(tmp_path):
    from coffea_ad.generate.nanoaod import NanoAODWriter

    path = tmp_path / "baskets.root"
    with NanoAODWriter(path, events_per_basket=1000) as writer:
        for start in range(0, 1500, 300):
            event = np.arange(start, start + 300, dtype=np.uint64)
            writer.extend({"event": event, "Jet": ak.zip({"pt": ak.unflatten(np.ones(600, np.float32), np.full(300, 2))})})
        writer.finish({"n_events": writer.n_events}, {})
    with uproot.open(path) as file:
        tree = file["Events"]
        assert tree["event"].num_baskets == 2 and tree["Jet_pt"].num_baskets == 2  # 1200 events, then 300
        assert tree["event"].array(library="np").tolist() == list(range(1500))
        assert ak.all(ak.num(tree["Jet_pt"].array(), axis=1) == 2)


def test_cached_sample_is_generated_once_and_regenerated_when_its_settings_differ(tmp_path, monkeypatch):
    import coffea_ad.generate.sample as sample

    calls = []
    real_generate = sample.generate

    def counting_generate(*args, **kwargs):
        calls.append(args[0])
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(sample, "generate", counting_generate)
    settings = {"fatjet_radius": 1.0}
    path = cached_sample(tmp_path, "zz4l", 40, seed=3, settings=settings, workers=1, progress=False)
    assert path.name == "zz4l_40_seed3_fatjet_radius1.0.root"
    assert cached_sample(tmp_path, "zz4l", 40, seed=3, settings=settings, workers=1, progress=False) == path
    assert calls == ["zz4l"]
    # A file of the right name whose metadata disagrees (here: made with another radius) is replaced.
    path.unlink()
    generate("zz4l", 40, path, seed=3, workers=1, progress=False)
    cached_sample(tmp_path, "zz4l", 40, seed=3, settings=settings, workers=1, progress=False)
    assert calls == ["zz4l", "zz4l"]
    assert read_sample_metadata(path)["settings"]["detector"]["fatjet_radius"] == 1.0


def test_metadata_normalises_the_sample(generated_sample):
    path = generated_sample("qcd_dijet", 120, seed=21)
    metadata = read_sample_metadata(path)
    assert metadata["n_events"] == 120
    assert metadata["n_accepted"] >= 120
    assert metadata["n_tried"] > metadata["n_accepted"]
    # QCD 2 -> 2 above pTHat 1.2 TeV at 13 TeV: a few pb at leading order.
    assert 1.0 < metadata["cross_section_pb"] < 10.0
    assert 0 < metadata["cross_section_error_pb"] < 0.2 * metadata["cross_section_pb"]
    assert metadata["settings"]["process"] == "qcd_dijet"
    assert metadata["settings"]["parameters"] == {"pthat_min": 1200.0}
    assert metadata["settings"]["detector"]["fatjet_radius"] == 0.8
    with uproot.open(path) as file:
        runs = file["Runs"].arrays(library="np")
    assert runs["genEventCount"][0] == 120 and runs["genEventSumw"][0] == 120.0


def test_branch_types_match_real_nanoaod(generated_sample, shared_nanoaod):
    with uproot.open(generated_sample("qcd_dijet", 120, seed=21)) as ours, uproot.open(
        shared_nanoaod / "nano_tt_v12.root"
    ) as real:
        ours_types = {name: branch.typename for name, branch in ours["Events"].items()}
        real_types = {name: branch.typename for name, branch in real["Events"].items()}
    common = sorted(set(ours_types) & set(real_types))
    assert len(common) > 60
    mismatched = {name: (ours_types[name], real_types[name]) for name in common if ours_types[name] != real_types[name]}
    assert not mismatched


@pytest.mark.parametrize("mode", ["eager", "virtual", "dask"])
def test_files_open_in_every_nanoevents_mode_without_warnings(generated_sample, mode):
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    path = generated_sample("wprime_xy", 120, seed=23)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        events = NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=NanoAODSchema, mode=mode).events()
        tau2 = events.FatJet["tau2"]
        values = tau2.compute() if mode == "dask" else ak.materialize(tau2)
    assert len(values) == 120


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["no_such_process", "-n", "10"], "unknown process 'no_such_process'"),
        (["wprime_xy", "-n", "10", "--set", "mass_x=-500"], "mass_x must be > 0"),
        (["wprime_xy", "-n", "10", "--set", "mass_x=3000", "--set", "mass_y=600"], "must be below mass_wprime"),
        (["qcd_dijet", "-n", "0"], "positive integer"),
        (["qcd_dijet", "-n", "10", "--set", "mass_wprime=3000"], "unknown setting mass_wprime"),
        (["qcd_dijet", "-n", "10", "--set", "pthat_min"], "--set expects KEY=VALUE"),
        (["qcd_dijet", "-n", "10", "--set", "TimeShower:noSuchKnob=1"], "Pythia rejected the setting"),
        (["qcd_dijet", "-n", "10", "--set", "fatjet_radius=0"], "fatjet_radius must be positive"),
    ],
)
def test_bad_input_is_one_clear_error_and_leaves_no_file(tmp_path, capsys, arguments, message):
    output = tmp_path / "out.root"
    status = main(["generate", *arguments, "-o", str(output), "--no-progress"])
    error = capsys.readouterr().err.strip()
    assert status == 1
    assert message in error and len(error.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_is_reported(tmp_path, capsys):
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("x")
    assert main(["generate", "qcd_dijet", "-n", "5", "-o", str(not_a_folder / "out.root"), "--no-progress"]) == 1
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(InputFileError, match="is a folder"):
        generate("qcd_dijet", 5, tmp_path, progress=False)


def test_a_failure_during_generation_leaves_no_partial_file(tmp_path, monkeypatch):
    import coffea_ad.generate.reconstruction as reconstruction

    calls = {"n": 0}
    original = reconstruction.reconstruct

    def fail_on_second_chunk(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("injected failure in the second chunk")
        return original(*args, **kwargs)

    monkeypatch.setattr(reconstruction, "reconstruct", fail_on_second_chunk)
    with pytest.raises(RuntimeError, match="injected failure"):
        generate("zz4l", 40, tmp_path / "events.root", seed=1, workers=1, chunk_size=20, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_parameters_are_checked_before_any_event(tmp_path):
    with pytest.raises(ConfigurationError, match="r_inv"):
        generate("semivisible", 10, tmp_path / "x.root", settings={"r_inv": 1.5}, progress=False)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: coffea-ad" in capsys.readouterr().out


def test_processes_lists_parameters(capsys):
    assert main(["processes", "wprime_xy"]) == 0
    text = capsys.readouterr().out
    assert "mass_wprime = 3500 GeV" in text and "mass_x = 500 GeV" in text


def test_importing_coffea_ad_does_not_import_torch():
    code = "import sys, coffea_ad, coffea_ad.cli, coffea_ad.generate; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_killing_a_parallel_generation_stops_its_workers_and_writes_no_file(tmp_path):
    import signal
    import time

    import psutil

    output = tmp_path / "killed.root"
    command = [sys.executable, "-m", "coffea_ad.cli", "generate", "zz4l", "-n", "20000", "-j", "2",
               "--chunk-size", "500", "--no-progress", "-o", str(output)]
    parent = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    process = psutil.Process(parent.pid)
    deadline = time.monotonic() + 120
    while len(process.children(recursive=True)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    workers = process.children(recursive=True)
    assert len(workers) >= 2, "the generation never started its worker processes"
    parent.send_signal(signal.SIGTERM)
    parent.wait(timeout=30)
    _, alive = psutil.wait_procs(workers, timeout=15)
    for worker in alive:  # leave no orphan behind if the test fails
        worker.kill()
    assert not alive, f"workers still running after their parent was killed: {[w.pid for w in alive]}"
    assert not output.exists()
