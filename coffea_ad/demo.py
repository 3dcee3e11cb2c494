"""The main job on the embedded default: what ``coffea-ad demo`` (and ``make demo``) runs.

The embedded default is a small LHC Olympics-like sample: Pythia8 QCD dijets with W' -> X(qq) Y(qq)
events injected on top, generated on first use into the cache and reused afterwards. The job reports
what it made: the events, the cross sections, and the dijet mass spectrum as a text histogram.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from coffea_ad.errors import CoffeaADError
from coffea_ad.paths import cache_dir

__all__ = ["DEFAULT_SAMPLES", "run_demo", "text_histogram"]

log = logging.getLogger(__name__)

#: process -> (events, seed): the embedded default. The W' events are injected on top of the QCD
#: background at S/B = 200 / 4000 overall, which is a few tens of percent in the 3.3-3.7 TeV window.
DEFAULT_SAMPLES: dict[str, tuple[int, int]] = {"qcd_dijet": (4000, 1), "wprime_xy": (200, 2)}
MJJ_EDGES = np.arange(2000.0, 5001.0, 200.0)


def _cached_sample(folder: Path, process: str, n_events: int, seed: int, workers: int | None) -> tuple[Path, dict]:
    from coffea_ad.generate import generate, read_metadata

    path = folder / f"{process}_{n_events}_seed{seed}.root"
    if path.exists():
        try:
            metadata = read_metadata(path)
            if metadata["n_events"] == n_events and metadata["settings"]["process"] == process:
                log.info("reusing %s", path)
                return path, metadata
        except CoffeaADError:
            log.warning("regenerating %s: it is not a complete coffea_ad sample", path)
    generate(process, n_events, path, seed=seed, workers=workers)
    return path, read_metadata(path)


def _dijet_mass(path: Path) -> np.ndarray:
    import awkward as ak
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    from coffea_ad.features import compute_features

    events = NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=NanoAODSchema, mode="eager").events()
    return ak.to_numpy(ak.drop_none(compute_features(events, "mjj").mjj))


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


def run_demo(output: str | Path | None = None, workers: int | None = None) -> str:
    """Generate (or reuse) the embedded default sample and return a text report of what it holds."""
    folder = Path(output) if output else cache_dir() / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"coffea_ad demo: LHC Olympics-like dijet sample in {folder}"]
    mjj = {}
    for process, (n_events, seed) in DEFAULT_SAMPLES.items():
        path, metadata = _cached_sample(folder, process, n_events, seed, workers)
        mjj[process] = _dijet_mass(path)
        lines.append(
            f"  {process:10s} {metadata['n_events']:6d} events  sigma = {metadata['cross_section_pb']:.4g} "
            f"+- {metadata['cross_section_error_pb']:.2g} pb  ({metadata['n_tried']} tried)  {path.name}"
        )
    window = {label: int(np.sum((values > 3300) & (values < 3700))) for label, values in mjj.items()}
    lines.append(
        f"  dijet mass of the two leading fat jets; in 3.3-3.7 TeV: {window['qcd_dijet']} QCD and "
        f"{window['wprime_xy']} W' events (S/B = {window['wprime_xy'] / max(window['qcd_dijet'], 1):.2f})"
    )
    lines.append(text_histogram({"QCD dijets": mjj["qcd_dijet"], "W' -> XY": mjj["wprime_xy"]}, MJJ_EDGES))
    return "\n".join(lines)
