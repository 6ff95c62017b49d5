"""Organization and membership webhooks end to end on moto (CONTRACT §11): each event type is one
conditional write, idempotent by svix-id, ordered by `updated_at`, deletes are tombstones timed by the
envelope `timestamp` that nothing resurrects; metrics as for users. DynamoDB calls are counted with
botocore event hooks on the real client."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import ModuleType
from typing import Any

import boto3
import pytest

from tests.helpers import FakeLambdaContext, WebhookDriver, metric_counts
from tests.organizations_support import T0, DynamoCalls, membership_event, organization_event
from usersync.runtime.observability import metrics
from usersync_dev.clerk import clerk_event

ORG = "org_2abcACMEghiJKLmnoPQRstuVW"
USER = "user_2abcDEFghiJKLmnoPQRstuVW"
MEMBERSHIP = "orgmem_2abcDEFghiJKLmnoPQRst"


@pytest.fixture
def webhook(
    organizations_table: str,  # noqa: ARG001 - fixture wanted for its side effect
    webhook: WebhookDriver,
) -> WebhookDriver:
    """conftest's webhook driver, loaded once the organizations table exists (and is configured)."""
    return webhook


def stored(pk: str, sk: str) -> dict[str, Any] | None:
    table = boto3.resource("dynamodb").Table("usersync-test-organizations")
    item: dict[str, Any] | None = table.get_item(Key={"pk": pk, "sk": sk}, ConsistentRead=True).get("Item")
    return item


def org_item(org_id: str = ORG) -> dict[str, Any] | None:
    return stored(f"ORG#{org_id}", "PROFILE")


def membership_item(org_id: str = ORG, membership_id: str = MEMBERSHIP) -> dict[str, Any] | None:
    return stored(f"ORG#{org_id}", f"MEMBER#{membership_id}")


def send(webhook: WebhookDriver, payload: dict[str, Any], message_id: str | None = None) -> tuple[int, str]:
    response = webhook.deliver(message_id or f"msg_{id(payload)}_{len(json.dumps(payload))}", payload)
    return response.status, str(response.body.get("status"))


# ---------------------------------------------------------------- each event type


def test_organization_created_and_updated_are_applied_in_order(webhook: WebhookDriver) -> None:
    assert send(webhook, organization_event("organization.created", ORG, name="Acme"), "msg_1") == (
        200,
        "applied",
    )
    item = org_item()
    assert item is not None
    assert (item["orgId"], item["name"], item["slug"], item["updatedAt"]) == (ORG, "Acme", "acme", T0)
    assert (item["source"], item["lastEventId"]) == ("webhook", "msg_1")
    assert "deletedAt" not in item
    assert "gsi1pk" not in item

    newer = organization_event("organization.updated", ORG, name="Acme Corp", updated_at=T0 + 5)
    assert send(webhook, newer, "msg_2") == (200, "applied")
    item = org_item()
    assert item is not None
    assert (item["name"], item["updatedAt"]) == ("Acme Corp", T0 + 5)


def test_a_partial_organization_payload_keeps_the_stored_name_and_null_clears(webhook: WebhookDriver) -> None:
    """Absent is unknown, not empty (contract §3): `{id, updated_at}` changes nothing it does not name."""
    send(webhook, organization_event("organization.created", ORG, name="Acme"), "msg_1")
    partial = clerk_event("organization.updated", {"object": "organization", "id": ORG, "updated_at": T0 + 5})
    assert send(webhook, partial, "msg_2") == (200, "applied")
    item = org_item()
    assert item is not None
    assert (item["name"], item["slug"], item["updatedAt"], item["lastEventId"]) == (
        "Acme",
        "acme",
        T0 + 5,
        "msg_2",
    )
    assert item["createdAt"] == T0  # left out of the partial payload too: kept
    cleared = clerk_event(
        "organization.updated", {"object": "organization", "id": ORG, "slug": None, "updated_at": T0 + 6}
    )
    assert send(webhook, cleared, "msg_3") == (200, "applied")
    item = org_item()
    assert item is not None
    assert item["name"] == "Acme"
    assert "slug" not in item


