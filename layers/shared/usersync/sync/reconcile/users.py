"""The users' source: Clerk's `GET /v1/users` by cursor against the user table.

Listing: one page of up to 500 users after the cursor; the stored versions of exactly those users in
one eventually consistent BatchGetItem per 100 (projection of the version attributes only); a write,
through the webhook's conditional PutItem (`sync.users.write_user`, Source=reconcile), only for a user
whose stored Clerk version is older or absent. A newer webhook write is never overwritten and a
tombstone never resurrected: the condition decides, the read only saves writes.

Pruning (opt-in): one Scan page of the table (ids and deletion only), the live ids not written during
this pass asked of Clerk 100 at a time (`GET /v1/users?user_id=...`), each id Clerk did not return
confirmed with `GET /v1/users/{id}` (404) before its tombstone is written.
"""

from __future__ import annotations

from typing import Any

from usersync.clerk.backend_api import MAX_IDS_PER_REQUEST
from usersync.clerk.users import ClerkUser
from usersync.runtime.metrics import SyncSource
from usersync.runtime.observability import logger
from usersync.store.dynamodb import WriteOutcome
from usersync.store.errors import UninterpretableItemError
from usersync.store.records import UserRecord
from usersync.store.users import UserRepository, item_to_record
from usersync.sync.reconcile.engine import ReadAhead, TableSource
from usersync.sync.reconcile.state import (
    Counts,
    PassState,
    Phase,
)
from usersync.sync.users import write_user

VERSION_PROJECTION = "userId, updatedAt, clerkUpdatedAt, deletedAt, #source"
# One prune step: a Scan page of 500 ids, asked of Clerk 100 at a time (5 requests). Fewer, larger steps
# keep a pass's durable history short (each step is one operation of the execution).
PRUNE_SCAN_LIMIT = 5 * MAX_IDS_PER_REQUEST


def stored_clerk_version(stored: UserRecord) -> int | None:
    """The Clerk `updated_at` a stored row holds: `clerkUpdatedAt`, or for rows written before it
    existed `updatedAt`, unless the authorizer wrote the row (a token's `iat` is no Clerk version)."""
    if stored.clerk_updated_at is not None:
        return stored.clerk_updated_at
    return None if stored.source is SyncSource.AUTHORIZER else stored.updated_at


