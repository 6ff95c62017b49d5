"""Clerk session-token verification with PyJWT: RS256 only, every claim check explicit.

The key is a PEM (`CLERK_JWT_KEY`, parsed once per container, no network) or a JWKS URL
(`CLERK_JWKS_URL`, one cached `PyJWKClient` per container). When both are set the PEM wins: it needs
no network and cannot be unavailable.

Checks, in order: size (> 8 KiB is rejected before any decoding), header `alg` == RS256 (so `none`
and HS256-with-the-public-key fail before a key is looked up), signature, `exp`/`nbf`/`iat` with one
5 s leeway, `exp`/`iat`/`sub` required, `iss` when CLERK_ISSUER is set, `azp` when
CLERK_AUTHORIZED_PARTIES is set (a token without `azp` is then denied too), then the claims model
(`email` required, a malformed `o` or `act` refused), then the session status (`sts: "pending"` is
signed out unless CLERK_ALLOW_PENDING_SESSIONS). Key material named in the token header (`jku`, `x5u`,
`jwk`, `x5c`) is never used: only `kid` is read, as a lookup name into the configured JWKS.

Session token v1 and v2 are both read, the way Clerk's JS SDK reads them (`jwtPayloadParser`): a
token with `"v": 2` takes its organization from `o` (`rol` gains the `org:` prefix), any other from
`org_id`/`org_slug`/`org_role`. Permissions (v2 `fea` + `o.per` + `o.fpm`, v1 `org_permissions`),
features (`fea`) and plans (`pla`) are decoded by `usersync.clerk.permissions` on first use; a value of
the wrong type in one of those claims grants nothing rather than refusing the token.

Only user sessions pass (CONTRACT §5). Clerk signs JWT-template, machine-to-machine and OAuth access
tokens with the same instance key; once the signature holds, the (now authentic) header and `sub` say
which kind a token is: header `cat` absent or the session category passes; the JWT-template category
only with CLERK_ACCEPT_JWT_TEMPLATES (a template token has no session binding and outlives a revoked
session); machine-to-machine, any other category, a `sub` starting `mch_`, or header `typ` `at+jwt`
(an OAuth access token) are denied with reason `not_a_session`.

Hostile input (CONTRACT §5): `verify` is the one place that decides what any token is worth. Whatever
decoding or validating a token an anonymous caller sent raises (RecursionError from deep nesting, the
4,300-digit int limit's ValueError, UnicodeDecodeError, binascii errors, pydantic errors...) ends as a
`TokenError` (reason `malformed`, the exception's type name as detail, never its message: it can quote
the token), so the caller only ever handles `TokenError`.

JWKS caching: the key set is cached for 5 minutes; a `kid` not in the cached set forces one refetch,
at most once per 5 s per container in all, whatever the kid (a flood of forged kids is at most one
fetch per 5 s; every refetch reloads the whole set, so a really rotated key is accepted at most 5 s
after it is published, whatever forged kids arrive meanwhile). Fetches time out after 2 s. An
unreachable JWKS denies (fail closed).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Mapping
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Any, TypedDict, Unpack

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from usersync.clerk.payload import ClerkPayload, ClerkText
from usersync.clerk.permissions import Authorization, Scoped, decode_org_permissions, split_by_scope
from usersync.clerk.users import UserProfile, user_profile
from usersync.runtime.budget import current_budget
from usersync.runtime.settings import AuthorizerSettings, ConfigurationError

ALGORITHM = "RS256"
LEEWAY_SECONDS = 5
MAX_TOKEN_BYTES = 8 * 1024
JWKS_FETCH_TIMEOUT_SECONDS = 2.0
JWKS_CACHE_SECONDS = 300.0
UNKNOWN_KID_REFETCH_INTERVAL_SECONDS = 5.0
_MAX_KID_LENGTH = 256


class DenyReason(StrEnum):
    """Why a request was denied: logged and returned to callers, never the token itself."""

    NO_TOKEN = "no_token"  # noqa: S105 - a reason code, not a secret
    TOO_LARGE = "too_large"
    MALFORMED = "malformed"
    BAD_ALGORITHM = "bad_algorithm"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_KEY = "unknown_key"
    JWKS_UNAVAILABLE = "jwks_unavailable"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    WRONG_ISSUER = "wrong_issuer"
    WRONG_AUDIENCE = "wrong_audience"
    WRONG_AZP = "wrong_azp"
    MISSING_CLAIM = "missing_claim"
    MISSING_EMAIL = "missing_email"
    INVALID_CLAIMS = "invalid_claims"
    USER_DELETED = "user_deleted"
    SESSION_PENDING = "session_pending"
    NOT_A_SESSION = "not_a_session"
    FORBIDDEN = "forbidden"  # a verified session missing its route's requirement (CLERK_ROUTE_REQUIREMENTS)


class DenialDetails(TypedDict, total=False):
    """What a denial's log line adds to its reason: names, never token content."""

    errorType: str  # the exception a parser raised on a malformed token
    tokenCategory: str  # the kind of token that is not a session


