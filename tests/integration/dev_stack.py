"""Driving the local stack (`usersync-dev serve`) and the other `usersync-dev` commands as a subprocess,
for the tests that use the stack as a developer does (test_local_stack, test_local_auth_mode,
test_stack_stop, test_local_cors, tests/browser)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

from usersync_dev.clerk import SigningKey, mint_token, session_claims, sign_delivery
from usersync_dev.devstate import (
    DEV_AUTHORIZED_PARTY,
    DEV_ISSUER,
    STATE_DIR_ENV,
    StackInfo,
    dev_secrets,
    running_stack,
)
from usersync_dev.template import REPO_ROOT

BIN = Path(sys.executable).parent
CLI = BIN / "usersync-dev"
STARTUP_TIMEOUT = 60
COMMAND_TIMEOUT = 60
HTTP_TIMEOUT = 10
STOP_TIMEOUT = 15
BANNER_END = "Ctrl-C stops."


def stack_environment(home: Path) -> dict[str, str]:
    """A developer's shell: none of the AWS / Powertools / usersync variables conftest sets for pytest."""
    configured = ("AWS_", "POWERTOOLS_", "USERS_TABLE", "CLERK_", "SYNC_", "LOG_LEVEL")
    return {
        **{name: value for name, value in os.environ.items() if not name.startswith(configured)},
        STATE_DIR_ENV: str(home),
        "PYTHONUNBUFFERED": "1",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }


@dataclass
class LaunchedStack:
    """A `usersync-dev serve` process whose output is read as it comes (line by line, into `output`)."""

    home: Path
    process: subprocess.Popen[str]
    output: list[str]
    settled: threading.Event  # set once the banner has ended, or the output has (the process exited)
    reader: threading.Thread

    def wait_for_banner(self, timeout: float = STARTUP_TIMEOUT) -> bool:
        """Whether the startup banner was printed within `timeout` (False early if the stack exited)."""
        self.settled.wait(timeout)
        return any(BANNER_END in line for line in self.output)

    def recorded(self) -> StackInfo:
        """The state record of this very process (ports, table), which a started stack has written."""
        info = running_stack(self.home)
        assert info is not None
        assert info.pid == self.process.pid
        return info

    def kill_if_running(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def launch_stack(home: Path, *overrides: str) -> LaunchedStack:
    """Start the stack on free ports with its state folder in `home`; `overrides` are `Name=value`."""
    command = [str(CLI), "serve", "--port", "0"]
    if overrides:
        command += ["--parameter-overrides", *overrides]
    process = subprocess.Popen(  # noqa: S603 - our own console script
        command,
        cwd=REPO_ROOT,
        env=stack_environment(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    settled = threading.Event()

    def drain() -> None:  # always read, so a chatty server never blocks on a full pipe
        assert process.stdout is not None
        with process.stdout:  # the reader owns the pipe: closed once the process's output ends
            for line in process.stdout:
                output.append(line.rstrip("\n"))
                if BANNER_END in line:
                    settled.set()
        settled.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    return LaunchedStack(home, process, output, settled, reader)


def run_cli(
    environment: dict[str, str], *arguments: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """`usersync-dev <arguments>` from the repo root, its output captured as text."""
    return subprocess.run(  # noqa: S603 - our own console script
        [str(CLI), *arguments],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=check,
    )


@dataclass
class RunningStack:
    process: subprocess.Popen[str]
    home: Path
    gateway_url: str
    moto_endpoint: str
    table_name: str
    output: list[str] = field(default_factory=list)

    def banner(self) -> list[str]:
        return self.output[: next(i for i, line in enumerate(self.output) if BANNER_END in line) + 1]


@contextmanager
def local_stack(home: Path, *overrides: str) -> Iterator[RunningStack]:
    """A started stack, stopped with Ctrl-C (SIGINT) afterwards, which must remove its state record."""
    launched = launch_stack(home, *overrides)
    process = launched.process
    try:
        if not launched.wait_for_banner(STARTUP_TIMEOUT):
            raise AssertionError("local stack did not start:\n" + "\n".join(launched.output))
        info = launched.recorded()
        yield RunningStack(
            process, home, info.gateway_url, info.moto_endpoint, info.table_name, launched.output
        )
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)
        launched.reader.join(timeout=STOP_TIMEOUT)
    assert running_stack(home) is None, "a stopped stack must remove its state record"


def http(
    method: str, url: str, *, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """A request to the stack; its status and JSON body, whatever the status."""
    request = urllib.request.Request(url, data=body, headers=headers or {}, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:  # noqa: S310 - loopback
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@dataclass(frozen=True)
class Reply:
    """A response as a browser sees it: status, headers (case-insensitive lookups) and raw body."""

    status: int
    headers: Message
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def cors_headers(self) -> dict[str, str]:
        return {
            name.lower(): value
            for name, value in self.headers.items()
            if name.lower().startswith("access-control-")
        }


def request(method: str, url: str, *, headers: dict[str, str] | None = None) -> Reply:
    """A request to the stack and the whole reply, whatever the status (CORS tests read the headers)."""
    outgoing = urllib.request.Request(url, headers=headers or {}, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(outgoing, timeout=HTTP_TIMEOUT) as response:  # noqa: S310 - loopback
            return Reply(response.status, response.headers, response.read())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, exc.headers, exc.read())


def send_webhook(stack: RunningStack, payload: dict[str, Any] | bytes) -> tuple[int, Any]:
    """`payload` (an object, or the exact body bytes) signed with the dev secret, posted as Svix would."""
    delivery = sign_delivery(dev_secrets(stack.home).webhook_secret, payload)
    return http("POST", f"{stack.gateway_url}/webhooks/clerk", body=delivery.body, headers=delivery.headers)


def dev_token(
    stack: RunningStack,
    user_id: str,
    email: str,
    first_name: str | None = None,
    last_name: str | None = None,
    *,
    key: SigningKey | None = None,
) -> str:
    """A session token as the dev Clerk instance issues it, signed by the stack's dev key (or `key`)."""
    claims = session_claims(
        user_id,
        email=email,
        first_name=first_name,
        last_name=last_name,
        issuer=DEV_ISSUER,
        azp=DEV_AUTHORIZED_PARTY,
    )
    return mint_token(key or dev_secrets(stack.home).signing_key, claims)
