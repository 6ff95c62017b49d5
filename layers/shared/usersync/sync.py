"""Applying changes to the user table, counted the same way whoever makes them.

Every attempted write is one `SyncAttempts`; a write that lost the condition (stale or duplicate)
is `SyncStale`, a success; only a failed table call is `SyncFailures`, and it is re-raised so the
caller can answer accordingly (the webhook with a 5xx so Svix retries).
"""

from __future__ import annotations

from usersync.metrics import SyncMetric, count
from usersync.models import UserRecord
from usersync.observability import logger
from usersync.repository import RepositoryError, UserRepository, WriteOutcome


def write_user(repository: UserRepository, record: UserRecord) -> WriteOutcome:
    count(SyncMetric.ATTEMPTS, record.source)
    try:
        outcome = repository.save(record)
    except RepositoryError as exc:
        count(SyncMetric.FAILURES, record.source)
        logger.error(
            "user write failed",
            extra={"userId": record.user_id, "source": record.source.value, "errorCode": exc.code},
        )
        raise
    if outcome is not WriteOutcome.APPLIED:
        count(SyncMetric.STALE, record.source)
    logger.info(
        "user write",
        extra={"userId": record.user_id, "source": record.source.value, "outcome": outcome.value},
    )
    return outcome
