"""Reconciliation end to end: a loopback server imitating Clerk's `/v1/users`, moto DynamoDB.

Writes are counted with botocore event hooks on the real DynamoDB client, never by patching our code.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from tests.helpers import InvokeFunction, LogCapture, metric_counts
from usersync.runtime.aws import dynamodb_client
from usersync.runtime.metrics import SyncSource
from usersync.runtime.observability import metrics
from usersync.store.records import UserRecord
from usersync.store.users import UserRepository
from usersync.sync.reconcile import (
    ClerkUsersClient,
    ReconcileError,
    ReconcileOptions,
    ReconcileReport,
    reconcile,
)
from usersync_dev import reconcile_cmd
from usersync_dev.clerk import clerk_event, clerk_user, sign_delivery

# `make test` only: a loopback Clerk with paging, retries and their real (short) backoff waits.
pytestmark = pytest.mark.slow

SECRET_KEY = "sk_test_reconcile0123456789abcdef"
T0 = 1_730_279_325_025


# ---------------------------------------------------------------- a loopback Clerk


@dataclass
class FakeClerk:
    """Clerk's Backend API users endpoints, as much as reconciliation uses them."""

    secret_key: str = SECRET_KEY
    users: list[dict[str, Any]] = field(default_factory=list)
    # Users GET /v1/users/{id} knows but the listing misses (a deletion shifted the pages).
    unlisted: list[dict[str, Any]] = field(default_factory=list)
    rate_limit_once: str | None = None  # Retry-After value of one 429 before the first success
    fail_from_offset: int | None = None  # 503 for every list request at or beyond this offset
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    url: str = ""

    def add_users(self, count: int, *, start: int = 0) -> list[dict[str, Any]]:
        added = [
            clerk_user(
                f"user_{start + index:04d}",
                email=f"user{start + index}@example.com",
                first_name=f"First{start + index}",
                created_at=T0 + start + index,
                updated_at=T0 + start + index,
            )
            for index in range(count)
        ]
        self.users.extend(added)
        return added

    def user(self, user_id: str) -> dict[str, Any]:
        return next(user for user in self.users if user["id"] == user_id)

    def list_requests(self) -> list[dict[str, str]]:
        return [query for path, query in self.requests if path == "/v1/users"]

    def handle(self, method: str, raw_path: str, headers: Any) -> tuple[int, dict[str, str], Any]:
        parts = urlsplit(raw_path)
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        self.requests.append((parts.path, query))
        error = {"errors": [{"code": "", "message": ""}]}
        if headers.get("Authorization") != f"Bearer {self.secret_key}":
            error["errors"][0].update(code="authentication_invalid", message="invalid secret key")
            return 401, {}, error
        if self.rate_limit_once is not None:
            retry_after, self.rate_limit_once = self.rate_limit_once, None
            error["errors"][0].update(code="too_many_requests", message="Too many requests")
            return 429, {"Retry-After": retry_after}, error
        if method != "GET":
            return 405, {}, error
        if parts.path == "/v1/users":
            limit, offset = int(query.get("limit", "10")), int(query.get("offset", "0"))
            if not 1 <= limit <= 500:
                error["errors"][0].update(code="form_param_value_invalid", message="limit")
                return 422, {}, error
            if self.fail_from_offset is not None and offset >= self.fail_from_offset:
                return 503, {}, {"errors": [{"code": "service_unavailable", "message": "try later"}]}
            order = query.get("order_by", "-created_at")
            ordered = sorted(self.users, key=lambda user: user["created_at"], reverse=order.startswith("-"))
            return 200, {}, ordered[offset : offset + limit]
        if parts.path.startswith("/v1/users/"):
            user_id = parts.path.removeprefix("/v1/users/")
            for user in (*self.users, *self.unlisted):
                if user["id"] == user_id:
                    return 200, {}, user
            error["errors"][0].update(code="resource_not_found", message="not found")
            return 404, {}, error
        return 404, {}, error


