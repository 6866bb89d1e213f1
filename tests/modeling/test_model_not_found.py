"""A model name that exists nowhere is one line naming it, at once (issue 18 item 16): it took
51 s of retried downloads online (over 2 minutes with no network) and the message did not name
the model."""

from __future__ import annotations

import huggingface_hub
import pytest
import transformers
from huggingface_hub import constants

from dralign.cli import main
from dralign.modeling.loading import ModelNotFoundError, load_model, load_tokenizer

MISSING = "nonexistent-org/nonexistent-model"


@pytest.fixture
def no_download(monkeypatch):
    """from_pretrained must not be reached for a model that is nowhere."""

    def refuse(*args, **kwargs):
        raise AssertionError("from_pretrained was called (retried downloads)")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", refuse)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)


def test_offline_a_missing_model_is_named_without_asking_the_hub(monkeypatch, no_download):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub, "model_info", lambda *a, **k: pytest.fail("hub asked"))
    for load in (load_tokenizer, load_model):
        with pytest.raises(ModelNotFoundError, match=rf"^model '{MISSING}': .*not in the Hugging Face cache"):
            load(MISSING)


def test_an_unreachable_hub_is_asked_once_and_said(monkeypatch, no_download):
    calls = []

    def unreachable(name, **kwargs):
        calls.append(name)
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "model_info", unreachable)
    with pytest.raises(
        ModelNotFoundError,
        match=rf"^model '{MISSING}': not found locally .* the hub "
        r"could not be asked \(Name or service not known\)",
    ):
        load_tokenizer(MISSING)
    assert calls == [MISSING]


def test_an_invalid_name_is_one_line(no_download):
    with pytest.raises(ModelNotFoundError, match="not a valid hub name"):
        load_tokenizer("a/b/c")


def test_a_local_folder_is_loaded_as_before(tiny_model_dir):
    assert load_tokenizer(tiny_model_dir("llama")).pad_token is not None


def test_the_command_line_names_the_missing_model(monkeypatch, tmp_path, capsys, no_download):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    assert main(["train", "--model", MISSING, "--data", str(data), "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and MISSING in err, err


def test_a_lora_rank_above_every_layer_is_refused_before_allocating(tiny_model_dir):
    """A random config's `lora_r` of about 10**9 allocated adapters until the OOM killer came
    (found by the fuzz target); a rank past min(in, out) of every layer adds nothing."""
    from dralign.errors import BadOptionError
    from dralign.modeling.loading import apply_lora

    model = load_model(tiny_model_dir("llama"))
    with pytest.raises(BadOptionError, match=r"^lora_r \(--lora-r\) 1000000000 is above"):
        apply_lora(model, r=10**9)
    widest = max(min(m.weight.shape) for m in model.modules() if hasattr(m, "in_features"))
    assert apply_lora(model, r=widest) is not None
