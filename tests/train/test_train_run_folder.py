"""Reliability, round 3 (issue 18, the run-folder part): a run never loses its steps or the
user's files, `--resume` notices changed inputs, a model is never paired with a reference of
another tokenizer, and the caches heal themselves. Each test reproduces one item of the issue
on tiny models built from configs.

The promises about run folders, resume and caches (docs/training.md and docs/data.md, once the
README's), and the test of each
(R: tests/train/test_train_reliability.py, F: this file, M: tests/modeling/test_modeling.py):

- a lock while a run writes the folder, removed at every exit — R test_a_locked_folder_is_refused,
  F test_no_lock_is_left_after_success_or_error_and_a_failed_start_removes_its_folder,
  F test_a_signal_during_set_up_stops_it_in_one_line_and_leaves_no_lock
- the lock and run.json before any work — F test_the_lock_comes_before_any_work
- a start that fails removes what it created — F test_no_lock_is_left_after_success_or_error_and_a_failed_start_removes_its_folder,
  F test_a_failed_resume_leaves_a_foreign_folder_as_it_was
- an occupied folder is refused naming --resume and --overwrite — R test_an_occupied_folder_is_refused_naming_resume_and_overwrite
- --resume refuses another method/data/model/seed listing the keys — R test_resume_refuses_another_method_listing_the_keys
- --resume refuses inputs whose content changed — F test_resume_refuses_changed_data_content_under_the_same_path,
  F test_resume_refuses_a_changed_model_folder
- --overwrite deletes only the manifest's names, never an input — F test_overwrite_deletes_only_what_the_run_manifest_lists,
  F test_overwrite_refuses_to_delete_an_input_of_the_run, R test_overwrite_refuses_a_folder_that_is_not_a_run,
  R test_overwrite_replaces_the_run_and_keeps_the_reference_cache
- a reference must share the model's tokenizer — F test_a_reference_with_another_tokenizer_is_refused_in_train,
  F test_a_reference_with_another_tokenizer_is_refused_in_eval
- checkpoints on SIGINT/SIGTERM — R test_sigterm_message_says_no_model_was_written
- no pickle — R test_checkpoints_hold_no_pickle_and_a_planted_pickle_is_never_loaded
- the newest checkpoint that verifies, naming skipped ones — R test_a_truncated_newest_checkpoint_falls_back_to_the_previous_one,
  R test_a_checkpoint_without_manifest_is_incomplete
- the final files (staged, readable, machine-readable metrics) — R test_final_files_are_readable_and_final_metrics_are_machine_readable
- model and checkpoint before the final evaluation; a signal there loses nothing — F test_sigterm_during_the_final_evaluation_keeps_the_model_and_checkpoint
- a --resume with no step left keeps the metrics — F test_a_resume_with_no_step_left_keeps_the_final_metrics
- held-out groups unseen in training are "no group" — F test_a_held_out_group_unseen_in_training_is_no_group
- a truncated or altered cache is rebuilt with a message — M test_truncated_cache_is_refused_with_one_line_and_rebuilt,
  M test_altered_cache_values_fail_the_checksum, F test_a_flipped_byte_in_the_data_cache_is_detected_and_rebuilt
- --overwrite keeps the reference cache — R test_overwrite_replaces_the_run_and_keeps_the_reference_cache
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from dralign.cli import main
from helpers import REPO_ROOT, preference_rows, write_jsonl
from helpers import TRAIN_FAST as FAST
from helpers import train_cli as run


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


# ----------------------------------------------------------------------------- held-out groups
def test_a_held_out_group_unseen_in_training_is_no_group(tiny_model_dir, tmp_path):
    """Issue 18 item 1: group DRO trained on groups a, b and evaluated on rows of a group c
    finishes (model, checkpoint), counting the c rows as without a group."""
    held_out = preference_rows(8, seed=1)
    for row in held_out[:3]:
        row["group"] = "c"
    data = write_jsonl(tmp_path / "t.jsonl", preference_rows(32))
    eval_data = write_jsonl(tmp_path / "e.jsonl", held_out)
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
    assert final["eval/rows_without_group"] == 3
    assert (out / "model.safetensors").is_file() and list((out / "checkpoints").iterdir())


# ----------------------------------------------------------------------------- caches
def test_a_flipped_byte_in_the_data_cache_is_detected_and_rebuilt(base, tmp_path, capsys, caplog):
    """Issue 18 item 12 (docs/training.md: "a truncated or altered cache is rebuilt, with a
    message"): one flipped byte in `ref_cache/data/*/arrays.npz` is one warning line and a rebuild, also
    under --overwrite; before, a BadZipFile traceback on every later run."""
    out = tmp_path / "o"
    assert run(*base, "--max-steps", 1, "--output-dir", out) == 0
    (arrays,) = (out / "ref_cache" / "data").glob("*/arrays.npz")
    raw = bytearray(arrays.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    arrays.write_bytes(bytes(raw))
    capsys.readouterr()
    assert run(*base, "--max-steps", 1, "--output-dir", out, "--overwrite") == 0
    warnings = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    assert len(warnings) == 1 and "will be rebuilt" in warnings[0], caplog.text
    assert "Traceback" not in capsys.readouterr().err
    caplog.clear()
    assert run(*base, "--max-steps", 1, "--output-dir", out, "--overwrite") == 0  # healed
    assert "tokenised data read from" in capsys.readouterr().out and "damaged" not in caplog.text


# ----------------------------------------------------------------------------- whose folder
def test_a_failed_resume_leaves_a_foreign_folder_as_it_was(tiny_model_dir, pref_jsonl, tmp_path, capsys):
    """Issue 18 item 3: --resume into a folder that holds no run writes nothing there (before:
    run.json and ref_cache/), so a later --overwrite still refuses to delete the user's files."""
    folder = tmp_path / "dd"
    folder.mkdir()
    data = shutil.copy(pref_jsonl, folder / "data.jsonl")
    (folder / "notes.txt").write_text("mine")
    args = ["--model", tiny_model_dir("llama"), "--data", data, "--max-steps", 1, "--output-dir", folder]
    assert run(*args, "--resume") == 2
    assert "holds no dralign run" in one_line_error(capsys)
    assert sorted(p.name for p in folder.iterdir()) == ["data.jsonl", "notes.txt"]
    assert run(*args, "--overwrite") == 2
    assert "not a dralign run folder" in one_line_error(capsys)
    assert (folder / "notes.txt").read_text() == "mine" and (folder / "data.jsonl").is_file()


def test_overwrite_deletes_only_what_the_run_manifest_lists(base, tmp_path, pref_jsonl):
    """Issue 18 items 3 and 4: files the user put into a run folder (the data this run trains
    on among them) survive --overwrite; only the earlier run's outputs go."""
    out = tmp_path / "ow"
    assert run(*base, "--max-steps", 2, "--save-every", 1, "--output-dir", out) == 0
    listed = json.loads((out / "run.json").read_text())["outputs"]
    assert {"model.safetensors", "checkpoints", "metrics.jsonl"} <= set(listed)
    (out / "notes.txt").write_text("mine")
    data = shutil.copy(pref_jsonl, out / "prefs.jsonl")
    assert run("--model", base[1], "--data", data, "--max-steps", 1, "--output-dir", out, "--overwrite") == 0
    assert (out / "notes.txt").read_text() == "mine" and (out / "prefs.jsonl").is_file()
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-00000001"]


def test_overwrite_refuses_to_delete_an_input_of_the_run(base, tmp_path, capsys):
    """Issue 18 item 4: --overwrite of a run folder that is also this run's --model (or whose
    config.yaml is its --config) is refused in one line, deleting nothing."""
    out = tmp_path / "ow"
    assert run(*base, "--max-steps", 1, "--output-dir", out) == 0
    before = sorted(p.name for p in out.iterdir())
    capsys.readouterr()
    assert run("--model", out, "--data", base[3], "--max-steps", 1, "--output-dir", out, "--overwrite") == 2
    assert "which this run reads" in one_line_error(capsys)
    assert run(*base, "--config", out / "config.yaml", "--output-dir", out, "--overwrite") == 2
    assert "which this run reads" in one_line_error(capsys)
    assert sorted(p.name for p in out.iterdir()) == before


def test_the_lock_comes_before_any_work(base, tmp_path, capsys):
    """Issue 18 item 17: a run refused by another run's lock has written nothing into the
    folder (before: it built its data and reference caches there first)."""
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
        assert "in use by another dralign run" in one_line_error(capsys)
        assert sorted(p.name for p in out.iterdir()) == [".dralign.lock"]  # the holder's
    finally:
        holder.kill()
        holder.wait()


def test_no_lock_is_left_after_success_or_error_and_a_failed_start_removes_its_folder(base, tmp_path, capsys):
    """Issue 20 item 7 (the lock goes at every exit) and issue 18's "a failed start removes what
    it created": a start that fails on its data leaves no folder, so a retry is not refused."""
    out = tmp_path / "out"
    assert run(*base, "--max-steps", 1, "--output-dir", out) == 0
    assert not (out / ".dralign.lock").exists()
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "p", "chosen": "a"}])
    fresh = tmp_path / "fresh"
    assert run("--model", base[1], "--data", bad, "--max-steps", 1, "--output-dir", fresh) == 2
    one_line_error(capsys)
    assert not fresh.exists()
    assert run(*base, "--max-steps", 1, "--output-dir", fresh) == 0
    assert not (fresh / ".dralign.lock").exists()


