"""The one exception family of coffea_ad.

Every error raised on bad user input derives from :class:`CoffeaADError`, so that the command line can
print it as one clear line and exit non-zero, and so that library users can catch all of them at once.
Messages name the file, branch, column or parameter at fault.
"""

from __future__ import annotations

__all__ = ["CoffeaADError", "ConfigurationError", "InputFileError"]


class CoffeaADError(Exception):
    """Base class of every error coffea_ad raises on bad input."""


class ConfigurationError(CoffeaADError, ValueError):
    """A parameter, setting or option has a value that cannot be used (the message names it)."""


class InputFileError(CoffeaADError, OSError):
    """A file cannot be read or written (the message names the file)."""