def test_a_partial_membership_payload_keeps_the_stored_role(webhook: WebhookDriver) -> None:
    send(webhook, membership_event("organizationMembership.created", MEMBERSHIP, ORG, USER, role="org:admin"))
    partial = membership_event("organizationMembership.updated", MEMBERSHIP, ORG, USER, updated_at=T0 + 1)
    del partial["data"]["role"]
    assert send(webhook, partial) == (200, "applied")
    item = membership_item()
    assert item is not None
    assert (item["role"], item["updatedAt"]) == ("org:admin", T0 + 1)


def test_membership_created_and_updated_are_applied_and_indexed_by_user(webhook: WebhookDriver) -> None:
    created = membership_event("organizationMembership.created", MEMBERSHIP, ORG, USER, role="org:admin")
    assert send(webhook, created, "msg_1") == (200, "applied")
    item = membership_item()
    assert item is not None
    assert (item["orgId"], item["userId"], item["membershipId"], item["role"]) == (
        ORG,
        USER,
        MEMBERSHIP,
        "org:admin",
    )
    assert (item["gsi1pk"], item["gsi1sk"]) == (f"USER#{USER}", f"ORG#{ORG}")
    assert (item["orgName"], item["orgSlug"], item["orgUpdatedAt"]) == ("Acme", "acme", T0)

    demoted = membership_event(
        "organizationMembership.updated", MEMBERSHIP, ORG, USER, role="org:member", updated_at=T0 + 9
    )
    assert send(webhook, demoted, "msg_2") == (200, "applied")
    item = membership_item()
    assert item is not None
    assert (item["role"], item["updatedAt"]) == ("org:member", T0 + 9)


def test_organization_deleted_writes_a_tombstone_timed_by_the_envelope(webhook: WebhookDriver) -> None:
    send(webhook, organization_event("organization.created", ORG), "msg_1")
    deleted = organization_event("organization.deleted", ORG, timestamp=T0 + 1_000)
    assert deleted["data"] == {"deleted": True, "id": ORG, "object": "organization"}
    assert send(webhook, deleted, "msg_del") == (200, "applied")
    item = org_item()
    assert item is not None
    assert item["deletedAt"] == T0 + 1_000
    assert item["lastEventId"] == "msg_del"
    assert "name" not in item
    assert "slug" not in item


def test_a_real_membership_deleted_payload_is_a_tombstone_out_of_the_user_index(
    webhook: WebhookDriver,
) -> None:
    send(webhook, membership_event("organizationMembership.created", MEMBERSHIP, ORG, USER), "msg_1")
    # As Clerk really delivers it: the whole membership, role org:member, role_name, permissions...
    deleted = membership_event("organizationMembership.deleted", MEMBERSHIP, ORG, USER, timestamp=T0 + 70)
    assert deleted["data"]["role_name"] == "Member"
    assert deleted["data"]["permissions"]
    assert deleted["data"]["public_user_data"]["user_id"] == USER
    assert send(webhook, deleted, "msg_del") == (200, "applied")
    item = membership_item()
    assert item is not None
    assert item["deletedAt"] == T0 + 70
    assert (item["userId"], item["orgId"]) == (USER, ORG)
    assert "gsi1pk" not in item
    assert "role" not in item


# ---------------------------------------------------------------- stale, duplicate, tombstones


def test_an_older_update_is_stale_and_changes_nothing(webhook: WebhookDriver) -> None:
    send(webhook, organization_event("organization.updated", ORG, name="New", updated_at=T0 + 10), "msg_new")
    older = organization_event("organization.updated", ORG, name="Old", updated_at=T0 + 5)
    assert send(webhook, older, "msg_old") == (200, "ignored-stale")
    item = org_item()
    assert item is not None
    assert (item["name"], item["lastEventId"]) == ("New", "msg_new")

    send(webhook, membership_event("organizationMembership.updated", MEMBERSHIP, ORG, USER, role="org:admin",
                                   updated_at=T0 + 10), "msg_m_new")  # fmt: skip
    older_membership = membership_event(
        "organizationMembership.created", MEMBERSHIP, ORG, USER, updated_at=T0
    )
    assert send(webhook, older_membership, "msg_m_old") == (200, "ignored-stale")
    item = membership_item()
    assert item is not None
    assert item["role"] == "org:admin"


