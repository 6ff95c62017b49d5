"""The organizations' source: `GET /v1/organizations` and each organization's memberships, by offset.

Clerk has no cursor for these lists. A step is one page of ORGANIZATIONS_PER_STEP organizations and
every page of their memberships, so the step in flight when an invocation ends (the only work ever
redone) is a bounded number of requests. Items are written as users are: the stored versions of the
step's items in BatchGetItems (projection of the versions), a conditional PutItem
(`write_organization_item`, Source=reconcile) only for what is newer.

Offset paging and concurrent change: an organization deleted during a pass, before the offset, shifts
the later ones back by one, so one organization (and its memberships) may be missed until the next
pass; one created during a pass lands at the end (oldest first) and is listed. The webhook keeps both
right meanwhile; only a missed webhook waits a pass longer to be repaired.

Pruning (opt-in): one Scan page of organization profiles; each live one not written during this pass
is asked of Clerk (`GET /v1/organizations/{id}`): a 404 tombstones the profile (its memberships die
with it: liveness, no fan-out); otherwise its stored live memberships that Clerk's fresh membership
listing lacks are tombstoned.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from usersync.clerk.organizations import ClerkMembership, ClerkOrganization
from usersync.runtime.metrics import SyncSource
from usersync.runtime.observability import logger
from usersync.store.dynamodb import WriteOutcome, query_items
from usersync.store.organizations import (
    MEMBER_PREFIX,
    ORG_PREFIX,
    PROFILE_SORT_KEY,
    MembershipRecord,
    OrganizationItem,
    OrganizationRecord,
    OrganizationRepository,
)
from usersync.sync.organizations import write_organization_item
from usersync.sync.reconcile.engine import TableSource
from usersync.sync.reconcile.state import (
    Counts,
    PassState,
    Phase,
)

ORGANIZATIONS_PER_STEP = 100
PRUNE_SCAN_LIMIT = 100


def _membership_record(entry: dict[str, Any]) -> MembershipRecord:
    return MembershipRecord.from_clerk(ClerkMembership.model_validate(entry), source=SyncSource.RECONCILE)


class OrganizationSource(TableSource):
    entity = "organizations"
    kinds: tuple[str, ...] = ("organizations", "memberships")

    def __post_init__(self) -> None:
        self.repository = OrganizationRepository(self.client, self.table_name)

    # ------------------------------------------------------------ listing

    def holds_next_page(self, state: PassState) -> bool:  # noqa: ARG002 - the Source protocol's signature
        return False  # organizations are not read ahead (a step is ~100 requests; one more saves little)

    def list_step(self, state: PassState) -> None:
        before = self.clerk.requests
        page = self.clerk.organizations_page(state.offset, limit=ORGANIZATIONS_PER_STEP)
        counts = state.counts["organizations"]
        counts.seen += len(page.entries)
        organizations = self.parse(
            page.entries, ClerkOrganization.model_validate, counts, kind="organization", id_key="orgId"
        )
        records: list[OrganizationItem] = [
            OrganizationRecord.from_clerk(org, source=SyncSource.RECONCILE) for org in organizations
        ]
        self.apply(records, counts, dry_run=state.dry_run)
        for organization in organizations:
            self.list_memberships(organization.id, state)
        state.offset += len(page.entries)
        state.requests += self.clerk.requests - before
        if not page.more:
            state.phase = Phase.PRUNE if state.prune else Phase.DONE

    def list_memberships(self, org_id: str, state: PassState) -> set[str]:
        """Apply every membership Clerk lists for `org_id`, page by page; their ids (the prune's proof)."""
        counts = state.counts["memberships"]
        listed: set[str] = set()
        offset, more = 0, True
        while more:
            page = self.clerk.memberships_page(org_id, offset)
            offset, more = offset + len(page.entries), page.more
            counts.seen += len(page.entries)
            memberships = self.parse(
                page.entries, _membership_record, counts, kind="membership", id_key="membershipId"
            )
            listed.update(record.membership_id for record in memberships)
            self.apply(memberships, counts, dry_run=state.dry_run)
        return listed

    def apply(self, records: Sequence[OrganizationItem], counts: Counts, *, dry_run: bool) -> None:
        """Write the records whose stored copy is older or absent; count every outcome."""
        stored = self.stored_versions(records)
        to_write: list[tuple[OrganizationItem, bool]] = []
        for record in records:
            assert record.updated_at is not None  # parsed from Clerk: always versioned
            current = stored.get((record.pk, record.sk))
            if current is not None and (
                "deletedAt" in current or current.get("updatedAt", 0) > record.updated_at
            ):
                counts.skipped += 1
            elif current is not None and current.get("updatedAt") == record.updated_at:
                counts.unchanged += 1
            else:
                to_write.append((record, current is None))
        self.write_counted(
            to_write, lambda record: write_organization_item(self.repository, record), counts, dry_run=dry_run
        )

    def stored_versions(self, records: Sequence[OrganizationItem]) -> dict[tuple[str, str], dict[str, int]]:
        """(pk, sk) -> {updatedAt, deletedAt} of the stored items among `records`' keys."""
        keys = [{"pk": {"S": pk}, "sk": {"S": sk}} for pk, sk in dict.fromkeys((r.pk, r.sk) for r in records)]
        found: dict[tuple[str, str], dict[str, int]] = {}
        for item in self.stored_items(keys, "pk, sk, updatedAt, deletedAt"):
            versions = {
                name: int(item[name]["N"]) for name in ("updatedAt", "deletedAt") if "N" in item.get(name, {})
            }
            if "deletedAt" in item:
                versions.setdefault("deletedAt", 0)
            found[(item["pk"]["S"], item["sk"]["S"])] = versions
        return found

    # ------------------------------------------------------------ pruning

    def prune_step(self, state: PassState) -> None:
        before = self.clerk.requests
        profiles, state.scan_key = self._scan_profiles(state.scan_key)
        since = state.synced_since
        live = [org_id for org_id, synced in profiles if synced < since]
        counts = state.counts["organizations"]
        counts.checked += len(live)
        gone = [org_id for org_id in live if self.clerk.get_organization(org_id) is None]
        state.refuse_mass_prune("organizations", len(gone))
        now = self.options.now_ms()
        for org_id in live:
            if org_id in gone:
                tombstone = OrganizationRecord.tombstone(org_id, deleted_at=now, source=SyncSource.RECONCILE)
                self._tombstone(tombstone, counts, state.dry_run)
            else:
                self._prune_memberships(org_id, state, since, now)
        state.requests += self.clerk.requests - before
        if state.scan_key is None:
            state.phase = Phase.DONE

    def _prune_memberships(self, org_id: str, state: PassState, since: str, now: int) -> None:
        """Tombstone the stored live memberships of `org_id` that Clerk's fresh listing lacks."""
        stored = [m for m in self.live_memberships(org_id) if m["syncedAt"] < since]
        if not stored:
            return
        listed = self.list_memberships(org_id, state)
        counts = state.counts["memberships"]
        counts.checked += len(stored)
        missing = [m for m in stored if m["membershipId"] not in listed]
        state.refuse_mass_prune("memberships", len(missing))
        for membership in missing:
            tombstone = MembershipRecord.tombstone(
                org_id,
                membership["membershipId"],
                membership["userId"],
                deleted_at=now,
                source=SyncSource.RECONCILE,
            )
            self._tombstone(tombstone, counts, state.dry_run)

    def live_memberships(self, org_id: str) -> list[dict[str, str]]:
        """The organization's stored live memberships (ids and `syncedAt`): one Query of its partition."""
        items = query_items(
            self.client,
            self.repository.table_name,
            KeyConditionExpression="pk = :org AND begins_with(sk, :member)",
            FilterExpression="attribute_not_exists(deletedAt)",
            ProjectionExpression="membershipId, userId, syncedAt",
            ExpressionAttributeValues={":org": {"S": ORG_PREFIX + org_id}, ":member": {"S": MEMBER_PREFIX}},
        )
        return [
            {name: item.get(name, {}).get("S", "") for name in ("membershipId", "userId", "syncedAt")}
            for item in items
            if item.get("membershipId", {}).get("S") and item.get("userId", {}).get("S")
        ]

    def _tombstone(self, record: OrganizationItem, counts: Counts, dry_run: bool) -> None:
        if not dry_run and write_organization_item(self.repository, record) is not WriteOutcome.APPLIED:
            return  # already tombstoned meanwhile
        counts.pruned += 1
        logger.info(
            "organization item pruned", extra={"orgId": record.org_id, "sk": record.sk, "dryRun": dry_run}
        )

    def _scan_profiles(
        self, start: dict[str, Any] | None
    ) -> tuple[list[tuple[str, str]], dict[str, Any] | None]:
        """One Scan page of live organization profiles: (org id, syncedAt)."""
        items, last = self.scan_page(
            start,
            ProjectionExpression="orgId, syncedAt",
            FilterExpression="sk = :profile AND attribute_not_exists(deletedAt)",
            ExpressionAttributeValues={":profile": {"S": PROFILE_SORT_KEY}},
            Limit=PRUNE_SCAN_LIMIT,
        )
        profiles = [
            (item["orgId"]["S"], item.get("syncedAt", {}).get("S", ""))
            for item in items
            if "S" in item.get("orgId", {})
        ]
        return profiles, last
