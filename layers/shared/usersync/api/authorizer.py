"""The Lambda authorizer: find the token in any of API Gateway's three event formats, verify it,
sync the user compare-first, and answer in the shape that format expects.

- HTTP API REQUEST, payload 2.0 (`version: "2.0"`): simple response `{"isAuthorized", "context"}`;
  a denial is `isAuthorized: false`, which API Gateway turns into 403. (A request without the
  identity-source header never reaches us: API Gateway answers 401 itself.)
- REST TOKEN (`authorizationToken`) and REST REQUEST (`headers`, also HTTP API payload 1.0): an IAM
  policy with `principalId` = userId. An Allow names `arn:...:api/stage/*/*`, not just the called
  method, because API Gateway caches the policy per token and reuses it for every route. A missing or
  invalid token raises `Unauthorized` (API Gateway's contract for 401); a valid token of a deleted
  user returns a Deny policy for the called method (403: we know who it is, they may not enter). A
  pending session (`sts: "pending"`) is signed out, as in Clerk's SDKs: 401 like a missing token (the
  client finishes its session task and gets a new token), its verified userId still logged.

Context values are strings; `userId` and `email` are always present, `firstName`, `lastName`,
`imageUrl`, `sessionId`, `orgId`, `orgSlug`, `orgRole` and `actorId` only when the token carries
them (API Gateway needs no placeholder for an absent key).

"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from usersync.api.http import event_cookies, lower_headers
from usersync.clerk.session_claims import SessionClaims
from usersync.clerk.token_errors import DenyReason, PendingSessionError, TokenError
from usersync.clerk.tokens import TokenVerifier
from usersync.runtime.metrics import SyncMetric, SyncSource, emit_metric
from usersync.runtime.observability import logger
from usersync.store.users import UserRepository
from usersync.sync.users import (
    SyncResult,
    UserCache,
    UserDeletedError,
    record_failed_attempt,
    record_from_claims,
    sync_from_token,
)

SESSION_COOKIE = "__session"
# Plain dicts, not Powertools' APIGatewayAuthorizer* data classes: +39 modules, 17.4 ms median cold import.


class EventFormat(StrEnum):
    HTTP_API = "http-api"
    REST_TOKEN = "rest-token"  # noqa: S105 - a format name, not a secret
    REST_REQUEST = "rest-request"


class Unauthorized(Exception):
    """Raised for REST denials without a verified caller: API Gateway maps exactly this message to 401."""

    def __init__(self) -> None:
        super().__init__("Unauthorized")


@dataclass(frozen=True)
class AuthorizerRequest:
    format: EventFormat
    token: str | None
    method_arn: str | None = None


def bearer_token(value: Any) -> str | None:
    """`Bearer <jwt>` (scheme case-insensitive, any whitespace), or a bare JWT as some clients and REST
    TOKEN identity sources send it (Clerk's SDK accepts both); any other scheme yields None."""
    if not isinstance(value, str):
        return None
    parts = value.split()
    if len(parts) == 2 and parts[0].lower() == "bearer":
        return parts[1]
    if len(parts) == 1 and parts[0].count(".") == 2:
        return parts[0]
    return None


def parse_authorizer_event(event: Any) -> AuthorizerRequest:
    """The token (Authorization header first, then the `__session` cookie) and the event format."""
    if not isinstance(event, Mapping):
        return AuthorizerRequest(EventFormat.HTTP_API, None)
    method_arn = event.get("methodArn") if isinstance(event.get("methodArn"), str) else None
    if event.get("type") == "TOKEN":
        return AuthorizerRequest(
            EventFormat.REST_TOKEN, bearer_token(event.get("authorizationToken")), method_arn
        )
    headers = lower_headers(event.get("headers"))
    if event.get("version") == "2.0":
        fmt = EventFormat.HTTP_API
    else:
        fmt = EventFormat.REST_REQUEST if method_arn else EventFormat.HTTP_API
    token = (
        bearer_token(headers.get("authorization"))
        or event_cookies(event, headers).get(SESSION_COOKIE)
        or None
    )
    return AuthorizerRequest(fmt, token, method_arn)


def api_wildcard_arn(method_arn: str) -> str:
    """`arn:aws:execute-api:region:account:api/stage/VERB/path` → `.../api/stage/*/*`."""
    parts = method_arn.split("/")
    return "/".join(parts[:2]) + "/*/*" if len(parts) >= 3 else method_arn


def _policy(principal_id: str, effect: str, resource: str) -> dict[str, Any]:
    return {
        "principalId": principal_id,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}],
        },
    }


