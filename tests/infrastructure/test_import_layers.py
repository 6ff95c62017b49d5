"""The layer's import contract ([tool.importlinter] in pyproject.toml, `make lint-imports`) holds on the
real tree and fails the build on an import against it: checked on a copy of the package with one
deliberately wrong import added, linted with the project's own configuration."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE = REPO_ROOT / "layers" / "shared" / "usersync"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(layer_dir: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` with the project's configuration, finding `usersync` under `layer_dir` first
    (PYTHONPATH precedes the editable install's finder)."""
    env = {**os.environ, "PYTHONPATH": str(layer_dir)}
    return subprocess.run(  # noqa: S603 - the venv's own lint-imports, fixed arguments
        [str(LINT_IMPORTS), "--config", str(REPO_ROOT / "pyproject.toml"), "--no-cache"],
        cwd=layer_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_real_tree_keeps_every_contract() -> None:
    result = lint_imports(REPO_ROOT / "layers" / "shared")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "BROKEN" not in result.stdout
    assert " 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "wrong_import", "contract"),
    [
        pytest.param("runtime/budget.py", "import usersync.api.http", "layers", id="runtime imports api"),
        pytest.param(
            "store/organizations.py",
            "from usersync.sync.users import sync_attempt",
            "layers",
            id="store imports sync",
        ),
        pytest.param(
            "clerk/organizations.py",
            "from usersync.clerk.users import ClerkUser",
            "Clerk's entities know nothing of each other",
            id="one Clerk entity imports another",
        ),
    ],
)
def test_an_import_against_the_contract_fails_the_lint(
    tmp_path: Path, module: str, wrong_import: str, contract: str
) -> None:
    copy = tmp_path / "usersync"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n{wrong_import}  # deliberately wrong\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout[-3000:]
    broken = [line for line in result.stdout.splitlines() if line.endswith("BROKEN")]
    # The named contract breaks (an indirect import may break an independence contract too).
    assert any(line.startswith(contract) for line in broken), result.stdout[-3000:]
    assert module.replace("/", ".").removesuffix(".py") in result.stdout
