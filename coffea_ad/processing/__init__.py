"""Processing: filesets, running coffea processors on Dask (or virtual NanoEvents), per-event tables, histograms.

- :mod:`~coffea_ad.processing.fileset`: read and check a coffea fileset (bad files are skipped and named).
  A chunk that a read error hits during the run is skipped and named too (:class:`SkippedChunk`).
- :mod:`~coffea_ad.processing.runner`: run a processor over the checked files in dask or virtual mode on a
  ``distributed`` client, and write ``histograms.root``, ``cutflow.json`` and ``features/{dataset}.parquet``.
- :mod:`~coffea_ad.processing.tables`: the per-event feature table (the one owner of reading and writing it).
- :mod:`~coffea_ad.processing.histograms`: histograms per region, their booking, filling and ROOT layout.

The processors themselves live in the top-level :mod:`processors` package, which imports this one: the
runner takes the processor to run as an argument and never imports it.
"""

from coffea_ad.processing.fileset import (
    DatasetFiles,
    SkippedChunk,
    SkippedFile,
    check_fileset,
    load_fileset,
    normalize_fileset,
    read_fileset,
    safe_name,
)
from coffea_ad.processing.runner import (
    MODES,
    READ_ERRORS,
    FeatureResult,
    check_inputs,
    cutflow_summary,
    dask_client,
    log_skipped_chunks,
    run_processor,
    write_outputs,
)

__all__ = [
    "MODES",
    "READ_ERRORS",
    "DatasetFiles",
    "SkippedChunk",
    "SkippedFile",
    "FeatureResult",
    "check_fileset",
    "load_fileset",
    "normalize_fileset",
    "read_fileset",
    "safe_name",
    "run_processor",
    "check_inputs",
    "log_skipped_chunks",
    "write_outputs",
    "cutflow_summary",
    "dask_client",
]
