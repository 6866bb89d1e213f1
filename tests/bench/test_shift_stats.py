"""The shift world's evidence machinery: DPO's envelope frontier (never extrapolated, with an
overlap control), Holm over the whole report, underpowered claims, split-half evaluation
noise, provenance and the merge's refusals, the console output at 80 columns."""

import io
import json
import math
import subprocess
from dataclasses import asdict

import numpy as np
import pytest

from dralign.errors import BadInputError, BadOptionError
from dralign_bench.shift import (
    ClaimSpec,
    Comparison,
    SeedMetrics,
    ShiftOptions,
    envelope_at,
    holm_report,
    judge,
    resolve,
    upper_hull,
)
from dralign_bench.shift.measure import evaluation_noise
from dralign_bench.shift.merge import main as merge_main
from dralign_bench.shift.merge import merge_results
from dralign_bench.shift.provenance import git_state
from dralign_bench.shift.report import plain_summary, print_tables, short_id
from dralign_bench.shift.run import seed_values

F = "dpo-frontier"


def m(r0=0.5, worst=0.4, kl=1.0, acc=0.7, calib=0.1, halves=None) -> SeedMetrics:
    return SeedMetrics(
        curve=[worst, r0],
        r0=r0,
        worst=worst,
        kl=kl,
        entropy=4.0,
        distinct2=0.8,
        acc=acc,
        calib=calib,
        halves=halves or {},
    )


# --------------------------------------------------------------------------------------------- envelope


def test_upper_hull_drops_points_under_a_chord_and_keeps_the_highest_at_equal_x():
    pts = [(2, 0.6), (4, 0.7), (6, 0.65), (3, 0.5), (0, 0.4), (4, 0.1)]
    assert upper_hull(pts) == [(0, 0.4), (2, 0.6), (4, 0.7), (6, 0.65)]  # (3, .5) under the chord .65
    assert upper_hull([(0, 0.0), (1, 0.5), (2, 1.0)]) == [(0, 0.0), (2, 1.0)]  # collinear: the ends


def test_envelope_with_the_start_reads_the_best_dpo_value_on_the_metrics_side_and_never_extrapolates():
    kl, r = [2, 4, 6, 3], [0.6, 0.7, 0.65, 0.5]  # DPO's runs (the last under the hull)
    with_start = (kl + [0], r + [0.4])
    # reward at matched KL: the best DPO reward at KL ≤ the method's
    assert envelope_at(*with_start, 1.0, "below") == pytest.approx(0.5)  # start–(2, .6) chord: a mixture
    assert envelope_at(*with_start, 5.0, "below") == pytest.approx(0.7)  # past DPO's peak: the peak
    assert envelope_at(*with_start, 5.0, "at") == pytest.approx(0.675)  # the hull itself
    assert envelope_at(*with_start, 3.0, "below") == pytest.approx(0.65)  # the hull, not the run at (3, .5)
    assert math.isnan(envelope_at(*with_start, 7.0, "below"))  # beyond DPO's largest KL: no value
    assert math.isnan(envelope_at(kl, r, 1.0, "below"))  # without the start, KL 1 lies outside the range
    # worst case at matched r(α₀): the best DPO worst case at r(α₀) ≥ the method's
    assert envelope_at([0.5, 0.7], [0.2, 0.3], 0.6, "above") == pytest.approx(0.3)
    assert envelope_at([0.5, 0.7], [0.2, 0.3], 0.6, "at") == pytest.approx(0.25)
    assert math.isnan(envelope_at([0.5, 0.7], [0.2, 0.3], 0.45, "above"))
    # a lower-is-better y (calibration error): the lower hull, the least value on the side
    assert envelope_at([1, 2, 3], [0.2, 0.1, 0.3], 1.5, "below", better=-1.0) == pytest.approx(0.15)
    assert envelope_at([1, 2, 3], [0.2, 0.1, 0.3], 2.5, "below", better=-1.0) == pytest.approx(0.1)
    assert envelope_at([1.0, float("nan")], [0.2, 0.3], 1.0) == pytest.approx(0.2)  # a NaN point is dropped
    assert math.isnan(envelope_at([float("nan")], [0.3], 1.0))


