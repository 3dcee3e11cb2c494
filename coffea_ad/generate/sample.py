"""Running Pythia8 in parallel, chunk by chunk, into one NanoAOD file.

The events are cut into chunks of ``chunk_size``; chunk ``k`` has its own Pythia instance, seeded from
``(seed, k)``, and its own detector random stream, so the file depends on the seed and the chunk size but
not on the number of worker processes. Chunks come back in order and are streamed into the output file,
which is written under a temporary name and renamed only when complete.

A chunk pays for one Pythia initialisation (about 0.3 s, half of it the multiparton-interaction tables):
1.5 ms per event in chunks of 200, 0.15 ms in the default chunks of 2000. Within a chunk, events are
generated and reconstructed ``EVENTS_PER_BATCH`` at a time, which bounds a worker's memory (Pythia's full
event record is about 200 MB per 1000 QCD events).
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from coffea_ad.errors import ConfigurationError, InputFileError
from coffea_ad.generate.detector import DetectorCard
from coffea_ad.generate.processes import get_process
from coffea_ad.paths import atomic_output
from coffea_ad.progress import progress_bar

__all__ = ["GenerationSummary", "cached_sample", "generate"]

log = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 2000
#: Events generated (``nextBatch``) and reconstructed at a time within a chunk.
EVENTS_PER_BATCH = 1000
PB_PER_MB = 1.0e9


@dataclasses.dataclass(frozen=True)
class _Chunk:
    index: int
    first_event: int
    n_events: int
    seed: int
    settings: tuple[str, ...]
    card: DetectorCard


@dataclasses.dataclass(frozen=True)
class GenerationSummary:
    """What :func:`generate` made: where, how many events, and the numbers needed to normalise it."""

    process: str
    output: Path
    n_events: int
    seed: int
    parameters: dict[str, float]
    cross_section_pb: float
    cross_section_error_pb: float
    n_tried: int
    n_accepted: int
    seconds_total: float
    #: CPU seconds summed over workers: inside Pythia's event generation, and in reconstruction
    #: (extraction, clustering, smearing, conversion) and writing.
    seconds_pythia: float
    seconds_reconstruction: float

    def describe(self) -> str:
        """A few lines for a person: the file, the events, the cross section."""
        parameters = ", ".join(f"{key}={value:g}" for key, value in self.parameters.items())
        return (
            f"{self.output}: {self.n_events} {self.process} events ({parameters}), seed {self.seed}\n"
            f"  cross section {self.cross_section_pb:.4g} +- {self.cross_section_error_pb:.2g} pb "
            f"({self.n_accepted} accepted of {self.n_tried} tried); "
            f"{self.seconds_total:.1f} s ({self.n_events / max(self.seconds_total, 1e-9):.0f} events/s)"
        )


def _pythia_seed(seed: int, index: int) -> int:
    # Pythia accepts seeds in [1, 900000000].
    return int(np.random.SeedSequence([seed, index, 0]).generate_state(1)[0]) % 900_000_000 + 1


def _new_pythia(settings: tuple[str, ...]):
    import pythia8mc

    pythia = pythia8mc.Pythia("", False)
    for line in settings:
        if not pythia.readString(line):
            raise ConfigurationError(f"Pythia rejected the setting {line!r}")
    return pythia


def _generate_chunk(chunk: _Chunk) -> tuple[list[dict], dict[str, float]]:
    """Generate one chunk: its NanoAOD arrays, one dict per batch of events, and its cross-section statistics."""
    from coffea_ad.generate.nanoaod import to_nanoaod
    from coffea_ad.generate.reconstruction import ParticleProperties, reconstruct, silence_fastjet_banner

    pythia_seconds = reconstruction_seconds = 0.0
    batches = []
    with silence_fastjet_banner():
        seed = _pythia_seed(chunk.seed, chunk.index)
        pythia = _new_pythia((*chunk.settings, "Random:setSeed = on", f"Random:seed = {seed}"))
        if not pythia.init():
            raise ConfigurationError(f"Pythia failed to initialise with settings {list(chunk.settings)}")
        rng = np.random.default_rng(np.random.SeedSequence([chunk.seed, chunk.index, 1]))
        properties = ParticleProperties(pythia.particleData)
        for first in range(0, chunk.n_events, EVENTS_PER_BATCH):
            n_events = min(EVENTS_PER_BATCH, chunk.n_events - first)
            start = time.process_time()
            events = pythia.nextBatch(n_events, "skip")
            pythia_seconds += time.process_time() - start
            if len(events) != n_events:
                raise RuntimeError(f"Pythia returned {len(events)} events of the {n_events} asked for")
            start = time.process_time()
            collections = reconstruct(events, chunk.card, rng, properties)
            del events
            event_numbers = np.arange(chunk.first_event + first + 1, chunk.first_event + first + n_events + 1)
            batches.append(to_nanoaod(collections, event_numbers, luminosity_block=chunk.index + 1))
            reconstruction_seconds += time.process_time() - start
    info = pythia.infoPython()
    stats = {
        "sigma_pb": info.sigmaGen() * PB_PER_MB,
        "sigma_error_pb": info.sigmaErr() * PB_PER_MB,
        "n_tried": info.nTried(),
        "n_accepted": info.nAccepted(),
        "seconds_pythia": pythia_seconds,
        "seconds_reconstruction": reconstruction_seconds,
    }
    return batches, stats


def _split_settings(process_name: str, settings: Mapping[str, str | float]):
    process = get_process(process_name)
    detector_fields = {field.name for field in dataclasses.fields(DetectorCard)}
    pythia_lines = [f"{key} = {value}" for key, value in settings.items() if ":" in key]
    detector = {key: value for key, value in settings.items() if key in detector_fields}
    physics = {key: value for key, value in settings.items() if ":" not in key and key not in detector_fields}
    unknown = sorted(set(physics) - set(process.parameters))
    if unknown:
        raise ConfigurationError(
            f"unknown setting {', '.join(unknown)} for process {process_name}; its parameters are "
            f"{', '.join(process.parameters) or '(none)'}, detector parameters are listed by "
            f"'coffea-ad processes', and raw Pythia settings contain a colon (e.g. TimeShower:alphaSvalue=0.12)"
        )
    parameters = process.resolve(physics)
    return process, parameters, DetectorCard.from_settings(detector), pythia_lines


def _check_output(output: Path) -> None:
    if output.is_dir():
        raise InputFileError(f"output {output} is a folder; give a file name such as {output / 'events.root'}")
    folder = output.parent
    if not folder.is_dir():
        raise InputFileError(f"cannot write {output}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise InputFileError(f"cannot write {output}: folder {folder} is not writable")


def _combined_cross_section(stats: list[dict[str, float]]) -> tuple[float, float]:
    """Average the chunks' cross-section estimates, weighted by the events each one tried."""
    weights = np.array([s["n_tried"] for s in stats], dtype=float)
    sigma = np.array([s["sigma_pb"] for s in stats])
    error = np.array([s["sigma_error_pb"] for s in stats])
    total = weights.sum()
    return float(np.dot(weights, sigma) / total), float(np.sqrt(np.dot(weights**2, error**2)) / total)


