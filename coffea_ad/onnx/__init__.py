"""ONNX: the one model format between training and analysis.

- :mod:`~coffea_ad.onnx.export`: the ONNX contract (input ``features``, output ``score``, metadata), writing a
  torch module to it (``[train]`` extra) and reading it back with onnxruntime only;
- :mod:`~coffea_ad.onnx.scorer`: :class:`OnnxScorer`, a model as a new column of NanoEvents on any Dask worker.

Nothing here imports torch unless a model is written.
"""

from coffea_ad.onnx.export import INPUT_NAME, OUTPUT_NAME, ModelMetadata, read_metadata, score_onnx

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "ModelMetadata", "OnnxScorer", "read_metadata", "score_onnx"]


def __getattr__(name: str):
    # OnnxScorer pulls in coffea's NanoEvents machinery and dask: import it only when asked for.
    if name == "OnnxScorer":
        from coffea_ad.onnx.scorer import OnnxScorer

        return OnnxScorer
    raise AttributeError(f"module 'coffea_ad.onnx' has no attribute {name!r}")
