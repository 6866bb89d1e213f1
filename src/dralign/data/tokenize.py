"""Tokenization with explicit truncation, and the tokenized dataset `PreferenceData`.

Prompt and completion are tokenized separately: the prompt with the tokenizer's special tokens
(e.g. a BOS), the completion without, then ``eos`` appended to the completion unless it already
ends with it. Conversational rows are first rendered with the tokenizer's chat template (then
neither part gets extra special tokens: the template has them).

Truncation, in this order:
1. the prompt is cut to ``max_prompt_length`` tokens on ``truncation_side`` (``"left"`` keeps
   the end of the prompt, next to the completion; ``"right"`` keeps its start). With
   ``max_prompt_length=None`` a prompt that fits is never cut; one that would leave no room for
   a completion (≥ ``max_length`` tokens) is cut to ``max_length // 2`` tokens, as TRL users
   expect (``long_prompts="cut"``, the default; counted in ``report.truncated_prompt``).
   With ``long_prompts="strict"`` such a row is a bad row (``prompt_fills_max_length``) instead.
2. each completion is cut on the right so that prompt + completion ≤ ``max_length``.
A pair whose two completions become identical is a bad row.

Before tokenising, a text longer than `char_bound` characters (max_length × the longest token's
length in characters × 2) is cut to that many characters: its end kept for a prompt cut from
the left, its start otherwise. Such a text has more than 2·max_length tokens either way, so the
token-level rules above cut it anyway; the bound only spares the tokenizer (a 50 MB prompt took
minutes and gigabytes). Texts within the bound are tokenised exactly as before.

The work is done a chunk of records at a time, on columns: each text field's ids as one flat
int32 array with each text's start and length (`dralign.data.encode`), cut by moving starts and
lengths (`_truncate`, the vectorised `truncate`), checked as arrays (`_problems`), and gathered
once for the kept rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import numpy as np

from . import report as R
from .dataset import ID_FIELDS, META_COLUMNS, ExampleTable, IdColumns, PreferenceData, columns_as_arrays
from .encode import Ids, encode
from .formats import (
    HH_ASSISTANT_MARKER,
    ColumnMap,
    PairRecord,
    UnpairedRecord,
    as_rows,
    bad_row,
    validate_pairs,
    validate_unpaired,
)
from .loading import Row, progress_bar
from .metadata import number_names
from .report import BadRow, DataError, DataReport, check_policy

TRUNCATION_SIDES = ("left", "right")
LONG_PROMPTS = ("cut", "strict")  # what happens to a prompt that leaves no room for a completion
CHUNK = 4096  # records rendered and tokenised at a time (bounds the tokenizer's output held)
# the truncation keywords of `tokenize_pairs` / `tokenize_unpaired` and their defaults
TRUNCATION_DEFAULTS: dict[str, Any] = {
    "max_length": 512,
    "max_prompt_length": None,
    "truncation_side": "left",
    "add_eos": True,
    "long_prompts": "cut",
}


def _chunks(records: list, progress: bool, description: str) -> Iterator[list]:
    """`records` in slices of CHUNK, with a progress bar counting records when `progress`."""
    with progress_bar(description, len(records), enabled=progress and len(records) > CHUNK) as advance:
        for start in range(0, len(records), CHUNK):
            chunk = records[start : start + CHUNK]
            yield chunk
            advance(len(chunk))


def pad_token_id_of(tokenizer) -> int:
    """The tokenizer's pad id, else its eos id; ValueError when it has neither."""
    for token_id in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    raise ValueError("the tokenizer has neither a pad nor an eos token; set tokenizer.pad_token")


def truncate(
    prompt: list[int],
    completions: Sequence[list[int]],
    *,
    max_length: int,
    max_prompt_length: int | None,
    truncation_side: str,
    long_prompts: str = "cut",
) -> tuple[list[int], list[list[int]], bool, bool]:
    """(prompt, completions, prompt_cut, any_completion_cut) after the module's rules.

    The returned completions may be empty: the caller treats that as a bad row.
    """
    limit = max_prompt_length
    if limit is None and long_prompts == "cut" and len(prompt) >= max_length:
        limit = max_length // 2  # TRL's habit: keep the prompt's end, half the room
    prompt_cut = limit is not None and len(prompt) > limit
    if limit is not None and prompt_cut:
        prompt = prompt[len(prompt) - limit :] if truncation_side == "left" else prompt[:limit]
    room = max(max_length - len(prompt), 0)
    completion_cut = any(len(c) > room for c in completions)
    return prompt, [c[:room] for c in completions], prompt_cut, completion_cut


