"""The scan plot and the HTML report of ``coffea-ad search``, on a small search result with real plots.

The result has three mjj windows and two efficiencies of the cut: one window is skipped (too few events),
one entry has a poor sideband fit, and a signal injected at 3.5 TeV makes the 1 % cut of the window around
it the most significant test. Its spectra are Poisson draws of a dijet function, so every number of the
table (observed, background, local Z, fit p) is computed, not typed, and the fit plots are real ones.
The page is checked as text and, where Chromium and Selenium are installed, in a headless browser.
"""

from __future__ import annotations

import base64
import copy
import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

from coffea_ad.errors import InputFileError
from coffea_ad.plotting import plot_fit, plot_local_p_scan, save_figure
from coffea_ad.plotting.search import P_VALUE_FLOOR, SIGMA_LINES
from coffea_ad.workflow.report import write_search_report

EFFICIENCIES = (0.1, 0.01)
EDGES = np.arange(2600.0, 7001.0, 100.0)
FIT_RANGE = (2600.0, 7000.0)
INJECTED_MASS = 3500.0
SKIP_REASON = "only 561 events in the window: too few to train"
#: The (window, efficiency) whose sideband fit is poor, and the one that holds the injected signal.
POOR = ("2725-3331", 0.1)
BEST = ("3331-4071", 0.01)

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)


def _dijet(total: float) -> np.ndarray:
    """Expected QCD counts per bin of EDGES: a falling dijet function normalised to ``total`` events."""
    x = 0.5 * (EDGES[1:] + EDGES[:-1]) / 13000.0
    shape = (1 - x) ** 8 / x**5
    return total * shape / shape.sum()


def _bump(total: float) -> np.ndarray:
    """A Gaussian resonance of ``total`` events at INJECTED_MASS (7 % resolution) per bin of EDGES."""
    cdf = norm.cdf(EDGES, INJECTED_MASS, 0.07 * INJECTED_MASS)
    return total * np.diff(cdf)


def _hunt(data: np.ndarray, prediction: np.ndarray, window: tuple[float, float], poor: bool) -> dict:
    """The bump-hunt numbers of one window from its spectra (Gaussian approximation, one-sided)."""
    inside = (EDGES[:-1] >= window[0]) & (EDGES[1:] <= window[1])
    observed, background = float(data[inside].sum()), float(prediction[inside].sum())
    uncertainty = 0.01 * background
    z = (observed - background) / np.sqrt(background + uncertainty**2)
    p0 = float(norm.sf(max(z, 0.0)))
    return {
        "observed": observed, "background": background, "background_uncertainty": uncertainty,
        "local_p0": p0, "local_Z": float(norm.isf(p0)), "fit_ok": not poor, "fit_p_value": 0.003 if poor else 0.41,
    }


def _window(name: str, low: float, high: float, qcd: np.ndarray, signal: np.ndarray, rng) -> dict:
    data = rng.poisson(qcd + signal).astype(np.float64)
    inside = (EDGES[:-1] >= low) & (EDGES[1:] <= high)
    window = {
        "name": name, "window_GeV": [low, high], "centre_GeV": 0.5 * (low + high), "status": "done",
        "reason": None, "events_in_window": int(data[inside].sum()),
        "inclusive": _hunt(data, qcd, (low, high), poor=False), "efficiencies": [],
    }
    for efficiency in EFFICIENCIES:
        # the cut keeps `efficiency` of QCD and most of the signal
        cut = rng.poisson(efficiency * qcd + 0.6 * signal).astype(np.float64)
        entry = {
            "efficiency": efficiency, "status": "done", "reason": None, "threshold": float(1 - efficiency),
            "events_after_cut": int(cut.sum()),
            **_hunt(cut, efficiency * qcd, (low, high), poor=(name, efficiency) == POOR),
            "fit_plot": f"plots/fit_{name}_eff{efficiency:g}.png",
            "workspace": f"windows/{name}/workspace_eff{efficiency:g}.json",
            "datacard": f"windows/{name}/datacard_eff{efficiency:g}.txt",
        }
        window["efficiencies"].append(entry)
        fig = plot_fit(
            EDGES, cut, efficiency * qcd, uncertainty=0.01 * efficiency * qcd, window=(low, high),
            fit_range=FIT_RANGE, goodness_of_fit=(40.0, 38, entry["fit_p_value"]),
        )
        window.setdefault("_figures", []).append((entry["fit_plot"], fig))
    return window


