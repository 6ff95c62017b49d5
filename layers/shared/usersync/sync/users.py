"""Applying changes to the user table, counted the same way whoever makes them.

Every attempted write is one `SyncAttempts`; a write that lost the condition (stale or duplicate)
is `SyncStale`, a success; only a failed table call is `SyncFailures`, and it is re-raised so the
caller can answer accordingly (the webhook with a 5xx so Svix retries).

The authorizer syncs compare-first (`sync_from_token`): it reads the stored copy (cached per
container) and writes only when the token says something newer and different.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from usersync.runtime.metrics import SyncMetric, SyncSource, emit_metric
from usersync.runtime.observability import logger
from usersync.store.dynamodb import WriteOutcome
from usersync.store.errors import RepositoryError, UninterpretableItemError
from usersync.store.records import UserRecord
from usersync.store.users import UserRepository

if TYPE_CHECKING:  # the webhook path imports this module and must not pull in PyJWT
    from usersync.clerk.session_claims import SessionClaims


@contextmanager
def sync_attempt(source: SyncSource) -> Iterator[None]:
    """One `SyncAttempts`, and with it a `SyncFailures` if the block raises anything at all.

    This and `record_failed_attempt` are the only places that emit `SyncFailures`, so a failure is
    always also an attempt (contract §8): the failure rate /health and the alarm compute can never be
    blinded by failures without attempts.
    """
    emit_metric(SyncMetric.ATTEMPTS, source)
    try:
        yield
    except Exception:
        emit_metric(SyncMetric.FAILURES, source)
        raise


def record_failed_attempt(source: SyncSource) -> None:
    """A sync that failed before its write could be tried (an unreadable item, a bug): both metrics."""
    emit_metric(SyncMetric.ATTEMPTS, source)
    emit_metric(SyncMetric.FAILURES, source)


@dataclass(frozen=True, slots=True)
class WriteLog:
    """How one table's counted writes are logged: the field naming the item, and the messages of a
    failed and of a finished write (the runbook lists them: keep them literal)."""

    id_field: str
    failed: str
    done: str


USER_WRITES = WriteLog("userId", failed="user write failed", done="user write")


def counted_write(
    source: SyncSource, save: Callable[[], WriteOutcome], log: WriteLog, item_id: str
) -> WriteOutcome:
    """One write of any table, counted alike: a SyncAttempts, a SyncStale for a lost condition (stale or
    duplicate, both successes), a SyncFailures (with its attempt) for a failed call, logged (`log`'s
    messages, with the item's id) and re-raised.
    """
    try:
        with sync_attempt(source):
            outcome = save()
    except RepositoryError as exc:
        logger.error(log.failed, extra={log.id_field: item_id, "source": source.value, "errorCode": exc.code})
        raise
    if outcome in (WriteOutcome.STALE, WriteOutcome.DUPLICATE):
        emit_metric(SyncMetric.STALE, source)
    # DEBUG: each caller logs the outcome once at INFO, with its own context (svix-id, event type).
    logger.debug(log.done, extra={log.id_field: item_id, "source": source.value, "outcome": outcome.value})
    return outcome


def write_user(repository: UserRepository, record: UserRecord) -> WriteOutcome:
    """One counted write by the record's writer rule (see usersync.store.users)."""
    source = record.source or SyncSource.WEBHOOK
    return counted_write(source, lambda: repository.save(record), USER_WRITES, record.user_id)


class UserDeletedError(Exception):
    """The stored user is a tombstone: a token for it must not be honoured, nor resurrect it."""

    def __init__(self, user_id: str) -> None:
        super().__init__(f"user {user_id} is deleted")
        self.user_id = user_id


class SyncResult(StrEnum):
    UNCHANGED = "unchanged"  # the stored copy matches the token: no write
    STORED_NEWER = "stored-newer"  # differs, but the stored copy is newer than the token: it wins
    WRITTEN = "written"
    STALE = "stale"  # the conditional put lost to a newer or deleted stored item
    FAILED = "failed"  # the table could not be written; the caller still allows the request


@dataclass
class UserCache:
    """Per-container cache of stored records by userId, so a warm authorizer rarely reads the table.

    Hand-written (a dict with deadlines) rather than a cache library: it is ten lines, and every
    extra layer dependency costs cold-start time. Bounded so a long-lived container cannot grow
    without limit; when full, the oldest entry goes (dicts keep insertion order).
    """

    ttl_seconds: float = 60.0
    max_entries: int = 10_000
    clock: Callable[[], float] = time.monotonic
    _entries: dict[str, tuple[float, UserRecord | None]] = field(default_factory=dict)

    def get(self, user_id: str) -> tuple[bool, UserRecord | None]:
        """(hit, record): a hit may be a cached "not stored" (None)."""
        entry = self._entries.get(user_id)
        if entry is None or entry[0] <= self.clock():
            self._entries.pop(user_id, None)
            return False, None
        return True, entry[1]

    def put(self, user_id: str, record: UserRecord | None) -> None:
        self._entries.pop(user_id, None)
        while len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]
        self._entries[user_id] = (self.clock() + self.ttl_seconds, record)

    def forget(self, user_id: str) -> None:
        self._entries.pop(user_id, None)


