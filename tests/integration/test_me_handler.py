"""GET /me on moto: the profile the authorizer synced, 404 before that (and for a deleted user)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from tests.helpers import FakeLambdaContext, authorize_bearer
from tests.session_tokens import USER_ID
from usersync.runtime.aws import dynamodb_client
from usersync.runtime.metrics import SyncSource
from usersync.store.records import UserRecord
from usersync.store.users import UserRepository
from usersync_dev.apigw import http_api_event, rest_event
from usersync_dev.clerk import SigningKey, mint_token, session_claims

TABLE = "usersync-test-users"


@pytest.fixture
def me(
    users_table: str,  # noqa: ARG001 - fixture wanted for its side effect
    function_loader: Callable[[str], ModuleType],
    lambda_context: FakeLambdaContext,
) -> Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]:
    module = function_loader("me")

    def call(event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        response = module.lambda_handler(event, lambda_context)
        assert response["headers"]["Content-Type"] == "application/json"
        return response["statusCode"], json.loads(response["body"])

    return call


def me_event(context: dict[str, str] | None) -> dict[str, Any]:
    return http_api_event("GET", "/me", authorizer_context=context)


def test_returns_the_profile_the_authorizer_synced(
    me: Callable[[dict[str, Any]], tuple[int, dict[str, Any]]],
    key: SigningKey,
    monkeypatch: pytest.MonkeyPatch,
    function_loader: Callable[[str], ModuleType],
    lambda_context: FakeLambdaContext,
) -> None:
    monkeypatch.setenv("CLERK_JWT_KEY", key.public_pem())
    authorizer = function_loader("authorizer")
    iat = int(time.time()) - 1
    tok = mint_token(key, session_claims(USER_ID, email="ada@example.com", first_name="Ada", issued_at=iat))
    allowed = authorize_bearer(authorizer, lambda_context, tok)
    assert allowed["isAuthorized"] is True

    status, body = me(me_event(allowed["context"]))

    assert status == 200
    assert body.pop("syncedAt").endswith("Z")
    assert body == {
        "userId": USER_ID,
        "email": "ada@example.com",
        "firstName": "Ada",
        "lastName": None,
        "imageUrl": None,
        "createdAt": None,
        "updatedAt": iat * 1000,
        "source": "authorizer",
        "organizations": [],  # CONTRACT §11: no memberships
    }


def test_404_before_the_user_is_synced(me: Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]) -> None:
    status, body = me(me_event({"userId": USER_ID, "email": "ada@example.com"}))
    assert (status, body["status"]) == (404, "not-found")


def test_a_deleted_user_is_not_a_profile(me: Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]) -> None:
    UserRepository(dynamodb_client(), TABLE).save(UserRecord.tombstone(USER_ID, deleted_at=1_730_000_000_000))
    status, body = me(me_event({"userId": USER_ID}))
    assert (status, body["status"]) == (404, "not-found")
    assert "deletedAt" not in body


def test_rest_authorizer_context_shape_is_read_too(
    me: Callable[[dict[str, Any]], tuple[int, dict[str, Any]]],
) -> None:
    UserRepository(dynamodb_client(), TABLE).save(
        UserRecord(
            user_id=USER_ID,
            email="ada@example.com",
            created_at=1_700_000_000_000,
            updated_at=1_700_000_000_500,
            source=SyncSource.WEBHOOK,
            last_event_id="msg_1",
        )
    )
    event = rest_event("GET", "/me")
    event["requestContext"]["authorizer"] = {"principalId": USER_ID, "userId": USER_ID}

    status, body = me(event)

    assert status == 200
    assert (body["userId"], body["createdAt"], body["source"]) == (USER_ID, 1_700_000_000_000, "webhook")
    assert "lastEventId" not in body  # internal bookkeeping is not part of the profile


def test_without_an_authorizer_context_it_is_401(
    me: Callable[[dict[str, Any]], tuple[int, dict[str, Any]]],
) -> None:
    assert me(me_event(None))[0] == 401
    assert me(me_event({"email": "ada@example.com"}))[0] == 401


def test_table_unavailable_is_503(me: Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]) -> None:
    dynamodb_client().delete_table(TableName=TABLE)
    status, body = me(me_event({"userId": USER_ID}))
    assert (status, body["status"]) == (503, "error")
