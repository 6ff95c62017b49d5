"""GET /me's `organizations` (CONTRACT §11) and the one-request-per-access-pattern claim, on moto.

State is written through the real webhook handler; requests are counted with botocore event hooks
on the real DynamoDB client.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import boto3
import pytest

from tests.helpers import FakeLambdaContext, WebhookDriver
from tests.organizations_support import (
    T0,
    DynamoCalls,
    call_me,
    get_organization,
    members_of_organization,
    membership_event,
    organization_event,
    without_deleted_users,
)
from usersync.runtime.aws import dynamodb_client
from usersync.store.organizations import OrganizationRepository
from usersync_dev.clerk import clerk_event, clerk_user, deleted_user

USER = "user_2abcDEFghiJKLmnoPQRstuVW"
OTHER = "user_2otherGHIjklMNOpqrSTUvw"
ORGS_TABLE = "usersync-test-organizations"


class Stack:
    """The webhook and /me handlers on one moto account."""

    def __init__(self, webhook: WebhookDriver, me: ModuleType, context: FakeLambdaContext) -> None:
        self.webhook = webhook
        self.me_module = me
        self.context = context
        self._sent = 0

    def send(self, payload: dict[str, Any]) -> str:
        self._sent += 1
        response = self.webhook.deliver(f"msg_{self._sent}", payload)
        assert response.status == 200, response.body
        return str(response.body["status"])

    def user(self, user_id: str = USER) -> None:
        self.send(clerk_event("user.created", clerk_user(user_id, created_at=T0, updated_at=T0)))

    def join(
        self, org_id: str, *, name: str, role: str = "org:member", user_id: str = USER, at: int = T0
    ) -> None:
        membership = f"orgmem_{org_id}_{user_id}"
        event = membership_event(
            "organizationMembership.created",
            membership,
            org_id,
            user_id,
            role=role,
            org_name=name,
            updated_at=at,
        )
        self.send(event)

    def me(self, user_id: str = USER) -> tuple[int, dict[str, Any]]:
        return call_me(self.me_module, user_id, self.context)

    def organizations(self, user_id: str = USER) -> list[dict[str, Any]]:
        status, body = self.me(user_id)
        assert status == 200, body
        listed: list[dict[str, Any]] = body["organizations"]
        return listed


@pytest.fixture
def stack(
    organizations_table: str,  # noqa: ARG001 - fixture wanted for its side effect
    webhook: WebhookDriver,
    function_loader: Callable[[str], ModuleType],
) -> Stack:
    """The suite's webhook driver (tests/conftest.py) and a cold-started /me, with the organizations table."""
    return Stack(webhook, function_loader("me"), webhook.context)


def test_no_memberships_is_an_empty_list(stack: Stack) -> None:
    stack.user()
    assert stack.organizations() == []


def test_live_memberships_sorted_by_name_with_role_slug_and_id(stack: Stack) -> None:
    stack.user()
    stack.join("org_c", name="Zeta Labs", role="org:admin")
    stack.join("org_a", name="Acme")
    stack.join("org_b", name="Midway", role="org:billing_manager")
    stack.join("org_x", name="Elsewhere", user_id=OTHER)  # someone else's
    assert stack.organizations() == [
        {"orgId": "org_a", "slug": "acme", "name": "Acme", "role": "org:member"},
        {"orgId": "org_b", "slug": "midway", "name": "Midway", "role": "org:billing_manager"},
        {"orgId": "org_c", "slug": "zeta-labs", "name": "Zeta Labs", "role": "org:admin"},
    ]


def test_names_come_from_the_newest_organization_record(stack: Stack) -> None:
    stack.user()
    stack.join("org_a", name="Old Name")  # embedded copy at T0
    # The organization's own record is newer: it wins
    stack.send(organization_event("organization.updated", "org_a", name="Renamed", updated_at=T0 + 50))
    assert [o["name"] for o in stack.organizations()] == ["Renamed"]
    assert stack.organizations()[0]["slug"] == "renamed"
    # A membership update embedding an even newer organization copy: that copy wins
    stack.send(membership_event("organizationMembership.updated", "orgmem_org_a_" + USER, "org_a", USER,
                                org_name="Newest", org_updated_at=T0 + 90, updated_at=T0 + 90))  # fmt: skip
    assert [o["name"] for o in stack.organizations()] == ["Newest"]


def test_a_deleted_membership_or_organization_is_never_listed(stack: Stack) -> None:
    stack.user()
    stack.join("org_a", name="Acme")
    stack.join("org_b", name="Beta")
    stack.join("org_c", name="Gamma")
    stack.send(membership_event("organizationMembership.deleted", "orgmem_org_a_" + USER, "org_a", USER,
                                timestamp=T0 + 5))  # fmt: skip
    # Deleting an organization touches none of its memberships, yet they are no longer listed
    stack.send(organization_event("organization.deleted", "org_b", timestamp=T0 + 5))
    assert [o["orgId"] for o in stack.organizations()] == ["org_c"]
    member_items = (
        boto3.resource("dynamodb")
        .Table(ORGS_TABLE)
        .get_item(Key={"pk": "ORG#org_b", "sk": f"MEMBER#orgmem_org_b_{USER}"})["Item"]
    )
    assert "deletedAt" not in member_items  # no fan-out delete


