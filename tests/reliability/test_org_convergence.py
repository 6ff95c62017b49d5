"""Convergence of organizations + memberships + user deletes (CONTRACT §11): any order, with
redeliveries, ends in the same `/me`.

Each example draws a small world (two organizations, two users): organization versions and maybe a
delete, memberships (a few versions, maybe a delete, sometimes a re-addition under a new membership id),
user creates and maybe deletes. All events go through the real webhook handler on moto in a drawn
permutation with drawn redeliveries (same svix-id, fresh signature); then `/me` of each user is
compared with a reference computed by hand from the events (newest version per item, tombstones
final, a membership live only while it, its organization and its user are; names from the newest
organization record; sorted by name), independently of the code under test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import WebhookDriver
from tests.organizations_support import call_me
from tests.reliability.support import REPORT, budget
from usersync.runtime.aws import dynamodb_client
from usersync_dev.clerk import (
    clerk_event,
    clerk_membership,
    clerk_organization,
    clerk_user,
    deleted_organization,
    deleted_user,
)

USERS_TABLE = "usersync-test-users"
ORGANIZATIONS_TABLE = "usersync-test-organizations"
EXAMPLES = int(os.environ.get("ORG_CONVERGENCE_EXAMPLES", "1000"))
T_MIN = 1_700_000_000_000
ORGS = 2
USERS = 2
ROLES = ("org:admin", "org:member", "org:billing")
NAMES = ("Acme", "acme", "Beta", "Zeta", "Émile & Co", "")

times = st.integers(T_MIN, T_MIN + 10**9)


@dataclass(frozen=True)
class OrgVersion:
    updated_at: int
    name: str


@dataclass(frozen=True)
class OrgHistory:
    versions: list[OrgVersion]  # distinct updated_at
    deleted_at: int | None


@dataclass(frozen=True)
class MembershipVersion:
    updated_at: int
    role: str
    embedded: OrgVersion  # the organization copy the event embeds


@dataclass(frozen=True)
class MembershipHistory:
    org: int
    user: int
    versions: list[MembershipVersion]
    deleted_at: int | None


@dataclass(frozen=True)
class World:
    orgs: list[OrgHistory]
    memberships: list[MembershipHistory]  # a pair may appear twice: removed then re-added
    user_deleted_at: list[int | None]


@st.composite
def org_histories(draw: st.DrawFn) -> OrgHistory:
    stamps = draw(st.lists(times, min_size=1, max_size=2, unique=True))
    versions = [OrgVersion(t, draw(st.sampled_from(NAMES))) for t in stamps]
    return OrgHistory(versions, draw(st.one_of(st.none(), times)))


@st.composite
def worlds(draw: st.DrawFn) -> World:
    orgs = [draw(org_histories()) for _ in range(ORGS)]
    memberships = []
    for _ in range(draw(st.integers(0, 3))):
        org = draw(st.integers(0, ORGS - 1))
        stamps = draw(st.lists(times, min_size=1, max_size=2, unique=True))
        versions = [
            MembershipVersion(t, draw(st.sampled_from(ROLES)), draw(st.sampled_from(orgs[org].versions)))
            for t in stamps
        ]
        memberships.append(
            MembershipHistory(
                org, draw(st.integers(0, USERS - 1)), versions, draw(st.one_of(st.none(), times))
            )
        )
    user_deleted = [draw(st.one_of(st.none(), st.none(), times)) for _ in range(USERS)]
    return World(orgs, memberships, user_deleted)


def _slug(name: str) -> str | None:
    return name.lower().replace(" ", "-") or None


@dataclass(frozen=True)
class Ids:
    orgs: list[str]
    users: list[str]
    memberships: list[str]


def events_of(world: World, ids: Ids) -> list[dict[str, Any]]:
    """Every event the world's history produced (order irrelevant: the schedule picks one)."""
    events: list[dict[str, Any]] = []
    for org_id, history in zip(ids.orgs, world.orgs, strict=True):
        for index, org_version in enumerate(history.versions):
            data = clerk_organization(org_id, name=org_version.name, slug=_slug(org_version.name),
                                      created_at=T_MIN, updated_at=org_version.updated_at)  # fmt: skip
            kind = "organization.created" if index == 0 else "organization.updated"
            events.append(clerk_event(kind, data, timestamp=org_version.updated_at))
        if history.deleted_at is not None:
            events.append(
                clerk_event(
                    "organization.deleted", deleted_organization(org_id), timestamp=history.deleted_at
                )
            )
    for membership_id, membership in zip(ids.memberships, world.memberships, strict=True):
        org_id, user_id = ids.orgs[membership.org], ids.users[membership.user]
        last: dict[str, Any] = {}
        for index, version in enumerate(membership.versions):
            copy = version.embedded
            embedded = clerk_organization(
                org_id, name=copy.name, slug=_slug(copy.name), created_at=T_MIN, updated_at=copy.updated_at
            )
            last = clerk_membership(
                membership_id,
                organization=embedded,
                user_id=user_id,
                role=version.role,
                created_at=T_MIN,
                updated_at=version.updated_at,
            )
            kind = "organizationMembership.created" if index == 0 else "organizationMembership.updated"
            events.append(clerk_event(kind, last, timestamp=version.updated_at))
        if membership.deleted_at is not None:  # the whole membership, as Clerk delivers it
            events.append(
                clerk_event("organizationMembership.deleted", last, timestamp=membership.deleted_at)
            )
    for user_id, deleted_at in zip(ids.users, world.user_deleted_at, strict=True):
        events.append(clerk_event("user.created", clerk_user(user_id, created_at=T_MIN, updated_at=T_MIN)))
        if deleted_at is not None:
            events.append(clerk_event("user.deleted", deleted_user(user_id), timestamp=deleted_at))
    return events


