"""dralign: distributionally robust and distributional preference alignment for Hugging Face
causal LMs (WDPO, KLDPO, f-DPO, DoRA, AOT and the DPO family) on one composable core."""

__version__ = "0.1.0"
__all__ = ["Objective", "ObjectiveOutput", "PRESETS", "__version__", "diagnose"]


def __getattr__(name: str):
    # imported on first use, so that `import dralign.cli` (and `dralign --help`) needs no torch
    if name in ("Objective", "ObjectiveOutput", "PRESETS"):
        from . import objectives

        return getattr(objectives, name)
    if name == "diagnose":  # `dralign.diagnose(data=...)`: see dralign.diagnosis
        from .diagnosis import diagnose

        return diagnose
    raise AttributeError(f"module 'dralign' has no attribute {name!r}")