def allow_response(request: AuthorizerRequest, claims: SessionClaims) -> dict[str, Any]:
    context = claims.context()
    if request.format is EventFormat.HTTP_API or request.method_arn is None:
        return {"isAuthorized": True, "context": context}
    return {**_policy(claims.sub, "Allow", api_wildcard_arn(request.method_arn)), "context": context}


def deny_response(request: AuthorizerRequest, user_id: str | None = None) -> dict[str, Any]:
    """The denial in the event's shape; raises `Unauthorized` for REST callers we could not identify."""
    if request.format is EventFormat.HTTP_API or request.method_arn is None:
        return {"isAuthorized": False}
    if user_id is None:
        raise Unauthorized()
    return _policy(user_id, "Deny", request.method_arn)


class Authorizer:
    """Verify, sync compare-first, answer. One per container (it holds the verifier and the cache)."""

    def __init__(self, verifier: TokenVerifier, repository: UserRepository, cache: UserCache) -> None:
        self._verifier = verifier
        self._repository = repository
        self._cache = cache

    def handle(self, event: Any) -> dict[str, Any]:
        request = parse_authorizer_event(event)
        try:
            claims = self._verifier.verify(request.token)
        except PendingSessionError as exc:
            return self._deny(request, exc.reason, verified_user_id=exc.user_id, signed_out=True)
        except TokenError as exc:
            return self._deny(request, exc.reason)
        try:
            result = sync_from_token(self._repository, record_from_claims(claims), self._cache)
        except UserDeletedError:
            return self._deny(request, DenyReason.USER_DELETED, verified_user_id=claims.sub, signed_out=False)
        except Exception:  # noqa: BLE001 - the one outcome decision: a valid token is never denied by a bug
            # Anything unexpected in the sync (a bug) must not lock out a caller whose token is valid:
            # count it as a failed attempt (both metrics) so /health and the alarm see it.
            record_failed_attempt(SyncSource.AUTHORIZER)
            logger.exception("authorizer sync failed unexpectedly", extra={"userId": claims.sub})
            result = SyncResult.FAILED
        # An INFO line per allowed request would cost more than the verification: API Gateway's
        # access log already records every call. Writes are INFO, denials WARNING, failures ERROR.
        extra = {"userId": claims.sub, "sync": result.value, "eventFormat": request.format.value}
        if result is SyncResult.WRITTEN:
            logger.info("authorizer allowed and synced the user", extra=extra)
        else:
            logger.debug("authorizer allowed", extra=extra)
        return allow_response(request, claims)

    def _deny(
        self,
        request: AuthorizerRequest,
        reason: DenyReason,
        *,
        verified_user_id: str | None = None,
        signed_out: bool = True,
    ) -> dict[str, Any]:
        """Count, log, answer. `signed_out` callers get REST's 401; a known user refused gets a Deny (403)."""
        emit_metric(SyncMetric.AUTHORIZER_DENIED, SyncSource.AUTHORIZER)
        extra = {"reason": reason.value, "eventFormat": request.format.value}
        if verified_user_id is not None:  # a verified subject only: an unverified one proves nothing
            extra["userId"] = verified_user_id
        logger.warning("authorizer denied", extra=extra)
        return deny_response(request, None if signed_out else verified_user_id)
