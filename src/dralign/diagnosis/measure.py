"""What the data shows without a model: rows, duplicates and contradictions, leakage, lengths,
groups. Every measure reads the tokenised pairs as `dralign train` holds them (`ExampleTable`
columns), so a pair is what the trainer trains on: two rows whose texts differ only in what
truncation cuts away are the same pair here, as they are for training.

Lengths are completion tokens after truncation, the unit of `dralign bench real`'s
"pick the longer response" baseline: 1(L⁺ > L⁻) + ½·1(L⁺ = L⁻) per pair."""

from __future__ import annotations

from collections import Counter

import numpy as np

from ..stats import MeanCI

NO_NAME = "(none)"  # rows without a group / source: counted, never a group
FIELDS = ("prompt_ids", "chosen_ids", "rejected_ids")


def _column_keys(table, field: str) -> list[int]:
    """A 64-bit hash of each example's ids of `field` (collisions: ~n²/2⁶⁴, negligible)."""
    flat, offsets = table.arrays[field], table.arrays[f"{field}.offsets"]
    return [hash(flat[a:b].tobytes()) for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]


def pair_keys(data) -> tuple[list[int], list[int], list[int]]:
    """(prompt, chosen, rejected) hash keys of every pair of `data` (a paired PreferenceData)."""
    prompt, chosen, rejected = (_column_keys(data.examples, f) for f in FIELDS)
    return prompt, chosen, rejected


def rows_report(data) -> dict:
    """Rows read, kept, skipped (and by reason) and cut, from the loader's own report."""
    counts = data.report.counts()
    return {k: counts[k] for k in ("source", "format", "rows_read", "kept", "skipped", "skipped_by_reason")}


def duplicates(keys) -> dict:
    """Exact duplicates (the same prompt, chosen and rejected again) and contradictory pairs
    (the same prompt and responses with chosen and rejected swapped in another row).

    `flip_rate_lower_bound`: of each contradicting set, at least the smaller orientation is
    mislabelled (whichever is right, the other rows disagree with it), so
    Σ min(n(a ≻ b), n(b ≻ a)) / n is a lower bound on the rate of flipped labels."""
    prompts, chosen, rejected = keys
    n = len(prompts)
    oriented = Counter(zip(prompts, chosen, rejected))
    exact = n - len(oriented)
    pairs = rows = flipped = 0
    for (p, c, r), count in oriented.items():
        other = oriented.get((p, r, c), 0)
        if other and c < r:  # each unordered contradiction counted once, from one of its sides
            pairs += 1
            rows += count + other
            flipped += min(count, other)
    return {
        "exact": {"extra_copies": exact, "fraction": exact / n if n else 0.0},
        "contradictory": {"pairs": pairs, "rows": rows, "flip_rate_lower_bound": flipped / n if n else 0.0},
    }


def leakage(train_keys, eval_keys) -> dict:
    """Held-out rows whose prompt (or whole pair) also occurs in the training data."""
    train_prompts = set(train_keys[0])
    train_pairs = set(zip(*train_keys))
    shared_rows = sum(p in train_prompts for p in eval_keys[0])
    n = len(eval_keys[0])
    return {
        "eval_rows": n,
        "eval_rows_with_shared_prompt": shared_rows,
        "shared_prompts": len(train_prompts & set(eval_keys[0])),
        "shared_pairs": sum(k in train_pairs for k in zip(*eval_keys)),
        "fraction": shared_rows / n if n else 0.0,
    }


