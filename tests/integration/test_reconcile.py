"""Reconciliation of users against a loopback Clerk (CONTRACT §12): backfill by cursor, compare-first
without a snapshot, webhook writes and tombstones win, dry run, prune with confirmation and its guard,
rate limits and failures, the durable handler and the CLI. Writes are counted with botocore hooks."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_durable_execution_sdk_python.lambda_service import InvocationStatus
from aws_durable_execution_sdk_python_testing.runner import DurableFunctionTestRunner

from tests.helpers import InvokeFunction, LogCapture, load_function, metric_counts
from tests.reconcile_support import (
    SECRET_KEY,
    T0,
    PutCounter,
    Runner,
    add_users,
    flushed_metrics,
    loopback,
    table_items,
)
from usersync.runtime.aws import dynamodb_client
from usersync.runtime.budget import TimeBudget
from usersync.runtime.metrics import SyncSource
from usersync.store.records import UserRecord
from usersync.store.users import UserRepository
from usersync.sync.reconcile import ReconcileError
from usersync_dev import reconcile_cmd
from usersync_dev.apigw import http_api_event
from usersync_dev.clerk import clerk_event, sign_delivery
from usersync_dev.loopback_clerk import LoopbackClerk

# `make test` only: a loopback Clerk with paging, retries and their real (short) backoff waits.
pytestmark = pytest.mark.slow


@pytest.fixture
def clerk() -> Iterator[LoopbackClerk]:
    with loopback() as fake:
        yield fake


@pytest.fixture
def puts(users_table: str) -> Iterator[PutCounter]:  # noqa: ARG001 - fixture wanted for its side effect
    counter = PutCounter()
    yield counter
    counter.close()


@pytest.fixture
def runner(clerk: LoopbackClerk, users_table: str) -> Runner:
    return Runner(clerk, users_table)


def items() -> dict[str, dict[str, Any]]:
    return table_items("usersync-test-users")


def repository(table: str) -> UserRepository:
    return UserRepository(dynamodb_client(), table)


def list_pages(clerk: LoopbackClerk) -> list[str]:
    return [page for page in clerk.pages if page.startswith("/v1/users?")]


# ---------------------------------------------------------------- backfill and repair


def test_backfill_creates_every_clerk_user_paging_by_cursor(
    runner: Runner, clerk: LoopbackClerk, puts: PutCounter, capsys: pytest.CaptureFixture[str]
) -> None:
    add_users(clerk, 250)
    counts = runner.counts()
    stored = items()
    assert len(stored) == 250
    assert puts.count == 250
    assert (counts.seen, counts.created, counts.updated, counts.unchanged) == (250, 250, 0, 0)
    # Oldest first, each page after the last user of the one before, each read once.
    assert list_pages(clerk) == [
        "/v1/users?offset=0",
        "/v1/users?starting_after=user_0099",
        "/v1/users?starting_after=user_0199",
    ]
    assert clerk.listed_twice() == {}
    item = stored["user_0042"]
    assert item["email"] == "user42@example.com"
    assert item["firstName"] == "First42"
    assert item["updatedAt"] == T0 + 42
    assert item["source"] == "reconcile"
    counted = metric_counts(flushed_metrics(capsys), "reconcile")
    assert counted["SyncAttempts"] == 250
    assert counted["ReconcileCreated"] == 250
    assert counted["SyncFailures"] == 0


def test_rerun_writes_nothing_and_one_change_costs_one_write(
    runner: Runner, clerk: LoopbackClerk, puts: PutCounter
) -> None:
    add_users(clerk, 250)
    runner.run()
    puts.reset()
    counts = runner.counts()
    assert puts.count == 0
    assert (counts.created, counts.updated, counts.unchanged) == (0, 0, 250)
    clerk.users["user_0007"].update(first_name="Changed", updated_at=T0 + 10_000)
    counts = runner.counts()
    assert puts.ids == ["user_0007"]
    assert (counts.created, counts.updated, counts.unchanged) == (0, 1, 249)
    assert items()["user_0007"]["firstName"] == "Changed"


def test_a_newer_webhook_write_is_never_overwritten_by_an_older_clerk_listing(
    runner: Runner,
    clerk: LoopbackClerk,
    puts: PutCounter,
    webhook_secret: str,
    invoke_function: InvokeFunction,
) -> None:
    (listed,) = add_users(clerk, 1)
    newer = dict(listed, first_name="FromWebhook", updated_at=T0 + 5_000)
    delivery = sign_delivery(webhook_secret, clerk_event("user.updated", newer))
    event = http_api_event("POST", "/webhooks/clerk", body=delivery.body, headers=delivery.headers)
    assert invoke_function("webhook", event)["statusCode"] == 200
    puts.reset()
    counts = runner.counts()
    item = items()["user_0000"]
    assert item["firstName"] == "FromWebhook"
    assert item["updatedAt"] == T0 + 5_000
    assert item["source"] == "webhook"
    assert puts.count == 0
    assert counts.skipped == 1
    assert counts.updated == 0


def test_rows_holding_no_clerk_version_token_first_is_filled_and_legacy_ordered_by_updated_at(
    runner: Runner, clerk: LoopbackClerk, puts: PutCounter
) -> None:
    """Rows with no `clerkUpdatedAt`: one the authorizer wrote from a token (its `updatedAt` is the token's
    iat, no Clerk version) is never skipped, and Clerk's record fills what the token lacked; one a webhook
    wrote before `clerkUpdatedAt` existed is ordered by its `updatedAt`: that version is not written again."""
    add_users(clerk, 2)
    token_row = UserRecord(
        user_id="user_0000", email="user0@example.com", updated_at=T0 + 60_000, source=SyncSource.AUTHORIZER
    )
    repository(runner.users_table).save(token_row)
    legacy_row = {
        "userId": "user_0001",
        "email": "user1@example.com",
        "firstName": "First1",
        "source": "webhook",
    }
    dynamodb_client().put_item(
        TableName=runner.users_table,
        Item={**{name: {"S": value} for name, value in legacy_row.items()}, "updatedAt": {"N": str(T0 + 1)}},
    )
    puts.reset()
    counts = runner.counts()
    assert (counts.seen, counts.created, counts.unchanged, counts.skipped) == (2, 0, 1, 0)
    assert "user_0001" not in puts.ids
    filled = items()["user_0000"]
    assert (filled["email"], filled["firstName"], filled["createdAt"]) == ("user0@example.com", "First0", T0)


def test_a_webhook_landing_between_the_read_and_the_write_wins(runner: Runner, clerk: LoopbackClerk) -> None:
    add_users(clerk, 3)
    racer = dynamodb_client()

    def newer_write_first(params: dict[str, Any], **_kwargs: Any) -> None:
        if params["Item"]["userId"]["S"] == "user_0001":
            racer.meta.events.unregister("before-parameter-build.dynamodb.PutItem", newer_write_first)
            newer = UserRecord(
                user_id="user_0001", first_name="Racer", updated_at=T0 + 9_000, source=SyncSource.WEBHOOK
            )
            repository(runner.users_table).save(newer)

    racer.meta.events.register("before-parameter-build.dynamodb.PutItem", newer_write_first)
    counts = runner.counts()
    assert items()["user_0001"]["firstName"] == "Racer"
    assert counts.created == 2
    assert counts.skipped == 1


def test_tombstones_are_never_resurrected(runner: Runner, clerk: LoopbackClerk, puts: PutCounter) -> None:
    add_users(clerk, 2)
    clerk.users["user_0000"]["updated_at"] = T0 + 50_000
    repository(runner.users_table).save(UserRecord.tombstone("user_0000", deleted_at=T0 + 1_000))
    puts.reset()
    racer = dynamodb_client()

    def delete_first(params: dict[str, Any], **_kwargs: Any) -> None:
        if params["Item"]["userId"]["S"] == "user_0001" and "deletedAt" not in params["Item"]:
            racer.meta.events.unregister("before-parameter-build.dynamodb.PutItem", delete_first)
            repository(runner.users_table).save(UserRecord.tombstone("user_0001", deleted_at=T0 + 2_000))

    racer.meta.events.register("before-parameter-build.dynamodb.PutItem", delete_first)
    counts = runner.counts()
    stored = items()
    for user_id in ("user_0000", "user_0001"):
        assert "deletedAt" in stored[user_id]
        assert "email" not in stored[user_id]
    assert counts.skipped == 2
    assert counts.created == 0
    assert "user_0000" not in puts.ids  # a known tombstone: no write attempted at all


def test_dry_run_writes_nothing_but_reports_the_same_counts(
    runner: Runner, clerk: LoopbackClerk, puts: PutCounter, capsys: pytest.CaptureFixture[str]
) -> None:
    users = add_users(clerk, 250)
    for user in users[:10]:
        repository(runner.users_table).save(
            UserRecord(user_id=user["id"], updated_at=user["updated_at"] - 1, source=SyncSource.WEBHOOK)
        )
    repository(runner.users_table).save(
        UserRecord(user_id="user_gone", updated_at=T0, source=SyncSource.WEBHOOK, email="gone@example.com")
    )
    puts.reset()
    before = items()
    counts = runner.counts(dry_run=True, prune=True)
    assert puts.count == 0
    assert items() == before
    assert (counts.created, counts.updated, counts.unchanged, counts.pruned) == (240, 10, 0, 1)
    assert metric_counts(flushed_metrics(capsys), "reconcile") == {}
    real = runner.counts(prune=True)
    assert (real.created, real.updated, real.unchanged, real.pruned) == (240, 10, 0, 1)


def test_prune_only_with_the_flag_and_only_users_clerk_does_not_have(
    runner: Runner, clerk: LoopbackClerk
) -> None:
    add_users(clerk, 4)
    repository(runner.users_table).save(
        UserRecord(user_id="user_gone", email="gone@example.com", updated_at=T0, source=SyncSource.WEBHOOK)
    )
    assert runner.counts().pruned == 0
    assert "deletedAt" not in items()["user_gone"]
    counts = runner.counts(prune=True, now_ms=lambda: T0 + 99_000)
    stored = items()
    assert counts.pruned == 1
    assert counts.checked == 5  # every live row this pass did not write
    assert stored["user_gone"]["deletedAt"] == T0 + 99_000
    assert "email" not in stored["user_gone"]
    assert stored["user_gone"]["source"] == "reconcile"
    # Asked in a batch by id, then confirmed one by one before the tombstone.
    assert [page for page in clerk.pages if "user_gone" in page.split("user_id=")[-1]] != []
    assert any(path == "/v1/users/user_gone" for _, path in clerk.requests)
    assert runner.counts(prune=True).pruned == 0  # pruning again is a no-op


def test_prune_asks_clerk_in_batches_of_a_hundred_and_keeps_users_clerk_has(
    runner: Runner, clerk: LoopbackClerk
) -> None:
    add_users(clerk, 250)
    runner.run()  # written before the next pass began (syncedAt), so its prune checks every user
    counts = runner.counts(prune=True)
    assert (counts.checked, counts.pruned, counts.unchanged) == (250, 0, 250)
    batches = [page for page in clerk.pages if "user_id=" in page]
    assert len(batches) == 3
    assert all(page.count(",") < 100 for page in batches)


def test_prune_refuses_to_tombstone_most_of_the_table(runner: Runner, clerk: LoopbackClerk) -> None:
    add_users(clerk, 1)
    for index in range(30):
        repository(runner.users_table).save(
            UserRecord(user_id=f"user_other{index}", updated_at=T0, source=SyncSource.WEBHOOK)
        )
    with pytest.raises(ReconcileError, match="refusing to prune 30 of 30"):
        runner.run(prune=True)
    assert not any("deletedAt" in item for item in items().values())


# ---------------------------------------------------------------- rate limits, failures, time


def test_429_with_retry_after_is_honoured_then_the_pass_completes(
    runner: Runner, clerk: LoopbackClerk
) -> None:
    add_users(clerk, 120)
    clerk.too_many_requests, clerk.retry_after = 1, "7"
    assert runner.counts().created == 120
    assert len(items()) == 120
    assert runner.sleeps == [7.0]


def test_persistent_5xx_fails_clearly_after_bounded_retries_keeping_earlier_pages(
    runner: Runner, clerk: LoopbackClerk, capsys: pytest.CaptureFixture[str]
) -> None:
    add_users(clerk, 250)

    def fail_third_page(_path: str, query: dict[str, list[str]]) -> None:
        if query.get("starting_after") == ["user_0199"]:
            clerk.failing_prefixes = ("/v1/users",)

    clerk.on_request = fail_third_page
    with pytest.raises(ReconcileError) as raised:
        runner.run(max_retries=3)
    message = str(raised.value)
    assert "GET /v1/users" in message
    assert "HTTP 503" in message
    assert "4 attempts" in message
    assert len(runner.sleeps) == 3
    assert runner.sleeps == sorted(runner.sleeps)
    assert len(items()) == 200
    state = raised.value.state
    assert state is not None
    assert state.counts["users"].created == 200
    assert state.cursor == "user_0199"
    assert metric_counts(flushed_metrics(capsys), "reconcile")["ReconcileFailed"] == 1


def test_a_wrong_secret_key_fails_at_once_without_retrying(runner: Runner, clerk: LoopbackClerk) -> None:
    add_users(clerk, 3)
    clerk.secret_key = "sk_test_someone_else"
    with pytest.raises(ReconcileError, match="HTTP 401") as raised:
        runner.run()
    assert runner.sleeps == []
    assert len(clerk.requests) == 1
    assert SECRET_KEY not in str(raised.value)
    assert items() == {}


@dataclass(frozen=True)
class PagesLeft(TimeBudget):
    """An invocation with time for `attempts[0]` more Clerk requests (Lambda's clock, in requests)."""

    attempts: list[int] = field(default_factory=lambda: [1])

    def allows(self, _seconds: float) -> bool:
        self.attempts[0] -= 1
        return self.attempts[0] >= 0


def test_a_pass_out_of_time_stops_cleanly_and_goes_on_from_its_state(
    runner: Runner, clerk: LoopbackClerk, capsys: pytest.CaptureFixture[str]
) -> None:
    add_users(clerk, 250)
    with pytest.raises(ReconcileError, match="out of time") as raised:
        runner.run(budget=PagesLeft(deadline=float("inf"), attempts=[1]))
    state = raised.value.state
    assert state is not None
    assert state.counts["users"].created == 100
    assert len(items()) == 100
    assert metric_counts(flushed_metrics(capsys), "reconcile")["ReconcileFailed"] == 1
    # From its state the pass lists only the pages it did not reach.
    final = runner.run(state=state)
    assert final.counts["users"].created == 250
    assert len(items()) == 250
    assert clerk.listed_twice() == {}


# ---------------------------------------------------------------- reading the next page ahead


def _first_write_waits_for(event: threading.Event, seen: list[bool]) -> Callable[[], None]:
    """Make the pass's first PutItem wait (up to 2 s) for `event`, recording whether it came: a botocore
    hook on the layer's DynamoDB client (AWS's side of the boundary). Returns the unhook."""
    client = dynamodb_client()
    first = threading.Lock()  # the writes run 8 at a time: only the first one waits

    def hold(**_kwargs: Any) -> None:
        if first.acquire(blocking=False):
            seen.append(event.wait(timeout=2))

    client.meta.events.register("before-parameter-build.dynamodb.PutItem", hold)
    return lambda: client.meta.events.unregister("before-parameter-build.dynamodb.PutItem", hold)


def _watch_second_page(clerk: LoopbackClerk) -> threading.Event:
    asked = threading.Event()
    clerk.on_request = lambda _path, query: (
        asked.set() if query.get("starting_after") == ["user_0099"] else None
    )
    return asked


@pytest.mark.parametrize("read_ahead", [True, False])
def test_the_next_page_is_read_while_this_one_is_written_and_every_page_once(
    runner: Runner, clerk: LoopbackClerk, read_ahead: bool
) -> None:
    add_users(clerk, 250)  # pages of 100: 100, 100, 50
    seen: list[bool] = []
    release = _first_write_waits_for(_watch_second_page(clerk), seen)
    try:
        final = runner.run(read_ahead=lambda: read_ahead)
    finally:
        release()
    # Read ahead, the first page's first write finds the second page already asked for: they overlap.
    # Without, the second page is asked only when the first page's step is over.
    assert seen == [read_ahead]
    assert final.counts["users"].created == 250
    assert len(items()) == 250
    assert len(list_pages(clerk)) == 3
    assert clerk.listed_twice() == {}
    assert final.requests == 3  # a page read ahead is counted once, by the step that takes it


def test_a_read_ahead_that_fails_fails_the_step_of_its_page_which_goes_on_after_a_retry(
    runner: Runner, clerk: LoopbackClerk
) -> None:
    """Clerk refusing the second page while the first is written: the first step's result stands, the
    second step fails with the state after the first page, and the pass goes on from it."""
    add_users(clerk, 250)

    def fail_second_page(_path: str, query: dict[str, list[str]]) -> None:
        if query.get("starting_after") == ["user_0099"]:
            clerk.failing_prefixes = ("/v1/users",)

    clerk.on_request = fail_second_page
    with pytest.raises(ReconcileError, match="HTTP 503") as raised:
        runner.run(max_retries=0)
    state = raised.value.state
    assert state is not None
    assert state.cursor == "user_0099"
    assert state.counts["users"].created == 100
    clerk.failing_prefixes, clerk.on_request = (), None
    final = runner.run(state=state)
    assert final.counts["users"].created == 250
    assert len(items()) == 250


# ---------------------------------------------------------------- the Lambda and the CLI


@pytest.fixture
def reconcile_env(
    clerk: LoopbackClerk,
    users_table: str,  # noqa: ARG001 - fixture wanted for its side effect
    monkeypatch: pytest.MonkeyPatch,
) -> LoopbackClerk:
    monkeypatch.setenv("CLERK_API_URL", clerk.url)
    monkeypatch.setenv("CLERK_SECRET_KEY", SECRET_KEY)
    monkeypatch.delenv("ORGANIZATIONS_TABLE_NAME", raising=False)
    return clerk


def run_function(event: dict[str, Any] | None = None) -> Any:
    with DurableFunctionTestRunner(handler=load_function("reconcile").lambda_handler) as durable:
        return durable.run(input=json.dumps(event or {}), execution_timeout=120)


def test_handler_returns_the_counts_and_emits_metrics(
    reconcile_env: LoopbackClerk, capsys: pytest.CaptureFixture[str]
) -> None:
    add_users(reconcile_env, 3)
    logs = LogCapture()
    try:
        result = run_function({"source": "aws.events"})
    finally:
        logs.close()
    assert result.status is InvocationStatus.SUCCEEDED, result.error
    answer = json.loads(result.result)
    assert answer["users"]["users"]["created"] == 3
    assert answer["users"]["dryRun"] is False
    assert len(items()) == 3
    counts = metric_counts(capsys.readouterr().out, "reconcile")
    assert counts["ReconcileCreated"] == 3
    assert counts["SyncAttempts"] == 3
    (finished,) = [record for record in logs.records if record["message"] == "reconcile finished"]
    assert finished["reconcile"]["users"]["created"] == 3
    assert any(record["message"] == "reconcile checkpoint" for record in logs.records)
    assert SECRET_KEY not in logs.text


def test_handler_dry_run_writes_nothing(reconcile_env: LoopbackClerk) -> None:
    add_users(reconcile_env, 3)
    result = run_function({"dryRun": True})
    assert json.loads(result.result)["users"]["users"]["created"] == 3
    assert items() == {}


def test_handler_reads_the_key_from_secrets_manager_and_fails_loudly(
    reconcile_env: LoopbackClerk, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    add_users(reconcile_env, 2)
    secrets = boto3.client("secretsmanager")
    good = secrets.create_secret(Name="clerk-reconcile-good", SecretString=SECRET_KEY)["ARN"]
    bad = secrets.create_secret(Name="clerk-reconcile-bad", SecretString="sk_test_revoked")["ARN"]
    monkeypatch.delenv("CLERK_SECRET_KEY")
    monkeypatch.setenv("CLERK_SECRET_KEY_ARN", good)
    result = run_function()
    assert json.loads(result.result)["users"]["users"]["created"] == 2
    capsys.readouterr()
    monkeypatch.setenv("CLERK_SECRET_KEY_ARN", bad)
    failed = run_function()
    assert failed.status is InvocationStatus.FAILED
    assert "HTTP 401" in str(failed.error)
    assert metric_counts(capsys.readouterr().out, "reconcile")["ReconcileFailed"] == 1
    # A refused key is not retried: one request per pass.
    assert len([path for _, path in reconcile_env.requests if path == "/v1/users"]) == 2


def test_cli_prints_counts_resumes_and_exits_non_zero_on_failure(
    reconcile_env: LoopbackClerk, users_table: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    add_users(reconcile_env, 250)
    checkpoint = tmp_path / "checkpoint.json"
    base = ["--table", users_table, "--page-size", "100", "--checkpoint", str(checkpoint)]
    assert reconcile_cmd.main([*base, "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["users"]["users"]["created"] == 250
    assert items() == {}
    # A pass that fails on its third page keeps its progress...
    reconcile_env.on_request = lambda _path, query: (
        setattr(reconcile_env, "failing_prefixes", ("/v1/users",))
        if query.get("starting_after") == ["user_0199"]
        else None
    )
    assert reconcile_cmd.main([*base, "--max-retries", "0"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["users"]["users"]["created"] == 200
    assert "HTTP 503" in captured.err
    assert checkpoint.exists()
    # ...and the same command goes on from it, listing only the page it did not finish.
    reconcile_env.failing_prefixes, reconcile_env.on_request = (), None
    assert reconcile_cmd.main(base) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["users"]["users"]["created"] == 250  # the pass's counts, both runs
    assert "resuming users after 2 pages" in captured.err
    assert len(items()) == 250
    assert not checkpoint.exists()
    # The first two pages were read by the dry run and the real pass, not again by the resumed one.
    assert reconcile_env.pages["/v1/users?offset=0"] == 2
    assert reconcile_env.pages["/v1/users?starting_after=user_0099"] == 2
    assert "#" in captured.err  # the progress bar
