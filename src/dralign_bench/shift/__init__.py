"""`dralign bench shift`: the shift-world benchmark, and the engine of `dralign demo`.

One run of the benchmark, per seed:

1. **Data.** Two responses per train prompt from the world's generator (the text the base LM
   was pretrained on), labelled by Bradley–Terry at temperature T on a mixture of two gold
   objectives r(α₀) = α₀ r_a + (1−α₀) r_b (``mix-linear``) or r_a^α₀ r_b^(1−α₀)
   (``mix-geometric``). Derived sets: ``sources`` (a fraction of the prompts answered by the
   synthetic generator and labelled by a *judge* whose mixture weight is α_judge instead of α₀;
   the rest human, labelled at α₀ — the target), ``unpaired`` (each mix-linear pair split into
   a desirable and an undesirable completion), ``flip-20``/``flip-40`` (mix-linear with that
   fraction of pairs swapped).
2. **Training.** Every method starts from the same pretrained world LM
   (:func:`dralign_bench.world_lm.world_lm`) with the same data, steps, batch size and learning
   rate, through the public `dralign train` path (:func:`dralign.train.train`).
3. **Evaluation.** Completions sampled (temperature 1) on held-out prompts; gold reward r(α)
   for every α on the grid and the worst case over it; win rate against the start model's
   completions; KL(π‖π_start) estimated from the samples; token entropy, distinct-1/2 and
   length; and, on held-out pairs labelled like the training set (without label noise),
   preference accuracy, ECE and Brier of σ(β·margin).

Across seeds, every mean comes with a 95 % hierarchical-bootstrap interval (resample seeds,
then completions within each seed), so one seed gives an interval over prompts and several
seeds include the training variance. Outputs: a rich table, ``results.json``, ``shift.png``
(gold reward vs α with bands), ``tradeoff.png`` (reward vs diversity) and ``report.md``.

Modules: :mod:`.scenarios` (scenarios, options, plan), :mod:`.data` (datasets),
:mod:`.measure` (one policy on one seed), :mod:`.summary` (intervals, claims), :mod:`.run`
(the runner), :mod:`.report` (tables, plots, report.md).
"""

from __future__ import annotations

from .data import DATASETS, build_dataset, mixture_of
from .measure import SeedEval, evaluate_policy
from .run import run_shift
from .scenarios import (DATASET_OF_METHOD, DEMO_METHODS, SCENARIOS, Scenario, ShiftConfig,
                        ShiftOptions, plan, resolve, runs_of)
from .summary import evaluate_claims, summarize, summarize_run

__all__ = ["DATASETS", "DATASET_OF_METHOD", "DEMO_METHODS", "SCENARIOS", "Scenario", "SeedEval",
           "ShiftConfig", "ShiftOptions", "build_dataset", "evaluate_claims", "evaluate_policy",
           "mixture_of", "plan", "resolve", "run_shift", "runs_of", "summarize", "summarize_run"]
