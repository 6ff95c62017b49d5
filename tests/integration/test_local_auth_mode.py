"""The local stack follows AuthMode as API Gateway does (CONTRACT §5). In the default `header` mode a
call without Authorization gets API Gateway's own 401 (test_local_stack.py); with AuthMode=cookie there
is no identity source, so the authorizer runs for every call and reads the `__session` cookie."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.dev_stack import dev_token, http, local_stack, send_webhook
from usersync_dev.clerk import clerk_event, clerk_user, new_user_id

pytestmark = pytest.mark.slow


def test_cookie_mode_accepts_the_session_cookie_and_the_header(tmp_path: Path) -> None:
    user_id = new_user_id()
    with local_stack(tmp_path, "AuthMode=cookie") as stack:
        user = clerk_user(user_id, email="c@example.com")
        assert send_webhook(stack, clerk_event("user.created", user)) == (200, {"status": "applied"})
        token = dev_token(stack, user_id, "c@example.com")

        status, body = http("GET", f"{stack.gateway_url}/me", headers={"Cookie": f"__session={token}"})
        assert (status, body.get("userId")) == (200, user_id)
        status, body = http("GET", f"{stack.gateway_url}/me", headers={"Authorization": f"Bearer {token}"})
        assert (status, body.get("userId")) == (200, user_id)
        # No identity source: API Gateway no longer answers 401 itself, the authorizer denies (403).
        assert http("GET", f"{stack.gateway_url}/me") == (403, {"message": "Forbidden"})
