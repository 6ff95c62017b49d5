"""The loud end-of-run list of browser tests skipped for want of Chromium.

A plugin listed in tests/conftest.py's pytest_plugins, not a hook of tests/browser/conftest.py: with
pytest-xdist the controller, which prints the summary, never collects and so never loads that conftest.
"""

from __future__ import annotations

import pytest

INSTALL_COMMAND = "sudo apt-get update && sudo apt-get install -y chromium"
_SKIP_PREFIX = "browser tests need Chromium"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """A loud list of the browser tests that were skipped for want of Chromium (never a silent pass).

    Read from the reports, so it also sees skips made in pytest-xdist workers.
    """
    skipped = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if "tests/browser/" in getattr(report, "nodeid", "").replace("\\", "/")
        and _SKIP_PREFIX in str(getattr(report, "longrepr", ""))
    ]
    if not skipped:
        return
    terminalreporter.section("BROWSER TESTS SKIPPED: no Chromium", sep="!", red=True, bold=True)
    for report in skipped:
        terminalreporter.write_line(f"SKIPPED {report.nodeid}", yellow=True)
    terminalreporter.write_line(
        "The local stack's CORS (CONTRACT §10) was NOT checked in a real browser. Install Chromium with:",
        red=True,
        bold=True,
    )
    terminalreporter.write_line(f"    {INSTALL_COMMAND}", bold=True)
