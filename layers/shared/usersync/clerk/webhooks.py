"""Clerk's webhooks: the Svix signature over the raw bytes, and the event envelope.

Verification uses `standardwebhooks`, the verifier that `svix.webhooks.Webhook` delegates to (svix
2.x only renames the `svix-*` headers and calls it). Importing it directly keeps the webhook's cold
start free of svix's API client, which `import svix` loads eagerly (~350 ms).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from pydantic import ValidationError
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from usersync.clerk.payload import ClerkEvent, ClerkPayloadError, describe, unreadable_problem

_HEADER_FAMILIES = ("svix", "webhook")  # Clerk sends svix-*; Standard Webhooks names are accepted too


class SignatureError(Exception):
    """Missing or invalid signature headers, no matching signature, or timestamp out of tolerance.
    `reason` is safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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
    except (WebhookVerificationError, ValueError) as exc:
        # Malformed input raises ValueError, not the library's error: binascii.Error (bad base64), a
        # signature without one comma, a body or id that is not UTF-8 (UnicodeError).
        raise SignatureError(f"invalid signature: {type(exc).__name__}") from None
    return SignedMessage(
        message_id=signature_headers["webhook-id"],
        timestamp=int(float(signature_headers["webhook-timestamp"])),
    )


def parse_clerk_event(body: bytes) -> ClerkEvent:
    """The verified body as a Clerk event envelope (its `data` is validated per type later).
    Raises ClerkPayloadError, whatever the JSON parser raised (see `unreadable_problem`)."""
    try:
        document = json.loads(body)
    except Exception as exc:  # noqa: BLE001 - a signed body can still be hostile: every parser error is a 400
        raise ClerkPayloadError(f"body is {unreadable_problem(exc)}") from None
    try:
        return ClerkEvent.model_validate(document)
    except ValidationError as exc:
        raise ClerkPayloadError(f"not a Clerk event: {describe(exc)}") from None
