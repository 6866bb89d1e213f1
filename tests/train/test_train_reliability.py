"""The output folder belongs to one run; resuming never unpickles and survives corruption;
options are validated up front; nothing is lost silently (issue: reliability and security)."""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import stat
import subprocess
import sys
import time

import pytest

from dralign.cli import main
from helpers import REPO_ROOT, preference_rows, write_jsonl
from helpers import TRAIN_FAST as FAST
from helpers import train_cli as run


# ----------------------------------------------------------------------------- one run per folder
def test_an_occupied_folder_is_refused_naming_resume_and_overwrite(base, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(*base, "--max-steps", 2, "--output-dir", out) == 0
    capsys.readouterr()
    assert run(*base, "--method", "kldpo", "--max-steps", 2, "--output-dir", out) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err and "--overwrite" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert json.loads((out / "run.json").read_text())["method"] == "dpo"  # untouched


def test_overwrite_replaces_the_run_and_keeps_the_reference_cache(base, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(*base, "--max-steps", 2, "--save-every", 1, "--output-dir", out) == 0
    assert run(*base, "--method", "kldpo", "--max-steps", 1, "--output-dir", out, "--overwrite") == 0
    run_info = json.loads((out / "run.json").read_text())
    assert (run_info["method"], run_info["status"]) == ("kldpo", "completed")
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-00000001"]
    assert "reference log-probs read from" in capsys.readouterr().out
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


def test_overwrite_refuses_a_folder_that_is_not_a_run(base, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    assert run(*base, "--max-steps", 1, "--output-dir", out, "--overwrite") == 2
    assert "not a dralign run folder" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "precious"


def test_resume_refuses_another_method_listing_the_keys(base, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(*base, "--max-steps", 2, "--output-dir", out) == 0
    capsys.readouterr()
    assert run(*base, "--method", "kldpo", "--seed", 3, "--max-steps", 4, "--output-dir", out, "--resume") == 2
    err = capsys.readouterr().err
    assert "different run" in err and "method: 'dpo' -> 'kldpo'" in err and "seed: 0 -> 3" in err
    # harmless keys may differ: more steps, other logging
    assert run(*base, "--max-steps", 4, "--log-every", 2, "--output-dir", out, "--resume") == 0


def test_a_locked_folder_is_refused(base, tmp_path, capsys):
    """A second process holding the folder's lock (another run) blocks this one."""
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import fcntl, sys, time; fh = open(sys.argv[1], 'a+'); fcntl.flock(fh, fcntl.LOCK_EX); "
                "print('locked', flush=True); time.sleep(60)"
            ),
            str(out / ".dralign.lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert run(*base, "--max-steps", 1, "--output-dir", out) == 2
        assert "in use by another dralign run" in capsys.readouterr().err
    finally:
        holder.kill()


# ----------------------------------------------------------------------------- checkpoints
def test_checkpoints_hold_no_pickle_and_a_planted_pickle_is_never_loaded(base, tmp_path):
    out = tmp_path / "out"
    assert run(*base, "--max-steps", 2, "--save-every", 1, "--output-dir", out) == 0
    newest = sorted((out / "checkpoints").iterdir())[-1]
    assert not [p for p in newest.iterdir() if p.suffix in (".pkl", ".bin", ".pt", ".pth")]
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    for name in ("custom_checkpoint_0.pkl", "random_states_0.pkl", "optimizer.bin"):
        (newest / name).write_bytes(pickle.dumps(Evil()))
    assert run(*base, "--max-steps", 3, "--output-dir", out, "--resume") == 0
    assert not marker.exists()


def test_a_truncated_newest_checkpoint_falls_back_to_the_previous_one(base, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(*base, "--max-steps", 2, "--save-every", 1, "--output-dir", out) == 0
    older, newest = sorted((out / "checkpoints").iterdir())
    weights = newest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    capsys.readouterr()
    assert run(*base, "--max-steps", 3, "--output-dir", out, "--resume") == 0
    printed = capsys.readouterr().out
    assert f"skipping checkpoint {newest}" in printed and "model.safetensors has 100 bytes" in printed
    assert f"resumed from {older} at step 1" in printed


def test_a_checkpoint_without_manifest_is_incomplete(base, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(*base, "--max-steps", 1, "--output-dir", out) == 0
    (sorted((out / "checkpoints").iterdir())[-1] / "manifest.json").unlink()
    capsys.readouterr()
    assert run(*base, "--max-steps", 2, "--output-dir", out, "--resume") == 2
    captured = capsys.readouterr()
    assert "no manifest" in captured.out and "no checkpoint under" in captured.err


def test_a_torn_last_metrics_line_does_not_block_resume(base, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(*base, "--max-steps", 2, "--save-every", 1, "--output-dir", out) == 0
    metrics = out / "metrics.jsonl"
    metrics.write_text(metrics.read_text() + '{"step": 3, "lo')
    assert run(*base, "--max-steps", 3, "--output-dir", out, "--resume") == 0
    assert "is incomplete" in capsys.readouterr().out
    assert [json.loads(line)["step"] for line in metrics.read_text().splitlines()] == [1, 2, 3]


# ----------------------------------------------------------------------------- what a run leaves
def test_final_files_are_readable_and_final_metrics_are_machine_readable(base, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(*base, "--max-steps", 2, "--eval-fraction", 0.25, "--output-dir", out) == 0
    captured = capsys.readouterr().out
    assert "final evaluation: eval/loss=" in captured
    final = json.loads((out / "final_metrics.json").read_text())
    assert final["step"] == 2 and "eval/rewards/accuracies" in final
    for name in ("config.yaml", "README.md", "final_metrics.json", "run.json"):
        mode = stat.S_IMODE((out / name).stat().st_mode)
        assert mode & 0o044, f"{name} is not readable by others: {oct(mode)}"
    assert not (out / ".final-tmp").exists()


def test_an_epoch_says_how_many_rows_it_leaves_out(base, tmp_path, capsys):
    assert run(*base, "--max-steps", 1, "--batch-size", 10, "--output-dir", tmp_path / "o") == 0
    assert "each epoch trains 60 of 64 rows: 4 do not fill an effective batch of 10" in capsys.readouterr().out


@pytest.mark.slow
def test_sigterm_message_says_no_model_was_written(base, tmp_path):
    """The real CLI in a subprocess, stopped by SIGTERM from outside once it has logged a step:
    exit code 130 and a message that no final model was written."""
    out = tmp_path / "o"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }
    with open(tmp_path / "stdout", "w") as stdout, open(tmp_path / "stderr", "w") as stderr:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dralign.cli",
                "train",
                *FAST,
                *map(str, base),
                "--max-steps",
                "100000",
                "--log-every",
                "1",
                "--output-dir",
                str(out),
            ],
            stdout=stdout,
            stderr=stderr,
            env=env,
            text=True,
        )
        try:
            deadline = time.monotonic() + 240
            while not (out / "metrics.jsonl").is_file() or "\n" not in (out / "metrics.jsonl").read_text():
                assert proc.poll() is None, (tmp_path / "stderr").read_text()
                assert time.monotonic() < deadline, "no step was logged within 240 s"
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            returncode = proc.wait(timeout=240)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    printed = (tmp_path / "stdout").read_text()
    assert returncode == 130, (tmp_path / "stderr").read_text()
    steps = re.search(r"interrupted after (\d+) steps; no final model was written", printed)
    assert steps and int(steps.group(1)) >= 1, printed
    assert "model and card in" not in printed


# ----------------------------------------------------------------------------- options
@pytest.mark.parametrize(
    "flag,value,expected",
    [
        ("--batch-size", "0", "--batch-size: 0 is out of range; valid values are >= 1"),
        ("--batch-size", "-2", "--batch-size: -2 is out of range"),
        ("--grad-accum", "0", "--grad-accum: 0 is out of range"),
        ("--log-every", "0", "--log-every: 0 is out of range"),
        ("--max-steps", "-5", "--max-steps: -5 is out of range"),
        ("--epochs", "-1", "--epochs: -1.0 is out of range; valid values are > 0"),
        ("--save-every", "-1", "--save-every: -1 is out of range"),
        ("--beta", "inf", "--beta: 'inf' is not a finite number"),
        ("--eval-fraction", "1.5", "--eval-fraction: 1.5 is out of range; valid values are >= 0 and < 1"),
        ("--lr", "nan", "--lr: 'nan' is not a finite number"),
    ],
)
def test_bad_options_are_one_line_naming_the_option(flag, value, expected, base, tmp_path, capsys):
    assert run(*base, flag, value, "--output-dir", tmp_path / "o") == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()  # nothing was started


def test_option_abbreviations_are_not_accepted(base, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        run(*base, "--target", "human", "--output-dir", tmp_path / "o")
    assert e.value.code == 2
    assert "unrecognized arguments: --target" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--res"])


def test_bad_yaml_values_name_the_file(base, tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("batch_size: 0\n")
    assert run(*base, "--config", config, "--output-dir", tmp_path / "o") == 2
    assert f"{config}: batch_size: 0 is out of range" in capsys.readouterr().err


def test_group_dro_refuses_local_mode_with_accumulation(base, tmp_path, capsys):
    assert (
        run(
            *base,
            "--method",
            "group-dro",
            "--grad-accum",
            2,
            "--global-batch",
            "local",
            "--max-steps",
            1,
            "--output-dir",
            tmp_path / "o",
        )
        == 2
    )
    assert "advances once per optimizer step" in capsys.readouterr().err


def test_held_out_rows_without_a_group_are_counted_not_dropped(tiny_model_dir, tmp_path, capsys):
    train_rows = preference_rows(32)
    held_out = preference_rows(8, seed=1)
    for row in held_out[:3]:
        del row["group"]
    data, eval_data = write_jsonl(tmp_path / "t.jsonl", train_rows), write_jsonl(tmp_path / "e.jsonl", held_out)
    out = tmp_path / "o"
    assert (
        run(
            "--model",
            tiny_model_dir("llama"),
            "--data",
            data,
            "--eval-data",
            eval_data,
            "--method",
            "group-dro",
            "--max-steps",
            1,
            "--output-dir",
            out,
        )
        == 0
    )
    final = json.loads((out / "final_metrics.json").read_text())
    assert final["eval/rows_without_group"] == 3 and "eval/rewards/accuracies" in final