CHAR_BOUND_MARGIN = 2  # ×2: a text cut to the bound still has ≥ 2·max_length tokens


def char_bound(tokenizer, max_length: int) -> int:
    """The characters of one text that can matter at `max_length` tokens: max_length × the
    longest token string of the vocabulary (a token covers at most that many characters; a
    byte-level symbol stands for ≥ 1 byte of text) × CHAR_BOUND_MARGIN."""
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
    longest = max(map(len, vocab), default=64)  # 64: no vocabulary to read, a generous guess
    return max_length * max(longest, 1) * CHAR_BOUND_MARGIN


def cut_text(text: str, bound: int, keep_end: bool) -> str:
    """`text` cut to `bound` characters (its end kept when `keep_end`); unchanged if it fits."""
    if len(text) <= bound:
        return text
    return text[len(text) - bound :] if keep_end else text[:bound]


def _cut_texts(
    prompts: list[str], completions: list[list[str]], bound: int, truncation_side: str
) -> tuple[list[str], list[list[str]]]:
    """Prompts and completions cut to `bound` characters before tokenising (see the module
    docstring): a prompt keeps the side `truncation_side` keeps, a completion its start."""
    keep_end = truncation_side == "left"
    return (
        [cut_text(p, bound, keep_end) for p in prompts],
        [[cut_text(c, bound, keep_end=False) for c in column] for column in completions],
    )


def render_conversation(tokenizer, prompt: list, completion: list) -> tuple[str, str]:
    """(prompt text, completion text) rendered with the tokenizer's chat template.

    The prompt is rendered with the generation prompt; the completion is what the full
    conversation adds after it. Raises ValueError when the template does not render the full
    conversation as a continuation of the prompt.
    """
    full = tokenizer.apply_chat_template(prompt + completion, tokenize=False)
    for generation_prompt in (True, False):
        text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=generation_prompt)
        if full.startswith(text):
            return text, full[len(text) :]
    raise ValueError("the chat template does not render prompt + completion as a continuation of the rendered prompt")


@dataclass(frozen=True)
class _Rules:
    """The truncation settings (`TRUNCATION_DEFAULTS`), checked; `settings()` is the report's."""

    max_length: int
    max_prompt_length: int | None
    truncation_side: str
    add_eos: bool
    long_prompts: str

    @classmethod
    def of(cls, tokenizer, on_bad_row: str, keywords: dict[str, Any], caller: str) -> _Rules:
        for name in keywords:
            if name not in TRUNCATION_DEFAULTS:
                raise TypeError(f"{caller}() got an unexpected keyword argument {name!r}")
        rules = cls(**{**TRUNCATION_DEFAULTS, **keywords})
        check_policy(on_bad_row)
        if rules.max_length < 2:
            raise ValueError(f"max_length must be ≥ 2, got {rules.max_length}")
        if rules.max_prompt_length is not None and not 1 <= rules.max_prompt_length < rules.max_length:
            raise ValueError(f"max_prompt_length must be in [1, max_length), got {rules.max_prompt_length}")
        if rules.truncation_side not in TRUNCATION_SIDES:
            raise ValueError(f"truncation_side must be one of {TRUNCATION_SIDES}, got {rules.truncation_side!r}")
        if rules.long_prompts not in LONG_PROMPTS:
            raise ValueError(f"long_prompts must be one of {LONG_PROMPTS}, got {rules.long_prompts!r}")
        if rules.add_eos and tokenizer.eos_token_id is None:
            raise ValueError("add_eos=True but the tokenizer has no eos token")
        return rules

    def settings(self) -> dict:
        return asdict(self)


def _require_chat_template(tokenizer, records: Sequence[PairRecord]) -> None:
    if records and records[0].conversational and not getattr(tokenizer, "chat_template", None):
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        raise DataError(
            f"{records[0].file}: conversational rows (lists of messages) need a "
            f"tokenizer with a chat template, and tokenizer {name!r} has none. Set "
            f"tokenizer.chat_template, or give the rows as plain text."
        )


