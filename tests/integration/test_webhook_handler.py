"""The webhook Lambda end to end on moto: verify, parse, one conditional write, status, metrics."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import boto3
import pytest
from svix.webhooks import Webhook

from tests.helpers import FakeLambdaContext, LogCapture, WebhookDriver, emitted_metrics, metric_counts
from usersync_dev.apigw import http_api_event
from usersync_dev.clerk import (
    SignedDelivery,
    clerk_event,
    clerk_user,
    deleted_user,
    new_webhook_secret,
    sign_delivery,
)

USER_ID = "user_2abcDEFghiJKLmnoPQRstuVW"
T0 = 1_730_279_325_025  # ms, as in a real received user.created


def stored(user_id: str = USER_ID) -> dict[str, Any] | None:
    table = boto3.resource("dynamodb").Table("usersync-test-users")
    item: dict[str, Any] | None = table.get_item(Key={"userId": user_id}, ConsistentRead=True).get("Item")
    return item


def created(**kwargs: Any) -> dict[str, Any]:
    return clerk_event("user.created", clerk_user(USER_ID, created_at=T0, updated_at=T0, **kwargs))


def updated(updated_at: int, **kwargs: Any) -> dict[str, Any]:
    return clerk_event("user.updated", clerk_user(USER_ID, created_at=T0, updated_at=updated_at, **kwargs))


def deleted(timestamp: int) -> dict[str, Any]:
    return clerk_event("user.deleted", deleted_user(USER_ID), timestamp=timestamp)


# ---------------------------------------------------------------- applying events


def test_user_created_stores_every_field(webhook: WebhookDriver) -> None:
    # Given a signed user.created whose primary email is not the first address
    delivery = webhook.sign(created(extra_emails=("old@example.com",)))
    # When it is delivered
    status, body = webhook.post(delivery)
    # Then the item holds every attribute of the contract
    assert (status, body) == (200, {"status": "applied"})
    item = stored()
    assert item is not None
    assert item["email"] == "ada@example.com"
    assert item["firstName"] == "Ada"
    assert item["lastName"] == "Lovelace"
    assert item["imageUrl"] == "https://img.clerk.com/ada.png"
    assert item["createdAt"] == T0
    assert item["updatedAt"] == T0
    assert item["source"] == "webhook"
    assert item["lastEventId"] == delivery.message_id
    assert datetime.fromisoformat(item["syncedAt"]).tzinfo is not None
    assert "deletedAt" not in item


def test_documented_clerk_example_payload_is_applied(webhook: WebhookDriver) -> None:
    # Given the payload shape of Clerk's documentation, with fields we do not model
    payload = {
        "data": {
            "birthday": "",
            "created_at": 1654012591514,
            "email_addresses": [
                {
                    "email_address": "example@example.org",
                    "id": "idn_29w83yL7CwVlJXylYLxcslromF1",
                    "linked_to": [],
                    "object": "email_address",
                    "verification": {"status": "verified", "strategy": "ticket"},
                }
            ],
            "external_accounts": [],
            "external_id": "567772",
            "first_name": "Example",
            "gender": "",
            "id": "user_29w83sxmDNGwOuEthce5gg56FcC",
            "image_url": "https://img.clerk.com/xxxxxx",
            "last_name": "Example",
            "last_sign_in_at": 1654012591514,
            "object": "user",
            "password_enabled": True,
            "phone_numbers": [],
            "primary_email_address_id": "idn_29w83yL7CwVlJXylYLxcslromF1",
            "primary_phone_number_id": None,
            "primary_web3_wallet_id": None,
            "private_metadata": {},
            "profile_image_url": "https://www.gravatar.com/avatar?d=mp",
            "public_metadata": {},
            "two_factor_enabled": False,
            "unsafe_metadata": {},
            "updated_at": 1654012591835,
            "username": None,
            "web3_wallets": [],
        },
        "event_attributes": {"http_request": {"client_ip": "0.0.0.0", "user_agent": "Mozilla/5.0"}},
        "instance_id": "ins_123",
        "object": "event",
        "timestamp": 1654012591835,
        "type": "user.created",
    }
    assert webhook.send(payload) == (200, {"status": "applied"})
    item = stored("user_29w83sxmDNGwOuEthce5gg56FcC")
    assert item is not None
    assert item["email"] == "example@example.org"
    assert item["updatedAt"] == 1654012591835


def test_newer_update_replaces_the_user(webhook: WebhookDriver) -> None:
    webhook.send(created())
    assert webhook.send(updated(T0 + 1000, first_name="Augusta")) == (200, {"status": "applied"})
    item = stored()
    assert item is not None
    assert item["firstName"] == "Augusta"
    assert item["updatedAt"] == T0 + 1000


def test_older_update_is_ignored_as_stale(webhook: WebhookDriver, capsys: pytest.CaptureFixture[str]) -> None:
    webhook.send(updated(T0 + 2000, first_name="Newest"))
    capsys.readouterr()
    assert webhook.send(updated(T0 + 1000, first_name="Older")) == (200, {"status": "ignored-stale"})
    item = stored()
    assert item is not None
    assert item["firstName"] == "Newest"
    assert item["updatedAt"] == T0 + 2000
    counts = metric_counts(capsys.readouterr().out, "webhook")
    assert counts["SyncAttempts"] == 1
    assert counts["SyncStale"] == 1
    assert counts["SyncFailures"] == 0


def test_replayed_delivery_is_a_duplicate_no_op(webhook: WebhookDriver) -> None:
    delivery = webhook.sign(created())
    assert webhook.post(delivery)[1] == {"status": "applied"}
    before = stored()
    # Svix redelivers the same message id and body with a fresh timestamp and signature.
    replay = webhook.sign(delivery.body, message_id=delivery.message_id)
    assert webhook.post(replay) == (200, {"status": "ignored-duplicate"})
    assert stored() == before


def test_delete_writes_a_tombstone_without_profile(webhook: WebhookDriver) -> None:
    webhook.send(created())
    assert webhook.send(deleted(T0 + 5000)) == (200, {"status": "applied"})
    item = stored()
    assert item is not None
    assert item["deletedAt"] == T0 + 5000
    assert not {"email", "firstName", "lastName", "imageUrl"} & item.keys()


@pytest.mark.parametrize("event_type", ["user.created", "user.updated"])
def test_tombstone_is_never_resurrected(webhook: WebhookDriver, event_type: str) -> None:
    webhook.send(created())
    webhook.send(deleted(T0 + 5000))
    tombstone = stored()
    late = clerk_event(event_type, clerk_user(USER_ID, created_at=T0, updated_at=T0 + 99_000))
    assert webhook.send(late) == (200, {"status": "ignored-stale"})
    assert stored() == tombstone


def test_replayed_create_after_delete_stays_deleted(webhook: WebhookDriver) -> None:
    delivery = webhook.sign(created())
    webhook.post(delivery)
    webhook.send(deleted(T0 + 5000))
    assert webhook.post(webhook.sign(delivery.body, message_id=delivery.message_id))[0] == 200
    item = stored()
    assert item is not None
    assert item["deletedAt"] == T0 + 5000


def test_delete_of_unknown_user_creates_tombstone(webhook: WebhookDriver) -> None:
    assert webhook.send(deleted(T0)) == (200, {"status": "applied"})
    item = stored()
    assert item is not None
    assert item["deletedAt"] == T0
    # and the create that arrives late does not bring the user back
    assert webhook.send(created())[1] == {"status": "ignored-stale"}


def test_deleting_twice_is_a_no_op(webhook: WebhookDriver) -> None:
    delivery = webhook.sign(deleted(T0 + 5000))
    webhook.post(delivery)
    first = stored()
    assert webhook.post(webhook.sign(delivery.body, message_id=delivery.message_id)) == (
        200,
        {"status": "ignored-duplicate"},
    )
    assert webhook.send(deleted(T0 + 9000)) == (200, {"status": "ignored-stale"})
    assert stored() == first


# ---------------------------------------------------------------- optional fields


def test_absent_optional_fields_are_not_stored(webhook: WebhookDriver) -> None:
    assert webhook.send(created(first_name=None, last_name="", image_url=None))[0] == 200
    item = stored()
    assert item is not None
    assert not {"firstName", "lastName", "imageUrl"} & item.keys()
    assert "" not in item.values()


def test_phone_only_user_is_stored_without_email(webhook: WebhookDriver) -> None:
    assert webhook.send(created(email=None)) == (200, {"status": "applied"})
    item = stored()
    assert item is not None
    assert "email" not in item
    assert item["firstName"] == "Ada"


def test_primary_email_id_not_among_addresses_means_no_email(webhook: WebhookDriver) -> None:
    data = clerk_user(USER_ID, created_at=T0, updated_at=T0)
    data["primary_email_address_id"] = "idn_missing"
    assert webhook.send(clerk_event("user.created", data))[0] == 200
    item = stored()
    assert item is not None
    assert "email" not in item


# ---------------------------------------------------------------- rejections


def _assert_rejected(status: int, body: dict[str, Any], expected: int) -> None:
    assert status == expected
    assert body["status"] == "rejected"
    assert body["message"]


def test_tampered_body_is_401_and_not_written(
    webhook: WebhookDriver, capsys: pytest.CaptureFixture[str]
) -> None:
    delivery = webhook.sign(created())
    tampered = SignedDelivery(delivery.body.replace(b"Ada", b"Eve"), delivery.headers, delivery.message_id)
    _assert_rejected(*webhook.post(tampered), 401)
    assert stored() is None
    assert metric_counts(capsys.readouterr().out, "webhook")["WebhookRejected"] == 1


def test_wrong_secret_is_401(webhook: WebhookDriver) -> None:
    delivery = sign_delivery(new_webhook_secret(), created())
    _assert_rejected(*webhook.post(delivery), 401)
    assert stored() is None


@pytest.mark.parametrize("missing", ["svix-id", "svix-timestamp", "svix-signature"])
def test_missing_svix_header_is_401(webhook: WebhookDriver, missing: str) -> None:
    delivery = webhook.sign(created())
    headers = {name: value for name, value in delivery.headers.items() if name != missing}
    _assert_rejected(*webhook.post(delivery, headers=headers), 401)
    assert stored() is None


def test_timestamp_six_minutes_old_is_401(webhook: WebhookDriver) -> None:
    delivery = webhook.sign(created(), timestamp=datetime.now(UTC) - timedelta(minutes=6))
    _assert_rejected(*webhook.post(delivery), 401)
    assert stored() is None


@pytest.mark.parametrize("signature", ["garbage", "v1,@@@", "", "v1", "v2,abc"])
def test_malformed_signature_header_is_401(webhook: WebhookDriver, signature: str) -> None:
    delivery = webhook.sign(created())
    _assert_rejected(*webhook.post(delivery, headers={**delivery.headers, "svix-signature": signature}), 401)


def test_malformed_json_is_400(webhook: WebhookDriver) -> None:
    status, body = webhook.post(webhook.sign(b'{"type": "user.created", "data": '))
    _assert_rejected(status, body, 400)
    assert "JSON" in body["message"]


def test_known_event_missing_fields_is_400_with_message(webhook: WebhookDriver) -> None:
    data = clerk_user(USER_ID)
    del data["updated_at"]
    status, body = webhook.send(clerk_event("user.updated", data))
    _assert_rejected(status, body, 400)
    assert "updated_at" in body["message"]
    assert stored() is None


def test_body_over_256_kib_is_413(webhook: WebhookDriver) -> None:
    payload = created()
    payload["data"]["public_metadata"] = {"blob": "x" * (256 * 1024)}
    _assert_rejected(*webhook.send(payload), 413)
    _assert_rejected(*webhook.send(payload, base64_body=True), 413)
    assert stored() is None


def test_body_under_256_kib_of_characters_but_over_it_in_utf8_is_413(webhook: WebhookDriver) -> None:
    payload = created()
    payload["data"]["public_metadata"] = {"blob": "é" * (200 * 1024)}  # 200 Ki characters, 400 KiB
    body = json.dumps(payload, ensure_ascii=False)
    assert len(body) < 256 * 1024 < len(body.encode())
    _assert_rejected(*webhook.post(webhook.sign(body.encode())), 413)
    assert stored() is None


def test_unknown_event_type_is_acknowledged(webhook: WebhookDriver) -> None:
    payload = clerk_event("session.created", {"id": "sess_1", "object": "session"})
    assert webhook.send(payload) == (200, {"status": "ignored-event-type"})


def test_invalid_base64_body_is_400(webhook: WebhookDriver) -> None:
    delivery = webhook.sign(created())
    event = http_api_event("POST", "/webhooks/clerk", headers=delivery.headers)
    event.update(body="***not base64***", isBase64Encoded=True)
    response = webhook.module.lambda_handler(event, webhook.context)
    assert response["statusCode"] == 400


# ---------------------------------------------------------------- signatures and event formats


def test_rotated_secret_second_signature_matches(webhook: WebhookDriver) -> None:
    delivery = webhook.sign(created())
    old = sign_delivery(new_webhook_secret(), delivery.body, message_id=delivery.message_id)
    headers = {
        **delivery.headers,
        "svix-signature": f"{old.headers['svix-signature']} {delivery.headers['svix-signature']}",
    }
    assert webhook.post(delivery, headers=headers) == (200, {"status": "applied"})


def test_standard_webhooks_header_names_are_accepted(webhook: WebhookDriver) -> None:
    delivery = webhook.sign(created())
    headers = {name.replace("svix-", "webhook-"): value for name, value in delivery.headers.items()}
    assert webhook.post(delivery, headers=headers) == (200, {"status": "applied"})


def test_signature_made_by_svix_library_is_accepted(webhook: WebhookDriver) -> None:
    body = json.dumps(created())
    when = datetime.now(UTC)
    signature = Webhook(webhook.secret).sign("msg_svixlib", when, body)
    headers = {
        "Svix-Id": "msg_svixlib",
        "Svix-Timestamp": str(int(when.timestamp())),
        "Svix-Signature": signature,
    }
    assert webhook.post(SignedDelivery(body.encode(), headers, "msg_svixlib"), fmt="rest")[0] == 200


@pytest.mark.parametrize("fmt", ["http", "rest"])
@pytest.mark.parametrize("base64_body", [False, True])
def test_both_event_formats_plain_and_base64(webhook: WebhookDriver, fmt: str, base64_body: bool) -> None:
    delivery = webhook.sign(created())
    headers = {name.title(): value for name, value in delivery.headers.items()} if fmt == "rest" else None
    assert webhook.post(delivery, fmt=fmt, base64_body=base64_body, headers=headers) == (
        200,
        {"status": "applied"},
    )
    assert stored() is not None


def test_base64_body_is_verified_on_exact_bytes(webhook: WebhookDriver) -> None:
    # Non-ASCII bytes survive base64 transport unchanged and still verify.
    delivery = webhook.sign(created(first_name="Zoë"))
    assert base64.b64decode(base64.b64encode(delivery.body)) == delivery.body
    assert webhook.post(delivery, base64_body=True)[0] == 200
    item = stored()
    assert item is not None
    assert item["firstName"] == "Zoë"


# ---------------------------------------------------------------- failures and observability


def test_table_failure_is_5xx_with_failure_metric_and_no_payload_in_logs(
    webhook: WebhookDriver, capsys: pytest.CaptureFixture[str], logs: LogCapture
) -> None:
    boto3.client("dynamodb").delete_table(TableName="usersync-test-users")
    capsys.readouterr()
    delivery = webhook.sign(created())
    status, body = webhook.post(delivery)
    assert status >= 500
    assert body["status"] == "error"
    counts = metric_counts(capsys.readouterr().out, "webhook")
    assert counts["SyncAttempts"] == 1
    assert counts["SyncFailures"] == 1
    errors = [record for record in logs.records if record["level"] == "ERROR"]
    assert errors
    assert errors[0]["userId"] == USER_ID
    assert "ada@example.com" not in logs.text
    assert delivery.headers["svix-signature"] not in logs.text
    assert webhook.secret not in logs.text


def test_logs_carry_event_id_type_and_user_but_no_secrets(webhook: WebhookDriver, logs: LogCapture) -> None:
    delivery = webhook.sign(created())
    webhook.post(delivery)
    processed = [record for record in logs.records if record["message"] == "webhook processed"]
    assert processed
    assert processed[0]["correlation_id"] == delivery.message_id
    assert processed[0]["eventType"] == "user.created"
    assert processed[0]["userId"] == USER_ID
    for secret_value in (webhook.secret, delivery.headers["svix-signature"], "ada@example.com"):
        assert secret_value not in logs.text


def test_metrics_emitted_with_source_dimension(
    webhook: WebhookDriver, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    webhook.send(created())
    sync_metrics = [m for m in emitted_metrics(capsys.readouterr().out) if m.name.startswith("Sync")]
    assert [m.name for m in sync_metrics] == ["SyncAttempts"]
    assert sync_metrics[0].dimensions == {"service": "usersync", "Source": "webhook"}
    assert sync_metrics[0].namespace == "usersync-test"


# ---------------------------------------------------------------- secret from Secrets Manager (as deployed)


@pytest.fixture
def secret_arn_webhook(
    users_table: str,  # noqa: ARG001 - fixture wanted for its side effect
    monkeypatch: pytest.MonkeyPatch,
    function_loader: Callable[[str], ModuleType],
    lambda_context: FakeLambdaContext,
) -> tuple[WebhookDriver, str]:
    secret = new_webhook_secret()
    arn = boto3.client("secretsmanager").create_secret(Name="usersync/test/webhook", SecretString=secret)[
        "ARN"
    ]
    monkeypatch.delenv("CLERK_WEBHOOK_SIGNING_SECRET", raising=False)
    monkeypatch.setenv("CLERK_WEBHOOK_SECRET_ARN", arn)
    return WebhookDriver(function_loader("webhook"), secret, lambda_context), arn


def test_secret_is_read_from_secrets_manager(secret_arn_webhook: tuple[WebhookDriver, str]) -> None:
    webhook, _ = secret_arn_webhook
    assert webhook.send(created()) == (200, {"status": "applied"})
    # a delivery signed with another secret is still refused
    assert webhook.post(sign_delivery(new_webhook_secret(), updated(T0 + 1)))[0] == 401


def test_unreadable_secret_is_503_so_svix_retries(
    secret_arn_webhook: tuple[WebhookDriver, str], logs: LogCapture
) -> None:
    webhook, arn = secret_arn_webhook
    boto3.client("secretsmanager").delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
    status, body = webhook.send(created())
    assert status == 503
    assert body["status"] == "error"
    assert stored() is None
    assert any(record["message"] == "webhook signing secret unavailable" for record in logs.records)
    assert webhook.secret not in logs.text
