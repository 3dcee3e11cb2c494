"""coffea_ad: machine-learned anomaly scores for coffea analyses.

The analysis side of the package (features, regions, ONNX scoring, statistics) needs only coffea and
onnxruntime: importing :mod:`coffea_ad` never imports torch. Training lives in :mod:`coffea_ad.models`
(the ``[train]`` extra) and event generation in :mod:`coffea_ad.generate` (the ``[generate]`` extra).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from coffea_ad.errors import CoffeaADError, ConfigurationError, InputFileError

try:
    __version__ = version("coffea-ad")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["CoffeaADError", "ConfigurationError", "InputFileError", "OnnxScorer", "__version__"]


def __getattr__(name: str):
    # OnnxScorer pulls in coffea's NanoEvents machinery; import it only when asked for.
    if name == "OnnxScorer":
        from coffea_ad.onnx.scorer import OnnxScorer

        return OnnxScorer
    raise AttributeError(f"module 'coffea_ad' has no attribute {name!r}")
