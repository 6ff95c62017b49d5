"""Who may call which route: `CLERK_ROUTE_REQUIREMENTS` parsed once per container, looked up per call.

The value is a JSON object from an API Gateway route key to a requirement:

    {"GET /admin": {"role": "org:admin"},
     "ANY /billing/{proxy+}": {"permission": "org:billing:manage", "plan": "o:pro"},
     "$default": {"feature": "u:beta"}}

Keys: HTTP API route keys (`METHOD /path`, `ANY /path/{proxy+}`, `$default`), or for a REST API the
HTTP method and the resource (`GET /orders/{id}`; `ANY` for an ANY method). A requirement names any
of `role`, `permission`, `feature`, `plan` (at least one); all must hold (`usersync.clerk.permissions`).
Anything malformed stops the cold start with a `ConfigurationError` naming the route and the field.

How each authorizer event finds its route (see docs/authorization.md):
- HTTP API: the event's `routeKey`, exactly as API Gateway matched it.
- REST REQUEST: `httpMethod` + `resource` (the resource template), then `ANY` + `resource`.
- REST TOKEN: only `methodArn` (`.../stage/VERB/actual/path`): its method and path are matched against
  the configured resource templates as API Gateway matches resources (literal segments before
  `{param}`, before `{proxy+}`; an exact method before `ANY`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator, model_validator

from usersync.clerk.permissions import Authorization, Requirement, check_permission, check_role, parse_scoped
from usersync.runtime.settings import ConfigurationError

VARIABLE = "CLERK_ROUTE_REQUIREMENTS"
DEFAULT_ROUTE = "$default"
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY"})
# A path segment of a route key: a literal, `{name}`, or a final greedy `{name+}`.
_SEGMENT = re.compile(r"[A-Za-z0-9._~:@!$&'()*+,;=%-]+|\{[A-Za-z0-9_.-]+\}|\{[A-Za-z0-9_.-]+\+\}")
MAX_ROUTES = 300  # API Gateway's default quota of routes per HTTP API


class RequirementConfig(BaseModel):
    """One route's requirement as configured; strict: a typo in a field name is an error, not a no-op."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    role: str | None = None
    permission: str | None = None
    feature: str | None = None
    plan: str | None = None

    @field_validator("role")
    @classmethod
    def _role(cls, value: str | None) -> str | None:
        if value is not None:
            check_role(value)
        return value

    @field_validator("permission")
    @classmethod
    def _permission(cls, value: str | None) -> str | None:
        if value is not None:
            check_permission(value)
        return value

    @field_validator("feature", "plan")
    @classmethod
    def _scoped_name(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            parse_scoped(str(info.field_name), value)
        return value

    @model_validator(mode="after")
    def _names_a_condition(self) -> RequirementConfig:
        if self.role is None and self.permission is None and self.feature is None and self.plan is None:
            raise ValueError("names no condition: give at least one of role, permission, feature, plan")
        return self

    def requirement(self) -> Requirement:
        return Requirement.of(
            role=self.role, permission=self.permission, feature=self.feature, plan=self.plan
        )


def _check_route_key(key: str) -> tuple[str, tuple[str, ...]]:
    """(method, path segments) of a route key; raises ValueError saying what is wrong."""
    if key == DEFAULT_ROUTE:
        return DEFAULT_ROUTE, ()
    method, space, path = key.partition(" ")
    if not space or method not in METHODS:
        raise ValueError(
            f"must be `$default` or `METHOD /path` with METHOD one of {', '.join(sorted(METHODS))}"
        )
    if not path.startswith("/") or " " in path:
        raise ValueError("the path must start with / and hold no spaces")
    segments = tuple(part for part in path.split("/")[1:] if part) if path != "/" else ()
    if path != "/" and (path.endswith("/") or "//" in path):
        raise ValueError("the path has an empty segment")
    for index, segment in enumerate(segments):
        if not _SEGMENT.fullmatch(segment):
            raise ValueError(f"path segment {segment!r} is neither a name, {{param}} nor {{proxy+}}")
        if segment.endswith("+}") and index != len(segments) - 1:
            raise ValueError("a greedy {proxy+} segment must be the last")
    return method, segments


@dataclass(frozen=True, slots=True)
class _Template:
    """A configured REST resource, for matching the path of a TOKEN authorizer's method ARN."""

    key: str
    method: str
    segments: tuple[str, ...]
    requirement: Requirement

    @property
    def arn_suffix(self) -> str:
        """`VERB/path` of the execute-api ARNs this route covers: `{param}` and `{proxy+}` become `*`,
        which IAM matches across `/` too (so `/orgs/{id}` also covers `/orgs/1/more`: fail closed)."""
        verb = "*" if self.method == "ANY" else self.method
        path = "/".join("*" if segment.startswith("{") else segment for segment in self.segments)
        return f"{verb}/{path}"

    def covers(self, arn_suffix: str) -> bool:
        """Whether IAM would match this route's ARN pattern against a method ARN's `VERB/path`."""
        return (
            re.fullmatch(".*".join(re.escape(part) for part in self.arn_suffix.split("*")), arn_suffix)
            is not None
        )

    def rank(self, method: str, path: tuple[str, ...]) -> tuple[int, ...] | None:
        """None if no match; else a sort key, smaller = more specific (as API Gateway picks resources)."""
        if self.method not in (method, "ANY"):
            return None
        rank: list[int] = []
        for index, segment in enumerate(self.segments):
            if segment.endswith("+}"):
                if len(path) <= index:  # a greedy segment needs at least one segment
                    return None
                rank.append(2)
                break
            if index >= len(path):
                return None
            if segment.startswith("{"):
                rank.append(1)
            elif segment == path[index]:
                rank.append(0)
            else:
                return None
        else:
            if len(path) != len(self.segments):
                return None
        return (*rank, 0 if self.method == method else 1)


class RouteRequirements:
    """The parsed configuration: route key → `Requirement`, looked up per call in O(1) (TOKEN: O(routes))."""

    def __init__(self, requirements: Mapping[str, Requirement]) -> None:
        self._by_key = dict(requirements)
        self._templates = tuple(
            _Template(key, *_check_route_key(key), requirement)
            for key, requirement in self._by_key.items()
            if key != DEFAULT_ROUTE
        )

    def __bool__(self) -> bool:
        return bool(self._by_key)

    def __len__(self) -> int:
        return len(self._by_key)

    def items(self) -> list[tuple[str, Requirement]]:
        return list(self._by_key.items())

    def for_route_key(self, route_key: str | None) -> Requirement | None:
        """HTTP API: the route API Gateway matched (`GET /admin`, `$default`)."""
        return self._by_key.get(route_key) if route_key else None

    def for_resource(self, method: str | None, resource: str | None) -> tuple[str, Requirement] | None:
        """REST REQUEST: method + resource template, then ANY + resource."""
        if not method or not resource:
            return None
        for key in (f"{method} {resource}", f"ANY {resource}"):
            requirement = self._by_key.get(key)
            if requirement is not None:
                return key, requirement
        return None

    def for_path(self, method: str, path: str) -> tuple[str, Requirement] | None:
        """REST TOKEN: the most specific configured resource matching the method ARN's method and path."""
        segments = tuple(part for part in path.split("/") if part)
        best: tuple[tuple[int, ...], _Template] | None = None
        for template in self._templates:
            rank = template.rank(method, segments)
            if rank is not None and (best is None or rank < best[0]):
                best = (rank, template)
        return (best[1].key, best[1].requirement) if best is not None else None

    def route_for_event(
        self, event: Mapping[str, Any], method_arn: str | None
    ) -> tuple[str, Requirement] | None:
        """The configured route this authorizer event is for (module docstring), or None (unnamed)."""
        route_key = event.get("routeKey")
        if isinstance(route_key, str):  # HTTP API, both payload versions
            requirement = self.for_route_key(route_key)
            return None if requirement is None else (route_key, requirement)
        method, resource = event.get("httpMethod"), event.get("resource")
        if isinstance(method, str) and isinstance(resource, str):  # REST REQUEST
            return self.for_resource(method, resource)
        if method_arn is not None:  # REST TOKEN: `arn:...:api/stage/VERB/path`
            parts = method_arn.split("/", 3)
            if len(parts) >= 3:
                return self.for_path(parts[2], "/" + (parts[3] if len(parts) == 4 else ""))
        return None

    def rest_denials(self, authorization: Authorization) -> list[tuple[str, str, str]]:
        """(route key, ARN `VERB/path` pattern, missing condition) of every configured REST resource this
        caller may not call: the Deny statements of a policy that stays right for every route while
        API Gateway caches it per token."""
        denials = []
        for template in self._templates:
            missing = authorization.missing(template.requirement)
            if missing is not None:
                denials.append((template.key, template.arn_suffix, missing))
        return denials

    def covering(self, route_keys: list[str], arn_suffix: str) -> str | None:
        """The first of `route_keys` whose ARN pattern covers `arn_suffix` (a method ARN's `VERB/path`)."""
        wanted = set(route_keys)
        for template in self._templates:
            if template.key in wanted and template.covers(arn_suffix):
                return template.key
        return None

    @classmethod
    def parse(cls, raw: str | None) -> RouteRequirements:
        """Parse `CLERK_ROUTE_REQUIREMENTS`; raises ConfigurationError naming the route and the field."""
        text = (raw or "").strip() or "{}"
        try:
            document: Any = json.loads(text, object_pairs_hook=_refuse_duplicate_keys)
        except _DuplicateRouteError as exc:
            raise ConfigurationError(f"{VARIABLE}: the key {exc.key!r} appears twice in one object") from None
        except ValueError as exc:
            raise ConfigurationError(f"{VARIABLE} is not valid JSON: {exc}") from None
        if not isinstance(document, dict):
            raise ConfigurationError(f"{VARIABLE} must be a JSON object of route key -> requirement")
        if len(document) > MAX_ROUTES:
            raise ConfigurationError(f"{VARIABLE} names {len(document)} routes; at most {MAX_ROUTES}")
        parsed: dict[str, Requirement] = {}
        for key, value in document.items():
            try:
                _check_route_key(key)
            except ValueError as exc:
                raise ConfigurationError(f"{VARIABLE}: route {key!r}: invalid route key: {exc}") from None
            try:
                parsed[key] = RequirementConfig.model_validate(value).requirement()
            except ValidationError as exc:
                raise ConfigurationError(f"{VARIABLE}: route {key!r}: {_describe(exc)}") from None
        return cls(parsed)


class _DuplicateRouteError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json.loads keeps the last of two equal keys silently: a route named twice is a mistake."""
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise _DuplicateRouteError(key)
        document[key] = value
    return document


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        field = ".".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field (known: role, permission, feature, plan)"
        elif error["type"] == "model_type":
            message = 'must be an object such as {"role": "org:admin"}'
        problems.append(f"field {field!r}: {message}" if field else message)
    return "; ".join(problems)
