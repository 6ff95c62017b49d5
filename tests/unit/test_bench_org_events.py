"""`make bench`'s organization-events benchmark runs (tiny) and its call counts are well formed."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from usersync.aws import reset_clients

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _restore_process_state() -> Iterator[None]:
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
    reset_clients()


def test_org_events_counts_one_call_per_event_and_me_requests() -> None:
    from bench import org_events

    calls, me = org_events.run(organizations=3)
    assert calls.benchmark == me.benchmark == "org events"
    by_type = calls.details["calls_per_event_by_type"]
    assert "organizationMembership.deleted" in by_type and "organization.updated (duplicate)" in by_type
    assert calls.details["events"] == sum(sum(counts.values()) for counts in by_type.values())
    assert isinstance(calls.met, bool) and isinstance(me.met, bool)
    assert set(calls.details["me_requests_histogram"]) <= {1, 2, 3, 4}
