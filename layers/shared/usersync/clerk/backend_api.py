"""Clerk's Backend API, the calls reconciliation makes: users by cursor, users by id, organizations
and their memberships by offset, one organization.

Paging. Users are listed oldest first with Clerk's cursor (`order_by=+created_at&starting_after=<id>`):
a user created during a pass lands after the cursor and is listed, a deletion shifts nothing, so no
user is skipped or listed twice. Organizations and memberships have no cursor: they are paged by
offset (docs/reconciliation.md says what a concurrent change can cost until the next pass).

Rate. Every attempt first takes a slot from a `SlidingWindowLimiter` (at most
`max_requests_per_10s` over any 10 s window); a 429 is retried after its `Retry-After`. A wait longer
than `max_sleep_seconds` is not slept here: it raises `RateLimitWait`, and the caller (the durable
function) waits outside the invocation, where waiting costs nothing.

Time. Every attempt checks the invocation's budget (usersync.runtime.budget) first, a request that
hangs is retried once at most, so a call never outlives the Lambda (contract §6a).

HTTP client: urllib3, not the official `clerk-backend-api` SDK. urllib3 is already loaded by botocore
in every container, so it adds nothing to the layer and nothing to the cold start; the SDK would add
~13 MB unzipped (itself, httpx, httpcore, anyio, h11...) and ~70 ms to import. The retry loop is
written here rather than with `urllib3.Retry` because Retry sleeps with `time.sleep` and does not cap
`Retry-After`; we need an injectable sleep (tests must not sleep), a bound on how long a hostile or
broken header can stall the pass, and the hand-over of long waits to the caller.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import urllib3

from usersync.clerk.rate_limit import RateLimitWait, Sleep, SlidingWindowLimiter
from usersync.runtime.budget import TimeBudget
from usersync.runtime.observability import logger

DEFAULT_API_URL = "https://api.clerk.com"
MAX_PAGE_SIZE = 500  # Clerk: "greater than zero and less than 501"
MAX_IDS_PER_REQUEST = 100  # `GET /v1/users?user_id=...`: a bounded batch, well under URL limits
DEFAULT_MAX_REQUESTS_PER_10S = 200  # a fifth of a production instance's 1,000 per 10 s
DEFAULT_MAX_RETRIES = 5
# A request that got no answer in time (the server hangs) is retried once: a second hang says the API
# is down for this step, and the step's own retry (or the next pass) tries again later.
MAX_NETWORK_RETRIES = 1
CONNECT_TIMEOUT_SECONDS = 2.0
# Clerk answers a 500-user page in well under a second; ten seconds of silence is an outage.
READ_TIMEOUT_SECONDS = 10.0
MAX_RETRY_AFTER_SECONDS = 60.0  # Clerk's rate-limit windows are 10 s; longer headers are capped.
BACKOFF_BASE_SECONDS = 0.5
# Oldest first: users created during a pass are appended after the cursor.
ORDER_BY = "+created_at"

__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_MAX_REQUESTS_PER_10S",
    "MAX_IDS_PER_REQUEST",
    "MAX_PAGE_SIZE",
    "ClerkApiError",
    "ClerkBackendApi",
    "OffsetPage",
    "RateLimitWait",
]


class ClerkApiError(Exception):
    """Clerk's Backend API refused or kept failing a request."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class OffsetPage:
    """One page of an offset-paged list: its entries, and whether more may follow."""

    entries: list[dict[str, Any]]
    more: bool


