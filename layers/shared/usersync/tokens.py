"""Clerk session-token verification with PyJWT: RS256 only, every claim check explicit.

The key is a PEM (`CLERK_JWT_KEY`, parsed once per container, no network) or a JWKS URL
(`CLERK_JWKS_URL`, one cached `PyJWKClient` per container). When both are set the PEM wins: it needs
no network and cannot be unavailable.

Checks, in order: size (> 8 KiB is rejected before any decoding), header `alg` == RS256 (so `none`
and HS256-with-the-public-key fail before a key is looked up), signature, `exp`/`nbf`/`iat` with one
5 s leeway, `exp`/`iat`/`sub` required, `iss` when CLERK_ISSUER is set, `azp` when
CLERK_AUTHORIZED_PARTIES is set (a token without `azp` is then denied too), then the claims model
(`email` required). Key material named in the token header (`jku`, `x5u`, `jwk`, `x5c`) is never
used: only `kid` is read, as a lookup name into the configured JWKS.

JWKS caching: the key set is cached for 5 minutes; a `kid` not in the cached set forces one refetch,
at most once per 60 s per container (a flood of forged kids cannot turn into a flood of fetches; the
price is that a second rotation within the same minute waits for the next window). Fetches time out
after 2 s. An unreachable JWKS denies (fail closed).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from usersync.models import SyncSource, UserRecord
from usersync.settings import AuthorizerSettings, ConfigurationError

ALGORITHM = "RS256"
LEEWAY_SECONDS = 5
MAX_TOKEN_BYTES = 8 * 1024
JWKS_FETCH_TIMEOUT_SECONDS = 2.0
JWKS_CACHE_SECONDS = 300.0
UNKNOWN_KID_REFETCH_INTERVAL_SECONDS = 60.0
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


class TokenError(Exception):
    """The token is not acceptable; `reason` says why (safe to log: it never contains the token)."""

    reason: DenyReason = DenyReason.MALFORMED

    def __init__(self, reason: DenyReason | None = None) -> None:
        if reason is not None:
            self.reason = reason
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


def _blank_to_none(value: Any) -> Any:
    return None if value == "" else value


class SessionClaims(BaseModel):
    """The claims usersync reads: Clerk defaults (`sub`, `sid`, `iat`) plus the custom profile claims.

    Clerk renders a shortcode with no value as an empty string or null; both mean absent.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    sub: str = Field(min_length=1, max_length=255)
    email: str = Field(min_length=1, max_length=320)
    first_name: str | None = Field(default=None, alias="firstName")
    last_name: str | None = Field(default=None, alias="lastName")
    image_url: str | None = Field(default=None, alias="imageUrl")
    sid: str | None = None
    iat: int

    _blanks = field_validator("first_name", "last_name", "image_url", "sid", mode="before")(_blank_to_none)

    def to_record(self) -> UserRecord:
        """The user as the token describes it, ordered by the token's issue time (ms)."""
        return UserRecord(
            user_id=self.sub,
            email=self.email,
            first_name=self.first_name,
            last_name=self.last_name,
            image_url=self.image_url,
            updated_at=self.iat * 1000,
            source=SyncSource.AUTHORIZER,
        )

    def context(self) -> dict[str, str]:
        """API Gateway authorizer context: strings only; absent optional claims are omitted."""
        values = {
            "userId": self.sub,
            "email": self.email,
            "firstName": self.first_name,
            "lastName": self.last_name,
            "imageUrl": self.image_url,
            "sessionId": self.sid,
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
    segment alone is all we need here. PyJWT still decodes and verifies the complete token.
    """
    segment = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, TypeError):  # binascii.Error and JSONDecodeError are ValueErrors
        raise MalformedTokenError(DenyReason.MALFORMED) from None
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
        cache_seconds: float = JWKS_CACHE_SECONDS,
        refetch_interval: float = UNKNOWN_KID_REFETCH_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = jwt.PyJWKClient(
            url,
            cache_keys=False,
            cache_jwk_set=True,
            lifespan=cache_seconds,
            timeout=fetch_timeout,
            headers={"User-Agent": "usersync-authorizer"},  # some CDNs refuse urllib's default agent
        )
        self._refetch_interval = refetch_interval
        self._clock = clock
        self._last_forced_refetch: float | None = None
        self._lock = threading.Lock()

    def _signing_keys(self, refresh: bool) -> list[jwt.PyJWK]:
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
            if last is not None and now - last < self._refetch_interval:
                raise KeyUnavailableError(DenyReason.UNKNOWN_KEY)
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
    ) -> None:
        if public_key is None and jwks is None:
            raise ConfigurationError(
                "a Clerk public key (CLERK_JWT_KEY) or JWKS URL (CLERK_JWKS_URL) is needed"
            )
        self._public_key = public_key
        self._jwks = jwks
        self._issuer = issuer
        self._authorized_parties = frozenset(authorized_parties)

    @classmethod
    def from_settings(cls, settings: AuthorizerSettings) -> TokenVerifier:
        if settings.jwt_key:
            return cls(
                public_key=load_public_key(settings.jwt_key),
                issuer=settings.issuer,
                authorized_parties=settings.authorized_parties,
            )
        assert settings.jwks_url is not None  # guaranteed by AuthorizerSettings
        try:
            jwks = JwksKeySource(settings.jwks_url)
        except jwt.PyJWKClientError:
            raise ConfigurationError("CLERK_JWKS_URL must be an http(s) URL") from None
        return cls(jwks=jwks, issuer=settings.issuer, authorized_parties=settings.authorized_parties)

    def verify(self, token: str | None) -> SessionClaims:
        """Return the token's claims or raise a `TokenError` carrying the reason."""
        if not token:
            raise NoTokenError()
        if len(token) > MAX_TOKEN_BYTES or len(token.encode("utf-8", "surrogatepass")) > MAX_TOKEN_BYTES:
            raise MalformedTokenError(DenyReason.TOO_LARGE)
        header = unverified_header(token)
        if header.get("alg") != ALGORITHM:
            raise MalformedTokenError(DenyReason.BAD_ALGORITHM)
        payload = self._decode(token, self._key_for(header))
        self._check_azp(payload)
        return parse_claims(payload)

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
        except jwt.InvalidAlgorithmError:
            raise MalformedTokenError(DenyReason.BAD_ALGORITHM) from None
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