def _texts(
    tokenizer,
    records: Sequence[PairRecord | UnpairedRecord],
    fields: tuple[str, ...],
    cols: ColumnMap,
    bad: list[BadRow],
) -> tuple[list, list[str], list[list[str]]]:
    """Render every record to text; returns (kept records, prompts, completions per field)."""
    kept: list = []
    prompts: list[str] = []
    completions: list[list[str]] = [[] for _ in fields]
    for record in records:
        if isinstance(record, PairRecord) and record.conversational:
            try:
                rendered = [
                    render_conversation(tokenizer, cast(list, record.prompt), getattr(record, f)) for f in fields
                ]
            except ValueError as err:
                bad.append(bad_row(record, cols.chosen, R.CHAT_TEMPLATE_MISMATCH, str(err)))
                continue
            except Exception as err:  # e.g. a strict template raising on an unknown role
                bad.append(_template_refusal(tokenizer, record, fields, cols, err))
                continue
            prompt, texts = rendered[0][0], [c for _, c in rendered]
        else:
            prompt, texts = cast(str, record.prompt), [getattr(record, f) for f in fields]
        kept.append(record)
        prompts.append(prompt)
        for column, text in zip(completions, texts):
            column.append(text)
    return kept, prompts, completions


def _template_refusal(
    tokenizer, record: PairRecord, fields: tuple[str, ...], cols: ColumnMap, err: Exception
) -> BadRow:
    """The bad row for a chat template that raised while rendering `record`: the prompt's
    field when the prompt alone fails, else the first completion field that fails.

    Errors that are not the template refusing this row (a template that does not compile, or
    anything but a jinja2 error) are raised as they are.
    """
    from jinja2 import TemplateError, TemplateSyntaxError

    if isinstance(err, TemplateSyntaxError):
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        raise DataError(f"the chat template of tokenizer {name!r} does not compile: {err}")
    if not isinstance(err, TemplateError):
        raise err

    def fails(messages: Any, **kwargs) -> str | None:
        try:
            tokenizer.apply_chat_template(messages, tokenize=False, **kwargs)
        except TemplateError as e:
            return str(e)
        return None

    prompt_field = cols.chosen if record.implicit_prompt else cols.prompt
    problem = fails(record.prompt, add_generation_prompt=True)
    if problem is not None:
        return bad_row(
            record, prompt_field, R.CHAT_TEMPLATE_ERROR, f"the chat template refuses the prompt messages: {problem}"
        )
    for f in fields:
        problem = fails(record.prompt + getattr(record, f))
        if problem is not None:
            return bad_row(
                record,
                getattr(cols, f),
                R.CHAT_TEMPLATE_ERROR,
                f"the chat template refuses the conversation: {problem}",
            )
    return bad_row(record, cols.chosen, R.CHAT_TEMPLATE_ERROR, f"the chat template refuses the conversation: {err}")


@dataclass
class _Output:
    """What the chunks add up to: the kept records and their ids, the bad rows, the cut counts
    (prompts, pairs or examples with a completion cut)."""

    encoded: IdColumns
    bad: list[BadRow]
    kept: list = field(default_factory=list)
    cuts: list[int] = field(default_factory=lambda: [0, 0])


def _finish(
    kind: str,
    tokenizer,
    rows: list[Row],
    fmt: str,
    out: _Output,
    on_bad_row: str,
    names: tuple[Sequence[str] | None, Sequence[str] | None],
    settings: dict,
) -> PreferenceData:
    """Apply the bad-row policy and build the examples, names (`names`: groups, sources) and
    report."""
    bad, records = sorted(out.bad, key=lambda b: (b.file, b.row)), out.kept
    if bad and on_bad_row == "error":
        raise DataError.from_bad_rows(bad, len(rows))
    groups, sources = names
    # a held-out group unseen in training is "no group" (-1): the objective has no weight for it
    group_names, group_ids = number_names(groups or [], [r.extras.group for r in records], extend=groups is None)
    source_names, source_ids = number_names(sources or [], [r.extras.source for r in records])
    example_files = sorted({r.file for r in records})
    file_ids = {f: i for i, f in enumerate(example_files)}
    meta: dict[str, list] = {name: [] for name in META_COLUMNS}
    for index, record in enumerate(records):
        x = record.extras
        for name, value in (
            ("index", index),
            ("row", record.row),
            ("file_id", file_ids[record.file]),
            ("weight", x.weight),
            ("group", group_ids.get(x.group, -1)),
            ("source", source_ids.get(x.source, -1)),
            ("target_prob", x.target_prob),
            ("ratio", x.ratio),
        ):
            meta[name].append(float("nan") if value is None else value)
    if kind == "unpaired":
        meta["label"] = [bool(r.label) for r in records]
    examples = ExampleTable(kind, {**out.encoded.arrays(), **columns_as_arrays(meta)}, example_files)
    files = sorted({r.file for r in rows})
    report = DataReport(
        source=", ".join(files) or "<no rows>",
        format=fmt,
        rows_read=len(rows),
        kept=len(examples),
        bad_rows=bad,
        truncated_prompt=out.cuts[0],
        truncated_completion=out.cuts[1],
        settings=settings,
    )
    assert report.kept + report.n_skipped == report.rows_read, "a row was lost"
    return PreferenceData(examples, kind, pad_token_id_of(tokenizer), group_names, source_names, settings, report)


