"""The layer rules of docs/design.md, checked on the source: no import from a lower layer to a
higher one, no import cycle between files, no file over 500 lines, no reference to a document
outside the repository."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

LAYERS = {  # package prefix -> layer (the longest matching prefix wins)
    "dralign.objectives": 1,
    "dralign.data": 1,
    "dralign.modeling": 1,
    "dralign.stats": 1,
    "dralign.config": 1,
    "dralign": 1,
    "dralign.train": 2,
    "dralign.ratio": 2,
    "dralign.eval": 3,
    "dralign.integrations": 3,
    "dralign.diagnosis": 3,
    "dralign_bench": 4,
    "dralign.cli": 5,
}
GROUND = {"dralign.objectives"}  # imports nothing else of dralign


def modules() -> dict[str, Path]:
    found = {}
    for file in SRC.rglob("*.py"):
        parts = list(file.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = file
    return found


def layer(module: str) -> int:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[best]


def _runtime_nodes(tree):
    """Every node except those under `if TYPE_CHECKING:` (annotations only, never imported)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def imports(module: str, file: Path, known: set[str]) -> set[str]:
    """The dralign modules `module` imports anywhere in its file (function-level too)."""
    package = module if file.name == "__init__.py" else module.rsplit(".", 1)[0]
    out = set()
    for node in _runtime_nodes(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names = [f"{prefix}.{a.name}" for a in node.names] + [prefix]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                out.add(name)
    return out


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {m: imports(m, f, known) for m, f in found.items()}


def test_no_import_goes_up_a_layer():
    upward = [
        f"{m} (layer {layer(m)}) imports {t} (layer {layer(t)})"
        for m, targets in graph().items()
        for t in targets
        if layer(t) > layer(m) and not t.startswith(m + ".")
    ]
    assert not upward, "\n".join(sorted(upward))


def test_the_objective_algebra_imports_nothing_else_of_dralign():
    bad = [
        f"{m} imports {t}"
        for m, targets in graph().items()
        if any(m.startswith(g) for g in GROUND)
        for t in targets
        if not any(t.startswith(g) for g in GROUND)
    ]
    assert not bad, "\n".join(bad)


def test_no_import_cycle_between_files():
    g = graph()
    # a package's __init__ re-exporting its own modules is not a cycle between files
    edges = {m: {t for t in ts if not m.startswith(t + ".") and not t.startswith(m + ".")} for m, ts in g.items()}
    seen, stack, cycles = set(), [], []

    def visit(node):
        if node in stack:
            cycles.append(stack[stack.index(node) :] + [node])
            return
        if node in seen:
            return
        seen.add(node)
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            visit(target)
        stack.pop()

    for node in sorted(edges):
        visit(node)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_no_source_file_over_500_lines():
    long = [f"{f.relative_to(SRC)}: {n}" for f in SRC.rglob("*.py") if (n := len(f.read_text().splitlines())) > 500]
    assert not long, long


def test_no_reference_to_a_document_outside_the_repository():
    stale = [str(f.relative_to(SRC)) for f in SRC.rglob("*.py") if "DESIGN §" in f.read_text()]
    assert not stale, stale
