"""Merge the results of shift-world jobs run in parallel (disjoint scenarios, same options
otherwise) into one results document, with its plots and report.

    python -m dralign_bench.shift.merge OUT_DIR RESULTS_A.json RESULTS_B.json ... [--note TEXT]

The merged ``seconds`` is the wall time of the parallel jobs (their maximum); each job's own
time and command are kept under ``jobs``. The claims are judged again from the merged runs (the
same code as a single job), so a merged report never mixes two versions of the judging code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

__all__ = ["judge_results", "merge_results"]

_PER_JOB = ("scenarios", "seconds", "command", "files")


def merge_results(parts: list[dict]) -> dict:
    """One results document from jobs of disjoint scenarios; ValueError if their options differ
    in anything but the scenarios."""
    base = parts[0]
    for p in parts[1:]:
        a = {k: v for k, v in base["options"].items() if k not in ("scenarios", "output_dir")}
        b = {k: v for k, v in p["options"].items() if k not in ("scenarios", "output_dir")}
        if a != b:
            diff = sorted(k for k in a if a[k] != b.get(k))
            raise ValueError(f"jobs differ in options {diff}: cannot merge")
    out = {k: v for k, v in base.items() if k not in _PER_JOB}
    out["options"] = {**base["options"], "scenarios": [s for p in parts for s in p["options"]["scenarios"] or []]}
    out["scenarios"] = {k: v for p in parts for k, v in p["scenarios"].items()}
    for key in ("runs", "validation_runs", "selection"):
        out[key] = {k: v for p in parts for k, v in p[key].items()}
    out["density_ratios"] = [r for p in parts for r in p.get("density_ratios", [])]
    out["claims"] = judge_results(out)
    out["seconds"] = max(p["seconds"] for p in parts)
    out["jobs"] = [{"command": p["command"], "scenarios": p["options"]["scenarios"], "seconds": p["seconds"]}
                   for p in parts]
    out["command"] = " & ".join(p["command"] for p in parts)
    return out


def judge_results(results: dict) -> list[dict]:
    """The claims of a results document, judged from its runs, selection and density ratios."""
    from .measure import SeedMetrics
    from .papers import evaluate_claims
    from .scenarios import ShiftOptions, default_choices

    fields = set(ShiftOptions.__dataclass_fields__)
    opts = ShiftOptions(**{k: v for k, v in results["options"].items() if k in fields})
    metrics = {rid: [SeedMetrics(**s) for s in run["seeds"]] for rid, run in results["runs"].items()}
    chosen = default_choices(opts)
    chosen.update({tuple(key.split("/", 1)): rec["chosen"] for key, rec in results["selection"].items()})
    return evaluate_claims(opts, metrics, chosen, results.get("density_ratios", []))


def main(argv: list[str]) -> int:
    from .report import plot_claims, power_summary, write_report

    note = None
    if "--note" in argv:
        i = argv.index("--note")
        note, argv = argv[i + 1], argv[:i] + argv[i + 2:]
    root = Path(argv[0])
    parts = [json.loads(Path(p).read_text()) for p in argv[1:]]
    results = merge_results(parts)
    if note:
        results["note"] = note
    root.mkdir(parents=True, exist_ok=True)
    results["power"] = power_summary(results["claims"])
    results["files"] = {"results": str(root / "results.json"), "plots": plot_claims(results, root)}
    results["files"]["report"] = write_report(results, root / "report.md")
    (root / "results.json").write_text(json.dumps(results, indent=2))
    print(f"merged {len(parts)} jobs into {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
