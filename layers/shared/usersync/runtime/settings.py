"""Configuration read from the environment once per container.

Each function parses only the settings it needs, at import time, so a missing variable fails the
cold start with an error that names it instead of failing deep inside a request.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

NonEmptyStr = Annotated[str, Field(min_length=1)]

# Used by every function when POWERTOOLS_METRICS_NAMESPACE is unset (Powertools has no default and
# would refuse to flush), so emitters and the health check always agree on one namespace.
DEFAULT_METRICS_NAMESPACE = "usersync"


class ConfigurationError(RuntimeError):
    """The environment does not configure this function; the message names the variable."""


class _EnvSettings(BaseModel):
    """Base: fields are aliased to their environment variable names; unknown variables are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)
    # Pairs of fields of which at least one must be set (inline value, or where to fetch it from).
    one_of_required: ClassVar[tuple[tuple[str, str], ...]] = ()

    @model_validator(mode="after")
    def _check_one_of_required(self) -> Self:
        for first, second in self.one_of_required:
            if not (getattr(self, first) or getattr(self, second)):
                raise ValueError(
                    f"missing required environment variable {_env_name(type(self), first)} "
                    f"(or {_env_name(type(self), second)})"
                )
        return self

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        env = os.environ if environ is None else environ
        # Blank values count as unset, as they would in a SAM template parameter left empty.
        values = {key: value for key, value in env.items() if value.strip()}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ConfigurationError(_describe(cls, exc)) from None


def _env_name(model: type[BaseModel], field_name: str) -> str:
    return model.model_fields[field_name].alias or field_name


def _describe(model: type[BaseModel], exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        location = error["loc"][0] if error["loc"] else ""
        field = model.model_fields.get(str(location))
        name = field.alias if field is not None and field.alias else str(location)
        if error["type"] == "missing":
            problems.append(f"missing required environment variable {name}")
        elif name:
            problems.append(f"invalid environment variable {name}: {error['msg']}")
        else:
            problems.append(str(error["msg"]).removeprefix("Value error, "))
    return f"{model.__name__}: " + "; ".join(problems)


class TableSettings(_EnvSettings):
    users_table_name: NonEmptyStr = Field(alias="USERS_TABLE_NAME")


class OrganizationsTableSettings(_EnvSettings):
    """The organizations table (CONTRACT §11). Optional: unset, /me lists no organizations and an
    organization event is a 5xx (Svix retries until the deployment names the table)."""

    organizations_table_name: str | None = Field(default=None, alias="ORGANIZATIONS_TABLE_NAME")


class WebhookSettings(TableSettings):
    """The signing secret comes inline (`whsec_...`) or from Secrets Manager; exactly one is needed."""

    webhook_signing_secret: str | None = Field(default=None, alias="CLERK_WEBHOOK_SIGNING_SECRET", repr=False)
    webhook_secret_arn: str | None = Field(default=None, alias="CLERK_WEBHOOK_SECRET_ARN")
    one_of_required = (("webhook_signing_secret", "webhook_secret_arn"),)


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class AuthorizerSettings(TableSettings):
    """Clerk session-token verification: a PEM key (networkless) or a JWKS URL."""

    jwt_key: str | None = Field(default=None, alias="CLERK_JWT_KEY", repr=False)
    jwks_url: str | None = Field(default=None, alias="CLERK_JWKS_URL")
    issuer: str | None = Field(default=None, alias="CLERK_ISSUER")
    authorized_parties: tuple[str, ...] = Field(default=(), alias="CLERK_AUTHORIZED_PARTIES")
    # Clerk's SDKs treat a pending session (`sts: "pending"`, an unfinished session task) as signed out.
    allow_pending_sessions: bool = Field(default=False, alias="CLERK_ALLOW_PENDING_SESSIONS")
    # JWT-template tokens (`getToken({ template })`) have no session binding: off by default (security.md)
    accept_jwt_templates: bool = Field(default=False, alias="CLERK_ACCEPT_JWT_TEMPLATES")
    # Route key -> requirement, JSON (CONTRACT §5): parsed and checked by usersync.api.route_requirements.
    route_requirements: str = Field(default="{}", alias="CLERK_ROUTE_REQUIREMENTS")

    one_of_required = (("jwt_key", "jwks_url"),)

    _split_parties = field_validator("authorized_parties", mode="before")(_split_csv)


class ReconcileSettings(TableSettings):
    """Reads Clerk's Backend API with the secret key (`sk_...`), inline or from Secrets Manager."""

    clerk_secret_key: str | None = Field(default=None, alias="CLERK_SECRET_KEY", repr=False)
    clerk_secret_key_arn: str | None = Field(default=None, alias="CLERK_SECRET_KEY_ARN")
    clerk_api_url: NonEmptyStr = Field(default="https://api.clerk.com", alias="CLERK_API_URL")
    prune: bool = Field(default=False, alias="RECONCILE_PRUNE")
    # Reconciliation's share of the instance's Clerk rate limit (production 1,000 per 10 s).
    max_requests_per_10s: int = Field(default=200, ge=1, le=1000, alias="RECONCILE_MAX_REQUESTS_PER_10S")
    organizations_table_name: str | None = Field(default=None, alias="ORGANIZATIONS_TABLE_NAME")
    one_of_required = (("clerk_secret_key", "clerk_secret_key_arn"),)


class HealthSettings(TableSettings):
    """The failure-rate check reads the metrics that Powertools emits under this namespace and service."""

    failure_threshold: float = Field(default=0.05, ge=0, le=1, alias="SYNC_FAILURE_THRESHOLD")
    window_minutes: int = Field(default=15, ge=1, le=1440, alias="SYNC_WINDOW_MINUTES")
    min_attempts: int = Field(default=20, ge=0, alias="SYNC_MIN_ATTEMPTS")
    metrics_namespace: NonEmptyStr = Field(
        default=DEFAULT_METRICS_NAMESPACE, alias="POWERTOOLS_METRICS_NAMESPACE"
    )
    # Unset, Powertools emits no `service` dimension at all, and the check then queries `{Source}` only.
    service_name: str | None = Field(default=None, alias="POWERTOOLS_SERVICE_NAME")
    # Per-container cache of the /health answer, so a monitoring storm does not hammer CloudWatch.
    cache_seconds: float = Field(default=5, ge=0, le=300, alias="HEALTH_CACHE_SECONDS")
    # The reconciliation function is deployed: its writes count in the failure rate (CONTRACT §11).
    reconcile_deployed: bool = Field(default=False, alias="RECONCILE_DEPLOYED")
