"""`dralign eval`: a trained model on held-out preference pairs and/or sampled completions.

* ``--data`` (with ``--reference``): accuracy, reward margins and calibration (ECE, Brier of
  σ(β·margin)) on held-out pairs, overall and per group / source with the worst one named
  (:func:`dralign.eval.preference_report`). The file is read, validated, cut and reported with
  the trainer's own data options (`EvalDataOptions`), so the numbers are the trainer's final
  held-out evaluation's on the same model, reference and data.
* ``--prompts``: completions sampled from the model (and from ``--reference``, the start model),
  scored by every ``--reward``: mean rewards, win rate over the start model, KL(π‖π_start),
  diversity and length (:func:`dralign.eval.generation_eval`).
* ``--reward-b`` (with ``--prompts``): a shift sweep of the mixture of the first ``--reward``
  (r_a) and ``--reward-b`` over ``--alphas``, with the worst case over the grid
  (:func:`dralign.eval.shift_sweep`).

Every mean has a 95 % bootstrap interval. The table is printed; ``--output x.json`` also writes
JSON, and ``x.png`` (per-group accuracy, reliability diagram) when matplotlib is installed.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..config import SEED_RANGE, atomic_write_text, option, to_flat_dict
from ..printable import shown_markup  # group names, sources, values: data, printed inert
from .mixtures import DEFAULT_ALPHAS
from .registry import PROMPTS

__all__ = ["EvalConfig", "EvalDataOptions", "EvalOptions", "load_prompts", "run_eval",
           "tokenize_options"]


@dataclass
class EvalOptions:
    """Evaluation of a trained model (preference pairs, generations, shift sweeps)."""

    model: str | None = option(None, "the model to evaluate: a local folder or a Hugging Face hub name")
    reference: str | None = option(None, "the start/reference model: needed by --data metrics, by KL and by win rates")
    data: str | None = option(None, "held-out preference file or folder (any format `dralign train` reads); read, cut and reported exactly as `dralign train` reads its --eval-data")
    data_split: str = option("test", "split of --data when it is a hub dataset or a saved DatasetDict")
    beta: float = option(0.1, "beta of the implicit reward beta*(log pi - log pi_ref) on --data")
    prompts: str | None = option(None, "prompts to sample from: a .txt file (one per line), a JSONL/JSON/Parquet/CSV file with a prompt column (--prompt-column), or a spec a package registers (the shift world's world:heldout:N / world:train:N)")
    reward: list[str] = option([], "reward(s) of the completions: a spec a package registers (the shift world's world:NAME, world:mix:A,B,ALPHA[,linear|geometric]), package.module:function, or a sequence-classification model")
    reward_b: str | None = option(None, "shift sweep: the second reward r_b, mixed with the first --reward r_a")
    alphas: list[float] = option(list(DEFAULT_ALPHAS), "shift sweep: the mixture weights alpha of r_a")
    mixture: Literal["linear", "geometric"] = option("linear", "shift sweep: alpha*r_a + (1-alpha)*r_b or r_a^alpha * r_b^(1-alpha)")
    num_samples: int = option(1, "completions per prompt")
    max_new_tokens: int = option(48, "max tokens per completion (eos ends one earlier)")
    temperature: float = option(1.0, "sampling temperature (1 = the model's distribution; KL is only unbiased at 1; 0 = greedy)")
    top_p: float = option(1.0, "nucleus sampling mass (1 = off)")
    seed: int = option(0, "seed of sampling, world prompts and bootstrap intervals", SEED_RANGE)
    batch_size: int = option(32, "sequences per forward pass")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = option("auto", "weights dtype when loading")
    device: str | None = option(None, "device to run on (default: cuda if available, else cpu)")
    output: str | None = option(None, "write the results as JSON here, and beside it (x.json -> x.png) per-group accuracy and a reliability diagram (default: print only)")


# The options with which `dralign train` reads, validates, cuts and reports its data: eval takes
# them from the trainer's DataOptions (same flags, defaults and checks), so the two cannot drift.
SHARED_DATA_OPTIONS = ("data_subset", "format", "prompt_column", "chosen_column", "rejected_column",
                       "weight_column", "group_column", "source_column", "target_prob_column",
                       "ratio_column", "max_length", "max_prompt_length", "truncation_side",
                       "long_prompts", "on_bad_row", "prefix_sharing")
_COLUMN_FIELDS = ("prompt", "chosen", "rejected", "weight", "group", "source", "target_prob", "ratio")


def _data_options() -> type:
    """EvalDataOptions: the `SHARED_DATA_OPTIONS` fields of `dralign.train.config.DataOptions`."""
    from ..train.config import DataOptions

    hints = typing.get_type_hints(DataOptions)
    shared = [(f.name, hints[f.name], dataclasses.field(default=f.default, default_factory=f.default_factory,
                                                        metadata=f.metadata))
              for f in dataclasses.fields(DataOptions) if f.name in SHARED_DATA_OPTIONS]
    return dataclasses.make_dataclass("EvalDataOptions", shared, namespace={
        "__doc__": "How --data (and a --prompts table's prompt column) is read: as `dralign train` reads its data."})


EvalDataOptions = _data_options()


@dataclass
class EvalConfig:
    eval: EvalOptions
    data: EvalDataOptions = dataclasses.field(default_factory=EvalDataOptions)


def tokenize_options(d) -> dict:
    """The keyword arguments of :func:`dralign.data.tokenize_pairs` for data options `d` (an
    `EvalDataOptions` or the trainer's `DataOptions`), as the trainer passes them."""
    from ..data import ColumnMap

    return dict(columns=ColumnMap(**{f: getattr(d, f"{f}_column") for f in _COLUMN_FIELDS}),
                format=None if d.format == "auto" else d.format, on_bad_row=d.on_bad_row,
                max_length=d.max_length, max_prompt_length=d.max_prompt_length,
                truncation_side=d.truncation_side, long_prompts=d.long_prompts)


# ---------------------------------------------------------------------------------------------
# Prompts
# ---------------------------------------------------------------------------------------------

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
        raise ValueError(f"{where}: the prompt is a list of messages but the tokenizer has no "
                         "chat template")
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception as err:  # jinja errors of a malformed message list
        raise ValueError(f"{where}: cannot render the messages with the chat template: "
                         f"{err}") from None


def load_prompts(spec: str, *, tokenizer=None, seed: int = 0,
                 column: str = "prompt") -> tuple[list[str], bool]:
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
        raise DataError(f"prompts file not found: {spec} (expected a file"
                        + (f", or {schemes})" if schemes else ")"))
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
            raise DataError(f"{where}: field {column!r} must be a non-empty string"
                            + (" or a list of messages" if tokenizer is not None else "")
                            + f", got {type(value).__name__}")
    if not prompts:
        raise DataError(f"{spec}: no prompts")
    if len(kinds) > 1:
        raise DataError(f"{spec}: mixes plain-text prompts and lists of messages")
    return prompts, kinds == {"messages"}


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------

def _check(cfg: EvalConfig) -> None:
    """Refuse an incomplete or inconsistent configuration before loading anything."""
    opts = cfg.eval
    if not opts.model:
        raise ValueError("pass --model (the model to evaluate)")
    if not opts.data and not opts.prompts:
        raise ValueError("nothing to evaluate: pass --data (held-out preference pairs) and/or "
                         "--prompts (prompts to sample completions from)")
    if opts.data and not opts.reference:
        raise ValueError("--data needs --reference: the preference metrics use the implicit "
                         "reward beta*(log pi - log pi_ref) of the reference (start) model")
    if opts.reward_b and not opts.reward:
        raise ValueError("--reward-b needs --reward: the shift sweep mixes the first --reward "
                         "(r_a) with --reward-b (r_b)")
    if (opts.reward or opts.reward_b) and not opts.prompts:
        raise ValueError("--reward and --reward-b score sampled completions: pass --prompts")
    if opts.reward_b and not opts.alphas:
        raise ValueError("--alphas is empty: the shift sweep needs at least one alpha")
    for name in ("num_samples", "max_new_tokens", "batch_size"):
        if getattr(opts, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(opts, name)}")
    if opts.beta <= 0:
        raise ValueError(f"--beta must be > 0, got {opts.beta}")
    if len(set(opts.reward)) != len(opts.reward):
        raise ValueError(f"--reward lists a reward twice: {opts.reward}")
    if opts.data and cfg.data.format == "unpaired":
        raise ValueError("--format unpaired: the preference metrics on --data need pairs "
                         "(prompt, chosen, rejected)")


def _load(opts: EvalOptions, name: str, device: str):
    from ..modeling import load_model

    return load_model(name, dtype=opts.dtype).to(device)


def run_eval(cfg: EvalConfig, console=None) -> dict:
    """Run every evaluation the options ask for; print a table; write JSON to ``output``.

    Returns ``{"model", "reference", "preference"?, "generation"?, "shift_sweep"?, "config"}``
    with MeanCI values (the JSON file holds :func:`dralign.eval.to_jsonable` of it). Bad options
    or input raise ValueError / DataError with a one-line message.
    """
    import torch
    from rich.console import Console

    from ..data import load_rows, tokenize_pairs
    from ..modeling import load_tokenizer
    from .evaluate import generation_eval, shift_sweep, to_jsonable
    from .groups import preference_report
    from .rewards import load_reward

    opts = cfg.eval
    _check(cfg)
    console = console or Console()
    device = opts.device or ("cuda" if torch.cuda.is_available() else "cpu")
    # Everything that can fail cheaply fails before the models load.
    rewards = {spec: load_reward(spec, device=device) for spec in opts.reward}
    reward_b = load_reward(opts.reward_b, device=device) if opts.reward_b else None
    tokenizer = load_tokenizer(opts.model)
    prompts = rendered = None
    if opts.prompts:
        prompts, rendered = load_prompts(opts.prompts, tokenizer=tokenizer, seed=opts.seed,
                                         column=cfg.data.prompt_column)
    data = None
    if opts.data:
        # read, validated, cut and reported as the trainer reads --eval-data (train/inputs.py)
        rows = load_rows(opts.data, subset=cfg.data.data_subset, split=opts.data_split)
        data = tokenize_pairs(rows, tokenizer, **tokenize_options(cfg.data))
        console.print(f"eval data: {data.report.summary()}", markup=False)  # nothing dropped silently
        if len(data) == 0:
            r = data.report
            raise ValueError(f"{opts.data}: no valid pairs to evaluate (read {r.rows_read}, "
                             f"skipped {r.n_skipped}: {r.skipped})")

    model = _load(opts, opts.model, device)
    reference = _load(opts, opts.reference, device) if opts.reference else None
    if reference is not None:
        sizes = (model.get_input_embeddings().num_embeddings,
                 reference.get_input_embeddings().num_embeddings)
        if sizes[0] != sizes[1]:
            raise ValueError(f"--model and --reference have different vocabularies ({sizes[0]} "
                             f"vs {sizes[1]} tokens); they must share the tokenizer")

    results: dict[str, Any] = {"model": opts.model, "reference": opts.reference}
    if data is not None:
        results["data"] = data.report.counts()
        sharing = _prefix_sharing(cfg.data.prefix_sharing, model, data, console)
        with console.status("preference metrics on held-out pairs"):
            results.update(preference_report(model, reference, data, beta=opts.beta,
                                             batch_size=opts.batch_size, seed=opts.seed,
                                             prefix_sharing=sharing))
    if prompts is not None:
        from .generate import sample_completions

        sample_kwargs = dict(num_samples=opts.num_samples, max_new_tokens=opts.max_new_tokens,
                             temperature=opts.temperature, top_p=opts.top_p, seed=opts.seed,
                             batch_size=opts.batch_size, add_special_tokens=not rendered)
        with console.status(f"sampling {len(prompts)} x {opts.num_samples} completions"):
            policy_c = sample_completions(model, tokenizer, prompts, **sample_kwargs)
            start_c = (sample_completions(reference, tokenizer, prompts, **sample_kwargs)
                       if reference is not None else None)
        with console.status("scoring completions"):
            results["generation"] = generation_eval(
                model, reference, tokenizer, prompts, rewards=rewards,
                policy_completions=policy_c, start_completions=start_c, **sample_kwargs)
            if reward_b is not None:
                results["shift_sweep"] = shift_sweep(
                    policy_c.prompts, policy_c.texts, rewards[opts.reward[0]], reward_b,
                    opts.alphas, mixture=opts.mixture,
                    baseline_responses=start_c.texts if start_c is not None else None,
                    seed=opts.seed, num_samples=opts.num_samples)
                results["shift_sweep"].update(reward_a=opts.reward[0], reward_b=opts.reward_b)
    results["config"] = to_flat_dict(cfg)

    print_results(results, console)
    if opts.output:
        import json

        atomic_write_text(opts.output, json.dumps(to_jsonable(results), indent=2) + "\n")
        console.print(f"wrote {opts.output}")
        if "preference" in results:
            _plot(results, opts.output, console)
    return results


def _prefix_sharing(setting: str, model, data, console) -> bool:
    """The trainer's layout choice (`dralign.modeling.choose_prefix_sharing`), on the held-out
    data: the same layout gives the trainer's held-out numbers to the last float bit."""
    from ..modeling import choose_prefix_sharing

    sharing, why = choose_prefix_sharing(setting, model, data, penalized=False, unpaired=False)
    if setting != "off":
        console.print(f"prefix sharing {'on' if sharing else 'off'} ({why})")
    return sharing


def _plot(results: dict, output: str, console) -> None:
    """x.json → x.png, or one line saying why not (matplotlib is an extra, not a dependency)."""
    from .plots import INSTALL_HINT, plot_path, write_plot

    png = plot_path(output)
    if write_plot(results, png):
        console.print(f"wrote {png}")
    else:
        console.print(f"no plot: matplotlib is not installed ({INSTALL_HINT} to get {png})",
                      markup=False)  # the hint's [bench] is text, not rich markup


# ---------------------------------------------------------------------------------------------
# Printing
# ---------------------------------------------------------------------------------------------

def _rows(results: dict) -> list[tuple[str, str, Any]]:
    """(section, metric, value) rows of the results table; value a MeanCI, number or note."""
    rows: list[tuple[str, str, Any]] = []
    data = results.get("data")
    if data:
        for key in ("rows_read", "kept", "skipped", "truncated_prompt", "truncated_completion"):
            rows.append(("data", key, data[key]))
        for reason, n in data["skipped_by_reason"].items():
            rows.append(("data", f"skipped: {reason}", n))
    pref = results.get("preference")
    if pref:
        for key in ("accuracy", "margin", "reward_chosen", "reward_rejected", "ece", "brier"):
            rows.append(("preference", key, pref[key]))
    gen = results.get("generation")
    if gen:
        for name, r in gen["rewards"].items():
            rows.append(("generation", f"{name}: policy", r["policy"]))
            rows.append(("generation", f"{name}: start", r["start"] or "needs --reference"))
            rows.append(("generation", f"{name}: win rate vs start",
                         r["win_rate"] or "needs --reference"))
        rows.append(("generation", "KL(policy || start)", gen["kl"] or "needs --reference"))
        for key in ("length", "token_entropy", "distinct_1", "distinct_2", "eos_rate"):
            rows.append(("generation", key, gen[key]))
            if gen["start"] is not None:
                rows.append(("generation", f"{key}: start", gen["start"][key]))
    sweep = results.get("shift_sweep")
    if sweep:
        for a in sweep["alphas"]:
            rows.append(("shift sweep", f"r(alpha={a:g})", sweep["reward"][a]))
            if "win_rate" in sweep:
                rows.append(("shift sweep", f"win rate (alpha={a:g})", sweep["win_rate"][a]))
        rows.append(("shift sweep", "average over alphas", sweep["average"]))
        rows.append(("shift sweep", f"worst: r(alpha={sweep['worst']['alpha']:g})",
                     sweep["worst"]["reward"]))
        if "worst_win_rate" in sweep:
            w = sweep["worst_win_rate"]
            rows.append(("shift sweep", f"worst win rate (alpha={w['alpha']:g})", w["win_rate"]))
    return rows


def print_results(results: dict, console) -> None:
    """A rich table of every metric with its 95 % interval."""
    from rich.table import Table

    from ..stats import MeanCI

    table = Table(title=f"dralign eval: {shown_markup(results.get('model'))}")
    for col, justify in (("section", "left"), ("metric", "left"), ("value", "right"),
                         ("95% interval", "right"), ("n", "right")):
        table.add_column(col, justify=justify, overflow="fold")
    for section, metric, value in _rows(results):
        if isinstance(value, MeanCI):
            table.add_row(shown_markup(section), shown_markup(metric), f"{value.mean:.4g}",
                          f"[{value.low:.4g}, {value.high:.4g}]", str(value.n))
        elif isinstance(value, float):
            table.add_row(shown_markup(section), shown_markup(metric), f"{value:.4g}", "", "")
        else:
            table.add_row(shown_markup(section), shown_markup(metric), shown_markup(value), "", "")
    console.print(table)
    for column in ("group", "source"):
        if results.get(f"{column}s"):
            print_breakdown(results, column, console)
    if results.get("shift_sweep"):
        s = results["shift_sweep"]
        console.print(shown_markup(f"shift sweep: r(alpha) = {s['mixture']} mixture of r_a = "
                                   f"{s['reward_a']} and r_b = {s['reward_b']}"))


def print_breakdown(results: dict, column: str, console) -> None:
    """The per-group (or per-source) table, the worst one marked, and a line naming it."""
    from rich.table import Table

    from .groups import NO_GROUP

    by, worst = results[f"{column}s"], results[f"worst_{column}"]
    table = Table(title=f"held-out pairs by {column} (intervals of ece and brier: in the JSON)")
    for col, justify in ((column, "left"), ("n", "right"), ("accuracy [95%]", "right"),
                         ("margin [95%]", "right"), ("ece", "right"), ("brier", "right")):
        table.add_column(col, justify=justify, overflow="fold")
    for name, m in by.items():
        acc, margin = m["accuracy"], m["margin"]
        table.add_row(shown_markup(name) + (" (worst)" if name == worst else ""), str(m["n"]),
                      f"{acc.mean:.3f} [{acc.low:.2f}, {acc.high:.2f}]",
                      f"{margin.mean:.3g} [{margin.low:.3g}, {margin.high:.3g}]",
                      f"{m['ece'].mean:.3f}", f"{m['brier'].mean:.3f}")
    console.print(table)
    if worst is not None:
        console.print(f"worst {column}: {shown_markup(worst)} (accuracy {by[worst]['accuracy']}, "
                      f"{by[worst]['n']} pairs)")
    missing = results[f"rows_without_{column}"]
    if missing:
        console.print(f"{missing} pairs have no {column}: counted under {NO_GROUP!r}, not a {column}")