def completion_lengths(data) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prompt, chosen, rejected) lengths of every pair, as the trainer holds them."""
    t = data.examples
    return tuple(t.lengths(f).astype(np.int64) for f in FIELDS)


def outcome_ci(outcomes: np.ndarray, seed: int, n_resamples: int = 1000) -> MeanCI:
    """Mean and 95 % percentile-bootstrap interval of outcomes in {0, ½, 1}. A resample of such
    values is fixed by how many of each it draws, a multinomial draw, so the bootstrap runs on
    three counts: the same distribution as resampling the values (`dralign.stats.bootstrap_ci`),
    in memory independent of n (resampling 200k values 1,000 times would take 1.6 GB)."""
    n = int(outcomes.size)
    counts = np.array([(outcomes == v).sum() for v in (0.0, 0.5, 1.0)], dtype=np.float64)
    if counts.sum() != n:
        raise ValueError("outcomes must be 0, 0.5 or 1")
    draws = np.random.default_rng(seed).multinomial(n, counts / n, size=n_resamples)
    reps = (0.5 * draws[:, 1] + draws[:, 2]) / n
    low, high = np.quantile(reps, [0.025, 0.975])
    return MeanCI(mean=float(outcomes.mean()), low=float(low), high=float(high), n=n)


def longer_wins(chosen: np.ndarray, rejected: np.ndarray) -> np.ndarray:
    """Per pair the "pick the longer response" outcome 1(L⁺ > L⁻) + ½·1(L⁺ = L⁻)."""
    return (chosen > rejected) + 0.5 * (chosen == rejected)


def length_bias(chosen: np.ndarray, rejected: np.ndarray, seed: int) -> dict:
    """Chosen-longer fraction, the longer-response baseline's accuracy (a 95 % interval) and
    the mean length difference L⁺ − L⁻ of a set of pairs."""
    if chosen.size == 0:
        return {
            "n": 0,
            "chosen_longer_fraction": None,
            "longer_baseline_accuracy": None,
            "mean_length_difference": None,
        }
    return {
        "n": int(chosen.size),
        "chosen_longer_fraction": float((chosen > rejected).mean()),
        "longer_baseline_accuracy": outcome_ci(longer_wins(chosen, rejected), seed),
        "mean_length_difference": float((chosen - rejected).mean()),
    }


def _quantiles(x: np.ndarray) -> dict:
    if x.size == 0:
        return {}
    q = np.quantile(x, [0.5, 0.9, 0.99])
    return {"median": float(q[0]), "p90": float(q[1]), "p99": float(q[2]), "max": int(x.max())}


def lengths_report(data, unit: str, seed: int, cuts_known: bool) -> dict:
    """The `lengths` section: the length baseline, the cut counts (None when the unit is not
    the model's tokens) and the length quantiles of prompts and completions."""
    p, c, r = completion_lengths(data)
    bias = length_bias(c, r, seed)
    report = data.report
    return {
        "unit": unit,
        "chosen_longer_fraction": bias["chosen_longer_fraction"],
        "longer_baseline_accuracy": bias["longer_baseline_accuracy"],
        "mean_length_difference": bias["mean_length_difference"],
        "prompts_cut": report.truncated_prompt if cuts_known else None,
        "completions_cut": report.truncated_completion if cuts_known else None,
        "max_length": data.settings.get("max_length") if cuts_known else None,
        "prompt": _quantiles(p),
        "chosen": _quantiles(c),
        "rejected": _quantiles(r),
        "histograms": _histograms({"prompt": p, "chosen": c, "rejected": r}),
    }


def _histograms(parts: dict[str, np.ndarray], bins: int = 30) -> dict:
    """Counts of each part's lengths on shared edges (0 to the 99th percentile of all; the
    last bin also holds the longer ones), for the plot."""
    top = max(float(np.quantile(x, 0.99)) for x in parts.values()) if parts["prompt"].size else 1.0
    edges = np.linspace(0.0, max(top, 1.0), bins + 1)
    return {
        "edges": edges.tolist(),
        **{k: np.histogram(np.minimum(x, edges[-1]), edges)[0].tolist() for k, x in parts.items()},
    }


def names_of(data, column: str) -> list[str]:
    """The group (or source) name of every pair, `NO_NAME` where it has none."""
    names = data.group_names if column == "group" else data.source_names
    ids = data.examples.arrays[column].astype(np.int64)
    lookup = np.asarray([*names, NO_NAME], dtype=object)
    return lookup[np.where(ids >= 0, ids, len(names))].tolist()


def groups_report(data, column: str, seed: int) -> dict | None:
    """Counts, imbalance (largest / smallest named group) and per-name length bias; None when
    no row has a `column`."""
    names = data.group_names if column == "group" else data.source_names
    if not names:
        return None
    labels = np.asarray(names_of(data, column), dtype=object)
    _, c, r = completion_lengths(data)
    by = {}
    for name in [*names, NO_NAME]:
        mask = labels == name
        if mask.any():
            by[name] = length_bias(c[mask], r[mask], seed)
    sizes = [by[n]["n"] for n in names if n in by]
    return {
        "count": len(sizes),
        "by": by,
        "without": by.get(NO_NAME, {}).get("n", 0),
        "imbalance": max(sizes) / min(sizes) if sizes else None,
        "largest": max(names, key=lambda n: by.get(n, {}).get("n", 0)),
        "smallest": min((n for n in names if n in by), key=lambda n: by[n]["n"]),
    }