def test_judge_uses_the_start_and_drops_seeds_outside_dpos_range_into_the_overlap_control():
    front = {"mix/dpo[beta=0.1]": [m(kl=4.0, r0=0.7)] * 4, "mix/dpo[beta=1]": [m(kl=2.0, r0=0.6)] * 4}
    start = [m(kl=0.0, r0=0.4)] * 4
    # seeds 0, 1 inside (KL 1: the start–β=1 chord gives .5); seeds 2, 3 beyond DPO's largest KL
    method = [m(kl=1.0, r0=0.52), m(kl=1.0, r0=0.53), m(kl=9.0, r0=0.9), m(kl=9.0, r0=0.9)]
    metrics = {**front, "start": start, "mix/x": method}
    spec = ClaimSpec("mixture", "p", "c", (Comparison("mix/x", F, "r0", "kl"),), 0.01)
    claim = judge(spec, metrics, list(front), {"passed": True})
    (row,) = claim["comparisons"]
    assert row["seeds"] == 2 and row["inside"] == 0.5 and row["diff"] == pytest.approx(0.025)  # no clamped value
    assert claim["overlap"]["value"] == 0.5 and not claim["overlap"]["passed"]
    assert claim["verdict"] == "invalid test"
    inside = {**metrics, "mix/x": [m(kl=1.0, r0=0.52 + 0.001 * s) for s in range(4)]}
    ok = judge(spec, inside, list(front), {"passed": True})
    assert ok["overlap"]["passed"] and ok["verdict"] == "reproduced"
    direct = ClaimSpec("mixture", "p", "c", (Comparison("mix/x", "mix/dpo[beta=1]", "r0"),), 0.01)
    assert judge(direct, metrics, list(front), {"passed": True})["overlap"] is None  # no x, no overlap control


def test_dpo_as_the_claimant_is_read_on_its_hull_not_on_the_best_side():
    front = {"mix/dpo[beta=0.1]": [m(kl=2.0, r0=0.7)] * 3, "mix/dpo[beta=1]": [m(kl=4.0, r0=0.6)] * 3}
    metrics = {**front, "start": [m(kl=0.0, r0=0.4)] * 3, "mix/f": [m(kl=3.0, r0=0.62 + e) for e in (0, 1e-3, -1e-3)]}
    dpo_claims = ClaimSpec("divergence", "p", "c", (Comparison(F, "mix/f", "r0", "kl"),), 0.01)
    method_claims = ClaimSpec("divergence", "p", "c", (Comparison("mix/f", F, "r0", "kl"),), 0.01)
    # hull at KL 3: (.7 + .6)/2 = .65; the best DPO reward at KL ≤ 3 is .7
    assert judge(dpo_claims, metrics, list(front), {"passed": True})["comparisons"][0]["diff"] == pytest.approx(0.03)
    assert judge(method_claims, metrics, list(front), {"passed": True})["comparisons"][0]["diff"] == pytest.approx(
        -0.08
    )


# --------------------------------------------------------------------------------------------- statistics


def _claim(ps, mde=0.01, eoi=0.02):
    rows = [{"diff": 0.05, "p": p, "p_holm": p, "p_holm_report": p, "mde": mde} for p in ps]
    return {
        "control": {"passed": True},
        "overlap": None,
        "mde": mde,
        "effect_of_interest": eoi,
        "comparisons": rows,
        "verdict": "?",
    }


