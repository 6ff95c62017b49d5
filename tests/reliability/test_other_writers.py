"""Items the table holds that usersync did not write (contract §3, tolerant reading).

Backfill scripts, the console, older versions and the application itself write items through the
raw DynamoDB API (botocore `put_item` on moto here, exactly as they would). The authorizer must deny
every tombstone (any item with `deletedAt`), allow live items whatever extra attributes they carry,
and `/me` must answer 200 / 404 / 503 for live / tombstone / uninterpretable: never a 500, never an
allowed deleted user.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from types import ModuleType
from typing import Any, NamedTuple

import pytest

from tests.helpers import FakeLambdaContext, authorize_bearer, metric_counts
from tests.reliability.support import REPORT
from tests.session_tokens import ISSUER
from usersync.runtime.aws import dynamodb_client
from usersync.store.errors import UninterpretableItemError
from usersync.store.users import item_to_record
from usersync_dev.apigw import http_api_event
from usersync_dev.clerk import SigningKey, mint_token, session_claims

TABLE = "usersync-test-users"
USER_ID = "user_2otherWRITERother0000000"

# One attribute of every DynamoDB type, as another writer may add them.
EVERY_TYPE: dict[str, dict[str, Any]] = {
    "score": {"N": "12.75"},
    "tags": {"L": [{"S": "a"}, {"N": "1"}]},
    "settings": {"M": {"theme": {"S": "dark"}}},
    "verified": {"BOOL": True},
    "nothing": {"NULL": True},
    "blob": {"B": b"\x00\x01"},
    "roles": {"SS": ["admin", "user"]},
    "counts": {"NS": ["1", "2.5"]},
}

TOMBSTONES: dict[str, dict[str, Any]] = {
    "only id and deletedAt": {"deletedAt": {"N": "1730000000000"}},
    "foreign source": {"deletedAt": {"N": "1730000000000"}, "source": {"S": "backfill"}},
    "every extra type": {"deletedAt": {"N": "1730000000000"}, "email": {"S": "x@example.com"}, **EVERY_TYPE},
    "deletedAt with decimals": {"deletedAt": {"N": "1730000000000.5"}},
    "deletedAt as a string": {"deletedAt": {"S": "2024-10-27T00:00:00Z"}},
    "deletedAt as a boolean": {"deletedAt": {"BOOL": True}, "updatedAt": {"N": "1.5"}},
}

LIVE: dict[str, dict[str, Any]] = {
    "no source, no syncedAt, no createdAt": {"email": {"S": "ada@example.com"}, "updatedAt": {"N": "1"}},
    "foreign source": {"email": {"S": "ada@example.com"}, "source": {"S": "backfill"}},
    "every extra type": {"email": {"S": "ada@example.com"}, "updatedAt": {"N": "5"}, **EVERY_TYPE},
    "only the id": {},
}

UNINTERPRETABLE: dict[str, dict[str, Any]] = {
    "updatedAt with decimals": {"email": {"S": "ada@example.com"}, "updatedAt": {"N": "17.5"}},
    "updatedAt as a string": {"updatedAt": {"S": "yesterday"}},
    "email as a list": {"email": {"L": [{"S": "ada@example.com"}]}},
}


def _put_raw(attributes: dict[str, Any], user_id: str = USER_ID) -> None:
    dynamodb_client().put_item(TableName=TABLE, Item={"userId": {"S": user_id}, **attributes})


@pytest.fixture
def authorizer(
    pem_authorizer: ModuleType, key: SigningKey, lambda_context: FakeLambdaContext
) -> Callable[[], dict[str, Any]]:
    def authorize() -> dict[str, Any]:
        token = mint_token(key, session_claims(USER_ID, email="ada@example.com", issuer=ISSUER))
        return authorize_bearer(pem_authorizer, lambda_context, token)

    return authorize


@pytest.fixture
def me(
    users_table: str,  # noqa: ARG001 - fixture wanted for its side effect
    function_loader: Callable[[str], ModuleType],
    lambda_context: FakeLambdaContext,
) -> Callable[[], tuple[int, dict[str, Any]]]:
    module = function_loader("me")

    def call() -> tuple[int, dict[str, Any]]:
        response = module.lambda_handler(
            http_api_event("GET", "/me", authorizer_context={"userId": USER_ID}), lambda_context
        )
        return response["statusCode"], json.loads(response["body"])

    return call


class SeenByHandlers(NamedTuple):
    """What the authorizer, then /me, made of one item another writer stored, and the item after."""

    authorizer: dict[str, Any]
    authorizer_metrics: Counter[str]
    me_status: int
    me_body: dict[str, Any]
    item: dict[str, Any]


@pytest.fixture
def seen(
    attributes: dict[str, Any],
    authorizer: Callable[[], dict[str, Any]],
    me: Callable[[], tuple[int, dict[str, Any]]],
    capsys: pytest.CaptureFixture[str],
) -> SeenByHandlers:
    """Stores the test's `attributes` raw as another writer would, runs the authorizer on a valid token
    for its user (keeping the metrics that call alone emitted), then /me, then reads the item back.
    Counts the item as tried for the report."""
    REPORT["other writers' items tried"] += 1
    _put_raw(attributes)
    capsys.readouterr()
    response = authorizer()
    counts = metric_counts(capsys.readouterr().out, "authorizer")
    status, body = me()
    item = dynamodb_client().get_item(TableName=TABLE, Key={"userId": {"S": USER_ID}})["Item"]
    return SeenByHandlers(response, counts, status, body, item)


@pytest.mark.parametrize("attributes", TOMBSTONES.values(), ids=TOMBSTONES.keys())
def test_tombstones_of_other_writers_deny_and_are_not_found(
    seen: SeenByHandlers, attributes: dict[str, Any]
) -> None:
    assert seen.authorizer == {"isAuthorized": False}
    assert seen.me_status == 404
    assert seen.me_body["status"] == "not-found"
    # And no token resurrects it: the item still has its deletedAt
    assert seen.item["deletedAt"] == attributes["deletedAt"]
    REPORT["other writers' items held"] += 1


@pytest.mark.parametrize("attributes", LIVE.values(), ids=LIVE.keys())
def test_live_items_of_other_writers_are_allowed_and_served(
    seen: SeenByHandlers, attributes: dict[str, Any]
) -> None:
    assert seen.authorizer["isAuthorized"] is True
    assert seen.authorizer["context"]["userId"] == USER_ID
    assert seen.authorizer_metrics["SyncFailures"] == 0
    assert seen.me_status == 200
    assert seen.me_body["userId"] == USER_ID
    assert seen.me_body["email"] == "ada@example.com"
    # The other writer's attributes survive the authorizer's write (it updates only its own)
    assert {name: seen.item[name] for name in EVERY_TYPE if name in attributes} == {
        name: value for name, value in attributes.items() if name in EVERY_TYPE
    }
    REPORT["other writers' items held"] += 1


@pytest.mark.parametrize("attributes", UNINTERPRETABLE.values(), ids=UNINTERPRETABLE.keys())
def test_uninterpretable_items_are_a_read_failure_never_a_crash(seen: SeenByHandlers) -> None:
    # The authorizer allows the valid token and counts a failed sync (attempt and failure)
    assert seen.authorizer["isAuthorized"] is True
    assert seen.authorizer_metrics["SyncFailures"] == 1
    assert seen.authorizer_metrics["SyncAttempts"] == 1
    # /me answers as for an unreadable table
    assert seen.me_status == 503
    assert seen.me_body["status"] == "error"
    REPORT["other writers' items held"] += 1


def test_item_to_record_reads_what_it_needs_and_ignores_the_rest() -> None:
    record = item_to_record(
        {
            "userId": {"S": USER_ID},
            "email": {"S": "ada@example.com"},
            "firstName": {"S": ""},
            "createdAt": {"N": "1700000000000"},
            "updatedAt": {"N": "1700000000001"},
            "source": {"S": "spreadsheet"},
            **EVERY_TYPE,
        }
    )
    assert (record.email, record.first_name, record.created_at, record.updated_at, record.source) == (
        "ada@example.com",
        None,
        1_700_000_000_000,
        1_700_000_000_001,
        None,
    )
    assert not record.is_tombstone
    with pytest.raises(UninterpretableItemError):
        item_to_record({"userId": {"N": "1"}})
    with pytest.raises(UninterpretableItemError):
        item_to_record({"email": {"S": "x@example.com"}})
