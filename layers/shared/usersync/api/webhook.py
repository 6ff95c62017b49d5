"""POST /webhooks/clerk, the HTTP face: read the API Gateway event, verify and parse the delivery
(usersync.clerk.webhooks), apply it (usersync.sync.events), and say which status answers each failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from usersync.api.http import BadRequestError, HttpRequest, PayloadTooLargeError, parse_proxy_event
from usersync.clerk.payload import ClerkEvent, ClerkPayloadError, unreadable_problem
from usersync.clerk.webhooks import SignatureError, SignedMessage, parse_clerk_event, verify_signature
from usersync.runtime.aws import secret_string
from usersync.runtime.observability import logger
from usersync.runtime.settings import WebhookSettings
from usersync.store.dynamodb import WriteOutcome
from usersync.store.errors import UnstorableRecordError
from usersync.sync.events import SyncedRecord, apply_record, record_for

if TYPE_CHECKING:
    from usersync.store.organizations import OrganizationRepository
    from usersync.store.users import UserRepository


class WebhookRejection(Exception):
    """A delivery refused without touching the table. Each subclass carries the HTTP status that
    answers it (the handler maps by `status_code`, so a new subclass can never escape as a 500) and a
    default `reason`, both class keywords (`status_code` defaults to 400); an instance may give a more
    precise reason. `reason` is safe to log."""

    status_code: ClassVar[int] = 400
    reason: str = "rejected"

    def __init_subclass__(cls, *, reason: str, status_code: int | None = None) -> None:
        super().__init_subclass__()
        cls.reason = reason
        if status_code is not None:
            cls.status_code = status_code

    def __init__(self, reason: str | None = None) -> None:
        if reason is not None:
            self.reason = reason
        super().__init__(self.reason)


class WebhookSignatureError(WebhookRejection, status_code=401, reason="invalid signature"):
    """Missing or invalid signature headers, no matching signature, or timestamp out of tolerance."""


class WebhookPayloadError(WebhookRejection, reason="invalid payload"):
    """A verified body that is not JSON or lacks the fields its event type needs."""


class WebhookRequestError(WebhookRejection, reason="malformed request"):
    """Not an API Gateway proxy event we can read (wrong shape, undecodable body)."""


class WebhookBodyTooLargeError(WebhookRejection, status_code=413, reason="body too large"):
    """The body is over the size limit (256 KiB)."""


class UnstorableDeliveryError(WebhookRejection, reason="delivery cannot be stored"):
    """A verified delivery DynamoDB can never store (a key over its byte limit, an item over 400 KB,
    text with a lone surrogate): a 400, which Svix does not retry, rather than a 5xx it would retry
    for days."""


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


def read_request(event: Any) -> HttpRequest:
    """The API Gateway proxy event as a request; its problems are rejections like any other."""
    try:
        return parse_proxy_event(event)
    except PayloadTooLargeError as exc:
        raise WebhookBodyTooLargeError(str(exc)) from None
    except BadRequestError as exc:
        raise WebhookRequestError(str(exc)) from None


def read_delivery(body: bytes, message: SignedMessage) -> tuple[ClerkEvent, SyncedRecord | None]:
    """The verified body as an event and the record it asks for (None: a type we do not handle).

    The one place that decides what a signed body is worth: whatever reading it raises (the JSON
    parser's RecursionError or 4,300-digit ValueError, pydantic, a model's own check) is a 400 with a
    message, which Svix does not retry; no exception type can escape as a 500.
    """
    try:
        event = parse_clerk_event(body)
        logger.append_keys(eventType=event.type)
        return event, record_for(event, message)
    except ClerkPayloadError as exc:
        raise WebhookPayloadError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - hostile input: what a parser raised says nothing we could retry
        raise WebhookPayloadError(f"event data is {unreadable_problem(exc)}") from None


def process_webhook(
    request: HttpRequest,
    secret: str,
    repository: UserRepository,
    organizations: OrganizationRepository | None = None,
) -> WebhookResult:
    """Verify, parse and apply one delivery. Raises WebhookRejection (4xx) or RepositoryError (5xx)."""
    try:
        message = verify_signature(request.body, request.headers, secret)
    except SignatureError as exc:
        raise WebhookSignatureError(exc.reason) from None
    logger.set_correlation_id(message.message_id)
    _event, record = read_delivery(request.body, message)
    try:
        applied = apply_record(record, repository, organizations)
    except UnstorableRecordError as exc:
        raise UnstorableDeliveryError(str(exc)) from None
    if applied.outcome is None:
        return WebhookResult(WebhookStatus.IGNORED_EVENT_TYPE)
    return WebhookResult(_STATUS_BY_OUTCOME[applied.outcome], applied.user_id)


def signing_secret(settings: WebhookSettings) -> str:
    """The `whsec_` secret: inline, or from Secrets Manager (cached; raises SecretUnavailableError)."""
    if settings.webhook_signing_secret:
        return settings.webhook_signing_secret
    assert settings.webhook_secret_arn is not None  # guaranteed by WebhookSettings
    return secret_string(settings.webhook_secret_arn)
