"""Progress for logs: when stdout is not a terminal, every long phase prints a plain line at most
every --progress-every seconds (and one at its end); metrics.jsonl has step_seconds and
eta_seconds."""

from __future__ import annotations

import json
import subprocess
import sys

from dralign.console import LogLines, duration, phase_progress
from dralign.train.progress import Progress
from helpers import preference_rows, write_jsonl


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_log_lines_every_n_seconds_with_rate_and_eta_by_hand():
    clock, out = Clock(), []
    lines = LogLines("step", 32, every=30.0, clock=clock, write=out.append)
    for _ in range(12):
        clock.now += 14.1
        lines.advance(1, "loss 0.63")
    # a line when 30 s passed since the last one: after steps 3, 6, 9 and 12 (42.3 s apart)
    assert len(out) == 4
    assert out[-1] == "step 12/32 · 14.1 s/step · ETA 4m42s · loss 0.63"  # 20 x 14.1 s = 282 s
    lines.close("loss 0.63")
    assert len(out) == 4  # nothing new since the last line
    clock.now += 14.1
    lines.advance(1)
    lines.close()
    assert out[-1].startswith("step 13/32 · 14.1 s/step · ETA 4m28s")
    assert duration(59) == "59s" and duration(3725) == "1h02m"


def test_fast_phases_read_in_units_per_second():
    clock, out = Clock(), []
    lines = LogLines("reference log-probs", 100, unit="batch", every=0, clock=clock, write=out.append)
    clock.now += 0.5
    lines.advance(10)
    assert out == ["reference log-probs 10/100 · 20.0 batch/s · ETA 4s"]


def test_training_progress_in_a_log_and_its_timing():
    clock, out = Clock(), []
    lines = LogLines("step", 4, every=0, clock=clock, write=out.append)
    with Progress(4, 0, enabled=True, terminal=False, lines=lines) as progress:
        for step in range(4):
            clock.now += 2.0
            timing = progress.timing(2.0)
            assert timing == {"step_seconds": 2.0, "eta_seconds": 2.0 * (3 - step)}
            progress.update({"loss": 0.5, "rewards/margins": 0.1, "rewards/accuracies": 1.0, "pairs_per_s": 4.0})
    assert out[0] == "step 1/4 · 2.0 s/step · ETA 6s · loss 0.5000 · margin 0.100 · acc 1.00 · 4.0 pairs/s"
    assert len(out) == 4


def test_a_phase_in_a_log_counts_megabytes(monkeypatch):
    out = []
    monkeypatch.setattr("dralign.console.is_terminal", lambda: False)
    monkeypatch.setattr("builtins.print", lambda line, **_: out.append(line))
    with phase_progress("reading f.jsonl", 3 << 20, bytes=True) as advance:
        advance(1 << 19)
        advance(5 << 19)  # 3 MB in all
    assert out and out[-1].startswith("reading f.jsonl (MB) 3/3")


def test_a_piped_training_run_prints_progress_lines_and_logs_step_times(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", preference_rows(16))
    held = write_jsonl(tmp_path / "held.jsonl", preference_rows(8, seed=4))
    out = tmp_path / "run"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "dralign.cli",
            "train",
            "--model",
            tiny_model_dir("llama"),
            "--data",
            str(data),
            "--eval-data",
            str(held),
            "--max-steps",
            "3",
            "--batch-size",
            "4",
            "--output-dir",
            str(out),
            "--progress-every",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )  # stdout is a pipe, not a terminal
    assert run.returncode == 0, run.stderr
    printed = run.stdout.splitlines()
    assert [line.split(" · ")[0] for line in printed if line.startswith("step ")] == [
        "step 1/3",
        "step 2/3",
        "step 3/3",
    ]
    assert any(line.startswith("reference log-probs 1/") for line in printed)
    assert any(line.startswith("evaluation ") for line in printed)
    assert "\x1b" not in run.stdout  # no terminal control codes in a log
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(r["step_seconds"] > 0 for r in records)
    assert [r["eta_seconds"] == 0 for r in records] == [False, False, True]
