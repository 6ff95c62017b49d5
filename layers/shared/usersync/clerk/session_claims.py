"""The claims of a verified Clerk session token that usersync reads, and how they are validated.

Session token v1 and v2 are both read, the way Clerk's JS SDK reads them (`jwtPayloadParser`): a
token with `"v": 2` takes its organization from `o` (`rol` gains the `org:` prefix), any other from
`org_id`/`org_slug`/`org_role`. Permissions (v2 `fea` + `o.per` + `o.fpm`, v1 `org_permissions`),
features (`fea`) and plans (`pla`) are decoded by `usersync.clerk.permissions` on first use; a value of
the wrong type in one of those claims grants nothing rather than refusing the token.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from usersync.clerk.payload import ClerkPayload, ClerkText
from usersync.clerk.permissions import Authorization, Scoped, decode_org_permissions, split_by_scope
from usersync.clerk.token_errors import ClaimsError, DenyReason
from usersync.clerk.users import UserProfile, user_profile

SESSION_PENDING = "pending"
V2 = 2
ORG_ROLE_PREFIX = "org:"
_V1_ORG_CLAIMS = ("org_id", "org_slug", "org_role", "org_permissions")


def _text_or_absent(value: Any) -> Any:
    """Authorization claims: anything but a non-empty string is absent (grants nothing, denies nothing)."""
    return value if isinstance(value, str) and value else None


def _strings_or_absent(value: Any) -> Any:
    """v1 `org_permissions`: a list; its non-string entries are dropped, any other type is absent."""
    return tuple(item for item in value if isinstance(item, str)) if isinstance(value, list) else None


# Lenient on purpose: these claims only ever grant, so an unreadable one is read as absent (fail closed
# for the routes that require it) instead of denying the session everywhere.
AuthorizationText = Annotated[str | None, BeforeValidator(_text_or_absent)]
AuthorizationList = Annotated[tuple[str, ...] | None, BeforeValidator(_strings_or_absent)]


class OrganizationClaim(ClerkPayload):
    """v2 `o`: the active organization, its role (`rol`, no `org:` prefix) and permission masks.

    A claim shortcode with no value renders as "" (or null): both mean the claim is absent."""

    id: str = Field(min_length=1)
    slg: ClerkText = None
    rol: ClerkText = None
    per: AuthorizationText = None
    fpm: AuthorizationText = None


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
    org_permissions: AuthorizationList = None
    fea: AuthorizationText = None
    pla: AuthorizationText = None

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

    @cached_property
    def organization(self) -> ActiveOrganization | None:
        if self.v == V2:
            if self.o is None:
                return None
            # Clerk's SDK: `orgRole = "org:" + o.rol`; v2 strips the prefix to keep tokens small.
            return ActiveOrganization(id=self.o.id, slug=self.o.slg, role=_org_role(self.o.rol))
        if self.org_id is None:
            return None
        return ActiveOrganization(id=self.org_id, slug=self.org_slug, role=_org_role(self.org_role))

    @cached_property
    def org_permissions_decoded(self) -> tuple[str, ...] | None:
        """The active organization's permissions (`org:<feature>:<permission>`), None without one."""
        if self.v == V2:
            if self.o is None:
                return None
            return decode_org_permissions(self.fea, self.o.per, self.o.fpm)
        if self.org_id is None:
            return None
        return self.org_permissions or ()

    @cached_property
    def feature_scopes(self) -> Scoped | None:
        """`fea` by scope; None when absent or unreadable."""
        return split_by_scope(self.fea)

    @cached_property
    def plan_scopes(self) -> Scoped | None:
        """`pla` by scope; None when absent or unreadable."""
        return split_by_scope(self.pla)

    @cached_property
    def authorization(self) -> Authorization:
        """What Clerk's `has()` reads: decoded once per token, on first use."""
        organization = self.organization
        permissions = self.org_permissions_decoded
        return Authorization(
            org_id=organization.id if organization else None,
            org_role=organization.role if organization else None,
            org_permissions=permissions,
            features=self.feature_scopes,
            plans=self.plan_scopes,
        )

    @property
    def actor_id(self) -> str | None:
        return self.act.sub if self.act is not None else None

    def profile(self) -> UserProfile:
        """The custom profile claims (`email`, `firstName`, `lastName`, `imageUrl`)."""
        return user_profile(self, email=self.email)

    def context(self) -> dict[str, str]:
        """API Gateway authorizer context: strings only; absent optional claims are omitted.

        Without an active organization none of `orgId`, `orgSlug`, `orgRole`, `orgPermissions` is
        present. `features` and `plan` are the `fea` and `pla` claims as signed (scopes kept, so a
        handler's `has()` reads them by the same rules), only when readable.
        """
        organization = self.organization
        permissions = self.org_permissions_decoded
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
            "orgPermissions": ",".join(permissions) if permissions else None,
            "features": self.fea if self.feature_scopes is not None else None,
            "plan": self.pla if self.plan_scopes is not None else None,
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
