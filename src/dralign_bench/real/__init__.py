"""`dralign bench real`: SmolLM2-135M-Instruct with LoRA on real preference data with
structure — domain shift (UltraFeedback → HHH, PandaLM), groups (HHH, PandaLM) and human vs
model responses (summarize-from-feedback batch 18, DoRA with fitted density ratios).

Every held-out accuracy is reported with a 95 % interval beside the "pick the longer response"
baseline and the accuracy on length-matched pairs (:mod:`.score`). Modules: :mod:`.options`
(tasks, profiles), :mod:`.data` (splits), :mod:`.score`, :mod:`.run`, :mod:`.summary`,
:mod:`.report`. The committed run and its report are in docs/real/.
"""

from __future__ import annotations

from .options import PROFILES, TASKS, RealConfig, RealOptions, resolve, smollm2_gguf
from .run import run_real

__all__ = ["PROFILES", "RealConfig", "RealOptions", "TASKS", "resolve", "run_real", "smollm2_gguf"]
