"""The reconcile function as a durable execution, in the SDK's local runner (CONTRACT §12).

Invocations are made to end after a few pages each (the budget says so, as Lambda's remaining time
would), so the pass only completes if each new invocation continues from the checkpoints: the loopback
Clerk counts every page it serves, and none may be served twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
from aws_durable_execution_sdk_python.lambda_service import InvocationStatus
from aws_durable_execution_sdk_python_testing.executor import Executor
from aws_durable_execution_sdk_python_testing.runner import DurableFunctionTestRunner

from tests.helpers import load_function, metric_counts
from tests.organizations_support import get_organization, members_of_organization
from usersync.runtime.aws import dynamodb_client
from usersync.runtime.settings import ReconcileSettings
from usersync.store.users import UserRepository
from usersync_dev.clerk import clerk_membership, clerk_organization, clerk_user
from usersync_dev.loopback_clerk import LoopbackClerk

# `make test` only, like test_reconcile.py: a loopback Clerk with thousands of users.
pytestmark = pytest.mark.slow

T0 = 1_700_000_000_000
USERS = 1_500  # three full pages of 500: enough pages to need several invocations
ORGANIZATIONS = 200
PAGES_PER_INVOCATION = 2


class PagesBudget:
    """An invocation with room for `pages` steps: what Lambda's remaining time says, in pages."""

    created = 0

    def __init__(self, pages: int) -> None:
        self.pages = pages
        PagesBudget.created += 1

    def allows(self, _seconds: float) -> bool:
        self.pages -= 1
        return self.pages >= 0

    def remaining(self) -> float:
        return 900.0 if self.pages > 0 else 0.0


def populate(clerk: LoopbackClerk) -> None:
    for index in range(USERS):
        clerk.add_user(
            clerk_user(
                f"user_{index:05d}",
                email=f"u{index}@example.com",
                created_at=T0 + index,
                updated_at=T0 + index,
            )
        )
    for index in range(ORGANIZATIONS):
        organization = clerk_organization(
            f"org_{index:04d}", name=f"Org {index}", slug=f"org-{index}", created_at=T0 + index
        )
        members = [
            clerk_membership(
                f"orgmem_{index:04d}_{member}",
                organization=organization,
                user_id=f"user_{(index * 7 + member) % USERS:05d}",
                role="org:admin" if member == 0 else "org:member",
                created_at=T0 + member,
            )
            for member in range(2)
        ]
        clerk.add_organization(organization, members)


@pytest.fixture(autouse=True)
def no_emulated_invocation_retry_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """The local runner skips durable timers (a step's retry backoff completes at once), so a retry timer
    can fire while the other branch's step still runs; the invocation then ends PENDING with nothing
    pending, which the runner refuses and re-invokes after its emulated 5 s backoff. That wait is the
    runner's, not ours (the service would still hold the 30 s retry timer): it is set to none."""
    monkeypatch.setattr(Executor, "RETRY_BACKOFF_SECONDS", 0)


