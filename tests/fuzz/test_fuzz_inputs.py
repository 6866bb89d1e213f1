"""Fuzz target (issue 18): random malformed preference files (JSONL, JSON, CSV) and YAML configs
through `dralign train`, in process (`dralign.cli.main`). Each example either trains (exit 0) or
stops with exit 2 and one line naming the file (and the row and field, or the option); a
traceback, a second line or any other exit fails the test.

The examples are derandomised and bounded (`FUZZ_EXAMPLES`, default 25 per target) so the test
runs in CI in well under a minute; set DRALIGN_FUZZ_EXAMPLES=500 to search harder locally (then
with fresh random examples each run).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from pathlib import Path

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from dralign.cli import main  # noqa: E402

FUZZ_EXAMPLES = int(os.environ.get("DRALIGN_FUZZ_EXAMPLES", "25"))
SEARCH = "DRALIGN_FUZZ_EXAMPLES" in os.environ  # a local search draws new examples each run
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=not SEARCH,
    database=None,
    suppress_health_check=list(HealthCheck),
)

GOOD = [
    {"prompt": f"Human: question {i}?\n\nAssistant:", "chosen": f" a kind answer {i}.", "rejected": f" no {i}."}
    for i in range(4)
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["", " ", "\x1b[2J", "nan", "1e999", "-1", "[x]", "\n"]),
)
messages = st.lists(
    st.fixed_dictionaries(
        {
            "role": st.one_of(st.sampled_from(["user", "assistant", "system", "tool"]), scalars),
            "content": st.one_of(st.text(max_size=10), scalars),
        }
    ),
    max_size=3,
)
values = st.one_of(
    scalars, messages, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=4), scalars, max_size=2)
)
FIELDS = ["prompt", "chosen", "rejected", "weight", "group", "source", "ratio", "target_prob"]


@st.composite
def rows(draw):
    """A few good rows, some mutated (a field replaced, dropped or added), some made up."""
    out = []
    for good in GOOD:
        row = dict(good)
        for _ in range(draw(st.integers(0, 2))):
            field = draw(st.sampled_from(FIELDS))
            if draw(st.booleans()):
                row[field] = draw(values)
            else:
                row.pop(field, None)
        out.append(row)
    out += draw(st.lists(st.dictionaries(st.sampled_from(FIELDS), values, max_size=4), max_size=2))
    return out


@st.composite
def data_files(draw):
    """(suffix, bytes) of a preference file: JSONL, JSON or CSV, rows and some garbage."""
    kind = draw(st.sampled_from(["jsonl", "json", "csv"]))
    records = draw(rows())
    garbage = draw(st.lists(st.binary(max_size=12), max_size=1))
    if kind == "jsonl":
        lines = [json.dumps(r).encode() for r in records] + garbage
        return ".jsonl", b"\n".join(lines) + b"\n"
    if kind == "json":
        body = json.dumps(draw(st.one_of(st.just(records), values))).encode()
        return ".json", body + (garbage[0] if garbage else b"")
    text = io.StringIO()
    header = sorted({k for r in records for k in r}) or ["prompt"]
    writer = csv.writer(text)
    writer.writerow(header)
    for r in records:
        writer.writerow(["" if r.get(k) is None else r.get(k) for k in header])
    return ".csv", text.getvalue().encode() + (garbage[0] if garbage else b"")


OPTION_KEYS = [
    "method",
    "beta",
    "lr",
    "batch_size",
    "max_length",
    "max_prompt_length",
    "epochs",
    "label_smoothing",
    "tau",
    "alpha",
    "divergence",
    "truncation_side",
    "on_bad_row",
    "lora_r",
    "lora_target_modules",
    "ratio_target",
    "seed",
    "scheduler",
    "grad_accum",
    "warmup_steps",
    "long_prompts",
    "prompt_column",
    "chosen_column",
    "global_batch",
    # TRL DPOConfig fields
    "learning_rate",
    "per_device_train_batch_size",
    "loss_type",
    "loss_weights",
    "bf16",
    "max_steps",
    "lr_scheduler_type",
    "f_divergence_type",
    "f_alpha_divergence_coef",
    "truncation_mode",
    "report_to",
    "optim",
    "warmup_ratio",
    "num_train_epochs",
]


@st.composite
def yaml_configs(draw):
    """(YAML text, its keys): a mapping of real option / TRL keys to random values, or garbage."""
    if draw(st.integers(0, 4)) == 0:
        return draw(
            st.sampled_from(
                [
                    "[1, 2",
                    "a: b: c",
                    "- x\n- y",
                    "!!python/object:os.system x",
                    "key: &a [*a]",
                    "\t",
                    "x: 1\nx: 2",
                    "? [a]\n: b",
                    "~",
                ]
            )
        ), []
    mapping = draw(st.dictionaries(st.sampled_from(OPTION_KEYS), values, min_size=1, max_size=4))
    return yaml.safe_dump(mapping, allow_unicode=True), list(mapping)


@contextlib.contextmanager
def working_directory(folder: Path):
    """contextlib.chdir, which Python 3.10 lacks."""
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def run_train(*args: str) -> tuple[int, str]:
    """`dralign train ARGS` in process; (exit code, stderr). Any exception escapes the test."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["train", *args])
    return code, err.getvalue()


def check_outcome(code: int, err: str, *names: str) -> None:
    """Trained (0), or one line `dralign train: error: ...` naming one of `names`."""
    assert "Traceback" not in err, err
    if code == 0:
        return
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and lines[0].startswith("dralign train: error: "), err
    if len(lines) > 1:  # the one list form: bad rows, each naming file, row and field
        assert "bad row(s)" in lines[0] and lines[-1].startswith("Fix these rows"), err
        assert all(line.startswith("  ") for line in lines[1:-1]), err
    assert any(name in lines[0] for name in names), err


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def tiny_args(model: str, out: Path) -> list[str]:
    return [
        "--model",
        model,
        "--max-steps",
        "1",
        "--batch-size",
        "2",
        "--max-length",
        "32",
        "--no-progress",
        "--no-ref-cache",
        "--output-dir",
        str(out),
    ]


@FUZZ
@given(file=data_files(), on_bad_row=st.sampled_from(["error", "skip"]))
def test_a_random_preference_file_trains_or_is_one_line(tiny_model_dir, workdir, file, on_bad_row):
    folder = Path(tempfile.mkdtemp(dir=workdir))
    suffix, content = file
    path = folder / f"prefs{suffix}"
    path.write_bytes(content)
    code, err = run_train(
        "--data", str(path), "--on-bad-row", on_bad_row, *tiny_args(tiny_model_dir("llama"), folder / "out")
    )
    check_outcome(code, err, path.name)


@FUZZ
@given(config_and_keys=yaml_configs())
def test_a_random_yaml_config_trains_or_is_one_line(tiny_model_dir, workdir, pref_jsonl, config_and_keys):
    text, keys = config_and_keys
    folder = Path(tempfile.mkdtemp(dir=workdir))
    config = folder / "config.yaml"
    config.write_text(text)
    with working_directory(folder):  # a relative path in the config lands here
        code, err = run_train(
            "--config", str(config), "--data", str(pref_jsonl), *tiny_args(tiny_model_dir("llama"), folder / "out")
        )
    flags = ["--" + key.replace("_", "-") for key in keys]
    check_outcome(code, err, config.name, pref_jsonl.name, *keys, *flags)  # a file, or the option
