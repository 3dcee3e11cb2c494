"""A user's own analysis with a user-defined feature: the dimuon mass, an anomaly score on it, three lines.

This file plays two roles, as a physicist's analysis module would:

1. **feature definitions**: :func:`mumu_mass` is defined with :func:`coffea_ad.features.define_feature`, so that
   ``coffea-ad features --feature-module examples/dimuon_user_feature.py`` writes it as a table column,
   ``coffea-ad train`` trains on it and :class:`coffea_ad.OnnxScorer` computes it from the events by name;
2. **the analysis**: :class:`DimuonProcessor` is written as in coffea's documentation (opposite-charge muon
   pairs, a histogram of their mass); the three lines marked ``# coffea_ad`` add an anomaly-score column
   and a histogram of the pairs above a score cut.

The chain, on the real CMS NanoAOD files of ``../shared/data/nanoaod`` (or any NanoAOD with muons)::

    coffea-ad features fileset.json -o out --feature-module examples/dimuon_user_feature.py \\
        --features mumu_mass,ht
    coffea-ad train autoencoder out/features/data.parquet --features mumu_mass,ht -o model
    python examples/dimuon_user_feature.py --model model/model.onnx nano_dimuon.root nano_dy.root

The processor runs with ``processor.Runner`` (here with coffea's ``FuturesExecutor``) or with
``coffea.dataset_tools.apply_to_fileset`` on Dask; on a cluster, the feature's function and the model travel
with the processor, so the workers need neither this file nor the model's folder.
"""

from __future__ import annotations

import argparse

import awkward as ak
import dask
import hist
import hist.dask
from coffea import processor
from coffea.nanoevents import NanoAODSchema

from coffea_ad import OnnxScorer  # coffea_ad (1/3)
from coffea_ad.features import define_feature

MUON_BRANCHES = ("Muon_pt", "Muon_eta", "Muon_phi", "Muon_mass", "Muon_charge")


@define_feature(branches=MUON_BRANCHES, unit="GeV", axis=("regular", 60, 0.0, 150.0))
def mumu_mass(events):
    """Invariant mass of the two leading muons if they have opposite charge (None otherwise)."""
    muons = ak.pad_none(events.Muon, 2, clip=True)
    first, second = muons[:, 0], muons[:, 1]
    mass = (first + second).mass
    return ak.mask(mass, ak.fill_none(first.charge != second.charge, False))


class DimuonProcessor(processor.ProcessorABC):
    """The mass of opposite-charge muon pairs, before and after a cut on an anomaly score."""

    def __init__(self, model_path: str, score_cut: float) -> None:
        self.scorer = OnnxScorer(model_path)  # coffea_ad (2/3)
        self.score_cut = score_cut

    def process(self, events):
        muons = events.Muon
        events = events[(ak.num(muons) == 2) & (ak.sum(muons.charge, axis=1) == 0)]
        events["anomaly_score"] = self.scorer(events)  # coffea_ad (3/3)
        dimuon = events.Muon[:, 0] + events.Muon[:, 1]
        anomalous = ak.fill_none(events.anomaly_score > self.score_cut, False)
        # hist.dask with apply_to_fileset (dask-awkward events), hist with processor.Runner
        histogram = hist.dask.Hist if dask.is_dask_collection(events) else hist.Hist
        axis = hist.axis.Regular(60, 0.0, 150.0, name="mass", label=r"$m_{\mu\mu}$ [GeV]")
        return {
            events.metadata["dataset"]: {
                "entries": ak.num(events, axis=0),
                "mass": histogram(axis, storage="weight").fill(mass=dimuon.mass),
                "mass_anomalous": histogram(axis, storage="weight").fill(mass=dimuon.mass[anomalous]),
            }
        }

    def postprocess(self, accumulator):
        return accumulator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="NanoAOD ROOT files")
    parser.add_argument("--model", required=True, help="ONNX model from coffea-ad train, on mumu_mass")
    parser.add_argument("--score-cut", type=float, default=1.0, help="keep pairs with a score above this")
    parser.add_argument("--workers", type=int, default=2, help="processes of the FuturesExecutor")
    args = parser.parse_args()
    fileset = {"dimuon": {"files": {path: "Events" for path in args.files}}}
    runner = processor.Runner(
        executor=processor.FuturesExecutor(workers=args.workers, status=False), schema=NanoAODSchema
    )
    output = runner(fileset, processor_instance=DimuonProcessor(args.model, args.score_cut))["dimuon"]
    print(f"{output['entries']} opposite-charge pairs, {output['mass_anomalous'].sum().value:.0f} above the score cut")
    print(output["mass"])


if __name__ == "__main__":
    main()
