"""Generate a W' -> X(qq) Y(qq) signal and its QCD background, and plot the LHC Olympics observables.

    python examples/generate_dijet_samples.py -o plots/ [--events 2000] [--fatjet-radius 1.0]

Makes (or reuses) the two samples in the output folder, reads them with coffea's NanoEvents, and draws the
shapes (:func:`coffea_ad.plotting.plot_shapes`) of the dijet mass mjj, the soft-drop masses of the two leading fat
jets, and their tau21.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import awkward as ak
import hist
from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

from coffea_ad import plotting
from coffea_ad.generate import generate

SAMPLES = {"QCD dijets": ("qcd_dijet", 1), "W' (3.5 TeV) -> X(500) Y(100)": ("wprime_xy", 2)}


def leading_fat_jets(path: Path):
    events = NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=NanoAODSchema, mode="eager").events()
    fat_jets = events.FatJet[ak.num(events.FatJet) >= 2][:, :2]
    return fat_jets[:, 0], fat_jets[:, 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, required=True, help="folder for the samples and plots")
    parser.add_argument("--events", type=int, default=2000, help="events per sample (default 2000)")
    parser.add_argument("--fatjet-radius", type=float, default=0.8, help="fat-jet radius (LHC Olympics: 1.0)")
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)

    axes = {
        "mjj": hist.axis.Regular(40, 1500, 5500, name="mjj", label=r"$m_{jj}$ [GeV]"),
        "msoftdrop": hist.axis.Regular(50, 0, 1000, name="msoftdrop", label=r"soft-drop mass $m_{SD}$ [GeV]"),
        "tau21": hist.axis.Regular(40, 0, 1, name="tau21", label=r"$\tau_{21}$ of the two leading fat jets"),
    }
    histograms = {name: {} for name in axes}
    for label, (process, seed) in SAMPLES.items():
        path = args.output / f"{process}_R{args.fatjet_radius:g}.root"
        if not path.exists():
            settings = {"fatjet_radius": args.fatjet_radius}
            print(generate(process, args.events, path, seed=seed, settings=settings).describe())
        jet1, jet2 = leading_fat_jets(path)
        values = {
            "mjj": (jet1 + jet2).mass,
            "msoftdrop": ak.concatenate([jet1.msoftdrop, jet2.msoftdrop]),
            "tau21": ak.concatenate([jet1["tau2"] / jet1["tau1"], jet2["tau2"] / jet2["tau1"]]),
        }
        for name, axis in axes.items():
            histograms[name][label] = hist.Hist(axis).fill(ak.to_numpy(values[name]))

    for name, by_sample in histograms.items():
        figure = plotting.plot_shapes(by_sample, title=r"Pythia8 + coffea_ad detector response, $\sqrt{s}$ = 13 TeV")
        plotting.save_figure(figure, args.output / f"{name}.png")
        print(f"wrote {args.output / f'{name}.png'}")


if __name__ == "__main__":
    main()