def test_a_redelivery_is_an_ignored_duplicate(webhook: WebhookDriver) -> None:
    payload = membership_event("organizationMembership.created", MEMBERSHIP, ORG, USER)
    assert send(webhook, payload, "msg_same") == (200, "applied")
    assert send(webhook, payload, "msg_same") == (200, "ignored-duplicate")
    org = organization_event("organization.created", ORG)
    assert send(webhook, org, "msg_org") == (200, "applied")
    assert send(webhook, org, "msg_org") == (200, "ignored-duplicate")


def test_tombstones_are_never_resurrected_and_the_earliest_delete_wins(webhook: WebhookDriver) -> None:
    send(webhook, organization_event("organization.deleted", ORG, timestamp=T0 + 500), "msg_del_late")
    # A later update (replayed or genuinely newer) does not bring it back
    later = organization_event("organization.updated", ORG, name="Zombie", updated_at=T0 + 10**6)
    assert send(webhook, later, "msg_zombie") == (200, "ignored-stale")
    # An earlier delete replaces the tombstone (every order ends on the same one); a later one does not
    assert send(webhook, organization_event("organization.deleted", ORG, timestamp=T0 + 100), "msg_e") == (
        200,
        "applied",
    )
    assert send(webhook, organization_event("organization.deleted", ORG, timestamp=T0 + 900), "msg_l") == (
        200,
        "ignored-stale",
    )
    item = org_item()
    assert item is not None
    assert (item["deletedAt"], item["lastEventId"]) == (T0 + 100, "msg_e")

    send(webhook, membership_event("organizationMembership.deleted", MEMBERSHIP, ORG, USER, timestamp=T0 + 5),
         "msg_m_del")  # fmt: skip
    revived = membership_event("organizationMembership.updated", MEMBERSHIP, ORG, USER, updated_at=T0 + 10**6)
    assert send(webhook, revived, "msg_m_zombie") == (200, "ignored-stale")
    item = membership_item()
    assert item is not None
    assert "gsi1pk" not in item
    assert item["deletedAt"] == T0 + 5


def test_a_user_re_added_after_removal_is_a_member_again(webhook: WebhookDriver) -> None:
    send(webhook, membership_event("organizationMembership.created", MEMBERSHIP, ORG, USER), "msg_1")
    send(webhook, membership_event("organizationMembership.deleted", MEMBERSHIP, ORG, USER, timestamp=T0 + 5),
         "msg_2")  # fmt: skip
    again = membership_event("organizationMembership.created", "orgmem_second", ORG, USER, updated_at=T0 + 9)
    assert send(webhook, again, "msg_3") == (200, "applied")
    item = membership_item(membership_id="orgmem_second")
    assert item is not None
    assert item["gsi1pk"] == f"USER#{USER}"


# ---------------------------------------------------------------- rejections and unknown types


MEMBERSHIP_WITHOUT_USER = {"id": MEMBERSHIP, "organization": {"id": ORG}, "updated_at": T0}
MEMBERSHIP_WITHOUT_ORG = {"id": MEMBERSHIP, "public_user_data": {"user_id": USER}, "updated_at": T0}


@pytest.mark.parametrize(
    ("event_type", "data", "missing"),
    [
        ("organization.created", {"id": ORG, "name": "Acme"}, "updated_at"),
        ("organization.updated", {"name": "Acme", "updated_at": T0}, "id"),
        ("organization.deleted", {"deleted": True}, "id"),
        ("organizationMembership.created", MEMBERSHIP_WITHOUT_USER, "public_user_data"),
        ("organizationMembership.updated", MEMBERSHIP_WITHOUT_ORG, "organization"),
        (
            "organizationMembership.deleted",
            {"id": MEMBERSHIP, "organization": {"id": ORG}},
            "public_user_data",
        ),
    ],
)
def test_missing_fields_are_a_400_with_a_message(
    webhook: WebhookDriver, event_type: str, data: dict[str, Any], missing: str
) -> None:
    with DynamoCalls() as calls:
        response = webhook.deliver("msg_bad", clerk_event(event_type, data))
    assert (response.status, response.body["status"]) == (400, "rejected")
    assert missing in response.body["message"]
    assert calls.total == 0  # nothing touched the table


