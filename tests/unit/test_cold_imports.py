"""Cold start: each handler, imported as Lambda imports it, leaves the other handler's heavy libraries out.

`import svix` loads svix's whole API client (pydantic models, httpx; ~350 ms measured), PyJWT pulls in
cryptography's x509 (~80 ms): the webhook needs neither (it verifies with `standardwebhooks`), the
authorizer needs no webhook verifier. Checked in a fresh interpreter with the function directory and
the layer on the path, the way the Lambda runtime sets up `/var/task` and `/opt/python`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from usersync_dev.clerk import SigningKey, new_webhook_secret

REPO_ROOT = Path(__file__).resolve().parents[2]
LAYER_DIR = REPO_ROOT / "layers" / "shared"
WATCHED = ("svix", "svix.api", "standardwebhooks", "jwt", "usersync.api.webhook", "usersync.clerk.tokens")


def imported_after_cold_start(handler: str) -> set[str]:
    function_dir = REPO_ROOT / "functions" / handler
    env = {name: value for name, value in os.environ.items() if not name.startswith("CLERK_")}
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(function_dir), str(LAYER_DIR)]),
            "USERS_TABLE_NAME": "usersync-test-users",
            "CLERK_WEBHOOK_SIGNING_SECRET": new_webhook_secret(),
            "CLERK_JWT_KEY": SigningKey.generate().public_pem(),
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    script = (
        "import json, sys\n"
        "import app\n"
        "assert callable(app.lambda_handler)\n"
        f"print(json.dumps([m for m in {WATCHED!r} if m in sys.modules]))\n"
    )
    result = subprocess.run(  # noqa: S603 - our own interpreter, a fixed script
        [sys.executable, "-c", script],
        cwd=function_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("handler", "needed", "left_out"),
    [
        pytest.param(
            "webhook",
            {"standardwebhooks", "usersync.api.webhook"},
            {"svix", "svix.api", "jwt"},
            id="webhook imports neither svix nor jwt",
        ),
        pytest.param(
            "authorizer",
            {"jwt", "usersync.clerk.tokens"},
            {"svix", "svix.api", "standardwebhooks", "usersync.api.webhook"},
            id="authorizer imports no webhook verifier",
        ),
    ],
)
def test_cold_start_imports_what_the_handler_needs_and_not_the_other_handlers_libraries(
    handler: str, needed: set[str], left_out: set[str]
) -> None:
    imported = imported_after_cold_start(handler)
    # What the handler does use is loaded: proves the probe sees what the app imports.
    assert needed <= imported
    assert imported & left_out == set()