def generate(
    process: str,
    n_events: int,
    output: str | os.PathLike,
    *,
    seed: int = 0,
    settings: Mapping[str, str | float] | None = None,
    workers: int | None = None,
    chunk_size: int | None = None,
    progress: bool = True,
) -> GenerationSummary:
    """Generate ``n_events`` events of ``process`` with Pythia8 and write them as a NanoAOD ROOT file.

    Arguments:
        process: one of :data:`coffea_ad.generate.PROCESSES` (``qcd_dijet``, ``wprime_xy``, ...).
        n_events: number of events to write (> 0).
        output: the ROOT file to create; it appears only once complete.
        seed: the random seed; the same seed (and chunk size) gives the same file.
        settings: ``{name: value}`` overrides: process parameters (``mass_wprime``), detector-card fields
            (``fatjet_radius``, ``jet_energy_scale``) or raw Pythia settings (any name with a colon).
        workers: worker processes, one Pythia each (default: all cores; 1 runs in this process).
        chunk_size: events per independently seeded chunk (default 2000).
        progress: show a progress bar on standard error.

    Returns:
        A :class:`GenerationSummary` with the cross section and the number of events tried.

    Example:
        >>> from coffea_ad.generate import generate
        >>> generate("wprime_xy", 1000, "wprime.root", seed=7, settings={"mass_wprime": 3000})  # doctest: +SKIP
    """
    from coffea_ad.generate.nanoaod import NanoAODWriter

    settings = dict(settings or {})
    if not isinstance(n_events, (int, np.integer)) or n_events <= 0:
        raise ConfigurationError(f"number of events must be a positive integer, got {n_events!r}")
    if seed < 0:
        raise ConfigurationError(f"seed must be >= 0, got {seed}")
    chunk_size = DEFAULT_CHUNK_SIZE if chunk_size is None else chunk_size
    if chunk_size <= 0:
        raise ConfigurationError(f"chunk size must be positive, got {chunk_size}")
    workers = os.cpu_count() or 1 if workers is None else workers
    if workers <= 0:
        raise ConfigurationError(f"number of workers must be positive, got {workers}")
    output = Path(output)
    _check_output(output)
    process_spec, parameters, card, pythia_lines = _split_settings(process, settings)
    pythia_settings = (*process_spec.pythia_settings(parameters), *pythia_lines)
    _new_pythia(tuple(pythia_lines))  # a misspelt raw setting fails here, before any work starts

    chunks = [
        _Chunk(index, first, min(chunk_size, n_events - first), seed, pythia_settings, card)
        for index, first in enumerate(range(0, n_events, chunk_size))
    ]
    workers = min(workers, len(chunks))
    log.info("generating %d %s events in %d chunks on %d workers", n_events, process, len(chunks), workers)

    start = time.perf_counter()
    stats: list[dict[str, float]] = []
    bar = progress_bar(n_events, f"generate {process}", unit="event", enabled=progress)
    with atomic_output(output) as temporary, NanoAODWriter(temporary) as writer, bar:
        for batches, chunk_stats in _run_chunks(chunks, workers):
            for arrays in batches:
                writer.extend(arrays)
                bar.update(len(arrays["event"]))
            stats.append(chunk_stats)
        cross_section, cross_section_error = _combined_cross_section(stats)
        n_tried = int(sum(s["n_tried"] for s in stats))
        n_accepted = int(sum(s["n_accepted"] for s in stats))
        writer.finish(
            {
                "cross_section_pb": cross_section,
                "cross_section_error_pb": cross_section_error,
                "n_tried": n_tried,
                "n_accepted": n_accepted,
                "n_events": writer.n_events,
                "seed": seed,
            },
            _settings_record(process, parameters, card, pythia_lines, seed, chunk_size, n_events),
        )
    return GenerationSummary(
        process=process,
        output=output,
        n_events=n_events,
        seed=seed,
        parameters=parameters,
        cross_section_pb=cross_section,
        cross_section_error_pb=cross_section_error,
        n_tried=n_tried,
        n_accepted=n_accepted,
        seconds_total=time.perf_counter() - start,
        seconds_pythia=float(sum(s["seconds_pythia"] for s in stats)),
        seconds_reconstruction=float(sum(s["seconds_reconstruction"] for s in stats)),
    )


