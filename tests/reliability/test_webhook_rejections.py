"""Every webhook rejection maps to a status code (contract §4), and unstorable deliveries are 400.

The handler answers a `WebhookRejection` with the `status_code` its class carries, so no subclass
can escape as an unhandled 500. This file holds one real trigger per subclass, and fails if a
subclass is added without one: each is delivered to the real handler on moto and must get its status,
with nothing written and no sync attempt counted.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.helpers import Response, WebhookDriver, metric_counts
from tests.reliability.support import REPORT, scan_all
from tests.session_tokens import huge_integer, nested_json
from usersync.api.webhook import (
    UnstorableDeliveryError,
    WebhookBodyTooLargeError,
    WebhookPayloadError,
    WebhookRejection,
    WebhookRequestError,
    WebhookSignatureError,
)
from usersync.runtime.aws import dynamodb_client
from usersync.runtime.metrics import SyncSource
from usersync.store.dynamodb import MAX_ITEM_BYTES
from usersync.store.errors import UnstorableRecordError
from usersync.store.records import UserRecord
from usersync.store.users import ensure_storable
from usersync_dev.apigw import http_api_event
from usersync_dev.clerk import clerk_event, clerk_organization, clerk_user, deleted_user

TABLE = "usersync-test-users"
T0 = 1_730_279_325_025


def _all_subclasses(cls: type[WebhookRejection]) -> set[type[WebhookRejection]]:
    found: set[type[WebhookRejection]] = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_all_subclasses(sub)}
    return found


def _bad_signature(webhook: WebhookDriver) -> Response:
    delivery = webhook.sign(clerk_event("user.created", clerk_user("user_1", updated_at=T0)))
    return webhook.post(delivery, headers={**delivery.headers, "svix-signature": "v1,AAAA"})


def _bad_payload(webhook: WebhookDriver) -> Response:
    return webhook.post(webhook.sign(b"{not json"))


def _bad_request(webhook: WebhookDriver) -> Response:
    return webhook.invoke({"requestContext": {}, "body": 12})


def _too_large(webhook: WebhookDriver) -> Response:
    return webhook.invoke(http_api_event("POST", "/webhooks/clerk", body=b"x" * (256 * 1024 + 1)))


def _unstorable(webhook: WebhookDriver) -> Response:
    user_id = "user_" + "é" * 1500  # 3,005 bytes in UTF-8: over DynamoDB's 2,048-byte key limit
    return webhook.deliver("msg_huge", clerk_event("user.created", clerk_user(user_id, updated_at=T0)))


TRIGGERS: dict[type[WebhookRejection], Callable[[WebhookDriver], Response]] = {
    WebhookSignatureError: _bad_signature,
    WebhookPayloadError: _bad_payload,
    WebhookRequestError: _bad_request,
    WebhookBodyTooLargeError: _too_large,
    UnstorableDeliveryError: _unstorable,
}


def test_every_rejection_class_has_a_trigger_here_and_a_client_error_status() -> None:
    subclasses = _all_subclasses(WebhookRejection)
    assert subclasses == set(TRIGGERS), "add a trigger for the new WebhookRejection subclass"
    for cls in subclasses:
        assert 400 <= cls.status_code <= 499, cls
        assert cls.reason, cls


@pytest.mark.parametrize("cls", TRIGGERS, ids=lambda cls: cls.__name__)
def test_each_rejection_reaches_the_caller_with_its_status(
    webhook: WebhookDriver, cls: type[WebhookRejection], capsys: pytest.CaptureFixture[str]
) -> None:
    REPORT["webhook rejection types tried"] += 1
    capsys.readouterr()
    response = TRIGGERS[cls](webhook)
    assert response.status == cls.status_code, response.body
    assert response.body["status"] == "rejected"
    assert response.body["message"]
    counts = metric_counts(capsys.readouterr().out, "webhook")
    assert counts["WebhookRejected"] == 1
    assert counts["SyncAttempts"] == 0
    assert scan_all(TABLE) == []
    REPORT["webhook rejection types held"] += 1


@pytest.mark.parametrize("event_type", ["user.created", "user.updated", "user.deleted"])
def test_a_user_id_over_the_key_limit_is_400_and_nothing_is_written(
    webhook: WebhookDriver, event_type: str
) -> None:
    REPORT["unstorable deliveries tried"] += 1
    user_id = "user_" + "x" * 2995  # 3,000 bytes
    data = deleted_user(user_id) if event_type == "user.deleted" else clerk_user(user_id, updated_at=T0)
    response = webhook.deliver("msg_long", clerk_event(event_type, data, timestamp=T0))
    assert response.status == 400
    assert "2048" in response.body["message"]
    assert scan_all(TABLE) == []
    # The longest storable id is stored
    fits = "user_" + "x" * 2043
    fitting = clerk_event(event_type, {**data, "id": fits}, timestamp=T0)
    assert webhook.deliver("msg_fits", fitting).status == 200
    assert [item["userId"] for item in scan_all(TABLE)] == [fits]
    REPORT["unstorable deliveries held"] += 1


def test_an_item_over_400_kb_is_unstorable() -> None:
    huge = UserRecord(
        user_id="user_1", first_name="x" * MAX_ITEM_BYTES, updated_at=T0, source=SyncSource.WEBHOOK
    )
    with pytest.raises(UnstorableRecordError, match="400"):
        ensure_storable(huge)
    ensure_storable(huge.model_copy(update={"first_name": "x" * (MAX_ITEM_BYTES - 1024)}))


def test_a_lone_surrogate_in_a_user_is_400_and_nothing_is_written(webhook: WebhookDriver) -> None:
    """JSON may escape half a surrogate pair (`\\ud800`): valid JSON, signed, but no UTF-8 text that
    DynamoDB would ever accept, so a 400 rather than a 5xx Svix would retry for days."""
    REPORT["unstorable deliveries tried"] += 1
    user = clerk_user("user_1", first_name="Ada\ud800", updated_at=T0)
    response = webhook.deliver("msg_surrogate", clerk_event("user.created", user))
    assert response.status == 400
    assert "first" in response.body["message"]
    assert scan_all(TABLE) == []
    REPORT["unstorable deliveries held"] += 1


def test_a_lone_surrogate_in_an_organization_is_400_and_nothing_is_written(
    organizations_table: str, webhook: WebhookDriver
) -> None:
    REPORT["unstorable deliveries tried"] += 1
    organization = clerk_organization("org_1", name="Acme\udfff", updated_at=T0)
    response = webhook.deliver("msg_org_surrogate", clerk_event("organization.created", organization))
    assert response.status == 400
    assert "name" in response.body["message"]
    assert dynamodb_client().scan(TableName=organizations_table)["Items"] == []
    REPORT["unstorable deliveries held"] += 1


# ---------------------------------------------------------------- hostile signed bodies (CONTRACT §4)


def _user_event_with(field: str, raw: bytes) -> bytes:
    """A genuine `user.updated` body with `raw` (exact JSON text) as the value of `data.<field>`."""
    document = json.dumps(clerk_event("user.updated", clerk_user("user_hostile", updated_at=T0)))
    return document.replace('"data": {', f'"data": {{"{field}": {raw.decode()}, ', 1).encode()


def _organization_event_with(field: str, raw: bytes) -> bytes:
    document = json.dumps(
        clerk_event("organization.updated", clerk_organization("org_hostile", updated_at=T0))
    )
    return document.replace('"data": {', f'"data": {{"{field}": {raw.decode()}, ', 1).encode()


HOSTILE_BODIES: dict[str, tuple[Callable[[], bytes], str]] = {
    "arrays-10000-deep": (lambda: nested_json(10_000), "nested too deeply"),
    "objects-10000-deep": (lambda: nested_json(10_000, kind="object"), "nested too deeply"),
    "public-metadata-10000-deep": (
        lambda: _user_event_with("public_metadata", nested_json(10_000, kind="object")),
        "nested too deeply",
    ),
    "organization-metadata-10000-deep": (
        lambda: _organization_event_with("public_metadata", nested_json(10_000)),
        "nested too deeply",
    ),
    "integer-5000-digits": (lambda: huge_integer(5000), "digits"),
    "updated-at-5000-digits": (lambda: _user_event_with("updated_at", huge_integer(5000)), "digits"),
    "metadata-integer-5000-digits": (
        lambda: _user_event_with("unsafe_metadata", b'{"n": ' + huge_integer(5000) + b"}"),
        "digits",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE_BODIES), ids=list(HOSTILE_BODIES))
def test_a_hostile_signed_body_is_400_with_a_message_and_nothing_is_written(
    organizations_table: str, webhook: WebhookDriver, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Signed with the real secret (so it reaches the parser), whatever the parser raises: a 400
    whose message says what is wrong, which Svix does not retry; never a 500. (A body that is not
    UTF-8 cannot be signed at all: the Standard Webhooks scheme signs text, so it is a 401.)"""
    REPORT["hostile signed bodies tried"] += 1
    build, problem = HOSTILE_BODIES[case]
    body = build()
    assert len(body) <= 256 * 1024
    capsys.readouterr()
    response = webhook.post(webhook.sign(body))
    assert response.status == 400, response.body
    assert response.body["status"] == "rejected"
    assert problem in response.body["message"]
    assert metric_counts(capsys.readouterr().out, "webhook")["WebhookRejected"] == 1
    assert scan_all(TABLE) == []
    assert dynamodb_client().scan(TableName=organizations_table)["Items"] == []
    REPORT["hostile signed bodies held"] += 1


@pytest.mark.parametrize("envelope_object", ["event", "webhook_event", None, 7], ids=str)
def test_an_envelope_is_parsed_whatever_its_object_says(webhook: WebhookDriver, envelope_object: Any) -> None:
    """Leniency: `type` and `data` make an event; `object` (Clerk writes "event") is not checked."""
    payload = clerk_event("user.created", clerk_user("user_lenient", updated_at=T0))
    if envelope_object is None:
        payload.pop("object", None)
    else:
        payload["object"] = envelope_object
    assert webhook.send(payload) == (200, {"status": "applied"})
    assert [item["userId"] for item in scan_all(TABLE)] == ["user_lenient"]
