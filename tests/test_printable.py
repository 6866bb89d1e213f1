"""Everything printed from data goes through one helper (`dralign.printable`), so a group name,
a source or a value quoted in an error message cannot drive the terminal (issue 18 item 15)."""

from __future__ import annotations

import io
import json

from rich.console import Console

from dralign.cli import main
from dralign.eval.cli import EvalConfig, EvalDataOptions, EvalOptions, run_eval
from dralign.printable import shown, shown_lines, shown_markup
from helpers import preference_rows, write_jsonl

CLEAR = "\x1b[2J"


def test_control_characters_are_written_as_visible_escapes():
    assert shown(f"a{CLEAR}b\r\u202ec") == "a\\x1b[2Jb\\x0d\\u202ec"
    assert shown("héllo wörld 你好 🙂") == "héllo wörld 你好 🙂"  # printable text stays as it is
    assert shown_markup("[red]x") == "\\[red]x"
    assert shown_lines(f"3 bad rows:\n  row 1: {CLEAR}") == "3 bad rows:\n  row 1: \\x1b[2J"  # a list stays one


def test_eval_prints_group_and_source_names_inert(tiny_model_dir, tmp_path):
    rows = preference_rows(8)
    for i, row in enumerate(rows):
        row["group"] = [f"evil{CLEAR}", "[bold red]loud"][i % 2]
        row["source"] = f"src{CLEAR}" if i % 2 else "plain"
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    console = Console(file=io.StringIO(), width=200)
    output = tmp_path / "eval.json"
    opts = EvalOptions(
        model=tiny_model_dir("llama", seed=1),
        reference=tiny_model_dir("llama"),
        data=str(data),
        output=str(output),
        batch_size=4,
    )
    run_eval(
        EvalConfig(eval=opts, data=EvalDataOptions(max_length=64, group_column="group", source_column="source")),
        console=console,
    )
    printed = console.file.getvalue()
    assert "\x1b" not in printed
    assert "evil\\x1b[2J" in printed and "src\\x1b[2J" in printed and "[bold red]loud" in printed
    assert f"evil{CLEAR}" in json.loads(output.read_text())["groups"]  # the JSON keeps the data


def test_an_error_message_quoting_data_is_printed_inert(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({f"bad{CLEAR}key": 1, "model": "m", "data": "d"}))
    assert main(["train", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "bad\\x1b[2Jkey" in err and len(err.strip().splitlines()) == 1
