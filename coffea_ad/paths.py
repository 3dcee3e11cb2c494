"""Where coffea_ad keeps what it generates when the user does not say, and how every output is written.

Generated samples, trained models and reports go to folders the user chooses; the defaults live in a cache
folder outside the package and outside the repository: ``$COFFEA_AD_CACHE`` if set, else
``$XDG_CACHE_HOME/coffea_ad``, else ``~/.cache/coffea_ad``.

Every output file is written under a temporary name and renamed when complete (:func:`atomic_output`,
:func:`write_json`); an output folder is checked before the work starts (:func:`check_output_folder`), and a
run that fails or is interrupted leaves no empty output folder (:func:`output_folder`,
:func:`cleanup_new_folder`).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import tempfile
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = ["cache_dir", "atomic_output", "check_output_folder", "cleanup_new_folder", "output_folder", "write_json"]


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


def _can_write(folder: Path) -> bool:
    """Whether a file can be created in the existing ``folder`` (tried, not guessed from the mode bits, which
    neither a read-only file system nor root's rights follow)."""
    try:
        handle, name = tempfile.mkstemp(prefix=".coffea_ad-write-test.", dir=folder)
    except OSError:
        return False
    os.close(handle)
    os.unlink(name)
    return True


def check_output_folder(path: str | os.PathLike, option: str = "-o/--output") -> Path:
    """Refuse, before any work starts, an output folder that cannot be written or created; return its path.

    Refused: a path that is a file, an existing folder in which no file can be created, and a missing folder
    whose nearest existing ancestor is a file or a folder in which nothing can be created. Nothing is created.
    """
    from coffea_ad.errors import InputFileError

    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise InputFileError(f"cannot write into {folder} ({option}): it is a file, not a folder")
    if folder.is_dir():
        if not _can_write(folder):
            raise InputFileError(f"cannot write into {folder} ({option}): the folder is not writable")
        return folder
    ancestor = next(parent for parent in folder.absolute().parents if parent.exists())
    if not ancestor.is_dir():
        raise InputFileError(f"cannot create {folder} ({option}): {ancestor} is a file, not a folder")
    if not _can_write(ancestor):
        raise InputFileError(f"cannot create {folder} ({option}): {ancestor} is not writable")
    return folder


@contextlib.contextmanager
def cleanup_new_folder(path: str | os.PathLike, written: Collection[str] = ()) -> Iterator[Path]:
    """Yield ``path``; if the block fails (an error or an interrupt) and ``path`` did not exist before it, remove
    what the block left there: the files named in ``written`` (names inside the folder, which the caller may add
    to as it writes them), then every empty folder at or under ``path``, and the parents the block created if
    they are empty.

    A folder that existed before is left as it was, and no file that is not in ``written`` is removed (a
    checkpoint folder kept inside the output for a resumed run, say, stays with its folder): a failed run leaves
    no empty output folder behind, and nothing of anyone else's is lost.
    """
    folder = Path(path)
    created = list(itertools.takewhile(lambda parent: not parent.exists(), [folder, *folder.parents]))
    try:
        yield folder
    except BaseException:
        if created:
            for name in written:
                (folder / name).unlink(missing_ok=True)
            for parent in [*(Path(root) for root, _, _ in os.walk(folder, topdown=False)), *created[1:]]:
                with contextlib.suppress(OSError):  # not empty: what is in it stays, and so does the folder
                    parent.rmdir()
        raise


@contextlib.contextmanager
def output_folder(
    path: str | os.PathLike, written: Collection[str] = (), option: str = "-o/--output"
) -> Iterator[Path]:
    """Create the folder ``path`` (and its missing parents) for the outputs the block writes, and yield it.

    :func:`check_output_folder` runs first; if the block fails in a folder this call created,
    :func:`cleanup_new_folder` removes the files of ``written`` and the folders left empty.
    """
    folder = check_output_folder(path, option)
    with cleanup_new_folder(folder, written):
        folder.mkdir(parents=True, exist_ok=True)
        yield folder


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
