"""Writing generated events as NanoAOD-schema ROOT files, and reading their generation metadata.

The ``Events`` tree has the NanoAOD layout that ``coffea.nanoevents.NanoAODSchema`` expects: one counter
per collection (``nJet``) and one branch per field (``Jet_pt``), with the branch types of CMS NanoAOD
(float32 kinematics, uint8 identification flags, int16 indices...). Beside it:

- ``Runs``: the NanoAOD normalisation tree (``genEventCount``, ``genEventSumw``, ``genEventSumw2``);
- ``Metadata``: one entry with the cross section (pb), its error, the number of events Pythia tried and
  accepted, and the seed, so that a sample can be normalised to a luminosity;
- ``generation_settings``: a JSON string with the process, its parameters, the detector card and the
  versions that made the file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import awkward as ak
import numpy as np
import uproot

from coffea_ad.errors import InputFileError

__all__ = ["COLLECTION_TYPES", "SCALAR_TYPES", "NanoAODWriter", "read_sample_metadata", "to_nanoaod"]

_KINEMATICS = {"pt": np.float32, "eta": np.float32, "phi": np.float32, "mass": np.float32}
_DIRECTION = {"pt": np.float32, "eta": np.float32, "phi": np.float32}
_LEPTON = {
    **_KINEMATICS,
    "charge": np.int32,
    "pdgId": np.int32,
    "pfRelIso03_all": np.float32,
    "jetIdx": np.int16,
    "genPartIdx": np.int16,
}

#: Field types of each jagged collection, as in CMS NanoAOD. Cross-reference indices (``*Idx*``) that
#: the generator does not fill are -1; the collections that it does not make (photons, taus, soft-drop
#: subjets...) are written empty, so that NanoAODSchema finds every cross-reference target it expects.
COLLECTION_TYPES: dict[str, dict[str, type]] = {
    "Jet": {
        **_KINEMATICS,
        "btagDeepFlavB": np.float32,
        "jetId": np.uint8,
        "hadronFlavour": np.uint8,
        "nConstituents": np.uint8,
        "genJetIdx": np.int16,
        "electronIdx1": np.int16,
        "electronIdx2": np.int16,
        "muonIdx1": np.int16,
        "muonIdx2": np.int16,
    },
    "FatJet": {
        **_KINEMATICS,
        "msoftdrop": np.float32,
        "tau1": np.float32,
        "tau2": np.float32,
        "tau3": np.float32,
        "tau4": np.float32,
        "jetId": np.uint8,
        "nConstituents": np.uint8,
        "genJetAK8Idx": np.int16,
        "subJetIdx1": np.int16,
        "subJetIdx2": np.int16,
    },
    "Electron": {**_LEPTON, "cutBased": np.uint8, "photonIdx": np.int16},
    "Muon": {**_LEPTON, "looseId": np.bool_, "tightId": np.bool_, "fsrPhotonIdx": np.int16},
    "GenPart": {
        **_KINEMATICS,
        "pdgId": np.int32,
        "status": np.int32,
        "statusFlags": np.uint16,
        "genPartIdxMother": np.int16,
    },
    "GenJet": dict(_KINEMATICS),
    "GenJetAK8": dict(_KINEMATICS),
    "SubJet": dict(_KINEMATICS),
    "Photon": {**_DIRECTION, "electronIdx": np.int16, "genPartIdx": np.int16, "jetIdx": np.int16},
    "LowPtElectron": {
        **_KINEMATICS,
        "charge": np.int32,
        "electronIdx": np.int16,
        "genPartIdx": np.int16,
        "photonIdx": np.int16,
    },
    "Tau": {**_KINEMATICS, "charge": np.int32, "genPartIdx": np.int16, "jetIdx": np.int16},
    "FsrPhoton": {**_DIRECTION, "muonIdx": np.int16},
    "GenVisTau": {**_KINEMATICS, "charge": np.int16, "genPartIdxMother": np.int16},
}
#: One value per event.
SCALAR_TYPES: dict[str, type] = {
    "run": np.uint32,
    "luminosityBlock": np.uint32,
    "event": np.uint64,
    "genWeight": np.float32,
    "MET_pt": np.float32,
    "MET_phi": np.float32,
    "PuppiMET_pt": np.float32,
    "PuppiMET_phi": np.float32,
}


def to_nanoaod(
    collections: Mapping[str, ak.Array], event: np.ndarray, luminosity_block: int, run: int = 1
) -> dict[str, ak.Array | np.ndarray]:
    """Cast the output of :func:`~coffea_ad.generate.reconstruction.reconstruct` to NanoAOD branch types."""
    arrays: dict[str, ak.Array | np.ndarray] = {}
    n_events = len(event)
    for name, fields in COLLECTION_TYPES.items():
        if name in collections:
            collection = collections[name]
            columns = {
                field: ak.values_astype(collection[field], dtype)
                if field in collection.fields
                else ak.full_like(collection.pt, -1, dtype=dtype)
                for field, dtype in fields.items()
            }
        else:
            no_objects = np.zeros(n_events, dtype=np.int64)
            columns = {field: ak.unflatten(np.zeros(0, dtype), no_objects) for field, dtype in fields.items()}
        arrays[name] = ak.zip(columns)
    scalars = {
        "run": np.full(n_events, run),
        "luminosityBlock": np.full(n_events, luminosity_block),
        "event": event,
        "genWeight": np.ones(n_events),
        "MET_pt": collections["MET"].pt,
        "MET_phi": collections["MET"].phi,
        "PuppiMET_pt": collections["PuppiMET"].pt,
        "PuppiMET_phi": collections["PuppiMET"].phi,
    }
    for name, dtype in SCALAR_TYPES.items():
        arrays[name] = ak.to_numpy(scalars[name]).astype(dtype)
    return arrays


class NanoAODWriter:
    """Stream chunks of :func:`to_nanoaod` arrays into a new ROOT file, then add the metadata trees.

    Use as a context manager; :meth:`finish` writes ``Runs``, ``Metadata`` and ``generation_settings``.
    Chunks are gathered until ``events_per_basket`` events before they are written, so that each branch's
    baskets hold that many events: generation batches are small (500 events), and a file of 500-event baskets
    reads about twice as slowly as one of 10,000-event baskets (the per-basket cost of uproot).
    """

    def __init__(self, path: str | Path, events_per_basket: int = 10_000) -> None:
        self._file = uproot.recreate(path)
        self._tree = None
        self._pending: list[Mapping[str, ak.Array | np.ndarray]] = []
        self._pending_events = 0
        self.events_per_basket = events_per_basket
        self.n_events = 0

    def __enter__(self) -> NanoAODWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._file.close()

    def extend(self, arrays: Mapping[str, ak.Array | np.ndarray]) -> None:
        """Append one chunk of events to the ``Events`` tree (written once ``events_per_basket`` are gathered)."""
        self._pending.append(arrays)
        self._pending_events += len(arrays["event"])
        self.n_events += len(arrays["event"])
        if self._pending_events >= self.events_per_basket:
            self._write_pending()

    def _write_pending(self) -> None:
        if not self._pending:
            return
        chunks, self._pending, self._pending_events = self._pending, [], 0
        arrays = {
            name: ak.concatenate([chunk[name] for chunk in chunks]) if isinstance(chunks[0][name], ak.Array)
            else np.concatenate([chunk[name] for chunk in chunks])
            for name in chunks[0]
        }
        if self._tree is None:
            branch_types = {
                name: (value.type if isinstance(value, ak.Array) else value.dtype) for name, value in arrays.items()
            }
            self._tree = self._file.mktree("Events", branch_types, title="Events")
        self._tree.extend(arrays)

    def finish(self, metadata: Mapping[str, float | int], settings: Mapping[str, object]) -> None:
        """Write the events still gathered, the normalisation (``Runs``), the ``Metadata`` numbers and the
        settings JSON."""
        self._write_pending()
        total = float(self.n_events)
        self._file["Runs"] = {
            "run": np.array([1], np.uint32),
            "genEventCount": np.array([self.n_events], np.int64),
            "genEventSumw": np.array([total]),
            "genEventSumw2": np.array([total]),
        }
        self._file["Metadata"] = {key: np.array([value]) for key, value in metadata.items()}
        self._file["generation_settings"] = json.dumps(settings, sort_keys=True)


def read_sample_metadata(path: str | Path) -> dict[str, object]:
    """Return the generation metadata of a file written by :func:`write_nanoaod`.

    The result holds the ``Metadata`` numbers (``cross_section_pb``, ``cross_section_error_pb``,
    ``n_tried``, ``n_accepted``, ``n_events``, ``seed``) and, under ``"settings"``, the parsed
    ``generation_settings`` JSON.
    """
    try:
        with uproot.open(path) as file:
            if "Metadata" not in file or "generation_settings" not in file:
                raise InputFileError(
                    f"{path} has no coffea_ad generation metadata (Metadata tree, generation_settings)"
                )
            numbers = {key: value[0].item() for key, value in file["Metadata"].arrays(library="np").items()}
            numbers["settings"] = json.loads(str(file["generation_settings"]))
    except (OSError, ValueError) as error:
        raise InputFileError(f"cannot read generation metadata from {path}: {error}") from error
    return numbers
