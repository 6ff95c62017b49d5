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
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import ValidationError
from standardwebhooks.webhooks import Webhook

from usersync.api.http import BadRequestError, HttpRequest, PayloadTooLargeError, parse_proxy_event
from usersync.clerk.payload import ClerkEvent
from usersync.clerk.users import ClerkDeletedUser, ClerkUser
from usersync.runtime.aws import secret_string
from usersync.runtime.metrics import SyncSource
from usersync.runtime.observability import logger
from usersync.runtime.settings import WebhookSettings
from usersync.store.records import UserRecord, Writer
from usersync.store.users import (
    RepositoryError,
    UnstorableRecordError,
    UserRepository,
    WriteOutcome,
    ensure_storable,
    ensure_storable_item,
)
from usersync.sync.users import write_user

if TYPE_CHECKING:
    from usersync.store.organizations import OrganizationRepository

USER_UPSERT_EVENTS = frozenset({"user.created", "user.updated"})
USER_DELETED_EVENT = "user.deleted"
_HEADER_FAMILIES = ("svix", "webhook")  # Clerk sends svix-*; Standard Webhooks names are accepted too


class WebhookRejection(Exception):
    """A delivery refused without touching the table. Each subclass carries the HTTP status that
    answers it (the handler maps by `status_code`, so a new subclass can never escape as a 500) and a
    default `reason`; an instance may give a more precise reason. `reason` is safe to log."""

    status_code: ClassVar[int] = 400
    reason: str = "rejected"

    def __init__(self, reason: str | None = None) -> None:
        if reason is not None:
            self.reason = reason
        super().__init__(self.reason)


class WebhookSignatureError(WebhookRejection):
    """Missing or invalid signature headers, no matching signature, or timestamp out of tolerance."""

    status_code = 401
    reason = "invalid signature"


class WebhookPayloadError(WebhookRejection):
    """A verified body that is not JSON or lacks the fields its event type needs."""

    reason = "invalid payload"


class WebhookRequestError(WebhookRejection):
    """Not an API Gateway proxy event we can read (wrong shape, undecodable body)."""

    reason = "malformed request"


class WebhookBodyTooLargeError(WebhookRejection):
    """The body is over the size limit (256 KiB)."""

    status_code = 413
    reason = "body too large"


class UnstorableDeliveryError(WebhookRejection):
    """A verified delivery DynamoDB can never store (a key over its byte limit, an item over 400 KB,
    text with a lone surrogate): a 400, which Svix does not retry, rather than a 5xx it would retry
    for days."""

    reason = "delivery cannot be stored"


class WebhookStatus(StrEnum):
    APPLIED = "applied"
    IGNORED_STALE = "ignored-stale"
    IGNORED_DUPLICATE = "ignored-duplicate"
    IGNORED_EVENT_TYPE = "ignored-event-type"


_STATUS_BY_OUTCOME = {
    WriteOutcome.APPLIED: WebhookStatus.APPLIED,
    WriteOutcome.MERGED: WebhookStatus.APPLIED,  # Clerk's createdAt joined a fresher token's profile
    WriteOutcome.STALE: WebhookStatus.IGNORED_STALE,
    WriteOutcome.DUPLICATE: WebhookStatus.IGNORED_DUPLICATE,
}


@dataclass(frozen=True)
class WebhookResult:
    status: WebhookStatus
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


def read_request(event: Any) -> HttpRequest:
    """The API Gateway proxy event as a request; its problems are rejections like any other."""
    try:
        return parse_proxy_event(event)
    except PayloadTooLargeError as exc:
        raise WebhookBodyTooLargeError(str(exc)) from None
    except BadRequestError as exc:
        raise WebhookRequestError(str(exc)) from None


def verify_signature(body: bytes, headers: Mapping[str, str], secret: str) -> SignedMessage:
    """Raise WebhookSignatureError unless one `v1` signature over `id.timestamp.body` matches `secret`."""
    signature_headers = _signature_headers(headers)
    if len(signature_headers) != len(("id", "timestamp", "signature")):
        raise WebhookSignatureError("missing signature headers")
    try:
        _webhook(secret).verify(body, signature_headers, json_parse=False)
    except Exception as exc:  # malformed headers raise ValueError/binascii.Error, not the library's error
        raise WebhookSignatureError(f"invalid signature: {type(exc).__name__}") from None
    return SignedMessage(
        message_id=signature_headers["webhook-id"],
        timestamp=int(float(signature_headers["webhook-timestamp"])),
    )


