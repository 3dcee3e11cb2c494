"""Per-event tables written by the workers, runs without tables, and ``coffea-ad score`` without a threshold.

On the real CMS NanoAOD files of ``../shared`` (skipped with a reason where they are absent): the parts the
tasks write, read back as one table, are the in-memory table event by event; a failing run leaves no partial
folder; fsspec URLs work; a tt̄ sample with no event in the 3.5 TeV sidebands is scored without a threshold,
which ``coffea-ad fit`` refuses; with a control region the thresholds are those of the full tables.
"""

from __future__ import annotations

import json
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from coffea_ad.cli import main
from coffea_ad.errors import ConfigurationError
from coffea_ad.processing import check_fileset, normalize_fileset, run_processor
from coffea_ad.processing.runner import part_name
from coffea_ad.processing.tables import EVENT_ID_COLUMNS, column_names, open_table, read_parquet
from processors.feature_processor import AnomalyFeatureProcessor

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning", "ignore::UserWarning")

STEP = 25  # events per chunk: several parts per file
EVENT_MODEL = ["ht", "met", "n_jets"]  # inputs every event of the tt̄ and DY files has


@pytest.fixture(scope="module")
def files(shared_nanoaod):
    """Per dataset its files: tt̄ alone, DY with a second file (files of one dataset share their branch types:
    dask mode reads every file with the first one's form)."""
    return {
        "tt": [shared_nanoaod / "nano_tt_v12.root"],
        "dy": [shared_nanoaod / "nano_dy.root", shared_nanoaod / "pfnano.root"],
    }


@pytest.fixture(scope="module")
def checked(files):
    fileset = {name: {"files": {str(path): "Events" for path in paths}} for name, paths in files.items()}
    return check_fileset(normalize_fileset(fileset))[0]


def entries(path: Path) -> int:
    with uproot.open(path) as file:
        return file["Events"].num_entries


def run(checked, **options):
    return run_processor(checked, optional=True, step_size=STEP, make_processor=AnomalyFeatureProcessor, **options)


def by_event_id(table: ak.Array) -> ak.Array:
    return table[np.lexsort([ak.to_numpy(table[name]) for name in reversed(EVENT_ID_COLUMNS)])]


def same_events(written: ak.Array, memory: ak.Array) -> bool:
    """The rows of a table read back, joined on the event ids, equal those of the in-memory table."""
    assert written.fields[0] == "dataset" and written.fields[1:] == memory.fields
    joined = by_event_id(written)
    return all(ak.array_equal(joined[name], memory[name], equal_nan=True) for name in memory.fields)


def hidden(folder: Path) -> list[str]:
    return [path.name for path in folder.iterdir() if path.name.startswith(".")]