def _read_stored(repository: UserRepository, user_id: str, cache: UserCache) -> UserRecord | None:
    """The stored record (cached), or None when absent or the table could not be read.

    A failed read is not a sync failure by itself: the caller falls through to the conditional write,
    which is safe without the read, and it is the write's outcome that gets counted. An item that was
    read but cannot be interpreted is raised (UninterpretableItemError): writing over it blind would
    only lose to its condition again, so the caller counts a failure instead.
    """
    hit, record = cache.get(user_id)
    if hit:
        return record
    try:
        record = repository.get(user_id)
    except UninterpretableItemError:
        raise
    except RepositoryError as exc:
        logger.warning(
            "stored user read failed; writing without compare",
            extra={"userId": user_id, "source": SyncSource.AUTHORIZER.value, "errorCode": exc.code},
        )
        return None
    cache.put(user_id, record)
    return record


def record_from_claims(claims: SessionClaims) -> UserRecord:
    """The user as the token describes it, ordered by the token's issue time (ms)."""
    return UserRecord(
        user_id=claims.sub, updated_at=claims.iat * 1000, source=SyncSource.AUTHORIZER, **claims.profile()
    )


def claims_match(stored: UserRecord, candidate: UserRecord) -> bool:
    """Every profile claim the token carries equals the stored value (absent claims are unknown)."""
    stored_profile = stored.profile()
    return all(
        stored_profile[field] == value  # type: ignore[literal-required]
        for field, value in candidate.profile().items()
        if value is not None
    )


def sync_from_token(repository: UserRepository, candidate: UserRecord, cache: UserCache) -> SyncResult:
    """Compare-first sync of the user a verified token describes (`candidate`, updatedAt = iat ms).

    Writes only when the stored copy is missing, or is older than the token and differs in a claim the
    token carries (email, names, image: an optional claim the token lacks says nothing, so it never
    counts as a difference); the write is the authorizer's conditional UpdateItem (see usersync.store.users),
    so a newer write always wins and a tombstone is never resurrected. Raises `UserDeletedError` for a
    tombstone. Every failure (table down, out of time, unreadable item, a bug) is counted as a failed
    attempt and reported as FAILED, never raised: a sync failure never denies a valid token.
    """
    user_id = candidate.user_id
    try:
        stored = _read_stored(repository, user_id, cache)
    except UninterpretableItemError as exc:
        record_failed_attempt(SyncSource.AUTHORIZER)
        logger.error(
            "stored user cannot be interpreted",
            extra={"userId": user_id, "source": SyncSource.AUTHORIZER.value, "problem": exc.problem},
        )
        return SyncResult.FAILED
    if stored is not None and stored.is_tombstone:
        raise UserDeletedError(user_id)
    if stored is not None:
        if claims_match(stored, candidate):
            return SyncResult.UNCHANGED
        if (stored.updated_at or 0) >= (candidate.updated_at or 0):
            return SyncResult.STORED_NEWER
    try:
        outcome = write_user(repository, candidate)
    except Exception:  # noqa: BLE001 - whatever failed, write_user counted (and logged) it; the token stays valid
        cache.forget(user_id)
        return SyncResult.FAILED
    if outcome is WriteOutcome.APPLIED:
        # The stored row now: the token's claims over what was stored, and the token's updatedAt.
        kept = stored.model_dump(exclude_none=True) if stored is not None else {}
        cache.put(user_id, candidate.model_copy(update={**kept, **candidate.model_dump(exclude_none=True)}))
        return SyncResult.WRITTEN
    # Lost the condition: a newer write or a tombstone landed since we read (or we could not read).
    # Re-read once so a deletion is enforced now rather than after the cache expires.
    cache.forget(user_id)
    try:
        latest = _read_stored(repository, user_id, cache)
    except UninterpretableItemError:
        latest = None
    if latest is not None and latest.is_tombstone:
        raise UserDeletedError(user_id)
    return SyncResult.STALE
