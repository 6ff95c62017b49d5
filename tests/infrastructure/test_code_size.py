"""Size limits that keep the layer readable (issue 26): no layer module over 400 lines, no function or
method over 60 lines in layers/ or functions/. Read from the AST of the real tree, so a module or
function that grows past a limit fails the build; `check_sizes` is also run on made-up source below,
to show that it sees what it should."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
LAYER = REPO_ROOT / "layers" / "shared" / "usersync"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def function_lengths(source: str) -> list[tuple[str, int]]:
    """(qualified name, lines from `def` to its last line) of every function, nested ones included."""
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = prefix + child.name
                assert child.end_lineno is not None
                found.append((name, child.end_lineno - child.lineno + 1))
                visit(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return found


def check_sizes(source: str, label: str, *, module_limit: int | None) -> list[str]:
    """Every limit `source` breaks, one line each; the module limit applies to layer modules only."""
    problems: list[str] = []
    lines = len(source.splitlines())
    if module_limit is not None and lines > module_limit:
        problems.append(f"{label}: {lines} lines (at most {module_limit})")
    for name, length in function_lengths(source):
        if length > MAX_FUNCTION_LINES:
            problems.append(f"{label}: {name} is {length} lines (at most {MAX_FUNCTION_LINES})")
    return problems


def sources() -> list[Path]:
    return sorted([*(REPO_ROOT / "layers").rglob("*.py"), *(REPO_ROOT / "functions").rglob("*.py")])


def test_the_tree_is_read() -> None:
    paths = sources()
    assert LAYER / "clerk" / "tokens.py" in paths
    assert REPO_ROOT / "functions" / "webhook" / "app.py" in paths
    assert len(paths) > 40


def test_no_layer_module_over_400_lines_and_no_function_over_60() -> None:
    problems: list[str] = []
    for path in sources():
        in_layer = path.is_relative_to(LAYER)
        label = str(path.relative_to(REPO_ROOT))
        problems += check_sizes(path.read_text(), label, module_limit=MAX_MODULE_LINES if in_layer else None)
    assert problems == [], "split along a real seam:\n" + "\n".join(problems)


def _function(name: str, body_lines: int, indent: str = "") -> str:
    body = "".join(f"{indent}    x{i} = {i}\n" for i in range(body_lines))
    return f"{indent}def {name}() -> None:\n{body}"


@pytest.mark.parametrize(
    ("source", "module_limit", "expected"),
    [
        pytest.param(_function("fits", 59), None, [], id="a 60-line function passes"),
        pytest.param(
            _function("too_long", 60), None, ["m.py: too_long is 61 lines (at most 60)"], id="61 lines fails"
        ),
        pytest.param(
            "class Repo:\n" + _function("save", 70, indent="    "),
            None,
            ["m.py: Repo.save is 71 lines (at most 60)"],
            id="a method is a function",
        ),
        pytest.param(
            _function("outer", 2) + _function("inner", 61, indent="    "),
            None,
            ["m.py: outer is 65 lines (at most 60)", "m.py: outer.inner is 62 lines (at most 60)"],
            id="nested functions count alone and in their parent",
        ),
        pytest.param("x = 1\n" * 401, 400, ["m.py: 401 lines (at most 400)"], id="a 401-line module fails"),
        pytest.param("x = 1\n" * 401, None, [], id="outside the layer only functions are limited"),
    ],
)
def test_the_check_reports_what_breaks_a_limit(
    source: str, module_limit: int | None, expected: list[str]
) -> None:
    assert check_sizes(source, "m.py", module_limit=module_limit) == expected
