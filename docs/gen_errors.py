"""The troubleshooting page's error list, harvested from the source: every `raise X(...)` whose X
is a `dralign.errors.DralignError` subclass (ConfigError, DataError, ... included), grouped by the
error family it belongs to, each with what to do. Read statically (ast), so nothing is imported.
Used by docs/gen_reference.py."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
KINDS = {  # family -> (title, what to do); the order of the page
    "BadOptionError": (
        "Bad options",
        "Fix the flag or YAML key the message names; `dralign CMD --help` and the "
        "[CLI reference](cli.md) list each option's valid range.",
    ),
    "BadInputError": (
        "Bad input data",
        "The message names the file, row and field: fix the row, map the column "
        "with `--*-column`, or skip bad rows with `--on-bad-row skip` (they are counted).",
    ),
    "UnsupportedError": (
        "Unsupported combinations",
        "The message says why the combination cannot work; choose another method, option or model as it suggests.",
    ),
    "BadRunFolderError": (
        "Run folders, checkpoints and caches",
        "Use `--resume` to continue the run the folder "
        "holds, `--overwrite` to replace it, or another `--output-dir`; a bad checkpoint or "
        "cache is named, and newer valid ones are used.",
    ),
    "RunFailedError": (
        "Runs that could not go on",
        "The run stopped and says why (non-finite steps in a row, a "
        "failed worker): lower `--lr`, check the data, then `--resume`.",
    ),
    "MissingExtraError": (
        "Missing extras",
        "Install the extra the message names, e.g. `pip install 'dralign[bench]'`.",
    ),
    "DralignError": ("Other refusals", "Read the message: it says what and, where it can, what to do."),
}


def _error_classes(trees: dict[str, ast.Module]) -> dict[str, str]:
    """{class name: its family in KINDS} for every class descending from DralignError."""
    bases = {
        node.name: [ast.unparse(b).split(".")[-1] for b in node.bases]
        for tree in trees.values()
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
    }
    family = {name: name for name in KINDS}

    def find(name: str, seen=()) -> str | None:
        if name in family:
            return family[name]
        if name in seen or name not in bases:
            return None
        for base in bases[name]:
            if (kind := find(base, seen + (name,))) is not None:
                return kind
        return None

    return {name: kind for name in bases if (kind := find(name)) is not None}


def _render(node: ast.AST, constants: dict[str, str]) -> str:
    """A message expression as written: literal text kept, run-time parts shown as {expression}."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_render(v, constants) for v in node.values)
    if isinstance(node, ast.FormattedValue):
        node = node.value
    elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _render(node.left, constants) + _render(node.right, constants)
    elif isinstance(node, ast.Name) and node.id in constants:  # a module-level message string
        return constants[node.id]
    expr = ast.unparse(node)
    return "{" + (expr if len(expr) <= 24 else "…") + "}"


def _message(call: ast.Call, constants: dict[str, str]) -> str:
    return _render(call.args[0], constants) if call.args else "(no message)"


def _constants(tree: ast.Module) -> dict[str, str]:
    """Module-level NAME = "string" assignments."""
    return {
        t.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
        for t in node.targets
        if isinstance(t, ast.Name)
    }


def _raises(tree: ast.Module):
    """(function name, call) of every raise with a call, with its enclosing function."""
    for func in ast.walk(tree):
        if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(func):
                if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                    yield func.name, node.exc


def harvest() -> dict[str, list[tuple[str, str, str]]]:
    """{family: sorted [(message, error class, module.function)]}."""
    trees = {
        str(p.relative_to(SRC).with_suffix("")).replace("/", "."): ast.parse(p.read_text())
        for p in sorted(SRC.rglob("*.py"))
    }
    classes = _error_classes(trees)
    found: dict[str, set] = {kind: set() for kind in KINDS}
    for module, tree in trees.items():
        constants = _constants(tree)
        for function, call in _raises(tree):
            name = ast.unparse(call.func).split(".")[-1]
            if name in classes:
                where = f"{module.removesuffix('.__init__')}.{function}"
                found[classes[name]].add((_message(call, constants), name, where))
    return {kind: sorted(rows, key=lambda r: (r[2], r[0])) for kind, rows in found.items()}


def bad_row_reasons() -> list[str]:
    """The reason codes a bad row is counted under (module-level codes of dralign/data/report.py)."""
    constants = _constants(ast.parse((SRC / "dralign" / "data" / "report.py").read_text()))
    return [code for code in constants.values() if code.replace("_", "").isalpha() and code.islower()]


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|").replace("<", "&lt;")


def errors_page(header: str) -> str:
    lines = [
        header,
        "# Troubleshooting\n\n",
        "Everything dralign refuses is one line, `dralign CMD: error: MESSAGE`, exit status 2, never a "
        "traceback (in Python: a `dralign.errors.DralignError`, also the builtin a caller expects, e.g. "
        "`ValueError`). Below, every message the source can raise, harvested from its `raise` sites "
        "and grouped by family; `{...}` is filled in at run time.\n",
    ]
    for kind, rows in harvest().items():
        if not rows:
            continue
        title, todo = KINDS[kind]
        lines.append(
            f"\n## {title}\n\n`{kind}`. **What to do:** {todo}\n\n| message | error | raised in |\n|---|---|---|\n"
        )
        lines.extend(f"| {_cell(msg)} | `{name}` | `{where}` |\n" for msg, name, where in rows)
    lines.append(
        "\n## Bad rows\n\nA bad row is not raised on its own: the data report lists the first of them, each "
        "with file, row, line, field and reason, counts them by reason code, and stops the run "
        "(`--on-bad-row error`) or drops them with the count (`--on-bad-row skip`). The reason codes: "
        + ", ".join(f"`{code}`" for code in bad_row_reasons())
        + ".\n"
    )
    return "".join(lines)
