"""Headless Chromium for tests/browser: Debian's `chromium` driven by Playwright, no browser download.

Without Chromium a developer's `make test` skips these tests and says so loudly at the end of the run,
with the command that installs it (report.py); under CI (CI=true) a missing Chromium fails them instead, since
`.ci/run` installs it and a skip there would hide a CORS regression.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser.report import _SKIP_PREFIX, INSTALL_COMMAND

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext

CHROMIUM_ENV = "USERSYNC_CHROMIUM"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
# Quiet and self-contained: no GPU, no QUIC, no first-run UI, no calls home (only loopback is allowed).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAUNCH_TIMEOUT_MS = 30_000
ACTION_TIMEOUT_MS = 15_000


def chromium_path() -> str | None:
    """The Chromium to drive: $USERSYNC_CHROMIUM, else Debian's package, else nothing."""
    candidate = os.environ.get(CHROMIUM_ENV) or DEFAULT_CHROMIUM
    return candidate if os.access(candidate, os.X_OK) else None


def _under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def _missing(reason: str) -> None:
    """Skip on a developer machine; fail under CI, where .ci/run installs Chromium."""
    if _under_ci():
        pytest.fail(f"{reason} (CI=true: .ci/run should have installed it with `{INSTALL_COMMAND}`)")
    pytest.skip(f"{_SKIP_PREFIX}: {reason}; install it with: {INSTALL_COMMAND}")


@pytest.fixture(scope="session")
def browser_context() -> Iterator[BrowserContext]:
    """A fresh headless Chromium profile (its own user-data-dir), closed after the session."""
    executable = chromium_path()
    if executable is None:
        _missing(f"no executable Chromium at {os.environ.get(CHROMIUM_ENV) or DEFAULT_CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the `playwright` Python package is not installed (make venv installs the dev extras)")
    profile = Path(tempfile.mkdtemp(prefix="usersync-chromium-"))
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                str(profile),
                executable_path=executable,
                headless=True,
                args=CHROMIUM_FLAGS,
                timeout=LAUNCH_TIMEOUT_MS,
            )
            context.set_default_timeout(ACTION_TIMEOUT_MS)
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
