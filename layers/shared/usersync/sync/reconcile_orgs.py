"""Reconciliation of organizations and memberships with Clerk's Backend API (CONTRACT §11).

Pages through `GET /v1/organizations` and, per organization, `GET /v1/organizations/{id}/memberships`,
and re-applies every entry through the webhook's conditional PutItem (`write_organization_item`,
Source=reconcile), so a newer webhook write is never overwritten and a tombstone never resurrected.
Same rules as the users' run (usersync.sync.reconcile): one Scan snapshot first (projection of keys and
versions) so unchanged items cost no write and a rerun writes nothing; dry run; rate limits and 5xx
retried by the same client (Retry-After honoured, capped); a prune only after a complete listing,
refused when it would tombstone more than half of what is live, and confirmed first: an organization
with `GET /v1/organizations/{id}` (404), a membership by listing its organization's memberships again
(offset paging can skip an entry when a deletion shifts the list mid-run).

Pruning an organization tombstones its profile only: its memberships are dead with it (liveness), no
fan-out. Memberships of organizations that are gone are therefore never pruned one by one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import quote

from pydantic import ValidationError

from usersync.clerk.organizations import ClerkMembership, ClerkOrganization
from usersync.runtime.metrics import SyncMetric, SyncSource, emit_metric
from usersync.runtime.observability import logger
from usersync.store.dynamodb import WriteOutcome
from usersync.store.errors import RepositoryError
from usersync.store.organizations import (
    MEMBER_PREFIX,
    ORG_PREFIX,
    PROFILE_SORT_KEY,
    MembershipRecord,
    OrganizationItem,
    OrganizationRecord,
    OrganizationRepository,
    StoredVersion,
)
from usersync.sync.organizations import write_organization_item
from usersync.sync.reconcile import (
    DEADLINE_MARGIN_SECONDS,
    ORDER_BY,
    ClerkApiError,
    ClerkUsersClient,
    ReconcileError,
    ReconcileOptions,
    refuse_mass_prune,
)


class ClerkOrganizationsClient(ClerkUsersClient):
    """The users' client (same key, retries, rate-limit handling) plus the organization endpoints."""

    def _list(self, path: str) -> Iterator[list[dict[str, Any]]]:
        """Every entry of a paginated list endpoint, a page at a time. Clerk wraps these lists as
        `{"data": [...], "total_count": n}`; a bare list is accepted too."""
        offset = 0
        while True:
            fields = {"limit": str(self.page_size), "offset": str(offset), "order_by": ORDER_BY}
            body = self._get(path, fields)
            page = body.get("data") if isinstance(body, dict) else body
            if not isinstance(page, list):
                raise ClerkApiError(f"Clerk API GET {path} returned something other than a list")
            yield [entry for entry in page if isinstance(entry, dict)]
            offset += len(page)
            total = body.get("total_count") if isinstance(body, dict) else None
            if len(page) < self.page_size or (isinstance(total, int) and offset >= total):
                return

    def organization_pages(self) -> Iterator[list[dict[str, Any]]]:
        return self._list("/v1/organizations")

    def memberships(self, org_id: str) -> list[dict[str, Any]]:
        """All memberships of one organization (every page)."""
        path = f"/v1/organizations/{quote(org_id, safe='')}/memberships"
        return [entry for page in self._list(path) for entry in page]

    def get_organization(self, org_id: str) -> dict[str, Any] | None:
        """One organization, or None when Clerk answers 404."""
        body = self._get(f"/v1/organizations/{quote(org_id, safe='')}", {}, allow_not_found=True)
        return body if isinstance(body, dict) else None


@dataclass
class Counts:
    seen: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0  # table holds a newer copy or a tombstone, or Clerk's entry is invalid
    pruned: int = 0


