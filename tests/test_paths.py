"""Outputs are written atomically (never a partial file under the final name), with the permissions of any
new file, and JSON outputs hold no NaN."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from coffea_ad.paths import atomic_output, write_json


def test_an_output_gets_the_permissions_of_a_new_file(tmp_path):
    previous = os.umask(0o022)
    try:
        path = write_json(tmp_path / "summary.json", {"a": 1})
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # readable by the group and the others, as `touch` would


def test_a_failure_inside_the_block_leaves_no_file(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_output(tmp_path / "out.txt") as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_write_json_turns_numpy_into_numbers_and_nan_into_null(tmp_path):
    path = write_json(tmp_path / "r.json", {"z": np.float32(1.5), "bins": np.arange(3), "p": float("nan")})
    assert json.loads(path.read_text()) == {"z": 1.5, "bins": [0, 1, 2], "p": None}
    with pytest.raises(TypeError, match="object is not JSON serializable"):
        write_json(tmp_path / "bad.json", {"x": object()})
    assert not (tmp_path / "bad.json").exists() and not list(tmp_path.glob(".*.tmp"))
