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
The prompts are read by `eval/prompts.py`, the tables printed by `eval/tables.py`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from ..config import SEED_RANGE, Range, atomic_write_text, check_ranges, option, to_flat_dict
from ..data.options import ReadOptions, SharingOption
from ..lengths import LengthOption
from ..train.config import DTYPE_HELP
from .mixtures import DEFAULT_ALPHAS
from .prompts import load_prompts
from .tables import print_results

# load_prompts (eval/prompts.py) and print_results (eval/tables.py) stay importable from here
__all__ = ["EvalConfig", "EvalDataOptions", "EvalOptions", "load_prompts", "print_results", "run_eval"]


@dataclass
class EvalOptions(LengthOption):
    """Evaluation of a trained model (preference pairs, generations, shift sweeps)."""

    model: str | None = option(None, "the model to evaluate: a local folder, a Hugging Face hub name or a GGUF file")
    reference: str | None = option(
        None,
        "the start/reference model (a folder, hub name or GGUF file): needed by --data metrics, by KL and by win rates",
    )
    data: str | None = option(
        None,
        "held-out preference file or folder (any format `dralign train` reads); read, cut and reported exactly as `dralign train` reads its --eval-data",
    )
    data_split: str = option("test", "split of --data when it is a hub dataset or a saved DatasetDict")
    beta: float = option(
        0.1, "beta of the implicit reward beta*(log pi - log pi_ref) on --data", Range(0, low_open=True)
    )
    per_pair: str | None = option(
        None,
        "--data: also write one JSON line per pair here (file, row, group, source, token lengths, policy and reference log-probs, margin, p_chosen)",
    )
    ref_cache_dir: str | None = option(
        None,
        "--data: read the reference log-probs from the cache in this folder (written there first when it has none); default: the cache of the training run --model comes from, when it holds these pairs",
    )
    prompts: str | None = option(
        None,
        "prompts to sample from: a .txt file (one per line), a JSONL/JSON/Parquet/CSV file with a prompt column (--prompt-column), or a spec a package registers (the shift world's world:heldout:N / world:train:N)",
    )
    reward: list[str] = option(
        [],
        "reward(s) of the completions: a spec a package registers (the shift world's world:NAME, world:mix:A,B,ALPHA[,linear|geometric]), package.module:function, or a sequence-classification model",
    )
    reward_b: str | None = option(None, "shift sweep: the second reward r_b, mixed with the first --reward r_a")
    alphas: list[float] = option(list(DEFAULT_ALPHAS), "shift sweep: the mixture weights alpha of r_a")
    mixture: Literal["linear", "geometric"] = option(
        "linear", "shift sweep: alpha*r_a + (1-alpha)*r_b or r_a^alpha * r_b^(1-alpha)"
    )
    num_samples: int = option(1, "completions per prompt", Range(1))
    max_new_tokens: int = option(48, "max tokens per completion (eos ends one earlier)", Range(1))
    temperature: float = option(
        1.0, "sampling temperature (1 = the model's distribution; KL is only unbiased at 1; 0 = greedy)", Range(0)
    )
    top_p: float = option(1.0, "nucleus sampling mass (1 = off)", Range(0, 1, low_open=True))
    seed: int = option(0, "seed of sampling, world prompts and bootstrap intervals", SEED_RANGE)
    batch_size: int = option(32, "sequences per forward pass", Range(1))
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = option("auto", DTYPE_HELP)
    device: str | None = option(None, "device to run on (default: cuda if available, else cpu)")
    output: str | None = option(
        None,
        "write the results as JSON here, and beside it (x.json -> x.png) per-group accuracy and a reliability diagram (default: print only)",
    )


@dataclass
class EvalDataOptions(ReadOptions, SharingOption):
    """How --data (and a --prompts table's prompt column) is read: as `dralign train` reads its data."""


@dataclass
class EvalConfig:
    eval: EvalOptions
    data: EvalDataOptions = dataclasses.field(default_factory=EvalDataOptions)


