"""Where coffea_ad keeps what it generates when the user does not say.

Generated samples, trained models and reports go to folders the user chooses; the defaults live in a cache
folder outside the package and outside the repository: ``$COFFEA_AD_CACHE`` if set, else
``$XDG_CACHE_HOME/coffea_ad``, else ``~/.cache/coffea_ad``.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = ["cache_dir", "atomic_output", "write_json"]


def cache_dir() -> Path:
    """Return (and create) the default folder for generated samples, models and reports."""
    if "COFFEA_AD_CACHE" in os.environ:
        path = Path(os.environ["COFFEA_AD_CACHE"])
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        path = Path(base) / "coffea_ad"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds.

    A failure inside the block (or an interrupt) removes the temporary file, so that no partial output
    is ever left under the final name.
    """
    from coffea_ad.errors import InputFileError

    final = Path(path)
    folder = final.parent if str(final.parent) else Path(".")
    if not folder.is_dir():
        raise InputFileError(f"cannot write {final}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise InputFileError(f"cannot write {final}: folder {folder} is not writable")
    handle, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=folder)
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates the file readable by its owner only; the output gets the permissions of any new file
        tmp.chmod(0o666 & ~_umask())
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _json_ready(content: Any) -> Any:
    """``content`` with numpy scalars and arrays as numbers and lists, paths as strings, and NaN or infinity
    as ``None`` (JSON has neither); anything else that JSON cannot hold is refused by name."""
    import math

    import numpy as np

    if isinstance(content, Mapping):
        return {key: _json_ready(value) for key, value in content.items()}
    if isinstance(content, (list, tuple, np.ndarray)):
        return [_json_ready(value) for value in content]
    if isinstance(content, np.generic):
        content = content.item()
    if isinstance(content, float):
        return content if math.isfinite(content) else None
    if isinstance(content, os.PathLike):
        return os.fspath(content)
    if content is None or isinstance(content, (str, int, bool)):
        return content
    raise TypeError(f"{type(content).__name__} is not JSON serializable")


def write_json(path: str | os.PathLike, content: Any, *, sort_keys: bool = False) -> Path:
    """Write ``content`` as indented JSON to ``path`` atomically and return the path.

    numpy scalars and arrays become numbers and lists, NaN and infinity become ``null`` (strict JSON, which
    every reader accepts; a missing number is never written as a made-up one).
    """
    text = json.dumps(_json_ready(content), indent=2, sort_keys=sort_keys, allow_nan=False)
    final = Path(path)
    with atomic_output(final) as tmp:
        tmp.write_text(text + "\n")
    return final
