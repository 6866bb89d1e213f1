"""A write that fails (a full disk, a file-size limit) is one line naming the path, and the
folder never looks like a completed run."""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys

import pytest


def _limit_file_size(limit: int):
    def apply():  # in the child: writes past `limit` bytes fail with EFBIG instead of a signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.slow
@pytest.mark.parametrize("limit", [60_000, 200_000])
def test_a_failed_write_is_one_line_and_the_run_is_marked_failed(limit, tiny_model_dir, pref_jsonl, tmp_path):
    out = tmp_path / "o"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dralign.cli",
            "train",
            "--no-progress",
            "--model",
            tiny_model_dir("llama"),
            "--data",
            str(pref_jsonl),
            "--max-steps",
            "1",
            "--max-length",
            "64",
            "--output-dir",
            str(out),
        ],
        preexec_fn=_limit_file_size(limit),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2, done.stderr
    err = done.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert err.startswith("dralign train: error: cannot write ") and "File too large" in err
    assert str(out) in err
    assert json.loads((out / "run.json").read_text())["status"] == "failed"
    assert not (out / "README.md").exists() and not (out / "final_metrics.json").exists()
