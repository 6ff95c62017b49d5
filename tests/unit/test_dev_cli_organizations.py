"""`usersync-dev webhook` builds Clerk-shaped organization and membership events (CONTRACT §10/§11)."""

from __future__ import annotations

from typing import Any

import pytest

from usersync.store.organizations import MembershipRecord, OrganizationRecord
from usersync.sync.events import record_for_event
from usersync_dev.cli import _webhook_payload, build_parser

ORG = "org_2dev0analytical0engines00"
USER = "user_2dev0ada0lovelace0000000"


def payload(*argv: str) -> dict[str, Any]:
    return _webhook_payload(build_parser().parse_args(["webhook", *argv]))


def test_organization_events_parse_as_the_webhook_parses_them() -> None:
    created = payload("organization.created", "--org-id", ORG, "--name", "Analytical Engines")
    assert created["type"] == "organization.created"
    record = record_for_event("organization.created", created["data"], deleted_at=0, event_id="m")
    assert isinstance(record, OrganizationRecord)
    assert (record.org_id, record.name, record.slug) == (ORG, "Analytical Engines", "analytical-engines")
    deleted = payload("organization.deleted", "--org-id", ORG)
    assert deleted["data"] == {"deleted": True, "id": ORG, "object": "organization"}


def test_membership_created_and_deleted_name_the_same_membership() -> None:
    args = ("--org-id", ORG, "--user-id", USER)
    created = payload("organizationMembership.created", *args, "--role", "org:admin")
    deleted = payload("organizationMembership.deleted", *args)
    first = record_for_event("organizationMembership.created", created["data"], deleted_at=0, event_id="a")
    gone = record_for_event("organizationMembership.deleted", deleted["data"], deleted_at=1, event_id="b")
    assert isinstance(first, MembershipRecord)
    assert isinstance(gone, MembershipRecord)
    assert first.role == "org:admin"
    assert (first.user_id, first.org_id) == (USER, ORG)
    assert gone.membership_id == first.membership_id
    assert gone.is_tombstone


def test_missing_ids_are_a_clear_error() -> None:
    with pytest.raises(SystemExit, match="--org-id"):
        payload("organization.created")
    with pytest.raises(SystemExit, match="--user-id"):
        payload("organizationMembership.created", "--org-id", ORG)
    with pytest.raises(SystemExit, match="--user-id"):
        payload("created")