def tokenize_pairs(
    rows: Sequence[Row] | Sequence[Mapping[str, Any]],
    tokenizer,
    *,
    format: str | None = None,
    columns: ColumnMap | Mapping[str, str] | None = None,
    on_bad_row: str = "error",
    marker: str = HH_ASSISTANT_MARKER,
    groups: Sequence[str] | None = None,
    sources: Sequence[str] | None = None,
    progress: bool = False,
    **truncation: Any,
) -> PreferenceData:
    """Validate and tokenize preference pairs into `PreferenceData`.

    `rows` come from `load_rows` (or are plain dicts). `format`/`columns`/`marker`: see
    `validate_pairs`. `on_bad_row="error"` raises DataError listing the bad rows (validation
    and tokenization ones together); ``"skip"`` drops them, counted in ``data.report``.
    `groups`/`sources`: names whose ids are fixed first (a training set's); new sources
    follow, while a group not in `groups` is "no group" (−1). `truncation`: the keywords
    ``max_length`` (512), ``max_prompt_length`` (None), ``truncation_side`` ("left"),
    ``add_eos`` (True) and ``long_prompts`` ("cut"); the rules: the module docstring.
    `progress`: show a bar while tokenising (the records are tokenised CHUNK at a time, so the
    tokenizer's output for the whole set is never held at once).
    """
    rules = _Rules.of(tokenizer, on_bad_row, truncation, "tokenize_pairs")
    rows, cols = as_rows(rows), ColumnMap.of(columns)
    fmt, records, bad = validate_pairs(rows, format=format, columns=columns, marker=marker)
    _require_chat_template(tokenizer, records)
    out, bound = _Output(IdColumns(ID_FIELDS["pairs"]), bad), char_bound(tokenizer, rules.max_length)
    for chunk in _chunks(records, progress, "tokenising pairs"):
        _encode_chunk(
            tokenizer,
            chunk,
            ("chosen", "rejected"),
            cols,
            rules,
            out,
            bound=bound,
            special_prompt=fmt != "conversational",
        )
    return _finish("pairs", tokenizer, rows, fmt, out, on_bad_row, (groups, sources), rules.settings())


def tokenize_unpaired(
    rows: Sequence[Row] | Sequence[Mapping[str, Any]],
    tokenizer,
    *,
    columns: ColumnMap | Mapping[str, str] | None = None,
    on_bad_row: str = "error",
    groups: Sequence[str] | None = None,
    sources: Sequence[str] | None = None,
    progress: bool = False,
    **truncation: Any,
) -> PreferenceData:
    """Validate and tokenize unpaired rows (prompt, completion, label); as `tokenize_pairs`."""
    rules = _Rules.of(tokenizer, on_bad_row, truncation, "tokenize_unpaired")
    rows, cols = as_rows(rows), ColumnMap.of(columns)
    records, bad = validate_unpaired(rows, columns=columns)
    out, bound = _Output(IdColumns(ID_FIELDS["unpaired"]), bad), char_bound(tokenizer, rules.max_length)
    for chunk in _chunks(records, progress, "tokenising examples"):
        _encode_chunk(tokenizer, chunk, ("completion",), cols, rules, out, bound=bound, special_prompt=True)
    return _finish("unpaired", tokenizer, rows, "unpaired", out, on_bad_row, (groups, sources), rules.settings())


