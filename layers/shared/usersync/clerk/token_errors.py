"""Why a session token is refused: `DenyReason` and the `TokenError` family every check raises.

Apart from the verifier (usersync.clerk.tokens) so the claims models and the JWKS key source raise the
same errors without importing the verifier; the reasons are logged and counted, never the token.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypedDict, Unpack


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

    Both are safe to log: they never contain the token or a value read from it. A subclass names its
    default reason as a class keyword (`class NoTokenError(TokenError, reason=DenyReason.NO_TOKEN)`);
    without one it keeps its parent's."""

    reason: DenyReason = DenyReason.MALFORMED

    def __init_subclass__(cls, *, reason: DenyReason | None = None) -> None:
        super().__init_subclass__()
        if reason is not None:
            cls.reason = reason

    def __init__(self, reason: DenyReason | None = None, **details: Unpack[DenialDetails]) -> None:
        if reason is not None:
            self.reason = reason
        self.details = details
        super().__init__(self.reason.value)


class NoTokenError(TokenError, reason=DenyReason.NO_TOKEN):
    """The request carries no session token (no cookie, no bearer token)."""


class MalformedTokenError(TokenError):
    """Not a JWT we can read: garbage, too large, wrong algorithm, undecodable parts."""


class SignatureError(TokenError, reason=DenyReason.BAD_SIGNATURE):
    """The signature does not verify with the key the token's `kid` names."""


class KeyUnavailableError(TokenError, reason=DenyReason.JWKS_UNAVAILABLE):
    """The signing key could not be found (unknown kid) or fetched (JWKS down)."""


class ClaimsError(TokenError):
    """Signed by our key but not acceptable now or here (expired, wrong issuer/azp, missing claims)."""


class NotASessionError(ClaimsError, reason=DenyReason.NOT_A_SESSION):
    """A genuine token of another kind (JWT template, machine-to-machine, OAuth access token)."""


class PendingSessionError(ClaimsError, reason=DenyReason.SESSION_PENDING):
    """A genuine token of a session with an unfinished task: signed out, as Clerk's SDKs treat it.

    Carries the verified `user_id` so the denial can name who was turned away.
    """

    def __init__(self, user_id: str) -> None:
        super().__init__()
        self.user_id = user_id