def test_a_deleted_user_has_no_me_at_all(stack: Stack) -> None:
    stack.user()
    stack.join("org_a", name="Acme")
    stack.send(clerk_event("user.deleted", deleted_user(USER), timestamp=T0 + 10))
    status, body = stack.me()
    assert status == 404
    assert "organizations" not in body


def test_organizations_table_unavailable_is_503(stack: Stack) -> None:
    stack.user()
    stack.join("org_a", name="Acme")
    dynamodb_client().delete_table(TableName=ORGS_TABLE)
    status, body = stack.me()
    assert (status, body["status"]) == (503, "error")


# ---------------------------------------------------------------- one request per access pattern


def test_each_access_pattern_is_one_dynamodb_request(stack: Stack) -> None:
    stack.user()
    for index in range(30):
        stack.join(f"org_{index:02d}", name=f"Org {index:02d}")
        stack.join("org_00", name="Org 00", user_id=f"user_{index:02d}")
    repository = OrganizationRepository(dynamodb_client(), ORGS_TABLE)
    stack.send(organization_event("organization.created", "org_00", name="Org 00"))

    with DynamoCalls() as calls:
        memberships = repository.memberships_of_user(USER)
    assert len(memberships) == 30
    assert dict(calls.calls) == {"Query": 1}

    with DynamoCalls() as calls:
        members = members_of_organization(dynamodb_client(), ORGS_TABLE, "org_00")
    assert len(members) == 31
    assert dict(calls.calls) == {"Query": 1}

    with DynamoCalls() as calls:
        profile = get_organization(dynamodb_client(), ORGS_TABLE, "org_00")
    assert profile is not None
    assert profile.name == "Org 00"
    assert dict(calls.calls) == {"GetItem": 1}

    with DynamoCalls() as calls:
        profiles = repository.get_organizations(m.org_id for m in memberships)
    assert len(profiles) == 1
    assert dict(calls.calls) == {"BatchGetItem": 1}


def test_me_costs_three_requests_with_organizations_two_without(stack: Stack) -> None:
    stack.user()
    stack.user(OTHER)
    for index in range(12):
        stack.join(f"org_{index:02d}", name=f"Org {index:02d}")
    with DynamoCalls() as calls:
        assert len(stack.organizations()) == 12
    assert dict(calls.calls) == {"GetItem": 1, "Query": 1, "BatchGetItem": 1}
    with DynamoCalls() as calls:
        assert stack.organizations(OTHER) == []
    assert dict(calls.calls) == {"GetItem": 1, "Query": 1}


def test_members_of_a_deleted_organization_or_user_are_not_returned(stack: Stack) -> None:
    stack.user()
    stack.user(OTHER)
    stack.join("org_a", name="Acme")
    stack.join("org_a", name="Acme", user_id=OTHER)
    stack.send(clerk_event("user.deleted", deleted_user(OTHER), timestamp=T0 + 3))
    members = members_of_organization(dynamodb_client(), ORGS_TABLE, "org_a")
    assert {m.user_id for m in members} == {USER, OTHER}  # the organization table alone
    with DynamoCalls() as calls:
        live = without_deleted_users(dynamodb_client(), "usersync-test-users", members)
    assert [m.user_id for m in live] == [USER]
    assert dict(calls.calls) == {"BatchGetItem": 1}
    stack.send(organization_event("organization.deleted", "org_a", timestamp=T0 + 4))
    assert members_of_organization(dynamodb_client(), ORGS_TABLE, "org_a") == []


def test_reading_is_tolerant_of_foreign_attributes_and_fails_closed_on_unreadable_items(stack: Stack) -> None:
    stack.user()
    stack.join("org_a", name="Acme")
    client = dynamodb_client()
    # Someone else's attributes of any type on our items are ignored...
    client.update_item(
        TableName=ORGS_TABLE,
        Key={"pk": {"S": "ORG#org_a"}, "sk": {"S": f"MEMBER#orgmem_org_a_{USER}"}},
        UpdateExpression="SET tags = :l, meta = :m, score = :d, flag = :b",
        ExpressionAttributeValues={
            ":l": {"L": [{"S": "x"}]},
            ":m": {"M": {"k": {"N": "1"}}},
            ":d": {"N": "1.5"},
            ":b": {"BOOL": True},
        },
    )
    # ...and so is an item of a kind we do not write, even in the user's index
    client.put_item(
        TableName=ORGS_TABLE,
        Item={
            "pk": {"S": "ORG#org_a"},
            "sk": {"S": "NOTE#1"},
            "gsi1pk": {"S": f"USER#{USER}"},
            "gsi1sk": {"S": "X"},
        },
    )
    assert [o["orgId"] for o in stack.organizations()] == ["org_a"]
    # A profile item that cannot be read (no orgId) is a read failure: 503, not a guess
    client.put_item(TableName=ORGS_TABLE, Item={"pk": {"S": "ORG#org_a"}, "sk": {"S": "PROFILE"}})
    status, body = stack.me()
    assert (status, body["status"]) == (503, "error")
