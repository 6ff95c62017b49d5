"""Test support for organizations and memberships: Clerk-shaped events, a DynamoDB call counter
(botocore event hooks on the real client, never a patch of our code), and /me calls."""

from __future__ import annotations

import json
from collections import Counter
from types import ModuleType
from typing import TYPE_CHECKING, Any

from tests.helpers import FakeLambdaContext
from usersync.runtime.aws import dynamodb_client
from usersync.store.dynamodb import BATCH_GET_LIMIT, batch_get, dynamodb_call, query_items
from usersync.store.organizations import (
    ORG_PREFIX,
    PROFILE_SORT_KEY,
    MembershipRecord,
    OrganizationRecord,
    item_from_dynamodb,
    profile_key,
)
from usersync.store.users import item_to_record
from usersync_dev.apigw import http_api_event
from usersync_dev.clerk import clerk_event, clerk_membership, clerk_organization, deleted_organization

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

T0 = 1_730_279_325_025  # ms


class DynamoCalls:
    """Counts the DynamoDB API calls the shared client sends, by operation (`before-call` fires once per
    call, before any retry). Use as a context manager so the hook is removed."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self._client = dynamodb_client()

    def _count(self, model: Any, **_: Any) -> None:
        self.calls[model.name] += 1

    def __enter__(self) -> DynamoCalls:
        self._client.meta.events.register("before-call.dynamodb", self._count)
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.meta.events.unregister("before-call.dynamodb", self._count)

    @property
    def total(self) -> int:
        return sum(self.calls.values())


def organization_event(
    event_type: str, org_id: str, *, name: str = "Acme", updated_at: int = T0, timestamp: int | None = None
) -> dict[str, Any]:
    """organization.created|updated|deleted for `org_id` (the slug follows the name)."""
    if event_type == "organization.deleted":
        return clerk_event(event_type, deleted_organization(org_id), timestamp=timestamp or updated_at)
    data = clerk_organization(
        org_id, name=name, slug=name.lower().replace(" ", "-"), created_at=T0, updated_at=updated_at
    )
    return clerk_event(event_type, data, timestamp=timestamp or updated_at)


def membership_event(
    event_type: str,
    membership_id: str,
    org_id: str,
    user_id: str,
    *,
    role: str = "org:member",
    org_name: str = "Acme",
    org_updated_at: int = T0,
    updated_at: int = T0,
    timestamp: int | None = None,
) -> dict[str, Any]:
    """organizationMembership.*; a delete carries the whole membership, as Clerk's do."""
    organization = clerk_organization(
        org_id,
        name=org_name,
        slug=org_name.lower().replace(" ", "-"),
        created_at=T0,
        updated_at=org_updated_at,
    )
    data = clerk_membership(
        membership_id,
        organization=organization,
        user_id=user_id,
        role=role,
        created_at=T0,
        updated_at=updated_at,
    )
    return clerk_event(event_type, data, timestamp=timestamp or updated_at)


def call_me(module: ModuleType, user_id: str, context: FakeLambdaContext) -> tuple[int, dict[str, Any]]:
    """GET /me as API Gateway sends it after the authorizer allowed `user_id`."""
    event = http_api_event("GET", "/me", authorizer_context={"userId": user_id, "email": "a@example.com"})
    response = module.lambda_handler(event, context)
    body: dict[str, Any] = json.loads(response["body"])
    return int(response["statusCode"]), body


# ---------------------------------------------------------------- access patterns no handler uses
# CONTRACT §11 asks for each of these to be one DynamoDB request; no function serves them yet, so they
# live here (not in the layer), built only from the store's own pieces: its paging, its BatchGetItem,
# and the tables' one codec.


def get_organization(client: DynamoDBClient, table: str, org_id: str) -> OrganizationRecord | None:
    """An organization's profile (tombstone included): one GetItem."""
    with dynamodb_call("GetItem"):
        item = client.get_item(TableName=table, Key=profile_key(org_id), ConsistentRead=True).get("Item")
    record = item_from_dynamodb(dict(item), "GetItem") if item else None
    return record if isinstance(record, OrganizationRecord) else None


def members_of_organization(client: DynamoDBClient, table: str, org_id: str) -> list[MembershipRecord]:
    """The organization's live memberships: one Query of its partition, profile included, so a deleted
    organization has no members. Membership tombstones are filtered out server-side; users' liveness
    is `without_deleted_users`'."""
    items = query_items(
        client,
        table,
        KeyConditionExpression="pk = :org",
        FilterExpression="attribute_not_exists(deletedAt) OR sk = :profile",
        ExpressionAttributeValues={":org": {"S": ORG_PREFIX + org_id}, ":profile": {"S": PROFILE_SORT_KEY}},
        ConsistentRead=True,
    )
    records = [item_from_dynamodb(item, "Query") for item in items]
    if any(isinstance(r, OrganizationRecord) and r.is_tombstone for r in records):
        return []
    return [r for r in records if isinstance(r, MembershipRecord) and not r.is_tombstone]


def without_deleted_users(
    client: DynamoDBClient, users_table: str, members: list[MembershipRecord]
) -> list[MembershipRecord]:
    """Members whose user is not a tombstone in the user table: one BatchGetItem per 100 users, each
    item read by the user table's own reader (`item_to_record`). A user missing from the user table
    (not synced yet) counts as live: only a tombstone is proof of deletion."""
    user_ids = sorted({m.user_id for m in members})
    deleted: set[str] = set()
    for start in range(0, len(user_ids), BATCH_GET_LIMIT):
        keys = [{"userId": {"S": u}} for u in user_ids[start : start + BATCH_GET_LIMIT]]
        request: dict[str, Any] = {
            users_table: {"Keys": keys, "ProjectionExpression": "userId, deletedAt", "ConsistentRead": True}
        }
        records = (item_to_record(item, "BatchGetItem") for item in batch_get(client, request, users_table))
        deleted.update(record.user_id for record in records if record.is_tombstone)
    return [m for m in members if m.user_id not in deleted]
