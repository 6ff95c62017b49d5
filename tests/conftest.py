"""Shared fixtures: offline AWS (moto), the user table built from template.yaml, handler loading."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from types import ModuleType
from typing import Any

import pytest

# Before anything creates a boto3 client: fake credentials, a region, no real endpoints.
for _name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
    os.environ.pop(_name, None)
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "usersync",
        "POWERTOOLS_METRICS_NAMESPACE": "usersync-test",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "LOG_LEVEL": "INFO",
    }
)

from moto import mock_aws  # noqa: E402

from usersync_dev.moto_compat import match_dimensions_as_a_set  # noqa: E402

# CloudWatch matches dimensions as a set; moto only in put order. Fixed here, in the stand-in, so
# /health keeps one query per series (CONTRACT §7).
match_dimensions_as_a_set()

from tests.helpers import (  # noqa: E402
    FakeLambdaContext,
    InvokeFunction,
    LogCapture,
    WebhookDriver,
    load_function,
)
from usersync.runtime.aws import dynamodb_client, reset_clients  # noqa: E402
from usersync.runtime.observability import metrics  # noqa: E402
from usersync_dev.clerk import SigningKey, new_webhook_secret  # noqa: E402
from usersync_dev.template import create_organizations_table, create_users_table  # noqa: E402

TABLE_NAME = "usersync-test-users"

# End-of-run reports, as plugins: the xdist controller (which prints them) never collects, so it never
# loads the conftest.py of a test folder; the plugins sum or read what the workers report.
pytest_plugins = ("tests.reliability.report", "tests.browser.report")

# ------------------------------------------------------------------------ the two tiers

# Whole folders that only `make test` runs: the reliability suite (thousands of hypothesis examples,
# real waits on hanging sockets) and the bench smoke tests. Elsewhere a module marks itself `slow`.
SLOW_FOLDERS = {"reliability", "bench"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`make check` runs what is not `slow`; `make test` runs everything, the slow tests first so the
    longest ones start early on the xdist workers instead of ending the run on one of them."""
    for item in items:
        if item.path.parent.name in SLOW_FOLDERS and item.path.parent.parent.name == "tests":
            item.add_marker(pytest.mark.slow)
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: files keep their order


@pytest.fixture(autouse=True)
def _clean_metrics() -> Iterator[None]:
    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


def _metric_total(document: Mapping[str, Any], name: str) -> float:
    value = document.get(name, 0)
    return float(sum(value)) if isinstance(value, list) else float(value)


@pytest.fixture(autouse=True)
def flushed_emf_documents(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """Contract §8, suite-wide: every EMF document any test flushes has SyncFailures <= SyncAttempts.

    Observes Powertools' serializer (it still runs and its output is printed as before), so whatever
    a test does with stdout, every flush of the shared Metrics object is checked."""
    flushed: list[dict[str, Any]] = []
    serialize = metrics.provider.serialize_metric_set

    def observed(*args: Any, **kwargs: Any) -> Any:
        document = serialize(*args, **kwargs)
        flushed.append(dict(document))
        return document

    monkeypatch.setattr(metrics.provider, "serialize_metric_set", observed)
    yield flushed
    broken = [
        document
        for document in flushed
        if _metric_total(document, "SyncFailures") > _metric_total(document, "SyncAttempts")
    ]
    assert not broken, f"EMF flush with more SyncFailures than SyncAttempts (contract §8): {broken}"


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        reset_clients()
        yield
    reset_clients()


def _table_for_handlers(
    create_table: Callable[[Any, str], None], name: str, setting: str, monkeypatch: pytest.MonkeyPatch
) -> str:
    """Creates a table as template.yaml defines it (on moto) and points the handlers' setting at it."""
    create_table(dynamodb_client(), name)
    monkeypatch.setenv(setting, name)
    return name


@pytest.fixture
def users_table(
    aws: None,  # noqa: ARG001 - fixture wanted for its side effect
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    return _table_for_handlers(create_users_table, TABLE_NAME, "USERS_TABLE_NAME", monkeypatch)


@pytest.fixture
def webhook_secret(monkeypatch: pytest.MonkeyPatch) -> str:
    secret = new_webhook_secret()
    monkeypatch.setenv("CLERK_WEBHOOK_SIGNING_SECRET", secret)
    return secret


@pytest.fixture
def function_loader() -> Callable[[str], ModuleType]:
    return load_function


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


@pytest.fixture
def invoke_function(
    function_loader: Callable[[str], ModuleType], lambda_context: FakeLambdaContext
) -> InvokeFunction:
    """Calls functions/<name>/app.py's handler with the Lambda context, loading it afresh each time
    (a cold start: it reads the environment as it is at that call)."""

    def invoke(name: str, event: dict[str, Any]) -> dict[str, Any]:
        response: dict[str, Any] = function_loader(name).lambda_handler(event, lambda_context)
        return response

    return invoke


@pytest.fixture
def webhook(
    users_table: str,  # noqa: ARG001 - fixture wanted for its side effect
    webhook_secret: str,
    function_loader: Callable[[str], ModuleType],
    lambda_context: FakeLambdaContext,
) -> WebhookDriver:
    """The real webhook handler on a moto table, loaded once per test (one cold start)."""
    return WebhookDriver(function_loader("webhook"), webhook_secret, lambda_context)


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    capture = LogCapture()
    yield capture
    capture.close()


ORGANIZATIONS_TABLE_NAME = "usersync-test-organizations"


@pytest.fixture
def organizations_table(
    users_table: str,  # noqa: ARG001 - fixture wanted for its side effect
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    """The organizations table (CONTRACT §11) beside the user table, created from template.yaml."""
    return _table_for_handlers(
        create_organizations_table, ORGANIZATIONS_TABLE_NAME, "ORGANIZATIONS_TABLE_NAME", monkeypatch
    )


@pytest.fixture
def restore_process_state() -> Iterator[None]:
    """For code that changes the process itself (environment, cached AWS clients), as the bench does."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
    reset_clients()


# ------------------------------------------------------------------------ the Clerk signing key


@pytest.fixture(scope="module")
def key() -> SigningKey:
    """The key the authorizer under test trusts (its PEM, or the JWKS a test serves for it): one per
    test module, shared by the unit, integration and reliability suites."""
    return SigningKey.generate("ins_suite_key")
