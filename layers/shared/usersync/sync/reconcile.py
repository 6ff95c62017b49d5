"""Reconciliation: page through Clerk's Backend API `GET /v1/users` and repair the user table.

Webhooks can be missed (endpoint disabled, retries exhausted, table created after the users), so a
scheduled run re-applies every Clerk user through the same conditional PutItem as the webhook
(`sync.write_user`, the Clerk-record rule of usersync.store.users): a newer webhook write is never
overwritten, a tombstone never resurrected, and a row first stored by the authorizer gets Clerk's
`createdAt` even when the token that wrote it is newer than Clerk's record.

Cost: one paginated, eventually consistent Scan of the table at the start, through the repository
(projection userId, updatedAt, clerkUpdatedAt, deletedAt, source). DynamoDB bills a Scan on the
full item size, so it costs about 0.5 read unit
per 4 KB of table, e.g. ~6k read units for 100k users of ~500 bytes (a fraction of a cent on demand).
It lets the run tell created from updated, skip every user whose stored Clerk version is Clerk's
current one without a write (a rerun costs zero writes) and find the users that are in the table but
no longer in Clerk (`--prune`). Whether anything else is written is left to the conditional write:
the snapshot never decides that a write is stale.

Time: every Clerk request checks the invocation's budget (usersync.runtime.budget) before each attempt, a
request that hangs is retried once at most, and the run stops between pages (and between prune
candidates) with DEADLINE_MARGIN_SECONDS left, so it ends with its counts logged, never killed.

HTTP client: urllib3, not the official `clerk-backend-api` SDK. urllib3 is already loaded by botocore
in every container, so it adds nothing to the layer and nothing to the cold start; the SDK would add
~13 MB unzipped (itself, httpx, httpcore, anyio, h11...) and ~70 ms to import, ~375 ms once a client is
built and its models loaded, measured on top of boto3 on a quiet machine (this module: ~4 ms).
The retry loop is written here rather than with `urllib3.Retry` because Retry sleeps with
`time.sleep` and does not cap `Retry-After`; we need both an injectable sleep (tests must not sleep)
and a bound on how long a hostile or broken header can stall the run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import urllib3
from pydantic import ValidationError

from usersync.clerk.users import ClerkUser
from usersync.runtime.budget import TimeBudget
from usersync.runtime.metrics import SyncMetric, SyncSource, emit_metric
from usersync.runtime.observability import logger
from usersync.store.dynamodb import WriteOutcome
from usersync.store.errors import RepositoryError
from usersync.store.records import UserRecord
from usersync.store.users import UserRepository
from usersync.sync.users import write_user

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

DEFAULT_API_URL = "https://api.clerk.com"
MAX_PAGE_SIZE = 500  # Clerk: "greater than zero and less than 501"
DEFAULT_MAX_RETRIES = 5
# A request that got no answer in time (the server hangs) is retried once: a second hang says the API
# is down for this run, and the next scheduled run retries. Rate limits and 5xx get DEFAULT_MAX_RETRIES.
MAX_NETWORK_RETRIES = 1
CONNECT_TIMEOUT_SECONDS = 2.0
# Clerk answers a 500-user page in well under a second; ten seconds of silence is an outage.
READ_TIMEOUT_SECONDS = 10.0
MAX_RETRY_AFTER_SECONDS = 60.0  # Clerk's rate-limit windows are 10 s; longer headers are capped.
BACKOFF_BASE_SECONDS = 0.5
# Oldest first: users created while the run pages are appended at the end, so no page shifts under us.
ORDER_BY = "+created_at"
# A prune that would tombstone more than half of a table of some size smells of a wrong secret key
# (another Clerk instance): refuse rather than soft-delete every user.
PRUNE_SAFETY_RATIO = 0.5
PRUNE_SAFETY_MIN = 10
# Stop paging when less than this is left of the Lambda's time, so the run ends with its counts logged
# and ReconcileFailed emitted instead of being killed; the next run redoes the written users for free.
DEADLINE_MARGIN_SECONDS = 60.0

Sleep = Callable[[float], None]


class ReconcileError(Exception):
    """The run could not finish; `report` holds what was done before it stopped."""

    def __init__(self, message: str, report: ReconcileReport | None = None) -> None:
        super().__init__(message)
        self.report = report


class ClerkApiError(ReconcileError):
    """Clerk's Backend API refused or kept failing a request."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ClerkUsersClient:
    """The two Backend API calls reconciliation needs: list users (limit/offset) and get one user."""

    def __init__(
        self,
        secret_key: str,
        api_url: str = DEFAULT_API_URL,
        *,
        page_size: int = MAX_PAGE_SIZE,
        max_retries: int = DEFAULT_MAX_RETRIES,
        max_retry_after: float = MAX_RETRY_AFTER_SECONDS,
        sleep: Sleep = time.sleep,
        timeout: urllib3.Timeout | None = None,
        budget: TimeBudget | None = None,
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        self._base = api_url.rstrip("/")
        self._headers = {
            "Authorization": f"Bearer {secret_key}",
            "Accept": "application/json",
            "User-Agent": "usersync-reconcile",
        }
        self.page_size = page_size
        self._max_retries = max(0, max_retries)
        self._max_retry_after = max_retry_after
        self._sleep = sleep
        self._timeout = timeout or urllib3.Timeout(connect=CONNECT_TIMEOUT_SECONDS, read=READ_TIMEOUT_SECONDS)
        limits = (self._timeout.connect_timeout, self._timeout.read_timeout)
        self._attempt_seconds = sum(float(limit) for limit in limits if isinstance(limit, int | float))
        self._budget = budget or TimeBudget.unlimited()
        self._http = urllib3.PoolManager(timeout=self._timeout, retries=False)
        self._retry_after = urllib3.util.Retry()  # only for its Retry-After parser (seconds or HTTP date)

    def pages(self) -> Iterator[list[dict[str, Any]]]:
        """Every user, one page (raw JSON objects) at a time, until a page is shorter than the limit."""
        offset = 0
        while True:
            fields = {"limit": str(self.page_size), "offset": str(offset), "order_by": ORDER_BY}
            page = self._get("/v1/users", fields)
            if not isinstance(page, list):
                raise ClerkApiError("Clerk API GET /v1/users returned something other than a list of users")
            yield [entry for entry in page if isinstance(entry, dict)]
            if len(page) < self.page_size:
                return
            offset += len(page)

    def get_user(self, user_id: str) -> dict[str, Any] | None:
        """One user, or None when Clerk answers 404 (the user does not exist)."""
        body = self._get(f"/v1/users/{quote(user_id, safe='')}", {}, allow_not_found=True)
        return body if isinstance(body, dict) else None

    def _get(self, path: str, fields: dict[str, str], *, allow_not_found: bool = False) -> Any:
        where = f"GET {path}" + (f"?offset={fields['offset']}" if "offset" in fields else "")
        attempt = network_failures = 0
        while True:
            if not self._budget.allows(self._attempt_seconds):
                raise ClerkApiError(f"Clerk API {where} not attempted: the invocation is out of time")
            try:
                response = self._http.request("GET", self._base + path, fields=fields, headers=self._headers)
            except urllib3.exceptions.HTTPError as exc:
                status, problem, delay = None, f"network error {type(exc).__name__}", None
                network_failures += 1
            else:
                status = response.status
                if status == 200:
                    try:
                        return json.loads(response.data)
                    except ValueError:
                        raise ClerkApiError(f"Clerk API {where} returned invalid JSON", status) from None
                if status == 404 and allow_not_found:
                    return None
                problem = f"HTTP {status}{_clerk_error(response.data)}"
                if status != 429 and status < 500:
                    # 401/403/422...: retrying cannot help (wrong key, bad parameters).
                    raise ClerkApiError(f"Clerk API {where} failed: {problem}", status)
                delay = self._retry_after_seconds(response) if status == 429 else None
            if attempt >= self._max_retries or network_failures > MAX_NETWORK_RETRIES:
                raise ClerkApiError(
                    f"Clerk API {where} failed after {attempt + 1} attempts: {problem}", status
                )
            if delay is None:
                delay = BACKOFF_BASE_SECONDS * 2**attempt
            delay = min(delay, self._max_retry_after)
            if not self._budget.allows(delay + self._attempt_seconds):
                raise ClerkApiError(f"Clerk API {where} failed, no time left to retry: {problem}", status)
            logger.warning(
                "Clerk API retry", extra={"request": where, "problem": problem, "sleepSeconds": delay}
            )
            self._sleep(delay)
            attempt += 1

    def _retry_after_seconds(self, response: urllib3.BaseHTTPResponse) -> float | None:
        header = response.headers.get("Retry-After")
        if not header:
            return None
        try:
            return float(self._retry_after.parse_retry_after(header))
        except urllib3.exceptions.InvalidHeader:
            return None


def _clerk_error(data: bytes) -> str:
    """Clerk's `{"errors": [{"code", "message"}]}`, shortened, for the error message (no secrets in it)."""
    try:
        errors = json.loads(data).get("errors") or []
        first = errors[0]
        return f" ({first.get('code', '')}: {first.get('message', '')})"[:200]
    except (ValueError, AttributeError, IndexError, TypeError):
        return ""


@dataclass
class ReconcileReport:
    """What the run did (or, in a dry run, would do)."""

    dry_run: bool = False
    prune: bool = False
    seen: int = 0  # users listed by Clerk
    created: int = 0
    updated: int = 0
    unchanged: int = 0  # table already holds this exact version: no write
    skipped: int = 0  # not written: table holds a newer copy or a tombstone, or Clerk's entry is invalid
    pruned: int = 0
    pruned_ids: list[str] = field(default_factory=list, repr=False)

    def counts(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("pruned_ids")
        return data


def stored_clerk_version(stored: UserRecord) -> int | None:
    """The Clerk `updated_at` a stored row holds: `clerkUpdatedAt`, or for rows written before it
    existed `updatedAt`, unless the authorizer wrote the row (a token's `iat` is no Clerk version)."""
    if stored.clerk_updated_at is not None:
        return stored.clerk_updated_at
    return None if stored.source is SyncSource.AUTHORIZER else stored.updated_at


class ReconcileRun:
    """One run's state: the table snapshot, the users Clerk listed so far, and the counts."""

    def __init__(
        self, repository: UserRepository, stored: dict[str, UserRecord], report: ReconcileReport
    ) -> None:
        self.repository = repository
        self.stored = stored
        self.report = report
        self.seen_ids: set[str] = set()

    def apply(self, entry: dict[str, Any]) -> None:
        user_id = entry.get("id")
        if isinstance(user_id, str) and user_id:
            # Seen, even if invalid below: a user Clerk lists must never be pruned.
            if user_id in self.seen_ids:
                return  # offset paging can repeat a user when the list shifts
            self.seen_ids.add(user_id)
        self.report.seen += 1
        try:
            user = ClerkUser.model_validate(entry)
        except ValidationError:
            logger.warning("Clerk user entry skipped: invalid", extra={"userId": user_id})
            self.report.skipped += 1
            return
        stored = self.stored.get(user.id)
        if stored is not None and stored.is_tombstone:
            self.report.skipped += 1  # nothing resurrects a tombstone: no write needed to know it
            return
        stored_version = None if stored is None else stored_clerk_version(stored)
        if stored_version is not None and stored_version >= user.updated_at:
            # Clerk versions only grow (every writer's condition keeps them so), and a snapshot is
            # never ahead of the table: the write would lose for sure. A token's `iat` is no Clerk
            # version, so an authorizer-written row is never skipped here: the write decides.
            if stored_version == user.updated_at:
                self.report.unchanged += 1
            else:
                self.report.skipped += 1
            return
        if not self.report.dry_run:
            record = UserRecord.from_clerk_user(user, source=SyncSource.RECONCILE)
            if write_user(self.repository, record) not in (WriteOutcome.APPLIED, WriteOutcome.MERGED):
                self.report.skipped += 1  # the table holds a newer Clerk version or a tombstone: it wins
                return
        if stored is None:
            self.report.created += 1
        else:
            self.report.updated += 1


def epoch_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class ReconcileOptions:
    """How a run goes; the users' run and the organizations' run take the same options."""

    dry_run: bool = False  # count what would be written, write nothing
    prune: bool = False  # tombstone what Clerk no longer has (after a complete listing only)
    now_ms: Callable[[], int] = epoch_ms  # the deletion time of a pruned item
    remaining_seconds: Callable[[], float] | None = None  # the invocation's time left; None: unlimited

    def out_of_time(self) -> bool:
        """Less than DEADLINE_MARGIN_SECONDS left: stop now, with the counts logged, rather than be killed."""
        return self.remaining_seconds is not None and self.remaining_seconds() < DEADLINE_MARGIN_SECONDS


def refuse_mass_prune(kind: str, candidates: int, live: int) -> None:
    """Raise ReconcileError when a prune would tombstone more than PRUNE_SAFETY_RATIO of the live
    `kind` (past PRUNE_SAFETY_MIN): that smells of a secret key of another Clerk instance."""
    if candidates > PRUNE_SAFETY_MIN and candidates > PRUNE_SAFETY_RATIO * live:
        raise ReconcileError(
            f"refusing to prune {candidates} of {live} {kind}: is CLERK_SECRET_KEY the key of the Clerk "
            "instance this table mirrors?"
        )


def reconcile(
    clerk: ClerkUsersClient,
    client: DynamoDBClient,
    table_name: str,
    options: ReconcileOptions,
) -> ReconcileReport:
    """Apply every Clerk user to the table, page by page; with `prune`, tombstone users Clerk lost.

    Raises ReconcileError (with the partial report) when Clerk or the table fails; the pages applied
    before the failure stay applied. Nothing is pruned unless the whole listing succeeded.
    """
    report = ReconcileReport(dry_run=options.dry_run, prune=options.prune)
    try:
        repository = UserRepository(client, table_name)
        stored = {record.user_id: record for record in repository.scan_versions()}
        run = ReconcileRun(repository, stored, report)
        for index, page in enumerate(clerk.pages()):
            if index and options.out_of_time():
                raise ReconcileError(
                    f"stopped after {report.seen} users, under {DEADLINE_MARGIN_SECONDS:.0f} s left"
                    " (the next run skips the users written so far without writing them again)"
                )
            for entry in page:
                run.apply(entry)
        if options.prune:
            _prune(run, clerk, options)
    except (ReconcileError, RepositoryError) as exc:
        if not options.dry_run:
            emit_metric(SyncMetric.RECONCILE_FAILED, SyncSource.RECONCILE)
        logger.error("reconcile failed", extra={"error": str(exc), "reconcile": report.counts()})
        raise ReconcileError(f"reconcile failed: {exc}", report) from exc
    if not options.dry_run:
        for metric, value in (
            (SyncMetric.RECONCILE_CREATED, report.created),
            (SyncMetric.RECONCILE_UPDATED, report.updated),
            (SyncMetric.RECONCILE_UNCHANGED, report.unchanged),
            (SyncMetric.RECONCILE_PRUNED, report.pruned),
        ):
            emit_metric(metric, SyncSource.RECONCILE, value)
    logger.info("reconcile finished", extra={"reconcile": report.counts()})
    return report


def _prune(run: ReconcileRun, clerk: ClerkUsersClient, options: ReconcileOptions) -> None:
    """Tombstone live table users that Clerk no longer has.

    Offset paging can skip a user when a deletion shifts the list mid-run, so each candidate is
    confirmed with `GET /v1/users/{id}` (404) before it is tombstoned; one that still exists is applied.
    """
    live = [user_id for user_id, stored in run.stored.items() if stored.deleted_at is None]
    candidates = sorted(user_id for user_id in live if user_id not in run.seen_ids)
    refuse_mass_prune("users", len(candidates), len(live))
    for user_id in candidates:
        if options.out_of_time():
            raise ReconcileError(
                f"prune stopped after {run.report.pruned} of {len(candidates)} candidates, under "
                f"{DEADLINE_MARGIN_SECONDS:.0f} s left (the next run continues)"
            )
        found = clerk.get_user(user_id)
        if found is not None:
            run.apply(found)
            continue
        if not run.report.dry_run:
            record = UserRecord.tombstone(user_id, deleted_at=options.now_ms(), source=SyncSource.RECONCILE)
            if write_user(run.repository, record) is not WriteOutcome.APPLIED:
                continue  # already tombstoned since the scan
        run.report.pruned += 1
        run.report.pruned_ids.append(user_id)
