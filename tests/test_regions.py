"""Regions: exact boundaries, None never inside a region, every event in exactly one region per partition."""

from __future__ import annotations

import warnings

import awkward as ak
import numpy as np
import pytest
from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

from coffea_ad.errors import ConfigurationError
from coffea_ad.features import compute_features
from coffea_ad.features.regions import (
    CutflowError,
    RegionConfig,
    check_cutflow,
    context_split,
    cutflow,
    deta_split,
    flag_names,
    lepton_charge_split,
    lepton_flavour_split,
    mass_window,
    partition_layout,
    partitions,
    region_flags,
    region_ids,
)


def as_lists(partition):
    return {region: ak.to_list(mask) for region, mask in partition.items()}


def assert_exactly_one_region(partition):
    stacked = np.stack([ak.to_numpy(mask).astype(int) for mask in partition.values()])
    np.testing.assert_array_equal(stacked.sum(axis=0), 1)


def test_mass_window_boundaries_sidebands_and_missing():
    mjj = ak.Array([3500.0, 3300.0, 3299.9, 3700.0, 3100.0, 2899.0, 4099.0, 4100.0, None])
    windows = mass_window(mjj, 3500.0, 200.0, 400.0)
    assert_exactly_one_region(windows)
    assert as_lists(windows) == {
        "sr": [True, True, False, False, False, False, False, False, False],
        "sb": [False, False, True, True, True, False, True, False, False],
        "outside": [False, False, False, False, False, True, False, True, False],
        "missing": [False, False, False, False, False, False, False, False, True],
    }
    everything_else = mass_window(mjj, 3500.0, 200.0, None)
    assert ak.sum(everything_else["sb"]) == 6 and ak.sum(everything_else["outside"]) == 0
    assert_exactly_one_region(everything_else)


def test_deta_split_puts_the_boundary_in_the_control_region_and_none_in_missing():
    split = deta_split(ak.Array([0.0, 1.2999, 1.3, 2.5, None]), 1.3)
    assert as_lists(split) == {
        "sr": [True, True, False, False, False],
        "cr": [False, False, True, True, False],
        "missing": [False, False, False, False, True],
    }


def test_context_split_needs_both_ht_and_met():
    ht = ak.Array([1200.0, 1200.0, 800.0, 1000.0, None])
    met = ak.Array([150.0, 50.0, 150.0, 100.0, 300.0])
    split = context_split(ht, met, 1000.0, 100.0)
    assert as_lists(split) == {
        "sr": [True, False, False, True, False],
        "cr": [False, True, True, False, False],
        "missing": [False, False, False, False, True],
    }


def test_lepton_flavour_and_charge_regions():
    n_leptons = ak.Array([2, 4, 4, 5, 4, 3])
    flavour = ak.Array([None, 0, 2, 4, 1, None])
    regions = lepton_flavour_split(n_leptons, flavour)
    assert_exactly_one_region(regions)
    assert [name for index in range(6) for name, mask in regions.items() if mask[index]] == [
        "lt4", "4e", "2e2mu", "4mu", "3e1mu", "lt4",
    ]
    charge = lepton_charge_split(ak.Array([None, 0, 2, -1, None]))
    assert_exactly_one_region(charge)
    assert ak.to_list(charge["neutral"]) == [False, True, False, False, False]


def test_region_ids_mark_a_broken_partition_instead_of_guessing():
    good = {"a": ak.Array([True, False, False]), "b": ak.Array([False, True, True])}
    overlapping = {"x": ak.Array([True, True, False]), "y": ak.Array([False, True, False])}
    ids = region_ids({"good": good, "broken": overlapping})
    # Flags in order: good_a, good_b, broken_x, broken_y; event 1 is in both x and y, event 2 in neither.
    assert ids.tolist() == [[0, 2], [1, -1], [1, -1]]
    counts = [ak.sum(ak.flatten(ids) == position) for position in range(4)]
    layout = {"good": ("a", "b"), "broken": ("x", "y")}
    assert flag_names(layout) == ["good_a", "good_b", "broken_x", "broken_y"]
    summary = cutflow(counts, layout, 3)
    assert summary["partitions"] == {"good": {"a": 1, "b": 2}, "broken": {"x": 1, "y": 0}}
    with pytest.raises(CutflowError, match="broken.*1 events.*3 events"):
        check_cutflow(summary, source="test")


@pytest.fixture(scope="module")
def ttbar_partitions(shared_nanoaod):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        events = NanoEventsFactory.from_root(
            {str(shared_nanoaod / "nano_tt_v12.root"): "Events"}, schemaclass=NanoAODSchema, mode="eager"
        ).events()
    features = compute_features(events, "all")
    config = RegionConfig(mjj_window_centres=(300.0, 500.0), mjj_window_half_width=100.0, ht_min=300.0, met_min=50.0)
    return features, partitions(features, config), config


def test_every_ttbar_event_is_counted_exactly_once_per_partition(ttbar_partitions):
    features, masks, config = ttbar_partitions
    assert list(masks) == ["mjj300", "mjj500", "deta", "context", "leptons", "charge4l"]
    assert list(masks) == list(partition_layout(features.fields, config))
    for partition in masks.values():
        assert_exactly_one_region(partition)
    ids = region_ids(masks)
    flags = list(region_flags(masks))
    counts = [ak.sum(ak.flatten(ids) == position) for position in range(len(flags))]
    summary = cutflow(counts, partition_layout(features.fields, config), len(features))
    check_cutflow(summary)
    # The counts agree with the masks and with the features behind them.
    assert summary["partitions"]["deta"]["missing"] == ak.sum(features.n_fatjets < 2)
    assert summary["partitions"]["deta"]["sr"] == ak.sum(ak.fill_none(features.deta_jj < 1.3, False))
    assert summary["partitions"]["context"]["sr"] == ak.sum((features.ht >= 300) & (features.met >= 50))
    assert summary["partitions"]["mjj300"]["sr"] > 0 and summary["partitions"]["mjj300"]["sb"] > 0
    assert summary["partitions"]["leptons"]["lt4"] == len(features)


def test_partitions_need_their_features_and_the_config_is_validated():
    features = {"mjj": ak.Array([3500.0]), "ht": ak.Array([900.0])}
    assert list(partitions(features)) == ["mjj2500", "mjj3000", "mjj3500", "mjj4000", "mjj4500"]
    with pytest.raises(ConfigurationError, match="deta_max"):
        RegionConfig(deta_max=-1.0)
    with pytest.raises(ConfigurationError, match="repeat"):
        RegionConfig(mjj_window_centres=(3500.0, 3500.2))
    with pytest.raises(ConfigurationError, match="sideband"):
        RegionConfig(mjj_sideband_width=0.0)
