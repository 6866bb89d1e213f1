"""Shared fixtures: tiny offline model folders per architecture and small generated preference
files, each built once per test session."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

POSITIVE = ["good", "happy", "great", "kind", "thank you", "very much"]
NEGATIVE = ["bad", "terrible", "lazy", "awful", "sad", "the weather"]


def write_jsonl(path: Path, rows) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        for row in rows:
            fh.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return path


def preference_rows(n: int = 64, seed: int = 0) -> list[dict]:
    """Pairs whose chosen responses use positive words and rejected ones negative words, with
    a `group` (two groups) and a `ratio` (density ratio, four levels) column."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        prompt = f"Human: question {i}, please answer briefly? Assistant:"
        rows.append({
            "prompt": prompt,
            "chosen": " " + " ".join(rng.choices(POSITIVE, k=3)) + ".",
            "rejected": " " + " ".join(rng.choices(NEGATIVE, k=3)) + ".",
            "group": "ab"[i % 2],
            "ratio": 0.25 + 0.5 * (i % 4),
        })
    return rows


def unpaired_rows(n: int = 64, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        good = i % 2 == 0
        words = POSITIVE if good else NEGATIVE
        rows.append({"prompt": f"Human: topic {i // 2}? Assistant:",
                     "completion": " " + " ".join(rng.choices(words, k=3)) + ".",
                     "label": good})
    return rows


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """`tiny_model_dir(arch, seed=0)`: the folder of a tiny `arch` model (built once)."""
    from dralign.modeling.tiny import save_tiny

    root = tmp_path_factory.mktemp("tiny_models")
    built: dict[tuple[str, int], str] = {}

    def get(arch: str = "llama", seed: int = 0) -> str:
        key = (arch, seed)
        if key not in built:
            built[key] = save_tiny(root / f"{arch}-{seed}", arch, seed=seed)
        return built[key]

    return get


@pytest.fixture(scope="session")
def pref_jsonl(tmp_path_factory) -> Path:
    """64 explicit pairs (positive vs negative words) with `group` and `ratio` columns."""
    return write_jsonl(tmp_path_factory.mktemp("pref") / "pairs.jsonl", preference_rows())


@pytest.fixture(scope="session")
def unpaired_jsonl(tmp_path_factory) -> Path:
    """64 unpaired rows (prompt, completion, label), half desirable."""
    return write_jsonl(tmp_path_factory.mktemp("unpaired") / "unpaired.jsonl", unpaired_rows())


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA
