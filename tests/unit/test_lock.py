"""The locks: every dev/test dependency hash-pinned, and the layer's runtime pins the versions tested.

requirements-dev.lock is what `make venv` installs (`make lock` writes it with uv, constrained by
layers/shared/requirements.txt). A layer pin changed without `make lock`, a dependency added to
pyproject.toml without it, or a lock line without hashes fails here, not in a deployed function.
"""

from __future__ import annotations

import tomllib
from collections import defaultdict
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from usersync_dev.template import REPO_ROOT

DEV_LOCK = REPO_ROOT / "requirements-dev.lock"
SAM_LOCK = REPO_ROOT / "requirements-sam.lock"
LAYER_PINS = REPO_ROOT / "layers" / "shared" / "requirements.txt"


def _logical_lines(text: str) -> list[str]:
    """Requirement lines with their `\\` continuations joined, comments and blanks dropped."""
    lines = (line.strip() for line in text.replace("\\\n", " ").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def lock_versions(text: str) -> dict[str, set[str]]:
    """Distribution -> the versions a lock pins (several only under different environment markers).

    Raises ValueError for an entry that is not `name==version` with at least one sha256 hash."""
    found: dict[str, set[str]] = defaultdict(set)
    for line in _logical_lines(text):
        spec, *hashes = line.split(" --hash=")
        requirement = Requirement(spec)
        pinned = [s.version for s in requirement.specifier if s.operator == "=="]
        if len(pinned) != 1 or len(requirement.specifier) != 1:
            raise ValueError(f"not pinned exactly: {spec}")
        if not hashes or not all(h.strip().startswith("sha256:") for h in hashes):
            raise ValueError(f"no sha256 hash: {spec}")
        found[canonicalize_name(requirement.name)].add(pinned[0])
    return dict(found)


def layer_pins(text: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in _logical_lines(text):
        requirement = Requirement(line)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"the layer pins exactly: {line}"
        pins[canonicalize_name(requirement.name)] = specifier.version
    return pins


def disagreements(pins: dict[str, str], locked: dict[str, set[str]]) -> dict[str, str]:
    """Layer pins the lock does not hold at exactly that version (and no other)."""
    return {
        name: f"layer {version}, lock {sorted(locked.get(name, set())) or 'missing'}"
        for name, version in pins.items()
        if locked.get(name) != {version}
    }


def test_every_layer_pin_is_the_version_the_dev_lock_installs() -> None:
    pins = layer_pins(LAYER_PINS.read_text(encoding="utf-8"))
    assert len(pins) >= 10
    assert "pydantic-core" in pins
    assert disagreements(pins, lock_versions(DEV_LOCK.read_text(encoding="utf-8"))) == {}


def test_a_layer_pin_that_disagrees_with_the_lock_is_reported() -> None:
    lock = "pydantic==2.14.4 \\\n    --hash=sha256:aa\nboto3==1.44.8 \\\n    --hash=sha256:bb\n"
    pins = {"pydantic": "2.14.5", "boto3": "1.44.8", "pyjwt": "2.15.1"}
    assert disagreements(pins, lock_versions(lock)) == {
        "pydantic": "layer 2.14.5, lock ['2.14.4']",
        "pyjwt": "layer 2.15.1, lock missing",
    }


@pytest.mark.parametrize("line", ["ruff==0.17.6", "ruff>=0.17 \\\n    --hash=sha256:aa"])
def test_an_entry_without_an_exact_pin_and_a_hash_is_refused(line: str) -> None:
    with pytest.raises(ValueError, match="ruff"):
        lock_versions(line + "\n")


@pytest.mark.parametrize("lock", [DEV_LOCK, SAM_LOCK], ids=lambda path: path.name)
def test_every_locked_distribution_is_pinned_with_hashes(lock: Path) -> None:
    locked = lock_versions(lock.read_text(encoding="utf-8"))  # raises on an unhashed or loose entry
    assert len(locked) > 50


def test_the_dev_lock_holds_every_declared_dependency_at_its_declared_version() -> None:
    """A dependency added to pyproject.toml (or a bound raised) without `make lock` fails here."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["dev"]]]
    locked = lock_versions(DEV_LOCK.read_text(encoding="utf-8"))
    unmet = {
        str(requirement): sorted(locked.get(canonicalize_name(requirement.name), set())) or "missing"
        for requirement in declared
        if not any(
            requirement.specifier.contains(version, prereleases=True)
            for version in locked.get(canonicalize_name(requirement.name), set())
        )
    }
    assert unmet == {}
    # Extras resolve into the lock too (boto3-stubs[dynamodb] brings the DynamoDB stubs).
    assert "mypy-boto3-dynamodb" in locked
    assert "pytest-xdist" in locked
    assert "pytest-benchmark" not in locked
