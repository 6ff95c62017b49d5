"""A client-side share of Clerk's rate limit: at most N requests over ANY window of W seconds.

Clerk limits a whole instance (production 1,000 requests per 10 s, development 100), and the
application's own Backend API calls share that limit with reconciliation. A sliding-window log (the
send times of the last N requests) is the exact form of "never more than N in any W seconds": a
token bucket refills continuously and lets a full burst follow a full window, up to 2N in some W.
Memory is N timestamps (200 by default). Written here rather than taken from a library because the
candidates (`ratelimit`, `limits`, `pyrate-limiter`) either sleep on their own clock, which tests
cannot skip, or bring storage backends the layer does not need; this needs an injectable clock and
sleep, and the choice to hand a long wait to the caller (a durable `context.wait` costs no compute).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Clock = Callable[[], float]
Sleep = Callable[[float], None]

DEFAULT_WINDOW_SECONDS = 10.0
IN_FLIGHT_POLL_SECONDS = 0.05


class RateLimitWait(Exception):
    """The next request may only go out in `seconds`: longer than the caller lets us sleep here."""

    def __init__(self, seconds: float, reason: str) -> None:
        super().__init__(f"{reason}: wait {seconds:.1f} s")
        self.seconds = seconds
        self.reason = reason


class _Slot:
    """One request's place in the window: held from before it is sent until its answer is in."""

    __slots__ = ("end",)

    def __init__(self) -> None:
        self.end = math.inf  # in flight


class SlidingWindowLimiter:
    """Thread-safe: the users' and organizations' passes of one invocation share one limiter.

    A request counts from the moment it is let through until a window after its answer arrived, so
    however long it took to reach Clerk, Clerk never sees more than `max_requests` in any window.
    """

    def __init__(
        self,
        max_requests: int,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        max_sleep_seconds: float = float("inf"),
    ) -> None:
        if max_requests < 1:
            raise ValueError("max_requests must be at least 1")
        self.max_requests = max_requests
        self.window_seconds = window_seconds
        self._clock = clock
        self._sleep = sleep
        self._max_sleep = max_sleep_seconds
        self._slots: list[_Slot] = []
        self._lock = threading.Lock()

    def _reserve(self) -> _Slot | float:
        """A slot, taken now, or how long to wait before asking again."""
        with self._lock:
            now = self._clock()
            self._slots = [slot for slot in self._slots if slot.end > now - self.window_seconds]
            if len(self._slots) < self.max_requests:
                slot = _Slot()
                self._slots.append(slot)
                return slot
            earliest = min(slot.end for slot in self._slots)
            # Every slot in flight: their answers are due any moment; look again shortly.
            return IN_FLIGHT_POLL_SECONDS if math.isinf(earliest) else earliest + self.window_seconds - now

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold a slot for the block (one request): wait for it first, sleeping at most
        `max_sleep_seconds` at a time.

        Raises RateLimitWait when the wait is longer than that: the caller ends its step and waits
        outside the invocation instead of paying for an idle Lambda.
        """
        while True:
            taken = self._reserve()
            if isinstance(taken, _Slot):
                break
            if taken > self._max_sleep:
                # The caller waits elsewhere, and may go on in a new process whose limiter is empty:
                # a whole window's wait makes sure the requests before it count in no later window.
                raise RateLimitWait(max(taken, self.window_seconds), "client-side rate limit")
            self._sleep(taken)
        try:
            yield
        finally:
            with self._lock:
                taken.end = self._clock()

    def sent_in_window(self) -> int:
        """How many requests count against the current window (progress logs)."""
        with self._lock:
            now = self._clock()
            return sum(1 for slot in self._slots if slot.end > now - self.window_seconds)
