"""`make run` applies the template's RouteRequirements (CONTRACT §5, §10): its printed examples show one
call allowed and one forbidden, and they do exactly that when pasted."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.dev_stack import dev_token, http, local_stack, stack_environment
from usersync_dev.cli import route_requirements_override
from usersync_dev.template import REPO_ROOT

pytestmark = pytest.mark.slow

ADMIN_ONLY = json.dumps({"GET /me": {"role": "org:admin"}}, separators=(",", ":"))


def test_printed_allowed_and_forbidden_examples_do_so_when_pasted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert shutil.which("curl") is not None, "the printed examples use curl"
    # `make run ROUTE_REQUIREMENTS=...` passes --route-requirements; the variable is its default
    with_typo = {"GET /me": {"role": "org:admin"}, "GET /admn": {"role": "org:admin"}}
    monkeypatch.setenv("USERSYNC_ROUTE_REQUIREMENTS", json.dumps(with_typo))
    with local_stack(tmp_path) as stack:
        banner = stack.banner()
        # a key that names no route guards nothing: the banner says so
        assert any("warning" in line and "'GET /admn'" in line for line in banner), banner
        start = next(i for i, line in enumerate(banner) if line.startswith("  5a."))
        commands = [line[4:] for line in banner[start:] if line.startswith("    ")]
        assert len(commands) == 4, banner  # token + call, twice

        script = "\n".join(f'{command}\necho "::exit=$?"' for command in commands)
        result = subprocess.run(  # noqa: S603 - our own printed commands
            ["bash", "-c", script],  # noqa: S607
            cwd=REPO_ROOT,
            env=stack_environment(stack.home),
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        # The route a requirement names, called straight: a member is refused, an admin let through
        member = dev_token(stack, "user_2member", "m@example.com")
        refused = http("GET", f"{stack.gateway_url}/me", headers={"Authorization": f"Bearer {member}"})
        assert refused == (403, {"message": "Forbidden"})

    statuses = [line for line in result.stdout.splitlines() if line.startswith("::exit=")]
    assert statuses == ["::exit=0"] * 4, result.stdout + result.stderr
    allowed, forbidden = [line for line in result.stdout.splitlines() if not line.startswith("::exit=")]
    assert allowed.endswith(" 200")
    assert json.loads(allowed.removesuffix(" 200"))["userId"]
    assert forbidden == '{"message": "Forbidden"} 403'
    denials = [json.loads(line) for line in stack.output if '"authorizer denied"' in line]
    assert [(d["reason"], d["route"], d["missing"]) for d in denials][:1] == [
        ("forbidden", "GET /me", "organization (none active) for role=org:admin")
    ]


def test_without_requirements_the_banner_says_how_to_try_them(tmp_path: Path) -> None:
    with local_stack(tmp_path) as stack:
        (line,) = [line for line in stack.banner() if line.startswith("  5.")]
    assert "none configured" in line
    assert f"ROUTE_REQUIREMENTS='{ADMIN_ONLY}'" in line


def test_the_override_takes_inline_json_or_a_file_and_refuses_a_malformed_one(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    path.write_text('{\n  "GET /me": {"role": "org:admin"}\n}\n', encoding="utf-8")
    assert route_requirements_override(str(path)) == ADMIN_ONLY
    assert route_requirements_override(' {"GET /me": {"role": "org:admin"}} ') == ADMIN_ONLY
    assert route_requirements_override("") is None
    with pytest.raises(SystemExit, match="route 'GET /me': field 'rol'"):
        route_requirements_override('{"GET /me": {"rol": "admin"}}')