def _matches(metadata: Mapping, process: str, n_events: int, seed: int, settings: Mapping[str, str | float]) -> bool:
    recorded = metadata["settings"]
    if (metadata["n_events"], recorded["process"], recorded["seed"]) != (n_events, process, seed):
        return False
    for name, value in settings.items():
        if ":" in name:
            if not any(line.split("=")[0].strip() == name for line in recorded["pythia_settings"]):
                return False
        elif float(recorded["detector"].get(name, recorded["parameters"].get(name, float("nan")))) != float(value):
            return False
    return True


def cached_sample(
    folder: str | os.PathLike,
    process: str,
    n_events: int,
    *,
    seed: int = 0,
    settings: Mapping[str, str | float] | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """The path of a generated sample in ``folder``, generated by :func:`generate` only if it is not there yet.

    The file is named ``{process}_{n_events}_seed{seed}`` plus ``_{name}{value}`` for each setting, e.g.
    ``wprime_xy_20000_seed3_fatjet_radius1.0.root``. A file of that name is reused only if its metadata
    records the same process, number of events, seed and settings; otherwise it is generated again.
    """
    from coffea_ad.generate.nanoaod import read_sample_metadata

    settings = dict(settings or {})
    suffix = "".join(f"_{name}{value}" for name, value in sorted(settings.items())).replace(":", "-")
    path = Path(folder) / f"{process}_{n_events}_seed{seed}{suffix}.root"
    if path.exists():
        try:
            if _matches(read_sample_metadata(path), process, n_events, seed, settings):
                log.info("reusing %s", path)
                return path
            log.warning("regenerating %s: its metadata records other settings", path)
        except InputFileError:
            log.warning("regenerating %s: it is not a complete coffea_ad sample", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    generate(process, n_events, path, seed=seed, settings=settings, workers=workers, progress=progress)
    return path


def _exit_with_parent(parent: int) -> None:
    """Worker initializer: end this worker once the process that started it is gone.

    A generation killed with SIGKILL (or with SIGTERM in a process that does not turn it into an exception, as
    ``coffea-ad`` does) gets no chance to stop its pool; without this its workers would go on generating, as
    orphans, until their chunks run out.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _run_chunks(chunks: list[_Chunk], workers: int) -> Iterator[tuple[list[dict], dict[str, float]]]:
    if workers == 1:
        yield from map(_generate_chunk, chunks)
        return
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_exit_with_parent, initargs=(os.getpid(),)
    )
    try:
        yield from pool.map(_generate_chunk, chunks)
    except BaseException:
        # An error, an interrupt (Ctrl-C, or SIGTERM through the command line), or the caller closing this
        # generator: stop the workers now rather than let them finish their chunks for nobody.
        _terminate_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _terminate_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel the pending chunks of ``pool``, terminate its worker processes and wait until they are gone."""
    # ProcessPoolExecutor has no public way to stop a running task before Python 3.14 (terminate_workers).
    processes = list((pool._processes or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join()


def _settings_record(process, parameters, card, pythia_lines, seed, chunk_size, n_events) -> dict[str, object]:
    from importlib.metadata import version

    from coffea_ad import __version__

    return {
        "process": process,
        "parameters": parameters,
        "detector": dataclasses.asdict(card),
        "pythia_settings": list(pythia_lines),
        "seed": seed,
        "chunk_size": chunk_size,
        "n_events": n_events,
        "versions": {"coffea_ad": __version__, "pythia8mc": version("pythia8mc"), "fastjet": version("fastjet")},
    }
