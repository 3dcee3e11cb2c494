"""Object definitions behind the features: thresholds, identification and working points."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection
from typing import Any

from coffea_ad.errors import ConfigurationError

__all__ = ["AUTO_MET", "MET_COLLECTIONS", "FeatureConfig", "FeatureGroup", "Z_MASS", "met_branches"]

#: Z boson mass in GeV (PDG 2024), the target of the Z-candidate pair choice.
Z_MASS = 91.1876

#: ``FeatureConfig.met_collection`` value that takes the MET collection of each input from its branches.
AUTO_MET = "auto"

#: The MET collections ``"auto"`` looks for, in order: ``MET`` (NanoAOD up to v14, type-1 PF MET), ``PFMET``
#: (its name in v15), ``PuppiMET`` (in every version since v9).
MET_COLLECTIONS = ("MET", "PFMET", "PuppiMET")


def met_branches(collection: str) -> tuple[str, str]:
    """The NanoAOD branches of a MET collection: ``{collection}_pt`` and ``{collection}_phi``."""
    return f"{collection}_pt", f"{collection}_phi"


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """Object selections used by :func:`coffea_ad.features.compute_features`. Energies in GeV.

    Defaults:

    - Fat jets (``FatJet``): every stored jet (NanoAOD keeps pT > 170 GeV); the two leading in pT form
      the dijet system.
    - Jets (``Jet``, for HT and the jet counts): pT > 30 GeV and |η| < 2.5; no jet-ID requirement, because
      NanoAOD v15 no longer stores ``Jet_jetId``.
    - b tag: ``Jet_btagDeepFlavB > 0.2783``, the DeepJet medium working point of 2018 UL (about 1 % light-jet
      mistag); other eras have other values (2017 UL 0.3040, 2016 UL postVFP 0.2489, 2022 0.3086).
    - Tight isolated electrons: pT > 10 GeV, |η| < 2.5, ``cutBased >= 4`` (tight) and
      ``pfRelIso03_all < 0.15``.
    - Tight isolated muons: pT > 10 GeV, |η| < 2.4, ``tightId`` and ``pfRelIso03_all < 0.15`` (the ΔR = 0.3
      cone, because it is the one every input of coffea_ad, generated files included, stores).
    - MET (``met_collection``): ``"auto"`` takes, for each file (each chunk of events), the first of
      :data:`MET_COLLECTIONS` it has: ``MET`` (NanoAOD up to v14), else ``PFMET`` (v15: the same type-1 PF MET
      under a new name), else ``PuppiMET``; :meth:`resolve` makes that choice. A collection named here is
      used for every file, and a file without it is an error naming the file and the collection.
    """

    fatjet_pt_min: float = 0.0
    fatjet_abs_eta_max: float = math.inf
    jet_pt_min: float = 30.0
    jet_abs_eta_max: float = 2.5
    btag_threshold: float = 0.2783
    met_collection: str = AUTO_MET
    electron_pt_min: float = 10.0
    electron_abs_eta_max: float = 2.5
    electron_cut_based_min: int = 4
    electron_isolation_max: float = 0.15
    muon_pt_min: float = 10.0
    muon_abs_eta_max: float = 2.4
    muon_isolation_max: float = 0.15

    def __post_init__(self) -> None:
        if not self.met_collection.isidentifier():
            raise ConfigurationError(
                f"FeatureConfig.met_collection must be {AUTO_MET!r} or a collection name such as 'PuppiMET', "
                f"got {self.met_collection!r}"
            )
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name != "met_collection" and not (isinstance(value, (int, float)) and value >= 0):
                raise ConfigurationError(f"FeatureConfig.{field.name} must be a non-negative number, got {value!r}")

    def find_met_collection(
        self, has_branch: Callable[[str], bool] | Collection[str], source: str = "the input"
    ) -> str | None:
        """The MET collection the MET features read from an input (``has_branch``: a predicate on branch names or
        the names present; ``source`` names the input in messages).

        Under ``"auto"``: the first of :data:`MET_COLLECTIONS` whose ``_pt`` and ``_phi`` branches are present,
        None when there is none. A chosen collection is returned as it is, or raises :class:`ConfigurationError`
        naming ``source`` and the collection when the input lacks it: a choice is never dropped silently.
        """
        present = has_branch if callable(has_branch) else set(has_branch).__contains__
        if self.met_collection == AUTO_MET:
            found = (name for name in MET_COLLECTIONS if all(present(branch) for branch in met_branches(name)))
            return next(found, None)
        missing = [branch for branch in met_branches(self.met_collection) if not present(branch)]
        if missing:
            others = [name for name in MET_COLLECTIONS if all(present(branch) for branch in met_branches(name))]
            raise ConfigurationError(
                f"{source} has no MET collection {self.met_collection!r} (branch {', '.join(missing)} absent), "
                f"which met_collection / --met chose; it has {', '.join(others) or 'no ' + '/'.join(MET_COLLECTIONS)}"
                f"; met_collection='auto' takes the first of {', '.join(MET_COLLECTIONS)} each file has"
            )
        return self.met_collection

    def resolve(self, has_branch: Callable[[str], bool] | Collection[str], source: str = "the input") -> FeatureConfig:
        """This configuration for one input: ``met_collection`` as :meth:`find_met_collection` finds it.

        ``"auto"`` stays ``"auto"`` when the input has none of :data:`MET_COLLECTIONS` (its MET features then
        name the ``MET`` branches as absent); a chosen collection the input lacks raises
        :class:`ConfigurationError`.
        """
        collection = self.find_met_collection(has_branch, source)
        if collection is None or collection == self.met_collection:
            return self
        return dataclasses.replace(self, met_collection=collection)


class FeatureGroup:
    """Base of the object groups (dijet system, event context, leptons): the events and the selections.

    Subclasses expose each feature as a ``cached_property`` of the same name, so that features sharing
    intermediate objects compute them once per call.
    """

    def __init__(self, events: Any, config: FeatureConfig) -> None:
        self.events = events
        self.config = config