def _global(windows: list[dict], inclusive: bool) -> dict:
    entries = [
        (w, w["inclusive"] if inclusive else e)
        for w in windows if w["status"] == "done" for e in ([None] if inclusive else w["efficiencies"])
    ]
    window, best = min(entries, key=lambda pair: pair[1]["local_p0"])
    global_p = min(1.0, len(entries) * best["local_p0"])
    return {
        "n_tests": len(entries), "trials_factor": len(entries), "local_Z": best["local_Z"],
        "local_p0": best["local_p0"], "window_GeV": window["window_GeV"],
        "efficiency": None if inclusive else best["efficiency"], "global_p": global_p,
        "global_Z": max(0.0, float(norm.isf(global_p))), "method": "trials_factor",
    }


def _build_result(folder: Path) -> dict:
    """Write the plots and link targets of a three-window search into ``folder``; return search.json's content."""
    rng = np.random.default_rng(13)
    qcd, signal = _dijet(400_000.0), _bump(250.0)
    windows = [
        _window("2725-3331", 2725.0, 3331.0, qcd, signal, rng),
        _window("3331-4071", 3331.0, 4071.0, qcd, signal, rng),
        {"name": "5500-6081", "window_GeV": [5500.0, 6081.0], "centre_GeV": 5790.5, "status": "skipped",
         "reason": SKIP_REASON, "events_in_window": 561, "efficiencies": []},
    ]
    (folder / "plots").mkdir()
    for window in windows:
        for relative, fig in window.pop("_figures", []):
            save_figure(fig, folder / relative)
        for entry in window["efficiencies"]:
            for key in ("workspace", "datacard"):
                (folder / entry[key]).parent.mkdir(parents=True, exist_ok=True)
                (folder / entry[key]).write_text("{}\n")
    result = {
        "method": "cathode", "data": "data.parquet", "mass": "mjj", "features": ["mj_min", "delta_mj"],
        "folds": 5, "ensemble": 1, "efficiencies": list(EFFICIENCIES), "fit_range_GeV": list(FIT_RANGE),
        "summary_text": "CATHODE sliding-window search\n3 windows, 1 skipped <too few events>\n",
        "plots": {"scan": "plots/local_p_scan.png"},
        "injection": {"file": "signal.parquet", "n_signal": 250, "mass_GeV": INJECTED_MASS},
        "windows": windows,
        "global": _global(windows, inclusive=False),
        "inclusive_global": _global(windows, inclusive=True),
    }
    # what the report receives went through search.json
    result = json.loads(json.dumps(result))
    save_figure(plot_local_p_scan(result), folder / result["plots"]["scan"])
    return result


@pytest.fixture(scope="module")
def search(tmp_path_factory) -> tuple[dict, Path]:
    folder = tmp_path_factory.mktemp("search")
    result = _build_result(folder)
    return result, write_search_report(result, folder)


def _entry(result: dict, name: str, efficiency: float) -> dict:
    window = next(w for w in result["windows"] if w["name"] == name)
    return next(e for e in window["efficiencies"] if e["efficiency"] == efficiency)


def _labelled_lines(fig) -> dict:
    return {line.get_label(): line for line in fig.axes[0].get_lines() if not line.get_label().startswith("_")}


# --- the scan plot -----------------------------------------------------------------------------------------


def test_the_injected_signal_is_the_most_significant_test(search):
    result, _ = search
    assert (result["global"]["window_GeV"], result["global"]["efficiency"]) == ([3331.0, 4071.0], 0.01)
    assert result["global"]["local_Z"] > 3.0 > _entry(result, "2725-3331", 0.01)["local_Z"]
    assert result["inclusive_global"]["local_Z"] < result["global"]["local_Z"]


def test_scan_has_one_series_per_efficiency_and_the_inclusive_search(search):
    result, _ = search
    fig = plot_local_p_scan(result)
    lines = _labelled_lines(fig)
    assert list(lines) == ["ε = 10 %", "ε = 1 %", "inclusive (no cut)"]
    assert lines["inclusive (no cut)"].get_linestyle() == "--"
    assert lines["inclusive (no cut)"].get_color() == "black"
    # x: window centres in order; y: the local p0 of each window, the skipped window a gap (NaN), not a zero
    np.testing.assert_allclose(lines["ε = 1 %"].get_xdata(), [3028.0, 3701.0, 5790.5])
    y = np.asarray(lines["ε = 1 %"].get_ydata(), dtype=float)
    np.testing.assert_allclose(y[:2], [_entry(result, "2725-3331", 0.01)["local_p0"], result["global"]["local_p0"]])
    assert np.isnan(y[2])
    assert fig.axes[0].get_yscale() == "log"


def test_scan_marks_five_sigma_lines_at_their_one_sided_p_values(search):
    fig = plot_local_p_scan(search[0])
    ax = fig.axes[0]
    dotted = [line for line in ax.get_lines() if line.get_linestyle() == ":"]
    assert len(dotted) == len(SIGMA_LINES) == 5
    np.testing.assert_allclose(sorted(line.get_ydata()[0] for line in dotted), sorted(norm.sf([1, 2, 3, 4, 5])))
    assert {"1σ", "2σ", "3σ", "4σ", "5σ"} <= {text.get_text() for text in ax.texts}
    low, high = ax.get_ylim()
    assert low < norm.sf(5) and high >= 1.0


