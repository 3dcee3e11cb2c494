"""Workspaces, discovery significance and CLs limits against known answers and pyhf's simple models."""

from __future__ import annotations

import hist
import numpy as np
import pyhf
import pytest
import uproot

from coffea_ad import stats
from coffea_ad.errors import ConfigurationError, InputFileError
from coffea_ad.selection import background_efficiency_edges


def asimov_z(s: float, b: float) -> float:
    return float(np.sqrt(2 * ((s + b) * np.log(1 + s / b) - s)))


def weighted(values, variances=None, edges=None) -> hist.Hist:
    values = np.asarray(values, dtype=float)
    axis_edges = np.arange(values.size + 1.0) if edges is None else edges
    h = hist.Hist(hist.axis.Variable(axis_edges, name="score"), storage=hist.storage.Weight())
    h.view().value = values
    h.view().variance = values if variances is None else variances
    return h


@pytest.mark.parametrize(("s", "b"), [(5.0, 10.0), (3.0, 100.0), (20.0, 4.0), (50.0, 1000.0)])
def test_asimov_significance_matches_the_formula(s, b):
    result = stats.discovery_significance([s], [b])
    assert result.z == pytest.approx(asimov_z(s, b), rel=1e-3)
    assert result.p0 == pytest.approx(float(pyhf.tensorlib.normal_cdf(-asimov_z(s, b))), rel=1e-2)


def test_background_uncertainty_lowers_the_significance_and_data_is_used():
    without = stats.discovery_significance([10.0, 5.0], [50.0, 20.0])
    with_uncertainty = stats.discovery_significance([10.0, 5.0], [50.0, 20.0], background_uncertainty=[10.0, 4.0])
    assert with_uncertainty.z < without.z
    deficit = stats.discovery_significance([10.0, 5.0], [50.0, 20.0], observed=[45, 18])
    assert deficit.z == pytest.approx(0.0, abs=1e-6) and deficit.p0 == pytest.approx(0.5, abs=1e-3)
    assert deficit.expected_z == pytest.approx(without.z, rel=1e-3)


def test_cls_limits_agree_with_pyhf_uncorrelated_background():
    signal, background, uncertainty, observed = [12.0, 11.0], [50.0, 52.0], [3.0, 7.0], [51.0, 48.0]
    spec = stats.fit_spec(
        [
            stats.channel_spec(
                "SR",
                {"background": weighted(background, np.square(uncertainty))},
                signal=weighted(signal, np.zeros(2)),
                data=observed,
                template_statistics="none",
                systematics={
                    "background": [{"type": "shapesys", "name": "uncorr_bkguncrt", "uncertainty": uncertainty}]
                },
            )
        ]
    )
    ours = stats.build_workspace(spec).model()
    reference = pyhf.simplemodels.uncorrelated_background(signal, background, uncertainty)
    data = np.r_[observed, ours.config.auxdata]
    assert np.allclose(data, np.r_[observed, reference.config.auxdata])
    limit = stats.upper_limit(ours, data)
    obs_ref, exp_ref = pyhf.infer.intervals.upper_limits.upper_limit(data, reference, scan=None)
    assert limit.observed == pytest.approx(float(obs_ref), rel=1e-3)
    assert np.allclose(limit.expected, [float(e) for e in exp_ref], rtol=1e-3)
    assert limit.expected[0] < limit.expected[2] < limit.expected[4]
    scanned = stats.upper_limit(
        stats.counting_model(signal, background, background_uncertainty=uncertainty), data, scan=np.linspace(0, 5, 21)
    )
    scan_ref, exp_scan_ref = pyhf.infer.intervals.upper_limits.upper_limit(data, reference, scan=np.linspace(0, 5, 21))
    assert scanned.observed == pytest.approx(float(scan_ref), rel=1e-6)
    assert scanned.cls_expected.shape == (5, 21)


