"""A loopback JWKS endpoint for tests: serves Clerk-like key sets on 127.0.0.1 and can misbehave.

    with JwksServer(key) as server:          # serves {"keys": [key.jwk()]} on an ephemeral port
        os.environ["CLERK_JWKS_URL"] = server.url
        server.serve_keys(key, new_key)      # rotation: the next fetch sees both keys
        server.fail(503)                     # answers every request with HTTP 503
        server.slow(3.0)                     # waits 3 s before each answer (timeout tests)
        server.down()                        # closes the socket: connections are refused
        server.up()                          # listens again on the same port, healthy
        assert server.request_count == 2     # requests received so far

Written on `http.server` rather than a mock library: the code under test opens real sockets, and a
real server on 127.0.0.1 is the only way to test timeouts and refused connections honestly.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from usersync_dev.clerk import SigningKey

JWKS_PATH = "/.well-known/jwks.json"


class JwksServer:
    """A threaded HTTP server on 127.0.0.1 (port chosen by the OS) serving one JWKS document."""

    def __init__(self, *keys: SigningKey, jwks: Mapping[str, Any] | None = None) -> None:
        self._lock = threading.Lock()
        self._body = b""
        self._status = 200
        self._delay = 0.0
        self._requests = 0
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0
        if jwks is not None:
            self.serve_jwks(jwks)
        else:
            self.serve_keys(*keys)

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> JwksServer:
        self.up()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.down()

    def up(self) -> None:
        """Listen (again) and answer normally: no error status, no delay."""
        with self._lock:
            self._status, self._delay = 200, 0.0
        if self._server is not None:
            return
        self._stopping.clear()
        server = ThreadingHTTPServer(("127.0.0.1", self._port), self._handler_class())
        server.daemon_threads = True
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="jwks-server", daemon=True
        )
        self._thread.start()

    def down(self) -> None:
        """Stop listening: clients now get 'connection refused'. `up()` brings it back on the same port."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes handlers sleeping in slow mode
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # ------------------------------------------------------------------ what it serves
    @property
    def url(self) -> str:
        if not self._port:
            raise RuntimeError("the server has not been started: use it as a context manager or call up()")
        return f"http://127.0.0.1:{self._port}{JWKS_PATH}"

    @property
    def request_count(self) -> int:
        """Requests received (any path), including ones answered with an error or delayed."""
        with self._lock:
            return self._requests

    def serve_keys(self, *keys: SigningKey) -> None:
        self.serve_jwks({"keys": [key.jwk() for key in keys]})

    def serve_jwks(self, jwks: Mapping[str, Any]) -> None:
        self.serve_body(json.dumps(jwks).encode())

    def serve_body(self, body: bytes, status: int = 200) -> None:
        """Answer with arbitrary bytes (e.g. garbage that is not JSON)."""
        with self._lock:
            self._body, self._status = body, status

    def fail(self, status: int = 503) -> None:
        """Answer every request with this HTTP error status."""
        with self._lock:
            self._status = status

    def slow(self, seconds: float) -> None:
        """Wait this long before answering each request (0 turns it off)."""
        with self._lock:
            self._delay = seconds

    # ------------------------------------------------------------------ request handling
    def _respond(self) -> tuple[int, bytes, float]:
        with self._lock:
            self._requests += 1
            return self._status, self._body, self._delay

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body, delay = owner._respond()
                if delay and owner._stopping.wait(delay):
                    return
                if self.path.split("?", 1)[0] != JWKS_PATH:
                    status, body = 404, b'{"error":"not found"}'
                elif status != 200:
                    body = b'{"error":"unavailable"}'
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the client gave up (timeout): nothing to answer
                    pass

            def log_message(self, _format: str, *_args: Any) -> None:  # keep pytest output clean
                return

        return Handler
