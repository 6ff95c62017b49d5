"""Reconciliation of organizations and memberships against a loopback Clerk (CONTRACT §11, §12):
creates, updates, skips newer and tombstoned items, dry run, offset paging a step of organizations at a
time, rate limits, prune with confirmation and its guard; a rerun writes nothing. Writes are counted
with botocore event hooks on the real client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from aws_durable_execution_sdk_python.lambda_service import InvocationStatus

from tests.helpers import metric_counts
from tests.integration.test_reconcile import run_function
from tests.organizations_support import T0, DynamoCalls
from tests.reconcile_support import SECRET_KEY, Runner, add_users, loopback
from usersync.runtime.aws import dynamodb_client
from usersync.runtime.metrics import SyncSource
from usersync.runtime.observability import metrics
from usersync.store.organizations import MembershipRecord, OrganizationRecord, OrganizationRepository
from usersync.sync.reconcile import Counts, ReconcileError
from usersync_dev.clerk import clerk_membership, clerk_organization
from usersync_dev.loopback_clerk import LoopbackClerk

# `make test` only, like test_reconcile.py: a loopback Clerk with paging and retries.
pytestmark = pytest.mark.slow

ORGS_TABLE = "usersync-test-organizations"


@pytest.fixture
def clerk() -> Iterator[LoopbackClerk]:
    with loopback() as fake:
        yield fake


def add_organizations(clerk: LoopbackClerk, count: int, members: int = 2) -> None:
    for index in range(count):
        org_id = f"org_{index:04d}"
        organization = clerk_organization(org_id, name=f"Org {index:04d}", slug=f"org-{index:04d}",
                                          created_at=T0 + index, updated_at=T0 + index)  # fmt: skip
        clerk.add_organization(
            organization,
            [
                clerk_membership(
                    f"orgmem_{index:04d}_{member}",
                    organization=organization,
                    user_id=f"user_{member:04d}",
                    role="org:admin" if member == 0 else "org:member",
                    created_at=T0 + member,
                    updated_at=T0 + member,
                )
                for member in range(members)
            ],
        )


class Report:
    """The organizations pass's counts, by kind."""

    def __init__(self, counts: dict[str, Counts]) -> None:
        self.organizations = counts["organizations"]
        self.memberships = counts["memberships"]


class OrgRunner(Runner):
    @property
    def repository(self) -> OrganizationRepository:
        return OrganizationRepository(dynamodb_client(), ORGS_TABLE)

    def report(self, **kwargs: Any) -> Report:
        return Report(self.run("organizations", **kwargs).counts)


@pytest.fixture
def runner(clerk: LoopbackClerk, users_table: str, organizations_table: str) -> OrgRunner:
    return OrgRunner(clerk, users_table, organizations_table)


def writes(calls: DynamoCalls) -> int:
    """Conditional writes made: a live item is one UpdateItem, a tombstone one PutItem."""
    return calls.calls["PutItem"] + calls.calls["UpdateItem"]


def items() -> dict[tuple[str, str], dict[str, Any]]:
    table = boto3.resource("dynamodb").Table(ORGS_TABLE)
    found: dict[tuple[str, str], dict[str, Any]] = {}
    kwargs: dict[str, Any] = {"ConsistentRead": True}
    while True:
        page = table.scan(**kwargs)
        found.update({(str(item["pk"]), str(item["sk"])): item for item in page["Items"]})
        if "LastEvaluatedKey" not in page:
            return found
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def profile(org_id: str) -> dict[str, Any]:
    return items()[(f"ORG#{org_id}", "PROFILE")]


def member(org_id: str, membership_id: str) -> dict[str, Any]:
    return items()[(f"ORG#{org_id}", f"MEMBER#{membership_id}")]


def test_backfill_creates_organizations_and_memberships_paging_by_offset(
    runner: OrgRunner, clerk: LoopbackClerk, capsys: pytest.CaptureFixture[str]
) -> None:
    add_organizations(clerk, 5, members=3)
    with DynamoCalls() as calls:
        report = runner.report(page_size=2)
    assert (report.organizations.seen, report.organizations.created) == (5, 5)
    assert (report.memberships.seen, report.memberships.created) == (15, 15)
    assert writes(calls) == 20
    assert [page for page in clerk.pages if page.startswith("/v1/organizations?")] == [
        "/v1/organizations?offset=0&limit=2",
        "/v1/organizations?offset=2&limit=2",
        "/v1/organizations?offset=4&limit=2",
    ]
    assert clerk.listed_twice() == {}
    stored = profile("org_0003")
    assert (stored["name"], stored["slug"], stored["source"]) == ("Org 0003", "org-0003", "reconcile")
    admin = member("org_0003", "orgmem_0003_0")
    assert (admin["role"], admin["userId"], admin["gsi1pk"]) == ("org:admin", "user_0000", "USER#user_0000")
    metrics.flush_metrics()
    counts = metric_counts(capsys.readouterr().out, "reconcile")
    assert counts["SyncAttempts"] == 20
    assert counts["SyncFailures"] == 0


def test_rerun_writes_nothing_and_a_change_costs_one_write(runner: OrgRunner, clerk: LoopbackClerk) -> None:
    add_organizations(clerk, 4)
    runner.report()
    with DynamoCalls() as calls:
        report = runner.report()
    assert writes(calls) == 0
    assert (report.organizations.unchanged, report.memberships.unchanged) == (4, 8)
    clerk.organizations["org_0002"].update(name="Renamed", updated_at=T0 + 10_000)
    clerk.memberships["org_0001"][1].update(role="org:admin", updated_at=T0 + 10_000)
    with DynamoCalls() as calls:
        report = runner.report()
    assert writes(calls) == 2
    assert (report.organizations.updated, report.memberships.updated) == (1, 1)
    assert profile("org_0002")["name"] == "Renamed"
    assert member("org_0001", "orgmem_0001_1")["role"] == "org:admin"


