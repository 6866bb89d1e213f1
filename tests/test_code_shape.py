"""The shape rules of docs/design.md, checked on the source of src/dralign: no function longer
than 80 lines, none with more than 10 parameters (self, *args and **kwargs included). A longer
function is split into named steps; a longer parameter list becomes an options dataclass."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "dralign"
MAX_LINES = 80
MAX_PARAMETERS = 10

# Known offenders: none left. This list must only shrink: never add an entry; fix the function.
ALLOWED: set[str] = set()


def parameter_count(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    a = node.args
    return len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs) + (a.vararg is not None) + (a.kwarg is not None)


def offenders(root: Path = SRC) -> dict[str, str]:
    """{"file:function": what is wrong} for every function of `root` over either limit."""
    found = {}
    for file in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(file.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            assert node.end_lineno is not None
            lines, params = node.end_lineno - node.lineno + 1, parameter_count(node)
            if lines > MAX_LINES or params > MAX_PARAMETERS:
                found[f"{file.relative_to(root).as_posix()}:{node.name}"] = (
                    f"line {node.lineno}: {lines} lines, {params} parameters"
                )
    return found


def test_no_function_over_80_lines_or_10_parameters():
    new = {k: v for k, v in offenders().items() if k not in ALLOWED}
    assert not new, "\n".join(f"{k} ({v})" for k, v in sorted(new.items()))


def test_the_allow_list_names_only_current_offenders():
    """A fixed function leaves the list (it only shrinks)."""
    stale = sorted(ALLOWED - set(offenders()))
    assert not stale, f"no longer over a limit, remove from ALLOWED: {stale}"


def test_the_checker_sees_a_long_function_and_a_long_parameter_list(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    (tmp_path / "m.py").write_text(
        f"def long():\n{body}\n\n\ndef wide(a, b, c, d, e, f, g, h, i, *j, k, **l):\n"
        "    pass\n\n\ndef fine(self, a, *b, c, **d):\n    pass\n"
    )
    assert set(offenders(tmp_path)) == {"m.py:long", "m.py:wide"}