def test_workspace_round_trip_and_multichannel(tmp_path):
    edges = np.linspace(0, 1, 4)
    channels = [
        stats.channel_spec(
            region,
            {
                "qcd": weighted([100.0, 40.0, 10.0], [25.0, 10.0, 4.0], edges),
                "ttbar": weighted([10.0, 8.0, 6.0], None, edges),
            },
            signal=weighted([0.5, 2.0, 6.0], [0.01, 0.04, 0.1], edges),
            data=weighted([105.0, 50.0, 18.0], None, edges),
            template_statistics=statistics,
            systematics={
                "ttbar": [
                    {"type": "normsys", "name": "xsec_ttbar", "lo": 0.9, "hi": 1.1},
                    {"type": "histosys", "name": "jes", "lo": [9.0, 7.5, 5.0], "hi": [11.0, 8.5, 7.0]},
                ]
            },
        )
        for region, statistics in (("SR", "staterror"), ("CR", "shapesys"))
    ]
    workspace = stats.build_workspace(stats.fit_spec(channels))
    model = workspace.model()
    assert model.config.channels == ["CR", "SR"]
    assert {"mu", "jes", "xsec_ttbar"} <= set(model.config.par_names)
    assert "staterror_SR" in model.config.parameters and "shapesys_CR_qcd" in model.config.parameters
    path = stats.write_workspace(workspace, tmp_path / "workspace.json")
    again = stats.read_workspace(path)
    assert again.model().config.par_names == model.config.par_names
    assert np.allclose(again.data(again.model()), workspace.data(model))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda s: s["channels"][0]["samples"][1]["modifiers"].append({"type": "lumi", "name": "lumi"}),
            "valid types: normfactor, staterror, shapesys, normsys, histosys",
        ),
        (lambda s: s["channels"][0]["samples"][1].update(yields=[1.0, 2.0, 3.0]), "has 3 bins, the channel data has 2"),
        (lambda s: s["channels"][0]["samples"][1].update(yields=[-1.0, 2.0]), "negative yields"),
        (lambda s: s.update(poi="r"), "'r' must be the name of a normfactor"),
        (
            lambda s: s["channels"][0]["samples"][1]["modifiers"].append({"type": "normsys", "name": "x", "hi": 1.1}),
            "numeric 'hi' and 'lo'",
        ),
    ],
)
def test_invalid_specs_are_refused_with_the_reason(mutate, message):
    spec = {
        "poi": "mu",
        "channels": [
            {
                "name": "SR",
                "data": [10.0, 12.0],
                "samples": [
                    {"name": "signal", "yields": [1.0, 2.0], "modifiers": [{"type": "normfactor", "name": "mu"}]},
                    {"name": "qcd", "yields": [9.0, 9.0], "modifiers": []},
                ],
            }
        ],
    }
    mutate(spec)
    with pytest.raises(ConfigurationError, match=message):
        stats.build_workspace(spec)


def test_read_workspace_errors(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        stats.read_workspace(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputFileError, match="bad.json"):
        stats.read_workspace(tmp_path / "bad.json")


def test_datacard_round_trip_with_uproot(tmp_path):
    edges = np.array([0.0, 0.5, 0.8, 1.0])
    qcd = weighted([200.0, 50.0, 5.0], [400.0, 100.0, 10.0], edges)
    ttbar = weighted([20.0, 10.0, 4.0], None, edges)
    signal = weighted([0.5, 3.0, 9.0], [0.05, 0.3, 0.9], edges)
    spec = stats.fit_spec(
        [
            stats.channel_spec(
                "SR",
                {"qcd": qcd, "ttbar": ttbar},
                signal=signal,
                data=weighted([210.0, 62.0, 12.0], None, edges),
                systematics={
                    "ttbar": [
                        {"type": "normsys", "name": "xsec_ttbar", "lo": 0.9, "hi": 1.2},
                        {"type": "histosys", "name": "jes", "lo": ttbar * 0.95, "hi": ttbar * 1.05},
                    ]
                },
            )
        ]
    )
    card, shapes = stats.write_combine(spec, tmp_path / "datacard.txt")
    text = card.read_text()
    lines = {
        line.split()[0]: line.split()[1:] for line in text.splitlines() if line and not line.startswith(("#", "-"))
    }
    assert lines["observation"] == ["284"]
    assert [float(v) for v in lines["rate"]] == pytest.approx([12.5, 255.0, 34.0])
    assert lines["xsec_ttbar"] == ["lnN", "-", "-", "0.9/1.2"]
    assert lines["jes"] == ["shape", "-", "-", "1"]
    assert "SR autoMCStats 0" in text
    assert "shapes * * shapes.root $CHANNEL/$PROCESS $CHANNEL/$PROCESS_$SYSTEMATIC" in text
    with uproot.open(shapes) as f:
        assert np.allclose(f["SR/qcd"].values(), qcd.values())
        assert np.allclose(f["SR/qcd"].variances(), qcd.variances())
        assert np.allclose(f["SR/qcd"].axis().edges(), edges)
        assert np.allclose(f["SR/data_obs"].values(), [210.0, 62.0, 12.0])
        assert np.allclose(f["SR/ttbar_jesUp"].values(), ttbar.values() * 1.05)
        assert np.allclose(f["SR/ttbar_jesDown"].values(), ttbar.values() * 0.95)
        assert f["SR/signal"].to_hist().sum().value == pytest.approx(12.5)


def test_background_efficiency_edges_keep_enough_background_per_bin_and_enclose_the_signal():
    background = np.random.default_rng(3).exponential(1.0, 10_000)
    edges = background_efficiency_edges(background, min_entries=20, high=50.0)
    counts, _ = np.histogram(background, bins=edges)
    assert counts.sum() == background.size and counts.min() >= 20
    # inner edges keep 0.5 ... 0.002 of the background above them; 0.001 (10 entries) is dropped
    kept_above = [(background >= edge).mean() for edge in edges[1:-1]]
    np.testing.assert_allclose(kept_above, [0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002], atol=2e-4)
    assert edges[-1] > 50.0 and edges[0] == background.min()
    few = background_efficiency_edges(background[:30], min_entries=20)
    assert len(few) == 2  # one bin: no efficiency leaves two bins of 20 entries
    with pytest.raises(ConfigurationError, match="decreasing"):
        background_efficiency_edges(background, efficiencies=[0.1, 0.2])
    with pytest.raises(ConfigurationError, match="finite"):
        background_efficiency_edges([1.0, np.nan])