def _check(cfg: EvalConfig) -> None:
    """Refuse an incomplete or inconsistent configuration before loading anything."""
    opts = cfg.eval
    if not opts.model:
        raise ValueError("pass --model (the model to evaluate)")
    if not opts.data and not opts.prompts:
        raise ValueError(
            "nothing to evaluate: pass --data (held-out preference pairs) and/or "
            "--prompts (prompts to sample completions from)"
        )
    if opts.data and not opts.reference:
        raise ValueError(
            "--data needs --reference: the preference metrics use the implicit "
            "reward beta*(log pi - log pi_ref) of the reference (start) model"
        )
    if opts.reward_b and not opts.reward:
        raise ValueError(
            "--reward-b needs --reward: the shift sweep mixes the first --reward (r_a) with --reward-b (r_b)"
        )
    if (opts.reward or opts.reward_b) and not opts.prompts:
        raise ValueError("--reward and --reward-b score sampled completions: pass --prompts")
    if opts.reward_b and not opts.alphas:
        raise ValueError("--alphas is empty: the shift sweep needs at least one alpha")
    check_ranges(cfg)  # the fields' ranges, for a config built in Python
    if len(set(opts.reward)) != len(opts.reward):
        raise ValueError(f"--reward lists a reward twice: {opts.reward}")
    if opts.data and cfg.data.format == "unpaired":
        raise ValueError("--format unpaired: the preference metrics on --data need pairs (prompt, chosen, rejected)")


def _load(opts: EvalOptions, name: str, device: str):
    from ..modeling import load_model

    # transformers wraps PreTrainedModel.to with functools.wraps, which mypy reads as unbound
    return load_model(name, dtype=opts.dtype).to(device)  # type: ignore[arg-type]


def run_eval(cfg: EvalConfig, console=None) -> dict:
    """Run every evaluation the options ask for; print a table; write JSON to ``output``.

    Returns ``{"model", "reference", "preference"?, "generation"?, "shift_sweep"?, "config"}``
    with MeanCI values (the JSON file holds :func:`dralign.eval.to_jsonable` of it). Bad options
    or input raise ValueError / DataError with a one-line message.
    """
    import torch

    from ..console import table_console
    from ..modeling import check_same_tokenizer, load_tokenizer
    from .evaluate import to_jsonable
    from .refcache import cached_eval_reference
    from .rewards import load_reward

    opts = cfg.eval
    _check(cfg)
    assert opts.model is not None, "_check refuses a config without --model"
    console = console or table_console()  # piped: tables at full width, not cut at 80 columns
    device = opts.device or ("cuda" if torch.cuda.is_available() else "cpu")
    # Everything that can fail cheaply fails before the models load.
    rewards = {spec: load_reward(spec, device=device) for spec in opts.reward}
    reward_b = load_reward(opts.reward_b, device=device) if opts.reward_b else None
    tokenizer = load_tokenizer(opts.model)
    if opts.reference:  # a renumbered vocabulary of the same size would score other texts
        check_same_tokenizer(
            tokenizer, load_tokenizer(opts.reference), opts.model, opts.reference, flags=("--model", "--reference")
        )
    prompts = rendered = None
    if opts.prompts:
        prompts, rendered = load_prompts(
            opts.prompts, tokenizer=tokenizer, seed=opts.seed, column=cfg.data.prompt_column
        )
    data = _held_out_pairs(cfg, opts.data, tokenizer, console) if opts.data else None

    model = _load(opts, opts.model, device)
    # a fitting reference cache spares the reference model (and its pass) for --data alone
    cached = cached_eval_reference(opts, data, device, log=console.print) if data is not None else None
    reference = (
        _load(opts, opts.reference, device) if opts.reference and (cached is None or prompts is not None) else None
    )
    if reference is not None:
        sizes = (model.get_input_embeddings().num_embeddings, reference.get_input_embeddings().num_embeddings)
        if sizes[0] != sizes[1]:
            raise ValueError(
                f"--model and --reference have different vocabularies ({sizes[0]} "
                f"vs {sizes[1]} tokens); they must share the tokenizer"
            )

    results: dict[str, Any] = {"model": opts.model, "reference": opts.reference}
    if data is not None:
        results["data"] = data.report.counts()
        results.update(_preference(cfg, model, cached or reference, data, console))
    if prompts is not None:
        results.update(
            _generation(opts, model, reference, tokenizer, prompts, not rendered, rewards, reward_b, console)
        )
    results["config"] = to_flat_dict(cfg)

    print_results(results, console)
    if opts.output:
        import json

        atomic_write_text(opts.output, json.dumps(to_jsonable(results), indent=2) + "\n")
        console.print(f"wrote {opts.output}")
        if "preference" in results:
            _plot(results, opts.output, console)
    return results


