"""Features a physicist defines: their own per-event variables, used like the built-in ones everywhere.

A user feature is a function of NanoEvents (eager, virtual or dask-awkward) that returns one number per event,
None where it is undefined, with the branches it reads, its unit and its histogram binning::

    import awkward as ak
    from coffea_ad.features import define_feature

    @define_feature(
        branches=("Muon_pt", "Muon_eta", "Muon_phi", "Muon_mass", "Muon_charge"),
        unit="GeV",
        axis=("regular", 60, 60.0, 120.0),
    )
    def mumu_mass(events):
        \"\"\"Invariant mass of the two leading muons (None with fewer than two).\"\"\"
        muons = ak.pad_none(events.Muon, 2)
        return (muons[:, 0] + muons[:, 1]).mass

Once defined, the name works wherever a feature name does: :func:`compute_features`, the feature processor
(table column, histograms per region), ``coffea-ad features --feature-module my_features.py``, training on the
table column, and :class:`coffea_ad.OnnxScorer`, which computes a model's inputs by name. The feature set
``"user"`` holds every user feature of the process.

On a Dask cluster, the definition travels with the processor or scorer that uses it: the function is pickled
by value (cloudpickle), so a worker needs neither the user's module nor a shared file system, and unpickling
defines the feature in the worker's process.

The command line loads definitions from ``--feature-module MODULE`` (a dotted module name or a ``.py`` file,
repeatable) and from every module an installed package declares under the entry-point group
``coffea_ad.features`` (:data:`ENTRY_POINT_GROUP`).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import importlib.util
import inspect
import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import cloudpickle

from coffea_ad.errors import ConfigurationError, InputFileError
from coffea_ad.features.registry import FEATURE_SETS, FEATURES, Feature

__all__ = [
    "ENTRY_POINT_GROUP",
    "USER_GROUP",
    "define_feature",
    "user_features",
    "load_feature_module",
    "load_entry_point_features",
    "restore_feature",
    "travel_by_value",
]

logger = logging.getLogger(__name__)

#: The entry-point group under which installed packages declare modules of feature definitions.
ENTRY_POINT_GROUP = "coffea_ad.features"
#: The ``group`` of every user-defined feature.
USER_GROUP = "user"
_RESERVED = frozenset({"dataset", "run", "luminosityBlock", "event", "genWeight", "fold"})
_DTYPES = ("float64", "int64")


def _check_axis(name: str, axis: Any) -> tuple:
    kind = axis[0] if isinstance(axis, Sequence) and not isinstance(axis, str) and axis else None
    if kind == "regular" and len(axis) == 4:
        _, bins, low, high = axis
        if isinstance(bins, int) and bins > 0 and float(low) < float(high):
            return ("regular", bins, float(low), float(high))
    elif kind == "integer" and len(axis) == 3:
        _, low, high = axis
        if isinstance(low, int) and isinstance(high, int) and low < high:
            return ("integer", low, high)
    raise ConfigurationError(
        f"feature {name!r}: axis must be ('regular', bins, low, high) with bins > 0 and low < high, or "
        f"('integer', low, high) with integers low < high; got {axis!r}"
    )


def travel_by_value(function: Callable[..., Any]) -> None:
    """Make cloudpickle pickle ``function``'s module by value, so that it reaches workers that cannot import it.

    ``__main__`` (a script, a notebook) is pickled by value already; coffea_ad's own modules are installed on
    every worker and stay by reference.
    """
    module = inspect.getmodule(function)
    if module is None or module.__name__ == "__main__" or module.__name__.split(".")[0] == "coffea_ad":
        return
    if module.__name__ in sys.modules and module.__name__ not in cloudpickle.list_registry_pickle_by_value():
        cloudpickle.register_pickle_by_value(module)


def _register(feature: Feature) -> Feature:
    FEATURES[feature.name] = feature
    if feature.name not in FEATURE_SETS[USER_GROUP]:
        FEATURE_SETS[USER_GROUP] = (*FEATURE_SETS[USER_GROUP], feature.name)
    return feature


def define_feature(
    function: Callable[[Any], Any] | None = None,
    *,
    name: str | None = None,
    branches: Iterable[str],
    axis: Sequence[Any],
    unit: str = "",
    description: str | None = None,
    dtype: str = "float64",
    nullable: bool = True,
) -> Any:
    """Define a feature computed by ``function(events)``; usable as a decorator (returns the function).

    Arguments:
        function: NanoEvents (eager, virtual or dask-awkward) -> one number per event, None where undefined.
        name: the feature's name (default: the function's); a Python identifier that is not a built-in feature,
            a feature set or a table column (``run``, ``genWeight``...). Defining a name again replaces the
            earlier user definition (a notebook cell run twice).
        branches: the NanoAOD branches it reads (``Muon_pt``...): a dataset whose files lack one leaves the
            feature out (when optional) or is refused, naming the branch, before any event is read.
        axis: the default histogram binning, ``("regular", bins, low, high)`` or ``("integer", low, high)``.
        unit: e.g. ``"GeV"`` (axis labels), ``""`` for none.
        description: one line (default: the first line of the function's docstring).
        dtype: ``"float64"`` (default) or ``"int64"``: the column's type in tables and ONNX inputs.
        nullable: whether the function may return None; a None from a non-nullable feature raises.
    """
    if function is None:
        return lambda decorated: define_feature(
            decorated, name=name, branches=branches, axis=axis, unit=unit, description=description, dtype=dtype,
            nullable=nullable,
        )
    if not callable(function):
        raise ConfigurationError(f"define_feature needs a function of the events, got {function!r}")
    name = name or function.__name__
    if not name.isidentifier():
        raise ConfigurationError(f"a feature name must be a Python identifier, got {name!r}")
    existing = FEATURES.get(name)
    if existing is not None and existing.function is None:
        raise ConfigurationError(f"{name!r} is a built-in feature of coffea_ad: give your feature another name")
    if name in _RESERVED or name in FEATURE_SETS:
        raise ConfigurationError(
            f"{name!r} is a table column or feature set of coffea_ad: give your feature another name"
        )
    branches = tuple(branches) if not isinstance(branches, str) else (branches,)
    if not branches or not all(isinstance(branch, str) and branch for branch in branches):
        raise ConfigurationError(
            f"feature {name!r}: branches must name the NanoAOD branches it reads, got {branches!r}"
        )
    if dtype not in _DTYPES:
        raise ConfigurationError(f"feature {name!r}: dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
    if description is None:
        description = (inspect.getdoc(function) or name).splitlines()[0]
    travel_by_value(function)
    feature = Feature(
        name, USER_GROUP, unit, description, branches, dtype, bool(nullable), _check_axis(name, axis), function
    )
    if existing is not None:
        logger.info("feature %r redefined", name)
    _register(feature)
    return function


def user_features(names: Iterable[str]) -> tuple[Feature, ...]:
    """The user-defined features among feature ``names`` (already resolved), to carry to the workers."""
    return tuple(FEATURES[name] for name in names if name in FEATURES and FEATURES[name].function is not None)


def restore_feature(fields: tuple, function: bytes) -> Feature:
    """Unpickle a user feature (see :meth:`Feature.__reduce__`) and define it in this process."""
    names = [field.name for field in dataclasses.fields(Feature) if field.name != "function"]
    return _register(Feature(**dict(zip(names, fields)), function=cloudpickle.loads(function)))


def _defined_by(module: ModuleType) -> list[str]:
    return [name for name in FEATURE_SETS[USER_GROUP] if FEATURES[name].function.__module__ == module.__name__]


def load_feature_module(spec: str | Path) -> list[str]:
    """Import a module of feature definitions, a dotted name or a ``.py`` file; return the features it defines.

    A module that defines no feature (no :func:`define_feature` call) is refused: it is most likely the wrong one.
    """
    text = str(spec)
    if text.endswith(".py") or Path(text).is_file():
        path = Path(text).resolve()
        if not path.is_file():
            raise InputFileError(f"feature module {path} does not exist")
        # Executed afresh on every load: the features are (re)defined from the file as it is now.
        module_name = f"coffea_ad_user_features.{path.stem}"
        import_spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(import_spec)
        sys.modules[module_name] = module
        try:
            import_spec.loader.exec_module(module)
        except Exception as error:
            del sys.modules[module_name]
            raise ConfigurationError(f"cannot load feature module {path}: {type(error).__name__}: {error}") from error
    else:
        try:
            module = importlib.import_module(text)
            if not _defined_by(module):  # imported before its features were defined here: define them again
                module = importlib.reload(module)
        except Exception as error:
            raise ConfigurationError(
                f"cannot import feature module {text!r}: {type(error).__name__}: {error}"
            ) from error
    defined = _defined_by(module)
    if not defined:
        raise ConfigurationError(
            f"feature module {text} defines no feature: decorate its functions with coffea_ad.features.define_feature"
        )
    logger.info("features from %s: %s", text, ", ".join(defined))
    return defined


def load_entry_point_features() -> list[str]:
    """Import every module declared under the entry-point group :data:`ENTRY_POINT_GROUP`; return their features."""
    defined: list[str] = []
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            module = entry_point.load()
        except Exception as error:
            raise ConfigurationError(
                f"cannot load the feature entry point {entry_point.name!r} ({entry_point.value}) of group "
                f"{ENTRY_POINT_GROUP}: {type(error).__name__}: {error}"
            ) from error
        if isinstance(module, ModuleType):
            defined.extend(name for name in _defined_by(module) if name not in defined)
    return defined