@contextmanager
def serving(fake: FakeClerk) -> Iterator[None]:
    """`fake` behind a loopback HTTP server for the test's duration (sets `fake.url`)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, headers, body = fake.handle("GET", self.path, self.headers)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def clerk() -> Iterator[FakeClerk]:
    fake = FakeClerk()
    with serving(fake):
        yield fake


# ---------------------------------------------------------------- counting writes, running


class PutCounter:
    """Counts the PutItem calls the DynamoDB client actually sends, by userId (botocore event hook)."""

    def __init__(self) -> None:
        self.user_ids: list[str] = []
        self._client = dynamodb_client()
        self._client.meta.events.register("before-parameter-build.dynamodb.PutItem", self._on_put)

    def _on_put(self, params: dict[str, Any], **kwargs: Any) -> None:
        self.user_ids.append(params["Item"]["userId"]["S"])

    @property
    def count(self) -> int:
        return len(self.user_ids)

    def reset(self) -> None:
        self.user_ids.clear()

    def close(self) -> None:
        self._client.meta.events.unregister("before-parameter-build.dynamodb.PutItem", self._on_put)


@pytest.fixture
def puts(users_table: str) -> Iterator[PutCounter]:
    counter = PutCounter()
    yield counter
    counter.close()


@dataclass
class Runner:
    clerk: FakeClerk
    table: str
    sleeps: list[float] = field(default_factory=list)

    def client(self, **kwargs: Any) -> ClerkUsersClient:
        kwargs.setdefault("page_size", 100)
        return ClerkUsersClient(SECRET_KEY, self.clerk.url, sleep=self.sleeps.append, **kwargs)

    def run(self, **kwargs: Any) -> ReconcileReport:
        client_args = {key: kwargs.pop(key) for key in ("page_size", "max_retries") if key in kwargs}
        options = ReconcileOptions(**kwargs)
        return reconcile(self.client(**client_args), dynamodb_client(), self.table, options)


@pytest.fixture
def runner(clerk: FakeClerk, users_table: str) -> Runner:
    return Runner(clerk, users_table)


def items() -> dict[str, dict[str, Any]]:
    table = boto3.resource("dynamodb").Table("usersync-test-users")
    found: dict[str, dict[str, Any]] = {}
    kwargs: dict[str, Any] = {"ConsistentRead": True}
    while True:
        page = table.scan(**kwargs)
        found.update({str(item["userId"]): item for item in page["Items"]})
        if "LastEvaluatedKey" not in page:
            return found
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def repository(table: str) -> UserRepository:
    return UserRepository(dynamodb_client(), table)


def flushed_metrics(capsys: pytest.CaptureFixture[str]) -> str:
    """Everything printed so far (Powertools flushes by itself every 100 values) plus the rest."""
    printed = capsys.readouterr().out
    metrics.flush_metrics()
    return printed + capsys.readouterr().out


# ---------------------------------------------------------------- backfill and repair


def test_backfill_creates_every_clerk_user_paging_with_limit_and_offset(
    runner: Runner, clerk: FakeClerk, puts: PutCounter, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given 250 users in Clerk and an empty table
    clerk.add_users(250)
    # When reconciliation runs with pages of 100
    report = runner.run()
    # Then every user is stored, written once, from three pages walked by offset
    stored = items()
    assert len(stored) == 250 and puts.count == 250
    assert (report.seen, report.created, report.updated, report.unchanged) == (250, 250, 0, 0)
    assert [(q["limit"], q["offset"]) for q in clerk.list_requests()] == [
        ("100", "0"),
        ("100", "100"),
        ("100", "200"),
    ]
    assert {q["order_by"] for q in clerk.list_requests()} == {"+created_at"}
    item = stored["user_0042"]
    assert item["email"] == "user42@example.com" and item["firstName"] == "First42"
    assert item["updatedAt"] == T0 + 42 and item["source"] == "reconcile"
    # And the writes are counted under Source=reconcile
    counts = metric_counts(flushed_metrics(capsys), "reconcile")
    assert counts["SyncAttempts"] == 250 and counts["ReconcileCreated"] == 250
    assert counts["SyncFailures"] == 0


def test_rerun_writes_nothing_and_one_change_costs_one_write(
    runner: Runner, clerk: FakeClerk, puts: PutCounter
) -> None:
    # Given a table already reconciled with 250 Clerk users
    clerk.add_users(250)
    runner.run()
    puts.reset()
    # When it runs again, then nothing is written
    report = runner.run()
    assert puts.count == 0
    assert (report.created, report.updated, report.unchanged) == (0, 0, 250)
    # When one user changes in Clerk (newer updated_at)
    clerk.user("user_0007").update(first_name="Changed", updated_at=T0 + 10_000)
    report = runner.run()
    # Then exactly that user is written
    assert puts.user_ids == ["user_0007"]
    assert (report.created, report.updated, report.unchanged) == (0, 1, 249)
    assert items()["user_0007"]["firstName"] == "Changed"


def test_a_newer_webhook_write_is_never_overwritten_by_an_older_clerk_snapshot(
    runner: Runner,
    clerk: FakeClerk,
    puts: PutCounter,
    webhook_secret: str,
    invoke_function: InvokeFunction,
) -> None:
    # Given Clerk's listing holds an older version than the webhook already delivered
    (listed,) = clerk.add_users(1)
    newer = dict(listed, first_name="FromWebhook", updated_at=T0 + 5_000)
    delivery = sign_delivery(webhook_secret, clerk_event("user.updated", newer))
    from usersync_dev.apigw import http_api_event

    event = http_api_event("POST", "/webhooks/clerk", body=delivery.body, headers=delivery.headers)
    assert invoke_function("webhook", event)["statusCode"] == 200
    puts.reset()
    # When reconciliation runs
    report = runner.run()
    # Then the webhook's version stays and no write was even attempted
    item = items()["user_0000"]
    assert item["firstName"] == "FromWebhook" and item["updatedAt"] == T0 + 5_000
    assert item["source"] == "webhook"
    assert puts.count == 0 and report.skipped == 1 and report.updated == 0


def test_a_webhook_landing_during_the_run_wins_over_the_snapshot(
    runner: Runner, clerk: FakeClerk, puts: PutCounter
) -> None:
    # Given a newer write lands after the run read the table but before it writes (a race)
    clerk.add_users(3)
    racer = dynamodb_client()

    def newer_write_first(params: dict[str, Any], **kwargs: Any) -> None:
        if params["Item"]["userId"]["S"] == "user_0001":
            racer.meta.events.unregister("before-parameter-build.dynamodb.PutItem", newer_write_first)
            newer = UserRecord(
                user_id="user_0001", first_name="Racer", updated_at=T0 + 9_000, source=SyncSource.WEBHOOK
            )
            repository(runner.table).save(newer)

    racer.meta.events.register("before-parameter-build.dynamodb.PutItem", newer_write_first)
    # When reconciliation writes its older snapshot of that user
    report = runner.run()
    # Then the conditional put loses: the newer write stays
    assert items()["user_0001"]["firstName"] == "Racer"
    assert report.created == 2 and report.skipped == 1


def test_tombstones_are_never_resurrected(runner: Runner, clerk: FakeClerk, puts: PutCounter) -> None:
    # Given a user deleted by webhook (tombstone), still listed by Clerk with a later updated_at
    clerk.add_users(2)
    clerk.user("user_0000")["updated_at"] = T0 + 50_000
    repository(runner.table).save(UserRecord.tombstone("user_0000", deleted_at=T0 + 1_000))
    puts.reset()
    # And a tombstone that lands during the run (after the table was read)
    racer = dynamodb_client()

    def delete_first(params: dict[str, Any], **kwargs: Any) -> None:
        if params["Item"]["userId"]["S"] == "user_0001" and "deletedAt" not in params["Item"]:
            racer.meta.events.unregister("before-parameter-build.dynamodb.PutItem", delete_first)
            repository(runner.table).save(UserRecord.tombstone("user_0001", deleted_at=T0 + 2_000))

    racer.meta.events.register("before-parameter-build.dynamodb.PutItem", delete_first)
    # When reconciliation runs
    report = runner.run()
    # Then both stay tombstones, with no profile
    stored = items()
    for user_id in ("user_0000", "user_0001"):
        assert "deletedAt" in stored[user_id] and "email" not in stored[user_id]
    assert report.skipped == 2 and report.created == 0
    assert "user_0000" not in puts.user_ids  # known tombstone: no write attempted at all


def test_dry_run_writes_nothing_but_reports_the_same_counts(
    runner: Runner, clerk: FakeClerk, puts: PutCounter, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given 250 Clerk users, 10 of them already stored, one of those older, and one stored user gone
    clerk.add_users(250)
    for user in clerk.users[:10]:
        repository(runner.table).save(
            UserRecord(user_id=user["id"], updated_at=user["updated_at"] - 1, source=SyncSource.WEBHOOK)
        )
    repository(runner.table).save(
        UserRecord(user_id="user_gone", updated_at=T0, source=SyncSource.WEBHOOK, email="gone@example.com")
    )
    puts.reset()
    before = items()
    # When a dry run with --prune runs
    report = runner.run(dry_run=True, prune=True)
    # Then nothing is written, and the counts say what a real run would do
    assert puts.count == 0 and items() == before
    assert (report.created, report.updated, report.unchanged, report.pruned) == (240, 10, 0, 1)
    assert report.pruned_ids == ["user_gone"]
    assert metric_counts(flushed_metrics(capsys), "reconcile") == {}
    # And the real run matches it
    real = runner.run(prune=True)
    assert (real.created, real.updated, real.unchanged, real.pruned) == (240, 10, 0, 1)


def test_prune_only_with_the_flag_and_only_users_clerk_does_not_have(
    runner: Runner, clerk: FakeClerk, puts: PutCounter
) -> None:
    # Given Clerk has 5 users (one the listing misses), the table also has a user Clerk deleted
    clerk.add_users(4)
    (missed,) = [clerk_user("user_missed", created_at=T0, updated_at=T0 + 1)]
    clerk.unlisted.append(missed)
    for user_id in ("user_gone", "user_missed"):
        repository(runner.table).save(
            UserRecord(
                user_id=user_id, email=f"{user_id}@example.com", updated_at=T0, source=SyncSource.WEBHOOK
            )
        )
    # When reconciliation runs without --prune, then nothing is pruned
    report = runner.run()
    assert report.pruned == 0
    assert "deletedAt" not in items()["user_gone"]
    # When it runs with --prune
    report = runner.run(prune=True, now_ms=lambda: T0 + 99_000)
    # Then only the user Clerk does not have is tombstoned (profile dropped), confirmed by GET first
    stored = items()
    assert report.pruned == 1 and report.pruned_ids == ["user_gone"]
    assert stored["user_gone"]["deletedAt"] == T0 + 99_000 and "email" not in stored["user_gone"]
    assert stored["user_gone"]["source"] == "reconcile"
    assert "deletedAt" not in stored["user_missed"] and stored["user_missed"]["updatedAt"] == T0 + 1
    assert ("/v1/users/user_gone", {}) in clerk.requests
    # And pruning again is a no-op
    assert runner.run(prune=True).pruned == 0


def test_prune_refuses_to_tombstone_most_of_the_table(runner: Runner, clerk: FakeClerk) -> None:
    # Given a table of 30 users and a Clerk instance that knows none of them (wrong key's instance)
    clerk.add_users(1)
    for index in range(30):
        repository(runner.table).save(
            UserRecord(user_id=f"user_other{index}", updated_at=T0, source=SyncSource.WEBHOOK)
        )
    # When a prune runs, then it refuses and tombstones nobody
    with pytest.raises(ReconcileError, match="refusing to prune 30 of 30"):
        runner.run(prune=True)
    assert not any("deletedAt" in item for item in items().values())


# ---------------------------------------------------------------- rate limits and failures


def test_429_with_retry_after_is_honoured_then_the_run_completes(runner: Runner, clerk: FakeClerk) -> None:
    # Given Clerk answers the first request with 429 Retry-After: 7
    clerk.add_users(120)
    clerk.rate_limit_once = "7"
    # When reconciliation runs
    report = runner.run()
    # Then it waited what Clerk asked, once, and finished
    assert runner.sleeps == [7.0]
    assert report.created == 120 and len(items()) == 120


def test_retry_after_is_capped(runner: Runner, clerk: FakeClerk) -> None:
    clerk.add_users(3)
    clerk.rate_limit_once = "3600"
    report = runner.client(max_retry_after=30.0)
    assert len(list(report.pages())) == 1
    assert runner.sleeps == [30.0]


def test_persistent_5xx_fails_clearly_after_bounded_retries_keeping_earlier_pages(
    runner: Runner, clerk: FakeClerk, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given Clerk fails every request from offset 200 with 503
    clerk.add_users(250)
    clerk.fail_from_offset = 200
    # When reconciliation runs
    with pytest.raises(ReconcileError) as raised:
        runner.run(max_retries=3)
    # Then the error names the request and the status, after 3 bounded retries with backoff
    message = str(raised.value)
    assert "GET /v1/users?offset=200" in message and "HTTP 503" in message and "4 attempts" in message
    assert len(runner.sleeps) == 3 and runner.sleeps == sorted(runner.sleeps)
    # And the two pages read before the failure were applied
    assert len(items()) == 200
    assert raised.value.report is not None and raised.value.report.created == 200
    assert metric_counts(flushed_metrics(capsys), "reconcile")["ReconcileFailed"] == 1


def test_a_wrong_secret_key_fails_at_once_without_retrying(runner: Runner, clerk: FakeClerk) -> None:
    clerk.add_users(3)
    clerk.secret_key = "sk_test_someone_else"
    with pytest.raises(ReconcileError, match="HTTP 401") as raised:
        runner.run()
    assert runner.sleeps == [] and len(clerk.list_requests()) == 1
    assert SECRET_KEY not in str(raised.value)
    assert items() == {}


def test_the_run_stops_cleanly_before_the_lambda_timeout(
    runner: Runner, clerk: FakeClerk, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given 250 users and a Lambda whose time runs short after the first page
    clerk.add_users(250)
    left = iter([30.0])  # asked before each page after the first
    # When reconciliation runs, then it stops with a clear error after the first page, not killed mid-way
    with pytest.raises(ReconcileError, match="stopped after 100 users") as raised:
        runner.run(remaining_seconds=lambda: next(left))
    assert raised.value.report is not None and raised.value.report.created == 100
    assert len(clerk.list_requests()) == 2 and len(items()) == 100
    assert metric_counts(flushed_metrics(capsys), "reconcile")["ReconcileFailed"] == 1
    # And the next run finishes the job, writing only the users it did not reach
    report = runner.run()
    assert (report.created, report.unchanged) == (150, 100)


# ---------------------------------------------------------------- the Lambda and the CLI


def point_reconcile_at(fake: FakeClerk, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reconcile function's settings: `fake` as Clerk's Backend API, with the key it accepts."""
    monkeypatch.setenv("CLERK_API_URL", fake.url)
    monkeypatch.setenv("CLERK_SECRET_KEY", SECRET_KEY)


