"""The claims of a verified Clerk session token that usersync reads, and how they are validated.

Session token v1 and v2 are both read, the way Clerk's JS SDK reads them (`jwtPayloadParser`): a
token with `"v": 2` takes its organization from `o` (`rol` gains the `org:` prefix), any other from
`org_id`/`org_slug`/`org_role`. Organization permissions (`per`, `fpm`, `fea`, `org_permissions`) are
deliberately not decoded: Clerk changed their encoding in 2025 and says to use an SDK for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from usersync.clerk.payload import ClerkPayload, ClerkText
from usersync.clerk.token_errors import ClaimsError, DenyReason
from usersync.clerk.users import UserProfile, user_profile

SESSION_PENDING = "pending"
V2 = 2
ORG_ROLE_PREFIX = "org:"
_V1_ORG_CLAIMS = ("org_id", "org_slug", "org_role")


class OrganizationClaim(ClerkPayload):
    """v2 `o`: the active organization. `per`/`fpm` are left undecoded (ignored with unknown keys).

    A claim shortcode with no value renders as "" (or null): both mean the claim is absent."""

    id: str = Field(min_length=1)
    slg: ClerkText = None
    rol: ClerkText = None


class ActorClaim(ClerkPayload):
    """`act`: present while someone (`sub`, usually a dashboard admin) impersonates the user."""

    sub: str = Field(min_length=1)


class ActiveOrganization(BaseModel):
    """The organization the session acts in, normalised as Clerk's SDKs report it."""

    model_config = ConfigDict(frozen=True)

    id: str
    slug: str | None = None
    role: str | None = None  # always `org:`-prefixed


def _org_role(role: str | None) -> str | None:
    if role is None:
        return None
    return role if role.startswith(ORG_ROLE_PREFIX) else ORG_ROLE_PREFIX + role


class SessionClaims(ClerkPayload):
    """The claims usersync reads: Clerk defaults (`sub`, `sid`, `iat`, `v`, `sts`, `o`, `act`, v1's
    `org_*`) plus the custom profile claims. Every other claim is ignored.
    """

    model_config = ConfigDict(populate_by_name=True)  # merged with ClerkPayload's

    sub: str = Field(min_length=1, max_length=255)
    email: str = Field(min_length=1, max_length=320)
    first_name: ClerkText = Field(default=None, alias="firstName")
    last_name: ClerkText = Field(default=None, alias="lastName")
    image_url: ClerkText = Field(default=None, alias="imageUrl")
    sid: ClerkText = None
    iat: int
    v: int | None = Field(default=None, strict=True)  # Clerk writes 2; "2" or true is not a version
    sts: ClerkText = None
    o: OrganizationClaim | None = None
    act: ActorClaim | None = None
    org_id: ClerkText = None
    org_slug: ClerkText = None
    org_role: ClerkText = None

    @model_validator(mode="before")
    @classmethod
    def _organization_claims_of_this_version(cls, data: Any) -> Any:
        """Read only the organization claims of the token's version, as Clerk's JS SDK does: in a v2
        token `org_*` are someone's custom claims, in a v1 token `o` is."""
        if not isinstance(data, Mapping):
            return data
        ignored = _V1_ORG_CLAIMS if data.get("v") == V2 else ("o",)
        return {name: value for name, value in data.items() if name not in ignored}

    @property
    def session_pending(self) -> bool:
        """`sts: "pending"`: the session has a task to finish (choose-organization, reset-password).
        No `sts` (v1, or an instance that has not opted in) means active."""
        return self.sts == SESSION_PENDING

    @property
    def organization(self) -> ActiveOrganization | None:
        if self.v == V2:
            if self.o is None:
                return None
            # Clerk's SDK: `orgRole = "org:" + o.rol`; v2 strips the prefix to keep tokens small.
            return ActiveOrganization(id=self.o.id, slug=self.o.slg, role=_org_role(self.o.rol))
        if self.org_id is None:
            return None
        return ActiveOrganization(id=self.org_id, slug=self.org_slug, role=_org_role(self.org_role))

    @property
    def actor_id(self) -> str | None:
        return self.act.sub if self.act is not None else None

    def profile(self) -> UserProfile:
        """The custom profile claims (`email`, `firstName`, `lastName`, `imageUrl`)."""
        return user_profile(self, email=self.email)

    def context(self) -> dict[str, str]:
        """API Gateway authorizer context: strings only; absent optional claims are omitted.

        Without an active organization none of `orgId`, `orgSlug`, `orgRole` is present.
        """
        organization = self.organization
        values = {
            "userId": self.sub,
            "email": self.email,
            "firstName": self.first_name,
            "lastName": self.last_name,
            "imageUrl": self.image_url,
            "sessionId": self.sid,
            "orgId": organization.id if organization else None,
            "orgSlug": organization.slug if organization else None,
            "orgRole": organization.role if organization else None,
            "actorId": self.actor_id,
        }
        return {name: value for name, value in values.items() if value is not None}


def parse_claims(payload: Mapping[str, Any]) -> SessionClaims:
    """Validate verified claims; no email is its own reason (Clerk's claim template is missing it)."""
    email = payload.get("email")
    if email is None or email == "":
        raise ClaimsError(DenyReason.MISSING_EMAIL)
    try:
        return SessionClaims.model_validate(payload)
    except ValidationError:
        raise ClaimsError(DenyReason.INVALID_CLAIMS) from None