def parse_clerk_event(body: bytes) -> ClerkEvent:
    """The verified body as a Clerk event envelope (its `data` is validated per type later)."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WebhookPayloadError(f"body is not valid JSON: {exc}") from None
    try:
        return ClerkEvent.model_validate(document)
    except ValidationError as exc:
        raise WebhookPayloadError(f"not a Clerk event: {_summarise(exc)}") from None


def _summarise(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
        for error in exc.errors(include_input=False, include_url=False)
    )


def record_for(event: ClerkEvent, message: SignedMessage) -> UserRecord | None:
    """The table item an event asks for, or None for event types we do not handle."""
    writer: Writer = {"source": SyncSource.WEBHOOK, "event_id": message.message_id}
    try:
        if event.type in USER_UPSERT_EVENTS:
            return UserRecord.from_clerk_user(ClerkUser.model_validate(event.data), **writer)
        if event.type == USER_DELETED_EVENT:
            deleted = ClerkDeletedUser.model_validate(event.data)
            # No updated_at on deletes: order them by the envelope timestamp (ms), else the signed
            # svix timestamp.
            deleted_at = event.timestamp if event.timestamp is not None else message.timestamp * 1000
            return UserRecord.tombstone(deleted.id, deleted_at=deleted_at, **writer)
    except ValidationError as exc:
        raise WebhookPayloadError(f"invalid {event.type} data: {_summarise(exc)}") from None
    return None


def process_webhook(
    request: HttpRequest,
    secret: str,
    repository: UserRepository,
    organizations: OrganizationRepository | None = None,
) -> WebhookResult:
    """Verify, parse and apply one delivery. Raises WebhookRejection (4xx) or RepositoryError (5xx)."""
    message = verify_signature(request.body, request.headers, secret)
    logger.set_correlation_id(message.message_id)
    event = parse_clerk_event(request.body)
    logger.append_keys(eventType=event.type)
    organization_result = apply_organization_event(event, message, organizations)
    if organization_result is not None:
        return organization_result
    record = record_for(event, message)
    if record is None:
        return WebhookResult(WebhookStatus.IGNORED_EVENT_TYPE)
    try:
        ensure_storable(record)
    except UnstorableRecordError as exc:
        raise UnstorableDeliveryError(str(exc)) from None
    outcome = write_user(repository, record)
    return WebhookResult(_STATUS_BY_OUTCOME[outcome], record.user_id)


def signing_secret(settings: WebhookSettings) -> str:
    """The `whsec_` secret: inline, or from Secrets Manager (cached; raises SecretUnavailableError)."""
    if settings.webhook_signing_secret:
        return settings.webhook_signing_secret
    assert settings.webhook_secret_arn is not None  # guaranteed by WebhookSettings
    return secret_string(settings.webhook_secret_arn)


# ---------------------------------------------------------------- organizations and memberships
# Kept apart from the user path above: one hook in process_webhook, the rest in usersync.store.organizations.


def apply_organization_event(
    event: ClerkEvent, message: SignedMessage, organizations: OrganizationRepository | None
) -> WebhookResult | None:
    """Apply an organization/membership event with one conditional write; None for other types."""
    from usersync.store.organizations import (
        ORGANIZATION_EVENT_TYPES,
        ORGANIZATION_KEY_LIMITS,
        record_for_event,
        write_organization_item,
    )

    if event.type not in ORGANIZATION_EVENT_TYPES:
        return None
    deleted_at = event.timestamp if event.timestamp is not None else message.timestamp * 1000
    try:
        record = record_for_event(event.type, event.data, deleted_at=deleted_at, event_id=message.message_id)
    except ValidationError as exc:
        raise WebhookPayloadError(f"invalid {event.type} data: {_summarise(exc)}") from None
    assert record is not None  # every type in ORGANIZATION_EVENT_TYPES has a record
    user_id = getattr(record, "user_id", None)
    logger.append_keys(orgId=record.org_id)
    if organizations is None:
        # Misconfigured (no ORGANIZATIONS_TABLE_NAME): a 5xx so Svix retries once it is fixed.
        raise RepositoryError("PutItem", "OrganizationsTableNotConfigured")
    try:
        ensure_storable_item(record.to_attributes(), ORGANIZATION_KEY_LIMITS, "organization")
    except UnstorableRecordError as exc:
        raise UnstorableDeliveryError(str(exc)) from None
    outcome = write_organization_item(organizations, record)
    return WebhookResult(_STATUS_BY_OUTCOME[outcome], user_id)
