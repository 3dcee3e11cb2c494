"""coffea processors of coffea_ad: thin glue that calls the physics in the library.

These are the classes ``coffea-ad features`` and ``coffea-ad score`` run; subclass or copy them for your own
analysis. They import the library's stages (:mod:`coffea_ad.features`, :mod:`coffea_ad.processing`,
:mod:`coffea_ad.onnx`, :mod:`coffea_ad.selection`); the library's stages never import them back: the
runner (:func:`coffea_ad.processing.run_processor`) takes the processor as an argument, and only the
applications (:mod:`coffea_ad.workflow`, the CLI, the demo) name these classes.
"""

from processors.feature_processor import AnomalyFeatureProcessor
from processors.score_processor import AnomalyScoreProcessor

__all__ = ["AnomalyFeatureProcessor", "AnomalyScoreProcessor"]
