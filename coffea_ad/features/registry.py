"""The feature registry: names, units, branches and histogram binning of every feature, and named sets.

Later stages (training tables, ONNX model inputs, scoring) refer to features and feature sets by these
names, so a name never changes meaning.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

import awkward as ak
import dask
import numpy as np
import cloudpickle

from coffea_ad.errors import CoffeaADError, ConfigurationError
from coffea_ad.features.arrays import on_concrete
from coffea_ad.features.config import AUTO_MET, MET_COLLECTIONS, FeatureConfig, met_branches
from coffea_ad.features.dijet import DijetSystem
from coffea_ad.features.event import EventContext
from coffea_ad.features.leptons import LeptonSystem

__all__ = [
    "Feature",
    "FEATURES",
    "FEATURE_SETS",
    "MissingBranchError",
    "FeatureSkippedWarning",
    "resolve_feature_names",
    "select_features",
    "missing_branches",
    "events_have_branch",
    "compute_features",
    "user_column",
    "event_column",
]


class MissingBranchError(CoffeaADError, LookupError):
    """A requested feature needs a branch that the input does not have (the message names both)."""


class FeatureSkippedWarning(UserWarning):
    """An optional feature was left out because a branch it needs is absent."""


#: The object each feature group is computed on; one instance per group and call, shared by its features.
GROUPS: dict[str, Callable[[Any, FeatureConfig], Any]] = {
    "dijet": DijetSystem,
    "event": EventContext,
    "leptons": LeptonSystem,
}

_FATJET_P4 = ("FatJet_pt", "FatJet_eta", "FatJet_phi", "FatJet_mass")
_FATJET_MASS_ORDER = (*_FATJET_P4, "FatJet_msoftdrop")
_JETS = ("Jet_pt", "Jet_eta")
_ELECTRONS = tuple(f"Electron_{field}" for field in ("pt", "eta", "cutBased", "pfRelIso03_all"))
_MUONS = tuple(f"Muon_{field}" for field in ("pt", "eta", "tightId", "pfRelIso03_all"))
_LEPTONS = (
    *_ELECTRONS,
    *_MUONS,
    *(f"{collection}_{field}" for collection in ("Electron", "Muon") for field in ("phi", "mass", "charge")),
)


@dataclasses.dataclass(frozen=True)
class Feature:
    """One per-event feature.

    ``branches`` are NanoAOD branch names; ``{met}`` stands for the MET collection of the input
    (``FeatureConfig.met_collection``, resolved per input: :meth:`FeatureConfig.resolve`).
    ``axis`` is the default histogram binning: ``("regular", bins, low, high)`` or ``("integer", low, high)``.
    ``nullable`` says whether the column can hold None (a missing object). ``function`` computes a
    user-defined feature from NanoEvents (:func:`coffea_ad.features.define_feature`); the built-in features
    have none, they are properties of their ``group``'s object.
    """

    name: str
    group: str
    unit: str
    description: str
    branches: tuple[str, ...]
    dtype: str
    nullable: bool
    axis: tuple
    function: Callable[[Any], Any] | None = None

    def __reduce__(self):
        if self.function is None:
            return Feature, dataclasses.astuple(self)
        # A user feature travels with its function by value (cloudpickle), and defines itself in the process that
        # unpickles it: a Dask worker knows the features of the processors and scorers it receives.
        from coffea_ad.features.user import restore_feature

        fields = tuple(getattr(self, field.name) for field in dataclasses.fields(self) if field.name != "function")
        return restore_feature, (fields, cloudpickle.dumps(self.function))

    def required_branches(self, config: FeatureConfig) -> tuple[str, ...]:
        """The branch names this feature reads under ``config`` (an unresolved ``"auto"`` reads as ``MET``)."""
        met = MET_COLLECTIONS[0] if config.met_collection == AUTO_MET else config.met_collection
        return tuple(branch.format(met=met) for branch in self.branches)

    @property
    def reads_met(self) -> bool:
        """Whether the feature reads the MET collection (whose name depends on the input)."""
        return any("{met}" in branch for branch in self.branches)


def _feature(name: str, group: str, unit: str, description: str, branches: Iterable[str], axis: tuple, *,
             dtype: str = "float64", nullable: bool = True) -> tuple[str, Feature]:
    return name, Feature(name, group, unit, description, tuple(branches), dtype, nullable, axis)


def _tau_features() -> list[tuple[str, Feature]]:
    tau_branches = {
        "21": ("FatJet_tau1", "FatJet_tau2"), "32": ("FatJet_tau2", "FatJet_tau3"), "43": ("FatJet_tau3", "FatJet_tau4")
    }
    lighter = {"j1": "lighter", "j2": "heavier"}
    return [
        _feature(
            f"tau{ratio}_{jet}", "dijet", "",
            f"N-subjettiness ratio τ{ratio[0]}/τ{ratio[1]} of the {lighter[jet]} of the two leading fat jets "
            f"(None if τ{ratio[1]} ≤ 0)",
            (*_FATJET_MASS_ORDER, *tau_branches[ratio]), ("regular", 50, 0.0, 1.0),
        )
        for ratio in tau_branches
        for jet in ("j1", "j2")
    ]


#: Every feature coffea_ad computes, by name, in a fixed documented order.
FEATURES: dict[str, Feature] = dict(
    [
        _feature("mjj", "dijet", "GeV", "invariant mass of the two leading-pT fat jets", _FATJET_P4,
                 ("regular", 160, 0.0, 8000.0)),
        _feature("mj_min", "dijet", "GeV", "soft-drop mass of the lighter of the two leading fat jets (j1)",
                 _FATJET_MASS_ORDER, ("regular", 100, 0.0, 1000.0)),
        _feature("mj_max", "dijet", "GeV", "soft-drop mass of the heavier of the two leading fat jets (j2)",
                 _FATJET_MASS_ORDER, ("regular", 100, 0.0, 1000.0)),
        _feature("delta_mj", "dijet", "GeV", "mj_max − mj_min", _FATJET_MASS_ORDER, ("regular", 100, 0.0, 1000.0)),
        *_tau_features(),
        *[
            _feature(f"mj_over_pt_{jet}", "dijet", "", f"soft-drop mass over pT of the {order} of the two leading "
                     "fat jets: a jet-mass variable that does not grow with the jet pT", _FATJET_MASS_ORDER,
                     ("regular", 50, 0.0, 1.0))
            for jet, order in (("j1", "lighter"), ("j2", "heavier"))
        ],
        _feature("deta_jj", "dijet", "", "|η_1 − η_2| of the two leading fat jets", ("FatJet_pt", "FatJet_eta"),
                 ("regular", 60, 0.0, 6.0)),
        _feature("dr_jj", "dijet", "", "ΔR of the two leading fat jets", ("FatJet_pt", "FatJet_eta", "FatJet_phi"),
                 ("regular", 60, 0.0, 6.0)),
        _feature("n_fatjets", "dijet", "", "number of fat jets", ("FatJet_pt", "FatJet_eta"), ("integer", 0, 10),
                 dtype="int64", nullable=False),
        _feature("ht", "event", "GeV", "scalar sum of pT of the selected AK4 jets (0 without such jets)", _JETS,
                 ("regular", 100, 0.0, 10000.0), nullable=False),
        _feature("met", "event", "GeV", "missing transverse momentum (FeatureConfig.met_collection)", ("{met}_pt",),
                 ("regular", 100, 0.0, 2000.0), nullable=False),
        _feature("met_phi", "event", "rad", "azimuth of the missing transverse momentum", ("{met}_phi",),
                 ("regular", 64, -3.2, 3.2), nullable=False),
        _feature("n_jets", "event", "", "number of selected AK4 jets", _JETS, ("integer", 0, 20), dtype="int64",
                 nullable=False),
        _feature("n_bjets", "event", "", "number of selected AK4 jets above the b-tag working point",
                 (*_JETS, "Jet_btagDeepFlavB"), ("integer", 0, 10), dtype="int64", nullable=False),
        _feature("n_electrons", "leptons", "", "number of tight isolated electrons", _ELECTRONS, ("integer", 0, 10),
                 dtype="int64", nullable=False),
        _feature("n_muons", "leptons", "", "number of tight isolated muons", _MUONS, ("integer", 0, 10),
                 dtype="int64", nullable=False),
        _feature("n_leptons", "leptons", "", "number of tight isolated electrons and muons", (*_ELECTRONS, *_MUONS),
                 ("integer", 0, 10), dtype="int64", nullable=False),
        _feature("lep1_pt", "leptons", "GeV", "pT of the leading tight lepton", _LEPTONS,
                 ("regular", 100, 0.0, 1000.0)),
        _feature("lep1_eta", "leptons", "", "η of the leading tight lepton", _LEPTONS, ("regular", 50, -2.5, 2.5)),
        _feature("lep1_phi", "leptons", "rad", "φ of the leading tight lepton", _LEPTONS, ("regular", 64, -3.2, 3.2)),
        *(
            _feature(f"lep{n}_pt", "leptons", "GeV", f"pT of the {ordinal} tight lepton", _LEPTONS,
                     ("regular", 100, 0.0, 1000.0))
            for n, ordinal in ((2, "second"), (3, "third"), (4, "fourth"))
        ),
        _feature("m4l", "leptons", "GeV", "invariant mass of the four leading tight leptons", _LEPTONS,
                 ("regular", 100, 0.0, 2000.0)),
        _feature("flavour_4l", "leptons", "", "muons among the four leading leptons: 0 = 4e, 2 = 2e2μ, 4 = 4μ",
                 _LEPTONS, ("integer", 0, 5), dtype="int64"),
        _feature("charge_4l", "leptons", "e", "total charge of the four leading leptons", _LEPTONS,
                 ("integer", -4, 5), dtype="int64"),
        _feature("mll_z", "leptons", "GeV", "mass of the same-flavour opposite-charge lepton pair closest to m_Z",
                 _LEPTONS, ("regular", 120, 0.0, 240.0)),
    ]
)

#: Named feature sets that training and scoring refer to; ``"all"`` is every built-in feature, ``"user"`` every
#: feature defined with :func:`coffea_ad.features.define_feature` in this process.
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "lhco": ("mjj", "mj_min", "delta_mj", "tau21_j1", "tau21_j2"),
    "nonresonant": ("mjj", "tau21_j1", "tau21_j2", "tau32_j1", "tau32_j2", "ht", "met"),
    "context": ("ht", "met"),
    "dijet": tuple(name for name, feature in FEATURES.items() if feature.group == "dijet"),
    "event": tuple(name for name, feature in FEATURES.items() if feature.group == "event"),
    "leptons": tuple(name for name, feature in FEATURES.items() if feature.group == "leptons"),
    "all": tuple(FEATURES),
    "user": (),
}


def resolve_feature_names(names: str | Iterable[str]) -> list[str]:
    """Expand feature and set names (``"lhco"``, ``"mjj"``, ...) into feature names, without repeats, in order."""
    if isinstance(names, str):
        names = [names]
    resolved: list[str] = []
    for name in names:
        if name in FEATURE_SETS:
            expanded = FEATURE_SETS[name]
        elif name in FEATURES:
            expanded = (name,)
        else:
            raise ConfigurationError(
                f"unknown feature or feature set {name!r}; feature sets: {', '.join(FEATURE_SETS)}; "
                f"features: {', '.join(FEATURES)}"
            )
        resolved.extend(feature for feature in expanded if feature not in resolved)
    return resolved


def missing_branches(
    feature: Feature, has_branch: Callable[[str], bool] | Collection[str], config: FeatureConfig | None = None
) -> list[str]:
    """The branches ``feature`` needs that are absent (``has_branch``: a predicate or the names present)."""
    present = has_branch if callable(has_branch) else set(has_branch).__contains__
    return [branch for branch in feature.required_branches(config or FeatureConfig()) if not present(branch)]


def _met_resolved(
    features: Iterable[Feature], has_branch: Callable[[str], bool], config: FeatureConfig, source: str
) -> FeatureConfig:
    """``config`` resolved for the input if one of ``features`` reads MET (a chosen collection the input lacks
    is an error then, and only then)."""
    return config.resolve(has_branch, source) if any(feature.reads_met for feature in features) else config


def select_features(
    names: str | Iterable[str],
    has_branch: Callable[[str], bool] | Collection[str],
    *,
    optional: bool | str | Iterable[str] = (),
    config: FeatureConfig | None = None,
    source: str = "the input",
    warn: bool = True,
    inputs_of: Mapping[str, str] | None = None,
) -> list[Feature]:
    """Return the requested features whose branches are all present.

    ``has_branch`` is a predicate on branch names or a collection of the branch names present. A feature
    with an absent branch raises :class:`MissingBranchError` naming the branch, unless it is ``optional``
    (``True`` for all, or feature/set names), in which case it is left out with a
    :class:`FeatureSkippedWarning` (when ``warn``). ``source`` names the input in messages. The MET features read
    the input's MET collection (:meth:`FeatureConfig.resolve`); a chosen collection the input lacks raises
    :class:`~coffea_ad.errors.ConfigurationError`, optional or not. ``inputs_of`` maps a feature to what takes
    it as an input (``"model 'cathode' (model/model.onnx)"``): such a feature is never left out, and the message
    of its absence says that this input cannot be scored by that model, and what can be done instead.
    """
    config = config or FeatureConfig()
    if not callable(has_branch):
        has_branch = set(has_branch).__contains__
    wanted = resolve_feature_names(names)
    config = _met_resolved((FEATURES[name] for name in wanted), has_branch, config, source)
    if optional is True:
        optional_names = set(wanted)
    elif optional is False:
        optional_names = set()
    else:
        optional_names = set(resolve_feature_names(optional))
    selected = []
    for name in wanted:
        feature = FEATURES[name]
        missing = missing_branches(feature, has_branch, config)
        if not missing:
            selected.append(feature)
            continue
        hint = ""
        if feature.reads_met and config.met_collection == AUTO_MET:
            looked_for = ", ".join(met_branches(collection)[0] for collection in MET_COLLECTIONS)
            hint = f" (met_collection='auto' looks for {looked_for}: none is there)"
        message = f"feature {name!r} needs branch {', '.join(missing)}, absent from {source}{hint}"
        if inputs_of and name in inputs_of:
            raise MissingBranchError(
                f"{message}: it is an input of {inputs_of[name]}, which therefore cannot score {source} (a model "
                f"input cannot be left out); score it with a model trained without {name!r} (on features it has, "
                "or on a user feature computed from its branches: --feature-module), or add the branch to the input"
            )
        if name not in optional_names:
            raise MissingBranchError(f"{message}; mark the feature optional to leave it out")
        if warn:
            warnings.warn(f"{message}: left out", FeatureSkippedWarning, stacklevel=2)
    return selected


def events_have_branch(events: Any) -> Callable[[str], bool]:
    """Return a predicate telling whether NanoEvents ``events`` hold a NanoAOD branch (``Coll_field`` or flat)."""
    top_level = set(events.fields)
    collection_fields: dict[str, set[str]] = {}

    def has_branch(branch: str) -> bool:
        if branch in top_level:
            return True
        collection, _, field = branch.partition("_")
        if not field or collection not in top_level:
            return False
        if collection not in collection_fields:
            collection_fields[collection] = set(events[collection].fields)
        return field in collection_fields[collection]

    return has_branch


_NUMERIC_PRIMITIVES = frozenset(
    {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64"}
)


def event_column(column: Any, what: str, events: Any) -> Any:
    """``column`` as an awkward (or dask-awkward) array of one number per event of ``events``, or raise.

    Accepts awkward, dask-awkward and numpy arrays of numbers or booleans, None allowed; a jagged or record
    column, a non-numeric one, or (eagerly) one of another length raises :class:`ConfigurationError` that
    starts with ``what`` (e.g. "user feature 'mumu_mass'").
    """
    lazy = dask.is_dask_collection(column)
    if not lazy and not isinstance(column, ak.Array):
        try:
            column = ak.Array(column)
        except (TypeError, ValueError) as error:
            raise ConfigurationError(f"{what} must be an array of one number per event, got {column!r}") from error
    checked = column._meta if lazy else column
    content = checked.type.content if isinstance(checked, ak.Array) else None
    if isinstance(content, ak.types.OptionType):
        content = content.content
    if not (isinstance(content, ak.types.NumpyType) and content.primitive in _NUMERIC_PRIMITIVES):
        shown = checked.type if isinstance(checked, ak.Array) else type(checked).__name__
        raise ConfigurationError(f"{what} must be one number per event, got type {shown}")
    concrete = not lazy and ak.backend(column) != "typetracer" and not dask.is_dask_collection(events)
    if concrete and ak.backend(events) != "typetracer" and len(column) != len(events):
        raise ConfigurationError(f"{what} has {len(column)} values for {len(events)} events")
    return column


def user_column(feature: Feature, events: Any, source: str = "the input") -> Any:
    """The column of user-defined ``feature`` on ``events`` (awkward or dask-awkward), checked and typed.

    The function must return one number per event (an awkward or numpy array, None where the feature is
    undefined); anything else, a wrong length, or None in a feature declared not ``nullable``, raises naming the
    feature and its function.
    """
    function = feature.function
    what = f"user feature {feature.name!r} ({function.__module__}.{function.__qualname__}) on {source}"
    try:
        column = function(events)
    except CoffeaADError:
        raise
    except Exception as error:
        raise ConfigurationError(f"{what} failed: {type(error).__name__}: {error}") from error
    column = event_column(column, what, events)
    concrete = not dask.is_dask_collection(column) and ak.backend(column) != "typetracer"
    if concrete and not feature.nullable and ak.any(ak.is_none(column)):
        raise ConfigurationError(f"{what} returned None for some events, but the feature is declared not nullable")
    return ak.values_astype(ak.without_parameters(column), np.dtype(feature.dtype))


def compute_features(
    events: Any,
    names: str | Iterable[str] = "all",
    *,
    optional: bool | str | Iterable[str] = (),
    config: FeatureConfig | None = None,
) -> Any:
    """Compute features of NanoEvents (eager, virtual or dask) as one record array with a field per feature.

    ``names`` are feature or feature-set names (see :data:`FEATURES`, :data:`FEATURE_SETS`). A feature
    whose branch is absent raises :class:`MissingBranchError`, unless listed in ``optional`` (or
    ``optional=True``), in which case it is left out with a :class:`FeatureSkippedWarning`. Missing objects
    (an event with one fat jet, three leptons, ...) give None, never zero. ``met`` and ``met_phi`` read the
    MET collection of ``events`` (``config.met_collection``: by default the first of ``MET``, ``PFMET``,
    ``PuppiMET`` they have; see :meth:`FeatureConfig.resolve`).

    Example:
        >>> features = compute_features(events, "context", config=FeatureConfig(met_collection="PuppiMET"))
        >>> features.ht, features.met
    """
    config = config or FeatureConfig()
    metadata = getattr(events, "metadata", None)
    source = metadata.get("filename", "the input") if isinstance(metadata, Mapping) else "the input"
    has_branch = events_have_branch(events)
    features = select_features(names, has_branch, optional=optional, config=config, source=source)
    if not features:
        raise MissingBranchError(f"none of the requested features {names!r} can be computed from {source}")
    config = _met_resolved(features, has_branch, config, source)
    if dask.is_dask_collection(events):
        import dask_awkward as dak

        return dak.map_partitions(
            _chunk_features, events, features, config, source, label="coffea-ad-features", traverse=False
        )
    return _chunk_features(events, features, config, source)


def _chunk_features(events: Any, features: list[Feature], config: FeatureConfig, source: str) -> ak.Array:
    """The ``features`` of one chunk (concrete or typetracer) as a record array, in the order given."""
    built_in = [feature for feature in features if feature.function is None]
    columns = {}
    if built_in:
        branches = {branch for feature in built_in for branch in feature.required_branches(config)}
        columns = on_concrete(_built_in_columns, events, sorted(branches), built_in, config)
    for feature in features:
        if feature.function is not None:
            columns[feature.name] = user_column(feature, events, source)
    return ak.zip({feature.name: columns[feature.name] for feature in features}, depth_limit=1)


def _built_in_columns(events: Any, features: list[Feature], config: FeatureConfig) -> dict[str, ak.Array]:
    """The built-in ``features`` of concrete events, computed on one object per group."""
    groups: dict[str, Any] = {}
    columns = {}
    for feature in features:
        if feature.group not in groups:
            groups[feature.group] = GROUPS[feature.group](events, config)
        columns[feature.name] = ak.without_parameters(getattr(groups[feature.group], feature.name))
    return columns
