"""The base of every shape Clerk sends, and the webhook envelope.

Clerk's real payloads drift from its documented examples, so inbound models ignore unknown fields and
accept nulls wherever Clerk has been seen to send them.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

# Clerk times are epoch milliseconds; 10**15 is the year 33658. Anything outside is not a Clerk time
# (and past 38 digits DynamoDB cannot store it): rejecting it at parse time makes a webhook a 400,
# which Svix does not retry, instead of a write that fails on every retry.
EpochMs = Annotated[int, Field(ge=0, lt=10**15)]


class ClerkPayload(BaseModel):
    """Base of every shape Clerk sends (webhook data, Backend API objects, token claims): Clerk adds
    fields over time, so unknown ones are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


def empty_string_as_absent(value: Any) -> Any:
    """Clerk renders an unset text field or claim as "" (or null): both mean absent."""
    return None if value == "" else value


# Optional Clerk text, "" read as None at parse time: an unknown value is never stored as "".
ClerkText = Annotated[str | None, BeforeValidator(empty_string_as_absent)]


class ClerkRecord(ClerkPayload):
    """A Clerk object usersync mirrors (user, organization, membership): Clerk's times version it."""

    created_at: EpochMs | None = None
    updated_at: EpochMs


class ClerkEvent(ClerkPayload):
    """The webhook envelope; `data` is validated per event type once the type is known.

    Parsed leniently: an envelope carrying `type` and `data` is an event whatever its `object` says
    (Clerk writes "event"; a relay or a future version may write something else, or nothing)."""

    type: str
    data: dict[str, Any]
    timestamp: EpochMs | None = None


class ClerkPayloadError(ValueError):
    """What Clerk sent is not JSON or lacks what its type needs. The message names the fields and
    the problem, never their values, so it is safe to log and to answer with."""


def describe(exc: ValidationError) -> str:
    """A validation error as `field.path: problem; ...`, without the input values."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
        for error in exc.errors(include_input=False, include_url=False)
    )


def unreadable_problem(exc: Exception) -> str:
    """Why a body or value could not be read at all, named by what went wrong, never by its content.

    Hostile or broken input makes the parsers raise more than their documented errors: Python's JSON
    parser raises RecursionError past about 1,000 levels of nesting, ValueError for an integer of more
    than 4,300 digits, UnicodeDecodeError for bytes that are not UTF-8."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte {exc.start})"
    if isinstance(exc, ValueError) and "integer string conversion" in str(exc):
        return "an integer has too many digits (more than 4,300)"
    if isinstance(exc, ValueError):  # json.JSONDecodeError: position and problem, no content
        return f"not valid JSON ({exc})"
    return f"unreadable ({type(exc).__name__})"