def _encode_chunk(
    tokenizer,
    records: Sequence[PairRecord | UnpairedRecord],
    fields: tuple[str, ...],
    cols: ColumnMap,
    rules: _Rules,
    out: _Output,
    *,
    bound: int,
    special_prompt: bool,
) -> None:
    """Render, tokenize and truncate one chunk of records (completion `fields`: chosen and
    rejected, or completion); add the kept ones, the bad ones and the cuts to `out`."""
    kept, prompts, completions = _texts(tokenizer, records, fields, cols, out.bad)
    prompts, completions = _cut_texts(prompts, completions, bound, rules.truncation_side)
    prompt = encode(tokenizer, prompts, special_prompt)
    columns = [encode(tokenizer, texts, False) for texts in completions]
    if rules.add_eos:
        columns = [c.with_eos(tokenizer.eos_token_id) for c in columns]
    prompt, columns, prompt_cut, completion_cut = _truncate(rules, prompt, columns)
    codes = _problems(rules, prompt, columns)
    for i in np.flatnonzero(codes):
        name, reason, detail = _problem(int(codes[i]), int(prompt.lengths[i]), fields, rules)
        out.bad.append(bad_row(kept[i], getattr(cols, name), reason, detail))
    ok = np.flatnonzero(codes == 0)
    out.kept.extend(kept[i] for i in ok)
    out.encoded.extend([ids.gather(ok) for ids in (prompt, *columns)], [ids.lengths[ok] for ids in (prompt, *columns)])
    out.cuts[0] += int(prompt_cut[ok].sum())
    out.cuts[1] += int(completion_cut[ok].sum())


def _truncate(rules: _Rules, prompt: Ids, completions: list[Ids]) -> tuple[Ids, list[Ids], np.ndarray, np.ndarray]:
    """`truncate` on every row of a chunk: (prompt, completions, prompt cut, a completion cut)."""
    lengths, max_length = prompt.lengths, rules.max_length
    limit = np.full(
        len(lengths),
        np.iinfo(np.int64).max if rules.max_prompt_length is None else rules.max_prompt_length,
        dtype=np.int64,
    )
    if rules.max_prompt_length is None and rules.long_prompts == "cut":
        limit[lengths >= max_length] = max_length // 2  # TRL's habit: keep the end, half the room
    kept = np.minimum(lengths, limit)
    skip = lengths - kept if rules.truncation_side == "left" else 0
    room = np.maximum(max_length - kept, 0)
    cut = [c.lengths > room for c in completions]
    return (
        Ids(prompt.flat, prompt.starts + skip, kept),
        [Ids(c.flat, c.starts, np.minimum(c.lengths, room)) for c in completions],
        lengths > limit,
        np.logical_or.reduce(cut),
    )


# the problem codes of `_problems`, in the order they are checked (then one per completion field)
_OK, _EMPTY_PROMPT, _PROMPT_FILLS = 0, 1, 2


def _problems(rules: _Rules, prompt: Ids, completions: list[Ids]) -> np.ndarray:
    """Each row's problem code: 0 when it forms an example; else 1 (empty prompt), 2 (prompt
    fills max_length), 3 + k (completion k empty), 3 + len(completions) (a pair's two completions
    identical)."""
    conditions = [prompt.lengths == 0, prompt.lengths >= rules.max_length, *[c.lengths == 0 for c in completions]]
    codes = np.select(conditions, np.arange(1, len(conditions) + 1), _OK)
    if len(completions) == 2:
        chosen, rejected = completions
        rows = np.flatnonzero((codes == _OK) & (chosen.lengths == rejected.lengths))
        if len(rows):  # none empty: an empty completion has a code already
            differ = chosen.gather(rows) != rejected.gather(rows)
            starts = np.cumsum(chosen.lengths[rows]) - chosen.lengths[rows]
            codes[rows[~np.logical_or.reduceat(differ, starts)]] = len(conditions) + 1
    return codes


def _problem(code: int, prompt_length: int, fields: tuple[str, ...], rules: _Rules) -> tuple[str, str, str]:
    """(field, reason, detail) of problem `code` (`_problems`)."""
    max_length = rules.max_length
    if code == _EMPTY_PROMPT:
        return "prompt", R.EMPTY, "the prompt tokenizes to zero tokens"
    if code == _PROMPT_FILLS:
        hint = (
            ""
            if rules.max_prompt_length is not None
            else "; set --max-prompt-length, or --long-prompts cut, to cut long prompts"
        )
        return (
            "prompt",
            R.PROMPT_FILLS_MAX_LENGTH,
            f"prompt fills max_length: {prompt_length} "
            f"prompt tokens leave no room for a completion within max_length={max_length}"
            f"{hint}",
        )
    if code - 3 < len(fields):
        return fields[code - 3], R.EMPTY, "the completion tokenizes to zero tokens"
    return (
        "rejected",
        R.CHOSEN_EQUALS_REJECTED,
        f"chosen and rejected are identical after tokenization and truncation to max_length={max_length}",
    )
