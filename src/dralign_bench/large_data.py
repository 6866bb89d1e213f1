"""Loading, validating and tokenising a large preference file: time and peak memory.

    python -m dralign_bench.large_data --file FILE.jsonl --generate 200000     # write the test file once
    /usr/bin/time -v python -m dralign_bench.large_data --file FILE.jsonl [--cache-dir DIR]

The file holds explicit pairs of generated text (a prompt of ~30 words, responses of 25); the
tokenizer is the offline tiny BPE. With --cache-dir a second run reads the tokenised cache.
"""

from __future__ import annotations

import json
import random
import resource
import sys
import time
from dataclasses import dataclass

from dralign.config import Range, option, parse

WORDS = (
    "good happy great kind thank you very much bad terrible lazy awful sad the weather question answer please briefly"
).split()


def generate(path: str, rows: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(path, "w") as fh:
        for i in range(rows):
            fh.write(
                json.dumps(
                    {
                        "prompt": f"Human: question {i}: " + " ".join(rng.choices(WORDS, k=30)) + "? Assistant:",
                        "chosen": " " + " ".join(rng.choices(WORDS, k=25)) + ".",
                        "rejected": " " + " ".join(rng.choices(WORDS, k=25)) + ".",
                        "group": "ab"[i % 2],
                    }
                )
                + "\n"
            )


@dataclass
class LargeDataOptions:
    """A large preference file: generate it, or time loading it."""

    file: str | None = option(None, "the JSONL file (required)")
    generate: int = option(0, "write this many generated pairs to --file and stop (0: load it)", Range(0))
    cache_dir: str | None = option(None, "tokenised-data cache folder")


@dataclass
class LargeDataConfig:
    large_data: LargeDataOptions


def main(argv: list[str] | None = None) -> None:
    args = parse(LargeDataConfig, argv, "python -m dralign_bench.large_data", __doc__.splitlines()[0]).large_data
    if not args.file:
        print("python -m dralign_bench.large_data: error: pass --file FILE.jsonl", file=sys.stderr)
        raise SystemExit(2)
    if args.generate:
        generate(args.file, args.generate)
        return
    from dralign.data import Columns, Truncation, load_pairs
    from dralign.modeling.tiny import tiny_tokenizer

    tokenizer, start = tiny_tokenizer(), time.perf_counter()
    data = load_pairs(
        args.file, tokenizer, Columns(), Truncation(max_length=128), on_bad_row="skip", cache_dir=args.cache_dir
    )
    print(
        f"{len(data)} pairs in {time.perf_counter() - start:.1f} s; peak RSS "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )


if __name__ == "__main__":
    main()