def test_newer_webhook_writes_and_tombstones_are_skipped(runner: OrgRunner, clerk: LoopbackClerk) -> None:
    add_organizations(clerk, 2)
    repository = runner.repository
    newer = OrganizationRecord(org_id="org_0000", name="From webhook", updated_at=T0 + 5_000)
    repository.save(newer)
    repository.save(OrganizationRecord.tombstone("org_0001", deleted_at=T0 + 1, source=SyncSource.WEBHOOK))
    gone = MembershipRecord(
        org_id="org_0000", membership_id="orgmem_0000_1", user_id="user_0001", deleted_at=T0 + 1
    )
    repository.save(gone)
    with DynamoCalls() as calls:
        report = runner.report()
    assert profile("org_0000")["name"] == "From webhook"
    assert "deletedAt" in profile("org_0001")
    assert "deletedAt" in member("org_0000", "orgmem_0000_1")
    assert report.organizations.skipped == 2
    assert report.memberships.skipped == 1
    assert writes(calls) == 3  # only the three memberships nothing knew


def test_dry_run_writes_nothing_but_reports_the_same_counts(runner: OrgRunner, clerk: LoopbackClerk) -> None:
    add_organizations(clerk, 3)
    with DynamoCalls() as calls:
        dry = runner.report(dry_run=True)
    assert writes(calls) == 0
    assert items() == {}
    real = runner.report()
    assert (dry.organizations.created, dry.memberships.created) == (
        real.organizations.created,
        real.memberships.created,
    )


def test_rate_limit_is_honoured_then_the_pass_completes(runner: OrgRunner, clerk: LoopbackClerk) -> None:
    add_organizations(clerk, 1)
    clerk.too_many_requests, clerk.retry_after = 1, "3"
    report = runner.report()
    assert runner.sleeps == [3.0]
    assert report.organizations.created == 1


def test_prune_tombstones_what_clerk_lost_after_confirming(runner: OrgRunner, clerk: LoopbackClerk) -> None:
    add_organizations(clerk, 6, members=3)
    runner.report()
    # Clerk loses one organization and one membership of another; one listing shifts mid-run
    del clerk.organizations["org_0005"]
    clerk.memberships["org_0001"].pop(2)
    without_flag = runner.report()
    assert without_flag.organizations.pruned == 0
    assert "deletedAt" not in profile("org_0005")

    report = runner.report(prune=True)
    assert (report.organizations.pruned, report.memberships.pruned) == (1, 1)
    assert "deletedAt" in profile("org_0005")
    assert "deletedAt" in member("org_0001", "orgmem_0001_2")
    assert "gsi1pk" not in member("org_0001", "orgmem_0001_2")
    assert "deletedAt" not in member("org_0002", "orgmem_0002_0")  # Clerk still lists it: kept
    # Memberships of the pruned organization are dead through it: no fan-out tombstones
    assert "deletedAt" not in member("org_0005", "orgmem_0005_0")


def test_an_organization_found_on_confirmation_is_applied_not_pruned(
    runner: OrgRunner, clerk: LoopbackClerk
) -> None:
    add_organizations(clerk, 3)
    runner.report()
    skipped = clerk.organizations.pop("org_0001")  # the listing skips it (a shift mid-pass)...

    def back_when_asked(path: str, _query: dict[str, list[str]]) -> None:  # ...but there when the prune asks
        if path == "/v1/organizations/org_0001":
            clerk.organizations.setdefault("org_0001", skipped)

    clerk.on_request = back_when_asked
    report = runner.report(prune=True)
    assert report.organizations.pruned == 0
    assert "deletedAt" not in profile("org_0001")


def test_prune_refuses_to_tombstone_most_organizations(runner: OrgRunner, clerk: LoopbackClerk) -> None:
    add_organizations(clerk, 30, members=1)
    runner.report()
    for index in range(5, 30):  # a different Clerk instance?
        del clerk.organizations[f"org_{index:04d}"]
    with (
        DynamoCalls() as calls,
        pytest.raises(ReconcileError, match="refusing to prune 25 of 30 organizations"),
    ):
        runner.report(prune=True)
    assert writes(calls) == 0
    assert all("deletedAt" not in item for item in items().values())


@pytest.mark.usefixtures("organizations_table")
def test_the_handler_reconciles_users_and_organizations_side_by_side(
    clerk: LoopbackClerk,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CLERK_API_URL", clerk.url)
    monkeypatch.setenv("CLERK_SECRET_KEY", SECRET_KEY)
    add_users(clerk, 2)
    add_organizations(clerk, 2)
    result = run_function({"source": "aws.events"})
    assert result.status is InvocationStatus.SUCCEEDED, result.error
    answer = json.loads(result.result)
    assert answer["users"]["users"]["created"] == 2
    assert answer["organizations"]["organizations"]["created"] == 2
    assert answer["organizations"]["memberships"]["created"] == 4
    counts = metric_counts(capsys.readouterr().out, "reconcile")
    assert counts["SyncAttempts"] == 2 + 2 + 4
    assert counts["ReconcileCreated"] == 8
