"""Reliability suite fixtures (the authorizer keyed by a PEM, unreachable and hanging AWS endpoints,
quiet logs). Hypothesis profiles are in support.py, the end-of-run report in report.py; the signing key
`key` is tests/conftest.py's."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest

from tests.reliability.support import unused_port
from tests.session_tokens import trust_pem
from usersync.runtime.aws import reset_clients
from usersync.runtime.observability import logger
from usersync_dev.clerk import SigningKey

FAULT_TABLE = "usersync-test-users"


@pytest.fixture
def pem_authorizer_env(key: SigningKey, monkeypatch: pytest.MonkeyPatch) -> SigningKey:
    """The authorizer's environment: `key`'s PEM (networkless), issuer checked, any azp."""
    trust_pem(monkeypatch, key, authorized_parties=None)
    return key


@pytest.fixture
def pem_authorizer(
    pem_authorizer_env: SigningKey,  # noqa: ARG001 - fixture wanted for its side effect
    users_table: str,  # noqa: ARG001 - fixture wanted for its side effect
    function_loader: Callable[[str], ModuleType],
) -> ModuleType:
    """The real authorizer handler on a moto table, trusting `key`."""
    return function_loader("authorizer")


@pytest.fixture
def hanging_endpoint() -> Iterator[str]:
    """A listener that accepts TCP connections and never answers: the client must time out."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def _table_at(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("USERS_TABLE_NAME", FAULT_TABLE)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", endpoint)
    reset_clients()
    try:
        yield FAULT_TABLE
    finally:
        reset_clients()


@pytest.fixture
def refused_table(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The user table behind an endpoint that refuses connections (clients built after this)."""
    yield from _table_at(f"http://127.0.0.1:{unused_port()}", monkeypatch)


@pytest.fixture
def hanging_table(hanging_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The user table behind an endpoint that accepts connections and never answers."""
    yield from _table_at(hanging_endpoint, monkeypatch)


@pytest.fixture
def quiet_logs() -> Iterator[None]:
    """INFO lines for thousands of deliveries cost time and say nothing here; warnings still show."""
    level = logger.log_level
    logger.setLevel("WARNING")
    yield
    logger.setLevel(level)