@pytest.fixture
def clerk(
    organizations_table: str,  # noqa: ARG001 - fixture wanted for its side effect
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[LoopbackClerk]:
    fake = LoopbackClerk()
    populate(fake)
    with fake.serve():
        monkeypatch.setenv("CLERK_SECRET_KEY", fake.secret_key)
        monkeypatch.delenv("CLERK_SECRET_KEY_ARN", raising=False)
        monkeypatch.setenv("CLERK_API_URL", fake.url)
        monkeypatch.setenv("RECONCILE_MAX_REQUESTS_PER_10S", "1000")
        yield fake


def run_execution(
    module: ModuleType, event: dict[str, Any] | None = None, sleep: Callable[[float], None] = time.sleep
) -> Any:
    PagesBudget.created = 0
    handler = module.make_handler(
        ReconcileSettings.from_env(), budget_of=lambda _: PagesBudget(PAGES_PER_INVOCATION), sleep=sleep
    )
    with DurableFunctionTestRunner(handler=handler) as runner:
        return runner.run(input=json.dumps(event or {}), execution_timeout=600)


def count_items(table: str) -> int:
    pages = dynamodb_client().get_paginator("scan").paginate(TableName=table, Select="COUNT")
    return sum(page["Count"] for page in pages)


def assert_every_membership_right(organizations_table: str) -> None:
    client = dynamodb_client()
    for index in (0, 57, ORGANIZATIONS - 1):
        profile = get_organization(client, organizations_table, f"org_{index:04d}")
        assert profile is not None
        assert profile.name == f"Org {index}"
        members = sorted(
            members_of_organization(client, organizations_table, f"org_{index:04d}"),
            key=lambda m: m.membership_id,
        )
        assert [(m.membership_id, m.user_id, m.role) for m in members] == [
            (f"orgmem_{index:04d}_0", f"user_{(index * 7) % USERS:05d}", "org:admin"),
            (f"orgmem_{index:04d}_1", f"user_{(index * 7 + 1) % USERS:05d}", "org:member"),
        ]
    count = count_items(organizations_table)
    assert count == ORGANIZATIONS * 3  # a profile and two memberships each


def test_a_pass_over_many_invocations_completes_without_listing_a_page_twice(
    clerk: LoopbackClerk, users_table: str, organizations_table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_execution(load_function("reconcile"))

    assert result.status is InvocationStatus.SUCCEEDED, result.error
    assert clerk.listed_twice() == {}
    user_pages = [page for page in clerk.pages if page.startswith("/v1/users")]
    assert len(user_pages) == USERS // 500 + 1  # three full pages and the empty one that ends the list
    # Four user steps and three organization steps (100 organizations and their memberships each)
    # at two steps per invocation: the pass needed several invocations, each going on from the last.
    assert PagesBudget.created >= (USERS // 500 + 1 + 3) // PAGES_PER_INVOCATION
    answer = json.loads(result.result)
    assert answer["users"]["users"]["created"] == USERS
    assert answer["organizations"]["memberships"]["created"] == 2 * ORGANIZATIONS
    table = UserRepository(dynamodb_client(), users_table)
    for index in (0, 499, 500, 1_277, USERS - 1):
        stored = table.get(f"user_{index:05d}")
        assert stored is not None
        assert stored.email == f"u{index}@example.com"
    assert count_items(users_table) == USERS
    assert_every_membership_right(organizations_table)
    counts = metric_counts(capsys.readouterr().out, "reconcile")
    assert counts["ReconcileCreated"] == USERS + ORGANIZATIONS + 2 * ORGANIZATIONS
    assert counts["SyncAttempts"] == USERS + 3 * ORGANIZATIONS  # every write counted (contract §11)


def test_the_organizations_pass_completes_when_the_users_pass_fails(
    clerk: LoopbackClerk, users_table: str, organizations_table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    clerk.failing_prefixes = ("/v1/users",)
    slept: list[float] = []
    reconcile = load_function("reconcile")

    result = run_execution(reconcile, sleep=slept.append)

    assert result.status is InvocationStatus.FAILED
    # Each of the users step's attempts backed off between its requests (recorded, not slept).
    assert slept == [0.5, 1.0] * reconcile.STEP_ATTEMPTS
    assert_every_membership_right(organizations_table)
    assert count_items(users_table) == 0
    assert metric_counts(capsys.readouterr().out, "reconcile")["ReconcileFailed"] == 1


def test_a_retry_after_becomes_a_durable_wait_and_the_page_is_read_once(
    users_table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 429 whose Retry-After is longer than the function sleeps ends the step early, consuming nothing:
    the execution waits (a `context.wait`: no Lambda runs meanwhile) and lists the same page again.
    Invocations have all the time they need here, so the only waits are the rate limit's."""
    fake = LoopbackClerk(too_many_requests=1, retry_after="5")
    for index in range(600):
        fake.add_user(clerk_user(f"user_{index:05d}", created_at=T0 + index, updated_at=T0 + index))
    with fake.serve():
        monkeypatch.setenv("CLERK_SECRET_KEY", fake.secret_key)
        monkeypatch.setenv("CLERK_API_URL", fake.url)
        monkeypatch.delenv("ORGANIZATIONS_TABLE_NAME", raising=False)
        handler = load_function("reconcile").make_handler(ReconcileSettings.from_env())
        with DurableFunctionTestRunner(handler=handler) as runner:
            result = runner.run(input="{}", execution_timeout=120)

    assert result.status is InvocationStatus.SUCCEEDED, result.error
    waits = [op.name for op in result.get_all_operations() if op.operation_type.value == "WAIT"]
    assert waits == ["users-wait-1"]  # after the first step, which met the 429
    assert fake.listed_twice() == {}
    assert len(fake.pages) == 2
    assert count_items(users_table) == 600
