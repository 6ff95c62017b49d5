"""Clerk webhooks: verify the Svix signature on the raw bytes, parse, and apply as one write.

Verification uses `standardwebhooks`, the verifier that `svix.webhooks.Webhook` delegates to (svix
2.x only renames the `svix-*` headers and calls it). Importing it directly keeps the webhook's cold
start free of svix's API client, which `import svix` loads eagerly (~350 ms).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING

from pydantic import ValidationError
from standardwebhooks.webhooks import Webhook

from usersync.http import HttpRequest
from usersync.models import ClerkDeletedUser, ClerkEvent, ClerkUser, SyncSource, UserRecord
from usersync.observability import logger
from usersync.repository import RepositoryError, UserRepository, WriteOutcome
from usersync.settings import WebhookSettings
from usersync.sync import write_user

if TYPE_CHECKING:
    from usersync.organizations import OrganizationRepository

SECRET_CACHE_SECONDS = 300

USER_UPSERT_EVENTS = frozenset({"user.created", "user.updated"})
USER_DELETED_EVENT = "user.deleted"
_HEADER_FAMILIES = ("svix", "webhook")  # Clerk sends svix-*; Standard Webhooks names are accepted too


class WebhookError(Exception):
    """A webhook that is rejected without touching the table; `reason` is safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SignatureError(WebhookError):
    """Missing or invalid signature headers, no matching signature, or timestamp out of tolerance."""


class PayloadError(WebhookError):
    """A verified body that is not JSON or lacks the fields its event type needs."""


class SecretUnavailableError(Exception):
    """The signing secret could not be read from Secrets Manager: retryable, never a rejection."""


class WebhookStatus(StrEnum):
    APPLIED = "applied"
    IGNORED_STALE = "ignored-stale"
    IGNORED_DUPLICATE = "ignored-duplicate"
    IGNORED_EVENT_TYPE = "ignored-event-type"


_STATUS_BY_OUTCOME = {
    WriteOutcome.APPLIED: WebhookStatus.APPLIED,
    WriteOutcome.STALE: WebhookStatus.IGNORED_STALE,
    WriteOutcome.DUPLICATE: WebhookStatus.IGNORED_DUPLICATE,
}


@dataclass(frozen=True)
class WebhookResult:
    status: WebhookStatus
    event_type: str
    user_id: str | None = None


@dataclass(frozen=True)
class SignedMessage:
    """The verified message id and timestamp (seconds) from the signature headers."""

    message_id: str
    timestamp: int


def _signature_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """`webhook-id/-timestamp/-signature`, taken from the svix-* family first, as svix does."""
    lowered = {name.lower(): value for name, value in headers.items()}
    resolved = {}
    for part in ("id", "timestamp", "signature"):
        for family in _HEADER_FAMILIES:
            value = lowered.get(f"{family}-{part}")
            if value:
                resolved[f"webhook-{part}"] = value
                break
    return resolved


@lru_cache(maxsize=4)
def _webhook(secret: str) -> Webhook:
    return Webhook(secret)


def verify_signature(body: bytes, headers: Mapping[str, str], secret: str) -> SignedMessage:
    """Raise SignatureError unless one `v1` signature over `id.timestamp.body` matches `secret`."""
    signature_headers = _signature_headers(headers)
    if len(signature_headers) != len(("id", "timestamp", "signature")):
        raise SignatureError("missing signature headers")
    try:
        _webhook(secret).verify(body, signature_headers, json_parse=False)
    except Exception as exc:  # malformed headers raise ValueError/binascii.Error, not the library's error
        raise SignatureError(f"invalid signature: {type(exc).__name__}") from None
    return SignedMessage(
        message_id=signature_headers["webhook-id"],
        timestamp=int(float(signature_headers["webhook-timestamp"])),
    )


def parse_event(body: bytes) -> ClerkEvent:
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(f"body is not valid JSON: {exc}") from None
    try:
        return ClerkEvent.model_validate(document)
    except ValidationError as exc:
        raise PayloadError(f"not a Clerk event: {_summarise(exc)}") from None


