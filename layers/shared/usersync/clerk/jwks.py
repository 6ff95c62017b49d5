"""Signing keys from Clerk's JWKS URL (`CLERK_JWKS_URL`) for the verifier (usersync.clerk.tokens).

JWKS caching: the key set is cached for 5 minutes; a `kid` not in the cached set forces one refetch,
at most once per 5 s per container in all, whatever the kid (a flood of forged kids is at most one
fetch per 5 s; every refetch reloads the whole set, so a really rotated key is accepted at most 5 s
after it is published, whatever forged kids arrive meanwhile). Fetches time out after 2 s. An
unreachable JWKS denies (fail closed).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import jwt

from usersync.clerk.token_errors import DenyReason, KeyUnavailableError
from usersync.runtime.budget import current_budget

JWKS_FETCH_TIMEOUT_SECONDS = 2.0
JWKS_CACHE_SECONDS = 300.0
UNKNOWN_KID_REFETCH_INTERVAL_SECONDS = 5.0


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
