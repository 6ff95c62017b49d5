"""Reliability suite fixtures, hypothesis profiles (see support.py) and the end-of-run report."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest

from tests.helpers import FakeLambdaContext
from tests.reliability.support import PROFILE, WebhookDriver, write_report


@pytest.fixture
def webhook(
    users_table: str,
    webhook_secret: str,
    function_loader: Callable[[str], ModuleType],
    lambda_context: FakeLambdaContext,
) -> WebhookDriver:
    """The real webhook handler on a moto table, loaded once per test (one cold start)."""
    return WebhookDriver(function_loader("webhook"), webhook_secret, lambda_context)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    summary = write_report()
    if not summary:
        return
    terminalreporter.section(f"usersync reliability (hypothesis profile: {PROFILE})")
    for name, value in summary.items():
        terminalreporter.write_line(f"{name}: {value}")
