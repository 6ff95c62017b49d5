"""The handlers get a Lambda context as Lambda always gives them one: outside Lambda (tests, scripts,
the local stack) the dev tools' stand-in, which lives in dev code only, never in what is deployed."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from tests.helpers import REPO_ROOT, FakeLambdaContext, LogCapture, authorize_bearer
from usersync_dev.apigw import http_api_event
from usersync_dev.clerk import SigningKey, clerk_event, clerk_user, mint_token, session_claims, sign_delivery

USER_ID = "user_2contextless000000000000"


@pytest.fixture
def handlers(
    users_table: str,  # noqa: ARG001 - fixture wanted for its side effect
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


def test_every_handler_runs_with_the_default_stand_in_context(
    handlers: dict[str, Any], logs: LogCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    context = FakeLambdaContext()
    delivery = sign_delivery(handlers["secret"], clerk_event("user.created", clerk_user(USER_ID)))
    webhook = handlers["webhook"].lambda_handler(
        http_api_event("POST", "/webhooks/clerk", body=delivery.body, headers=delivery.headers), context
    )
    assert (webhook["statusCode"], json.loads(webhook["body"])) == (200, {"status": "applied"})

    token = mint_token(handlers["key"], session_claims(USER_ID, first_name="Ada", last_name="Lovelace"))
    allowed = authorize_bearer(handlers["authorizer"], context, token)
    assert allowed["isAuthorized"] is True
    assert allowed["context"]["userId"] == USER_ID

    me = handlers["me"].lambda_handler(
        http_api_event("GET", "/me", authorizer_context=allowed["context"]), context
    )
    assert me["statusCode"] == 200
    assert json.loads(me["body"])["userId"] == USER_ID

    health = handlers["health"].lambda_handler(http_api_event("GET", "/health"), context)
    assert health["statusCode"] == 200
    assert json.loads(health["body"])["status"] == "ok"

    # the stand-in context is what the logs carry (no function name given: `local`)
    processed = [record for record in logs.records if record["message"] == "webhook processed"]
    assert processed
    assert processed[0]["function_name"] == "local"


def test_a_real_context_is_passed_through(handlers: dict[str, Any], logs: LogCapture) -> None:
    context = FakeLambdaContext(function_name="usersync-dev-webhook")
    delivery = sign_delivery(handlers["secret"], clerk_event("user.created", clerk_user(USER_ID)))
    handlers["webhook"].lambda_handler(
        http_api_event("POST", "/webhooks/clerk", body=delivery.body, headers=delivery.headers), context
    )
    processed = [record for record in logs.records if record["message"] == "webhook processed"]
    assert processed[0]["function_name"] == "usersync-dev-webhook"
    assert processed[0]["function_request_id"] == context.aws_request_id


def test_deployed_code_invents_no_lambda_context() -> None:
    """A context (and its ARN) comes from Lambda only: no stand-in ships in the layer or a function."""
    deployed = [*(REPO_ROOT / "layers" / "shared").rglob("*.py"), *(REPO_ROOT / "functions").rglob("*.py")]
    assert deployed
    for path in deployed:
        source = path.read_text(encoding="utf-8")
        assert "arn:aws:lambda:" not in source, path
        assert "aws_request_id" not in source, path
