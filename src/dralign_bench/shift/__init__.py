"""`dralign bench shift`: the shift-world benchmark, and the engine of `dralign demo`.

Per scenario (:mod:`.scenarios`): DPO on a β grid (the frontier), each robust method's own
parameter picked on validation seeds and prompts (:mod:`.run`), then every run trained from the
same pretrained world LM (:func:`dralign_bench.world_lm.world_lm`) through `dralign train` on
each test seed, measured with common random numbers (:mod:`.measure`), each claim gated by its
positive control (:mod:`.controls`) and judged by paired tests with Holm's correction against
DPO's upper envelope (:mod:`.claims`, :mod:`.papers`); tables, a frontier plot per claim and the
report (:mod:`.report`). Datasets: :mod:`.data`.
"""

from __future__ import annotations

from .claims import ClaimSpec, Comparison, compare, envelope_at, holm_report, judge, upper_hull, verdict
from .command import run_shift
from .controls import conflict_control, flip_control, learning_control, unpaired_control
from .data import DATASETS, build_dataset, heldout_pairs
from .measure import SeedMetrics, calibration_error, clean_accuracy, own_link_probs
from .scenarios import DEMO_SCENARIO, SCENARIOS, RunSpec, Scenario, ShiftConfig, ShiftOptions, plan, resolve

__all__ = [
    "ClaimSpec",
    "Comparison",
    "DATASETS",
    "DEMO_SCENARIO",
    "SCENARIOS",
    "RunSpec",
    "Scenario",
    "SeedMetrics",
    "ShiftConfig",
    "ShiftOptions",
    "build_dataset",
    "calibration_error",
    "clean_accuracy",
    "compare",
    "conflict_control",
    "envelope_at",
    "flip_control",
    "learning_control",
    "holm_report",
    "heldout_pairs",
    "judge",
    "own_link_probs",
    "plan",
    "resolve",
    "run_shift",
    "unpaired_control",
    "upper_hull",
    "verdict",
]
