"""Reconciliation of organizations and memberships against a loopback Clerk (CONTRACT §11): creates,
updates, skips newer and tombstoned items, dry run, paging, rate limits, prune with confirmation and
its guard; a rerun writes nothing. Writes are counted with botocore event hooks on the real client."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from tests.helpers import InvokeFunction, metric_counts
from tests.integration.test_reconcile import SECRET_KEY, FakeClerk, point_reconcile_at, serving
from tests.organizations_support import T0, DynamoCalls
from usersync.runtime.aws import dynamodb_client
from usersync.runtime.metrics import SyncSource
from usersync.runtime.observability import metrics
from usersync.store.organizations import MembershipRecord, OrganizationRecord, OrganizationRepository
from usersync.sync.reconcile import ReconcileError, ReconcileOptions
from usersync.sync.reconcile_orgs import (
    ClerkOrganizationsClient,
    OrganizationsReport,
    reconcile_organizations,
)
from usersync_dev.clerk import clerk_membership, clerk_organization

# `make test` only, like test_reconcile.py: a loopback Clerk with paging and retries.
pytestmark = pytest.mark.slow

ORGS_TABLE = "usersync-test-organizations"


@dataclass
class FakeClerkWithOrganizations(FakeClerk):
    """The users' loopback Clerk plus `/v1/organizations` and `/v1/organizations/{id}/memberships`
    (paginated as Clerk does: `{"data": [...], "total_count": n}`)."""

    organizations: list[dict[str, Any]] = field(default_factory=list)
    memberships: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    unlisted_organizations: list[dict[str, Any]] = field(default_factory=list)
    # Memberships the first listing of an organization misses (a shift mid-run), seen when listed again.
    hidden_once: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def add_organizations(self, count: int, members: int = 2) -> None:
        for index in range(count):
            org_id = f"org_{index:04d}"
            organization = clerk_organization(org_id, name=f"Org {index:04d}", slug=f"org-{index:04d}",
                                              created_at=T0 + index, updated_at=T0 + index)  # fmt: skip
            self.organizations.append(organization)
            self.memberships[org_id] = [
                clerk_membership(
                    f"orgmem_{index:04d}_{member}",
                    organization=organization,
                    user_id=f"user_{member:04d}",
                    role="org:admin" if member == 0 else "org:member",
                    created_at=T0 + member,
                    updated_at=T0 + member,
                )
                for member in range(members)
            ]

    def org(self, org_id: str) -> dict[str, Any]:
        return next(o for o in self.organizations if o["id"] == org_id)

    def handle(self, method: str, raw_path: str, headers: Any) -> tuple[int, dict[str, str], Any]:
        parts = urlsplit(raw_path)
        if not parts.path.startswith("/v1/organizations"):
            return super().handle(method, raw_path, headers)
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        self.requests.append((parts.path, query))
        if headers.get("Authorization") != f"Bearer {self.secret_key}":
            return 401, {}, {"errors": [{"code": "authentication_invalid", "message": "invalid secret key"}]}
        if self.rate_limit_once is not None:
            retry_after, self.rate_limit_once = self.rate_limit_once, None
            return (
                429,
                {"Retry-After": retry_after},
                {"errors": [{"code": "too_many_requests", "message": ""}]},
            )
        limit, offset = int(query.get("limit", "10")), int(query.get("offset", "0"))
        segments = parts.path.strip("/").split("/")  # v1, organizations, [id, [memberships]]
        if len(segments) == 2:
            listed = sorted(self.organizations, key=lambda o: o["created_at"])
            return 200, {}, {"data": listed[offset : offset + limit], "total_count": len(listed)}
        org_id = segments[2]
        if len(segments) == 4 and segments[3] == "memberships":
            entries = list(self.memberships.get(org_id, []))
            hidden = self.hidden_once.pop(org_id, [])
            entries = [e for e in entries if e not in hidden]
            return 200, {}, {"data": entries[offset : offset + limit], "total_count": len(entries)}
        for organization in (*self.organizations, *self.unlisted_organizations):
            if organization["id"] == org_id:
                return 200, {}, organization
        return 404, {}, {"errors": [{"code": "resource_not_found", "message": "not found"}]}

    def organization_list_requests(self) -> list[dict[str, str]]:
        return [query for path, query in self.requests if path == "/v1/organizations"]


@pytest.fixture
def clerk() -> Iterator[FakeClerkWithOrganizations]:
    fake = FakeClerkWithOrganizations()
    with serving(fake):
        yield fake


@dataclass
class Runner:
    clerk: FakeClerkWithOrganizations
    sleeps: list[float] = field(default_factory=list)

    @property
    def repository(self) -> OrganizationRepository:
        return OrganizationRepository(dynamodb_client(), ORGS_TABLE)

    def run(self, *, page_size: int = 100, **kwargs: Any) -> OrganizationsReport:
        client = ClerkOrganizationsClient(
            SECRET_KEY, self.clerk.url, page_size=page_size, sleep=self.sleeps.append
        )
        return reconcile_organizations(client, self.repository, ReconcileOptions(**kwargs))


@pytest.fixture
def runner(clerk: FakeClerkWithOrganizations, organizations_table: str) -> Runner:
    return Runner(clerk)


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


def test_backfill_creates_organizations_and_memberships_paging_with_limit_and_offset(
    runner: Runner, clerk: FakeClerkWithOrganizations, capsys: pytest.CaptureFixture[str]
) -> None:
    clerk.add_organizations(5, members=3)
    with DynamoCalls() as calls:
        report = runner.run(page_size=2)
    assert (report.organizations.seen, report.organizations.created) == (5, 5)
    assert (report.memberships.seen, report.memberships.created) == (15, 15)
    assert calls.calls["PutItem"] == 20
    assert [(q["limit"], q["offset"]) for q in clerk.organization_list_requests()] == [
        ("2", "0"),
        ("2", "2"),
        ("2", "4"),
    ]
    stored = profile("org_0003")
    assert (stored["name"], stored["slug"], stored["source"]) == ("Org 0003", "org-0003", "reconcile")
    admin = member("org_0003", "orgmem_0003_0")
    assert (admin["role"], admin["userId"], admin["gsi1pk"]) == ("org:admin", "user_0000", "USER#user_0000")
    metrics.flush_metrics()
    counts = metric_counts(capsys.readouterr().out, "reconcile")
    assert counts["SyncAttempts"] == 20 and counts["SyncFailures"] == 0


def test_rerun_writes_nothing_and_a_change_costs_one_write(
    runner: Runner, clerk: FakeClerkWithOrganizations
) -> None:
    clerk.add_organizations(4)
    runner.run()
    with DynamoCalls() as calls:
        report = runner.run()
    assert calls.calls["PutItem"] == 0
    assert (report.organizations.unchanged, report.memberships.unchanged) == (4, 8)
    clerk.org("org_0002").update(name="Renamed", updated_at=T0 + 10_000)
    clerk.memberships["org_0001"][1].update(role="org:admin", updated_at=T0 + 10_000)
    with DynamoCalls() as calls:
        report = runner.run()
    assert calls.calls["PutItem"] == 2
    assert (report.organizations.updated, report.memberships.updated) == (1, 1)
    assert (
        profile("org_0002")["name"] == "Renamed"
        and member("org_0001", "orgmem_0001_1")["role"] == "org:admin"
    )


def test_newer_webhook_writes_and_tombstones_are_skipped(
    runner: Runner, clerk: FakeClerkWithOrganizations
) -> None:
    clerk.add_organizations(2)
    repository = runner.repository
    newer = OrganizationRecord(org_id="org_0000", name="From webhook", updated_at=T0 + 5_000)
    repository.save(newer)
    repository.save(OrganizationRecord.tombstone("org_0001", deleted_at=T0 + 1, source=SyncSource.WEBHOOK))
    gone = MembershipRecord(
        org_id="org_0000", membership_id="orgmem_0000_1", user_id="user_0001", deleted_at=T0 + 1
    )
    repository.save(gone)
    with DynamoCalls() as calls:
        report = runner.run()
    assert profile("org_0000")["name"] == "From webhook"
    assert "deletedAt" in profile("org_0001") and "deletedAt" in member("org_0000", "orgmem_0000_1")
    assert report.organizations.skipped == 2 and report.memberships.skipped == 1
    assert calls.calls["PutItem"] == 3  # only the three memberships nothing knew


def test_dry_run_writes_nothing_but_reports_the_same_counts(
    runner: Runner, clerk: FakeClerkWithOrganizations
) -> None:
    clerk.add_organizations(3)
    with DynamoCalls() as calls:
        dry = runner.run(dry_run=True)
    assert calls.calls["PutItem"] == 0 and items() == {}
    real = runner.run()
    assert (dry.organizations.created, dry.memberships.created) == (
        real.organizations.created,
        real.memberships.created,
    )


def test_rate_limit_is_honoured_then_the_run_completes(
    runner: Runner, clerk: FakeClerkWithOrganizations
) -> None:
    clerk.add_organizations(1)
    clerk.rate_limit_once = "3"
    report = runner.run()
    assert runner.sleeps == [3.0] and report.organizations.created == 1


def test_prune_tombstones_what_clerk_lost_after_confirming(
    runner: Runner, clerk: FakeClerkWithOrganizations
) -> None:
    clerk.add_organizations(6, members=3)
    runner.run()
    # Clerk loses one organization and one membership of another; one listing shifts mid-run
    removed = clerk.organizations.pop(5)
    assert removed["id"] == "org_0005"
    clerk.memberships["org_0001"].pop(2)
    clerk.hidden_once["org_0002"] = [clerk.memberships["org_0002"][0]]  # listed again when confirming
    clerk.unlisted_organizations = []
    without_flag = runner.run()
    assert without_flag.organizations.pruned == 0 and "deletedAt" not in profile("org_0005")

    report = runner.run(prune=True)
    assert sorted(report.pruned_ids) == ["org_0005", "orgmem_0001_2"]
    assert "deletedAt" in profile("org_0005")
    assert "deletedAt" in member("org_0001", "orgmem_0001_2") and "gsi1pk" not in member(
        "org_0001", "orgmem_0001_2"
    )
    assert "deletedAt" not in member("org_0002", "orgmem_0002_0")  # confirmed present: kept
    # Memberships of the pruned organization are dead through it: no fan-out tombstones
    assert "deletedAt" not in member("org_0005", "orgmem_0005_0")


def test_an_organization_found_on_confirmation_is_applied_not_pruned(
    runner: Runner, clerk: FakeClerkWithOrganizations
) -> None:
    clerk.add_organizations(3)
    runner.run()
    clerk.unlisted_organizations = [clerk.organizations.pop(1)]  # the listing skipped it
    report = runner.run(prune=True)
    assert report.organizations.pruned == 0 and "deletedAt" not in profile("org_0001")


def test_prune_refuses_to_tombstone_most_organizations(
    runner: Runner, clerk: FakeClerkWithOrganizations
) -> None:
    clerk.add_organizations(30, members=1)
    runner.run()
    clerk.organizations = clerk.organizations[:5]  # a different Clerk instance?
    with (
        DynamoCalls() as calls,
        pytest.raises(ReconcileError, match="refusing to prune 25 of 30 organizations"),
    ):
        runner.run(prune=True)
    assert calls.calls["PutItem"] == 0
    assert all("deletedAt" not in item for item in items().values())


def test_handler_reconciles_organizations_after_users(
    clerk: FakeClerkWithOrganizations,
    organizations_table: str,
    invoke_function: InvokeFunction,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    point_reconcile_at(clerk, monkeypatch)
    clerk.add_users(2)
    clerk.add_organizations(2)
    result = invoke_function("reconcile", {"source": "aws.events"})
    assert result["created"] == 2
    assert result["organizations"]["organizations"]["created"] == 2
    assert result["organizations"]["memberships"]["created"] == 4
    counts = metric_counts(capsys.readouterr().out, "reconcile")
    assert counts["SyncAttempts"] == 2 + 2 + 4