def test_holm_over_the_whole_report_is_one_family_and_decides_the_verdicts():
    claims = holm_report([_claim([0.01, 0.04]), _claim([0.03])])
    # sorted .01, .03, .04 → ×3, ×2, ×1 = .03, .06, .04 → .06 (monotone)
    assert [r["p_holm_report"] for c in claims for r in c["comparisons"]] == pytest.approx([0.03, 0.06, 0.06])
    assert [c["verdict"] for c in claims] == ["partly reproduced", "not significant"]
    with_se = holm_report(
        [
            {
                **_claim([0.01, 0.2]),
                "comparisons": [{"diff": 0.05, "p": p, "se": 0.01, "seeds": 10, "mde": 0.03} for p in (0.01, 0.2)],
            }
        ]
    )
    # 80 % power at Holm's first step, α/m = 0.025 two-sided: (t₉(0.9875) + t₉(0.8))·SE
    from dralign.stats import student_t_quantile

    expect = (student_t_quantile(0.9875, 9) + student_t_quantile(0.8, 9)) * 0.01
    assert with_se[0]["mde_report"] == pytest.approx(expect) and expect > 0.03


def test_a_claim_whose_mde_exceeds_its_effect_of_interest_is_underpowered_never_not_significant():
    claims = holm_report(
        [
            _claim([0.4], mde=0.03, eoi=0.02),
            _claim([0.4], mde=0.015, eoi=0.02),
            _claim([0.4], mde=float("nan"), eoi=0.02),
        ]
    )
    assert [c["verdict"] for c in claims] == ["underpowered", "not significant", "underpowered"]
    noisy = {"a": [m(r0=0.5 + e) for e in (0.03, -0.02, 0.01, -0.01)], "b": [m(r0=0.5)] * 4}
    spec = ClaimSpec("mixture", "p", "c", (Comparison("a", "b", "r0"),), effect_of_interest=0.005)
    claim = judge(spec, noisy, [], {"passed": True})
    assert claim["mde"] == claim["comparisons"][0]["mde"] > 0.005 and claim["verdict"] == "underpowered"
    assert claim["effect_of_interest"] == 0.005


def test_evaluation_noise_is_the_rms_of_half_differences():
    runs = {
        "a": [m(halves={"r0": [0.50, 0.54]}), m(halves={"r0": [0.60, 0.58]})],
        "b": [{"halves": {"r0": [0.3, 0.3]}}],
    }  # a results.json row
    assert evaluation_noise(runs, "r0") == pytest.approx(np.sqrt((0.02**2 + 0.01**2 + 0.0) / 3))
    assert math.isnan(evaluation_noise(runs, "acc"))


def test_full_profile_has_ten_test_seeds_and_the_offset_chooses_them():
    opts = resolve(ShiftOptions(full=True, seed_offset=100))
    assert opts.seeds >= 10
    test, val = seed_values(opts)
    assert test == list(range(100, 110)) and val == [1000, 1001]
    with pytest.raises(BadOptionError, match="seed-offset"):
        seed_values(resolve(ShiftOptions(full=True, seed_offset=995)))


# --------------------------------------------------------------------------------------------- provenance, merge


def _git(cwd, *args):
    subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True)


