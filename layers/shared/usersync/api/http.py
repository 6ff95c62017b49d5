"""API Gateway proxy events (HTTP API 2.0 and REST 1.0) reduced to what the handlers need, and the
proxy response: the one place proxy-route shapes live (authorizer events: `usersync.api.authorizer`).

Written by hand rather than with Powertools' resolvers: the webhook must see the exact raw bytes
(signatures are over them) for both payload versions in one code path, before any routing.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_BODY_BYTES = 256 * 1024
# Base64 grows 4/3: anything longer than this cannot decode to MAX_BODY_BYTES or less.
_MAX_ENCODED_CHARS = (MAX_BODY_BYTES + 2) // 3 * 4


class BadRequestError(ValueError):
    """The event itself is unusable (not an API Gateway proxy event, undecodable body)."""


class PayloadTooLargeError(ValueError):
    """The body exceeds MAX_BODY_BYTES."""


@dataclass(frozen=True)
class HttpRequest:
    """What the webhook reads of a proxy event: the headers as sent and the exact body bytes."""

    headers: dict[str, str]  # names as sent: whoever looks one up lower-cases once (HTTP is case-insensitive)
    body: bytes


def string_headers(raw: Any) -> dict[str, str]:
    """The event's headers, entries that are not string pairs dropped (API Gateway sends only strings)."""
    if not isinstance(raw, Mapping):
        return {}
    return {name: value for name, value in raw.items() if isinstance(name, str) and isinstance(value, str)}


def lower_headers(raw: Any) -> dict[str, str]:
    """Header names lower-cased (HTTP names are case-insensitive); non-string entries dropped."""
    return {name.lower(): value for name, value in string_headers(raw).items()}


def parse_cookies(values: list[str]) -> dict[str, str]:
    """`name=value` pairs from HTTP API `cookies` entries or REST `Cookie` header values."""
    cookies: dict[str, str] = {}
    for value in values:
        for pair in value.split(";"):
            name, sep, cookie_value = pair.strip().partition("=")
            if sep and name and name not in cookies:
                cookies[name] = cookie_value.strip()
    return cookies


def event_cookies(event: Mapping[str, Any], headers: Mapping[str, str]) -> dict[str, str]:
    """Cookies of an HTTP API 2.0 event (its `cookies` list) or a REST event (its `Cookie` header).

    Anything but a list of strings in `cookies` is ignored: API Gateway only ever sends a list.
    """
    raw = event.get("cookies")
    if isinstance(raw, list):
        return parse_cookies([value for value in raw if isinstance(value, str)])
    return parse_cookies([headers["cookie"]] if "cookie" in headers else [])


def _body_bytes(event: Mapping[str, Any]) -> bytes:
    body = event.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        raise BadRequestError("body must be a string")
    if event.get("isBase64Encoded") is True:
        if len(body) > _MAX_ENCODED_CHARS:
            raise PayloadTooLargeError(f"body exceeds {MAX_BODY_BYTES} bytes")
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequestError("body is not valid base64") from None
    else:
        if len(body) > MAX_BODY_BYTES:  # characters ≤ bytes in UTF-8: a cheap early reject
            raise PayloadTooLargeError(f"body exceeds {MAX_BODY_BYTES} bytes")
        raw = body.encode("utf-8", errors="surrogatepass")
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLargeError(f"body exceeds {MAX_BODY_BYTES} bytes")
    return raw


def parse_proxy_event(event: Any) -> HttpRequest:
    """Normalise an HTTP API 2.0 or REST 1.0 proxy event; raises BadRequestError if it is neither."""
    if not isinstance(event, Mapping):
        raise BadRequestError("event is not an object")
    # Both payload versions carry `headers`, `body` and `isBase64Encoded` under the same names.
    return HttpRequest(headers=string_headers(event.get("headers")), body=_body_bytes(event))


def json_response(status_code: int, payload: Mapping[str, Any]) -> dict[str, Any]:
    """A proxy response valid for both payload versions."""
    return {
        "statusCode": status_code,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(payload, separators=(",", ":")),
        "isBase64Encoded": False,
    }


def authorizer_value(event: Any, name: str) -> str | None:
    """A non-empty string the Lambda authorizer put in the request context, for either payload:
    HTTP API nests it under `authorizer.lambda`, REST puts it directly under `authorizer`."""
    if not isinstance(event, Mapping):
        return None
    context = event.get("requestContext")
    authorizer = context.get("authorizer") if isinstance(context, Mapping) else None
    if not isinstance(authorizer, Mapping):
        return None
    nested = authorizer.get("lambda")
    values: Mapping[str, Any] = nested if isinstance(nested, Mapping) else authorizer
    value = values.get(name)
    return value if isinstance(value, str) and value else None
