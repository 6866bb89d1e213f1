"""The prompts of `dralign eval --prompts`: a registered ``SCHEME:BODY`` spec, a ``.txt`` file or a
table with a prompt column (plain text or chat messages, rendered with the chat template)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .registry import PROMPTS

__all__ = ["load_prompts"]


def _registered_prompts(spec: str, seed: int) -> list[str] | None:
    """The prompts of a registered ``SCHEME:BODY`` spec, or None when SCHEME is not registered."""
    scheme, _, body = spec.partition(":")
    factory = PROMPTS.get(scheme) if scheme.isidentifier() else None
    if factory is None:
        return None
    try:
        prompts = [str(p) for p in factory(body, seed)]
    except ValueError as err:
        raise ValueError(f"prompts {spec!r}: {err}") from None
    if not prompts:
        raise ValueError(f"prompts {spec!r}: no prompts")
    return prompts


def _render_messages(tokenizer, messages: Any, where: str) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"{where}: the prompt is a list of messages but the tokenizer has no chat template")
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception as err:  # jinja errors of a malformed message list
        raise ValueError(f"{where}: cannot render the messages with the chat template: {err}") from None


def load_prompts(spec: str, *, tokenizer=None, seed: int = 0, column: str = "prompt") -> tuple[list[str], bool]:
    """(prompts, rendered): prompts from `spec`, and whether they were rendered with the
    tokenizer's chat template (then they carry their special tokens: tokenize them with
    ``add_special_tokens=False``).

    `spec` is a registered ``SCHEME:BODY`` (see :mod:`dralign.eval.registry`; e.g. the shift
    world's ``world:heldout:N`` / ``world:train:N``, seeded by `seed`), a ``.txt``
    file (one prompt per line; blank lines are skipped) or any local file or saved-dataset
    folder :func:`dralign.data.load_rows` reads, whose `column` holds a string, or a list of
    chat messages (rendered with the generation prompt, as training renders conversational
    prompts). Errors name the file and row.
    """
    from ..data import DataError, load_rows

    registered = _registered_prompts(spec, seed) if ":" in spec else None
    if registered is not None:
        return registered, False
    path = Path(spec)
    if path.suffix == ".txt":
        if not path.is_file():
            raise DataError(f"prompts file not found: {spec}")
        prompts = [line.rstrip("\r") for line in path.read_text().split("\n")]
        prompts = [p for p in prompts if p.strip()]
        if not prompts:
            raise DataError(f"{spec}: no prompts (every line is blank)")
        return prompts, False
    if not path.exists():
        schemes = " / ".join(PROMPTS.helps())
        raise DataError(f"prompts file not found: {spec} (expected a file" + (f", or {schemes})" if schemes else ")"))
    rows = load_rows(spec)
    prompts, kinds = [], set()
    for row in rows:
        where = f"{row.file}: row {row.index}" + (f" (line {row.line})" if row.line else "")
        if row.data is None:
            raise DataError(f"{where}: {row.error}")
        if column not in row.data:
            raise DataError(f"{where}: no {column!r} field (set --prompt-column)")
        value = row.data[column]
        if isinstance(value, str) and value.strip():
            prompts.append(value)
            kinds.add("text")
        elif isinstance(value, list) and value and tokenizer is not None:
            prompts.append(_render_messages(tokenizer, value, where))
            kinds.add("messages")
        else:
            raise DataError(
                f"{where}: field {column!r} must be a non-empty string"
                + (" or a list of messages" if tokenizer is not None else "")
                + f", got {type(value).__name__}"
            )
    if not prompts:
        raise DataError(f"{spec}: no prompts")
    if len(kinds) > 1:
        raise DataError(f"{spec}: mixes plain-text prompts and lists of messages")
    return prompts, kinds == {"messages"}
