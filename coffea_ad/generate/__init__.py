"""Event generation: Pythia8 at 13 TeV, fastjet clustering, a fast detector response, NanoAOD output.

Needs the ``[generate]`` extra (pythia8mc, fastjet). The entry point is :func:`generate`; the
processes and their parameters are in :data:`PROCESSES`, the detector numbers in :class:`DetectorCard`,
and :func:`cached_sample` generates a sample into a folder only once; :func:`read_sample_metadata` returns the
cross section and settings stored in a generated file.
"""

from __future__ import annotations

from coffea_ad.generate.detector import DetectorCard
from coffea_ad.generate.nanoaod import read_sample_metadata
from coffea_ad.generate.processes import PROCESSES, describe_processes
from coffea_ad.generate.sample import GenerationSummary, cached_sample, generate

__all__ = [
    "PROCESSES",
    "DetectorCard",
    "GenerationSummary",
    "cached_sample",
    "describe_processes",
    "generate",
    "read_sample_metadata",
]
