"""The SAM CLI accepts the template (`sam validate --lint`) and `sam build` ships only runtime code.

Needs aws-sam-cli (`make cfn-lint` puts it in .venv/sam-cli; a missing CLI fails, never skips).
Offline, without AWS credentials: the build copies the project to a temporary directory and empties
its requirements files, because resolving the layer's arm64 wheels needs PyPI (that part is
`make build`, checked by hand).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from usersync_dev.template import REPO_ROOT, load_template

pytestmark = pytest.mark.slow

DEV_ONLY_PARTS = {"usersync_dev", "local", "tests", "bench", "events", "conftest.py", ".venv"}


def _sam() -> str | None:
    candidates = [os.environ.get("SAM_CLI"), str(REPO_ROOT / ".venv" / "sam-cli" / "bin" / "sam")]
    candidates.append(shutil.which("sam"))
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


def _python312_dir() -> Path | None:
    """A directory holding a working python3.12: `sam build` builds python3.12 natively with it."""
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = [
        shutil.which("python3.12"),
        *sorted(map(str, pyenv_root.glob("versions/3.12*/bin/python3.12"))),
    ]
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-c", "pass"], capture_output=True, check=False)  # noqa: S603
        if probe.returncode == 0:
            return Path(candidate).parent
    return None


SAM = _sam()


@pytest.fixture(autouse=True)
def _sam_is_installed() -> None:
    # Never skipped: `make test` installs the SAM CLI (its cfn-lint target) before pytest runs.
    assert SAM is not None, "aws-sam-cli not found: run `make cfn-lint` (installs it in .venv/sam-cli)"


def _sam_env(tmp_path: Path) -> dict[str, str]:
    """No credentials, a region, no telemetry and no weekly PyPI version check (its marker is fresh)."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AWS_ACCESS", "AWS_SECRET", "AWS_SESSION"))
    }
    env.pop("AWS_PROFILE", None)
    app_dir = tmp_path / "sam-app-dir"
    app_dir.mkdir(exist_ok=True)
    (app_dir / "metadata.json").write_text(json.dumps({"lastVersionCheck": time.time()}), encoding="utf-8")
    env.update(
        {"AWS_DEFAULT_REGION": "us-east-1", "SAM_CLI_TELEMETRY": "0", "__SAM_CLI_APP_DIR": str(app_dir)}
    )
    return env


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    assert SAM is not None
    return subprocess.run(  # noqa: S603 - our own fixed command line
        [SAM, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_sam_validate_lint_passes_without_credentials(tmp_path: Path) -> None:
    result = _run(["validate", "--lint"], REPO_ROOT, _sam_env(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout


def test_sam_validate_lint_rejects_a_broken_template(tmp_path: Path) -> None:
    broken = tmp_path / "template.yaml"
    text = (REPO_ROOT / "template.yaml").read_text(encoding="utf-8")
    # An invalid enum that only the linter (not SAM's own translation) notices: proves --lint runs.
    assert "BillingMode: PAY_PER_REQUEST" in text
    broken.write_text(
        text.replace("BillingMode: PAY_PER_REQUEST", "BillingMode: PAY_AS_YOU_GO", 1), encoding="utf-8"
    )
    result = _run(["validate", "--lint", "--template-file", str(broken)], tmp_path, _sam_env(tmp_path))
    assert result.returncode != 0
    assert "PAY_AS_YOU_GO" in result.stdout + result.stderr


def test_sam_build_ships_the_package_in_the_layer_and_no_dev_code(tmp_path: Path) -> None:
    python312 = _python312_dir()
    assert python312 is not None, "sam build of a python3.12 function needs python3.12 on PATH"
    project = tmp_path / "project"
    project.mkdir()
    for name in ("template.yaml", "samconfig.toml"):
        shutil.copy2(REPO_ROOT / name, project / name)
    for name in ("functions", "layers"):
        shutil.copytree(REPO_ROOT / name, project / name)
    for requirements in project.rglob("requirements.txt"):
        requirements.write_text("", encoding="utf-8")  # offline: no pip download from PyPI
    env = _sam_env(tmp_path)
    env["PATH"] = f"{python312}{os.pathsep}{env['PATH']}"
    build = tmp_path / "build"

    result = _run(["build", "--build-dir", str(build)], project, env)
    assert result.returncode == 0, result.stdout + result.stderr

    # The layer: SAM copied layers/shared/ into python/, so `import usersync` works on Lambda.
    source = REPO_ROOT / "layers" / "shared" / "usersync"
    built_package = build / "SharedLayer" / "python" / "usersync"
    expected = {p.relative_to(source) for p in source.rglob("*.py") if "__pycache__" not in p.parts}
    assert {p.relative_to(built_package) for p in built_package.rglob("*.py")} == expected
    # Each function artifact is its handler directory and nothing else.
    for name, function in load_template()["Resources"].items():
        if function["Type"] != "AWS::Serverless::Function":
            continue
        code = REPO_ROOT / function["Properties"]["CodeUri"]
        expected_files = {p.relative_to(code) for p in code.rglob("*.py") if "__pycache__" not in p.parts}
        assert {p.relative_to(build / name) for p in (build / name).rglob("*.py")} == expected_files, name
    shipped = [p.relative_to(build) for p in build.rglob("*") if p.is_file()]
    dev_only = [p for p in shipped if DEV_ONLY_PARTS & set(p.parts) or p.name.startswith("test_")]
    assert shipped and not dev_only
