"""The benchmarks' own command lines (`python -m dralign_bench.gpu|speed|large_data`) are typed
configs like the `dralign` commands: range-checked, never abbreviated."""

from __future__ import annotations

import pytest

from dralign_bench import gpu, large_data, speed


@pytest.mark.parametrize("main", [gpu.parse_args, speed.main, large_data.main], ids=["gpu", "speed", "large_data"])
def test_an_abbreviated_flag_is_refused(main, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(
            ["--thr", "2"]
            if main is gpu.parse_args
            else ["--cache", "x"]
            if main is large_data.main
            else ["--step", "2"]
        )
    assert exit_.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err


def test_gpu_options_are_range_checked(capsys):
    with pytest.raises(SystemExit) as exit_:
        gpu.parse_args(["--batch-size", "0"])
    assert exit_.value.code == 2 and "--batch-size: 0 is out of range" in capsys.readouterr().err
    tiny = gpu.parse_args(["--tiny", "--device", "cpu"])
    assert (tiny.shape, tiny.batch_size, tiny.steps, tiny.device) == ("tiny", 2, 2, "cpu")


def test_large_data_generates_and_loads(tmp_path, capsys):
    path = tmp_path / "rows.jsonl"
    large_data.main(["--file", str(path), "--generate", "12"])
    assert len(path.read_text().splitlines()) == 12
    large_data.main(["--file", str(path)])
    assert capsys.readouterr().out.startswith("12 pairs in ")