class ClerkBackendApi:
    """The Backend API calls of reconciliation, rate-limited, retried and time-bounded."""

    def __init__(
        self,
        secret_key: str,
        api_url: str = DEFAULT_API_URL,
        *,
        page_size: int = MAX_PAGE_SIZE,
        max_requests_per_10s: int = DEFAULT_MAX_REQUESTS_PER_10S,
        limiter: SlidingWindowLimiter | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        max_retry_after: float = MAX_RETRY_AFTER_SECONDS,
        max_sleep_seconds: float = float("inf"),
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
        self.limiter = limiter or SlidingWindowLimiter(
            max_requests_per_10s, sleep=sleep, max_sleep_seconds=max_sleep_seconds
        )
        self._max_retries = max(0, max_retries)
        self._max_retry_after = max_retry_after
        self._max_sleep = max_sleep_seconds
        self._sleep = sleep
        self._timeout = timeout or urllib3.Timeout(connect=CONNECT_TIMEOUT_SECONDS, read=READ_TIMEOUT_SECONDS)
        limits = (self._timeout.connect_timeout, self._timeout.read_timeout)
        self._attempt_seconds = sum(float(limit) for limit in limits if isinstance(limit, int | float))
        self.budget = budget or TimeBudget.unlimited()
        self._http = urllib3.PoolManager(timeout=self._timeout, retries=False, maxsize=4)
        self._retry_after = urllib3.util.Retry()  # only for its Retry-After parser (seconds or HTTP date)
        self.requests = 0  # attempts sent (progress logs, bench)

    # ------------------------------------------------------------ the calls

    def users_page(self, after: str | None) -> list[dict[str, Any]]:
        """The page of users created after user `after` (None: from the first); short means last."""
        fields = {"limit": str(self.page_size), "order_by": ORDER_BY}
        if after:
            fields["starting_after"] = after
        return _entries(self._get("/v1/users", fields), "/v1/users")

    def count_users(self) -> int | None:
        """How many users Clerk has (`GET /v1/users/count`): a progress bar's total; None if unknown."""
        body = self._get("/v1/users/count", {})
        total = body.get("total_count") if isinstance(body, dict) else None
        return total if isinstance(total, int) else None

    def users_by_id(self, user_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Which of `user_ids` (at most MAX_IDS_PER_REQUEST) Clerk still has, in one request."""
        if len(user_ids) > MAX_IDS_PER_REQUEST:
            raise ValueError(f"at most {MAX_IDS_PER_REQUEST} ids per request")
        if not user_ids:
            return []
        fields: list[tuple[str, str]] = [("limit", str(MAX_PAGE_SIZE))]
        fields += [("user_id", user_id) for user_id in user_ids]
        return _entries(self._get("/v1/users", fields), "/v1/users?user_id")

    def get_user(self, user_id: str) -> dict[str, Any] | None:
        """One user, or None when Clerk answers 404 (the user does not exist)."""
        body = self._get(f"/v1/users/{quote(user_id, safe='')}", {}, allow_not_found=True)
        return body if isinstance(body, dict) else None

    def organizations_page(self, offset: int, limit: int | None = None) -> OffsetPage:
        return self._offset_page("/v1/organizations", offset, limit)

    def memberships_page(self, org_id: str, offset: int) -> OffsetPage:
        return self._offset_page(f"/v1/organizations/{quote(org_id, safe='')}/memberships", offset)

    def get_organization(self, org_id: str) -> dict[str, Any] | None:
        """One organization, or None when Clerk answers 404."""
        body = self._get(f"/v1/organizations/{quote(org_id, safe='')}", {}, allow_not_found=True)
        return body if isinstance(body, dict) else None

    def _offset_page(self, path: str, offset: int, limit: int | None = None) -> OffsetPage:
        """Clerk wraps these lists as `{"data": [...], "total_count": n}`; a bare list is accepted too."""
        size = min(limit or self.page_size, self.page_size)
        fields = {"limit": str(size), "offset": str(offset), "order_by": ORDER_BY}
        body = self._get(path, fields)
        entries = _entries(body.get("data") if isinstance(body, dict) else body, path)
        total = body.get("total_count") if isinstance(body, dict) else None
        more = len(entries) >= size and not (isinstance(total, int) and offset + len(entries) >= total)
        return OffsetPage(entries, more)

    # ------------------------------------------------------------ one request, retried

    def _get(self, path: str, fields: Any, *, allow_not_found: bool = False) -> Any:
        where = f"GET {path}"
        attempt = network_failures = 0
        while True:
            try:
                response = self._send(where, path, fields)
            except urllib3.exceptions.HTTPError as exc:
                status, problem, delay = None, f"network error {type(exc).__name__}", None
                network_failures += 1
            else:
                status = response.status
                if status == 200 or (status == 404 and allow_not_found):
                    return _json(response, where) if status == 200 else None
                problem = f"HTTP {status}{_clerk_error(response.data)}"
                if status != 429 and status < 500:
                    # 401/403/422...: retrying cannot help (wrong key, bad parameters).
                    raise ClerkApiError(f"Clerk API {where} failed: {problem}", status)
                delay = self._retry_after_seconds(response) if status == 429 else None
            if attempt >= self._max_retries or network_failures > MAX_NETWORK_RETRIES:
                raise ClerkApiError(
                    f"Clerk API {where} failed after {attempt + 1} attempts: {problem}", status
                )
            self._pause(where, problem, status, delay, attempt)
            attempt += 1

    def _send(self, where: str, path: str, fields: Any) -> urllib3.BaseHTTPResponse:
        with self.limiter.slot():
            if not self.budget.allows(self._attempt_seconds):
                raise ClerkApiError(f"Clerk API {where} not attempted: the invocation is out of time")
            self.requests += 1
            return self._http.request("GET", self._base + path, fields=fields, headers=self._headers)

    def _pause(self, where: str, problem: str, status: int | None, delay: float | None, attempt: int) -> None:
        """Sleep before a retry, or hand a long wait (a 429's Retry-After) to the caller."""
        delay = min(BACKOFF_BASE_SECONDS * 2**attempt if delay is None else delay, self._max_retry_after)
        if status == 429 and delay > self._max_sleep:
            raise RateLimitWait(delay, f"Clerk API {where} answered 429")
        if not self.budget.allows(delay + self._attempt_seconds):
            raise ClerkApiError(f"Clerk API {where} failed, no time left to retry: {problem}", status)
        logger.warning("Clerk API retry", extra={"request": where, "problem": problem, "sleepSeconds": delay})
        self._sleep(delay)

    def _retry_after_seconds(self, response: urllib3.BaseHTTPResponse) -> float | None:
        header = response.headers.get("Retry-After")
        if not header:
            return None
        try:
            return float(self._retry_after.parse_retry_after(header))
        except urllib3.exceptions.InvalidHeader:
            return None


def _json(response: urllib3.BaseHTTPResponse, where: str) -> Any:
    try:
        return json.loads(response.data)
    except ValueError:
        raise ClerkApiError(f"Clerk API {where} returned invalid JSON", response.status) from None


def _entries(page: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(page, list):
        raise ClerkApiError(f"Clerk API GET {where} returned something other than a list")
    return [entry for entry in page if isinstance(entry, dict)]


def _clerk_error(data: bytes) -> str:
    """Clerk's `{"errors": [{"code", "message"}]}`, shortened, for the error message (no secrets in it)."""
    try:
        errors = json.loads(data).get("errors") or []
        first = errors[0]
        return f" ({first.get('code', '')}: {first.get('message', '')})"[:200]
    except (ValueError, AttributeError, IndexError, TypeError):
        return ""