def expected_me(world: World, ids: Ids, user: int) -> tuple[int, list[dict[str, Any]] | None]:
    """The reference /me of user `user`: (status, organizations)."""
    if world.user_deleted_at[user] is not None:
        return 404, None
    listed: dict[str, tuple[int, str, dict[str, Any]]] = {}
    for membership_id, membership in zip(ids.memberships, world.memberships, strict=True):
        organization = world.orgs[membership.org]
        if (
            membership.user != user
            or membership.deleted_at is not None
            or organization.deleted_at is not None
        ):
            continue
        newest = max(membership.versions, key=lambda v: v.updated_at)
        profile = max(organization.versions, key=lambda v: v.updated_at)
        names = profile if profile.updated_at >= newest.embedded.updated_at else newest.embedded
        org_id = ids.orgs[membership.org]
        entry = {"orgId": org_id, "slug": _slug(names.name), "name": names.name or None, "role": newest.role}
        candidate = (newest.updated_at, membership_id, entry)
        if org_id not in listed or candidate[:2] > listed[org_id][:2]:
            listed[org_id] = candidate
    organizations = [entry for _, _, entry in listed.values()]
    return 200, sorted(organizations, key=lambda e: (e["name"] or "", e["orgId"]))


def forget(world: World, ids: Ids) -> None:
    """Remove the example's items: moto's queries walk the whole table, so a table that grows with
    every example makes each request slower."""
    organization_keys = [{"pk": {"S": f"ORG#{org_id}"}, "sk": {"S": "PROFILE"}} for org_id in ids.orgs]
    organization_keys += [
        {"pk": {"S": f"ORG#{ids.orgs[m.org]}"}, "sk": {"S": f"MEMBER#{membership_id}"}}
        for membership_id, m in zip(ids.memberships, world.memberships, strict=True)
    ]
    dynamodb_client().batch_write_item(
        RequestItems={
            ORGANIZATIONS_TABLE: [{"DeleteRequest": {"Key": key}} for key in organization_keys],
            USERS_TABLE: [{"DeleteRequest": {"Key": {"userId": {"S": user_id}}}} for user_id in ids.users],
        }
    )


@pytest.mark.usefixtures("quiet_logs", "organizations_table")
def test_any_order_with_redeliveries_converges_to_the_same_me(
    webhook: WebhookDriver, function_loader: Callable[[str], ModuleType]
) -> None:
    me = function_loader("me")
    examples = 0

    @budget(EXAMPLES)
    @given(worlds(), st.data())
    def converges(world: World, data: st.DataObject) -> None:
        nonlocal examples
        examples += 1
        suffix = uuid.uuid4().hex[:12]
        ids = Ids(
            orgs=[f"org_{index}_{suffix}" for index in range(ORGS)],
            users=[f"user_{index}_{suffix}" for index in range(USERS)],
            memberships=[f"orgmem_{index}_{suffix}" for index in range(len(world.memberships))],
        )
        events = events_of(world, ids)
        message_ids = [f"msg_{index}_{suffix}" for index in range(len(events))]
        redelivered = data.draw(st.lists(st.integers(0, len(events) - 1), max_size=2), label="redeliveries")
        schedule = data.draw(st.permutations([*range(len(events)), *redelivered]), label="schedule")
        for index in schedule:
            response = webhook.deliver(message_ids[index], events[index])
            assert response.status == 200, response.body
            assert response.body["status"] in {"applied", "ignored-stale", "ignored-duplicate"}
        for user, user_id in enumerate(ids.users):
            status, body = call_me(me, user_id, webhook.context)
            expected_status, expected_organizations = expected_me(world, ids, user)
            assert status == expected_status, body
            if expected_organizations is not None:
                assert body["organizations"] == expected_organizations
        forget(world, ids)

    converges()
    REPORT["organization convergence examples"] += examples
    assert examples >= EXAMPLES