def _summarise(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
        for error in exc.errors(include_input=False, include_url=False)
    )


def record_for(event: ClerkEvent, message: SignedMessage) -> UserRecord | None:
    """The table item an event asks for, or None for event types we do not handle."""
    try:
        if event.type in USER_UPSERT_EVENTS:
            user = ClerkUser.model_validate(event.data)
            return UserRecord.from_clerk_user(user, source=SyncSource.WEBHOOK, event_id=message.message_id)
        if event.type == USER_DELETED_EVENT:
            deleted = ClerkDeletedUser.model_validate(event.data)
            # No updated_at on deletes: order them by the envelope timestamp (ms), else the signed
            # svix timestamp.
            deleted_at = event.timestamp if event.timestamp is not None else message.timestamp * 1000
            return UserRecord.tombstone(deleted.id, deleted_at=deleted_at, event_id=message.message_id)
    except ValidationError as exc:
        raise PayloadError(f"invalid {event.type} data: {_summarise(exc)}") from None
    return None


def process_webhook(
    request: HttpRequest,
    secret: str,
    repository: UserRepository,
    organizations: OrganizationRepository | None = None,
) -> WebhookResult:
    """Verify, parse and apply one delivery. Raises WebhookError (reject) or RepositoryError (retry)."""
    message = verify_signature(request.body, request.headers, secret)
    logger.set_correlation_id(message.message_id)
    event = parse_event(request.body)
    logger.append_keys(eventType=event.type)
    organization_result = apply_organization_event(event, message, organizations)
    if organization_result is not None:
        return organization_result
    record = record_for(event, message)
    if record is None:
        return WebhookResult(WebhookStatus.IGNORED_EVENT_TYPE, event.type)
    outcome = write_user(repository, record)
    return WebhookResult(_STATUS_BY_OUTCOME[outcome], event.type, record.user_id)


def signing_secret(settings: WebhookSettings) -> str:
    """The `whsec_` secret: inline, or from Secrets Manager cached for SECRET_CACHE_SECONDS."""
    if settings.webhook_signing_secret:
        return settings.webhook_signing_secret
    # Only this configuration needs Parameters (and its Secrets Manager client): import it here.
    from aws_lambda_powertools.utilities.parameters import get_secret

    assert settings.webhook_secret_arn is not None  # guaranteed by WebhookSettings
    try:
        secret = get_secret(settings.webhook_secret_arn, max_age=SECRET_CACHE_SECONDS)
    except Exception as exc:  # GetParameterError wraps every SDK failure; the cause names the AWS error
        raise SecretUnavailableError(type(exc.__cause__ or exc).__name__) from exc
    return secret.decode() if isinstance(secret, bytes) else str(secret)


# ---------------------------------------------------------------- organizations and memberships
# Kept apart from the user path above: one hook in process_webhook, the rest in usersync.organizations.


def apply_organization_event(
    event: ClerkEvent, message: SignedMessage, organizations: OrganizationRepository | None
) -> WebhookResult | None:
    """Apply an organization/membership event with one conditional write; None for other types."""
    from usersync.organizations import ORGANIZATION_EVENT_TYPES, record_for_event, write_organization_item

    if event.type not in ORGANIZATION_EVENT_TYPES:
        return None
    deleted_at = event.timestamp if event.timestamp is not None else message.timestamp * 1000
    try:
        record = record_for_event(event.type, event.data, deleted_at=deleted_at, event_id=message.message_id)
    except ValidationError as exc:
        raise PayloadError(f"invalid {event.type} data: {_summarise(exc)}") from None
    assert record is not None  # every type in ORGANIZATION_EVENT_TYPES has a record
    user_id = getattr(record, "user_id", None)
    logger.append_keys(orgId=record.org_id)
    if organizations is None:
        # Misconfigured (no ORGANIZATIONS_TABLE_NAME): a 5xx so Svix retries once it is fixed.
        raise RepositoryError("PutItem", "OrganizationsTableNotConfigured")
    outcome = write_organization_item(organizations, record)
    return WebhookResult(_STATUS_BY_OUTCOME[outcome], event.type, user_id)