def test_git_state_records_the_commit_and_a_dirty_tree_with_its_diff(tmp_path):
    _git(tmp_path, "init", "-q")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("x = 1\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "one")
    head = subprocess.run(
        ["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    clean = git_state(tmp_path / "src" / "a.py")
    assert clean == {"commit": head, "dirty": False, "diff_sha256": None}
    (tmp_path / "src" / "a.py").write_text("x = 2\n")
    one = git_state(tmp_path / "src" / "a.py")
    (tmp_path / "src" / "a.py").write_text("x = 3\n")
    two = git_state(tmp_path / "src" / "a.py")
    assert one["dirty"] and two["dirty"] and one["commit"] == head and one["diff_sha256"] != two["diff_sha256"]
    (tmp_path / "src" / "a.py").write_text("x = 1\n")
    (tmp_path / "src" / "new.py").write_text("y = 1\n")  # untracked code that would run
    assert git_state(tmp_path / "src" / "a.py")["dirty"]
    assert git_state(tmp_path.parent / "nowhere-in-git" / "x")["commit"] is None


def _part(scenarios, **changes):
    opts = asdict(resolve(ShiftOptions(scenarios=scenarios, seeds=2, validation_seeds=0)))
    prov = {
        "commit": "abc",
        "dirty": False,
        "diff_sha256": None,
        "versions": {"python": "3"},
        "cores": {},
        "started": "2026-01-01T00:00:00+00:00",
        "finished": "2026-01-01T00:05:00+00:00",
        "wall_seconds": 300.0,
    }
    doc = {
        "options": {**opts, "test_seeds": 2},
        "provenance": prov,
        "scenarios": {},
        "selection": {},
        "runs": {},
        "validation_runs": {},
        "claims": [],
        "maps": {},
        "seconds": 300.0,
        "command": "x",
        "world_lm": {"k": 1},
    }
    for key, value in changes.items():
        target, name = (doc["provenance"], key[5:]) if key.startswith("prov_") else (doc["options"], key)
        target[name] = value
    return doc


@pytest.mark.parametrize(
    "change, message",
    [
        ({"prov_commit": "def"}, "part 2 (flips) has commit 'def', part 1 (mixture) 'abc'"),
        ({"prov_dirty": True}, "has dirty True"),
        ({"prov_diff_sha256": "ff"}, "has diff_sha256"),
        ({"steps": 7}, "option steps is 7 in part 2 (flips)"),
        ({"test_seed_values": [5, 6]}, "option test_seed_values"),
    ],
)
def test_merge_refuses_parts_of_another_commit_dirty_state_or_options(change, message):
    with pytest.raises(BadInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        merge_results([_part(["mixture"]), _part(["flips"], **change)])


def test_merge_refuses_a_part_without_provenance_and_the_command_says_it_in_one_line(tmp_path, capsys):
    old = _part(["flips"])
    del old["provenance"]
    with pytest.raises(BadInputError, match="records no provenance"):
        merge_results([_part(["mixture"]), old])
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_part(["mixture"])))
    b.write_text(json.dumps(_part(["flips"], steps=7)))
    assert merge_main([str(tmp_path / "out"), str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "option steps" in err and "Traceback" not in err


def test_merge_keeps_notes_and_unshown_runs_and_spans_the_jobs():
    a = _part(["mixture"], unshown_runs=["sources at offset 0: control failed"])
    b = _part(["flips"])
    b["provenance"].update(started="2026-01-01T00:01:00+00:00", finished="2026-01-01T00:20:00+00:00")
    merged = merge_results([a, b], note="fresh seeds")
    assert merged["options"]["unshown_runs"] == ["sources at offset 0: control failed"]
    assert merged["options"]["note"] == "fresh seeds" and merged["seconds"] == pytest.approx(20 * 60)
    assert [j["started"] for j in merged["jobs"]] == ["2026-01-01T00:00:00+00:00", "2026-01-01T00:01:00+00:00"]


# --------------------------------------------------------------------------------------------- console


def _demo_like_results():
    rid = [
        "mix/dpo[beta=0.1]",
        "mix/dpo[beta=1]",
        "mix/kldpo[tau=0.5]",
        "mix/wdpo[rho=0.01]",
        "flip/rdpo[label_smoothing=0.3]",
    ]
    runs = {r: {"seeds": [asdict(m(acc=float("nan"), calib=float("nan")))] * 2} for r in rid}
    runs["start"] = {"seeds": [asdict(m(acc=0.5, calib=0.3))] * 2}  # the start is scored on pairs regardless
    row = {
        "a": rid[2],
        "b": F,
        "metric": "worst at matched r0",
        "diff": 0.004,
        "se": 0.01,
        "ci": [-0.12, 0.13],
        "p": 0.7,
        "mde": 0.045,
        "seeds": 2,
        "inside": 1.0,
        "p_holm": 0.7,
        "p_holm_report": 0.7,
    }
    claim = {
        "scenario": "mixture",
        "paper": "Xu et al. 2025 (WDPO, KLDPO)",
        "claim": "Under a shift of the preference mixture, KLDPO keeps a higher worst-case gold reward.",
        "effect_of_interest": 0.015,
        "mde": 0.045,
        "verdict": "underpowered",
        "overlap": None,
        "control": {"name": "DPO's loss", "value": 0.29, "threshold": 0.05, "passed": True, "detail": ""},
        "comparisons": [row],
    }
    return {"runs": runs, "claims": [claim]}


def test_console_tables_read_cleanly_at_80_columns_and_end_in_plain_words():
    from rich.console import Console

    console = Console(file=io.StringIO(), width=80, color_system=None)
    print_tables(_demo_like_results(), console)
    out = console.file.getvalue()
    assert max(len(line) for line in out.splitlines()) <= 80
    for rid in ("mix/dpo[β=0.1]", "mix/dpo[β=1]", "mix/kldpo[τ=0.5]", "mix/wdpo[ρ=0.01]", "flip/rdpo[ε=0.3]"):
        assert rid in out  # whole, never cut
    assert "nan" not in out and "…" not in out and "acc" not in out.split("claims")[0]  # no column of dashes
    results = _demo_like_results()
    results["claims"][0]["comparisons"][0].update(ci=[float("nan")] * 2, seeds=1)
    results["claims"][0]["comparisons"].append(
        {**results["claims"][0]["comparisons"][0], "diff": float("nan"), "seeds": 0}
    )  # no seed inside DPO's range
    results["claims"][0]["mde"] = float("nan")
    console = Console(file=io.StringIO(), width=80, color_system=None)
    print_tables(results, console)
    text = console.file.getvalue()
    assert "nan" not in text and "no interval from 1 seed(s)" in text and "no value" in text
    summary = plain_summary(_demo_like_results())
    assert "control passed" in summary and "could only detect 0.045" in summary
    assert out.rstrip().endswith(summary.split()[-1])
    assert short_id("sources/dora-reweight") == "sources/dora-reweight"


# --------------------------------------------------------------------------------------------- one command


@pytest.mark.slow
def test_one_command_runs_scenarios_as_parallel_workers_and_records_provenance(tmp_path):
    """`dralign bench shift --jobs 2` at a tiny size: two scenarios as worker processes, merged
    and judged together; results.json records the provenance, the seed values and every option;
    each claim carries its effect of interest, MDE and report-wide Holm p; every run its halves."""
    from dralign.cli import main

    out = tmp_path / "shift"
    argv = [
        "bench",
        "shift",
        "--scenarios",
        "unpaired",
        "mixture",
        "--jobs",
        "2",
        "--seeds",
        "2",
        "--seed-offset",
        "50",
        "--validation-seeds",
        "0",
        "--steps",
        "2",
        "--train-pairs",
        "32",
        "--eval-prompts",
        "4",
        "--eval-pairs",
        "4",
        "--max-new-tokens",
        "8",
        "--betas",
        "0.1",
        "1",
        "--lm-steps",
        "8",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--output-dir",
        str(out),
        "--unshown-runs",
        "mixture at offset 0: tried while developing",
    ]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    prov = results["provenance"]
    assert {"commit", "dirty", "versions", "cores", "started", "finished", "wall_seconds"} <= set(prov)
    assert set(prov["versions"]) == {"python", "torch", "transformers", "dralign", "numpy"} and prov["workers"] == 2
    assert prov["started"] < prov["finished"] and prov["wall_seconds"] > 0
    o = results["options"]
    assert o["test_seed_values"] == [50, 51] and o["validation_seed_values"] == [] and o["jobs"] == 2
    assert {"labmix/kldpo[tau=0.05]", "unpaired/aot-unpaired"} <= set(results["runs"]) and results["maps"] == {}
    assert results["regret"] and results["seen"]["unpaired/aot-unpaired"]  # the premise's records, merged
    assert [j["scenarios"] for j in results["jobs"]] == [["unpaired"], ["mixture"]]  # the parts, in order
    assert all((out / "jobs" / sc / "results.json").exists() for sc in ("mixture", "unpaired"))
    assert all(len(s["halves"]["r0"]) == 2 for run in results["runs"].values() for s in run["seeds"])
    for claim in results["claims"]:
        assert {"effect_of_interest", "mde", "control", "overlap", "verdict"} <= set(claim)
        assert all("p_holm_report" in r and "ci" in r for r in claim["comparisons"])
    report = (out / "report.md").read_text()
    assert "## Provenance" in report and "mixture at offset 0: tried while developing" in report
    assert prov["commit"] is None or prov["commit"] in (out / "command.txt").read_text()


@pytest.mark.slow
def test_maps_run_their_cells_on_parallel_workers_at_the_test_seeds(tmp_path):
    """`dralign bench shift --maps --jobs 2` at a tiny size: the rDPO map's four cells on two worker
    processes (each its own scratch folder and log), at the seeds from --seed-offset."""
    from dralign.cli import main

    out = tmp_path / "maps"
    argv = [
        "bench",
        "shift",
        "--maps",
        "--scenarios",
        "flips",
        "--jobs",
        "2",
        "--seeds",
        "1",
        "--seed-offset",
        "60",
        "--steps",
        "2",
        "--flip-pairs",
        "16",
        "--eval-prompts",
        "4",
        "--eval-pairs",
        "4",
        "--max-new-tokens",
        "8",
        "--betas",
        "0.1",
        "1",
        "--lm-steps",
        "8",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--output-dir",
        str(out),
    ]
    assert main(argv) == 0
    rdpo = json.loads((out / "results.json").read_text())["maps"]["rdpo"]
    assert [c["coords"]["flip_rate"] for c in rdpo["cells"]] == [0.1, 0.2, 0.3, 0.4] and rdpo["seed_values"] == [60]
    logs = sorted(out.glob("jobs/maps-*/log.txt"))
    assert 1 <= len(logs) <= 2 and all(not p.is_dir() for d in out.glob("jobs/maps-*") for p in d.iterdir())
    assert "flip/rdpo" in "".join(p.read_text() for p in logs)


def test_maps_are_merged_and_rendered_as_tables_with_each_cells_interval_and_control():
    from dralign_bench.shift.outputs import _map_lines

    cells = [
        {"row": 0.05, "col": 0.6, "diff": 0.031, "ci": [0.01, 0.052], "control_passed": True},
        {"row": 0.05, "col": 0.9, "diff": -0.004, "ci": [-0.02, 0.012], "control_passed": False},
    ]
    mp = {
        "title": "DoRA's gain over the best baseline",
        "rows": {"name": "human fraction", "values": [0.05]},
        "cols": {"name": "agreement", "values": [0.6, 0.9]},
        "cells": cells,
    }
    a, b = _part(["mixture"]), _part(["sources"])
    b["maps"] = {"dora": mp}
    merged = merge_results([a, b])
    assert merged["maps"] == {"dora": mp}
    text = "\n".join(_map_lines(merged))
    assert "| 0.05 | +0.031 [+0.010, +0.052] | -0.004 [-0.020, +0.012] (control failed) |" in text
    assert _map_lines({"maps": {}}) == []
    later = {
        **merged,
        "maps_command": "dralign bench shift --maps",
        "maps_provenance": {"commit": "abc", "wall_seconds": 120},
    }
    assert "Made by `dralign bench shift --maps` at commit abc in 2.0 min of wall time." in _map_lines(later)
    from dralign_bench.shift.outputs import command_text

    assert command_text({**later, "command": "x"}).splitlines()[-2:] == [
        "# maps made at commit abc (dirty: None), None – None",
        "dralign bench shift --maps",
    ]


def test_a_runs_progress_line_fits_80_columns_and_shows_no_nan():
    from dralign_bench.shift.run import _progress

    line = _progress(1003, "mix/kldpo[tau=0.5]", m(kl=12.345, acc=float("nan"), calib=float("nan")), 69.0)
    assert len(line) <= 80 and "nan" not in line and "mix/kldpo[τ=0.5]" in line
    assert "acc 0.700" in _progress(3, "flip/rdpo[label_smoothing=0.3]", m())