@pytest.fixture
def reconcile_env(clerk: FakeClerk, users_table: str, monkeypatch: pytest.MonkeyPatch) -> FakeClerk:
    point_reconcile_at(clerk, monkeypatch)
    return clerk


def test_handler_returns_the_counts_and_emits_metrics(
    reconcile_env: FakeClerk, invoke_function: InvokeFunction, capsys: pytest.CaptureFixture[str]
) -> None:
    reconcile_env.add_users(3)
    logs = LogCapture()
    try:
        result = invoke_function("reconcile", {"source": "aws.events"})
    finally:
        logs.close()
    assert result["created"] == 3 and result["pruned"] == 0 and result["dry_run"] is False
    assert len(items()) == 3
    counts = metric_counts(capsys.readouterr().out, "reconcile")
    assert counts["ReconcileCreated"] == 3 and counts["SyncAttempts"] == 3
    (finished,) = [record for record in logs.records if record["message"] == "reconcile finished"]
    assert finished["reconcile"]["created"] == 3
    assert SECRET_KEY not in logs.text


def test_handler_reads_the_key_from_secrets_manager_and_fails_loudly(
    reconcile_env: FakeClerk,
    invoke_function: InvokeFunction,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given the key is in Secrets Manager, and a second secret holding a key Clerk rejects
    reconcile_env.add_users(2)
    secrets = boto3.client("secretsmanager")
    good = secrets.create_secret(Name="clerk-reconcile-good", SecretString=SECRET_KEY)["ARN"]
    bad = secrets.create_secret(Name="clerk-reconcile-bad", SecretString="sk_test_revoked")["ARN"]
    monkeypatch.delenv("CLERK_SECRET_KEY")
    monkeypatch.setenv("CLERK_SECRET_KEY_ARN", good)
    # When the function runs with the good one, then it succeeds
    assert invoke_function("reconcile", {})["created"] == 2
    capsys.readouterr()
    # When it runs with the rejected one, then the invocation fails and the failure is counted
    monkeypatch.setenv("CLERK_SECRET_KEY_ARN", bad)
    with pytest.raises(ReconcileError, match="HTTP 401"):
        invoke_function("reconcile", {})
    assert metric_counts(capsys.readouterr().out, "reconcile")["ReconcileFailed"] == 1


def test_cli_prints_counts_and_exits_non_zero_on_failure(
    reconcile_env: FakeClerk, users_table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    reconcile_env.add_users(4)
    # A dry run writes nothing
    assert reconcile_cmd.main(["--table", users_table, "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["created"] == 4 and items() == {}
    # A real run stores the users
    assert reconcile_cmd.main(["--table", users_table]) == 0
    assert json.loads(capsys.readouterr().out)["created"] == 4 and len(items()) == 4
    # Persistent 5xx: non-zero exit and a clear error
    reconcile_env.fail_from_offset = 0
    assert reconcile_cmd.main(["--table", users_table, "--max-retries", "0"]) == 1
    captured = capsys.readouterr()
    assert "HTTP 503" in captured.err and SECRET_KEY not in captured.err + captured.out