# ----------------------------------------------------------------------------- resume
def test_resume_refuses_changed_data_content_under_the_same_path(base, tmp_path, pref_jsonl, capsys):
    """Issue 18 item 5: the data file rewritten in place (chosen and rejected swapped in every
    row) is noticed on --resume and named in one line."""
    data = shutil.copy(pref_jsonl, tmp_path / "d.jsonl")
    out = tmp_path / "o"
    args = ["--model", base[1], "--data", data, "--output-dir", out]
    assert run(*args, "--max-steps", 1) == 0
    rows = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    write_jsonl(data, [{**r, "chosen": r["rejected"], "rejected": r["chosen"]} for r in rows])
    capsys.readouterr()
    assert run(*args, "--max-steps", 2, "--resume") == 2
    assert "the training data (--data) changed" in one_line_error(capsys)


def test_resume_refuses_a_changed_model_folder(tiny_model_dir, pref_jsonl, tmp_path, capsys):
    """Issue 18 item 5: other weights in the same model folder are noticed on --resume."""
    model = shutil.copytree(tiny_model_dir("llama"), tmp_path / "m")
    out = tmp_path / "o"
    args = ["--model", model, "--data", pref_jsonl, "--output-dir", out]
    assert run(*args, "--max-steps", 1) == 0
    shutil.copy(os.path.join(tiny_model_dir("llama", seed=1), "model.safetensors"), model / "model.safetensors")
    capsys.readouterr()
    assert run(*args, "--max-steps", 2, "--resume") == 2
    assert "the model (--model) changed" in one_line_error(capsys)


