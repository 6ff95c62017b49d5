"""The time budget stops attempts that could not finish in time, and only those (usersync.runtime.budget/aws).

DynamoDB is a loopback listener that never answers; the connections it queued show how many attempts
botocore really started.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from usersync.runtime.aws import dynamodb_client, reset_clients
from usersync.runtime.budget import TimeBudget, time_budget
from usersync.store.errors import RepositoryError
from usersync.store.users import UserRepository


@pytest.fixture
def silent_table(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[socket.socket, UserRepository]]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", f"http://127.0.0.1:{listener.getsockname()[1]}")
        reset_clients()
        try:
            yield listener, UserRepository(dynamodb_client(), "users")
        finally:
            reset_clients()


def _attempts(listener: socket.socket) -> int:
    """Connections the silent server received (botocore opens one per attempt here)."""
    listener.setblocking(False)
    count = 0
    while True:
        try:
            connection, _ = listener.accept()
        except BlockingIOError:
            return count
        connection.close()
        count += 1


def test_the_retry_is_not_started_when_it_could_not_end_in_time(
    silent_table: tuple[socket.socket, UserRepository],
) -> None:
    listener, repository = silent_table
    started = time.monotonic()
    # Room for one attempt (0.5 s connect + 1 s read), not for two
    with time_budget(TimeBudget(time.monotonic() + 1.6)), pytest.raises(RepositoryError) as raised:
        repository.get("user_1")
    elapsed = time.monotonic() - started
    assert raised.value.code == "TimeBudgetExhaustedError"
    assert _attempts(listener) == 1
    assert elapsed < 1.6


def test_without_a_deadline_the_bounded_retry_happens(
    silent_table: tuple[socket.socket, UserRepository],
) -> None:
    listener, repository = silent_table
    with pytest.raises(RepositoryError) as raised:
        repository.get("user_1")
    assert raised.value.code == "ReadTimeoutError"
    assert _attempts(listener) == 2  # standard mode, total_max_attempts 2


def test_no_attempt_is_started_when_none_fits(silent_table: tuple[socket.socket, UserRepository]) -> None:
    listener, repository = silent_table
    with time_budget(TimeBudget(time.monotonic() + 0.2)), pytest.raises(RepositoryError) as raised:
        repository.get("user_1")
    assert raised.value.code == "TimeBudgetExhaustedError"
    assert _attempts(listener) == 0


def test_a_hanging_jwks_fetch_ends_inside_the_invocation_budget() -> None:
    """The JWKS fetch is bounded by what the invocation has left, not by its fixed 2 s per operation."""
    from usersync.clerk.jwks import JwksKeySource
    from usersync.clerk.token_errors import DenyReason, KeyUnavailableError

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)  # accepts connections, never answers
        source = JwksKeySource(f"http://127.0.0.1:{listener.getsockname()[1]}/.well-known/jwks.json")
        started = time.monotonic()
        with time_budget(TimeBudget(time.monotonic() + 0.6)), pytest.raises(KeyUnavailableError) as denied:
            source.key_for("kid_1")
        elapsed = time.monotonic() - started
    assert denied.value.reason is DenyReason.JWKS_UNAVAILABLE
    assert elapsed < 0.6, f"{elapsed:.2f} s: the fetch outlived the budget"
