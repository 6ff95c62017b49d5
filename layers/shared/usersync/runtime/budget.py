"""The invocation's time budget: how long this Lambda may still spend before it must answer.

Lambda kills an invocation at its `Timeout`, and API Gateway turns that into a 500 for every caller,
so every outbound call (DynamoDB, Secrets Manager, CloudWatch, Clerk) checks, before each attempt,
that one more attempt still fits in what `context.get_remaining_time_in_millis()` leaves, minus a
reserve for answering. The budget travels in a context variable set by the handler decorator
(`with_time_budget`) rather than as a parameter through every layer: botocore's event hooks, which
do the check for AWS calls, have no other way to see it, and a context variable stays correct when
the local stack runs handlers in threads (health copies it into its worker threads).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

_R = TypeVar("_R")

# Time kept back for shaping and logging the answer, flushing metrics and Lambda's own overhead.
DEFAULT_RESERVE_SECONDS = 0.5


@dataclass(frozen=True)
class TimeBudget:
    """A deadline on the monotonic clock; `remaining()` is what is left before the reserve."""

    deadline: float

    @classmethod
    def unlimited(cls) -> TimeBudget:
        return cls(math.inf)

    @classmethod
    def from_context(cls, context: Any, reserve_seconds: float = DEFAULT_RESERVE_SECONDS) -> TimeBudget:
        remaining_ms = context.get_remaining_time_in_millis()
        return cls(time.monotonic() + remaining_ms / 1000 - reserve_seconds)

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def allows(self, seconds: float) -> bool:
        return self.remaining() >= seconds


_UNLIMITED = TimeBudget.unlimited()
_current: ContextVar[TimeBudget] = ContextVar("usersync_time_budget", default=_UNLIMITED)


def current_budget() -> TimeBudget:
    """The budget of the invocation in progress (unlimited outside a handler: scripts, the REPL)."""
    return _current.get()


@contextmanager
def time_budget(budget: TimeBudget) -> Iterator[TimeBudget]:
    token = _current.set(budget)
    try:
        yield budget
    finally:
        _current.reset(token)


def with_time_budget(
    reserve_seconds: float = DEFAULT_RESERVE_SECONDS,
) -> Callable[[Callable[[Any, Any], _R]], Callable[[Any, Any], _R]]:
    """Handler decorator: the invocation's budget comes from the Lambda context it is given."""

    def decorate(handler: Callable[[Any, Any], _R]) -> Callable[[Any, Any], _R]:
        @functools.wraps(handler)
        def wrapper(event: Any, context: Any) -> _R:
            with time_budget(TimeBudget.from_context(context, reserve_seconds)):
                return handler(event, context)

        return wrapper

    return decorate