class TokenError(Exception):
    """The token is not acceptable; `reason` says why, `details` (names, never token content) say more.

    Both are safe to log: they never contain the token or a value read from it."""

    reason: DenyReason = DenyReason.MALFORMED

    def __init__(self, reason: DenyReason | None = None, **details: Unpack[DenialDetails]) -> None:
        if reason is not None:
            self.reason = reason
        self.details = details
        super().__init__(self.reason.value)


class NoTokenError(TokenError):
    reason = DenyReason.NO_TOKEN


class MalformedTokenError(TokenError):
    """Not a JWT we can read: garbage, too large, wrong algorithm, undecodable parts."""


class SignatureError(TokenError):
    reason = DenyReason.BAD_SIGNATURE


class KeyUnavailableError(TokenError):
    """The signing key could not be found (unknown kid) or fetched (JWKS down)."""

    reason = DenyReason.JWKS_UNAVAILABLE


class ClaimsError(TokenError):
    """Signed by our key but not acceptable now or here (expired, wrong issuer/azp, missing claims)."""


class NotASessionError(ClaimsError):
    """A genuine token of another kind (JWT template, machine-to-machine, OAuth access token)."""

    reason = DenyReason.NOT_A_SESSION


class PendingSessionError(ClaimsError):
    """A genuine token of a session with an unfinished task: signed out, as Clerk's SDKs treat it.

    Carries the verified `user_id` so the denial can name who was turned away.
    """

    reason = DenyReason.SESSION_PENDING

    def __init__(self, user_id: str) -> None:
        super().__init__()
        self.user_id = user_id


SESSION_PENDING = "pending"
# Header `cat` (Clerk's token categories, clerk/javascript packages/backend/src/tokens/, 2026-08).
SESSION_CATEGORY = "cl_B7d4PD111AAA"
JWT_TEMPLATE_CATEGORY = "cl_B7d4PD222AAA"
MACHINE_CATEGORY = "cl_B7d4PD333AAA"
MACHINE_SUBJECT_PREFIX = "mch_"
# RFC 9068: an OAuth 2.0 access token in JWT form; media types compare case-insensitively.
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})
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


def load_public_key(pem: str) -> RSAPublicKey:
    """Parse the PEM once. Env values pasted from a dashboard often carry literal `\\n`: accept them."""
    text = pem.strip().replace("\\n", "\n")
    try:
        key = load_pem_public_key(text.encode())
    except ValueError:
        raise ConfigurationError("CLERK_JWT_KEY is not a PEM public key") from None
    if not isinstance(key, RSAPublicKey):
        raise ConfigurationError("CLERK_JWT_KEY must be an RSA public key (Clerk signs RS256)")
    return key


def unverified_header(token: str) -> dict[str, Any]:
    """The JOSE header, read only to pick the key (`kid`) and refuse other algorithms early.

    Hand-written instead of `jwt.get_unverified_header`: that validates every character of the whole
    token (~100 µs for a Clerk token), and `jwt.decode` repeats the same work right after; the header
    segment alone is all we need here. PyJWT still decodes and verifies the complete token. Whatever
    the decoders raise on a hostile header is turned into a denial by `TokenVerifier.verify`.
    """
    segment = token.split(".", 1)[0]
    header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    if not isinstance(header, dict) or token.count(".") != 2:
        raise MalformedTokenError(DenyReason.MALFORMED)
    return header


