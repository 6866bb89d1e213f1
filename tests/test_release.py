"""The releasable package: the wheel installs into a fresh venv and works from there (`dralign
--help`, `dralign methods`, one training step on a tiny model); the version lives in one place."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import dralign
from helpers import REPO_ROOT, preference_rows, write_jsonl


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    # PYTHONPATH dropped: the checkout's src/ must not shadow the installed wheel
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.setdefault("OMP_NUM_THREADS", "1")
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, **kw)


def _ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_version_is_read_from_one_place():
    text = (REPO_ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in text and 'attr = "dralign.__version__"' in text


def test_cli_version_prints_package_version(capsys):
    from dralign.cli import main

    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"dralign {dralign.__version__}"


@pytest.mark.slow
def test_wheel_installs_into_fresh_venv_and_trains(tmp_path):
    """Build the wheel, install it (no index: every dependency must already be satisfied) into a
    fresh venv that sees this environment's packages (pip included) through a .pth line (torch is
    reused, not reinstalled; a plain path line does not run this environment's editable-install
    hooks), then run the installed `dralign`."""
    dist = tmp_path / "dist"
    _ok(_run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", dist, REPO_ROOT]))
    (wheel,) = dist.glob("dralign-*.whl")
    assert wheel.name.startswith(f"dralign-{dralign.__version__}-")

    venv = tmp_path / "venv"
    _ok(_run([sys.executable, "-m", "venv", "--without-pip", venv]))  # its own old setuptools would shadow ours
    py = venv / "bin" / "python"
    purelib = Path(_ok(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])).strip())
    parent_sites = [p for p in sys.path if p.endswith("site-packages")]  # this env's, and any it chains to
    (purelib / "parent-env.pth").write_text("\n".join(parent_sites) + "\n")
    _ok(_run([py, "-m", "pip", "install", "-q", "--no-index", "--no-build-isolation", wheel]))

    where = _ok(_run([py, "-c", "import dralign; print(dralign.__file__)"])).strip()
    assert Path(where).is_relative_to(venv), where  # the wheel's copy, not the checkout
    exe = venv / "bin" / "dralign"
    assert _ok(_run([exe, "--version"])).strip() == f"dralign {dralign.__version__}"
    assert "train" in _ok(_run([exe, "--help"]))
    assert "wdpo" in _ok(_run([exe, "methods", "--width", "200"]))

    from dralign.modeling.tiny import save_tiny

    model = save_tiny(tmp_path / "tiny", "llama")
    data = write_jsonl(tmp_path / "pairs.jsonl", preference_rows(8))
    out = _ok(
        _run([exe, "train", "--model", model, "--data", data, "--max-steps", 1, "--output-dir", tmp_path / "run"])
    )
    assert "completed: 1 steps" in out
    assert (tmp_path / "run" / "metrics.jsonl").is_file()


@pytest.mark.slow
def test_build_makes_wheel_and_sdist_that_twine_accepts(tmp_path):
    """`make dist`'s check: python -m build, then twine check (both installed by `make dist`)."""
    pytest.importorskip("build", reason="`make dist` installs build")
    pytest.importorskip("twine", reason="`make dist` installs twine")
    _ok(_run([sys.executable, "-m", "build", "-o", tmp_path, REPO_ROOT]))
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [f"dralign-{dralign.__version__}-py3-none-any.whl", f"dralign-{dralign.__version__}.tar.gz"]
    _ok(_run([sys.executable, "-m", "twine", "check", "--strict", *tmp_path.iterdir()]))
