"""dralign: distributionally robust and distributional preference alignment for Hugging Face
causal LMs (WDPO, KLDPO, f-DPO, DoRA, AOT and the DPO family) on one composable core."""

from .objectives import Objective, ObjectiveOutput, PRESETS

__version__ = "0.1.0"
__all__ = ["Objective", "ObjectiveOutput", "PRESETS", "__version__"]
