"""The HTML report of ``coffea-ad search``: one self-contained page beside ``search.json``.

:func:`write_search_report` turns the search result (the mapping of ``search.json``) and the plots of its
folder into ``index.html``: the text summary, the global result, one table row per mjj window (its status or
skip reason, the events in the window, and per efficiency of the cut the observed events, the fitted
background, the local significance and the sideband-fit probability), then every plot embedded as a base64
image. The page loads nothing (no network, no external CSS, script or image): it can be mailed or archived
as one file. Only the links to each window's workspace and datacard point (relatively) into the folder.
"""

from __future__ import annotations

import base64
import html
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from coffea_ad.errors import ConfigurationError, InputFileError
from coffea_ad.paths import atomic_output
from coffea_ad.plotting.search import efficiency_entry, efficiency_label

__all__ = ["write_search_report"]

logger = logging.getLogger(__name__)

_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}

_DASH = "—"

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
p.setup { color: #555; margin-top: 0; }
pre { background: #f6f6f6; border: 1px solid #ddd; padding: 0.8em; overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.88em; }
th, td { border: 1px solid #bbb; padding: 0.2em 0.45em; }
th { background: #eef1f5; }
td.num { font-family: ui-monospace, monospace; text-align: right; white-space: nowrap; }
tr.skipped td { color: #888; background: #fafafa; }
td.skip { font-style: italic; color: #888; }
tr.best td { background: #fff4c2; }
td.best-cell { font-weight: bold; outline: 2px solid #d4a000; }
td.poor { color: #b00; }
.missing { color: #b00; }
span.files { white-space: nowrap; }
div.scroll { overflow-x: auto; }
p.legend { color: #555; font-size: 0.9em; }
.global { font-size: 1.05em; }
.global b { font-family: ui-monospace, monospace; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { color: #444; font-size: 0.92em; margin-top: 0.3em; }
div.fits { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 0 1.5em; }
"""


def _text(value: Any) -> str:
    return html.escape(str(value))


def _number(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return _DASH
    return format(float(value), spec)


def _window_label(window: Mapping[str, Any]) -> str:
    low, high = window.get("window_GeV") or (None, None)
    if low is None or high is None:
        return str(window.get("name", "?"))
    return f"{float(low):.0f}–{float(high):.0f}"


def _same_window(window: Mapping[str, Any], best: Mapping[str, Any]) -> bool:
    edges, best_edges = window.get("window_GeV"), best.get("window_GeV")
    if not edges or not best_edges:
        return False
    return all(math.isclose(float(a), float(b), rel_tol=1e-9) for a, b in zip(edges, best_edges, strict=True))


def _same_efficiency(entry: Mapping[str, Any], best: Mapping[str, Any]) -> bool:
    if entry.get("efficiency") is None or best.get("efficiency") is None:
        return False
    return math.isclose(float(entry["efficiency"]), float(best["efficiency"]), rel_tol=1e-9)


def _done(entry: Mapping[str, Any] | None) -> bool:
    return bool(entry) and entry.get("status", "done") == "done"


def _skip_text(entry: Mapping[str, Any] | None) -> str:
    if not entry:
        return "not run"
    status = entry.get("status") or "skipped"
    return f"{status}: {entry['reason']}" if entry.get("reason") else str(status)


def _cell(value: str, *classes: str, title: str | None = None) -> str:
    attributes = f' class="{" ".join(classes)}"' if classes else ""
    if title:
        attributes += f' title="{_text(title)}"'
    return f"<td{attributes}>{value}</td>"


def _efficiency_cells(entry: Mapping[str, Any] | None, best: bool) -> list[str]:
    """The four cells of one efficiency: observed, background ± uncertainty, local Z, sideband-fit p."""
    if not _done(entry):
        return [f'<td colspan="4" class="skip">{_text(_skip_text(entry))}</td>']
    poor = entry.get("fit_ok") is False
    # a good fit after a cut whose efficiency is not smooth in mjj next to the window: flagged too
    sculpting = not poor and entry.get("evidence_ok") is False
    background = _number(entry.get("background"), ".1f")
    if entry.get("background_uncertainty") is not None:
        background += f" ± {_number(entry['background_uncertainty'], '.1f')}"
    details = []
    if entry.get("threshold") is not None:
        details.append(f"score threshold {float(entry['threshold']):.4g}")
    if entry.get("events_after_cut") is not None:
        details.append(f"{float(entry['events_after_cut']):.0f} events pass the cut in all")
    z_classes = ["num", *(["best-cell"] if best else []), *(["poor"] if poor or sculpting else [])]
    flag = None
    if poor:
        flag = "poor sideband fit: not evidence of a signal"
    elif sculpting:
        flag = "the cut's efficiency is no power law of mjj next to the window: not evidence of a signal"
    return [
        _cell(_number(entry.get("observed"), ".0f"), "num", title="; ".join(details) or None),
        _cell(_text(background), "num"),
        _cell(_number(entry.get("local_Z"), ".2f") + (" (mjj)" if sculpting else ""), *z_classes, title=flag),
        _cell(_number(entry.get("fit_p_value"), ".2g") + (" (poor)" if poor else ""), "num",
              *(["poor"] if poor else [])),
    ]


def _link(folder: Path, relative: str, label: str) -> str:
    if not (folder / relative).is_file():
        logger.warning("search report: %s %s does not exist in %s", label, relative, folder)
        return f'<span class="missing">{_text(label)} (missing)</span>'
    return f'<a href="{_text(quote(relative))}">{_text(label)}</a>'


def _file_links(folder: Path, window: Mapping[str, Any], efficiencies: Sequence[float]) -> str:
    links = []
    for efficiency in efficiencies:
        entry = efficiency_entry(window, efficiency)
        files = [
            _link(folder, entry[key], key) for key in ("workspace", "datacard") if _done(entry) and entry.get(key)
        ]
        if files:
            links.append(f'<span class="files">{100 * efficiency:.3g} %: {" · ".join(files)}</span>')
    return "<br>".join(links) or _DASH


def _table(result: Mapping[str, Any], folder: Path, windows: Sequence[Mapping[str, Any]]) -> str:
    efficiencies = [float(e) for e in result.get("efficiencies") or ()]
    best = result.get("global") or {}
    head = [
        '<tr><th rowspan="2">window [GeV]</th><th rowspan="2">status</th><th rowspan="2">events in window</th>',
        *(f'<th colspan="4">{_text(efficiency_label(e))}</th>' for e in efficiencies),
        '<th rowspan="2">inclusive<br>local Z</th><th rowspan="2">files</th></tr>',
        "<tr>" + "<th>observed</th><th>background</th><th>local Z</th><th>fit p</th>" * len(efficiencies) + "</tr>",
    ]
    rows = []
    for window in windows:
        done = window.get("status") == "done"
        is_best = done and _same_window(window, best)
        classes = " ".join(name for name, on in (("best", is_best), ("skipped", not done)) if on)
        cells = [
            _cell(_text(_window_label(window)), "num"),
            _cell(_text(window.get("status") or "?"), *([] if done else ["skip"])),
            _cell(_number(window.get("events_in_window"), ".0f"), "num"),
        ]
        if not done:
            cells.append(f'<td colspan="{4 * len(efficiencies) + 2}" class="skip">{_text(_skip_text(window))}</td>')
        else:
            for efficiency in efficiencies:
                entry = efficiency_entry(window, efficiency)
                cells += _efficiency_cells(entry, is_best and entry is not None and _same_efficiency(entry, best))
            inclusive = window.get("inclusive") or {}
            poor = inclusive.get("fit_ok") is False
            cells.append(_cell(_number(inclusive.get("local_Z"), ".2f") + (" (poor fit)" if poor else ""), "num",
                               *(["poor"] if poor else [])))
            cells.append(_cell(_file_links(folder, window, efficiencies)))
        rows.append(f'<tr class="{classes}">' if classes else "<tr>")
        rows.append("".join(cells) + "</tr>")
    head_html, rows_html = "\n".join(head), "\n".join(rows)
    return (
        f'<div class="scroll"><table id="windows">\n<thead>\n{head_html}\n</thead>\n<tbody>\n{rows_html}\n'
        "</tbody>\n</table></div>"
    )


def _global_line(summary: Mapping[str, Any] | None, name: str) -> str:
    if not summary or summary.get("global_Z") is None:
        return f"<p class=\"global\">{_text(name)}: not available (no window was fitted).</p>"
    where = f"window {_window_label(summary)} GeV"
    if summary.get("efficiency") is not None:
        where += f", {efficiency_label(summary['efficiency'])}"
    method = str(summary.get("method") or "trials_factor")
    text = (
        f"{_text(name)}: <b>Z = {_number(summary.get('global_Z'), '.2f')}</b> "
        f"(global p = {_number(summary.get('global_p'), '.2g')}), from the largest local "
        f"Z = {_number(summary.get('local_Z'), '.2f')} (p0 = {_number(summary.get('local_p0'), '.2g')}) in "
        f"{_text(where)}; trials factor {_number(summary.get('trials_factor'), '.3g')} over "
        f"{_number(summary.get('n_tests'), '.0f')} tests"
    )
    if method != "trials_factor":
        text += f" (look-elsewhere correction: {_text(method.replace('_', ' '))})"
    return f'<p class="global">{text}.</p>'


def _image(folder: Path, relative: str, caption: str) -> str:
    path = folder / relative
    if not path.is_file():
        raise InputFileError(f"search report: plot {relative} (caption {caption!r}) does not exist in {folder}")
    mime = _MIME.get(path.suffix.lower())
    if mime is None:
        raise ConfigurationError(f"search report: plot {path} has suffix {path.suffix!r}; use one of {list(_MIME)}")
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img src="data:{mime};base64,{data}" alt="{_text(caption)}">'
        f"<figcaption>{_text(caption)} <code>({_text(relative)})</code></figcaption></figure>"
    )


def _fit_plots(folder: Path, windows: Sequence[Mapping[str, Any]], efficiencies: Sequence[float]) -> Iterator[str]:
    for window in windows:
        for efficiency in efficiencies:
            entry = efficiency_entry(window, efficiency)
            if not _done(entry) or not entry.get("fit_plot"):
                continue
            caption = (
                f"Sideband fit, window {_window_label(window)} GeV, {efficiency_label(efficiency)}: "
                f"observed {_number(entry.get('observed'), '.0f')}, background "
                f"{_number(entry.get('background'), '.1f')} ± {_number(entry.get('background_uncertainty'), '.1f')}, "
                f"local Z = {_number(entry.get('local_Z'), '.2f')}, fit p = {_number(entry.get('fit_p_value'), '.2g')}"
                + (" (poor sideband fit)" if entry.get("fit_ok") is False else "")
                + (" (cut not smooth in mjj next to the window)"
                   if entry.get("fit_ok") is not False and entry.get("evidence_ok") is False else "")
            )
            yield _image(folder, entry["fit_plot"], caption)


def _setup_line(result: Mapping[str, Any]) -> str:
    parts = []
    if result.get("mass"):
        parts.append(f"mass {result['mass']}")
    if result.get("features"):
        parts.append("features " + ", ".join(str(f) for f in result["features"]))
    if result.get("folds") is not None:
        parts.append(f"{result['folds']} folds")
    if result.get("ensemble") is not None:
        parts.append(f"ensemble of {result['ensemble']}")
    if result.get("fit_range_GeV"):
        low, high = result["fit_range_GeV"]
        parts.append(f"fit range {float(low):.0f}–{float(high):.0f} GeV")
    injection = result.get("injection")
    if injection:
        text = f"injected signal: {injection.get('n_signal', '?')} events"
        if injection.get("mass_GeV") is not None:
            text += f" at {float(injection['mass_GeV']):.0f} GeV"
        if injection.get("file"):
            text += f" from {injection['file']}"
        parts.append(text)
    return " · ".join(parts)


def write_search_report(result: Mapping[str, Any], folder: str | Path) -> Path:
    """Write the self-contained HTML report of a search result into ``folder/index.html`` and return its path.

    ``result`` is the mapping of ``search.json``; every plot it names (``result["plots"]``, the scan first,
    then the ``fit_plot`` of every window and efficiency) is a path relative to ``folder`` and is embedded in
    the page as a base64 image. A plot that does not exist raises :class:`~coffea_ad.errors.InputFileError`
    naming it (the page is never written with a broken image); a missing workspace or datacard is logged
    and marked "missing" in the table. The file is written atomically.
    """
    folder = Path(folder)
    windows = sorted(result.get("windows") or (), key=lambda window: float(window.get("centre_GeV", 0.0)))
    efficiencies = [float(e) for e in result.get("efficiencies") or ()]
    plots = dict(result.get("plots") or {})
    images = [_image(folder, plots.pop("scan"), "Local p0 of every mjj window")] if "scan" in plots else []
    images += [_image(folder, relative, f"Plot {name}") for name, relative in plots.items()]
    fit_images = list(_fit_plots(folder, windows, efficiencies))
    title = f"coffea-ad search: {result.get('method', '?')} on {result.get('data', '?')}"
    page = "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',
        f"<title>{_text(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head><body>",
        f"<h1>{_text(title)}</h1>",
        f'<p class="setup">{_text(_setup_line(result))}</p>',
        "<h2>Summary</h2>",
        f"<pre>{_text(result.get('summary_text', ''))}</pre>",
        "<h2>Global result</h2>",
        _global_line(result.get("global"), "Search with the cut"),
        _global_line(result.get("inclusive_global"), "Inclusive search (no cut)"),
        "<h2>Windows</h2>",
        _table(result, folder, windows),
        '<p class="legend">Highlighted: the most significant window and efficiency. "fit p": probability of the '
        "background-only fit to the sidebands; a poor fit (red) flags the window instead of reporting an excess, "
        "and so does a cut whose efficiency in the sidebands next to the window is no power law of mjj (red, "
        "\"(mjj)\": the score learned mjj). Hover an observed count for the score threshold.</p>",
        *(["<h2>Scan</h2>", *images] if images else []),
        *(["<h2>Sideband fits</h2>", '<div class="fits">', *fit_images, "</div>"] if fit_images else []),
        "</body></html>",
        "",
    ])
    target = folder / "index.html"
    with atomic_output(target) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return target
