"""The numpy histogram filling gives exactly what one hist fill per event and partition gives."""

from __future__ import annotations

import hist
import numpy as np
import pytest

from coffea_ad.processing.histograms import (
    _fill_regions,
    count_regions,
    feature_axis,
    fill_histograms,
    fill_score_histograms,
    histogram_rows,
)

FLAGS = [f"partition{p}_region{r}" for p in range(3) for r in range(4)]


def region_ids(rng: np.random.Generator, n_events: int, spread: float) -> np.ndarray:
    """Per event one region of each of 3 partitions (4 regions each); ``spread`` of the events away from the
    partition's most common region (few combinations at a small spread), and some -1 (a broken partition)."""
    ids = np.stack([np.where(rng.random(n_events) < spread, rng.integers(0, 4, n_events), 3) + 4 * p
                    for p in range(3)], axis=1)
    ids[rng.random(n_events) < 0.02, 1] = -1
    return ids


def reference_fill(histogram, ids, columns, weight):
    """One hist fill per partition of the events whose columns are all defined (the definition)."""
    defined = np.all([~np.isnan(values) for values in columns.values()], axis=0)
    integer = {name for name in columns if isinstance(histogram.axes[name], hist.axis.Integer)}
    for partition in ids.T:
        histogram.fill(region=partition[defined], weight=weight[defined], **{
            name: values[defined].astype(np.int64) if name in integer else values[defined]
            for name, values in columns.items()
        })
    return histogram


@pytest.mark.parametrize("spread", [0.05, 0.9])
def test_fill_equals_hist_fills_with_weights_none_and_broken_partitions(spread):
    rng = np.random.default_rng(7)
    n_events = 20_000
    ids = region_ids(rng, n_events, spread)
    mjj = np.where(rng.random(n_events) < 0.1, np.nan, rng.exponential(1500.0, n_events))  # NaN: no dijet
    mjj[:5] = [-1.0, 0.0, 8000.0, 9000.0, 7999.9]  # underflow, edges, overflow
    n_jets = rng.integers(0, 25, n_events).astype(float)  # past the Integer axis' 20: overflow
    score = rng.normal(0.0, 2.0, n_events)
    weight = rng.normal(1.0, 0.3, n_events)
    features = {"mjj": mjj, "n_jets": n_jets}
    histograms = fill_histograms(histogram_rows(features, ids, ["mjj", "n_jets"], weight=weight), FLAGS)
    for name in ("mjj", "n_jets"):
        expected = hist.Hist(hist.axis.IntCategory(range(len(FLAGS)), name="region"), feature_axis(name),
                             storage=hist.storage.Weight())
        reference_fill(expected, ids, {name: features[name]}, weight)
        got, want = histograms[name].view(flow=True), expected.view(flow=True)
        np.testing.assert_allclose(got["value"], want["value"], rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(got["variance"], want["variance"], rtol=1e-12, atol=1e-9)
        assert histograms[name].sum(flow=True).value == pytest.approx(want["value"].sum())
    edges = np.linspace(-5.0, 5.0, 21)
    rows = histogram_rows({"mjj": mjj, "ae": score}, ids, ["mjj", "ae"], weight=weight)
    (scored,) = fill_score_histograms(rows, FLAGS, {"ae": edges}, "mjj").values()
    expected = hist.Hist(hist.axis.IntCategory(range(len(FLAGS)), name="region"),
                         hist.axis.Variable(edges, name="ae"), feature_axis("mjj"), storage=hist.storage.Weight())
    reference_fill(expected, ids, {"ae": score, "mjj": mjj}, weight)
    np.testing.assert_allclose(scored.view(flow=True)["value"], expected.view(flow=True)["value"], atol=1e-9)
    np.testing.assert_allclose(scored.view(flow=True)["variance"], expected.view(flow=True)["variance"], atol=1e-9)


def test_unweighted_fill_counts_each_event_once_per_partition_and_the_counter_keeps_broken_ids():
    rng = np.random.default_rng(3)
    ids = region_ids(rng, 5000, 0.5)
    mjj = rng.uniform(0.0, 8000.0, 5000)
    (histogram,) = fill_histograms(histogram_rows({"mjj": mjj}, ids, ["mjj"]), FLAGS).values()
    view = histogram.view(flow=True)
    assert view["value"].sum() == 3 * 5000 and np.array_equal(view["value"], view["variance"])
    counter = count_regions(ids, FLAGS)
    per_flag = counter.view(flow=True)
    assert per_flag.sum() == 3 * 5000
    assert per_flag[-1] == np.sum(ids == -1)  # a broken partition's events: in the overflow bin, not lost
    np.testing.assert_array_equal(per_flag[:-1], [np.sum(ids == flag) for flag in range(len(FLAGS))])


def test_direct_and_per_combination_accumulation_agree():
    """The two ways of adding sums into the regions (chosen by histogram size) give the same histogram."""
    rng = np.random.default_rng(11)
    ids = region_ids(rng, 3000, 0.3)
    rows = histogram_rows({"mjj": rng.uniform(0.0, 8000.0, 3000)}, ids, ["mjj"], weight=rng.random(3000))
    small = hist.Hist(hist.axis.IntCategory(range(len(FLAGS)), name="region"),
                      hist.axis.Regular(4, 0.0, 8000.0, name="mjj"), storage=hist.storage.Weight())
    large = hist.Hist(hist.axis.IntCategory(range(len(FLAGS)), name="region"),
                      hist.axis.Regular(4000, 0.0, 8000.0, name="mjj"), storage=hist.storage.Weight())
    per_combination = _fill_regions(small, rows, ["mjj"])
    direct = _fill_regions(large, rows, ["mjj"])
    rebinned = direct[{"mjj": hist.rebin(1000)}]
    np.testing.assert_allclose(per_combination.values(), rebinned.values(), rtol=1e-12)
    np.testing.assert_allclose(per_combination.variances(), rebinned.variances(), rtol=1e-12)


def test_dask_fill_equals_the_eager_fill_with_one_task_per_partition_for_all_histograms():
    """In dask mode every histogram of a call is filled by one task per partition (not one per histogram and
    partition), and computes to the histogram the eager fill gives."""
    import dask
    import dask_awkward as dak

    rng = np.random.default_rng(5)
    n_events, n_partitions = 6000, 3
    ids = region_ids(rng, n_events, 0.4)
    features = {"mjj": rng.exponential(1500.0, n_events), "n_jets": rng.integers(0, 25, n_events).astype(float),
                "mj_min": np.where(rng.random(n_events) < 0.1, np.nan, rng.uniform(0.0, 500.0, n_events))}
    rows = histogram_rows(features, ids, list(features), weight=rng.normal(1.0, 0.3, n_events))
    eager = fill_histograms(rows, FLAGS)
    lazy = fill_histograms(dak.from_awkward(rows, npartitions=n_partitions), FLAGS, dask=True)
    computed = dask.compute(lazy)[0]
    assert set(computed) == set(eager) == set(features)
    for name, histogram in eager.items():
        np.testing.assert_allclose(computed[name].view(flow=True)["value"], histogram.view(flow=True)["value"])
        np.testing.assert_allclose(computed[name].view(flow=True)["variance"], histogram.view(flow=True)["variance"])
    graph = dict(dask.base.collections_to_dsk(list(lazy.values()), optimize_graph=False))
    input_keys = {key for key in graph if key[0].startswith("from-awkward")}
    # One fill per partition, one sum (up to 8 partitions), one extraction per histogram.
    assert len(graph) - len(input_keys) == n_partitions + 1 + len(features)
