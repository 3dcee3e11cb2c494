"""``coffea-ad features``: features, region flags, histograms and cutflow of a fileset, written to a folder.

Output folder (see :func:`coffea_ad.processing.write_outputs`)::

    OUTDIR/histograms.root              {dataset}/{partition}_{region}/{variable}
    OUTDIR/cutflow.json                 counts per region, files processed/skipped, features computed/left out
    OUTDIR/features/{dataset}.parquet   one row per event: the table ``coffea-ad train`` reads; a folder of
                                        parquet parts written by the workers (``tables="workers"``, the
                                        default), one file for ``tables="memory"``, absent for ``"none"``
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from coffea_ad.processing import (
    FeatureResult,
    check_fileset,
    check_inputs,
    dask_client,
    log_skipped_chunks,
    read_fileset,
    run_processor,
    write_outputs,
)
from processors import AnomalyFeatureProcessor

__all__ = ["run_features"]


def run_features(
    fileset: str | Path | Mapping[str, Any],
    outdir: str | Path,
    *,
    mode: str = "dask",
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool = False,
    processor: Callable[..., Any] = AnomalyFeatureProcessor,
    tables: str = "workers",
    table_folder: str | Path | None = None,
    strict: bool = False,
    **options: Any,
) -> tuple[FeatureResult, dict[str, Path | str]]:
    """Check the files, run the feature processor on a distributed cluster and write the outputs.

    ``fileset`` is a coffea fileset JSON path or mapping; ``processor`` is
    :class:`processors.AnomalyFeatureProcessor` or a subclass of it; ``options`` go to
    :func:`coffea_ad.processing.run_processor` (``features``, ``optional``, ``feature_config``,
    ``region_config``, ``step_size``, ...). Without ``scheduler`` a LocalCluster with ``workers`` worker
    processes (default: one per core) is started.

    ``tables``: ``"workers"`` (the tasks write ``features/{dataset}.parquet`` under ``outdir``, or under
    ``table_folder``, a folder or fsspec URL the workers reach), ``"memory"`` (gathered into
    ``result.tables`` and written by the client) or ``"none"`` (histograms and cutflow only).

    Unreadable files are skipped and chunks hit by a read error too (each logged as a warning, listed in
    ``cutflow.json``), but a dataset left without a readable file raises
    :class:`~coffea_ad.errors.InputFileError` (before the cluster starts when it is known from the files alone),
    and so does any skipped file or chunk under ``strict``; nothing is written then.
    """
    checked, skipped = check_fileset(read_fileset(fileset))
    check_inputs(checked, skipped, strict=strict)
    if tables == "workers" and table_folder is None:
        table_folder = Path(outdir) / "features"
    with dask_client(scheduler, workers) as client:
        result = run_processor(
            checked, skipped, mode=mode, client=client, progress=progress, make_processor=processor,
            tables=tables, table_folder=table_folder, strict=strict, require_readable=True, **options,
        )
    log_skipped_chunks(result.skipped_chunks)
    return result, write_outputs(result, outdir)
