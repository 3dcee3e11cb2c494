"""SIGTERM (what batch systems send) in the middle of every long command: exit status 143, no temporary file,
no empty output folder and no process left behind.

Each test starts a real ``coffea-ad`` process (``python -m coffea_ad.cli`` from this checkout), waits until it
is working (a worker computing a feature, a checkpoint written, a progress line, the generator's temporary
file and pool), sends SIGTERM to that process only (not to its group: the workers must be stopped by it),
and then checks what it left. ``generate`` is interrupted by SIGINT (exit 130) too, the same way out.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil
import pytest

from synthetic_tables import dijet_table

REPO = Path(__file__).resolve().parents[1]
#: How long a command may take to reach the point where the test interrupts it, and to exit afterwards.
_START_TIMEOUT = 300.0
_EXIT_TIMEOUT = 120.0
#: Seconds the processes of an interrupted command get to be gone after it exited.
_GRACE = 5.0

#: A user feature that, on real events (not dask's typetracer), writes its worker's pid to a marker file and
#: then stays busy: the command is interrupted while a worker computes it.
SLOW_FEATURE = '''
    import os
    import pathlib
    import time

    import awkward as ak

    from coffea_ad.features import define_feature

    MARKER = pathlib.Path(os.environ["COFFEA_AD_TEST_MARKER"])


    @define_feature(branches=("FatJet_pt",), axis=("regular", 10, 0.0, 1.0))
    def busy_feature(events):
        """Zero for every event, after a long pause on real events."""
        column = ak.num(events.FatJet, axis=1) * 0.0
        if ak.backend(column) != "typetracer":
            MARKER.write_text(str(os.getpid()))
            time.sleep(120)
        return column
'''


class Interrupted:
    """What an interrupted command left: exit status, standard error, and every process it started."""

    def __init__(self, returncode: int, stderr: str, descendants: list[psutil.Process]) -> None:
        self.returncode = returncode
        self.stderr = stderr
        self.descendants = descendants

    def survivors(self) -> list[str]:
        """The processes the command started that still run (zombies are dead, only not yet reaped)."""
        _, alive = psutil.wait_procs(self.descendants, timeout=_GRACE)
        survivors = []
        for process in alive:
            try:
                if process.status() != psutil.STATUS_ZOMBIE:
                    survivors.append(f"{process.pid}: {' '.join(process.cmdline())[:120]}")
            except psutil.NoSuchProcess:
                continue
        return survivors


def terminate_when(
    argv: Sequence[str],
    ready: Callable[[list[str], psutil.Process], bool],
    env: dict[str, str] | None = None,
    signum: int = signal.SIGTERM,
) -> Interrupted:
    """Run ``coffea-ad argv``; once ``ready(stderr lines so far, the process)`` holds, send ``signum`` to it and
    wait for its exit."""
    command = subprocess.Popen(
        [sys.executable, "-m", "coffea_ad.cli", *argv],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(command.stderr), daemon=True)
    reader.start()
    root = psutil.Process(command.pid)
    seen: dict[int, psutil.Process] = {}

    def collect() -> None:
        try:
            for child in root.children(recursive=True):
                seen.setdefault(child.pid, child)
        except psutil.NoSuchProcess:
            pass

    deadline = time.monotonic() + _START_TIMEOUT
    try:
        while not ready(lines, root):
            collect()
            if command.poll() is not None:
                reader.join(5)
                pytest.fail(f"coffea-ad {argv[0]} ended ({command.returncode}) before it was interrupted:\n"
                            + "".join(lines[-30:]))
            if time.monotonic() > deadline:
                pytest.fail(f"coffea-ad {argv[0]} did not start working in {_START_TIMEOUT:.0f} s:\n"
                            + "".join(lines[-30:]))
            time.sleep(0.2)
        collect()
        command.send_signal(signum)
        returncode = command.wait(_EXIT_TIMEOUT)
    finally:
        if command.poll() is None:
            command.kill()
            command.wait()
    reader.join(5)
    return Interrupted(returncode, "".join(lines), list(seen.values()))


def assert_clean(result: Interrupted, command: str, area: Path, signum: int = signal.SIGTERM) -> None:
    """Exit 143 (SIGTERM) or 130 (SIGINT) with one line saying so; no process, temporary file or empty folder
    left under ``area``."""
    assert result.returncode == 128 + signum, result.stderr[-3000:]
    said = "terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted"
    assert f"coffea-ad {command}: {said}" in result.stderr
    assert result.survivors() == []
    left = sorted(area.rglob("*")) if area.exists() else []
    assert [path for path in left if path.name.startswith(".") or path.suffix == ".tmp"] == []
    assert [path for path in left if path.is_dir() and not any(path.iterdir())] == []


def busy_feature_module(folder: Path) -> tuple[Path, dict[str, str], Callable[..., bool]]:
    """The module of :data:`SLOW_FEATURE` in ``folder``, its environment, and the test of a worker in it."""
    module = folder / "busy_feature.py"
    module.write_text(textwrap.dedent(SLOW_FEATURE))
    marker = folder / "marker"
    return module, {"COFFEA_AD_TEST_MARKER": str(marker)}, lambda lines, process: marker.exists()


@pytest.fixture(scope="module")
def fileset(generated_sample, tmp_path_factory) -> Path:
    """A fileset of one small generated sample."""
    path = tmp_path_factory.mktemp("interruption") / "fileset.json"
    sample = generated_sample("qcd_dijet", 200, seed=5)
    path.write_text(json.dumps({"qcd": {"files": {str(sample): "Events"}}}))
    return path


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_generate_stops_its_workers_and_leaves_no_temporary_file(tmp_path, signum):
    pytest.importorskip("pythia8mc")
    output = tmp_path / "out"
    output.mkdir()

    def generating(lines: list[str], process: psutil.Process) -> bool:
        # the temporary output is open and both workers are generating their (long) chunks
        workers = [child for child in process.children() if "spawn_main" in " ".join(child.cmdline())]
        return bool(list(output.glob(".*.tmp"))) and len(workers) >= 2

    result = terminate_when(
        ["generate", "qcd_dijet", "-n", "4000", "-j", "2", "--chunk-size", "2000", "-o", str(output / "qcd.root"),
         "--no-progress"],
        generating,
        signum=signum,
    )
    assert_clean(result, "generate", output, signum)
    assert len(result.descendants) >= 3  # the two workers and the resource tracker were seen, and are gone
    assert list(output.iterdir()) == []


def test_features_stops_the_cluster_and_leaves_no_folder(fileset, tmp_path):
    module, env, working = busy_feature_module(tmp_path)
    output = tmp_path / "outputs" / "feat"
    result = terminate_when(
        ["features", str(fileset), "-o", str(output), "-j", "1", "--no-progress", "--feature-module", str(module),
         "--features", "mjj,busy_feature"],
        working,
        env,
    )
    assert_clean(result, "features", tmp_path)
    assert len(result.descendants) >= 2  # the worker process (and the resource tracker) were seen, and are gone
    assert not (tmp_path / "outputs").exists()


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A small autoencoder on features the generated sample has."""
    pytest.importorskip("torch")
    from coffea_ad.workflow.train import train_to_folder

    folder = tmp_path_factory.mktemp("interruption_model")
    train_to_folder("autoencoder", dijet_table(600, seed=3), folder / "model", features=["mj_min", "delta_mj"],
                    training={"epochs": 1}, progress=False)
    return folder / "model" / "model.onnx"


