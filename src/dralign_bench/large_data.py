"""Loading, validating and tokenising a large preference file: time and peak memory.

    python -m dralign_bench.large_data FILE.jsonl --generate 200000     # write the test file once
    /usr/bin/time -v python -m dralign_bench.large_data FILE.jsonl [--cache-dir DIR]

The file holds explicit pairs of generated text (a prompt of ~30 words, responses of 25); the
tokenizer is the offline tiny BPE. With --cache-dir a second run reads the tokenised cache.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import time

WORDS = ("good happy great kind thank you very much bad terrible lazy awful sad the weather "
         "question answer please briefly").split()


def generate(path: str, rows: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(path, "w") as fh:
        for i in range(rows):
            fh.write(json.dumps({"prompt": f"Human: question {i}: " + " ".join(rng.choices(WORDS, k=30))
                                 + "? Assistant:",
                                 "chosen": " " + " ".join(rng.choices(WORDS, k=25)) + ".",
                                 "rejected": " " + " ".join(rng.choices(WORDS, k=25)) + ".",
                                 "group": "ab"[i % 2]}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("file")
    parser.add_argument("--generate", type=int, metavar="ROWS", help="write ROWS generated pairs to FILE and stop")
    parser.add_argument("--cache-dir", help="tokenised-data cache folder")
    args = parser.parse_args()
    if args.generate:
        generate(args.file, args.generate)
        return
    from dralign.data import Columns, Truncation, load_pairs
    from dralign.modeling.tiny import tiny_tokenizer

    tokenizer, start = tiny_tokenizer(), time.perf_counter()
    data = load_pairs(args.file, tokenizer, Columns(), Truncation(max_length=128), on_bad_row="skip",
                      cache_dir=args.cache_dir)
    print(f"{len(data)} pairs in {time.perf_counter() - start:.1f} s; peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
