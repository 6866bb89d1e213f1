"""Only the third-party deprecation a user cannot act on is silenced (transformers' FutureWarning
about `is_gradient_checkpointing`, read by peft); the sampler passes the KV cache under the name
the installed transformers takes (no `past_key_values` deprecation); any other warning, of the
same category too, still shows."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = r"""
import warnings
from dralign.eval.generate import sample_completions
from dralign.modeling import apply_lora, load_model, load_tokenizer
model = apply_lora(load_model(FOLDER), r=2)           # peft reads is_gradient_checkpointing
sample_completions(model, load_tokenizer(FOLDER), ["hello"], max_new_tokens=3)  # past_key_values
warnings.warn("another future change", FutureWarning)   # not silenced
"""


def test_only_the_listed_third_party_warnings_are_silenced(tiny_model_dir):
    code = f"FOLDER = {tiny_model_dir('llama')!r}\n" + SCRIPT
    run = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "is_gradient_checkpointing" not in run.stderr
    assert "past_key_values" not in run.stderr
    assert "another future change" in run.stderr
