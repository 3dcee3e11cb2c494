"""Inline ONNX scoring throughput: OnnxScorer vs bare onnxruntime vs coffea.ml_tools.torch_wrapper.

For an autoencoder and a MAF trained on the LHC Olympics features of a QCD sample:

1. bare onnxruntime on a numpy array of the features (the floor: no event handling at all);
2. ``OnnxScorer`` on the same events already in memory: on the feature columns (the wrapper's own cost:
   None handling, awkward -> numpy, the session call; goal <= 1.1x of (1)), and on the events, features
   built from NanoEvents included;
3. the same network through coffea's own ``coffea.ml_tools.torch_wrapper`` (TorchScript, what a coffea
   user has today), eager and dask: goal OnnxScorer >= 2x faster;
4. strong scaling of dask scoring over the files on a LocalCluster, 1 -> 2 worker processes (goal >= 1.8x).

All rates are events per second per core, measured in the same run.

    python benchmarks/score_throughput.py [--events 20000] [--files FILE.root ...]
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import awkward as ak
import numpy as np

from coffea_ad.features import compute_features
from coffea_ad.onnx.scorer import OnnxScorer
from coffea_ad.paths import cache_dir
from timing import best_of

LHCO = ["mj_min", "delta_mj", "tau21_j1", "tau21_j2"]


def events_of(paths: list[Path], mode: str):
    """Eager events of the first file, or dask events of every file in 8 partitions each."""
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    if mode == "dask":
        files = {str(path): "Events" for path in paths}
        return NanoEventsFactory.from_root(files, schemaclass=NanoAODSchema, mode="dask", steps_per_file=8).events()
    return NanoEventsFactory.from_root({str(paths[0]): "Events"}, schemaclass=NanoAODSchema, mode="eager").events()


def trained_models(events, folder: Path) -> dict[str, tuple[object, Path]]:
    from coffea_ad.models import MAF, AutoEncoder

    features = compute_features(events, LHCO)
    table = {name: ak.to_numpy(ak.drop_none(features[name])) for name in LHCO}
    models = {
        "autoencoder": AutoEncoder(latent=2, hidden=(32, 32), training={"epochs": 3, "progress": False}, seed=1),
        "maf": MAF(transforms=5, hidden=(64, 64), training={"epochs": 3, "progress": False}, seed=1),
    }
    exported = {}
    for name, model in models.items():
        model.fit(table, LHCO)
        exported[name] = (model, model.export_onnx(folder / f"{name}.onnx"))
    return exported


def torchscript_wrapper(model, folder: Path, name: str):
    """coffea.ml_tools.torch_wrapper around a TorchScript export of the same scoring network."""
    import torch
    from coffea.ml_tools.torch_wrapper import torch_wrapper

    path = folder / f"{name}.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(model.scoring_module(), torch.zeros(4, len(LHCO))).save(str(path))

    class LHCOWrapper(torch_wrapper):
        def prepare_awkward(self, events):
            features = compute_features(events[ak.num(events.FatJet) >= 2], LHCO)
            stacked = ak.concatenate([ak.values_astype(features[n], np.float32)[:, np.newaxis] for n in LHCO], axis=1)
            return (stacked,), {}

    torch.set_num_threads(1)
    return LHCOWrapper(str(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000, help="QCD events to generate if no --files (20000)")
    parser.add_argument("--files", nargs="*", type=Path, help="NanoAOD files with FatJets (default: generated)")
    args = parser.parse_args()
    if args.files:
        files = args.files
    else:
        from coffea_ad.generate import generate

        path = cache_dir() / "benchmarks" / f"qcd_dijet_{args.events}.root"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            generate("qcd_dijet", args.events, path, seed=101)
        files = [path]

    events = events_of(files, "eager")
    n_events = len(events)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        models = trained_models(events, folder)
        features = compute_features(events, LHCO)
        matrix = np.stack([ak.to_numpy(ak.fill_none(features[n], np.nan)) for n in LHCO], axis=1).astype(np.float32)
        matrix = np.ascontiguousarray(matrix[np.isfinite(matrix).all(axis=1)])
        print(f"{n_events} events ({len(matrix)} with two fat jets) from {', '.join(str(f) for f in files)}\n")
        print("| model | bare onnxruntime | OnnxScorer on feature columns (ratio, goal <= 1.1) "
              "| OnnxScorer on events, features built (ratio) | torch_wrapper eager | OnnxScorer speed-up (goal >= 2) "
              "| OnnxScorer dask | torch_wrapper dask | dask speed-up |")
        print("|---|---|---|---|---|---|---|---|---|")
        columns = [features[name] for name in LHCO]
        for name, (model, onnx_path) in models.items():
            scorer = OnnxScorer(onnx_path)
            session = scorer.session
            bare = best_of(lambda: session.run(["score"], {"features": matrix}))
            wrapped = best_of(lambda: scorer.score_columns(*columns))
            inline = best_of(lambda: scorer(events))
            wrapper = torchscript_wrapper(model, folder, name)
            torch_eager = best_of(lambda: wrapper(events))
            dask_events = events_of(files, "dask")
            onnx_dask = best_of(lambda: scorer(dask_events).compute(scheduler="sync"))
            torch_dask = best_of(lambda: wrapper(dask_events).compute(scheduler="sync"))
            rate = lambda seconds: f"{n_events / seconds:,.0f}"  # noqa: E731
            print(f"| {name} | {rate(bare)} | {rate(wrapped)} ({wrapped / bare:.1f}) | {rate(inline)} "
                  f"({inline / bare:.1f}) | {rate(torch_eager)} | {torch_eager / inline:.1f} | {rate(onnx_dask)} | "
                  f"{rate(torch_dask)} | {torch_dask / onnx_dask:.1f} |", flush=True)
        print("\nStrong scaling (dask, LocalCluster, 1 -> 2 worker processes, scoring every file)")
        from distributed import Client, LocalCluster

        for name, (_, onnx_path) in models.items():
            scorer = OnnxScorer(onnx_path)
            seconds = {}
            for workers in (1, 2):
                cluster = LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None)
                with cluster, Client(cluster):
                    dask_events = events_of(files, "dask")
                    scorer(dask_events).compute()
                    seconds[workers] = best_of(lambda: scorer(events_of(files, "dask")).compute(), repeat=2)
            print(f"  {name}: 1 worker {n_events / seconds[1]:,.0f} events/s, 2 workers {n_events / seconds[2]:,.0f} "
                  f"events/s: speed-up {seconds[1] / seconds[2]:.2f}")


if __name__ == "__main__":
    main()
