"""Every handler also answers when called as `lambda_handler(event, None)` (tests, scripts, local
invokes); in Lambda the context is always real and is what the logs carry."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from tests.helpers import FakeLambdaContext, LogCapture
from usersync_dev.apigw import http_api_authorizer_event, http_api_event
from usersync_dev.clerk import SigningKey, clerk_event, clerk_user, mint_token, session_claims, sign_delivery

USER_ID = "user_2contextless000000000000"


@pytest.fixture
def handlers(
    users_table: str,
    webhook_secret: str,
    monkeypatch: pytest.MonkeyPatch,
    function_loader: Callable[[str], ModuleType],
) -> dict[str, Any]:
    key = SigningKey.generate()
    monkeypatch.setenv("CLERK_JWT_KEY", key.public_pem())
    return {
        "key": key,
        "secret": webhook_secret,
        **{name: function_loader(name) for name in ("webhook", "authorizer", "me", "health")},
    }


@pytest.mark.parametrize("context", [None, {}], ids=["none", "dict"])
def test_handlers_work_without_a_lambda_context(
    handlers: dict[str, Any], context: Any, logs: LogCapture
) -> None:
    delivery = sign_delivery(handlers["secret"], clerk_event("user.created", clerk_user(USER_ID)))
    webhook = handlers["webhook"].lambda_handler(
        http_api_event("POST", "/webhooks/clerk", body=delivery.body, headers=delivery.headers), context
    )
    assert (webhook["statusCode"], json.loads(webhook["body"])) == (200, {"status": "applied"})

    token = mint_token(handlers["key"], session_claims(USER_ID, first_name="Ada", last_name="Lovelace"))
    allowed = handlers["authorizer"].lambda_handler(
        http_api_authorizer_event("GET", "/me", headers={"authorization": f"Bearer {token}"}), context
    )
    assert allowed["isAuthorized"] is True and allowed["context"]["userId"] == USER_ID

    me = handlers["me"].lambda_handler(
        http_api_event("GET", "/me", authorizer_context=allowed["context"]), context
    )
    assert me["statusCode"] == 200 and json.loads(me["body"])["userId"] == USER_ID

    health = handlers["health"].lambda_handler(http_api_event("GET", "/health"), context)
    assert health["statusCode"] == 200 and json.loads(health["body"])["status"] == "ok"

    # the stand-in context is what the logs carry
    processed = [record for record in logs.records if record["message"] == "webhook processed"]
    assert processed and processed[0]["function_name"] == "local"


def test_a_real_context_is_passed_through(handlers: dict[str, Any], logs: LogCapture) -> None:
    context = FakeLambdaContext(function_name="usersync-dev-webhook")
    delivery = sign_delivery(handlers["secret"], clerk_event("user.created", clerk_user(USER_ID)))
    handlers["webhook"].lambda_handler(
        http_api_event("POST", "/webhooks/clerk", body=delivery.body, headers=delivery.headers), context
    )
    processed = [record for record in logs.records if record["message"] == "webhook processed"]
    assert processed[0]["function_name"] == "usersync-dev-webhook"
    assert processed[0]["function_request_id"] == context.aws_request_id
