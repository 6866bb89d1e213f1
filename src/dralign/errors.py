"""One family of errors: everything dralign refuses is a `DralignError`, which the command line
prints as one line (``dralign CMD: error: ...``) with exit status 2, never a traceback.

Each subclass also derives from the builtin a Python caller would expect (``ValueError`` for a
bad value, ``RuntimeError`` for a state that cannot go on, ``ImportError`` for a missing extra),
so ``except ValueError`` in user code keeps working.
"""

from __future__ import annotations

__all__ = [
    "BadInputError",
    "BadOptionError",
    "BadRunFolderError",
    "DralignError",
    "MissingExtraError",
    "RunFailedError",
    "UnsupportedError",
]


class DralignError(Exception):
    """Anything dralign refuses or cannot do; the message says what and, where it can, what to do."""


class BadInputError(DralignError, ValueError):
    """Bad input data: the message names the file, row and field."""


class BadOptionError(DralignError, ValueError):
    """A bad option value, naming the option and where it came from (flag, YAML key)."""


class UnsupportedError(DralignError, ValueError):
    """A combination of options or inputs that dralign does not support, and why."""


class BadRunFolderError(DralignError, RuntimeError):
    """An output folder, checkpoint or cache that cannot be used as asked."""


class RunFailedError(DralignError, RuntimeError):
    """Work that started and cannot go on (a diverged run, a failed worker)."""


class MissingExtraError(DralignError, ImportError):
    """An optional dependency is missing; the message names the extra that installs it."""