@pytest.mark.parametrize("mode", ["dask", "virtual"])
def test_parts_written_by_the_workers_are_the_in_memory_table_event_by_event(checked, files, client, mode, tmp_path):
    memory = run(checked, mode=mode, client=client)
    written = run(checked, mode=mode, client=client, tables="workers", table_folder=tmp_path)
    assert written.tables == {} and written.written == {name: str(tmp_path / f"{name}.parquet") for name in files}
    assert hidden(tmp_path) == []  # the temporary folders were renamed into place
    for dataset, paths in files.items():
        parts = sorted((tmp_path / f"{dataset}.parquet").iterdir())
        for index, path in enumerate(paths):  # one part per chunk, named by its file and first entry
            mine = [part for part in parts if part.name.startswith(part_name(index, 0)[:11])]
            starts = [int(part.stem.rsplit("-", 1)[1]) for part in mine]
            assert [part.name for part in mine] == [part_name(index, start) for start in starts]
            assert starts[0] == 0 and len(mine) == -(-entries(path) // STEP)
            ends = [*starts[1:], entries(path)]
            assert [len(read_parquet(part)) for part in mine] == [end - start for start, end in zip(starts, ends)]
        table = memory.tables[dataset]
        back = read_parquet(tmp_path / f"{dataset}.parquet")
        assert len(back) == len(table) == sum(map(entries, paths)) == written.cutflows[dataset]["n_events"]
        assert set(ak.to_numpy(back.dataset)) == {dataset}
        assert same_events(back, table)
        # the pyarrow reader of training and fitting reads the same folder as the same table
        arrow = open_table(tmp_path / f"{dataset}.parquet")
        assert column_names(arrow) == back.fields and arrow.num_rows == len(back)
        # histograms do not depend on where the tables went
        for name, histogram in memory.histograms[dataset].items():
            assert np.array_equal(written.histograms[dataset][name].values(flow=True), histogram.values(flow=True))
    assert written.cutflows == memory.cutflows


def test_a_rerun_replaces_the_table_and_an_empty_dataset_gets_an_empty_part(checked, shared_nanoaod, tmp_path):
    run(checked, mode="virtual", tables="workers", table_folder=tmp_path)
    (tmp_path / "tt.parquet" / "part-99999-000000000000.parquet").write_bytes(b"left from another run")
    fileset = normalize_fileset({"tt": [str(shared_nanoaod / "nano_tt_v12.root")], "broken": [str(tmp_path / "no")]})
    again, skipped = check_fileset(fileset)
    result = run_processor(again, skipped, mode="virtual", tables="workers", table_folder=tmp_path,
                           make_processor=AnomalyFeatureProcessor, optional=True, step_size=STEP)
    assert len(read_parquet(tmp_path / "tt.parquet")) == result.cutflows["tt"]["n_events"] == entries(
        shared_nanoaod / "nano_tt_v12.root")
    empty = read_parquet(tmp_path / "broken.parquet")
    assert len(empty) == 0 and "mjj3500_sb" in empty.fields
    assert hidden(tmp_path) == []


class FailingProcessor(AnomalyFeatureProcessor):
    """Raises in the chunk holding event ``failing_event`` (a fault in one task of the run)."""

    def __init__(self, failing_event: int, **options):
        super().__init__(**options)
        self.failing_event = failing_event

    def event_record(self, events, names, variables):
        if ak.backend(events["event"]) == "cpu" and ak.any(events["event"] == self.failing_event):
            raise RuntimeError("injected fault in one chunk")
        return super().event_record(events, names, variables)


@pytest.mark.parametrize("mode", ["dask", "virtual"])
def test_a_failing_run_leaves_no_partial_folder_and_keeps_the_earlier_table(checked, files, mode, tmp_path):
    import functools

    with uproot.open(files["dy"][-1]) as file:
        last = int(file["Events"]["event"].array(library="np")[-1])  # in the last chunk of the run
    failing = functools.partial(FailingProcessor, last)
    earlier = run(checked, mode="virtual", tables="workers", table_folder=tmp_path)
    before = {name: sorted(path.name for path in (tmp_path / f"{name}.parquet").iterdir()) for name in files}
    with pytest.raises(Exception, match="injected fault"):  # coffea.processor wraps it
        run_processor(checked, mode=mode, optional=True, step_size=STEP, tables="workers", table_folder=tmp_path,
                      make_processor=failing)
    assert hidden(tmp_path) == []
    for name in files:  # the tables of the run before, tt̄ (whose tasks all succeeded) included
        assert sorted(path.name for path in (tmp_path / f"{name}.parquet").iterdir()) == before[name]
        assert len(read_parquet(tmp_path / f"{name}.parquet")) == earlier.cutflows[name]["n_events"]
    with pytest.raises(Exception, match="injected fault"):  # coffea.processor wraps it
        run_processor(checked, mode=mode, optional=True, step_size=STEP, tables="workers",
                      table_folder=tmp_path / "fresh", make_processor=failing)
    assert list((tmp_path / "fresh").iterdir()) == []


def test_tables_go_to_fsspec_urls(checked, files, client, tmp_path):
    import fsspec

    memory = run(checked, mode="virtual")
    # in-process (no client): the memory filesystem the tasks write to is the client's
    result = run(checked, mode="virtual", tables="workers", table_folder="memory://coffea_ad_tables")
    assert result.written == {name: f"memory:///coffea_ad_tables/{name}.parquet" for name in files}
    for name, url in result.written.items():
        back = read_parquet(url)
        assert same_events(back, memory.tables[name])
        assert open_table(url).num_rows == len(back)
    assert sorted(fsspec.filesystem("memory").ls("/coffea_ad_tables", detail=False)) == [
        "/coffea_ad_tables/dy.parquet", "/coffea_ad_tables/tt.parquet"]
    # worker processes of a cluster: a file:// URL, a local folder (renamed into place as one)
    result = run(checked, mode="dask", client=client, tables="workers", table_folder=f"file://{tmp_path}/tables")
    assert result.written == {name: str(tmp_path / "tables" / f"{name}.parquet") for name in files}
    for name, path in result.written.items():
        assert same_events(read_parquet(path), memory.tables[name])
    assert hidden(tmp_path / "tables") == []


def test_no_tables_runs_write_histograms_and_cutflow_only(checked, files, tmp_path, capsys):
    result = run(checked, mode="dask", tables="none")
    assert result.tables == {} and result.written == {}
    assert result.cutflows["tt"]["n_events"] == entries(files["tt"][0])
    fileset = tmp_path / "fileset.json"
    fileset.write_text(json.dumps({name: [str(path) for path in paths] for name, paths in files.items()}))
    status = main(["features", str(fileset), "-o", str(tmp_path / "out"), "-j", "1", "--no-tables", "--no-progress"])
    assert status == 0
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["cutflow.json", "histograms.root"]
    assert "features" not in capsys.readouterr().out.split("wrote")[-1]
    with pytest.raises(ConfigurationError, match="table_folder is needed with tables='workers'"):
        run(checked, tables="workers")
    with pytest.raises(ConfigurationError, match="tables must be one of memory, workers, none"):
        run(checked, tables="disk")


@pytest.fixture(scope="module")
def event_model(files, tmp_path_factory):
    """An autoencoder on event-level features of the tt̄ file (every event has them)."""
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    from coffea_ad.features import compute_features
    from coffea_ad.models import AutoEncoder

    events = NanoEventsFactory.from_root({str(files["tt"][0]): "Events"}, schemaclass=NanoAODSchema, mode="eager")
    events = events.events()
    features = compute_features(events, EVENT_MODEL)
    table = {name: ak.to_numpy(features[name]).astype(np.float64) for name in EVENT_MODEL}
    path = tmp_path_factory.mktemp("event_model") / "ae.onnx"
    AutoEncoder(latent=2, hidden=(8,), training={"epochs": 2, "progress": False}, seed=1).fit(
        table, EVENT_MODEL).export_onnx(path)
    return path


def test_score_without_a_control_region_writes_scores_and_fit_refuses_it(files, event_model, tmp_path, capsys):
    """The tt̄ file has no event in the 3.5 TeV sidebands: with the default it stops, with none it is scored."""
    fileset = tmp_path / "fileset.json"
    fileset.write_text(json.dumps({"tt": [str(files["tt"][0])]}))
    command = ["score", str(fileset), "--model", f"ae={event_model}", "-j", "1", "--no-progress", "--features",
               ",".join(EVENT_MODEL)]
    assert main([*command, "-o", str(tmp_path / "default")]) == 1
    assert "no event of control region 'mjj3500_sb' has a ae score" in capsys.readouterr().err
    assert main([*command, "-o", str(tmp_path / "out"), "--control-region", "none"]) == 0
    assert "no control region, no threshold" in capsys.readouterr().out
    table = read_parquet(tmp_path / "out" / "features" / "tt.parquet")
    assert len(table) == entries(files["tt"][0]) and not ak.any(ak.is_none(table.ae))
    summary = json.loads((tmp_path / "out" / "scores.json").read_text())["ae"]
    assert summary["threshold"] is None and summary["control_region"] is None
    assert sum(counts["all"] for counts in summary["events"]["tt"].values() if counts) > 0
    with uproot.open(tmp_path / "out" / "histograms.root") as file:
        names = {key.split(";")[0] for key in file["tt/deta_sr"].keys()}
        assert {"ae", "ae_vs_mjj"} <= names and not any(name.endswith("_pass") for name in names)
        # the score histograms are score x mass: they hold the events with an mjj (two fat jets)
        with_mass = ~ak.to_numpy(ak.is_none(table.mjj))
        for region in ("deta_sr", "deta_cr"):
            in_region = ak.to_numpy(table[region]) & with_mass
            assert file[f"tt/{region}/ae"].to_hist().sum(flow=True).value == in_region.sum()
        assert with_mass.sum() > 10
    assert main(["fit", str(tmp_path / "out" / "histograms.root"), "-o", str(tmp_path / "fit")]) == 1
    error = capsys.readouterr().err
    assert "scored without a control region" in error and "no threshold for ae" in error and "--control-region" in error


def test_thresholds_from_control_region_scores_equal_those_of_the_full_tables(files, event_model, tmp_path):
    """The first pass returns only the control-region scores: the edges and the threshold are those that the
    full tables of the same run give."""
    from coffea_ad.selection.thresholds import score_edges
    from coffea_ad.workflow.score import run_scoring

    fileset = {name: [str(path) for path in paths] for name, paths in files.items()}
    result, summary, _ = run_scoring(fileset, {"ae": event_model}, tmp_path, control_region="context_cr",
                                     target_efficiency=0.1, workers=1, step_size=STEP, tables="memory",
                                     features=EVENT_MODEL)
    control = np.concatenate(
        [ak.to_numpy(ak.drop_none(table.ae[table.context_cr])) for table in result.tables.values()]
    )
    assert len(control) > 20
    assert summary["ae"]["edges"] == list(map(float, score_edges(control, 0.1, name="ae")))
    # the threshold is the edge whose efficiency, measured on the score x mjj histogram (the events with an mjj),
    # is nearest the target
    threshold = summary["ae"]["threshold"]
    assert threshold in summary["ae"]["edges"]
    with_mass = np.concatenate([
        ak.to_numpy(ak.drop_none(table.ae[table.context_cr & ~ak.is_none(table.mjj)]))
        for table in result.tables.values()
    ])
    assert summary["ae"]["control_region_efficiency"] == pytest.approx(np.mean(with_mass >= threshold))
    with pytest.raises(ConfigurationError, match="control region 'context_xx' is not a boolean column.*context_cr"):
        run_scoring(fileset, {"ae": event_model}, tmp_path / "typo", control_region="context_xx", workers=1,
                    features=EVENT_MODEL)
