"""The physics processes that :func:`coffea_ad.generate.generate` can make, as Pythia8 settings.

Each :class:`Process` has named parameters (masses, thresholds) with defaults that a user overrides with
``--set KEY=VALUE``; :meth:`Process.pythia_settings` turns them into Pythia8 ``readString`` lines after
checking them. Parameters of the detector and of the jet reconstruction (``fatjet_radius``...) are
listed in :mod:`coffea_ad.generate.detector` and accepted for every process.

References:
    LHC Olympics 2020 R&D data set (QCD dijets and W' -> X(qq) Y(qq)), arXiv:2101.08320.
    Semi-visible jets in Pythia's Hidden Valley, Cohen, Lisanti, Lou, arXiv:1503.00009.
    Pythia 8.3 manual, arXiv:2203.11601 (process and particle-data settings used below).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from coffea_ad.errors import ConfigurationError

__all__ = ["PROCESSES", "Parameter", "Process", "get_process", "describe_processes"]

#: Settings shared by every process: 13 TeV pp, no printout, long-lived hadrons (c·tau > 10 mm:
#: K0S, Lambda, ...) left stable as in the CMS simulation.
COMMON_SETTINGS = (
    "Beams:eCM = 13000.",
    "Print:quiet = on",
    "Next:numberCount = 0",
    "ParticleDecays:limitTau0 = on",
    "ParticleDecays:tau0Max = 10.",
)


@dataclasses.dataclass(frozen=True)
class Parameter:
    """A named numeric parameter of a process, with its default, unit and meaning."""

    default: float
    unit: str
    doc: str
    minimum: float = 0.0

    def parse(self, name: str, text: str | float) -> float:
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise ConfigurationError(f"parameter {name} must be a number, got {text!r}") from None
        if not value > self.minimum:
            raise ConfigurationError(f"parameter {name} must be > {self.minimum:g} {self.unit}, got {value:g}")
        return value


@dataclasses.dataclass(frozen=True)
class Process:
    """A process: its parameters and the function that turns them into Pythia8 settings."""

    name: str
    description: str
    parameters: Mapping[str, Parameter]
    build: Callable[[Mapping[str, float]], list[str]]
    check: Callable[[Mapping[str, float]], None] = lambda values: None

    def resolve(self, overrides: Mapping[str, str | float]) -> dict[str, float]:
        """Return every parameter's value: defaults, then the user's overrides, checked."""
        unknown = sorted(set(overrides) - set(self.parameters))
        if unknown:
            valid = ", ".join(self.parameters) or "(none)"
            raise ConfigurationError(
                f"process {self.name} has no parameter {', '.join(unknown)}; its parameters are: {valid}"
            )
        values = {name: p.default for name, p in self.parameters.items()}
        for name, text in overrides.items():
            values[name] = self.parameters[name].parse(name, text)
        self.check(values)
        return values

    def pythia_settings(self, values: Mapping[str, float]) -> list[str]:
        """The Pythia8 ``readString`` lines of this process for the given parameter values."""
        return [*COMMON_SETTINGS, *self.build(values)]


def _narrow_resonance(pdg_id: int, mass: float, relative_width: float = 0.01) -> list[str]:
    # Without a forced narrow width and a mass window, Pythia lets the parton luminosity drag the
    # mass far below the pole (a "3.5 TeV" W' once came out at 114 GeV).
    width = relative_width * mass
    return [
        f"{pdg_id}:m0 = {mass:g}",
        f"{pdg_id}:mWidth = {width:g}",
        f"{pdg_id}:doForceWidth = on",
        f"{pdg_id}:mMin = {mass - 10 * width:g}",
        f"{pdg_id}:mMax = {mass + 10 * width:g}",
    ]


def _qcd_dijet(values: Mapping[str, float]) -> list[str]:
    return ["HardQCD:all = on", f"PhaseSpace:pTHatMin = {values['pthat_min']:g}"]


def _qcd_dijet_alt(values: Mapping[str, float]) -> list[str]:
    # ATLAS A14 tune (NNPDF2.3 LO, its own shower alpha_s and MPI): the same physics with another
    # shower and underlying-event model, to play "data" against the Monash "simulation".
    return [*_qcd_dijet(values), "Tune:pp = 21"]


def _wprime_xy(values: Mapping[str, float]) -> list[str]:
    # W' -> X Y with X -> q q and Y -> q q. Pythia has no generic X and Y, so the neutral H0 (35)
    # plays X and the charged H+ (37) plays Y; their decay tables are replaced by one channel each.
    return [
        "NewGaugeBoson:ffbar2Wprime = on",
        "Wprime:coup2WZ = 0.",
        *_narrow_resonance(34, values["mass_wprime"]),
        "34:onMode = off",
        "34:addChannel = 1 1.0 100 35 37",
        *_narrow_resonance(35, values["mass_x"]),
        "35:onMode = off",
        "35:addChannel = 1 1.0 100 1 -1",
        *_narrow_resonance(37, values["mass_y"]),
        "37:onMode = off",
        "37:addChannel = 1 1.0 100 2 -1",
    ]


def _check_wprime_xy(values: Mapping[str, float]) -> None:
    if values["mass_x"] + values["mass_y"] >= values["mass_wprime"]:
        raise ConfigurationError(
            f"mass_x + mass_y = {values['mass_x'] + values['mass_y']:g} GeV must be below "
            f"mass_wprime = {values['mass_wprime']:g} GeV for W' -> X Y to be allowed"
        )


def _semivisible(values: Mapping[str, float]) -> list[str]:
    # Z' (Hidden Valley Z_v, 4900023) -> dark quarks (4900101) that shower and hadronise in an SU(3)
    # dark sector; dark pions (4900111) and rhos (4900113) decay to an invisible pair (51, 53: stable
    # dark-matter states) with probability r_inv and to a d dbar pair that hadronises otherwise.
    meson = values["mass_dark_meson"]
    quark = meson / 2
    r_inv = values["r_inv"]
    return [
        "HiddenValley:ffbar2Zv = on",
        *_narrow_resonance(4900023, values["mass_zprime"]),
        "4900023:onMode = off",
        "4900023:onIfAny = 4900101",
        f"4900101:m0 = {quark:g}",
        "HiddenValley:Ngauge = 3",
        "HiddenValley:fragment = on",
        "HiddenValley:FSR = on",
        "HiddenValley:alphaOrder = 1",
        f"HiddenValley:Lambda = {quark:g}",
        f"HiddenValley:pTminFSR = {1.1 * quark:g}",
        "HiddenValley:spinFv = 0",
        f"4900111:m0 = {meson:g}",
        f"4900113:m0 = {meson:g}",
        "51:m0 = 0.0",
        "51:isResonance = false",
        "53:m0 = 0.0",
        "53:isResonance = false",
        f"4900111:oneChannel = 1 {r_inv:g} 0 51 -51",
        f"4900111:addChannel = 1 {1 - r_inv:g} 91 1 -1",
        f"4900113:oneChannel = 1 {r_inv:g} 0 53 -53",
        f"4900113:addChannel = 1 {1 - r_inv:g} 91 1 -1",
    ]


def _check_semivisible(values: Mapping[str, float]) -> None:
    if not values["r_inv"] < 1:
        raise ConfigurationError(f"r_inv is the invisible fraction and must be below 1, got {values['r_inv']:g}")
    if values["mass_dark_meson"] >= values["mass_zprime"] / 2:
        raise ConfigurationError(
            f"mass_dark_meson = {values['mass_dark_meson']:g} GeV must be below mass_zprime / 2 "
            f"= {values['mass_zprime'] / 2:g} GeV"
        )


def _zz4l(values: Mapping[str, float]) -> list[str]:
    # q qbar -> Z/gamma* Z/gamma*, both decaying to e+e- or mu+mu-.
    return [
        "WeakDoubleBoson:ffbar2gmZgmZ = on",
        f"23:mMin = {values['mass_ll_min']:g}",
        "23:onMode = off",
        "23:onIfAny = 11 13",
    ]


def _hpp4l(values: Mapping[str, float]) -> list[str]:
    # Drell-Yan pair production of the left-handed doubly-charged Higgs of the left-right symmetric
    # model (H_L++ = 9900041), each decaying to two same-sign light leptons (ee, e mu, mu mu).
    # Pythia spells the flag LeftRightSymmmetry, with three m's.
    return [
        "LeftRightSymmmetry:ffbar2HLHL = on",
        f"9900041:m0 = {values['mass_hpp']:g}",
        "9900041:onMode = off",
        "9900041:onIfMatch = -11 -11",
        "9900041:onIfMatch = -11 -13",
        "9900041:onIfMatch = -13 -13",
    ]


_PTHAT = {"pthat_min": Parameter(1200.0, "GeV", "minimum pT of the 2 -> 2 hard scattering")}

PROCESSES: dict[str, Process] = {
    process.name: process
    for process in (
        Process(
            "qcd_dijet",
            "QCD 2 -> 2 above a pTHat threshold, Monash tune (the LHC Olympics R&D background)",
            _PTHAT,
            _qcd_dijet,
        ),
        Process(
            "qcd_dijet_alt",
            "the same QCD with the ATLAS A14 tune (another shower and underlying event): 'data' for "
            "data-vs-simulation studies",
            _PTHAT,
            _qcd_dijet_alt,
        ),
        Process(
            "wprime_xy",
            "W' -> X(-> qq) Y(-> qq) (the LHC Olympics R&D signal)",
            {
                "mass_wprime": Parameter(3500.0, "GeV", "W' mass"),
                "mass_x": Parameter(500.0, "GeV", "mass of X (-> d dbar)"),
                "mass_y": Parameter(100.0, "GeV", "mass of Y (-> u dbar)"),
            },
            _wprime_xy,
            _check_wprime_xy,
        ),
        Process(
            "semivisible",
            "Z' -> dark quarks -> semi-visible jets (Hidden Valley): large MET, non-resonant in mjj",
            {
                "mass_zprime": Parameter(3000.0, "GeV", "Z' (Z_v) mass"),
                "mass_dark_meson": Parameter(20.0, "GeV", "dark pion and rho mass (dark quarks weigh half)"),
                "r_inv": Parameter(0.3, "", "fraction of dark-meson decays to invisible states"),
            },
            _semivisible,
            _check_semivisible,
        ),
        Process(
            "zz4l",
            "SM q qbar -> ZZ/Z gamma* -> 4 leptons (e, mu): the multi-lepton background",
            {"mass_ll_min": Parameter(12.0, "GeV", "lower mass cut on each Z/gamma*")},
            _zz4l,
        ),
        Process(
            "hpp4l",
            "doubly-charged Higgs pair H++ H-- -> 4 leptons (e, mu): the multi-lepton signal",
            {"mass_hpp": Parameter(500.0, "GeV", "H++ mass")},
            _hpp4l,
        ),
    )
}


def get_process(name: str) -> Process:
    """Return the process called ``name``, or raise an error that lists the valid ones."""
    try:
        return PROCESSES[name]
    except KeyError:
        raise ConfigurationError(f"unknown process {name!r}; choose one of: {', '.join(PROCESSES)}") from None


def describe_processes(name: str | None = None) -> str:
    """A human-readable list of the processes (or of one) and their parameters with defaults."""
    chosen = [get_process(name)] if name else list(PROCESSES.values())
    lines = []
    for process in chosen:
        lines.append(f"{process.name}: {process.description}")
        for key, parameter in process.parameters.items():
            unit = f" {parameter.unit}" if parameter.unit else ""
            lines.append(f"    {key} = {parameter.default:g}{unit}   {parameter.doc}")
    return "\n".join(lines)
