"""The main job on the embedded default: what ``coffea-ad demo`` (and ``make demo``) runs.

The embedded default is a small LHC Olympics-like sample: Pythia8 QCD dijets and W' -> X(qq) Y(qq) events,
generated on first use into the cache and reused afterwards. The demo is a short sliding-window search
(:func:`coffea_ad.workflow.search.run_search`) on a ``distributed.LocalCluster``: the feature processor on
the QCD file, the W' events injected into it (which events are W' is known only to the evaluation), the fit
range found above the turn-on, a handful of staggered ~20 % mjj windows, CATHODE cross-trained in 5 folds per
window (every (window, fold) training a Dask task; every event scored by the model that did not see it), cuts
keeping 10 % and 1 % of each window's sidebands, a dijet-function fit per window and efficiency, local and
global significance next to the inclusive search, and expected CLs limits on the injected signal. It writes
the search folder (``index.html``, ``search.json``, plots, workspaces, datacards, models) and returns a
short text summary.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from coffea_ad.paths import cache_dir

__all__ = ["DEFAULT_SAMPLES", "run_demo", "text_histogram"]


#: process -> (events, seed): the embedded default. Every W' event is injected into the QCD events: about
#: 60 of them in the 3.3-3.7 TeV window over ~300 QCD events.
DEFAULT_SAMPLES: dict[str, tuple[int, int]] = {"qcd_dijet": (4000, 1), "wprime_xy": (200, 2)}
#: The LHC Olympics features the search trains on in each window.
LHCO_FEATURES = ["mj_min", "delta_mj", "tau21_j1", "tau21_j2"]
MJJ_EDGES = np.arange(2000.0, 5001.0, 200.0)


def text_histogram(stacks: dict[str, np.ndarray], edges: np.ndarray, width: int = 50, unit: str = "GeV") -> str:
    """A stacked histogram drawn with one character per sample (``#`` first, then ``+``, ``o``...)."""
    symbols = "#+o*"
    counts = {label: np.histogram(values, bins=edges)[0] for label, values in stacks.items()}
    total = np.sum(list(counts.values()), axis=0)
    scale = width / max(int(total.max()), 1)
    lines = []
    for i, (low, high) in enumerate(zip(edges[:-1], edges[1:])):
        bar = "".join(symbol * int(round(counts[label][i] * scale)) for symbol, label in zip(symbols, counts))
        numbers = " + ".join(str(counts[label][i]) for label in counts)
        lines.append(f"{low:6.0f}-{high:<6.0f}{unit} |{bar:<{width}}| {numbers}")
    legend = "   ".join(f"{symbol} {label}" for symbol, label in zip(symbols, counts))
    return "\n".join([*lines, f"{'':17}{legend}"])


def _mjj(path: Path) -> np.ndarray:
    from coffea_ad.processing.tables import float_column, read_parquet

    values = float_column(read_parquet(path), "mjj")
    return values[np.isfinite(values)]


def run_demo(output: str | Path | None = None, workers: int | None = None, *, epochs: int = 10) -> str:
    """The main job on the embedded default: generate (cached) -> features on a LocalCluster -> W' injected ->
    sliding-window CATHODE search (trained on the cluster) -> fits -> report; returns a text summary."""
    from coffea_ad.generate import cached_sample, read_sample_metadata
    from coffea_ad.workflow.search import run_search

    folder = Path(output) if output else cache_dir() / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"coffea_ad demo: LHC Olympics-like sliding-window search in {folder}"]
    paths = {}
    for process, (n_events, seed) in DEFAULT_SAMPLES.items():
        paths[process] = cached_sample(folder, process, n_events, seed=seed, workers=workers)
        metadata = read_sample_metadata(paths[process])
        lines.append(
            f"  {process:10s} {metadata['n_events']:6d} events  sigma = {metadata['cross_section_pb']:.4g} "
            f"+- {metadata['cross_section_error_pb']:.2g} pb  ({metadata['n_tried']} tried)  {paths[process].name}"
        )
    search = folder / "search"
    result = run_search(
        {"qcd": {"files": {str(paths["qcd_dijet"]): "Events"}}},
        search,
        method="cathode",
        features=LHCO_FEATURES,
        inject=paths["wprime_xy"],
        training={"epochs": epochs},
        workers=workers,
        progress=True,
    )
    lines += result["summary_text"].splitlines()
    lines += _truth_lines(result)
    lines.append(f"  report: {search / 'index.html'} (search.json, summary.txt, plots/, windows/)")
    features = search / "features"
    mjj = {"QCD dijets": _mjj(features / "data" / "features" / "qcd.parquet"),
           "W' -> XY": _mjj(features / "injected_signal" / "features" / "injected.parquet")}
    lines.append(text_histogram(mjj, MJJ_EDGES))
    return "\n".join(lines)


def _truth_lines(result: dict) -> list[str]:
    """What the truth (which events were injected) says about each trained window: for the evaluation only."""
    lines = ["  truth (evaluation only): injected W' events in the window, before -> after each cut; "
             "expected 95% CLs limit on them"]
    for window in result["windows"]:
        if window["status"] != "done":
            continue
        parts = []
        for cut in window["efficiencies"]:
            text = f"eff {cut['efficiency']:g}: {window['injected_in_window']} -> {cut.get('injected_after_cut', 0)}"
            limit = cut.get("expected_limit") or {}
            if limit.get("status") == "done":
                text += f" (expected limit {limit['expected_signal_events']['median']:.0f} events)"
            parts.append(text)
        lines.append(f"    {window['name']:>10} GeV: " + "; ".join(parts))
    return lines
