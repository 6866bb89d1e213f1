"""Fixtures of the training tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def base(tiny_model_dir, pref_jsonl):
    """`--model` (a tiny llama) and `--data` (the 64 generated pairs) of a `dralign train` call."""
    return ["--model", tiny_model_dir("llama"), "--data", pref_jsonl]
