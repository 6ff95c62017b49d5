"""Which modules our code imports when it runs, read from its source (no import executed)."""

from __future__ import annotations

import ast
from pathlib import Path


def runtime_imported_modules(tree: ast.AST) -> set[str]:
    """Every absolute module `tree` imports, lazy imports inside functions included; imports under
    `if TYPE_CHECKING:` are left out (they never run), its `else:` branch is kept."""
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for statement in node.orelse:
                visit(statement)
            return
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return names


def runtime_imported_modules_under(root: Path) -> set[str]:
    """`runtime_imported_modules` of every .py file below `root`."""
    names: set[str] = set()
    for path in root.rglob("*.py"):
        names |= runtime_imported_modules(ast.parse(path.read_text(encoding="utf-8")))
    return names