def test_scan_draws_poor_sideband_fits_open(search):
    result, _ = search
    fig = plot_local_p_scan(result)
    open_markers = [line for line in fig.axes[0].get_lines() if line.get_markerfacecolor() == "white"]
    assert len(open_markers) == 1
    (poor,) = open_markers
    assert poor.get_color() == _labelled_lines(fig)["ε = 10 %"].get_color()
    np.testing.assert_allclose(poor.get_xdata(), [3028.0])
    np.testing.assert_allclose(poor.get_ydata(), [_entry(result, *POOR)["local_p0"]])
    assert any(text.get_text().startswith("flagged (poor fit") for text in fig.axes[0].get_legend().get_texts())


def test_scan_marks_the_injection_and_writes_the_global_result(search):
    result, _ = search
    ax = plot_local_p_scan(result).axes[0]
    (band,) = [patch for patch in ax.patches if patch.get_label() == "injected signal"]
    x = band.get_path().transformed(band.get_patch_transform()).vertices[:, 0]
    assert x.min() < INJECTED_MASS < x.max()
    expected = f"global Z = {result['global']['global_Z']:.1f} (trials factor 4)"
    assert expected in ax.get_legend().get_title().get_text()

    no_injection = plot_local_p_scan({**result, "injection": None}).axes[0]
    assert not [patch for patch in no_injection.patches if patch.get_label() == "injected signal"]


def test_scan_clips_p_values_and_leaves_out_skipped_efficiencies(search):
    result = copy.deepcopy(search[0])
    huge = _entry(result, "3331-4071", 0.01)
    huge["local_p0"] = 0.0
    skipped = _entry(result, "2725-3331", 0.01)
    skipped.update(status="skipped", reason="the cut left 3 events", local_p0=None)
    y = np.asarray(_labelled_lines(plot_local_p_scan(result))["ε = 1 %"].get_ydata(), dtype=float)
    assert np.isnan(y[0]) and y[1] == P_VALUE_FLOOR and np.isnan(y[2])


# --- the page as text --------------------------------------------------------------------------------------


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)]


def test_page_shows_every_window_and_number(search):
    result, index = search
    page = index.read_text()
    assert index.name == "index.html"
    assert "coffea-ad search: cathode on data.parquet" in page
    assert "3 windows, 1 skipped &lt;too few events&gt;" in page  # summary text, escaped, in a <pre>
    assert re.search(r"<pre>CATHODE sliding-window search", page)
    for window in result["windows"]:
        low, high = window["window_GeV"]
        assert f"{low:.0f}–{high:.0f}" in page
        assert f">{window['events_in_window']}<" in page
        if window["status"] == "skipped":
            assert f"skipped: {SKIP_REASON}" in page
            continue
        assert f"{window['inclusive']['local_Z']:.2f}" in page
        for entry in window["efficiencies"]:
            for number in (
                f"{entry['observed']:.0f}", f"{entry['background']:.1f} ± {entry['background_uncertainty']:.1f}",
                f"{entry['local_Z']:.2f}", f"{entry['fit_p_value']:.2g}",
            ):
                assert number in page, number
            assert f'href="{entry["workspace"]}"' in page and f'href="{entry["datacard"]}"' in page
    assert "ε = 10 %" in page and "ε = 1 %" in page
    assert f"{result['global']['global_Z']:.2f}" in page and f"{result['inclusive_global']['global_Z']:.2f}" in page


def test_page_highlights_the_best_row_and_flags_the_poor_fit(search):
    result, index = search
    page = index.read_text()
    rows = re.findall(r"<tr( class=\"[^\"]*\")?>(.*?)</tr>", page.split("<tbody>")[1], flags=re.S)
    assert len(rows) == 3
    best = [cells for classes, cells in rows if "best" in classes]
    assert len(best) == 1 and "3331–4071" in best[0]
    assert f'best-cell">{result["global"]["local_Z"]:.2f}<' in best[0]
    poor = _entry(result, *POOR)
    assert f"{poor['fit_p_value']:.2g} (poor)" in rows[0][1]
    assert 'class="skipped"' in rows[2][0]


def test_page_embeds_the_scan_first_then_every_fit(search):
    result, index = search
    images = _images(index.read_text())
    folder = index.parent
    fits = [e["fit_plot"] for w in result["windows"] for e in w["efficiencies"]]
    assert len(images) == 1 + len(fits) == 5
    assert images[0] == (folder / result["plots"]["scan"]).read_bytes()
    assert images[1:] == [(folder / relative).read_bytes() for relative in fits]
    assert all(image.startswith(b"\x89PNG") for image in images)


