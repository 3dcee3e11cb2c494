"""Training and scoring throughput of the coffea_ad models on CPU (and CUDA when present).

1. Training seconds per epoch on ``--rows`` events (default 500k) for the autoencoder and the MAF.
2. Scoring ``--events`` events (default 1M) with ONNX Runtime vs torch eager, same model, same process,
   same thread count; the ratio torch / onnxruntime is printed (goal: >= 2).
3. The MAF's scoring time next to its FLOP count (torch.utils.flop_counter), i.e. the achieved GFLOP/s.

    python benchmarks/train_throughput.py [--rows 500000] [--events 1000000] [--threads N] [--json out.json]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from coffea_ad.models import MAF, AutoEncoder
from coffea_ad.paths import write_json
from timing import best_of

FEATURES = ["mj_min", "delta_mj", "tau21_j1", "tau21_j2"]


def table(n: int, seed: int = 0) -> pd.DataFrame:
    """Background-like dijet features (the shapes of tests/synthetic_tables.py, without signal)."""
    rng = np.random.default_rng(seed)
    mj = rng.gamma(2.0, 60.0, n) + 20.0
    t1 = np.clip(rng.beta(5.0, 2.5, n), 0.02, 0.98)
    return pd.DataFrame(
        {
            "mj_min": mj,
            "delta_mj": np.abs(rng.normal(0.0, 120.0, n) + 0.3 * (mj - 140.0)),
            "tau21_j1": t1,
            "tau21_j2": np.clip(0.6 * t1 + 0.4 * rng.beta(5.0, 2.5, n), 0.02, 0.98),
        }
    ).astype(np.float32)


def seconds_per_epoch(estimator_class, data: pd.DataFrame, device: str, batch_size: int) -> float:
    estimator = estimator_class(
        training={"epochs": 1, "batch_size": batch_size, "validation_fraction": 0.1, "progress": False}, device=device
    )
    start = time.perf_counter()
    estimator.fit(data, FEATURES)
    return time.perf_counter() - start


def scoring(estimator, x: np.ndarray, folder: Path, batch_size: int) -> dict:
    """Best-of-3 wall time of scoring ``x`` in torch eager and in onnxruntime, batch by batch."""
    import onnxruntime as ort

    path = estimator.export_onnx(folder / f"{estimator.method}.onnx")
    module = estimator.scoring_module().eval()
    tensor = torch.from_numpy(x.copy())
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def torch_eager():
        with torch.no_grad():
            for start in range(0, len(tensor), batch_size):
                module(tensor[start : start + batch_size])

    def onnxruntime():
        for start in range(0, len(x), batch_size):
            session.run(["score"], {"features": x[start : start + batch_size]})

    eager, runtime = best_of(torch_eager), best_of(onnxruntime)
    return {"torch_eager_s": eager, "onnxruntime_s": runtime, "speedup": eager / runtime}


def maf_flops(estimator, n: int = 4096) -> float:
    """FLOPs per event of the MAF's scoring module (matrix multiplications, as counted by torch)."""
    from torch.utils.flop_counter import FlopCounterMode

    module = estimator.scoring_module().eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(torch.from_numpy(table(n, seed=3).to_numpy().copy()))
    return counter.get_total_flops() / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000, help="training events (default 500k)")
    parser.add_argument("--events", type=int, default=1_000_000, help="scored events (default 1M)")
    parser.add_argument("--batch-size", type=int, default=1024, help="training batch size (default 1024)")
    parser.add_argument("--score-batch", type=int, default=100_000, help="scoring batch size (default 100k)")
    parser.add_argument("--threads", type=int, default=None, help="torch and onnxruntime threads")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results: dict = {
        "rows": args.rows,
        "events": args.events,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    data = table(args.rows)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        for estimator_class in (AutoEncoder, MAF):
            seconds = seconds_per_epoch(estimator_class, data, device, args.batch_size)
            results[f"{estimator_class.method}_{device}_seconds_per_epoch"] = seconds
            name = estimator_class.method
            print(f"training {name:12s} {device}: {seconds:7.2f} s/epoch on {args.rows} events", flush=True)
    x = np.ascontiguousarray(table(args.events, seed=1).to_numpy())
    with tempfile.TemporaryDirectory() as folder:
        for estimator_class in (AutoEncoder, MAF):
            estimator = estimator_class(training={"epochs": 1, "progress": False}).fit(data[:20000], FEATURES)
            timing = scoring(estimator, x, Path(folder), args.score_batch)
            results[f"{estimator.method}_scoring"] = timing
            print(
                f"scoring  {estimator.method:12s} {args.events} events: torch eager {timing['torch_eager_s']:.3f} s, "
                f"onnxruntime {timing['onnxruntime_s']:.3f} s, onnxruntime is {timing['speedup']:.2f}x faster",
                flush=True,
            )
            if estimator.method == "maf":
                flops = maf_flops(estimator)
                rate = flops * args.events / timing["onnxruntime_s"] / 1e9
                rate_torch = flops * args.events / timing["torch_eager_s"] / 1e9
                results["maf_flops_per_event"] = flops
                results["maf_gflops_onnxruntime"] = rate
                results["maf_gflops_torch"] = rate_torch
                print(
                    f"MAF: {flops / 1e3:.1f} kFLOP per event (matmuls); achieved {rate:.2f} GFLOP/s in onnxruntime, "
                    f"{rate_torch:.2f} GFLOP/s in torch eager",
                    flush=True,
                )
    if args.json:
        write_json(args.json, results)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
