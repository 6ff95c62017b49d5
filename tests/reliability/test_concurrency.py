"""Concurrency: 16 threads deliver interleaved updates of one user to a moto server over real HTTP.

The server (`moto.server.ThreadedMotoServer` on 127.0.0.1) handles requests on its own threads, so
conditional writes from different deliveries genuinely race, as they do when Svix retries and
several Lambda containers run at once. Whatever the interleaving, the stored item is the newest
update, and every delivery is answered 200.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
from moto.server import ThreadedMotoServer

from tests.helpers import WebhookDriver
from tests.reliability.support import REPORT, read_item, unused_port, without_synced_at
from usersync.runtime.aws import dynamodb_client, reset_clients
from usersync_dev.clerk import clerk_event, clerk_user
from usersync_dev.template import create_users_table

TABLE = "usersync-concurrency-users"
THREADS = 16
UPDATES_PER_THREAD = 16
T0 = 1_730_279_325_025


@pytest.fixture
def moto_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A moto server on loopback, the endpoint of every DynamoDB client built after this."""
    port = unused_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", endpoint)
    reset_clients()
    try:
        yield endpoint
    finally:
        reset_clients()
        server.stop()


@pytest.fixture
def users_table(
    moto_server: str,  # noqa: ARG001 - fixture wanted for its side effect
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    """Overrides tests/conftest.py's in-process moto table, so the suite's `webhook` fixture drives the
    handler against this table on the moto server instead."""
    monkeypatch.setenv("USERS_TABLE_NAME", TABLE)
    create_users_table(dynamodb_client(), TABLE)
    return TABLE


def test_sixteen_threads_of_interleaved_updates_end_with_the_newest(
    moto_server: str, webhook: WebhookDriver
) -> None:
    assert dynamodb_client().meta.endpoint_url == moto_server  # real HTTP, not in-process mocking
    user_id = f"user_{uuid.uuid4().hex[:27]}"
    # Thread t owns updated_at values T0 + t, T0 + t + 16, ...: the threads' values interleave.
    updates = {
        thread: [
            (f"msg_{uuid.uuid4().hex}", T0 + thread + THREADS * k, f"name-{thread}-{k}")
            for k in range(UPDATES_PER_THREAD)
        ]
        for thread in range(THREADS)
    }
    newest_id, newest_at, newest_name = max(
        (update for per_thread in updates.values() for update in per_thread), key=lambda update: update[1]
    )
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []
    statuses: Counter[tuple[int, str]] = Counter()
    lock = threading.Lock()

    def deliver_all(thread: int) -> None:
        try:
            order = list(updates[thread])
            random.Random(thread).shuffle(order)
            barrier.wait()
            for message_id, updated_at, name in order:
                data = clerk_user(user_id, first_name=name, created_at=T0, updated_at=updated_at)
                payload = clerk_event("user.updated", data, timestamp=updated_at)
                for _ in range(1 + (updated_at % 3 == 0)):  # every third one is redelivered
                    response = webhook.deliver(message_id, payload)
                    with lock:
                        statuses[(response.status, response.body["status"])] += 1
        except BaseException as exc:  # noqa: BLE001 - collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=deliver_all, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads)
    assert {status for status, _ in statuses} == {200}, statuses
    assert sum(statuses.values()) >= THREADS * UPDATES_PER_THREAD
    assert statuses[(200, "applied")] >= 1
    item = without_synced_at(read_item(TABLE, user_id))
    assert item is not None
    assert item["updatedAt"] == newest_at
    assert item["firstName"] == newest_name
    assert item["lastEventId"] == newest_id
    assert item["source"] == "webhook"
    REPORT["concurrent deliveries (16 threads, moto server)"] += sum(statuses.values())