def test_page_loads_nothing_from_outside(search):
    page = search[1].read_text()
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    assert "<script" not in page
    assert not re.search(r"<link[^>]+stylesheet", page)


def _beside(tmp_path: Path, index: Path) -> Path:
    """A new search folder with the plots and window files of ``index``'s (linked), for an edited result."""
    target = tmp_path / "report"
    target.mkdir()
    for relative in ("plots", "windows"):
        (target / relative).symlink_to(index.parent / relative)
    return target


def test_a_missing_plot_stops_the_report(tmp_path, search):
    result, index = search
    broken = copy.deepcopy(result)
    _entry(broken, "3331-4071", 0.1)["fit_plot"] = "plots/not_there.png"
    target = _beside(tmp_path, index)
    with pytest.raises(InputFileError, match="plots/not_there.png"):
        write_search_report(broken, target)
    assert sorted(p.name for p in target.iterdir()) == ["plots", "windows"]  # nothing half-written


def test_skipped_efficiencies_and_markup_in_reasons_are_shown_escaped(tmp_path, search):
    result, index = search
    edited = copy.deepcopy(result)
    entry = _entry(edited, "2725-3331", 0.01)
    entry.clear()
    entry.update(efficiency=0.01, status="skipped", reason="the cut left <3> events & no sideband")
    page = write_search_report(edited, _beside(tmp_path, index)).read_text()
    assert "skipped: the cut left &lt;3&gt; events &amp; no sideband" in page
    assert "<3>" not in page
    assert len(_images(page)) == 4


def test_a_missing_datacard_is_marked_and_logged(tmp_path, search, caplog):
    result, index = search
    edited = copy.deepcopy(result)
    _entry(edited, "3331-4071", 0.01)["datacard"] = "windows/3331-4071/not_written.txt"
    with caplog.at_level("WARNING", logger="coffea_ad.workflow.report"):
        page = write_search_report(edited, _beside(tmp_path, index)).read_text()
    assert "not_written.txt" in caplog.text
    assert '<span class="missing">datacard (missing)</span>' in page
    assert 'href="windows/3331-4071/not_written.txt"' not in page


# --- the page in a browser ---------------------------------------------------------------------------------


def _browser(user_data_dir: Path):
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if importlib.util.find_spec("selenium") is None:
        missing.append("the selenium Python package")
    if missing:
        pytest.skip(f"headless-browser check of the report needs {', '.join(missing)} (not installed)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={user_data_dir}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def _open(page: Path, user_data_dir: Path) -> dict:
    """Open ``page`` in headless Chromium; return its images, table rows and every URL the browser requested."""
    driver = _browser(user_data_dir)
    try:
        # the browser's own start-up requests (its new-tab page) are logged before the page is opened: drop them
        driver.get("about:blank")
        driver.get_log("performance")
        driver.get(page.resolve().as_uri())
        seen = driver.execute_script(
            "return {images: Array.from(document.images, i => [i.complete, i.naturalWidth]),"
            " rows: document.querySelectorAll('#windows tbody tr').length,"
            " resources: performance.getEntriesByType('resource').map(r => r.name)};"
        )
        requests = [
            message["params"]["request"]["url"]
            for message in (json.loads(entry["message"])["message"] for entry in driver.get_log("performance"))
            if message["method"] == "Network.requestWillBeSent"
        ]
    finally:
        driver.quit()
    return {**seen, "requests": requests}


def _outside(seen: dict, page: Path) -> list[str]:
    own = page.resolve().as_uri()
    urls = [*seen["requests"], *seen["resources"]]
    return sorted({url for url in urls if url != own and not url.startswith("data:")})


def test_page_in_a_headless_browser(search, tmp_path):
    result, index = search
    seen = _open(index, tmp_path / "chromium")
    assert len(seen["images"]) == 5
    assert all(complete and width > 0 for complete, width in seen["images"]), seen["images"]
    assert seen["rows"] == len(result["windows"]) == 3
    assert seen["requests"], "the performance log recorded no request at all: the check would see nothing"
    assert _outside(seen, index) == []


def test_the_browser_check_sees_a_page_that_is_not_self_contained(tmp_path):
    page = tmp_path / "leaky.html"
    page.write_text(
        '<!DOCTYPE html><html><head><link rel="icon" href="data:,">'
        '<link rel="stylesheet" href="http://127.0.0.1:9/style.css"></head>'
        '<body><img src="http://127.0.0.1:9/plot.png"><table id="windows"><tbody><tr><td>1</td></tr></tbody>'
        "</table></body></html>"
    )
    seen = _open(page, tmp_path / "chromium")
    assert seen["images"] == [[True, 0]]
    assert _outside(seen, page) == ["http://127.0.0.1:9/plot.png", "http://127.0.0.1:9/style.css"]
