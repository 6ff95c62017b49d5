"""The SAM CLI accepts the template (`sam validate --lint`) and `sam build` ships what is measured.

Needs aws-sam-cli (`make sam-cli` puts it in .venv/sam-cli; a missing CLI fails, never skips).
Offline, without AWS credentials: one real `sam build` of a copy of the project per module, the layer's
Makefile installing its pinned arm64 wheels from the wheelhouse `make wheels` downloaded from PyPI
(`make test` does that first). The built layer is then checked as Lambda would load it: bytecode of the
template's runtime (python3.13: its magic number and cache tag) beside every source file, only imported
distributions, handlers importable from /var/task and /opt/python alone, run by that Python.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from tests.infrastructure.imports import runtime_imported_modules_under
from usersync_dev.template import REPO_ROOT, load_template, runtime_python, runtime_python_version

# One worker builds once: the module-scoped `sam build` is shared by every test in this file.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("sam-build")]

DURABLE_SDK = "aws_durable_execution_sdk_python"  # functions/reconcile/requirements.txt, its own build
DEV_ONLY_PARTS = {"usersync_dev", "local", "tests", "bench", "events", "conftest.py", ".venv"}


def _sam() -> str | None:
    candidates = [os.environ.get("SAM_CLI"), str(REPO_ROOT / ".venv" / "sam-cli" / "bin" / "sam")]
    candidates.append(shutil.which("sam"))
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


SAM = _sam()
WHEELHOUSE = REPO_ROOT / ".venv" / "wheels" / "manylinux2014_aarch64"
# The template's runtime ("3.13"), and the interpreter layers/shared/Makefile finds for it (the one
# `make build` puts first on PATH: `sam build` builds python3.13 functions natively with it).
RUNTIME_VERSION = runtime_python_version()
CACHE_TAG = "cpython-" + RUNTIME_VERSION.replace(".", "")
# importlib.util.MAGIC_NUMBER per CPython release (Lib/importlib/_bootstrap_external.py): written down,
# not asked of the interpreter, so a build by the wrong Python cannot pass. Moving the runtime adds a row.
MAGIC_NUMBERS = {"3.12": 3531, "3.13": 3571}
RUNTIME_MAGIC = MAGIC_NUMBERS[RUNTIME_VERSION].to_bytes(2, "little") + b"\r\n"
# The pyc flags of PEP 552's unchecked hash mode: bit 0 (hash-based) set, bit 1 (check_source) clear.
UNCHECKED_HASH_FLAGS = 0b01
LAMBDA_RUNTIME_MODULES = {"snapshot_restore_py"}


@pytest.fixture(autouse=True)
def _sam_is_installed() -> None:
    # Never skipped: `make test` installs the SAM CLI (its sam-cli target) before pytest runs.
    assert SAM is not None, "aws-sam-cli not found: run `make sam-cli` (installs it in .venv/sam-cli)"


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
    """The one `sam validate --lint` of the real template (`make cfn-lint` runs cfn-lint alone)."""
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


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`sam build` of a copy of the project, offline: the layer's wheels come from WHEELHOUSE."""
    assert SAM is not None
    python_dir = Path(_runtime_python()).parent
    assert any(WHEELHOUSE.glob("*.whl")), f"no wheels in {WHEELHOUSE}: run `make wheels` (PyPI, once)"
    tmp_path = tmp_path_factory.mktemp("sam-build")
    project = tmp_path / "project"
    project.mkdir()
    for name in ("template.yaml", "samconfig.toml"):
        shutil.copy2(REPO_ROOT / name, project / name)
    for name in ("functions", "layers"):
        shutil.copytree(REPO_ROOT / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
    env = _sam_env(tmp_path)
    env["PATH"] = f"{python_dir}{os.pathsep}{env['PATH']}"
    env["RUNTIME_PYTHON"] = _runtime_python()  # as `make build` sets it (the function Makefiles read it)
    env["WHEELHOUSE"] = str(WHEELHOUSE)  # offline: pip --no-index --find-links
    env.pop("PYTHONPATH", None)
    build = tmp_path / "build"
    result = _run(["build", "--build-dir", str(build)], project, env)
    assert result.returncode == 0, result.stdout + result.stderr
    return build


@pytest.fixture(scope="module")
def runnable_layer(built: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built layer's python/ as this machine can load it.

    On aarch64 that is the build itself. Elsewhere its native extensions (pydantic_core, cryptography)
    cannot load, so the same Makefile builds a twin from the same versions' x86_64 wheels; it must hold
    exactly the same Python files, so importing it proves the deployed layout imports.
    """
    deployed = built / "SharedLayer" / "python"
    if platform.machine() in {"aarch64", "arm64"}:
        return deployed
    twin = tmp_path_factory.mktemp("host-layer")
    wheelhouse = WHEELHOUSE.parent / f"manylinux2014_{platform.machine()}"
    assert any(wheelhouse.glob("*.whl")), f"no wheels in {wheelhouse}: run `make wheels`"
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "MAKEFLAGS", "MFLAGS"}}
    env.update(
        {
            "ARTIFACTS_DIR": str(twin),
            "LAYER_PLATFORM": f"manylinux2014_{platform.machine()}",
            "WHEELHOUSE": str(wheelhouse),
        }
    )
    make = shutil.which("make")
    assert make is not None
    done = subprocess.run(  # noqa: S603 - our own Makefile
        [make, "-s", "-C", str(REPO_ROOT / "layers" / "shared"), "build-SharedLayer"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    twin_python = twin / "python"

    def python_files(root: Path) -> set[Path]:
        return {p.relative_to(root) for p in root.rglob("*") if p.suffix in {".py", ".pyc"}}

    assert python_files(twin_python) == python_files(deployed)
    return twin_python


def test_sam_build_ships_the_package_in_the_layer_and_no_dev_code(built: Path) -> None:
    # The layer: the Makefile copied layers/shared/usersync into python/, so `import usersync` works.
    source = REPO_ROOT / "layers" / "shared" / "usersync"
    built_package = built / "SharedLayer" / "python" / "usersync"
    expected = {p.relative_to(source) for p in source.rglob("*.py") if "__pycache__" not in p.parts}
    assert {p.relative_to(built_package) for p in built_package.rglob("*.py")} == expected
    # Each function artifact is its handler directory and nothing else.
    functions = _functions()
    for name, code in functions.items():
        expected_files = {p.relative_to(code) for p in code.rglob("*.py") if "__pycache__" not in p.parts}
        shipped_files = {p.relative_to(built / name) for p in (built / name).rglob("*.py")}
        if name == "ReconcileFunction":  # plus the durable execution SDK, which only it imports
            shipped_files = {p for p in shipped_files if p.parts[0] != DURABLE_SDK}
            assert (built / name / DURABLE_SDK / "__init__.py").is_file()
        assert shipped_files == expected_files, name
    # First-party code only (third-party distributions carry their own test_* modules, e.g. annotated_types).
    first_party = [built_package, *(built / name for name in functions)]
    shipped = [p.relative_to(built) for root in first_party for p in root.rglob("*") if p.is_file()]
    dev_only = [p for p in shipped if DEV_ONLY_PARTS & set(p.parts) or p.name.startswith("test_")]
    assert shipped
    assert not dev_only


def _functions() -> dict[str, Path]:
    return {
        name: REPO_ROOT / resource["Properties"]["CodeUri"]
        for name, resource in load_template()["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def _runtime_python() -> str:
    """The runtime's interpreter (layers/shared/Makefile's finder): a missing one fails, never skips."""
    python = runtime_python()
    version = subprocess.run(  # noqa: S603
        [python, "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert version.startswith(f"{RUNTIME_VERSION}."), f"{python} is Python {version}"
    return python


def test_template_runtime_is_python313_and_the_layer_makefile_builds_for_it() -> None:
    # Durable functions (reconciliation, CONTRACT §12) need python3.13+; the bytecode follows the runtime.
    assert RUNTIME_VERSION == "3.13"
    make = shutil.which("make")
    assert make is not None
    layer_makefile_dir = str(REPO_ROOT / "layers" / "shared")
    printed = subprocess.run(  # noqa: S603 - our own Makefile
        [make, "-s", "--no-print-directory", "-C", layer_makefile_dir, "print-runtime-version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert printed == RUNTIME_VERSION


def test_every_layer_module_ships_runtime_unchecked_hash_bytecode(built: Path) -> None:
    layer = built / "SharedLayer" / "python"
    probe = subprocess.run(  # noqa: S603
        [
            _runtime_python(),
            "-c",
            "import importlib.util, sys; sys.stdout.buffer.write(importlib.util.MAGIC_NUMBER)",
        ],
        capture_output=True,
        check=True,
    )
    assert probe.stdout == RUNTIME_MAGIC
    sources = sorted(layer.rglob("*.py"))
    assert len(sources) > 100
    assert layer / "usersync" / "api" / "webhook.py" in sources
    assert _bytecode_problems(layer, sources) == {}


def _bytecode_problems(root: Path, sources: list[Path]) -> dict[str, str]:
    """What is wrong with the runtime's unchecked-hash bytecode of `sources` under `root` ({} if nothing),
    including bytecode without its source or for another interpreter."""
    wrong: dict[str, str] = {}
    for source in sources:
        compiled = source.parent / "__pycache__" / f"{source.stem}.{CACHE_TAG}.pyc"
        if not compiled.is_file():
            wrong[str(source.relative_to(root))] = "no .pyc"
            continue
        header = compiled.read_bytes()[:16]
        if header[:4] != RUNTIME_MAGIC:
            wrong[str(source.relative_to(root))] = f"magic {header[:4]!r}"
        elif int.from_bytes(header[4:8], "little") != UNCHECKED_HASH_FLAGS:
            wrong[str(source.relative_to(root))] = f"flags {int.from_bytes(header[4:8], 'little'):#b}"
    for stray in root.rglob("*.pyc"):
        if not stray.name.endswith(f".{CACHE_TAG}.pyc"):
            wrong[str(stray.relative_to(root))] = "bytecode for another interpreter"
    return wrong


def test_the_reconcile_functions_durable_sdk_ships_runtime_unchecked_hash_bytecode(built: Path) -> None:
    # /var/task is read-only too: what the function's own Makefile installs is compiled as the layer is.
    sdk = built / "ReconcileFunction" / DURABLE_SDK
    sources = sorted(sdk.rglob("*.py"))
    assert len(sources) > 10
    assert _bytecode_problems(sdk, sources) == {}


def _distribution_modules(layer: Path) -> dict[str, set[str]]:
    """Distribution name -> the top-level modules its RECORD installed into the layer."""
    found: dict[str, set[str]] = {}
    for record in layer.glob("*.dist-info/RECORD"):
        name = record.parent.name.split("-")[0].lower().replace("_", "-")
        tops = {line.split(",")[0].split("/")[0] for line in record.read_text(encoding="utf-8").splitlines()}
        found[name] = {top.split(".")[0] for top in tops if not top.endswith((".dist-info", ".data"))}
    return found


def test_layer_holds_only_distributions_the_code_imports(built: Path, runnable_layer: Path) -> None:
    layer = built / "SharedLayer" / "python"
    distributions = _distribution_modules(layer)
    assert "standardwebhooks" in distributions  # declared: the webhook imports it
    assert not {
        "svix",
        "httpx",
        "httpcore",
        "anyio",
        "h11",
        "attrs",
        "deprecated",
        "wrapt",
        "certifi",
        "idna",
        "pycparser",
        "aws-xray-sdk",
    } & set(distributions)
    wanted = set()
    for root in [layer / "usersync", *(built / name for name in _functions())]:
        wanted |= runtime_imported_modules_under(root)
    # The stdlib, what Lambda's runtime provides (SnapStart's hooks module, imported guarded), and what
    # a function ships itself (the reconcile function's durable SDK): the layer need not hold those.
    provided = set(sys.stdlib_module_names) | LAMBDA_RUNTIME_MODULES | {DURABLE_SDK}
    wanted = {name for name in wanted if name.split(".")[0] not in provided}
    script = (
        "import importlib, json, sys\n"
        f"sys.path[:0] = [{str(runnable_layer)!r}]\n"
        f"for name in {sorted(wanted)!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    done = subprocess.run(  # noqa: S603
        [_runtime_python(), "-I", "-B", "-c", script], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    imported = set(json.loads(done.stdout))
    unimported = {name for name, modules in distributions.items() if not modules & imported}
    assert unimported == set(), "shipped but never imported by the handlers"


def _import_from_built_layout(built: Path, layer: Path, function: str, tmp_path: Path) -> dict[str, str]:
    """Import the built handler as Lambda does: /var/task = the function, /opt/python = the layer."""
    task = tmp_path / function / "var-task"
    opt_python = tmp_path / function / "opt" / "python"
    shutil.copytree(built / function, task)
    shutil.copytree(layer, opt_python)
    script = (
        "import json, sys\n"
        f"sys.path[:0] = [{str(task)!r}, {str(opt_python)!r}]\n"
        "import app\n"
        "assert callable(app.lambda_handler)\n"
        "print(json.dumps({n: getattr(m, '__file__', None) or '' for n, m in sys.modules.items()}))\n"
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "USERS_TABLE_NAME": "usersync-test-users",
        "POWERTOOLS_SERVICE_NAME": "usersync",
        "POWERTOOLS_METRICS_NAMESPACE": "usersync-test",
        "CLERK_WEBHOOK_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:clerk-webhook",
        "CLERK_JWKS_URL": "https://clerk.example.com/.well-known/jwks.json",
    }
    done = subprocess.run(  # noqa: S603
        [_runtime_python(), "-I", "-B", "-c", script], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    modules: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    return modules


@pytest.mark.parametrize(
    ("function", "must_import"),
    [("WebhookFunction", "standardwebhooks"), ("AuthorizerFunction", "jwt")],
)
def test_built_handler_imports_with_the_runtime_python_from_the_built_layout_alone(
    built: Path, runnable_layer: Path, tmp_path: Path, function: str, must_import: str
) -> None:
    modules = _import_from_built_layout(built, runnable_layer, function, tmp_path)
    assert must_import in modules
    assert "usersync" in modules
    stdlib = subprocess.run(  # noqa: S603
        [_runtime_python(), "-c", "import sysconfig; print(sysconfig.get_paths()['stdlib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    outside = {
        name: path
        for name, path in modules.items()
        if path and not path.startswith((str(tmp_path / function), stdlib))
    }
    assert outside == {}, "a module came from outside /var/task, /opt/python and the runtime's stdlib"
    assert modules["app"] == str(tmp_path / function / "var-task" / "app.py")
    assert modules["usersync"].startswith(str(tmp_path / function / "opt" / "python" / "usersync"))


def test_sam_package_zips_the_bytecode_with_the_layer(built: Path, tmp_path: Path) -> None:
    """`sam package`/`sam deploy` zip the build with SAM's own make_zip (fixed 1980 timestamps, which is
    why the bytecode is hash-based): every .pyc must reach the zip Lambda unpacks under /opt."""
    layer = built / "SharedLayer"
    sam_python = REPO_ROOT / ".venv" / "sam-cli" / "bin" / "python"
    script = (
        "import sys\n"
        "from samcli.lib.package.utils import make_zip\n"
        "print(make_zip(sys.argv[1], sys.argv[2]))\n"
    )
    done = subprocess.run(  # noqa: S603 - the SAM CLI's interpreter, our fixed script
        [str(sam_python), "-c", script, str(tmp_path / "layer"), str(layer)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    with zipfile.ZipFile(done.stdout.strip()) as archive:
        zipped = {name for name in archive.namelist() if not name.endswith("/")}
    on_disk = {str(p.relative_to(layer)) for p in layer.rglob("*") if p.is_file()}
    assert zipped == on_disk
    assert sum(name.endswith(f".{CACHE_TAG}.pyc") for name in zipped) == sum(
        name.endswith(".py") for name in zipped
    )
