"""Adding an anomaly score to an existing coffea analysis: three lines.

The processor below is the kind found in coffea's documentation: it selects events with two fat jets
and fills a histogram of their invariant mass. The three lines marked ``# coffea_ad`` give it an
anomaly-score column from a model trained with ``coffea-ad train`` and a second histogram after a cut on
that score. It runs with coffea's ``processor.Runner`` on a generated sample or, when ``../shared`` is
present, on a real CMS NanoAOD file.

    python examples/add_score_to_existing_analysis.py --model MODEL.onnx FILE.root [FILE.root ...]
"""

from __future__ import annotations

import argparse

import awkward as ak
import hist
from coffea import processor
from coffea.nanoevents import NanoAODSchema

from coffea_ad import OnnxScorer  # coffea_ad (1/3)


class DijetMassProcessor(processor.ProcessorABC):
    """Dijet mass of the two leading fat jets, before and after an anomaly-score cut."""

    def __init__(self, model_path: str, score_cut: float) -> None:
        self.scorer = OnnxScorer(model_path)  # coffea_ad (2/3)
        self.score_cut = score_cut

    def process(self, events):
        events = events[ak.num(events.FatJet) >= 2]
        events["anomaly_score"] = self.scorer(events)  # coffea_ad (3/3)
        mjj = (events.FatJet[:, 0] + events.FatJet[:, 1]).mass
        axis = hist.axis.Regular(40, 1000, 6000, name="mjj", label="$m_{jj}$ [GeV]")
        selected = ak.fill_none(events.anomaly_score > self.score_cut, False)
        return {
            events.metadata["dataset"]: {
                "entries": len(events),
                "mjj": hist.Hist(axis).fill(mjj),
                "mjj_anomalous": hist.Hist(axis).fill(mjj[selected]),
            }
        }

    def postprocess(self, accumulator):
        return accumulator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="NanoAOD ROOT files")
    parser.add_argument("--model", required=True, help="ONNX model from coffea-ad train")
    parser.add_argument("--score-cut", type=float, default=1.0, help="keep events with a score above this")
    args = parser.parse_args()
    fileset = {"events": {"files": {path: "Events" for path in args.files}}}
    runner = processor.Runner(executor=processor.IterativeExecutor(), schema=NanoAODSchema, savemetrics=False)
    output = runner(fileset, processor_instance=DijetMassProcessor(args.model, args.score_cut), treename="Events")
    result = output["events"]
    print(f"{result['entries']} events with two fat jets, {result['mjj_anomalous'].sum():.0f} above the score cut")
    print(result["mjj"])
    print(result["mjj_anomalous"])


if __name__ == "__main__":
    main()
