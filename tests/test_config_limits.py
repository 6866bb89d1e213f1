"""YAML configs are read with limits (issue 18 item 13): an alias bomb, an oversized file, a
non-string key, bytes that are not UTF-8 are each one line naming the file, never a traceback,
a MemoryError or a huge config.yaml written into the run."""

from __future__ import annotations

import pytest

from dralign.cli import main
from dralign.config import MAX_YAML_BYTES, MAX_YAML_VALUES, ConfigError, load_yaml


def alias_bomb(key: str, levels: int = 9) -> str:
    """`key:` holding 9 lists of 9 aliases each of the previous one: 9**9 values once expanded,
    a few hundred bytes on disk."""
    items = ["  - &a0 [" + ", ".join(["x"] * 9) + "]"]
    items += [f"  - &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return f"model: m\ndata: d\n{key}:\n" + "\n".join(items) + "\n"


@pytest.mark.parametrize("key", ["lora_target_modules", "ratio_target"])
def test_an_alias_bomb_is_refused_in_one_line(tmp_path, key):
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb(key))
    with pytest.raises(
        ConfigError,
        match=rf"^{path}: more than {MAX_YAML_VALUES} values once its "
        "aliases are expanded",
    ):
        load_yaml(path)


def test_an_alias_bomb_stops_the_command_before_anything_is_written(tmp_path, capsys):
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb("ratio_target"))  # was accepted, writing a 52 MB config.yaml
    out = tmp_path / "out"
    assert main(["train", "--config", str(path), "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "aliases" in err and not out.exists()


def test_aliases_within_the_limit_still_work(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("model: m\nlora_target_modules: &mods [q_proj, v_proj]\nratio_target: *mods\n")
    assert load_yaml(path)["ratio_target"] == ["q_proj", "v_proj"]


@pytest.mark.parametrize(
    "content, match",
    [
        (b"model: m\n" + b"# padding\n" * (MAX_YAML_BYTES // 10 + 1), "larger than 1 MiB"),
        (b"model: m\n1: x\n", "key 1 is not an option name"),
        (b"model: \xff\xfe\n", "not UTF-8"),
        (b"model: m\nx:\n" + b"  - " * 1 + b"[" * 1000 + b"]" * 1000 + b"\n", "nested too deeply|not valid YAML"),
    ],
)
def test_a_bad_config_file_is_one_line_naming_it(tmp_path, content, match):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=match) as err:
        load_yaml(path)
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)


def test_a_folder_given_as_config_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="cannot be read"):
        load_yaml(tmp_path)


def test_a_seed_outside_numpys_range_is_refused_as_an_option(tmp_path, capsys):
    """`seed: -1` failed in numpy ('Seed must be between 0 and 2**32 - 1'), naming no option
    (found by the fuzz target)."""
    path = tmp_path / "c.yaml"
    path.write_text("seed: -1\nmodel: m\ndata: d\n")
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"dralign train: error: {path}: seed: -1 is out of range; valid values are >= 0 and <= 4.29497e+09"


def test_a_bad_method_is_one_line_naming_the_option_also_with_inline_ratios(tmp_path, capsys):
    """`method: false` said "unknown preset 'False'", naming no option, on the inline ratio
    path as well as in the recipe (found by the fuzz target)."""
    for extra in ("", "ratio_target: [x]\n"):
        path = tmp_path / "c.yaml"
        path.write_text("method: false\nmodel: m\ndata: d\n" + extra)
        assert main(["train", "--config", str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("dralign train: error: method 'False': unknown preset"), err
