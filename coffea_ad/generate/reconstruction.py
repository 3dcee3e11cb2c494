"""From Pythia8 events to NanoAOD collections: acceptance, clustering, substructure and smearing.

:func:`reconstruct` takes one batch of events as returned by ``pythia8mc.Pythia.nextBatch`` (an awkward
array of the full event record) and returns the NanoAOD collections as awkward arrays, vectorised over
the batch: fastjet clusters every event at once and computes soft drop and N-subjettiness in C++.
The numbers it applies are those of a :class:`~coffea_ad.generate.detector.DetectorCard`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import warnings
from collections.abc import Callable, Iterator

import awkward as ak
import fastjet
import numpy as np

from coffea_ad.generate.detector import DetectorCard

__all__ = ["ParticleProperties", "reconstruct", "silence_fastjet_banner"]

ELECTRON_MASS = 0.000511
MUON_MASS = 0.105658
#: NanoAOD GenPart_statusFlags bits set on the stored hard-process particles: isPrompt (0),
#: isHardProcess (7), fromHardProcess (8), isFirstCopy (12), isLastCopy (13).
HARD_PROCESS_FLAGS = (1 << 0) | (1 << 7) | (1 << 8) | (1 << 12) | (1 << 13)
#: Tight jet ID with lepton veto passed (NanoAOD Jet_jetId bits 1 and 2): every generated jet is a good jet.
JET_ID_TIGHT_LEPVETO = 6


class ParticleProperties:
    """Visibility and electric charge of particle species, read once per species from Pythia's data.

    ``properties(ids)`` returns two numpy arrays of the same length as ``ids``: whether the detector
    sees the particle (not a neutrino, not a dark-sector state) and its charge in units of e.
    """

    def __init__(self, particle_data: object) -> None:
        self._particle_data = particle_data
        self._cache: dict[int, tuple[bool, float]] = {}

    def _lookup(self, pdg_id: int) -> tuple[bool, float]:
        if pdg_id not in self._cache:
            data = self._particle_data
            self._cache[pdg_id] = (bool(data.isVisible(pdg_id)), float(data.charge(pdg_id)))
        return self._cache[pdg_id]

    def __call__(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        unique, inverse = np.unique(ids, return_inverse=True)
        table = np.array([self._lookup(int(pdg_id)) for pdg_id in unique], dtype=float).reshape(-1, 2)
        return table[inverse, 0].astype(bool), table[inverse, 1]


@contextlib.contextmanager
def silence_fastjet_banner() -> Iterator[None]:
    """Swallow what C++ writes to standard output (fastjet prints its banner on first use)."""
    saved = os.dup(1)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 1)
        try:
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)


def _jagged_like(values: np.ndarray, like: ak.Array) -> ak.Array:
    return ak.unflatten(values, ak.num(like, axis=1))


def _normal(rng: np.random.Generator, like: ak.Array) -> ak.Array:
    return _jagged_like(rng.standard_normal(int(ak.sum(ak.num(like, axis=1)))), like)


def _uniform(rng: np.random.Generator, like: ak.Array) -> ak.Array:
    return _jagged_like(rng.random(int(ak.sum(ak.num(like, axis=1)))), like)


def _pt(obj: ak.Array) -> ak.Array:
    return np.hypot(obj.px, obj.py)


def _eta(obj: ak.Array) -> ak.Array:
    return np.arcsinh(obj.pz / _pt(obj))


def _phi(obj: ak.Array) -> ak.Array:
    return np.arctan2(obj.py, obj.px)


def _mass(obj: ak.Array) -> ak.Array:
    return np.sqrt(np.maximum(obj.E**2 - obj.px**2 - obj.py**2 - obj.pz**2, 0.0))


def _delta_r(eta1: ak.Array, phi1: ak.Array, eta2: ak.Array, phi2: ak.Array) -> ak.Array:
    delta_phi = (phi1 - phi2 + np.pi) % (2 * np.pi) - np.pi
    return np.hypot(eta1 - eta2, delta_phi)


def _four_vectors(px: ak.Array, py: ak.Array, pz: ak.Array, energy: ak.Array) -> ak.Array:
    return ak.zip({"px": px, "py": py, "pz": pz, "E": energy}, with_name="Momentum4D")


def _scaled(obj: ak.Array, factor: ak.Array) -> ak.Array:
    return _four_vectors(obj.px * factor, obj.py * factor, obj.pz * factor, obj.E * factor)


def _jet_response(rng: np.random.Generator, jets: ak.Array, card: DetectorCard) -> ak.Array:
    """Per-jet multiplicative response: energy scale times a Gaussian resolution smearing."""
    central = abs(_eta(jets)) < 3.0
    stochastic = ak.where(central, card.jet_resolution_stochastic, card.jet_resolution_stochastic_forward)
    constant = ak.where(central, card.jet_resolution_constant, card.jet_resolution_constant_forward)
    sigma = np.sqrt(stochastic**2 / jets.E + constant**2)
    return card.jet_energy_scale * np.maximum(1.0 + sigma * _normal(rng, jets), 0.0)


def _sorted_by_pt(collection: ak.Array) -> ak.Array:
    return collection[ak.argsort(collection.pt, axis=1, ascending=False)]


class _FlatRecord:
    """A batch's Pythia event record as flat numpy columns, each flattened once on first use and shared by the
    steps that read it (``px``, ``py``, ``pz``, ``e`` are the momentum's), with the events' particle counts."""

    def __init__(self, record: ak.Array) -> None:
        self._record = record
        self._columns: dict[str, np.ndarray] = {}
        self.counts = ak.to_numpy(ak.num(record.id, axis=1))

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._columns:
            jagged = self._record.p[name] if name in ("px", "py", "pz", "e") else self._record[name]
            self._columns[name] = ak.to_numpy(ak.flatten(jagged))
        return self._columns[name]


def _hadron_flavour(jets: ak.Array, record: _FlatRecord, card: DetectorCard, radius: float) -> ak.Array:
    """5 for a jet with a b hadron inside its radius, 4 for a c hadron, 0 otherwise (ghost-free Delta R)."""
    counts = record.counts
    px, py = record["px"], record["py"]
    # The few particles above the pT threshold are picked out of the flat record before anything is jagged.
    candidates = np.flatnonzero(np.hypot(px, py) > card.flavour_hadron_pt_min)
    abs_id = np.abs(record["id"][candidates])
    # Hadron codes: 3 or 4 digits, tens digit non-zero (which leaves out diquarks such as 5101).
    heavy = (abs_id < 10000) & (abs_id > 100) & ((abs_id // 10) % 10 != 0)
    candidates, hadron_id = candidates[heavy], abs_id[heavy]
    event = np.repeat(np.arange(len(counts)), counts)[candidates]
    hadron_px, hadron_py = px[candidates], py[candidates]
    hadron_pz = record["pz"][candidates]
    hadron_eta = np.arcsinh(hadron_pz / np.hypot(hadron_px, hadron_py))
    hadron_phi = np.arctan2(hadron_py, hadron_px)
    flavour = ak.zeros_like(jets.pt, dtype=np.uint8)
    for pdg_digit in (4, 5):
        chosen = ((hadron_id // 100) % 10 == pdg_digit) | ((hadron_id // 1000) % 10 == pdg_digit)
        per_event = np.bincount(event[chosen], minlength=len(counts))
        hadrons = ak.zip(
            {"eta": ak.unflatten(hadron_eta[chosen], per_event), "phi": ak.unflatten(hadron_phi[chosen], per_event)}
        )
        pairs = ak.cartesian({"jet": jets, "hadron": hadrons}, axis=1, nested=True)
        distance = _delta_r(pairs.jet.eta, pairs.jet.phi, pairs.hadron.eta, pairs.hadron.phi)
        flavour = ak.where(ak.any(distance < radius, axis=2), np.uint8(pdg_digit), flavour)
    return flavour


def _btag_score(rng: np.random.Generator, jets: ak.Array, card: DetectorCard) -> ak.Array:
    efficiency = ak.where(
        jets.hadronFlavour == 5,
        card.btag_efficiency_b,
        ak.where(jets.hadronFlavour == 4, card.btag_efficiency_c, card.btag_efficiency_light),
    )
    tagged = (abs(jets.eta) < card.tracker_eta_max) & (_uniform(rng, jets) < efficiency)
    position = _uniform(rng, jets)
    working_point = card.btag_working_point
    return ak.where(tagged, working_point + (1 - working_point) * position, working_point * position)


def _ak4_jets(rng, calo, record, card) -> tuple[ak.Array, ak.Array, tuple[ak.Array, ak.Array]]:
    """AK4 jets, the particle-level jets they come from (GenJet), and the sum of the smearing shifts (for MET)."""
    cluster = fastjet.ClusterSequence(calo, fastjet.JetDefinition(fastjet.antikt_algorithm, card.jet_radius))
    raw_min_pt = 0.5 * card.jet_pt_min
    raw = cluster.inclusive_jets(min_pt=raw_min_pt)
    n_constituents = ak.num(cluster.constituent_index(min_pt=raw_min_pt), axis=2)
    order = ak.argsort(_pt(raw), axis=1, ascending=False)
    raw, n_constituents = raw[order], n_constituents[order]
    gen_jets = _kinematics(raw)
    smeared = _scaled(raw, _jet_response(rng, raw, card))
    keep = _pt(smeared) > card.jet_pt_min
    shift_x = ak.sum((smeared.px - raw.px)[keep], axis=1)
    shift_y = ak.sum((smeared.py - raw.py)[keep], axis=1)
    jets = ak.with_field(_kinematics(smeared[keep]), ak.local_index(raw, axis=1)[keep], "genJetIdx")
    jets = ak.with_field(jets, np.minimum(n_constituents[keep], 255), "nConstituents")
    jets = ak.with_field(jets, _hadron_flavour(jets, record, card, card.jet_radius), "hadronFlavour")
    jets = ak.with_field(jets, _btag_score(rng, jets, card), "btagDeepFlavB")
    return _sorted_by_pt(jets), gen_jets, (shift_x, shift_y)


def _kinematics(vectors: ak.Array) -> ak.Array:
    return ak.zip({"pt": _pt(vectors), "eta": _eta(vectors), "phi": _phi(vectors), "mass": _mass(vectors)})


def _closest(sources: ak.Array, targets: ak.Array, max_distance: float, same_pdg_id: bool = False) -> ak.Array:
    """For each source object, the index of the closest target within ``max_distance`` in Delta R, else -1."""
    pairs = ak.cartesian({"source": sources, "target": targets}, axis=1, nested=True)
    distance = _delta_r(pairs.source.eta, pairs.source.phi, pairs.target.eta, pairs.target.phi)
    if same_pdg_id:
        distance = ak.where(pairs.source.pdgId == pairs.target.pdgId, distance, np.inf)
    closest = ak.argmin(distance, axis=2)
    within = ak.fill_none(ak.min(distance, axis=2), np.inf) < max_distance
    return ak.fill_none(ak.where(within, closest, -1), -1)


def _first_two_members(jets: ak.Array, member_jet_index: ak.Array) -> tuple[ak.Array, ak.Array]:
    """Jet_electronIdx1/2-style indices: the first two objects (in pT order) whose jetIdx is this jet."""
    members = ak.zip({"jet": member_jet_index, "index": ak.local_index(member_jet_index, axis=1)})
    pairs = ak.cartesian({"jet": ak.local_index(jets, axis=1), "member": members}, axis=1, nested=True)
    members = pairs.member.index[pairs.member.jet == pairs.jet]
    padded = ak.fill_none(ak.pad_none(members, 2, axis=2), -1)
    return padded[:, :, 0], padded[:, :, 1]


def _history_parents(order: np.ndarray, n_leaves: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two parents of every pseudojet of a set of C/A clustering histories, as flat indices (-1 for a particle).

    ``order`` is fastjet's ``unique_history_order`` of each clustering, concatenated: a post-order walk of the
    tree (both parents' subtrees, then the pseudojet they merge into). Every clustering merges its ``n``
    particles into one jet: entries ``0 .. n-1`` are the particles, ``n .. 2n-2`` the merges (history index =
    index in ``jets()``, which ``offsets`` place in the flat arrays), ``2n-1`` the final recombination with the
    beam. Read with a stack, a particle is pushed and a merge pops its two parents and is pushed; so a merge's
    second parent is the entry just before it, and its first parent the last earlier entry that left the stack
    as deep as the merge itself leaves it: found for all merges at once by sorting the entries by (clustering,
    depth), which keeps their order within each group.
    """
    n_per_entry = np.repeat(n_leaves, 2 * n_leaves)
    clustering = np.repeat(np.arange(len(n_leaves)), 2 * n_leaves)
    kept = order < 2 * n_per_entry - 1  # the beam recombinations leave the stack as it is
    order, n_per_entry, clustering = order[kept], n_per_entry[kept], clustering[kept]
    is_merge = order >= n_per_entry
    depth = np.cumsum(np.where(is_merge, -1, 1))
    first_of_clustering = np.concatenate([[0], np.cumsum(2 * n_leaves - 1)[:-1]])
    depth -= np.concatenate([[0], depth])[first_of_clustering][clustering]
    grouped = np.lexsort((depth, clustering))
    previous_in_group = np.full(len(order), -1)
    same_group = (clustering[grouped[1:]] == clustering[grouped[:-1]]) & (depth[grouped[1:]] == depth[grouped[:-1]])
    previous_in_group[grouped[1:][same_group]] = grouped[:-1][same_group]
    merges = np.flatnonzero(is_merge)
    base = offsets[:-1][clustering[merges]]
    parent1 = np.full(int(offsets[-1]), -1, dtype=np.int64)
    parent2 = np.full(int(offsets[-1]), -1, dtype=np.int64)
    parent1[base + order[merges]] = base + order[previous_in_group[merges]]
    parent2[base + order[merges]] = base + order[merges - 1]
    return parent1, parent2


def _softdrop_mass(reclustered, n_constituents: np.ndarray, beta: float, zcut: float, radius: float) -> np.ndarray:
    """Soft-drop mass of every jet of a C/A clustering that merged each jet's constituents into one.

    The primary declustering follows the harder (larger pT) branch until the softer one carries
    z = min(pT1, pT2) / (pT1 + pT2) > z_cut (Delta R / R0)^beta, Delta R in rapidity and azimuth: fjcontrib's
    ``SoftDrop(beta, z_cut, R0)`` in grooming mode with its defaults (scalar_z, larger_pt), which it matches to
    machine precision. The walk runs on the clustering history as flat numpy arrays, all jets at once: the
    fjcontrib binding of the ``fastjet`` package spends most of its time copying the groomed constituents,
    superlinearly in their number (about 1 ms per 75-constituent jet).

    References:
        Larkoski, Marzani, Soyez, Thaler, "Soft Drop", arXiv:1402.2657.
    """
    jets = reclustered.jets()
    counts = ak.to_numpy(ak.num(jets, axis=1))
    offsets = np.concatenate([[0], np.cumsum(counts)])
    order = ak.to_numpy(ak.flatten(reclustered.unique_history_order())).astype(np.int64)
    parent1, parent2 = _history_parents(order, n_constituents.astype(np.int64), offsets)
    flat = ak.flatten(jets)
    px, py, pz, energy = (ak.to_numpy(flat[name]) for name in ("px", "py", "pz", "E"))
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore"):
        rapidity = 0.5 * np.log((energy + pz) / (energy - pz))
    phi = np.arctan2(py, px)
    current = offsets[1:] - 1  # the last pseudojet of each history is the whole jet
    walking = np.flatnonzero(counts > 1)
    while len(walking):
        node = current[walking]
        first, second = parent1[node], parent2[node]
        delta_phi = np.abs(phi[first] - phi[second])
        delta_phi = np.where(delta_phi > np.pi, 2 * np.pi - delta_phi, delta_phi)
        delta_r = np.hypot(rapidity[first] - rapidity[second], delta_phi)
        z = np.minimum(pt[first], pt[second]) / (pt[first] + pt[second])
        groomed = z > zcut * (delta_r / radius) ** beta
        harder = np.where(pt[first] >= pt[second], first, second)
        current[walking[~groomed]] = harder[~groomed]
        walking = walking[~groomed]
        walking = walking[parent1[current[walking]] >= 0]  # a single particle left: nothing more to decluster
    mass_squared = energy[current] ** 2 - px[current] ** 2 - py[current] ** 2 - pz[current] ** 2
    return np.sqrt(np.maximum(mass_squared, 0.0))


def _rapidity_phi(px: np.ndarray, py: np.ndarray, pz: np.ndarray, energy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(divide="ignore"):
        return 0.5 * np.log((energy + pz) / (energy - pz)), np.arctan2(py, px)


def _nsubjettiness(per_jet: ak.Array, n_max: int, beta: float, radius: float) -> np.ndarray:
    """tau_1 .. tau_n_max of every jet (rows) from its constituents (``per_jet``: one list per jet).

    fjcontrib's ``Nsubjettiness`` with ``KT_Axes`` and ``NormalizedMeasure(beta, R0)``:
    tau_N = sum_k pT_k min_a Delta R_ka^beta / (R0^beta sum_k pT_k), the axes a being the N exclusive jets of a kT
    clustering of the constituents and Delta R measured in rapidity and azimuth; a jet with N constituents or
    fewer has tau_N = 0. One kT clustering serves every N, where the fjcontrib binding clusters once per N.

    References:
        Thaler, Van Tilburg, "Identifying Boosted Objects with N-subjettiness", arXiv:1011.2268.
    """
    counts = ak.to_numpy(ak.num(per_jet, axis=1))
    jet_of = np.repeat(np.arange(len(counts)), counts)
    flat = ak.flatten(per_jet)
    px, py, pz, energy = (ak.to_numpy(flat[name]) for name in ("px", "py", "pz", "E"))
    pt = np.hypot(px, py)
    rapidity, phi = _rapidity_phi(px, py, pz, energy)
    denominator = np.bincount(jet_of, weights=pt, minlength=len(counts)) * radius**beta
    kt_clustering = fastjet.ClusterSequence(
        per_jet, fastjet.JetDefinition(fastjet.kt_algorithm, fastjet.JetDefinition.max_allowable_R)
    )
    taus = np.empty((len(counts), n_max))
    for n in range(1, n_max + 1):
        with warnings.catch_warnings():
            # fastjet 3.5's check for exclusive jets of a non-kT algorithm compares the JetDefinition with the
            # algorithm enums, so it warns for kT too
            warnings.filterwarnings("ignore", message="dcut and exclusive jets", category=UserWarning)
            axes = kt_clustering.exclusive_jets_up_to(n)
        # (jets, n) arrays of the axes; a jet of fewer than n constituents has fewer axes, each constituent being
        # one of them, and its missing axes are infinitely far
        n_axes = ak.to_numpy(ak.num(axes, axis=1))
        rows = np.repeat(np.arange(len(n_axes)), n_axes)
        columns = np.arange(len(rows)) - np.repeat(np.cumsum(n_axes) - n_axes, n_axes)
        flat_axes = ak.flatten(axes)
        axis_rapidity, axis_phi = np.full((len(n_axes), n), np.inf), np.zeros((len(n_axes), n))
        axis_rapidity[rows, columns], axis_phi[rows, columns] = _rapidity_phi(
            *(ak.to_numpy(flat_axes[name]) for name in ("px", "py", "pz", "E"))
        )
        delta_phi = np.abs(phi[:, None] - axis_phi[jet_of])
        delta_phi = np.minimum(delta_phi, 2 * np.pi - delta_phi)
        nearest = np.sqrt(np.min((rapidity[:, None] - axis_rapidity[jet_of]) ** 2 + delta_phi**2, axis=1))
        taus[:, n - 1] = np.bincount(jet_of, weights=pt * nearest**beta, minlength=len(counts)) / denominator
    return taus


def _fat_jets(rng, calo, card) -> tuple[ak.Array, ak.Array]:
    """Large-radius jets with soft-drop mass and N-subjettiness tau1..tau4 (beta = 1, exclusive-kT axes),
    and the particle-level jets they come from (GenJetAK8)."""
    radius = card.fatjet_radius
    cluster = fastjet.ClusterSequence(calo, fastjet.JetDefinition(fastjet.antikt_algorithm, radius))
    raw_min_pt = 0.5 * card.fatjet_pt_min
    raw = cluster.inclusive_jets(min_pt=raw_min_pt)
    order = ak.argsort(_pt(raw), axis=1, ascending=False)
    raw = raw[order]
    constituents = cluster.constituents(min_pt=raw_min_pt)[order]
    response = _jet_response(rng, raw, card)
    smeared = _scaled(raw, response)
    keep = _pt(smeared) > card.fatjet_pt_min
    constituents = constituents[keep]
    per_jet = ak.flatten(constituents, axis=1)
    per_jet = _four_vectors(per_jet.px, per_jet.py, per_jet.pz, per_jet.E)
    if len(per_jet):
        # One "event" per stored fat jet: Cambridge/Aachen reclustering of its constituents into one jet (an R
        # too large for any beam recombination, as fjcontrib's Recluster does) for soft drop, and fjcontrib's
        # N-subjettiness on the same particles.
        reclustered = fastjet.ClusterSequence(
            per_jet, fastjet.JetDefinition(fastjet.cambridge_algorithm, fastjet.JetDefinition.max_allowable_R)
        )
        softdrop_mass = _softdrop_mass(
            reclustered, ak.to_numpy(ak.num(per_jet, axis=1)), card.softdrop_beta, card.softdrop_zcut, radius
        )
        taus = _nsubjettiness(per_jet, 4, beta=1.0, radius=radius)
    else:
        softdrop_mass = np.zeros(0)
        taus = np.zeros((0, 4))
    fields = dict(zip(("pt", "eta", "phi", "mass"), ak.unzip(_kinematics(smeared[keep]))))
    fields["msoftdrop"] = _jagged_like(softdrop_mass, constituents) * response[keep]
    fields["nConstituents"] = np.minimum(ak.num(constituents, axis=2), 255)
    fields["genJetAK8Idx"] = ak.local_index(raw, axis=1)[keep]
    for n in range(4):
        fields[f"tau{n + 1}"] = _jagged_like(taus[:, n], constituents)
    return _sorted_by_pt(ak.zip(fields)), _kinematics(raw)


@dataclasses.dataclass(frozen=True)
class _Particles:
    """Particles of a batch of events as flat numpy columns in event order, with the event each belongs to."""

    n_events: int
    event: np.ndarray
    columns: dict[str, np.ndarray]

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def select(self, mask: np.ndarray) -> _Particles:
        return _Particles(self.n_events, self.event[mask], {name: values[mask] for name, values in self.columns.items()})

    def counts(self) -> np.ndarray:
        return np.bincount(self.event, minlength=self.n_events)

    def per_event(self, names: tuple[str, ...], with_name: str | None = None) -> ak.Array:
        """The chosen columns as one jagged record array (a list of particles per event)."""
        offsets = np.concatenate([[0], np.cumsum(self.counts())])
        content = ak.contents.RecordArray(
            [ak.contents.NumpyArray(self.columns[name]) for name in names],
            list(names),
            parameters={"__record__": with_name} if with_name else None,
        )
        return ak.Array(ak.contents.ListOffsetArray(ak.index.Index64(offsets), content))

    def sum_per_event(self, values: np.ndarray) -> np.ndarray:
        return np.bincount(self.event, weights=values, minlength=self.n_events)


def _final_state(record: _FlatRecord, properties: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]) -> _Particles:
    """The final-state particles of a Pythia event record, with pT, eta, phi, charge and visibility."""
    counts = record.counts
    final = record["status"] > 0
    event = np.repeat(np.arange(len(counts)), counts)[final]
    px, py, pz, energy = (record[name][final] for name in ("px", "py", "pz", "e"))
    pdg_id = record["id"][final]
    visible, charge = properties(pdg_id)
    pt = np.hypot(px, py)
    transverse = pt > 0
    first_of_event = np.concatenate([[0], np.cumsum(np.bincount(event, minlength=len(counts)))[:-1]])
    columns = {
        "px": px,
        "py": py,
        "pz": pz,
        "E": energy,
        "pt": pt,
        "eta": np.where(transverse, np.arcsinh(pz / np.where(transverse, pt, 1.0)), 0.0),
        "phi": np.arctan2(py, px),
        "pdgId": pdg_id,
        "index": np.arange(len(event)) - first_of_event[event],
        "charge": charge,
        "visible": visible,
    }
    return _Particles(len(counts), event, columns)


def _isolation(leptons: ak.Array, particles: _Particles, card: DetectorCard) -> ak.Array:
    """pfRelIso03_all: scalar pT sum of other visible particles in the cone, over the lepton pT."""
    counts = ak.to_numpy(ak.num(leptons, axis=1))
    event = np.repeat(np.arange(len(counts)), counts)
    eta, phi, pt, index = (ak.to_numpy(ak.flatten(leptons[name])) for name in ("eta", "phi", "pt", "index"))
    # every (lepton, particle of its event) pair, in flat arrays
    per_event = particles.counts()
    first = np.concatenate([[0], np.cumsum(per_event)[:-1]])
    n_pairs = per_event[event]
    pair_lepton = np.repeat(np.arange(len(event)), n_pairs)
    pair_particle = np.arange(n_pairs.sum()) - np.repeat(np.cumsum(n_pairs) - n_pairs - first[event], n_pairs)
    in_cone = (
        _delta_r(eta[pair_lepton], phi[pair_lepton], particles["eta"][pair_particle], particles["phi"][pair_particle])
        < card.isolation_cone
    ) & (index[pair_lepton] != particles["index"][pair_particle])
    cone_pt = np.bincount(
        pair_lepton, weights=np.where(in_cone, particles["pt"][pair_particle], 0.0), minlength=len(event)
    )
    return ak.unflatten(cone_pt / pt, counts)


def _leptons(rng, candidates, isolation_particles, card, flavour: int) -> ak.Array:
    """Electrons (flavour 11) or muons (13): efficiency, momentum smearing, isolation and identification."""
    true_pt = candidates.pt
    if flavour == 11:
        efficiency = ak.where(
            abs(candidates.eta) < 1.5, card.electron_efficiency_barrel, card.electron_efficiency_endcap
        )
        energy = true_pt * np.cosh(candidates.eta)
        sigma = np.sqrt(card.electron_resolution_stochastic**2 / energy + card.electron_resolution_constant**2)
        pt_min, mass = card.electron_pt_min, ELECTRON_MASS
    else:
        efficiency = ak.full_like(true_pt, card.muon_efficiency)
        sigma = np.hypot(card.muon_resolution_constant, card.muon_resolution_slope * true_pt)
        pt_min, mass = card.muon_pt_min, MUON_MASS
    reconstructed = _uniform(rng, candidates) < efficiency
    pt = true_pt * np.maximum(1.0 + sigma * _normal(rng, candidates), 0.0)
    leptons = ak.with_field(candidates, pt, "pt")[reconstructed & (pt > pt_min)]
    isolation = _isolation(leptons, isolation_particles, card)
    identification = _uniform(rng, leptons)
    fields = {
        "pt": leptons.pt,
        "eta": leptons.eta,
        "phi": leptons.phi,
        "mass": ak.full_like(leptons.pt, mass),
        "charge": -np.sign(leptons.pdgId),
        "pdgId": leptons.pdgId,
        "pfRelIso03_all": isolation,
    }
    if flavour == 11:
        # One draw per electron against the nested working points: 4 tight, 3 medium, 2 loose, 1 veto, 0 none.
        level = sum(
            ak.values_astype(identification < probability, np.uint8)
            for probability in (
                card.electron_id_veto,
                card.electron_id_loose,
                card.electron_id_medium,
                card.electron_id_tight,
            )
        )
        fields["cutBased"] = ak.where(isolation > card.electron_id_isolation_max, np.minimum(level, 2), level)
    else:
        fields["looseId"] = ak.ones_like(leptons.pt, dtype=bool)
        fields["tightId"] = identification < card.muon_tight_id_efficiency
    return _sorted_by_pt(ak.zip(fields))


def _hard_process(record: _FlatRecord) -> ak.Array:
    """GenPart: the hard-process particles (Pythia status 22-29) with their last-copy kinematics."""
    # Flat numpy arrays of the whole record; indices into them are the record's own plus the event's offset.
    counts = record.counts
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    flat_status = np.abs(record["status"])
    first_flat = np.flatnonzero((flat_status >= 22) & (flat_status <= 29))
    n_hard = np.bincount(np.repeat(np.arange(len(counts)), counts)[first_flat], minlength=len(counts))
    event_offset = np.repeat(offsets, n_hard)
    flat_id = record["id"]
    flat_daughter1 = record["daughter1"]
    flat_daughter2 = record["daughter2"]
    # Follow each particle through its copies to its last copy, whose momentum includes the recoil
    # against initial-state radiation (the first copy of a resonance has pT = 0): carbon copies (one
    # daughter, same id) for every particle, and for resonances also their own radiation (two daughters,
    # one of them the resonance again), so that the decay products' mother is reached.
    is_resonance = flat_status[first_flat] == 22
    last_flat = first_flat
    while True:
        identity = flat_id[last_flat]
        daughter1, daughter2 = flat_daughter1[last_flat], flat_daughter2[last_flat]
        single_daughter = (daughter1 > 0) & ((daughter2 == daughter1) | (daughter2 == 0))
        first_continues = (
            (daughter1 > 0) & (flat_id[daughter1 + event_offset] == identity) & (single_daughter | is_resonance)
        )
        second_continues = is_resonance & (daughter2 > 0) & (flat_id[daughter2 + event_offset] == identity)
        if not np.any(first_continues | second_continues):
            break
        last_flat = np.where(
            first_continues, daughter1 + event_offset, np.where(second_continues, daughter2 + event_offset, last_flat)
        )
    first = ak.unflatten(first_flat - event_offset, n_hard)
    last = ak.unflatten(last_flat - event_offset, n_hard)
    # A decay product points to the last copy of its resonance (after the recoil), a copy to the first.
    mother = ak.unflatten(record["mother1"][first_flat], n_hard)
    stored = ak.zip({"first": first, "last": last})
    pairs = ak.cartesian({"mother": mother, "stored": stored}, axis=1, nested=True)
    same = (pairs.mother == pairs.stored.first) | (pairs.mother == pairs.stored.last)
    mother_index = ak.fill_none(ak.where(ak.any(same, axis=2), ak.argmax(same, axis=2), -1), -1)
    px, py, pz = (record[name][last_flat] for name in ("px", "py", "pz"))
    pt = np.hypot(px, py)
    columns = {
        "pt": pt,
        "eta": np.arcsinh(pz / pt),
        "phi": np.arctan2(py, px),
        "mass": record["m"][last_flat],
        "pdgId": flat_id[first_flat],
        "status": flat_status[first_flat],
        "statusFlags": np.full(len(first_flat), HARD_PROCESS_FLAGS, dtype=flat_status.dtype),
    }
    return ak.zip({**{name: ak.unflatten(values, n_hard) for name, values in columns.items()},
                   "genPartIdxMother": mother_index})


def _missing_momentum(particles: _Particles, jet_shift, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    met_x = -(particles.sum_per_event(np.where(keep, particles["px"], 0.0)) + ak.to_numpy(jet_shift[0]))
    met_y = -(particles.sum_per_event(np.where(keep, particles["py"], 0.0)) + ak.to_numpy(jet_shift[1]))
    return np.hypot(met_x, met_y), np.arctan2(met_y, met_x)


def reconstruct(
    events: ak.Array,
    card: DetectorCard,
    rng: np.random.Generator,
    properties: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
) -> dict[str, ak.Array]:
    """Turn a ``nextBatch`` array of Pythia events into NanoAOD collections.

    Arguments:
        events: the awkward array returned by ``pythia8mc.Pythia.nextBatch`` (field ``prt``: the record).
        card: the detector response to apply.
        rng: the random generator of the smearing and efficiencies (seeded per chunk for reproducibility).
        properties: ``ids -> (visible, charge)`` (a :class:`ParticleProperties`).

    Returns:
        ``{"Jet", "FatJet", "Electron", "Muon", "GenPart", "GenJet", "GenJetAK8", "MET", "PuppiMET"}``:
        per-event records of NanoAOD fields (``MET``/``PuppiMET`` are flat records of ``pt``, ``phi``).
        GenJet and GenJetAK8 are the particle-level jets (visible particles, |eta| < 4.7) before the
        detector response; each reconstructed jet points to its own through ``genJetIdx``.
    """
    record = _FlatRecord(events.prt)
    particles = _final_state(record, properties)
    transverse = particles["pt"] > 0
    in_calorimeter = particles["visible"] & transverse & (np.abs(particles["eta"]) < card.calorimeter_eta_max)
    calo_vectors = particles.select(in_calorimeter).per_event(("px", "py", "pz", "E"), with_name="Momentum4D")

    jets, gen_jets, jet_shift = _ak4_jets(rng, calo_vectors, record, card)
    fat_jets, gen_fat_jets = _fat_jets(rng, calo_vectors, card)
    gen_particles = _hard_process(record)

    isolation_particles = particles.select(in_calorimeter & (particles["pt"] > card.isolation_particle_pt_min))
    in_tracker = transverse & (np.abs(particles["eta"]) < card.tracker_eta_max)
    lepton_fields = ("pt", "eta", "phi", "pdgId", "index")
    electrons, muons = (
        _leptons(
            rng,
            particles.select(in_tracker & (np.abs(particles["pdgId"]) == flavour)).per_event(lepton_fields),
            isolation_particles,
            card,
            flavour,
        )
        for flavour in (11, 13)
    )

    met = _missing_momentum(particles, jet_shift, in_calorimeter)
    puppi = in_calorimeter & ~((particles["charge"] == 0) & (particles["pt"] < card.puppi_neutral_pt_min))
    puppi_met = _missing_momentum(particles, jet_shift, puppi)

    # NanoAOD cross-references: leptons to their jet and to the hard-process lepton, jets to their leptons.
    for leptons in (electrons, muons):
        leptons["jetIdx"] = _closest(leptons, jets, card.jet_radius)
        leptons["genPartIdx"] = _closest(leptons, gen_particles, 0.1, same_pdg_id=True)
    jets["electronIdx1"], jets["electronIdx2"] = _first_two_members(jets, electrons.jetIdx)
    jets["muonIdx1"], jets["muonIdx2"] = _first_two_members(jets, muons.jetIdx)
    jets["jetId"] = ak.full_like(jets.pt, JET_ID_TIGHT_LEPVETO, dtype=np.uint8)
    fat_jets["jetId"] = ak.full_like(fat_jets.pt, JET_ID_TIGHT_LEPVETO, dtype=np.uint8)
    return {
        "Jet": jets,
        "FatJet": fat_jets,
        "Electron": electrons,
        "Muon": muons,
        "GenPart": gen_particles,
        "GenJet": gen_jets,
        "GenJetAK8": gen_fat_jets,
        "MET": ak.zip({"pt": met[0], "phi": met[1]}),
        "PuppiMET": ak.zip({"pt": puppi_met[0], "phi": puppi_met[1]}),
    }
