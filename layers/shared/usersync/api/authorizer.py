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
`imageUrl`, `sessionId`, `orgId`, `orgSlug`, `orgRole`, `actorId`, `orgPermissions` (decoded,
comma-separated), `features` and `plan` only when the token carries them (API Gateway needs no
placeholder for an absent key).

Route requirements (`CLERK_ROUTE_REQUIREMENTS`, `usersync.api.route_requirements`): checked after
verification; a session that misses its route's requirement is denied with reason `forbidden`, the route
and the missing condition logged. HTTP API answers 403 (the template puts `$context.routeKey` into the
cache key, so a cached answer never crosses routes). A REST answer is an IAM policy that API Gateway
caches per token and reuses for every route: with requirements configured it allows the API and adds
one Deny per configured resource this caller misses, so the cached policy is right on every route.

"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from usersync.api.http import event_cookies, lower_headers
from usersync.api.route_requirements import RouteRequirements
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

    def __init__(
        self,
        verifier: TokenVerifier,
        repository: UserRepository,
        cache: UserCache,
        requirements: RouteRequirements | None = None,
    ) -> None:
        self._verifier = verifier
        self._repository = repository
        self._cache = cache
        self._requirements = requirements if requirements else None  # empty = today's rule everywhere

    def handle(self, event: Any) -> dict[str, Any]:
        request = parse_authorizer_event(event)
        try:
            claims = self._verifier.verify(request.token)
        except PendingSessionError as exc:
            return self._deny(request, exc.reason, verified_user_id=exc.user_id, signed_out=True)
        except TokenError as exc:  # the verifier raises nothing else, whatever the token holds
            return self._deny(request, exc.reason, **exc.details)
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
        if self._requirements is None:
            response = allow_response(request, claims)
        else:
            response, forbidden = self._with_requirements(event, request, claims)
            if forbidden:
                return response
        if result is SyncResult.WRITTEN:
            logger.info("authorizer allowed and synced the user", extra=extra)
        else:
            logger.debug("authorizer allowed", extra=extra)
        return response

    def _with_requirements(
        self, event: Any, request: AuthorizerRequest, claims: SessionClaims
    ) -> tuple[dict[str, Any], bool]:
        """(answer, whether the called route is forbidden) for a verified caller, by the route requirements.

        HTTP API: the called route's requirement decides (403 when missed). REST: the answer is always
        a policy valid for every route (Allow the API, Deny each configured resource the caller misses),
        because API Gateway caches it per token; the called route is forbidden when a Deny covers it.
        """
        assert self._requirements is not None
        if request.format is EventFormat.HTTP_API or request.method_arn is None:
            route = self._requirements.route_for_event(event, None) if isinstance(event, Mapping) else None
            missing = None if route is None else claims.authorization.missing(route[1])
            if route is None or missing is None:
                return allow_response(request, claims), False
            denial = self._deny(
                request,
                DenyReason.FORBIDDEN,
                verified_user_id=claims.sub,
                signed_out=False,
                route=route[0],
                missing=missing,
            )
            return denial, True
        method_arn = request.method_arn
        response = allow_response(request, claims)
        denials = self._requirements.rest_denials(claims.authorization)
        if not denials:
            return response, False
        prefix, _, suffix = method_arn.partition("/")
        stage, _, suffix = suffix.partition("/")
        response["policyDocument"]["Statement"].append(
            {
                "Action": "execute-api:Invoke",
                "Effect": "Deny",
                "Resource": [f"{prefix}/{stage}/{pattern}" for _key, pattern, _missing in denials],
            }
        )
        denied = {key: missing for key, _pattern, missing in denials}
        called = self._requirements.route_for_event(event, method_arn) if isinstance(event, Mapping) else None
        key = called[0] if called is not None and called[0] in denied else None
        key = key or self._requirements.covering(list(denied), suffix)
        if key is None:
            return response, False
        self._log_denial(DenyReason.FORBIDDEN, request.format, claims.sub, route=key, missing=denied[key])
        return response, True

    def _deny(
        self,
        request: AuthorizerRequest,
        reason: DenyReason,
        *,
        verified_user_id: str | None = None,
        signed_out: bool = True,
        **details: str,
    ) -> dict[str, Any]:
        """Count, log, answer. `signed_out` callers get REST's 401; a known user refused gets a Deny (403).

        `details` name what went wrong (an exception type, a token category, the route and the missing
        condition), never token content."""
        self._log_denial(reason, request.format, verified_user_id, **details)
        return deny_response(request, None if signed_out else verified_user_id)

    @staticmethod
    def _log_denial(
        reason: DenyReason, event_format: EventFormat, verified_user_id: str | None, /, **details: str
    ) -> None:
        emit_metric(SyncMetric.AUTHORIZER_DENIED, SyncSource.AUTHORIZER)
        extra = {"reason": reason.value, "eventFormat": event_format.value, **details}
        if verified_user_id is not None:  # a verified subject only: an unverified one proves nothing
            extra["userId"] = verified_user_id
        logger.warning("authorizer denied", extra=extra)
