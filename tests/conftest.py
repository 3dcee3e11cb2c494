"""Shared fixtures: small Pythia8 samples generated once per test session, and the real NanoAOD files."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_NANOAOD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nanoaod"


@pytest.fixture(scope="session")
def shared_nanoaod() -> Path:
    """The folder of real CMS NanoAOD files beside the repository (skips when it is absent)."""
    if not SHARED_NANOAOD.is_dir():
        pytest.skip(f"real NanoAOD files not found at {SHARED_NANOAOD} (../shared is only beside developer checkouts)")
    return SHARED_NANOAOD


@pytest.fixture(scope="session")
def client():
    """A client of one LocalCluster of 2 worker processes, shared by the tests of the session."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as connected:
            yield connected


@pytest.fixture(scope="session")
def generated_sample(tmp_path_factory):
    """``generated_sample(process, n_events, seed=1, **settings)`` -> path of a cached generated file."""
    from coffea_ad.generate import generate

    folder = tmp_path_factory.mktemp("generated")
    cache: dict[tuple, Path] = {}

    def make(process: str, n_events: int, seed: int = 1, **settings) -> Path:
        key = (process, n_events, seed, tuple(sorted(settings.items())))
        if key not in cache:
            path = folder / f"{process}_{n_events}_{seed}_{len(cache)}.root"
            # chunks of 500 (the default is 2000) so that the small samples of the tests use both cores
            generate(process, n_events, path, seed=seed, settings=settings, workers=2, chunk_size=500, progress=False)
            cache[key] = path
        return cache[key]

    return make


@pytest.fixture(scope="session")
def open_events():
    """``open_events(path)``: a NanoAOD file opened eagerly with coffea's NanoAODSchema, as an analyst would."""
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    def open_eager(path: Path):
        return NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=NanoAODSchema, mode="eager").events()

    return open_eager


@pytest.fixture(autouse=True)
def builtin_features_only():
    """Every test ends with the features it started with: the user features a test defines (``define_feature``,
    ``--feature-module``) do not leak into the next one."""
    from coffea_ad.features import FEATURE_SETS, FEATURES

    before, user = dict(FEATURES), FEATURE_SETS["user"]
    yield
    FEATURES.clear()
    FEATURES.update(before)
    FEATURE_SETS["user"] = user
