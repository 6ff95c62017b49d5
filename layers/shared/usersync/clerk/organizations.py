"""Clerk's organizations and memberships: the Backend API objects and webhook data usersync reads."""

from __future__ import annotations

from typing import Annotated, TypedDict

from pydantic import AfterValidator, Field

from usersync.clerk.payload import ClerkPayload, ClerkRecord, ClerkText, EpochMs

# The table's sort keys (`sk`, `gsi1sk`, at most 1,024 bytes) embed these ids behind a prefix: an id
# that could never be stored is a 400 at parse time, not a write that fails on every Svix retry.
MAX_ID_BYTES = 1000


def _storable_id(value: str) -> str:
    if len(value.encode("utf-8", errors="surrogatepass")) > MAX_ID_BYTES:
        raise ValueError(f"id longer than {MAX_ID_BYTES} bytes")
    return value


ClerkId = Annotated[str, Field(min_length=1), AfterValidator(_storable_id)]


class OrganizationProfile(TypedDict):
    """What usersync mirrors of an organization (the organization item's fields)."""

    name: str | None
    slug: str | None
    image_url: str | None


class MembershipOrganizationCopy(TypedDict):
    """The copy of its organization a membership item embeds (its `org_*` fields)."""

    org_name: str | None
    org_slug: str | None
    org_updated_at: int | None


class ClerkOrganizationNames(ClerkPayload):
    """How Clerk names an organization, in its own object and in the copy a membership embeds."""

    id: ClerkId
    name: ClerkText = None
    slug: ClerkText = None


class ClerkOrganization(ClerkOrganizationNames, ClerkRecord):
    """The Backend API Organization object (`organization.created|updated`, `GET /v1/organizations`)."""

    image_url: ClerkText = None

    def profile(self) -> OrganizationProfile:
        return {"name": self.name, "slug": self.slug, "image_url": self.image_url}


class ClerkDeletedOrganization(ClerkPayload):
    """`organization.deleted` data: `{id, object, deleted}`."""

    id: ClerkId


class ClerkEmbeddedOrganization(ClerkOrganizationNames):
    """The organization copy a membership embeds: its id keys the item, the rest is the item's copy."""

    updated_at: EpochMs | None = None

    def membership_copy(self) -> MembershipOrganizationCopy:
        """This copy under the membership item's field names."""
        return {"org_name": self.name, "org_slug": self.slug, "org_updated_at": self.updated_at}


class ClerkPublicUserData(ClerkPayload):
    user_id: ClerkId


class ClerkDeletedMembership(ClerkPayload):
    """What a membership tombstone needs. A real `organizationMembership.deleted` carries the whole
    membership (role `org:member`, `role_name`, `permissions`...); only these parts are required."""

    id: ClerkId
    organization: ClerkEmbeddedOrganization
    public_user_data: ClerkPublicUserData


class ClerkMembership(ClerkDeletedMembership, ClerkRecord):
    """The Backend API OrganizationMembership object (`organizationMembership.created|updated`)."""

    role: ClerkText = None
