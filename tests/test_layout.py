"""The layout reads as the workflow: a stage imports only the stages before it, never a later one.

Every import statement of every module is read (function-level imports too, since a lazy import is still a
dependency), so a new module that reaches forward fails here with the module and the line that does it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: coffea_ad's stages in workflow order; ``processors`` (top level) sits between the library stages and the
#: applications that name its classes.
ORDER = (
    "errors",
    "paths",
    "progress",
    "generate",
    "features",
    "processing",
    "onnx",
    "selection",
    "models",
    "stats",
    "plotting",
    "processors",
    "workflow",
    "demo",
    "contrib",
    "cli",
)


def _stage(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "processors":
        return "processors"
    if parts[0] == "coffea_ad" and len(parts) > 1:
        return parts[1]
    return None


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "coffea_ad":  # from coffea_ad import stats, ...
                found += [(node.lineno, f"coffea_ad.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, node.module))
    return found


MODULES = sorted([*ROOT.joinpath("coffea_ad").rglob("*.py"), *ROOT.joinpath("processors").rglob("*.py")])


def test_every_module_belongs_to_a_known_stage():
    unknown = [
        str(path.relative_to(ROOT))
        for path in MODULES
        if _module_name(path) != "coffea_ad" and _stage(_module_name(path)) not in ORDER
    ]
    assert not unknown, f"modules outside the stages of ORDER: {unknown}"


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(ROOT)))
def test_no_stage_imports_a_later_one(path):
    module = _module_name(path)
    if module == "coffea_ad":
        return  # the package's __init__ only re-exports names
    own = ORDER.index(_stage(module))
    forward = []
    for line, imported in _imports(path):
        stage = _stage(imported)
        if stage in ORDER and ORDER.index(stage) > own:
            forward.append(f"line {line}: {imported} ({stage} comes after {_stage(module)})")
    assert not forward, f"{module} imports later stages: {forward}"


#: Names that draw by hand: matplotlib and mplhep themselves, and the style helpers of coffea_ad.plotting.
DRAWING_MODULES = ("matplotlib", "mplhep")
DRAWING_HELPERS = ("cms_style", "new_figure")
APPLICATIONS = sorted(
    path
    for folder in ("coffea_ad", "processors", "examples", "benchmarks")
    for path in ROOT.joinpath(folder).rglob("*.py")
    if ROOT.joinpath("coffea_ad", "plotting") not in path.parents
)


def _drawing(path: Path) -> list[str]:
    """Every line of ``path`` that imports matplotlib or mplhep, or uses a style helper of coffea_ad.plotting."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            modules = [node.module or ""]
            if modules[0].startswith("coffea_ad.plotting"):
                modules += [alias.name for alias in node.names if alias.name in DRAWING_HELPERS]
        elif isinstance(node, ast.Attribute) and node.attr in DRAWING_HELPERS:
            modules = [node.attr]
        else:
            continue
        found += [
            f"line {node.lineno}: {name}"
            for name in modules
            if name.split(".")[0] in DRAWING_MODULES or name in DRAWING_HELPERS
        ]
    return found


def test_the_check_for_drawing_outside_plotting_sees_imports_and_helpers(tmp_path):
    source = tmp_path / "drawing.py"
    source.write_text(
        "import matplotlib.pyplot as plt\nfrom mplhep import histplot\n"
        "from coffea_ad.plotting import cms_style, plot_roc\nfrom coffea_ad import plotting\nplotting.new_figure()\n"
    )
    assert _drawing(source) == [
        "line 1: matplotlib.pyplot", "line 2: mplhep", "line 3: cms_style", "line 5: new_figure"
    ]


@pytest.mark.parametrize("path", APPLICATIONS, ids=lambda path: str(path.relative_to(ROOT)))
def test_only_coffea_ad_plotting_draws(path):
    drawing = _drawing(path)
    assert not drawing, f"{path.relative_to(ROOT)} draws outside coffea_ad.plotting (call its functions): {drawing}"
