"""The reliability suite's end-of-run report, summed across pytest-xdist workers.

Each process counts into support.REPORT. An xdist worker hands its counts to the controller through
`workeroutput` when its session ends; the controller adds them up as each worker goes down, then prints
and writes the total. Without xdist the one process is both, and the same hooks print its own counts.
tests/conftest.py lists this plugin (the controller never collects tests/reliability/conftest.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.reliability.support import PROFILE, REPORT, write_report

WORKER_OUTPUT_KEY = "usersync_reliability_report"


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput: dict[str, Any] | None = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: its counts travel to the controller
        workeroutput[WORKER_OUTPUT_KEY] = dict(REPORT)


@pytest.hookimpl(optionalhook=True)  # an xdist hook: unknown (and never called) without xdist
def pytest_testnodedown(node: Any) -> None:
    counts: dict[str, int] = getattr(node, "workeroutput", {}).get(WORKER_OUTPUT_KEY, {})
    REPORT.update(counts)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if hasattr(terminalreporter.config, "workerinput"):  # a worker: the controller reports
        return
    summary = write_report()
    if not summary:
        return
    terminalreporter.section(f"usersync reliability (hypothesis profile: {PROFILE})")
    for name, value in summary.items():
        terminalreporter.write_line(f"{name}: {value}")
