"""A loopback stand-in for Clerk's Backend API, as much as reconciliation uses it (tests, bench, local).

Users: `GET /v1/users` by cursor (`order_by=+created_at&starting_after=<id>`; offset too), by id
(`user_id=a&user_id=b...`), and `GET /v1/users/{id}`. Organizations: `GET /v1/organizations` and
`GET /v1/organizations/{id}/memberships` by offset (`{data, total_count}`), `GET /v1/organizations/{id}`.
It counts every request per page (path and position) so a test can prove no page was listed twice,
can answer 429s with a `Retry-After`, fail a path, and wait a set latency per request (the bench).
"""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

Answer = tuple[int, dict[str, str], Any]


def _error(code: str, message: str) -> dict[str, Any]:
    return {"errors": [{"code": code, "message": message}]}


@dataclass
class LoopbackClerk:
    """Clerk's data and behaviour; `serve()` puts it behind a loopback HTTP server."""

    secret_key: str = "sk_test_loopback"
    users: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> user, kept in created order
    organizations: dict[str, dict[str, Any]] = field(default_factory=dict)
    memberships: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # org id -> memberships
    latency_seconds: float = 0.0  # slept per request (the bench's realistic page latency)
    too_many_requests: int = 0  # answer this many requests with 429 before serving again
    retry_after: str = "1"
    failing_prefixes: tuple[str, ...] = ()  # paths answered 503
    pages: Counter[str] = field(default_factory=Counter)  # page key -> times served
    requests: list[tuple[float, str]] = field(default_factory=list)  # (monotonic time, path) of each request
    on_request: Callable[[str, dict[str, list[str]]], None] | None = None  # a hook to change data mid-pass
    clock: Callable[[], float] = time.monotonic  # the time `requests` records (a test's fake clock)
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _order: list[str] | None = field(default=None, repr=False)
    _deleted: dict[str, int] = field(default_factory=dict, repr=False)  # id -> created_at of deleted users

    # ------------------------------------------------------------ data

    def add_user(self, user: dict[str, Any]) -> None:
        with self._lock:
            self.users[user["id"]] = user
            self._order = None

    def delete_user(self, user_id: str) -> None:
        with self._lock:
            user = self.users.pop(user_id, None)
            if user is not None:
                self._deleted[user_id] = user["created_at"]
            self._order = None

    def add_organization(self, organization: dict[str, Any], members: list[dict[str, Any]]) -> None:
        with self._lock:
            self.organizations[organization["id"]] = organization
            self.memberships[organization["id"]] = list(members)

    def listed_twice(self) -> dict[str, int]:
        """Page keys served more than once (the durable pass must have none)."""
        return {page: count for page, count in self.pages.items() if count > 1}

    # ------------------------------------------------------------ answers

    def handle(self, raw_path: str, authorization: str | None) -> Answer:
        parts = urlsplit(raw_path)
        query = parse_qs(parts.query)
        path = unquote(parts.path)
        if self.on_request is not None:
            self.on_request(path, query)
        with self._lock:
            self.requests.append((self.clock(), path))
            if authorization != f"Bearer {self.secret_key}":
                return 401, {}, _error("authentication_invalid", "invalid secret key")
            if self.too_many_requests > 0:
                self.too_many_requests -= 1
                return (
                    429,
                    {"Retry-After": self.retry_after},
                    _error("too_many_requests", "Too many requests"),
                )
            if any(path.startswith(prefix) for prefix in self.failing_prefixes):
                return 503, {}, _error("service_unavailable", "try later")
        if self.latency_seconds:
            time.sleep(self.latency_seconds)
        with self._lock:
            return self._route(path, query)

    def _route(self, path: str, query: dict[str, list[str]]) -> Answer:
        segments = path.strip("/").split("/")
        if segments == ["v1", "users", "count"]:
            return 200, {}, {"object": "total_count", "total_count": len(self.users)}
        if segments[:2] == ["v1", "users"]:
            return self._users(query) if len(segments) == 2 else self._one(self.users, segments[2])
        if segments[:2] == ["v1", "organizations"]:
            if len(segments) == 2:
                return self._offset("/v1/organizations", list(self.organizations.values()), query)
            if len(segments) == 4 and segments[3] == "memberships":
                members = self.memberships.get(segments[2])
                if members is None:
                    return 404, {}, _error("resource_not_found", "not found")
                return self._offset(path, members, query)
            return self._one(self.organizations, segments[2])
        return 404, {}, _error("resource_not_found", "not found")

    def _one(self, entries: dict[str, dict[str, Any]], entry_id: str) -> Answer:
        found = entries.get(entry_id)
        return (200, {}, found) if found is not None else (404, {}, _error("resource_not_found", "not found"))

    def _ordered(self) -> list[str]:
        if self._order is None:
            self._order = sorted(self.users, key=lambda user_id: (self.users[user_id]["created_at"], user_id))
        return self._order

    def _users(self, query: dict[str, list[str]]) -> Answer:
        limit = int(query.get("limit", ["10"])[0])
        if not 1 <= limit <= 500:
            return 422, {}, _error("form_param_value_invalid", "limit")
        if "user_id" in query:
            self.pages["/v1/users?user_id=" + ",".join(query["user_id"])] += 1
            return 200, {}, [self.users[i] for i in query["user_id"] if i in self.users][:limit]
        after, offset = query.get("starting_after", [None])[0], int(query.get("offset", ["0"])[0])
        if after is not None and (offset or not query.get("order_by", [""])[0].endswith("created_at")):
            return 422, {}, _error("form_param_value_invalid", "starting_after needs order_by created_at")
        order = self._ordered()
        if after is not None:
            start = self._position_after(order, after)
            self.pages[f"/v1/users?starting_after={after}"] += 1
        else:
            start = offset
            self.pages[f"/v1/users?offset={offset}"] += 1
        return 200, {}, [self.users[user_id] for user_id in order[start : start + limit]]

    def _position_after(self, order: list[str], after: str) -> int:
        """Where the page after user `after` starts, even if `after` was deleted meanwhile (Clerk
        pages by the cursor's position in created order, not by the entry's presence)."""
        if after in self.users:
            return order.index(after) + 1
        key = (self._deleted.get(after, 0), after)
        return sum(1 for user_id in order if (self.users[user_id]["created_at"], user_id) <= key)

    def _offset(self, path: str, entries: list[dict[str, Any]], query: dict[str, list[str]]) -> Answer:
        limit, offset = int(query.get("limit", ["10"])[0]), int(query.get("offset", ["0"])[0])
        self.pages[f"{path}?offset={offset}&limit={limit}"] += 1
        return 200, {}, {"data": entries[offset : offset + limit], "total_count": len(entries)}

    # ------------------------------------------------------------ serving

    @contextmanager
    def serve(self) -> Iterator[LoopbackClerk]:
        """Behind a loopback HTTP server for the block's duration (sets `url`)."""
        clerk = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, headers, body = clerk.handle(self.path, self.headers.get("Authorization"))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()


@contextmanager
def serve_from_child_process(users: Sequence[dict[str, Any]]) -> Iterator[str]:
    """A loopback Clerk holding `users`, served by a child process; yields its URL. A test that measures
    this process's memory (tracemalloc) then counts the pass alone: a server thread here would add its
    own page serialization, whose timing against the pass's varies by hundreds of KB."""
    context = multiprocessing.get_context("spawn")  # no fork of a process running threads
    ours, theirs = context.Pipe()
    process = context.Process(target=_serve_until_told, args=(list(users), theirs), daemon=True)
    process.start()
    theirs.close()  # the child's end is the child's alone: if it dies, recv() raises instead of waiting
    try:
        yield ours.recv()
    finally:
        with suppress(OSError):  # a child already gone has nothing to stop
            ours.send("stop")
        process.join(timeout=5)
        if process.is_alive():
            process.kill()


def _serve_until_told(users: list[dict[str, Any]], connection: Connection) -> None:
    clerk = LoopbackClerk()
    for user in users:
        clerk.add_user(user)
    with clerk.serve():
        clerk._ordered()  # sorted once, before the first page is asked for
        connection.send(clerk.url)
        connection.recv()
