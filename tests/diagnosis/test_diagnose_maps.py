"""The DoRA advice cites the map cells nearest to the data's measured human fraction
(`dralign bench shift --maps`, results.json's `maps`), read from a results.json built here in
the maps' schema (`dralign_bench.shift.maps`: its real axes, cells as `summarise_map` writes
them); "no evidence in this project yet" when the file has no maps."""

from __future__ import annotations

import json
import math

import pytest

from dralign import diagnose
from dralign.diagnosis import evidence
from dralign.diagnosis.advice import describe
from dralign_bench.shift.maps import MAPS
from helpers import write_jsonl

SPEC = MAPS["dora"]
ROWS, COLS = SPEC.rows, SPEC.cols


def cell(human: float, agreement: float, gain: float, passed: bool = True) -> dict:
    """A cell as `summarise_map` writes it (gain = diff; ci a ±0.01 interval around it)."""
    ci = [gain - 0.01, gain + 0.01] if math.isfinite(gain) else [float("nan")] * 2
    control = {"name": "sources", "value": 0.1, "threshold": 0.0, "passed": passed, "detail": "constructed"}
    return {
        "coords": {ROWS[0]: human, COLS[0]: agreement},
        "method": "sources/dora",
        "gain": gain,
        "ci": ci,
        "seeds": 4,
        "inside": 1.0,
        "control": control,
        "row": human,
        "col": agreement,
        "diff": gain,
        "control_passed": passed,
    }


def results_file(tmp_path, gain_of) -> str:
    """A results.json with one claim of the sources scenario and the dora map whose cell
    (human, agreement) has gain `gain_of(human, agreement)` (None: no maps)."""
    claims = [
        {"scenario": "sources", "paper": "Zhu et al. 2025 (DoRA)", "claim": "DoRA helps", "verdict": "reproduced"}
    ]
    doc: dict = {"claims": claims, "maps": {}}
    if gain_of is not None:
        cells = [cell(h, a, *gain_of(h, a)) for h in ROWS[1] for a in COLS[1]]
        doc["maps"]["dora"] = {
            "question": SPEC.question,
            "metric": SPEC.metric,
            "matched_on": SPEC.x,
            "axes": {ROWS[0]: list(ROWS[1]), COLS[0]: list(COLS[1])},
            "cells": cells,
            "title": SPEC.question,
            "rows": {"name": ROWS[0], "values": list(ROWS[1])},
            "cols": {"name": COLS[0], "values": list(COLS[1])},
        }
    path = tmp_path / "results.json"
    path.write_text(json.dumps(doc))  # NaN gains stay NaN, as json.dumps writes them
    return str(path)


def separable(tmp_path, human: int, synthetic: int):
    rows = [
        {
            "prompt": f"tell me about cats {i}",
            "chosen": " cats purr and sleep",
            "rejected": " cats bark",
            "source": "human",
        }
        for i in range(human)
    ] + [
        {"prompt": f"QUERY {i}: DOGS?", "chosen": " DOGS RUN FAST 123", "rejected": " DOGS MEOW 456", "source": "model"}
        for i in range(synthetic)
    ]
    return write_jsonl(tmp_path / "s.jsonl", rows)


def dora_advice(tmp_path, monkeypatch, results: str, human: int = 15, synthetic: int = 85):
    monkeypatch.setattr(evidence, "RESULTS", evidence.Path(results))
    d = diagnose(
        data=str(separable(tmp_path, human, synthetic)), target=["human"], progress=False, log=lambda text: None
    )
    return d, next(a for a in d.advice if a.rule == "sources")


def test_dora_advice_cites_the_map_row_nearest_the_measured_human_fraction(tmp_path, monkeypatch):
    gains = lambda h, a: (round(h + a / 10, 3), a != COLS[1][0])  # noqa: E731  # the lowest agreement's control fails
    d, item = dora_advice(tmp_path, monkeypatch, results_file(tmp_path, gains))
    measured = d.sources["prior"]
    assert measured == pytest.approx(0.15)
    [claim] = [e for e in item.evidence if "claim" in e]
    [cited] = [e for e in item.evidence if e.get("map") == "dora"]
    assert claim["verdict"] == "reproduced"
    nearest = min(ROWS[1], key=lambda v: abs(v - measured))
    assert cited["row"] == nearest and cited["axis"] == ROWS[0] and cited["measured"] == pytest.approx(measured)
    # the whole row: every agreement with its gain, interval and control, as the file has them
    assert [c[COLS[0]] for c in cited["cells"]] == list(COLS[1])
    for c in cited["cells"]:
        gain, passed = gains(nearest, c[COLS[0]])
        assert c["gain"] == pytest.approx(gain) and c["ci"] == pytest.approx([gain - 0.01, gain + 0.01])
        assert c["control_passed"] == passed
    assert cited["verdict"] == "supported" and not cited["note"]
    assert "dora" in item.recommendation
    line = describe(cited)
    assert f"{ROWS[0]} {nearest:g}" in line and "(control failed)" in line and "supported" in line


def test_a_row_that_loses_everywhere_is_cited_and_blocks_the_recommendation(tmp_path, monkeypatch):
    # losses at the nearest row where the control passed; a failed control's gain does not count
    gains = lambda h, a: (-0.05, True) if a != COLS[1][-1] else (0.5, False)  # noqa: E731
    d, item = dora_advice(tmp_path, monkeypatch, results_file(tmp_path, gains))
    cited = next(e for e in item.evidence if e.get("map") == "dora")
    assert cited["verdict"] == "contradicted"
    assert item.recommendation.startswith("none") and "map dora" in item.recommendation


def test_mixed_rows_missing_values_and_a_fraction_outside_the_map(tmp_path, monkeypatch):
    # signs differ across agreements; one cell has no value (no seed inside DPO's range)
    gains = lambda h, a: (float("nan"), True) if a == COLS[1][0] else (a - 0.7, True)  # noqa: E731
    d, item = dora_advice(tmp_path, monkeypatch, results_file(tmp_path, gains), human=60, synthetic=40)
    cited = next(e for e in item.evidence if e.get("map") == "dora")
    assert cited["row"] == max(ROWS[1]) and d.sources["prior"] > max(ROWS[1])
    assert "outside" in cited["note"]
    assert cited["cells"][0]["gain"] is None and "no value" in describe(cited)
    assert cited["verdict"] == "depends on the other axis" and "dora" in item.recommendation


def test_no_maps_in_the_results_is_no_evidence(tmp_path, monkeypatch):
    _, item = dora_advice(tmp_path, monkeypatch, results_file(tmp_path, None))
    cited = next(e for e in item.evidence if e.get("map") == "dora")
    assert cited["verdict"] == "no evidence in this project yet" and cited["cells"] == []
    assert describe(cited) == "map dora: no evidence in this project yet"
