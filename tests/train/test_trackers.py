"""--report-to tensorboard and --report-to wandb (offline) end to end: the tracker holds the
same metric names as metrics.jsonl."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from dralign.cli import main

pytestmark = pytest.mark.slow


def train(model, data, out, tracker, *extra) -> None:
    rc = main(
        [
            "train",
            "--no-progress",
            "--max-length",
            "64",
            "--batch-size",
            "8",
            "--model",
            model,
            "--data",
            str(data),
            "--max-steps",
            "2",
            "--eval-fraction",
            "0.25",
            "--eval-every",
            "1",
            "--report-to",
            tracker,
            "--output-dir",
            str(out),
            *extra,
        ]
    )
    assert rc == 0


def logged_names(out: Path) -> set[str]:
    names = set()
    for line in (out / "metrics.jsonl").read_text().splitlines():
        names |= {
            k
            for k, v in json.loads(line).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step"
        }
    return names


def test_tensorboard_event_files_hold_the_metrics(tiny_model_dir, pref_jsonl, tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install 'dralign[tensorboard]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "out"
    train(tiny_model_dir("llama"), pref_jsonl, out, "tensorboard")
    events = list(out.rglob("events.out.tfevents.*"))
    assert events, f"no event file under {out}"
    scalars = set()
    for event_file in events:
        acc = EventAccumulator(str(event_file), size_guidance={"scalars": 0})
        acc.Reload()
        scalars |= set(acc.Tags()["scalars"])
        for tag in acc.Tags()["scalars"]:
            assert [e.step for e in acc.Scalars(tag)] in ([1, 2], [1], [2])
    expected = logged_names(out)
    assert "loss" in expected and "eval/loss" in expected and "rewards/accuracies" in expected
    assert expected <= scalars, expected - scalars


def test_wandb_offline_run_holds_the_metrics(tiny_model_dir, pref_jsonl, tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="wandb is not installed (pip install 'dralign[wandb]')")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "wandb").mkdir()
    out = tmp_path / "out"
    train(tiny_model_dir("llama"), pref_jsonl, out, "wandb")
    runs = list((tmp_path / "wandb").rglob("offline-run-*"))
    assert len(runs) == 1, runs
    history = wandb_history(runs[0])
    expected = logged_names(out)
    assert "loss" in expected and "eval/loss" in expected
    keys = set().union(*history)
    assert expected <= keys, expected - keys
    assert [h["_step"] for h in history if "loss" in h] == [1, 2]


def wandb_history(run_dir: Path) -> list[dict]:
    """The history records of an offline run, read from its .wandb file without the network,
    once the run's exit record is written (wandb's service may still be flushing the file when
    finish() returns)."""
    (path,) = run_dir.glob("*.wandb")
    deadline = time.monotonic() + 60
    records = wandb_records(path.read_bytes())
    while not any(r.WhichOneof("record_type") == "exit" for r in records):
        assert time.monotonic() < deadline, f"{path} has no exit record after 60 s"
        time.sleep(0.5)
        records = wandb_records(path.read_bytes())
    return [
        {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item}
        for r in records
        if r.WhichOneof("record_type") == "history"
    ]


def wandb_records(raw: bytes) -> list:
    """The records of a .wandb file: a LevelDB-style log (wandb 0.31 dropped its Python reader):
    a 7-byte header (":W&B", magic, version), then 32 KiB blocks of records, each a 7-byte
    header (crc32c, length, type: 1 full, 2 first, 3 middle, 4 last) and a piece of a
    serialized `Record`; an incomplete tail is left out."""
    import struct

    from wandb.proto import wandb_internal_pb2

    assert raw[:4] == b":W&B", "not a wandb run file"
    block, pos, pieces, records = 32768, 7, b"", []
    while pos + 7 <= len(raw):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos : pos + 7])
        if (kind == 0 and length == 0) or pos + 7 + length > len(raw):
            break
        pieces += raw[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a record is complete
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pieces)
            records.append(record)
            pieces = b""
    return records
