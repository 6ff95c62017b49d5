"""Reconciliation's share of Clerk's rate limit (CONTRACT §12): never more than its cap over ANY 10 s
window, measured by a Clerk stand-in that records when each request arrived, on a fake clock (the
limiter's sleeps advance it), so the test takes no 10 s of real time. 429s still honour Retry-After."""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterator

import pytest

from usersync.clerk.backend_api import ClerkBackendApi
from usersync.clerk.rate_limit import RateLimitWait, SlidingWindowLimiter
from usersync_dev.clerk import clerk_user
from usersync_dev.loopback_clerk import LoopbackClerk

WINDOW = 10.0


class FakeClock:
    """Monotonic time that moves only when someone sleeps (thread-safe)."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.now += seconds


def busiest_window(times: list[float]) -> int:
    """The most requests in any half-open window [t, t + 10 s), over every start t (a request's time
    is the only start worth checking: sliding the window right until it hits a request only loses)."""
    ordered = sorted(times)
    return max(
        (bisect_left(ordered, start + WINDOW) - index for index, start in enumerate(ordered)), default=0
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def clerk(clock: FakeClock) -> Iterator[LoopbackClerk]:
    fake = LoopbackClerk(clock=clock)
    for index in range(3):
        fake.add_user(clerk_user(f"user_{index}", created_at=index + 1))
    with fake.serve():
        yield fake


def client(
    clerk: LoopbackClerk, clock: FakeClock, limiter: SlidingWindowLimiter, **kwargs: float
) -> ClerkBackendApi:
    return ClerkBackendApi(clerk.secret_key, clerk.url, limiter=limiter, sleep=clock.sleep, **kwargs)  # type: ignore[arg-type]


def test_busiest_window_counts_what_it_should() -> None:
    assert busiest_window([0, 1, 9.99, 10, 19.99]) == 3
    assert busiest_window([0, 10, 20]) == 1


@pytest.mark.parametrize("cap", [7, 50])
def test_two_threads_sharing_the_limiter_never_exceed_the_cap_in_any_window(
    clerk: LoopbackClerk, clock: FakeClock, cap: int
) -> None:
    limiter = SlidingWindowLimiter(cap, WINDOW, clock=clock, sleep=clock.sleep)
    per_thread = 3 * cap

    def work() -> None:
        api = client(clerk, clock, limiter)
        for _ in range(per_thread):
            assert len(api.users_page(None)) == 3

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    times = [when for when, _ in clerk.requests]
    assert len(times) == 2 * per_thread
    assert busiest_window(times) <= cap
    # And the cap is used, not just respected: 6 windows' worth of requests take about 5 windows.
    assert max(times) - min(times) <= (2 * per_thread / cap) * WINDOW


def test_a_wait_longer_than_the_caller_allows_is_handed_back_not_slept(
    clerk: LoopbackClerk, clock: FakeClock
) -> None:
    limiter = SlidingWindowLimiter(2, WINDOW, clock=clock, sleep=clock.sleep, max_sleep_seconds=1.0)
    api = client(clerk, clock, limiter)
    api.users_page(None)
    api.users_page(None)
    with pytest.raises(RateLimitWait) as waited:
        api.users_page(None)
    assert waited.value.seconds == pytest.approx(WINDOW)
    assert clock.slept == []
    assert len(clerk.requests) == 2


def test_429_with_retry_after_is_honoured_then_the_request_succeeds(
    clerk: LoopbackClerk, clock: FakeClock
) -> None:
    clerk.too_many_requests, clerk.retry_after = 1, "7"
    api = client(clerk, clock, SlidingWindowLimiter(100, WINDOW, clock=clock, sleep=clock.sleep))
    assert [user["id"] for user in api.users_page(None)] == ["user_0", "user_1", "user_2"]
    assert clock.slept == [7.0]
    assert len(clerk.requests) == 2


def test_429_retry_after_longer_than_the_caller_sleeps_becomes_a_wait(
    clerk: LoopbackClerk, clock: FakeClock
) -> None:
    clerk.too_many_requests, clerk.retry_after = 1, "30"
    limiter = SlidingWindowLimiter(100, WINDOW, clock=clock, sleep=clock.sleep, max_sleep_seconds=1.0)
    api = client(clerk, clock, limiter, max_sleep_seconds=1.0)
    with pytest.raises(RateLimitWait) as waited:
        api.users_page(None)
    assert waited.value.seconds == 30.0
    assert clock.slept == []
    assert api.users_page(None)  # the next attempt, after the caller's wait, is served


def test_retry_after_is_capped(clerk: LoopbackClerk, clock: FakeClock) -> None:
    clerk.too_many_requests, clerk.retry_after = 1, "86400"
    api = client(clerk, clock, SlidingWindowLimiter(100, WINDOW, clock=clock, sleep=clock.sleep))
    api.users_page(None)
    assert clock.slept == [60.0]