@dataclass
class OrganizationsReport:
    dry_run: bool = False
    prune: bool = False
    organizations: Counts = field(default_factory=Counts)
    memberships: Counts = field(default_factory=Counts)
    pruned_ids: list[str] = field(default_factory=list, repr=False)

    def counts(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("pruned_ids")
        return data


class OrganizationsReconcileRun:
    """One pass of organization reconciliation: the table snapshot it compares against, and which
    organizations and items Clerk listed (what pruning must not touch)."""

    def __init__(
        self,
        clerk: ClerkOrganizationsClient,
        repository: OrganizationRepository,
        report: OrganizationsReport,
        options: ReconcileOptions,
    ) -> None:
        self.clerk = clerk
        self.repository = repository
        self.report = report
        self.options = options
        self.stored = repository.scan_versions()
        self.seen_orgs: set[str] = set()
        self.seen_keys: set[tuple[str, str]] = set()

    def _apply(self, record: OrganizationItem, counts: Counts) -> None:
        """Write `record` unless the snapshot already holds it, something newer, or a tombstone."""
        key = (record.pk, record.sk)
        self.seen_keys.add(key)
        stored = self.stored.get(key)
        assert record.updated_at is not None  # parsed from Clerk: always versioned
        if stored is not None and (
            stored.deleted_at is not None or (stored.updated_at or 0) > record.updated_at
        ):
            counts.skipped += 1
            return
        if stored is not None and stored.updated_at == record.updated_at:
            counts.unchanged += 1
            return
        if (
            not self.report.dry_run
            and write_organization_item(self.repository, record) is not WriteOutcome.APPLIED
        ):
            counts.skipped += 1  # a webhook write or a delete landed since the scan: it wins
            return
        if stored is None:
            counts.created += 1
        else:
            counts.updated += 1

    def organization(self, entry: dict[str, Any]) -> None:
        counts = self.report.organizations
        org_id = entry.get("id")
        if isinstance(org_id, str) and org_id:
            if org_id in self.seen_orgs:
                return  # offset paging can repeat an entry when the list shifts
            self.seen_orgs.add(org_id)
        counts.seen += 1
        try:
            organization = ClerkOrganization.model_validate(entry)
        except ValidationError:
            logger.warning("Clerk organization entry skipped: invalid", extra={"orgId": org_id})
            counts.skipped += 1
            return
        self._apply(OrganizationRecord.from_clerk(organization, source=SyncSource.RECONCILE), counts)
        for membership in self.clerk.memberships(organization.id):
            self.membership(membership)

    def membership(self, entry: dict[str, Any]) -> None:
        counts = self.report.memberships
        counts.seen += 1
        try:
            membership = ClerkMembership.model_validate(entry)
        except ValidationError:
            logger.warning("Clerk membership entry skipped: invalid", extra={"membershipId": entry.get("id")})
            counts.skipped += 1
            return
        self._apply(MembershipRecord.from_clerk(membership, source=SyncSource.RECONCILE), counts)

    def _tombstone(self, record: OrganizationItem, counts: Counts, label: str) -> None:
        if (
            not self.report.dry_run
            and write_organization_item(self.repository, record) is not WriteOutcome.APPLIED
        ):
            return  # already tombstoned since the scan
        counts.pruned += 1
        self.report.pruned_ids.append(label)

    def prune(self) -> None:
        live = {key: stored for key, stored in self.stored.items() if stored.deleted_at is None}
        live_orgs = {key: s for key, s in live.items() if key[1] == PROFILE_SORT_KEY}
        live_members = {key: s for key, s in live.items() if key[1].startswith(MEMBER_PREFIX)}
        org_candidates = sorted(s.org_id for key, s in live_orgs.items() if key not in self.seen_keys)
        member_candidates = sorted(
            (
                key
                for key, s in live_members.items()
                if key not in self.seen_keys and s.org_id in self.seen_orgs
            ),
        )
        refuse_mass_prune("organizations", len(org_candidates), len(live_orgs))
        refuse_mass_prune("memberships", len(member_candidates), len(live_members))
        now = self.options.now_ms()
        for org_id in org_candidates:
            found = self.clerk.get_organization(org_id)
            if found is not None:
                self.organization(found)
                continue
            tombstone = OrganizationRecord.tombstone(org_id, deleted_at=now, source=SyncSource.RECONCILE)
            self._tombstone(tombstone, self.report.organizations, org_id)
        by_org: dict[str, list[StoredVersion]] = {}
        for key in member_candidates:
            by_org.setdefault(live_members[key].org_id, []).append(live_members[key])
        for org_id, stored_members in sorted(by_org.items()):
            relisted = self.clerk.memberships(org_id)  # confirmation: the list may have shifted mid-run
            present = {entry.get("id") for entry in relisted}
            for entry in relisted:
                if (ORG_PREFIX + org_id, MEMBER_PREFIX + str(entry.get("id"))) not in self.seen_keys:
                    self.membership(entry)
            for stored in stored_members:
                if stored.membership_id in present:
                    continue
                if not (stored.membership_id and stored.user_id):
                    logger.warning("membership item without ids not pruned", extra={"orgId": org_id})
                    continue
                gone = MembershipRecord.tombstone(
                    stored.org_id,
                    stored.membership_id,
                    stored.user_id,
                    deleted_at=now,
                    source=SyncSource.RECONCILE,
                )
                self._tombstone(gone, self.report.memberships, stored.membership_id)


def reconcile_organizations(
    clerk: ClerkOrganizationsClient,
    repository: OrganizationRepository,
    options: ReconcileOptions,
) -> OrganizationsReport:
    """Apply every Clerk organization and its memberships; with `prune`, tombstone what Clerk lost.

    Raises ReconcileError (its report is None; the partial counts are logged) when Clerk or the table
    fails; what was applied before stays applied. Nothing is pruned unless the whole listing succeeded.
    """
    report = OrganizationsReport(dry_run=options.dry_run, prune=options.prune)
    try:
        run = OrganizationsReconcileRun(clerk, repository, report, options)
        for index, page in enumerate(clerk.organization_pages()):
            if index and options.out_of_time():
                raise ReconcileError(
                    f"stopped after {report.organizations.seen} organizations, under "
                    f"{DEADLINE_MARGIN_SECONDS:.0f} s left (the next run skips what is written so far)"
                )
            for entry in page:
                run.organization(entry)
        if options.prune:
            run.prune()
    except (ReconcileError, RepositoryError) as exc:
        if not options.dry_run:
            emit_metric(SyncMetric.RECONCILE_FAILED, SyncSource.RECONCILE)
        logger.error(
            "organizations reconcile failed", extra={"error": str(exc), "reconcile": report.counts()}
        )
        raise ReconcileError(f"organizations reconcile failed: {exc}") from exc
    logger.info("organizations reconcile finished", extra={"reconcile": report.counts()})
    return report
