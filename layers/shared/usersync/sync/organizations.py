"""Applying changes to the organizations table, counted as user writes are (usersync.sync.users)."""

from __future__ import annotations

from usersync.store.dynamodb import WriteOutcome
from usersync.store.organizations import OrganizationItem, OrganizationRepository
from usersync.sync.users import counted_write


def write_organization_item(repository: OrganizationRepository, record: OrganizationItem) -> WriteOutcome:
    """`repository.save`, counted and logged as user writes are (usersync.sync.users.counted_write)."""
    return counted_write(
        record.source,
        lambda: repository.save(record),
        ids={"orgId": record.org_id},
        failed="organization write failed",
        done="organization write",
    )
