"""The benchmarks live apart: `import dralign` stays light, eval finds the world's specs through
its registry (entry points), and a missing `bench` extra is one clear line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import EntryPoint

import pytest
import tomllib

from dralign.eval import registry
from dralign.eval.registry import SchemeRegistry
from dralign.eval.rewards import load_reward
from dralign_bench.world import sentiment
from dralign_bench.world.specs import world_prompts, world_reward
from helpers import REPO_ROOT


def _python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_core_imports_load_neither_matplotlib_nor_the_benchmarks():
    proc = _python(
        "import json, sys\n"
        "import dralign, dralign.eval, dralign.train, dralign.cli, dralign.ratio, dralign.stats\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('matplotlib', 'dralign_bench'))))"
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_pyproject_declares_the_world_specs_and_the_bench_extra():
    meta = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert not any(d.startswith("matplotlib") for d in meta["dependencies"])
    assert any(d.startswith("matplotlib") for d in meta["optional-dependencies"]["bench"])
    groups = meta["entry-points"]
    # what `pip install` writes into the metadata, loaded the way the registry loads it
    reward = EntryPoint("world", groups["dralign.rewards"]["world"], "dralign.rewards")
    prompts = EntryPoint("world", groups["dralign.prompts"]["world"], "dralign.prompts")
    assert reward.load() is world_reward and prompts.load() is world_prompts


def test_registry_discovers_entry_points_once(monkeypatch):
    calls = []

    def fake_entry_points(group):
        calls.append(group)
        return [EntryPoint("world", "dralign_bench.world.specs:world_reward", group)]

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    reg = SchemeRegistry("test.rewards")
    assert reg.get("world") is world_reward
    assert reg.get("nope") is None and reg.schemes() == ["world"]
    assert calls == ["test.rewards"]  # loaded once, not on every miss
    assert reg.helps() == [world_reward.spec_help]


def test_registry_refuses_a_second_factory_under_a_taken_name(monkeypatch):
    monkeypatch.setattr(registry, "entry_points", lambda group: [])  # nothing installed counts here
    reg = SchemeRegistry("test.rewards")
    reg.register("world", world_reward)
    reg.register("world", world_reward)  # the same one again: fine
    with pytest.raises(ValueError, match="already registered"):
        reg.register("world", sentiment)
    with pytest.raises(ValueError, match="not an identifier"):
        reg.register("a b", sentiment)


def test_a_registered_scheme_is_a_reward_and_an_unknown_one_is_refused(monkeypatch):
    monkeypatch.setattr(registry, "entry_points", lambda group: [])  # nothing installed counts here
    reg = SchemeRegistry("test.rewards")
    monkeypatch.setattr("dralign.eval.rewards.REWARDS", reg)
    with pytest.raises(ValueError, match="cannot import module 'world'"):
        load_reward("world:sentiment")  # unregistered, it reads as package.module:function
    with pytest.raises(ValueError, match="neither a registered SCHEME"):
        load_reward("world:mix:sentiment,formality,0.5")
    reg.register("world", world_reward)
    assert load_reward("world:sentiment")(["p"], [" a lovely day."])[0] == sentiment(" a lovely day.")
    with pytest.raises(ValueError, match="neither world:... nor"):
        load_reward("other:mix:a")


@pytest.mark.slow
def test_missing_matplotlib_is_one_line_naming_the_extra(tmp_path):
    proc = _python(
        "import sys\n"
        "sys.modules['matplotlib'] = None  # as if not installed\n"
        "from dralign.cli import main\n"
        f"sys.exit(main(['bench', 'loglinear', '--seeds', '0', '--n-grid', '4', '8', "
        f"'--output-dir', {str(tmp_path)!r}]))"
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == ["dralign bench: error: the benchmark plots need matplotlib: pip install 'dralign[bench]'"]
    assert not (tmp_path / "results.json").exists()  # refused before the fits
