"""Clerk session-token verification with PyJWT: RS256 only, every claim check explicit.

The key is a PEM (`CLERK_JWT_KEY`, parsed once per container, no network) or a JWKS URL
(`CLERK_JWKS_URL`, one cached `PyJWKClient` per container, usersync.clerk.jwks). When both are set the
PEM wins: it needs no network and cannot be unavailable.

Checks, in order: size (> 8 KiB is rejected before any decoding), header `alg` == RS256 (so `none`
and HS256-with-the-public-key fail before a key is looked up), signature, `exp`/`nbf`/`iat` with one
5 s leeway, `exp`/`iat`/`sub` required, `iss` when CLERK_ISSUER is set, `azp` when
CLERK_AUTHORIZED_PARTIES is set (a token without `azp` is then denied too), then the claims model
(`email` required, a malformed `o` or `act` refused; usersync.clerk.session_claims), then the session
status (`sts: "pending"` is signed out unless CLERK_ALLOW_PENDING_SESSIONS). Key material named in the
token header (`jku`, `x5u`, `jwk`, `x5c`) is never used: only `kid` is read, as a lookup name into the
configured JWKS. Every denial is a `TokenError` with its reason (usersync.clerk.token_errors).

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
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from usersync.clerk.jwks import JwksKeySource
from usersync.clerk.session_claims import SessionClaims, parse_claims
from usersync.clerk.token_errors import (
    ClaimsError,
    DenyReason,
    KeyUnavailableError,
    MalformedTokenError,
    NotASessionError,
    NoTokenError,
    PendingSessionError,
    SignatureError,
    TokenError,
)
from usersync.runtime.settings import AuthorizerSettings, ConfigurationError

ALGORITHM = "RS256"
LEEWAY_SECONDS = 5
MAX_TOKEN_BYTES = 8 * 1024
_MAX_KID_LENGTH = 256
# Header `cat` (Clerk's token categories, clerk/javascript packages/backend/src/tokens/, 2026-08).
SESSION_CATEGORY = "cl_B7d4PD111AAA"
JWT_TEMPLATE_CATEGORY = "cl_B7d4PD222AAA"
MACHINE_CATEGORY = "cl_B7d4PD333AAA"
MACHINE_SUBJECT_PREFIX = "mch_"
# RFC 9068: an OAuth 2.0 access token in JWT form; media types compare case-insensitively.
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})


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
        except Exception as exc:  # noqa: BLE001 - hostile input: whatever the parsers raise is a denial
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