def _generation(
    opts: EvalOptions,
    model,
    reference,
    tokenizer,
    prompts: list[str],
    add_special_tokens: bool,
    rewards: dict,
    reward_b,
    console,
) -> dict:
    """--prompts: completions of the model (and of --reference) with the same seed, scored by
    every --reward (`generation`), and the shift sweep over --reward-b (`shift_sweep`)."""
    from .evaluate import generation_eval, shift_sweep
    from .generate import Sampling, sample_completions

    sampling = Sampling(
        num_samples=opts.num_samples,
        max_new_tokens=opts.max_new_tokens,
        temperature=opts.temperature,
        top_p=opts.top_p,
        seed=opts.seed,
        batch_size=opts.batch_size,
        add_special_tokens=add_special_tokens,
    )
    out = {}
    with console.status(f"sampling {len(prompts)} x {opts.num_samples} completions"):
        policy_c = sample_completions(model, tokenizer, prompts, sampling=sampling)
        start_c = (
            sample_completions(reference, tokenizer, prompts, sampling=sampling) if reference is not None else None
        )
    with console.status("scoring completions"):
        out["generation"] = generation_eval(
            model,
            reference,
            tokenizer,
            prompts,
            rewards=rewards,
            policy_completions=policy_c,
            start_completions=start_c,
            sampling=sampling,
        )
        if reward_b is not None:
            out["shift_sweep"] = shift_sweep(
                policy_c.prompts,
                policy_c.texts,
                rewards[opts.reward[0]],
                reward_b,
                opts.alphas,
                mixture=opts.mixture,
                baseline_responses=start_c.texts if start_c is not None else None,
                seed=opts.seed,
                num_samples=opts.num_samples,
            )
            out["shift_sweep"].update(reward_a=opts.reward[0], reward_b=opts.reward_b)
    return out


def _held_out_pairs(cfg: EvalConfig, path: str, tokenizer, console):
    """--data (`path`) read, validated, cut and reported as the trainer reads --eval-data: the
    same loader (`dralign.data.load_pairs`) and data section; its report printed."""
    from ..data import load_pairs

    d = cfg.data
    data = load_pairs(
        d.source(path, cfg.eval.data_split), tokenizer, d.columns(), d.truncation(), d.on_bad_row, format=d.row_format()
    )
    console.print(f"eval data: {data.report.summary()}", markup=False)  # nothing dropped silently
    if len(data) == 0:
        r = data.report
        raise ValueError(f"{path}: no valid pairs to evaluate (read {r.rows_read}, skipped {r.n_skipped}: {r.skipped})")
    return data


def _preference(cfg: EvalConfig, model, reference, data, console) -> dict:
    """The held-out pair metrics (:func:`dralign.eval.groups.report_scores`), the length controls
    included; with --per-pair, the per-pair file written."""
    from .evaluate import score_pairs
    from .groups import report_scores
    from .pairs import write_per_pair

    opts = cfg.eval
    sharing = _prefix_sharing(cfg.data.prefix_sharing, model, data, console)
    scores = score_pairs(
        model, reference, data, beta=opts.beta, batch_size=opts.batch_size, prefix_sharing=sharing, progress=True
    )  # a bar, or lines in a log
    out = report_scores(data, scores, seed=opts.seed, tolerance=opts.length_tolerance)
    if opts.per_pair:
        console.print(
            f"wrote {write_per_pair(opts.per_pair, data, scores)} ({len(data)} pairs, one JSON line each)", markup=False
        )
    return out


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
        console.print(
            f"no plot: matplotlib is not installed ({INSTALL_HINT} to get {png})", markup=False
        )  # the hint's [bench] is text, not rich markup