def test_score_stops_the_cluster_and_leaves_no_folder(fileset, model, tmp_path):
    module, env, working = busy_feature_module(tmp_path)
    output = tmp_path / "scored"
    result = terminate_when(
        ["score", str(fileset), "--model", str(model), "-o", str(output), "-j", "1", "--no-progress",
         "--feature-module", str(module), "--features", "busy_feature", "--efficiency", "0.1"],
        working,
        env,
    )
    assert_clean(result, "score", tmp_path)
    assert not output.exists()


def test_train_leaves_its_checkpoint_and_no_model_folder(tmp_path):
    pytest.importorskip("torch")
    table = tmp_path / "table.parquet"
    dijet_table(20_000, seed=4).to_parquet(table)
    checkpoints = tmp_path / "checkpoints"
    result = terminate_when(
        ["train", "autoencoder", str(table), "-o", str(tmp_path / "models" / "ae"), "--features", "mj_min,delta_mj",
         "--epochs", "1000", "--checkpoint-dir", str(checkpoints), "--no-progress", "--threads", "1"],
        lambda lines, process: (checkpoints / "autoencoder.pt").exists(),
    )
    assert_clean(result, "train", tmp_path)
    assert not (tmp_path / "models").exists()
    assert (checkpoints / "autoencoder.pt").is_file()  # what a resumed run starts from stays


def test_search_stops_the_cluster_and_leaves_no_folder(tmp_path):
    pytest.importorskip("torch")
    table = tmp_path / "table.parquet"
    dijet_table(4000, n_signal=0, seed=6).to_parquet(table)
    output = tmp_path / "search"
    result = terminate_when(
        ["search", str(table), "-o", str(output), "-j", "1", "--method", "cwola", "--windows", "3300:3700",
         "--epochs", "1000"],
        lambda lines, process: any("search training" in line for line in lines),  # the models are on the workers
    )
    assert_clean(result, "search", tmp_path)
    assert len(result.descendants) >= 1
    assert not output.exists()
