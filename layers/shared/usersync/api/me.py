"""GET /me: the caller's stored profile and live organizations, as the API Gateway response.

DynamoDB requests per call: GetItem of the user; if it is live, one Query of the user's memberships
(`UserOrganizationsIndex`) and, only when there are any, one BatchGetItem of their organizations'
profiles (per 100 organizations). So 1 request for an unknown or deleted user, 2 for a user without
organizations, 3 for one with up to 100.
"""

from __future__ import annotations

from typing import Any

from usersync.api.http import authorizer_value, json_response
from usersync.runtime.observability import logger
from usersync.store.errors import RepositoryError
from usersync.store.organizations import MembershipRecord, OrganizationRecord, OrganizationRepository
from usersync.store.records import UserRecord
from usersync.store.users import UserRepository

# What the caller may see of their own record: no internal bookkeeping such as lastEventId.
_VISIBLE_FIELDS: set[str] = {
    "user_id",
    "email",
    "first_name",
    "last_name",
    "image_url",
    "created_at",
    "updated_at",
    "synced_at",
    "source",
}


def visible_profile(record: UserRecord) -> dict[str, Any]:
    """The caller's record under the table's attribute names, absent values as null."""
    return record.model_dump(by_alias=True, mode="json", include=_VISIBLE_FIELDS)


def _newest_names(
    membership: MembershipRecord, organization: OrganizationRecord | None
) -> tuple[str | None, str | None]:
    """(name, slug) from the newest organization record: its profile, unless the membership's embedded
    copy is strictly newer (or there is no profile yet)."""
    if organization is not None and (organization.updated_at or 0) >= (membership.org_updated_at or 0):
        return organization.name, organization.slug
    return membership.org_name, membership.org_slug


def live_organizations(
    memberships: list[MembershipRecord], profiles: dict[str, OrganizationRecord]
) -> list[dict[str, Any]]:
    """`[{orgId, slug, name, role}]` of the live memberships (the user's own liveness is the caller's),
    one per organization (the newest membership if Clerk's delete of an older one was missed),
    sorted by name (code-point order), then orgId."""
    newest: dict[str, MembershipRecord] = {}
    for membership in memberships:
        organization = profiles.get(membership.org_id)
        if membership.is_tombstone or (organization is not None and organization.is_tombstone):
            continue
        kept = newest.get(membership.org_id)
        if kept is None or (membership.updated_at or 0, membership.membership_id) > (
            kept.updated_at or 0,
            kept.membership_id,
        ):
            newest[membership.org_id] = membership
    listed = []
    for org_id, membership in newest.items():
        name, slug = _newest_names(membership, profiles.get(org_id))
        listed.append({"orgId": org_id, "slug": slug, "name": name, "role": membership.role})
    return sorted(listed, key=lambda entry: (entry["name"] or "", entry["orgId"]))


def organizations_of(user_id: str, organizations: OrganizationRepository) -> list[dict[str, Any]]:
    """The user's live organizations: one Query, plus one BatchGetItem when there are memberships."""
    memberships = organizations.memberships_of_user(user_id)
    if not memberships:
        return []
    profiles = organizations.get_organizations(m.org_id for m in memberships)
    return live_organizations(memberships, profiles)


def me_response(
    event: Any, users: UserRepository, organizations: OrganizationRepository | None
) -> dict[str, Any]:
    """401 without an authorizer context, 404 for a user not stored or deleted, 503 when a table cannot
    be read, else 200 with the profile and `organizations` (`[]` without the organizations table)."""
    user_id = authorizer_value(event, "userId")
    if user_id is None:  # only reachable if the route is wired without the authorizer
        return json_response(401, {"status": "unauthorized", "message": "no authenticated user"})
    try:
        record = users.get(user_id)
    except RepositoryError as exc:
        logger.error("user read failed", extra={"userId": user_id, "errorCode": exc.code})
        return json_response(503, {"status": "error", "message": "user table unavailable"})
    if record is None or record.is_tombstone:
        return json_response(404, {"status": "not-found", "message": "user not synced yet"})
    try:
        listed = organizations_of(user_id, organizations) if organizations is not None else []
    except RepositoryError as exc:
        logger.error("organizations read failed", extra={"userId": user_id, "errorCode": exc.code})
        return json_response(503, {"status": "error", "message": "organizations table unavailable"})
    return json_response(200, {**visible_profile(record), "organizations": listed})