def test_a_resume_with_no_step_left_keeps_the_final_metrics(base, tmp_path):
    """Issue 18 item 8: a --resume that runs zero steps keeps final_metrics.json and the card's
    metrics (before: {} and an empty table)."""
    out = tmp_path / "o"
    assert run(*base, "--max-steps", 2, "--eval-fraction", 0.25, "--output-dir", out) == 0
    before = json.loads((out / "final_metrics.json").read_text())
    assert run(*base, "--max-steps", 2, "--eval-fraction", 0.25, "--output-dir", out, "--resume") == 0
    after = json.loads((out / "final_metrics.json").read_text())
    assert after.keys() == before.keys() and after["loss"] == before["loss"] and after["step"] == 2
    assert "| loss |" in (out / "README.md").read_text()


# ----------------------------------------------------------------------------- pairing
def _model_with_tokenizer(path, tok) -> str:
    from dralign.modeling.tiny import tiny_model

    model = tiny_model("llama", vocab_size=len(tok), seed=2)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def _renumbered(path, model_dir) -> str:
    """`model_dir`'s tokenizer with two ordinary tokens' ids swapped (same size, other ids)."""
    from transformers import AutoTokenizer

    shutil.copytree(model_dir, path)
    spec = json.loads((path / "tokenizer.json").read_text())
    vocab = spec["model"]["vocab"]
    a, b = sorted(vocab, key=vocab.get)[100:102]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    (path / "tokenizer.json").write_text(json.dumps(spec))
    assert len(AutoTokenizer.from_pretrained(path)) == len(AutoTokenizer.from_pretrained(model_dir))
    return str(path)


def test_a_reference_with_another_tokenizer_is_refused_in_train(base, tmp_path, capsys):
    """Issue 18 item 7: --ref-model with a renumbered vocabulary (same size) or a smaller one
    (before: trained silently, or an IndexError traceback)."""
    from dralign.modeling.tiny import tiny_tokenizer

    smaller = _model_with_tokenizer(tmp_path / "small", tiny_tokenizer(vocab_size=300))
    renumbered = _renumbered(tmp_path / "renumbered", base[1])
    for ref, what in ((smaller, "tokens)"), (renumbered, "the same size")):
        assert run(*base, "--ref-model", ref, "--max-steps", 1, "--output-dir", tmp_path / "o") == 2
        err = one_line_error(capsys)
        assert "have different tokenizers" in err and what in err
        assert not (tmp_path / "o").exists()


