"""Organization and membership parsing, table items and /me's liveness rules, without AWS."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from usersync.api.me import live_organizations
from usersync.runtime.metrics import SyncSource
from usersync.store.organizations import MembershipRecord, OrganizationRecord
from usersync.sync.events import record_for_event
from usersync_dev.clerk import clerk_membership, clerk_organization

T0 = 1_730_279_325_025


def membership(
    org_id: str, *, name: str | None, role: str = "org:member", at: int = T0, **extra: Any
) -> MembershipRecord:
    return MembershipRecord(
        org_id=org_id,
        membership_id=extra.pop("membership_id", f"orgmem_{org_id}"),
        user_id="user_1",
        role=role,
        org_name=name,
        org_slug=name.lower() if name else None,
        updated_at=at,
        **extra,
    )


def test_a_real_membership_deleted_payload_parses_leniently() -> None:
    organization = clerk_organization("org_1", name="Acme")
    data = clerk_membership("orgmem_1", organization=organization, user_id="user_1", role="org:member")
    data["unknown_future_field"] = {"nested": [1, 2.5, True]}
    record = record_for_event("organizationMembership.deleted", data, deleted_at=T0 + 1, event_id="msg_1")
    assert isinstance(record, MembershipRecord)
    assert (record.org_id, record.membership_id, record.user_id, record.deleted_at) == (
        "org_1",
        "orgmem_1",
        "user_1",
        T0 + 1,
    )
    assert record.role is None  # a tombstone keeps keys and time only
    assert record.keys() == {"pk": "ORG#org_1", "sk": "MEMBER#orgmem_1"}  # out of the user index


def test_a_live_membership_is_in_the_user_index_and_keeps_the_embedded_organization() -> None:
    organization = clerk_organization("org_1", name="Acme", slug="acme", updated_at=T0 + 7)
    data = clerk_membership("orgmem_1", organization=organization, user_id="user_1", role="org:admin")
    record = record_for_event("organizationMembership.created", data, deleted_at=0, event_id="msg_1")
    assert isinstance(record, MembershipRecord)
    attributes = record.to_attributes()
    assert attributes["gsi1pk"] == "USER#user_1"
    assert attributes["gsi1sk"] == "ORG#org_1"
    assert (attributes["orgName"], attributes["orgSlug"], attributes["orgUpdatedAt"]) == (
        "Acme",
        "acme",
        T0 + 7,
    )
    assert attributes["source"] == "webhook"
    assert attributes["lastEventId"] == "msg_1"


def test_empty_strings_are_never_stored() -> None:
    data = clerk_organization("org_1", name="", slug=None, image_url="")
    record = record_for_event("organization.created", data, deleted_at=0, event_id="msg_1")
    assert isinstance(record, OrganizationRecord)
    attributes = record.to_attributes()
    assert "name" not in attributes
    assert "slug" not in attributes
    assert "imageUrl" not in attributes


def test_a_membership_stores_no_empty_role_or_organization_copy() -> None:
    organization = clerk_organization("org_1", name="", slug="")
    data = clerk_membership("orgmem_1", organization=organization, user_id="user_1")
    data["role"] = ""
    record = record_for_event("organizationMembership.created", data, deleted_at=0, event_id="msg_1")
    assert isinstance(record, MembershipRecord)
    attributes = record.to_attributes()
    assert {"role", "orgName", "orgSlug"}.isdisjoint(attributes)
    assert attributes["membershipId"] == "orgmem_1"
    assert attributes["gsi1pk"] == "USER#user_1"


def test_other_event_types_have_no_record() -> None:
    assert record_for_event("organizationInvitation.created", {"id": "x"}, deleted_at=0, event_id="m") is None


@pytest.mark.parametrize(
    ("event_type", "data"),
    [
        ("organization.created", {"id": "org_1", "updated_at": "yesterday"}),
        ("organization.updated", {"id": "", "updated_at": T0}),
        ("organization.deleted", {"id": "org_" + "é" * 600}),  # 1,204 bytes: no DynamoDB sort key
        ("organizationMembership.updated", {"id": "orgmem_1", "organization": {"id": "org_1"},
                                            "public_user_data": {"user_id": "user_1"}}),
    ],
)  # fmt: skip
def test_data_a_write_cannot_use_is_a_validation_error(event_type: str, data: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        record_for_event(event_type, data, deleted_at=0, event_id="msg_1")


def test_live_organizations_drop_dead_ones_and_sort_by_name() -> None:
    profiles = {
        "org_dead": OrganizationRecord.tombstone("org_dead", deleted_at=T0, source=SyncSource.WEBHOOK),
        "org_b": OrganizationRecord(org_id="org_b", name="Beta", slug="beta", updated_at=T0 + 1),
    }
    memberships = [
        membership("org_b", name="Old Beta"),
        membership("org_dead", name="Dead"),
        membership("org_a", name="Alpha", role="org:admin"),
        membership("org_gone", name="Gone", deleted_at=T0),
    ]
    assert live_organizations(memberships, profiles) == [
        {"orgId": "org_a", "slug": "alpha", "name": "Alpha", "role": "org:admin"},
        {"orgId": "org_b", "slug": "beta", "name": "Beta", "role": "org:member"},
    ]


@pytest.mark.parametrize("newest_first", [False, True])  # the table returns them in membership-id order
def test_two_live_memberships_of_one_organization_list_it_once_newest_role(newest_first: bool) -> None:
    memberships = [
        membership("org_a", name="Alpha", role="org:member", at=T0, membership_id="orgmem_old"),
        membership("org_a", name="Alpha", role="org:admin", at=T0 + 5, membership_id="orgmem_new"),
    ]
    if newest_first:
        memberships.reverse()
    assert live_organizations(memberships, {}) == [
        {"orgId": "org_a", "slug": "alpha", "name": "Alpha", "role": "org:admin"}
    ]


def _throttled_batch_get(rounds: int) -> tuple[Any, Any]:
    """A DynamoDB client whose BatchGetItem leaves the one key unprocessed `rounds` times (throttling),
    then answers it: DynamoDB's side, stubbed; our retry loop runs for real."""
    import botocore.session
    from botocore.stub import Stubber

    client = botocore.session.get_session().create_client(
        "dynamodb", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s"
    )
    stubber = Stubber(client)
    key = {"pk": {"S": "ORG#org_1"}, "sk": {"S": "PROFILE"}}
    unprocessed = {"orgs": {"Keys": [key], "ConsistentRead": True}}
    for _ in range(rounds):
        stubber.add_response("batch_get_item", {"Responses": {"orgs": []}, "UnprocessedKeys": unprocessed})
    item = {**key, "orgId": {"S": "org_1"}, "name": {"S": "Acme"}, "updatedAt": {"N": "1"}}
    stubber.add_response("batch_get_item", {"Responses": {"orgs": [item]}, "UnprocessedKeys": {}})
    return client, stubber


def test_unprocessed_batch_keys_are_asked_again_then_fail_clearly() -> None:
    from usersync.store.dynamodb import BATCH_GET_ROUNDS
    from usersync.store.errors import RepositoryError
    from usersync.store.organizations import OrganizationRepository

    client, stubber = _throttled_batch_get(rounds=BATCH_GET_ROUNDS - 1)
    with stubber:
        found = OrganizationRepository(client, "orgs").get_organizations(["org_1"])
    assert found["org_1"].name == "Acme"

    client, stubber = _throttled_batch_get(rounds=BATCH_GET_ROUNDS)
    with stubber, pytest.raises(RepositoryError, match="UnprocessedKeys"):
        OrganizationRepository(client, "orgs").get_organizations(["org_1"])
