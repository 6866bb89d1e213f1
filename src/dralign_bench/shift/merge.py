"""Merge the results of shift-world jobs run in parallel (disjoint scenarios, same commit and
options otherwise) into one results document, with its plots and report.

    python -m dralign_bench.shift.merge OUT_DIR RESULTS_A.json RESULTS_B.json ... [--note TEXT] [--unshown TEXT]...

`dralign bench shift --jobs N` does this itself; the module serves jobs run apart. Parts made
at different commits, with a different dirty state, another world LM or different options are
refused (:func:`.provenance.check_parts`, one line naming the difference): a part is never
edited by hand. The merged ``seconds`` is the parallel jobs' span (first start to last end);
each job's own time and command are kept under ``jobs``. The claims are judged again from the
merged runs (the same code as a single job), Holm over the merged report as one family.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

from .provenance import check_parts

__all__ = ["judge_results", "merge_results"]

_PER_JOB = ("scenarios", "seconds", "command", "files", "power", "provenance")


def _union(parts: list[dict], key: str) -> dict:
    return {k: v for p in parts for k, v in (p.get(key) or {}).items()}


def merged_provenance(parts: list[dict]) -> dict:
    """The parts' shared commit, dirty state and versions, from the first start to the last end."""
    provs = [p["provenance"] for p in parts]
    started, finished = min(q["started"] for q in provs), max(q["finished"] for q in provs)
    span = (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()
    return {**provs[0], "started": started, "finished": finished, "wall_seconds": span}


def merge_results(
    parts: list[dict], command: str | None = None, note: str | None = None, unshown: list[str] = ()
) -> dict:
    """One results document from jobs of disjoint scenarios; BadInputError (one line) if they
    cannot form one report (see :func:`.provenance.check_parts`)."""
    check_parts(parts)
    base = parts[0]
    out = {k: v for k, v in base.items() if k not in _PER_JOB}
    notes = [p["options"].get("note") for p in parts] + [note]
    out["options"] = {
        **base["options"],
        "scenarios": [s for p in parts for s in p["options"]["scenarios"] or []],
        "note": " ".join(dict.fromkeys(n for n in notes if n)) or None,
        "unshown_runs": list(
            dict.fromkeys([u for p in parts for u in p["options"].get("unshown_runs", [])] + list(unshown))
        ),
    }
    for key in ("scenarios", "runs", "validation_runs", "selection", "maps", "seen", "regret"):
        out[key] = _union(parts, key)
    out["density_ratios"] = [r for p in parts for r in p.get("density_ratios", [])]
    out["claims"] = judge_results(out)
    out["provenance"] = merged_provenance(parts)
    out["seconds"] = out["provenance"]["wall_seconds"]
    out["jobs"] = [
        {
            "command": p["command"],
            "scenarios": p["options"]["scenarios"],
            "seconds": p["seconds"],
            "started": p["provenance"]["started"],
            "finished": p["provenance"]["finished"],
        }
        for p in parts
    ]
    out["command"] = command or " & ".join(p["command"] for p in parts)
    return out


def judge_results(results: dict) -> list[dict]:
    """The claims of a results document, judged from its runs, selection, density ratios and
    completions per step (Holm over all of them as one family)."""
    from .claims import holm_report
    from .measure import SeedMetrics
    from .papers import evaluate_claims
    from .scenarios import ShiftOptions, default_choices

    fields = set(ShiftOptions.__dataclass_fields__)
    opts = ShiftOptions(**{k: v for k, v in results["options"].items() if k in fields})
    metrics = {rid: [SeedMetrics(**s) for s in run["seeds"]] for rid, run in results["runs"].items()}
    chosen = default_choices(opts)
    chosen.update({tuple(key.split("/", 1)): rec["chosen"] for key, rec in results["selection"].items()})
    return holm_report(
        evaluate_claims(opts, metrics, chosen, results.get("density_ratios", []), results.get("seen") or {})
    )


def _flag(argv: list[str], name: str) -> tuple[list[str], list[str]]:
    """(values of every `name VALUE`, the remaining arguments)."""
    values, rest, i = [], [], 0
    while i < len(argv):
        if argv[i] == name and i + 1 < len(argv):
            values.append(argv[i + 1])
            i += 2
        else:
            rest.append(argv[i])
            i += 1
    return values, rest


def main(argv: list[str]) -> int:
    from rich.console import Console

    from dralign.errors import DralignError

    from .outputs import write_outputs

    command = " ".join(["python -m dralign_bench.shift.merge", *argv])
    notes, argv = _flag(argv, "--note")
    unshown, argv = _flag(argv, "--unshown")
    if len(argv) < 2:
        print(
            "usage: python -m dralign_bench.shift.merge OUT_DIR RESULTS.json... [--note TEXT] [--unshown TEXT]",
            file=sys.stderr,
        )
        return 2
    try:
        parts = [json.loads(Path(p).read_text()) for p in argv[1:]]
        results = merge_results(parts, command, " ".join(notes) or None, unshown)
    except (DralignError, OSError, json.JSONDecodeError) as e:
        print(f"merge: error: {e}", file=sys.stderr)
        return 2
    write_outputs(results, Path(argv[0]), Console())
    print(f"merged {len(parts)} jobs into {argv[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
