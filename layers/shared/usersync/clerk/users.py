"""Clerk's user: the Backend API User object, and the profile usersync mirrors of it."""

from __future__ import annotations

from typing import Protocol, TypedDict

from pydantic import Field

from usersync.clerk.payload import ClerkPayload, ClerkRecord, ClerkText


class UserProfile(TypedDict):
    """What usersync mirrors of a user, under the record's field names: the same four fields whether
    Clerk reports them (webhook, reconcile), a session token carries them, or the table holds them."""

    email: str | None
    first_name: str | None
    last_name: str | None
    image_url: str | None


class NamesAndImage(Protocol):
    """A source of a user's profile under usersync's field names (Clerk user, token claims, record)."""

    @property
    def first_name(self) -> str | None: ...
    @property
    def last_name(self) -> str | None: ...
    @property
    def image_url(self) -> str | None: ...


def user_profile(source: NamesAndImage, *, email: str | None) -> UserProfile:
    """The profile `source` describes; `email` is given because each source finds it its own way."""
    return {
        "email": email,
        "first_name": source.first_name,
        "last_name": source.last_name,
        "image_url": source.image_url,
    }


class ClerkEmailAddress(ClerkPayload):
    id: str
    email_address: str


class ClerkUser(ClerkRecord):
    """The Backend API User object carried by `user.created` / `user.updated` (and `GET /v1/users`)."""

    id: str = Field(min_length=1)
    first_name: ClerkText = None
    last_name: ClerkText = None
    image_url: ClerkText = None
    email_addresses: list[ClerkEmailAddress] = Field(default_factory=list)
    primary_email_address_id: str | None = None

    @property
    def primary_email(self) -> str | None:
        """The address whose id is `primary_email_address_id`; never simply the first one."""
        if self.primary_email_address_id is None:
            return None
        for address in self.email_addresses:
            if address.id == self.primary_email_address_id:
                return address.email_address or None
        return None

    def profile(self) -> UserProfile:
        """The profile as Clerk reports it: the email is the primary address."""
        return user_profile(self, email=self.primary_email)


class ClerkDeletedUser(ClerkPayload):
    """`user.deleted` data: only `{id, object, deleted}`, no `updated_at`."""

    id: str = Field(min_length=1)
