"""`make bench`'s organization-events benchmark runs (tiny) and its call counts are well formed."""

from __future__ import annotations

import pytest

# The bench sets environment variables and clients for its own stacks: restored after each test.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("restore_process_state")]


def test_org_events_counts_one_call_per_event_and_me_requests() -> None:
    from bench import org_events

    calls, me = org_events.run(organizations=3)
    assert calls.benchmark == me.benchmark == "org events"
    by_type = calls.details["calls_per_event_by_type"]
    assert "organizationMembership.deleted" in by_type
    assert "organization.updated (duplicate)" in by_type
    assert calls.details["events"] == sum(sum(counts.values()) for counts in by_type.values())
    assert isinstance(calls.met, bool)
    assert isinstance(me.met, bool)
    assert set(calls.details["me_requests_histogram"]) <= {1, 2, 3, 4}
