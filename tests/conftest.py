"""Shared fixtures: tiny offline model folders per architecture, tokenizers, and small generated
preference files, each built once per test session (tokenizers once per module). Plain helpers
(paths, row generators, `write_jsonl`, `make_batch`) are in helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import SHARED_DATA, preference_rows, unpaired_rows, write_jsonl


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


@pytest.fixture(scope="module")
def tok():
    """The default tiny tokenizer (`tiny_tokenizer()`); one per module, as tests may alter it."""
    from dralign.modeling.tiny import tiny_tokenizer

    return tiny_tokenizer()


@pytest.fixture(scope="module")
def world_tok():
    """A tiny tokenizer trained on the shift world's corpus (200 texts, seed 0, 300 tokens), for
    tests that generate world text; one per module."""
    from dralign.modeling.tiny import tiny_tokenizer
    from dralign_bench.world import generate_corpus

    return tiny_tokenizer(generate_corpus(200, seed=0), vocab_size=300)


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
    """The real data folder ../shared/data beside the checkout; skips the test when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def float64_models():
    """Tiny float64 models in eval mode, keyed by (architecture, attention kernel)."""
    import torch

    from dralign.modeling.tiny import ARCHITECTURES, tiny_model
    from helpers import VOCAB

    return {
        (arch, attn): tiny_model(arch, vocab_size=VOCAB, seed=1, attn_implementation=attn, dtype=torch.float64).eval()
        for arch in ARCHITECTURES
        for attn in ("sdpa", "eager")
    }
