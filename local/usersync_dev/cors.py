"""CORS as an API Gateway HTTP API applies its `CorsConfiguration`, for the local stack.

The rules, from "Configure CORS for HTTP APIs in API Gateway"
(https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-cors.html):

- With a CORS configuration API Gateway answers preflight `OPTIONS` requests itself, even without an
  OPTIONS route: no authorizer, no integration. A preflight is an `OPTIONS` request carrying both
  `Origin` and `Access-Control-Request-Method`; without them it is an ordinary request (routed as any
  other, so 404 here, where no route takes OPTIONS).
- CORS headers are returned only to a request with an `Origin` header; API Gateway adds the configured
  ones to the integration's response and ignores CORS headers the integration returns itself.
- `AllowOrigins` entries are exact origins, `*` (any origin), or a scheme wildcard (`https://*`,
  `http://*`).

Where that page is silent, these choices (what browsers need; not checked against a deployed API):
- the preflight answers 204 with no body; an origin not allowed gets the 204 without any
  `Access-Control-*` header (the browser then blocks the call), and so does an actual response;
- an allowed origin is echoed (`*` only when the configuration allows `*` without credentials), with
  `Vary: Origin` so no cache serves one origin's answer to another;
- the preflight lists the configured methods and headers rather than judging the requested ones: the
  browser compares the two and refuses what is not listed, so the outcome is the same;
- gateway answers (401 without an identity source, 403 from the authorizer, 404) carry the CORS headers
  too, so a browser app can read the status instead of seeing an opaque network error.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

PREFLIGHT_STATUS = 204


class CorsConfigurationError(ValueError):
    """A CORS configuration API Gateway (or the template's Rules) would refuse."""


def _names(value: Any) -> tuple[str, ...]:
    """A list property as SAM takes it: a list, or one comma-separated string."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else [str(item) for item in value]
    return tuple(item.strip() for item in items if item.strip())


def _flag(value: Any) -> bool:
    return str(value).strip().lower() == "true"


@dataclass(frozen=True)
class CorsPolicy:
    """One HttpApi's resolved `CorsConfiguration`."""

    allow_origins: tuple[str, ...]
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    allow_credentials: bool = False
    max_age: int | None = None

    @classmethod
    def from_configuration(cls, configuration: Mapping[str, Any]) -> CorsPolicy:
        """From the resolved property (SAM's names: AllowOrigins, AllowMethods, ...)."""
        max_age = configuration.get("MaxAge")
        policy = cls(
            allow_origins=_names(configuration.get("AllowOrigins")),
            allow_methods=tuple(method.upper() for method in _names(configuration.get("AllowMethods"))),
            allow_headers=tuple(header.lower() for header in _names(configuration.get("AllowHeaders"))),
            expose_headers=tuple(header.lower() for header in _names(configuration.get("ExposeHeaders"))),
            allow_credentials=_flag(configuration.get("AllowCredentials", False)),
            max_age=None if max_age in (None, "") else int(str(max_age)),
        )
        if policy.allow_credentials and "*" in policy.allow_origins:
            # Browsers refuse credentials with `Access-Control-Allow-Origin: *`; the template's
            # CookieCorsNeedsExplicitOrigins rule refuses this deploy, so the local stack does too.
            raise CorsConfigurationError(
                "AllowCredentials with AllowOrigins '*': credentials need explicit origins "
                "(AuthMode=cookie: list the front-end origins in CorsAllowedOrigins)"
            )
        return policy

    def allows(self, origin: str) -> bool:
        for allowed in self.allow_origins:
            if allowed == "*":
                return True
            if allowed.endswith("://*"):
                if origin.startswith(allowed[:-1]) and len(origin) > len(allowed) - 1:
                    return True
            elif origin.lower() == allowed.lower():
                return True
        return False

    def _origin_headers(self, origin: str) -> list[tuple[str, str]]:
        if "*" in self.allow_origins and not self.allow_credentials:
            return [("Access-Control-Allow-Origin", "*")]
        headers = [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]
        if self.allow_credentials:
            headers.append(("Access-Control-Allow-Credentials", "true"))
        return headers

    def preflight_headers(self, origin: str, requested_headers: str = "") -> list[tuple[str, str]]:
        """The preflight answer's headers: none for an origin not allowed."""
        if not self.allows(origin):
            return []
        headers = self._origin_headers(origin)
        if self.allow_methods:
            headers.append(("Access-Control-Allow-Methods", ",".join(self.allow_methods)))
        allow_headers = self.allow_headers
        if "*" in allow_headers and requested_headers:  # `*` allows whatever the browser asks for
            allow_headers = _names(requested_headers)
        if allow_headers:
            headers.append(("Access-Control-Allow-Headers", ",".join(allow_headers)))
        if self.max_age is not None:
            headers.append(("Access-Control-Max-Age", str(self.max_age)))
        return headers

    def response_headers(self, origin: str) -> list[tuple[str, str]]:
        """Headers added to an actual (non-preflight) response: none for an origin not allowed."""
        if not self.allows(origin):
            return []
        headers = self._origin_headers(origin)
        if self.expose_headers:
            headers.append(("Access-Control-Expose-Headers", ",".join(self.expose_headers)))
        return headers

    def describe(self) -> str:
        """One line for the local stack's banner."""
        credentials = "with credentials" if self.allow_credentials else "no credentials"
        return (
            f"CORS: origins {', '.join(self.allow_origins)}; methods {','.join(self.allow_methods)}; "
            f"headers {','.join(self.allow_headers)}; {credentials}"
            + (f"; max-age {self.max_age}s" if self.max_age is not None else "")
        )


def is_preflight(method: str, headers: Mapping[str, str]) -> bool:
    """An OPTIONS request with `Origin` and `Access-Control-Request-Method` (lower-case header names)."""
    return (
        method == "OPTIONS"
        and bool(headers.get("origin"))
        and bool(headers.get("access-control-request-method"))
    )


def is_cors_header(name: str) -> bool:
    """Headers API Gateway drops from an integration's response when the API has a CORS configuration."""
    return name.lower().startswith("access-control-")


def without_cors_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(name, value) for name, value in headers if not is_cors_header(name)]
