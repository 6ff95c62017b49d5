"""Dependencies that are down, as real loopback sockets: the two ways an endpoint fails to answer."""

from __future__ import annotations

import pytest

from tests.reliability.support import unused_port

# `hanging`: accepts TCP connections and never answers (the client must time out);
# `refused`: nothing listens (the connection is refused at once).
OUTAGES = ["hanging", "refused"]


def outage_endpoint(request: pytest.FixtureRequest, outage: str) -> str:
    """A loopback URL that fails the way `outage` names (the hanging one lives as long as the test)."""
    if outage == "hanging":
        endpoint: str = request.getfixturevalue("hanging_endpoint")  # tests/reliability/conftest.py
        return endpoint
    return f"http://127.0.0.1:{unused_port()}"