class JwksKeySource:
    """Signing keys from a JWKS URL through one `PyJWKClient`, with our own unknown-kid rate limit.

    PyJWT's own cooldown (newer versions) also starts on the first fetch, which would hide a
    rotated key right after a cold start; ours only limits refetches forced by unknown kids.
    """

    def __init__(
        self,
        url: str,
        *,
        fetch_timeout: float = JWKS_FETCH_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = jwt.PyJWKClient(
            url,
            cache_keys=False,
            cache_jwk_set=True,
            lifespan=JWKS_CACHE_SECONDS,
            timeout=fetch_timeout,
            headers={"User-Agent": "usersync-authorizer"},  # some CDNs refuse urllib's default agent
        )
        self._clock = clock
        self._fetch_timeout = fetch_timeout
        self._last_forced_refetch: float | None = None
        self._lock = threading.Lock()

    def _signing_keys(self, refresh: bool) -> list[jwt.PyJWK]:
        # urllib's timeout bounds each socket operation (connect, TLS, each read), not the fetch: a third
        # of what the invocation has left each, so even a slow-but-answering endpoint ends in time.
        # (A cached key set makes no request, and then the timeout is unused.)
        remaining = current_budget().remaining()
        self._client.timeout = max(0.05, min(self._fetch_timeout, remaining / 3))
        try:
            return self._client.get_signing_keys(refresh=refresh)
        # PyJWT wraps connection errors, but a non-JSON body surfaces as ValueError and some socket
        # errors as OSError: all of them mean the key set is unavailable.
        except (jwt.PyJWTError, ValueError, OSError):
            raise KeyUnavailableError(DenyReason.JWKS_UNAVAILABLE) from None

    def key_for(self, kid: str) -> jwt.PyJWK:
        key = self._client.match_kid(self._signing_keys(refresh=False), kid)
        if key is not None:
            return key
        with self._lock:
            now = self._clock()
            last = self._last_forced_refetch
            if last is not None and now - last < UNKNOWN_KID_REFETCH_INTERVAL_SECONDS:
                raise KeyUnavailableError(DenyReason.UNKNOWN_KEY)
            # A second fetch in one invocation only when it can end in time (the first one may have
            # used most of the budget): else deny now rather than let Lambda time out.
            if not current_budget().allows(self._fetch_timeout):
                raise KeyUnavailableError(DenyReason.JWKS_UNAVAILABLE)
            self._last_forced_refetch = now
        key = self._client.match_kid(self._signing_keys(refresh=True), kid)
        if key is None:
            raise KeyUnavailableError(DenyReason.UNKNOWN_KEY)
        return key


_CLAIM_ERRORS: tuple[tuple[type[jwt.PyJWTError], DenyReason], ...] = (
    (jwt.ExpiredSignatureError, DenyReason.EXPIRED),
    (jwt.ImmatureSignatureError, DenyReason.NOT_YET_VALID),  # nbf or iat in the future
    (jwt.InvalidIssuerError, DenyReason.WRONG_ISSUER),
    (jwt.InvalidAudienceError, DenyReason.WRONG_AUDIENCE),
)


class TokenVerifier:
    """Verifies Clerk session tokens; build one per container with `from_settings`."""

    def __init__(
        self,
        *,
        public_key: RSAPublicKey | None = None,
        jwks: JwksKeySource | None = None,
        issuer: str | None = None,
        authorized_parties: tuple[str, ...] = (),
        allow_pending_sessions: bool = False,
        accept_jwt_templates: bool = False,
    ) -> None:
        if public_key is None and jwks is None:
            raise ConfigurationError(
                "a Clerk public key (CLERK_JWT_KEY) or JWKS URL (CLERK_JWKS_URL) is needed"
            )
        self._public_key = public_key
        self._jwks = jwks
        self._issuer = issuer
        self._authorized_parties = frozenset(authorized_parties)
        self._allow_pending_sessions = allow_pending_sessions
        self._accept_jwt_templates = accept_jwt_templates

    @classmethod
    def from_settings(cls, settings: AuthorizerSettings) -> TokenVerifier:
        public_key: RSAPublicKey | None = None
        jwks: JwksKeySource | None = None
        if settings.jwt_key:
            public_key = load_public_key(settings.jwt_key)
        else:
            assert settings.jwks_url is not None  # guaranteed by AuthorizerSettings
            try:
                jwks = JwksKeySource(settings.jwks_url)
            except jwt.PyJWKClientError:
                raise ConfigurationError("CLERK_JWKS_URL must be an http(s) URL") from None
        return cls(
            public_key=public_key,
            jwks=jwks,
            issuer=settings.issuer,
            authorized_parties=settings.authorized_parties,
            allow_pending_sessions=settings.allow_pending_sessions,
            accept_jwt_templates=settings.accept_jwt_templates,
        )

    def verify(self, token: str | None) -> SessionClaims:
        """Return the token's claims or raise a `TokenError` carrying the reason; nothing else.

        The one place that decides what a hostile token is worth: an exception any decoder raises on
        input an anonymous caller chose is a `malformed` denial, named by its type only (its message
        may quote the token). A verifier bug fails closed the same way, and is visible in the log.
        """
        try:
            return self._verify(token)
        except TokenError:
            raise
        except Exception as exc:  # hostile input: whatever the parsers raise is a denial
            raise MalformedTokenError(DenyReason.MALFORMED, errorType=type(exc).__name__) from None

    def _verify(self, token: str | None) -> SessionClaims:
        if not token:
            raise NoTokenError()
        if len(token) > MAX_TOKEN_BYTES or len(token.encode("utf-8", "surrogatepass")) > MAX_TOKEN_BYTES:
            raise MalformedTokenError(DenyReason.TOO_LARGE)
        header = unverified_header(token)
        if header.get("alg") != ALGORITHM:
            raise MalformedTokenError(DenyReason.BAD_ALGORITHM)
        payload = self._decode(token, self._key_for(header))
        self._check_azp(payload)
        self._check_session_header(header)  # signed: authentic now that the signature held
        claims = parse_claims(payload)
        if claims.sub.startswith(MACHINE_SUBJECT_PREFIX):
            raise NotASessionError(tokenCategory="machine")
        if claims.session_pending and not self._allow_pending_sessions:
            raise PendingSessionError(claims.sub)
        return claims

    def _check_session_header(self, header: Mapping[str, Any]) -> None:
        """Only user sessions pass: header `cat` and `typ` name every other kind of Clerk token."""
        typ = header.get("typ")
        if isinstance(typ, str) and typ.lower() in ACCESS_TOKEN_TYPES:
            raise NotASessionError(tokenCategory="oauth_access_token")
        if "cat" not in header or header["cat"] == SESSION_CATEGORY:
            return
        category = header["cat"]
        if category == JWT_TEMPLATE_CATEGORY:
            if self._accept_jwt_templates:
                return
            raise NotASessionError(tokenCategory="jwt_template")
        # Machine-to-machine, or a category Clerk adds later: not a session until we know better.
        raise NotASessionError(tokenCategory="machine" if category == MACHINE_CATEGORY else "unknown")

    def _key_for(self, header: Mapping[str, Any]) -> RSAPublicKey:
        if self._public_key is not None:
            return self._public_key
        assert self._jwks is not None
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > _MAX_KID_LENGTH:
            raise KeyUnavailableError(DenyReason.UNKNOWN_KEY)
        key = self._jwks.key_for(kid).key
        if not isinstance(key, RSAPublicKey):
            raise KeyUnavailableError(DenyReason.UNKNOWN_KEY)
        return key

    def _decode(self, token: str, key: RSAPublicKey) -> dict[str, Any]:
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                issuer=self._issuer,
                leeway=LEEWAY_SECONDS,
                # PyJWT accepts a token without exp unless told otherwise.
                options={"require": ["exp", "iat", "sub"]},
            )
        except jwt.InvalidSignatureError:
            raise SignatureError() from None
        except jwt.MissingRequiredClaimError as exc:
            reason = DenyReason.WRONG_ISSUER if exc.claim == "iss" else DenyReason.MISSING_CLAIM
            raise ClaimsError(reason) from None
        # No InvalidAlgorithmError branch: `verify` refused every header `alg` but RS256 before this.
        except jwt.PyJWTError as exc:
            for error_type, reason in _CLAIM_ERRORS:
                if isinstance(exc, error_type):
                    raise ClaimsError(reason) from None
            if isinstance(exc, jwt.DecodeError):
                raise MalformedTokenError(DenyReason.MALFORMED) from None
            raise ClaimsError(DenyReason.INVALID_CLAIMS) from None
        return payload

    def _check_azp(self, payload: Mapping[str, Any]) -> None:
        """Clerk's CSRF guard: the token's origin must be one we serve (absent `azp` fails too)."""
        if not self._authorized_parties:
            return
        azp = payload.get("azp")
        if not isinstance(azp, str) or azp not in self._authorized_parties:
            raise ClaimsError(DenyReason.WRONG_AZP)
