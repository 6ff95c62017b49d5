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

import threading
import time
from collections import deque
from collections.abc import Callable

Clock = Callable[[], float]
Sleep = Callable[[float], None]

DEFAULT_WINDOW_SECONDS = 10.0


class RateLimitWait(Exception):
    """The next request may only go out in `seconds`: longer than the caller lets us sleep here."""

    def __init__(self, seconds: float, reason: str) -> None:
        super().__init__(f"{reason}: wait {seconds:.1f} s")
        self.seconds = seconds
        self.reason = reason


class SlidingWindowLimiter:
    """Thread-safe: the users' and organizations' passes of one invocation share one limiter."""

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
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()

    def _reserve(self) -> float:
        """Record a send now and return 0, or return how long to wait before trying again."""
        with self._lock:
            now = self._clock()
            while self._sent and self._sent[0] <= now - self.window_seconds:
                self._sent.popleft()
            if len(self._sent) < self.max_requests:
                self._sent.append(now)
                return 0.0
            return self._sent[0] + self.window_seconds - now

    def acquire(self) -> None:
        """Wait (sleeping at most `max_sleep_seconds` at a time) until a request may be sent.

        Raises RateLimitWait when the wait is longer than that: the caller ends its step and waits
        outside the invocation instead of paying for an idle Lambda.
        """
        while True:
            wait = self._reserve()
            if wait <= 0:
                return
            if wait > self._max_sleep:
                raise RateLimitWait(wait, "client-side rate limit")
            self._sleep(wait)

    def sent_in_window(self) -> int:
        """How many requests were sent in the last window (progress logs)."""
        with self._lock:
            now = self._clock()
            return sum(1 for sent in self._sent if sent > now - self.window_seconds)