def test_an_id_dynamodb_cannot_key_is_a_400_not_a_retried_500(webhook: WebhookDriver) -> None:
    response = webhook.deliver("msg_long", organization_event("organization.created", "org_" + "x" * 2000))
    assert response.status == 400
    assert "1000 bytes" in response.body["message"]


def test_other_organization_event_types_stay_ignored(webhook: WebhookDriver) -> None:
    for event_type in ("organizationInvitation.created", "organizationDomain.created", "role.created"):
        response = webhook.deliver(f"msg_{event_type}", clerk_event(event_type, {"id": "x"}))
        assert (response.status, response.body["status"]) == (200, "ignored-event-type")


# ---------------------------------------------------------------- cost and metrics


def test_every_organization_and_membership_event_costs_exactly_one_dynamodb_call(
    webhook: WebhookDriver,
) -> None:
    deliveries = [
        ("msg_a", organization_event("organization.created", ORG)),
        ("msg_b", organization_event("organization.updated", ORG, updated_at=T0 + 1)),
        ("msg_b", organization_event("organization.updated", ORG, updated_at=T0 + 1)),  # duplicate
        ("msg_c", organization_event("organization.updated", ORG, updated_at=T0 - 1)),  # stale
        ("msg_d", membership_event("organizationMembership.created", MEMBERSHIP, ORG, USER)),
        (
            "msg_e",
            membership_event("organizationMembership.updated", MEMBERSHIP, ORG, USER, updated_at=T0 + 1),
        ),
        ("msg_f", membership_event("organizationMembership.deleted", MEMBERSHIP, ORG, USER)),
        ("msg_g", organization_event("organization.deleted", ORG)),
    ]
    for message_id, payload in deliveries:
        with DynamoCalls() as calls:
            assert webhook.deliver(message_id, payload).status == 200
        # A live item is one UpdateItem (keys a payload leaves out keep their value), a tombstone a PutItem.
        expected = "PutItem" if payload["type"].endswith(".deleted") else "UpdateItem"
        assert dict(calls.calls) == {expected: 1}, (payload["type"], calls.calls)


def test_writes_are_counted_as_sync_attempts_stale_and_failures(
    webhook: WebhookDriver, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = membership_event("organizationMembership.created", MEMBERSHIP, ORG, USER)
    webhook.deliver("msg_1", payload)
    webhook.deliver("msg_1", payload)  # duplicate: stale
    webhook.deliver("msg_2", organization_event("organization.created", ORG))
    boto3.client("dynamodb").delete_table(TableName="usersync-test-organizations")
    failed = webhook.deliver("msg_3", organization_event("organization.updated", ORG, updated_at=T0 + 1))
    assert failed.status == 500  # Svix retries; nothing lost
    assert failed.body["status"] == "error"
    metrics.flush_metrics()
    counts = metric_counts(capsys.readouterr().out, "webhook")
    assert (counts["SyncAttempts"], counts["SyncStale"], counts["SyncFailures"]) == (4, 1, 1)


@pytest.mark.usefixtures("users_table")
def test_without_an_organizations_table_an_organization_event_is_retried_not_lost(
    webhook_secret: str,
    function_loader: Callable[[str], ModuleType],
    lambda_context: FakeLambdaContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ORGANIZATIONS_TABLE_NAME", raising=False)
    driver = WebhookDriver(function_loader("webhook"), webhook_secret, lambda_context)
    response = driver.deliver("msg_1", organization_event("organization.created", ORG))
    assert response.status == 500
    user_event = driver.deliver("msg_2", clerk_event("user.deleted", {"id": USER, "deleted": True}))
    assert user_event.status == 200  # users keep working
