"""The documentation's generated pages (docs/reference/cli.md, methods.md) are what
docs/gen_reference.py writes from the code now; a flag or preset change without regenerating fails
here. Fix: `python docs/gen_reference.py` (or `make docs`) and commit docs/reference/."""

from __future__ import annotations

import importlib.util

import pytest

from helpers import REPO_ROOT


def _generator():
    spec = importlib.util.spec_from_file_location("gen_reference", REPO_ROOT / "docs" / "gen_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _generator()


@pytest.mark.parametrize("name", sorted(GEN.PAGES))
def test_generated_page_is_current(name):
    committed = (GEN.OUT / name).read_text()
    assert committed == GEN.PAGES[name](), (
        f"docs/reference/{name} is stale: run `python docs/gen_reference.py` and commit it"
    )


def test_cli_reference_lists_every_train_flag_with_its_default_and_range():
    from dralign.config import _leaf_fields, _sections, flag
    from dralign.train.config import TrainConfig

    page = GEN.cli_page()
    train = page.split("## dralign train\n")[1].split("\n## ")[0]
    for _, section_cls in _sections(TrainConfig):
        for f, _ in _leaf_fields(section_cls):
            (row,) = [line for line in train.splitlines() if line.startswith(f"| `{flag(f.name)}`")]
            if f.metadata.get("valid") is not None:
                assert str(f.metadata["valid"]) in row


def test_method_table_has_every_preset():
    from dralign.objectives import PRESETS

    page = GEN.methods_page()
    for name in PRESETS:
        assert f"| `{name}` |" in page


def test_troubleshooting_lists_raised_errors_by_family():
    path = GEN.OUT.parent / "gen_errors.py"
    spec = importlib.util.spec_from_file_location("gen_errors", path)
    errors = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(errors)
    found = errors.harvest()
    # ConfigError derives from BadOptionError: its range refusal in dralign.config.check_value is listed there
    assert any(
        "is out of range" in msg and name == "ConfigError" and where == "dralign.config.check_value"
        for msg, name, where in found["BadOptionError"]
    )
    # DataError derives from BadInputError
    assert any(name == "DataError" for _, name, _ in found["BadInputError"])
    assert not any(name == "DataError" for _, name, _ in found["BadOptionError"])
    from dralign.data import report

    assert report.CHOSEN_EQUALS_REJECTED in errors.bad_row_reasons()


API_MODULES = [
    "dralign.objectives",
    "dralign.train",
    "dralign.eval",
    "dralign.ratio",
    "dralign.integrations.trl",
    "dralign.errors",
]  # the modules docs/reference/api.md renders


@pytest.mark.parametrize("module", API_MODULES)
def test_public_api_has_docstrings(module):
    import importlib
    import inspect

    mod = importlib.import_module(module)
    missing = []
    for name in mod.__all__:
        obj = getattr(mod, name)
        if inspect.isclass(obj):
            doc = obj.__dict__.get("__doc__") or ""
            if doc.startswith(f"{obj.__name__}("):  # the signature a dataclass writes when it has none
                doc = ""
        elif inspect.isfunction(obj):
            doc = obj.__doc__ or ""
        else:
            continue
        if not doc.strip():
            missing.append(name)
    assert not missing, f"{module}: public names without a docstring: {missing}"