class UserSource(TableSource):
    entity = "users"
    kinds: tuple[str, ...] = ("users",)

    def __post_init__(self) -> None:
        self.repository = UserRepository(self.client, self.table_name)
        # The next Clerk page, read while this one is applied.
        self._ahead: ReadAhead[str | None, tuple[list[dict[str, Any]], int]] = ReadAhead(self.writer)

    # ------------------------------------------------------------ listing

    def list_step(self, state: PassState) -> None:
        page, requests = self._ahead.take(state.cursor, lambda: self._read_page(state.cursor))
        state.requests += requests
        counts = state.counts["users"]
        counts.seen += len(page)
        if page and isinstance(page[-1].get("id"), str):
            state.cursor = page[-1]["id"]
        if len(page) < self.clerk.page_size:
            state.phase = Phase.PRUNE if state.prune else Phase.DONE
        elif self.options.read_ahead():
            cursor = state.cursor
            self._ahead.start(cursor, lambda: self._read_page(cursor))
        self.apply(page, counts, dry_run=state.dry_run)

    def holds_next_page(self, state: PassState) -> bool:
        return state.phase is Phase.LIST and self._ahead.holds(state.cursor)

    def _read_page(self, cursor: str | None) -> tuple[list[dict[str, Any]], int]:
        """The page after `cursor` and the Clerk requests it took (attempts: retries count)."""
        before = self.clerk.requests
        page = self.clerk.users_page(cursor)
        return page, self.clerk.requests - before

    def apply(self, entries: list[dict[str, Any]], counts: Counts, *, dry_run: bool) -> None:
        """Write the users of `entries` whose stored copy is older or absent; count every outcome."""
        users = self.parse(entries, ClerkUser.model_validate, counts, kind="user", id_key="userId")
        self.apply_stored(users, self.stored_versions([user.id for user in users]), counts, dry_run=dry_run)

    def apply_stored(
        self, users: list[ClerkUser], stored: dict[str, UserRecord], counts: Counts, *, dry_run: bool
    ) -> None:
        """Write what `stored` (read a moment ago, maybe stale: the write's condition decides) lacks."""
        to_write: list[tuple[UserRecord, bool]] = []
        for user in users:
            current = stored.get(user.id)
            if current is not None and current.is_tombstone:
                counts.skipped += 1  # nothing resurrects a tombstone: no write needed to know it
                continue
            version = None if current is None else stored_clerk_version(current)
            if version is not None and version >= user.updated_at:
                # Clerk versions only grow: the write would lose for sure. A token's `iat` is no Clerk
                # version, so an authorizer-written row is never skipped here: the write decides.
                counts.unchanged += version == user.updated_at
                counts.skipped += version != user.updated_at
                continue
            to_write.append((UserRecord.from_clerk_user(user, source=SyncSource.RECONCILE), current is None))
        self.write_counted(
            to_write,
            lambda record: write_user(self.repository, record),
            counts,
            dry_run=dry_run,
            written=(WriteOutcome.APPLIED, WriteOutcome.MERGED),
        )

    def stored_versions(self, user_ids: list[str]) -> dict[str, UserRecord]:
        """The stored versions of `user_ids` (absent ids absent): BatchGetItem, 100 keys a request,
        unprocessed keys asked again. An uninterpretable item counts as absent: the write decides."""
        found: dict[str, UserRecord] = {}
        keys = [{"userId": {"S": user_id}} for user_id in dict.fromkeys(user_ids)]
        for item in self.stored_items(keys, VERSION_PROJECTION, {"#source": "source"}):
            try:
                record = item_to_record(item, "BatchGetItem")
            except UninterpretableItemError as exc:
                logger.warning("uninterpretable item skipped", extra={"problem": exc.problem})
                continue
            found[record.user_id] = record
        return found

    # ------------------------------------------------------------ pruning

    def prune_step(self, state: PassState) -> None:
        items, state.scan_key = self.scan_page(
            state.scan_key, ProjectionExpression="userId, deletedAt, syncedAt", Limit=PRUNE_SCAN_LIMIT
        )
        since = state.synced_since
        live = [
            item["userId"]["S"]
            for item in items
            if "S" in item.get("userId", {})
            and "deletedAt" not in item
            and item.get("syncedAt", {}).get("S", "") < since
        ]
        counts = state.counts["users"]
        counts.checked += len(live)
        before = self.clerk.requests
        present: set[Any] = set()
        for start in range(0, len(live), MAX_IDS_PER_REQUEST):
            present.update(
                entry.get("id") for entry in self.clerk.users_by_id(live[start : start + MAX_IDS_PER_REQUEST])
            )
        candidates = [user_id for user_id in live if user_id not in present]
        state.refuse_mass_prune("users", len(candidates))
        for user_id in candidates:
            self._prune_one(user_id, counts, dry_run=state.dry_run)
        state.requests += self.clerk.requests - before
        if state.scan_key is None:
            state.phase = Phase.DONE

    def _prune_one(self, user_id: str, counts: Counts, *, dry_run: bool) -> None:
        """Tombstone `user_id` once Clerk confirms it is gone (404); a user it still has is applied."""
        found = self.clerk.get_user(user_id)
        if found is not None:
            self.apply([found], counts, dry_run=dry_run)
            return
        if not dry_run:
            record = UserRecord.tombstone(
                user_id, deleted_at=self.options.now_ms(), source=SyncSource.RECONCILE
            )
            if write_user(self.repository, record) is not WriteOutcome.APPLIED:
                return  # tombstoned by a webhook meanwhile
        counts.pruned += 1
        logger.info("user pruned" if not dry_run else "user would be pruned", extra={"userId": user_id})
