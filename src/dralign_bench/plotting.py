"""matplotlib for the benchmarks' plots: an optional dependency, the ``bench`` extra."""

from __future__ import annotations

__all__ = ["MissingExtraError", "pyplot", "require_matplotlib"]

from dralign.errors import MissingExtraError

INSTALL_HINT = "pip install 'dralign[bench]'"


def require_matplotlib() -> None:
    """Fail in one line naming the extra when matplotlib is missing — called before a long run
    so that it does not end without its plots."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MissingExtraError(f"the benchmark plots need matplotlib: {INSTALL_HINT}") from None


def pyplot():
    """``matplotlib.pyplot`` on the file-only Agg backend (no display needed)."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
