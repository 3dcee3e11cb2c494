"""Progress bars that behave in a terminal and in a log file: one bar per long step.

In a terminal the bar updates in place (tqdm). When standard error is not a terminal (``make demo > log``,
a batch job, CI), the same bar writes a complete line at most every ``log_interval`` seconds and once at
the end, so that a long step leaves a few readable lines instead of thousands of carriage returns.
"""

from __future__ import annotations

import sys
from typing import IO, Any

from tqdm.auto import tqdm

__all__ = ["LOG_INTERVAL", "progress_bar"]

#: Seconds between two lines of a bar written to a log file.
LOG_INTERVAL = 30.0


class _LineWriter:
    """A file-like object for tqdm that turns each in-place refresh into one line."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()
        if line:
            self._stream.write(line + "\n")

    def flush(self) -> None:
        self._stream.flush()


def progress_bar(
    total: int | None,
    description: str,
    *,
    unit: str = "it",
    enabled: bool = True,
    stream: IO[str] | None = None,
    log_interval: float = LOG_INTERVAL,
    **options: Any,
) -> tqdm:
    """A tqdm bar of ``total`` steps labelled ``description``, in place in a terminal, a few lines in a log.

    ``enabled=False`` gives a bar that draws nothing (the calls on it still work). ``options`` go to tqdm
    (e.g. ``unit_scale=True``). Use it as a context manager, or call ``close()``.
    """
    stream = stream if stream is not None else sys.stderr
    interactive = bool(getattr(stream, "isatty", lambda: False)())
    if interactive:
        return tqdm(total=total, desc=description, unit=unit, disable=not enabled, file=stream, leave=True, **options)
    return tqdm(
        total=total,
        desc=description,
        unit=unit,
        disable=not enabled,
        file=_LineWriter(stream),
        mininterval=log_interval,
        maxinterval=log_interval,
        ascii=True,
        ncols=100,
        leave=True,
        **options,
    )
