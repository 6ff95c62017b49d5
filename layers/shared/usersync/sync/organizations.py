"""Applying changes to the organizations table, counted as user writes are (usersync.sync.users)."""

from __future__ import annotations

from usersync.store.dynamodb import WriteOutcome
from usersync.store.organizations import OrganizationItem, OrganizationRepository
from usersync.sync.users import WriteLog, counted_write

ORGANIZATION_WRITES = WriteLog("orgId", failed="organization write failed", done="organization write")


def write_organization_item(repository: OrganizationRepository, record: OrganizationItem) -> WriteOutcome:
    """`repository.save`, counted and logged as user writes are (usersync.sync.users.counted_write)."""
    return counted_write(record.source, lambda: repository.save(record), ORGANIZATION_WRITES, record.org_id)
