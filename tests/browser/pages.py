"""The browser app's side: a tiny page server on its own origin, and the page's calls to the API."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# What a browser app does: fetch /me, as JSON, and report what the page gets to see. A CORS refusal is a
# rejected fetch (a TypeError, with the reason only on the console), never a readable response.
PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>usersync CORS probe</title></head>
<body><script>
window.callMe = async ({api, token, cookieToken}) => {
  const init = {};
  if (token) init.headers = {Authorization: "Bearer " + token};
  if (cookieToken) {
    // As Clerk's frontend SDK does: the session token in a first-party `__session` cookie.
    document.cookie = "__session=" + cookieToken + "; path=/; SameSite=Lax";
    init.credentials = "include";
  }
  try {
    const response = await fetch(api + "/me", init);
    return {status: response.status, body: await response.json()};
  } catch (error) {
    return {error: String(error)};
  }
};
</script></body></html>
"""


class _PageHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: pytest shows the test's own assertions."""


@dataclass(frozen=True)
class PageServer:
    origin: str


@contextmanager
def page_server(host: str = "127.0.0.1") -> Iterator[PageServer]:
    """Serves the probe page on `host` and a free port until the block ends."""
    server = ThreadingHTTPServer((host, 0), _PageHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield PageServer(f"http://{host}:{server.server_port}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
