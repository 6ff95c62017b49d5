"""Applying changes to the organizations table, counted as user writes are (usersync.sync.users)."""

from __future__ import annotations

from usersync.runtime.metrics import SyncMetric, emit_metric
from usersync.runtime.observability import logger
from usersync.store.dynamodb import WriteOutcome
from usersync.store.errors import RepositoryError
from usersync.store.organizations import OrganizationItem, OrganizationRepository
from usersync.sync.users import sync_attempt


def write_organization_item(repository: OrganizationRepository, record: OrganizationItem) -> WriteOutcome:
    """`repository.save`, counted as user writes are (write_user): one SyncAttempts per write,
    SyncStale for a lost condition, SyncFailures (plus its attempt) for a failed call, re-raised."""
    try:
        with sync_attempt(record.source):
            outcome = repository.save(record)
    except RepositoryError as exc:
        logger.error(
            "organization write failed",
            extra={"orgId": record.org_id, "source": record.source.value, "errorCode": exc.code},
        )
        raise
    if outcome is not WriteOutcome.APPLIED:
        emit_metric(SyncMetric.STALE, record.source)
    logger.debug(
        "organization write",
        extra={"orgId": record.org_id, "source": record.source.value, "outcome": outcome.value},
    )
    return outcome