def test_a_reference_with_another_tokenizer_is_refused_in_eval(base, pref_jsonl, tmp_path, capsys):
    """Issue 18 item 6: `dralign eval --reference` with a renumbered vocabulary of the same
    size (before: accuracy and margins of other texts)."""
    renumbered = _renumbered(tmp_path / "renumbered", base[1])
    assert (
        main(["eval", "--model", base[1], "--reference", renumbered, "--data", str(pref_jsonl), "--max-length", "64"])
        == 2
    )
    err = one_line_error(capsys)
    assert "--model" in err and "--reference" in err and "different tokenizers" in err


# ----------------------------------------------------------------------------- signals
SIGNALLED = """
import os, signal, sys, time
import dralign.train.recipe as recipe
target, phase = sys.argv[1], sys.argv[2]
original = getattr(recipe, target) if phase == "set-up" else recipe.Recipe.evaluate

def signalled(*args, **kwargs):  # the signal arrives while this phase runs
    os.kill(os.getpid(), getattr(signal, sys.argv[3]))
    time.sleep(1e-3)
    return original(*args, **kwargs)

if phase == "set-up":
    setattr(recipe, target, signalled)
else:
    recipe.Recipe.evaluate = signalled
from dralign.cli import main
sys.exit(main(sys.argv[4:]))
"""


def _signalled_run(tmp_path, target, phase, signame, args):
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-c", SIGNALLED, target, phase, signame, "train", *FAST, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_a_signal_during_set_up_stops_it_in_one_line_and_leaves_no_lock(base, tmp_path, signame):
    """Issue 20 item 7 and issue 18 item 16: SIGTERM or Ctrl-C while the data loads stops the
    run there (before: SIGTERM killed it leaving the lock, Ctrl-C was a traceback)."""
    out = tmp_path / "o"
    rc, _, err = _signalled_run(tmp_path, "load_data", "set-up", signame, [*base, "--output-dir", out])
    assert rc == 130, err
    assert err.strip().splitlines() == [f"dralign train: stopped by {signame} during set-up"]
    assert not (out / ".dralign.lock").exists() and not (out / "run.json").exists()


def test_sigterm_during_the_final_evaluation_keeps_the_model_and_checkpoint(base, tmp_path):
    """Issue 18 item 2: the final checkpoint and model are written before the final evaluation,
    and a SIGTERM there loses nothing (before: rc 143, no checkpoint, run.json `running`);
    --resume then runs the evaluation alone."""
    out = tmp_path / "o"
    args = [*base, "--max-steps", 2, "--eval-fraction", 0.25, "--output-dir", out]
    rc, printed, err = _signalled_run(tmp_path, "evaluate", "final", "SIGTERM", args)
    assert rc == 130, err
    assert "stopped by SIGTERM during the final evaluation" in printed and "the model is saved" in printed
    assert (out / "model.safetensors").is_file() and (out / "checkpoints" / "step-00000002").is_dir()
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    assert main(["train", *FAST, *map(str, args), "--resume"]) == 0
    final = json.loads((out / "final_metrics.json").read_text())
    assert final["step"] == 2 and "eval/loss" in final


def test_the_promise_list_names_tests_that_exist():
    """The module docstring's list of documented promises names only tests that exist."""
    import re

    files = {"R": "test_train_reliability.py", "F": "test_train_run_folder.py", "M": "../modeling/test_modeling.py"}
    here = os.path.dirname(__file__)
    named = re.findall(r"\b([RFM]) (test_\w+)", __doc__)
    assert len(named) >= 20
    for kind, name in named:
        with open(os.path.join(here, files[kind])) as fh:
            assert f"def {name}(" in fh.read(), f"{files[kind]} has no {name}"


def test_a_resume_into_a_missing_folder_creates_nothing(base, tmp_path, capsys):
    """`--resume` with a mistyped --output-dir: one line, and no folder left behind."""
    out = tmp_path / "typo"
    assert run(*base, "--max-steps", 1, "--output-dir", out, "--resume") == 2
    assert "holds no dralign run to continue" in one_line_error(capsys)
    assert not out.exists()
