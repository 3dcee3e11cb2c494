"""The README's "stages one by one", run as written: ``features -> train -> score -> fit`` on a small generated
sample, each stage reading by default what the previous one wrote; and ``score --control-region deta_cr``."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from coffea_ad import stats
from coffea_ad.cli import main
from coffea_ad.processing.tables import read_parquet

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_chain() -> list[list[str]]:
    """The ``coffea-ad`` lines of the README block under "The stages one by one", as argument lists."""
    text = README.read_text()
    section = text[text.index("### The stages one by one"):]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL).group(1)
    return [shlex.split(line)[1:] for line in block.splitlines() if line.startswith("coffea-ad ")]


def entries(path: Path) -> int:
    with uproot.open(path) as file:
        return file["Events"].num_entries


@pytest.fixture(scope="module")
def samples(generated_sample):
    """The README's two samples (same process, size, seed and settings), from the session cache."""
    return {
        "qcd.root": generated_sample("qcd_dijet", 3000, seed=0, fatjet_radius=1.0),
        "wprime.root": generated_sample("wprime_xy", 300, seed=1, fatjet_radius=1.0),
    }


@pytest.fixture(scope="module")
def chain(samples, tmp_path_factory):
    """Run the README's commands in a fresh folder (the generation lines use the cached samples)."""
    folder = tmp_path_factory.mktemp("chain")
    commands = readme_chain()
    generated = [argv for argv in commands if argv[0] == "generate"]
    assert [(argv[1], argv[3]) for argv in generated] == [("qcd_dijet", "3000"), ("wprime_xy", "300")]
    fileset = {"data": {"files": {str(path): "Events" for path in samples.values()}}}
    (folder / "fileset.json").write_text(json.dumps(fileset))
    stages = [argv for argv in commands if argv[0] != "generate"]
    assert [argv[0] for argv in stages] == ["features", "train", "score", "fit"]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        for argv in stages:
            assert main(argv) == 0, f"coffea-ad {shlex.join(argv)} failed"
    return folder


def test_features_conserve_every_event(chain, samples):
    cutflow = json.loads((chain / "feat" / "cutflow.json").read_text())["datasets"]["data"]
    n_events = sum(entries(path) for path in samples.values())
    assert cutflow["n_events"] == n_events == 3300
    for name, regions in cutflow["partitions"].items():
        assert sum(regions.values()) == n_events, name
    assert len(read_parquet(chain / "feat" / "features" / "data.parquet")) == n_events


def test_score_has_one_value_per_complete_event(chain):
    assert (chain / "model" / "model.onnx").stat().st_size > 1000
    features = json.loads((chain / "model" / "summary.json").read_text())["features"]
    table = read_parquet(chain / "scored" / "features" / "data.parquet")
    assert len(table) == 3300
    complete = np.ones(len(table), dtype=bool)
    for name in features:
        complete &= ~ak.to_numpy(ak.is_none(table[name]))
    scored = ~ak.to_numpy(ak.is_none(table["model"]))
    assert np.array_equal(scored, complete)
    assert complete.sum() > 3000  # nearly every event has two fat jets


def test_threshold_keeps_the_target_fraction_of_the_control_region(chain):
    model = json.loads((chain / "scored" / "scores.json").read_text())["model"]
    assert (model["control_region"], model["signal_region"]) == ("mjj3500_sb", "deta_sr")
    assert model["target_efficiency"] == 0.1
    table = read_parquet(chain / "scored" / "features" / "data.parquet")
    control = ak.to_numpy(ak.drop_none(table["model"][table["mjj3500_sb"]]))
    measured = np.mean(control >= model["threshold"])
    assert model["control_region_efficiency"] == pytest.approx(measured)
    binomial = np.sqrt(0.1 * 0.9 / len(control))
    assert abs(measured - 0.1) < 3 * binomial + 1 / len(control)


def test_fit_reads_what_score_wrote_and_its_window_lies_inside_the_mjj_range(chain):
    results = json.loads((chain / "fit" / "fit_results.json").read_text())
    assert results["method"] == "bumphunt"
    inputs = results["inputs"]
    assert (inputs["data"], inputs["regions"], inputs["variable"]) == (["data"], ["deta_sr"], "mjj_model_pass")
    with uproot.open(chain / "scored" / "histograms.root") as file:
        spectrum = file["data/deta_sr/mjj_model_pass"]
        edges, counts = spectrum.axis().edges(), spectrum.values()
    low, high = results["most_significant_window"]["window_GeV"]
    assert edges[0] <= low < high <= edges[-1]
    assert counts.sum() > 100  # the cut leaves enough events for the dijet fit
    # the fit range comes from the turn-on of the spectrum before the cut, which score writes beside it
    assert results["fit_range_source"] == "the turn-on of mjj before the cut"
    with uproot.open(chain / "scored" / "histograms.root") as file:
        uncut = stats.fit_range(file["data/deta_sr/mjj"].values(), file["data/deta_sr/mjj"].axis().edges())
    assert results["fit_range_GeV"][0] == pytest.approx(uncut.low)
    assert (chain / "fit" / "workspace.json").is_file() and (chain / "fit" / "fit.png").is_file()


def test_score_control_region_can_be_any_region_flag(chain, tmp_path, capsys):
    argv = ["score", str(chain / "fileset.json"), "--model", str(chain / "model" / "model.onnx"), "-o", str(tmp_path)]
    assert main([*argv, "--control-region", "deta_cr", "--features", "lhco", "--no-progress"]) == 0
    assert "keeps" in capsys.readouterr().out
    model = json.loads((tmp_path / "scores.json").read_text())["model"]
    table = read_parquet(tmp_path / "features" / "data.parquet")
    assert "deta_cr" in table.fields  # computed although --features lhco does not include deta_jj
    control = ak.to_numpy(ak.drop_none(table["model"][table["deta_cr"]]))
    assert model["control_region"] == "deta_cr"
    assert model["control_region_efficiency"] == pytest.approx(np.mean(control >= model["threshold"]))
    assert abs(model["control_region_efficiency"] - 0.01) < 3 * np.sqrt(0.01 * 0.99 / len(control)) + 1 / len(control)
