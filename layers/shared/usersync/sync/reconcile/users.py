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

from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from usersync.clerk.backend_api import MAX_IDS_PER_REQUEST, ClerkBackendApi
from usersync.clerk.users import ClerkUser
from usersync.runtime.metrics import SyncSource
from usersync.runtime.observability import logger
from usersync.store.dynamodb import BATCH_GET_LIMIT, WriteOutcome, batch_get, dynamodb_call
from usersync.store.errors import UninterpretableItemError
from usersync.store.records import UserRecord
from usersync.store.users import UserRepository, item_to_record
from usersync.sync.reconcile.engine import ReadAhead, Writer
from usersync.sync.reconcile.state import (
    Counts,
    PassState,
    Phase,
    ReconcileOptions,
    iso_ms,
    refuse_mass_prune,
)
from usersync.sync.users import write_user

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

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


class UserSource:
    entity = "users"
    kinds: tuple[str, ...] = ("users",)

    def __init__(
        self,
        clerk: ClerkBackendApi,
        client: DynamoDBClient,
        table_name: str,
        options: ReconcileOptions,
        writer: Writer,
    ) -> None:
        self.clerk = clerk
        self.client = client
        self.repository = UserRepository(client, table_name)
        self.table_name = table_name
        self.options = options
        self.writer = writer
        self._ahead: ReadAhead[str | None, tuple[list[dict[str, Any]], int]] = ReadAhead(writer)

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
        users: list[ClerkUser] = []
        for entry in entries:
            try:
                users.append(ClerkUser.model_validate(entry))
            except ValidationError:
                logger.warning("Clerk user entry skipped: invalid", extra={"userId": entry.get("id")})
                counts.skipped += 1
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
        if dry_run:
            outcomes = [WriteOutcome.APPLIED] * len(to_write)
        else:
            outcomes = self.writer.map(lambda pair: write_user(self.repository, pair[0]), to_write)
        for (_, created), outcome in zip(to_write, outcomes, strict=True):
            if outcome not in (WriteOutcome.APPLIED, WriteOutcome.MERGED):
                counts.skipped += 1  # a newer Clerk version or a tombstone landed since the read: it wins
            elif created:
                counts.created += 1
            else:
                counts.updated += 1

    def stored_versions(self, user_ids: list[str]) -> dict[str, UserRecord]:
        """The stored versions of `user_ids` (absent ids absent): BatchGetItem, 100 keys a request,
        unprocessed keys asked again. An uninterpretable item counts as absent: the write decides."""
        found: dict[str, UserRecord] = {}
        unique = list(dict.fromkeys(user_ids))
        chunks = [unique[start : start + BATCH_GET_LIMIT] for start in range(0, len(unique), BATCH_GET_LIMIT)]
        for items in self.writer.map(self._read_versions, chunks):  # a page's requests in flight at once
            for item in items:
                try:
                    record = item_to_record(item, "BatchGetItem")
                except UninterpretableItemError as exc:
                    logger.warning("uninterpretable item skipped", extra={"problem": exc.problem})
                    continue
                found[record.user_id] = record
        return found

    def _read_versions(self, user_ids: list[str]) -> list[dict[str, Any]]:
        """One BatchGetItem of up to 100 ids (unprocessed keys asked again, within the time budget)."""
        request: dict[str, Any] = {
            self.table_name: {
                "Keys": [{"userId": {"S": user_id}} for user_id in user_ids],
                "ProjectionExpression": VERSION_PROJECTION,
                "ExpressionAttributeNames": {"#source": "source"},
            }
        }
        return batch_get(self.client, request, self.table_name)

    # ------------------------------------------------------------ pruning

    def prune_step(self, state: PassState) -> None:
        items, state.scan_key = self._scan_page(state.scan_key)
        since = iso_ms(state.started_ms)
        live = [
            item["userId"]["S"]
            for item in items
            if "deletedAt" not in item and item.get("syncedAt", {}).get("S", "") < since
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
        refuse_mass_prune("users", counts, len(candidates), state)
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

    def _scan_page(self, start: dict[str, Any] | None) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """One page of the table's ids (and what says whether they are live), from `start`."""
        extra: dict[str, Any] = {"ExclusiveStartKey": start} if start else {}
        with dynamodb_call("Scan"):
            response = self.client.scan(
                TableName=self.table_name,
                ProjectionExpression="userId, deletedAt, syncedAt",
                Limit=PRUNE_SCAN_LIMIT,
                **extra,
            )
        items = [dict(item) for item in response.get("Items", []) if "S" in item.get("userId", {})]
        last = response.get("LastEvaluatedKey")
        return items, (dict(last) if last else None)
