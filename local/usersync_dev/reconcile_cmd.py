"""`usersync-dev reconcile` (`make reconcile ARGS=...`): run a reconciliation pass from a shell.

The same engine as the durable function (usersync.sync.reconcile), driven in this process: a progress
bar on stderr, and after every page the pass's small state is saved to a checkpoint file, so an
interrupted pass (Ctrl-C, a lost laptop lid, a Clerk outage) continues where it stopped when the same
command runs again. `--fresh` starts over. The file is removed when the pass completes.

The Clerk secret key comes from the environment (CLERK_SECRET_KEY), never from the command line,
so it stays out of shell history and process listings. The table is reached with the usual AWS
environment (credentials, AWS_REGION, AWS_ENDPOINT_URL for a local stack).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any, TextIO

from usersync.clerk.backend_api import (
    DEFAULT_API_URL,
    DEFAULT_MAX_REQUESTS_PER_10S,
    DEFAULT_MAX_RETRIES,
    MAX_PAGE_SIZE,
    ClerkBackendApi,
)
from usersync.runtime.aws import dynamodb_client
from usersync.runtime.observability import metrics
from usersync.sync.reconcile import (
    PassState,
    ReconcileError,
    ReconcileOptions,
    Source,
    new_state,
    run_pass,
    sources,
)

METRICS_DISABLED = "POWERTOOLS_METRICS_DISABLED"
DEFAULT_CHECKPOINT = Path(".local/reconcile-checkpoint.json")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reconcile",
        description="Backfill and repair the tables from Clerk's Backend API, resumably. "
        "The secret key is read from CLERK_SECRET_KEY.",
    )
    env = os.environ.get
    parser.add_argument(
        "--table", default=env("USERS_TABLE_NAME"), help="user table (default: $USERS_TABLE_NAME)"
    )
    parser.add_argument(
        "--organizations-table",
        default=env("ORGANIZATIONS_TABLE_NAME"),
        help="organizations table, reconciled too when given (default: $ORGANIZATIONS_TABLE_NAME)",
    )
    parser.add_argument("--dry-run", action="store_true", help="write nothing; count what would change")
    parser.add_argument("--prune", action="store_true", help="tombstone what no longer exists in Clerk")
    parser.add_argument(
        "--clerk-api-url",
        default=env("CLERK_API_URL") or DEFAULT_API_URL,
        help=f"Clerk Backend API base URL (default: $CLERK_API_URL or {DEFAULT_API_URL})",
    )
    parser.add_argument("--page-size", type=int, default=MAX_PAGE_SIZE, help="users per page (1-500)")
    parser.add_argument(
        "--max-retries", type=int, default=DEFAULT_MAX_RETRIES, help="retries per request on 429/5xx"
    )
    parser.add_argument(
        "--max-requests-per-10s",
        type=int,
        default=int(env("RECONCILE_MAX_REQUESTS_PER_10S") or DEFAULT_MAX_REQUESTS_PER_10S),
        help="reconciliation's share of the instance's Clerk rate limit (default 200)",
    )
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT, help="where progress is saved")
    parser.add_argument("--fresh", action="store_true", help="ignore a saved checkpoint and start over")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


class Progress:
    """A one-line progress bar on stderr: the users' bar knows Clerk's total (`/v1/users/count`)."""

    def __init__(self, stream: TextIO, total_users: int | None, enabled: bool) -> None:
        self.stream = stream
        self.total = total_users
        self.enabled = enabled

    def show(self, state: PassState) -> None:
        if not self.enabled:
            return
        seen = sum(counts.seen for counts in state.counts.values())
        line = f"{state.entity:<13} {state.phase.value:<5} {seen:>10,} listed  {state.requests:>7,} requests"
        if state.entity == "users" and self.total:
            done = min(1.0, state.counts["users"].seen / self.total)
            line = f"[{'#' * int(done * 30):<30}] {done:6.1%} " + line
        self.stream.write("\r" + line)
        self.stream.flush()

    def end(self) -> None:
        if self.enabled:
            self.stream.write("\n")


class CheckpointFile:
    """Each entity's last state, as JSON, written atomically after every step."""

    def __init__(self, path: Path, options: ReconcileOptions) -> None:
        self.path = path
        self.options = options
        self.states: dict[str, dict[str, Any]] = {}

    def load(self) -> None:
        """The saved states of an unfinished pass with the same options (others are ignored)."""
        try:
            saved = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return
        for entity, state in saved.items():
            if state.get("dry_run") == self.options.dry_run and state.get("prune") == self.options.prune:
                self.states[entity] = state

    def resume(self, source: Source) -> PassState:
        saved = self.states.get(source.entity)
        if saved is not None and saved.get("phase") != "done":
            return PassState.from_dict(saved)
        return new_state(source, self.options)

    def save(self, state: PassState) -> None:
        self.states[state.entity] = state.to_dict()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".tmp")
        partial.write_text(json.dumps(self.states))
        partial.replace(self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def _run(args: argparse.Namespace, clerk: ClerkBackendApi, checkpoint: CheckpointFile) -> dict[str, Any]:
    """Every entity's pass, each on its own: a failed one is reported, the others still run."""
    options = checkpoint.options
    total = None if args.quiet else clerk.count_users()
    progress = Progress(sys.stderr, total, enabled=not args.quiet)
    answer: dict[str, Any] = {}
    with sources(clerk, dynamodb_client(), args.table, args.organizations_table, options) as found:
        for source in found:
            state = checkpoint.resume(source)
            if state.steps:
                print(f"resuming {source.entity} after {state.steps} pages", file=sys.stderr)

            def saved(state: PassState) -> None:
                checkpoint.save(state)
                progress.show(state)

            try:
                state = run_pass(source, state, on_checkpoint=saved, emit_metrics=False)
                checkpoint.save(state)
                answer[source.entity] = state.summary()
            except ReconcileError as exc:
                answer[source.entity] = {**(exc.state or state).summary(), "error": str(exc)}
            progress.end()
    return answer


@contextmanager
def metrics_off() -> Iterator[None]:
    """EMF printed by a shell process reaches no CloudWatch and would break the JSON on stdout:
    Powertools prints nothing while POWERTOOLS_METRICS_DISABLED is set; what is buffered is dropped."""
    saved = os.environ.get(METRICS_DISABLED)
    os.environ[METRICS_DISABLED] = "true"
    try:
        # Powertools' automatic flush (every 100 values) prints whatever the setting says: swallowed.
        with redirect_stdout(io.StringIO()):
            yield
    finally:
        metrics.clear_metrics()
        if saved is None:
            os.environ.pop(METRICS_DISABLED, None)
        else:
            os.environ[METRICS_DISABLED] = saved


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    secret_key = os.environ.get("CLERK_SECRET_KEY", "").strip()
    if not secret_key:
        parser.error("set CLERK_SECRET_KEY to the Clerk secret key (sk_...)")
    if not args.table:
        parser.error("--table (or USERS_TABLE_NAME) is required")
    if not 1 <= args.page_size <= MAX_PAGE_SIZE:
        parser.error(f"--page-size must be between 1 and {MAX_PAGE_SIZE}")
    clerk = ClerkBackendApi(
        secret_key,
        args.clerk_api_url,
        page_size=args.page_size,
        max_retries=args.max_retries,
        max_requests_per_10s=args.max_requests_per_10s,
    )
    checkpoint = CheckpointFile(args.checkpoint, ReconcileOptions(dry_run=args.dry_run, prune=args.prune))
    if not args.fresh:
        checkpoint.load()
    try:
        with metrics_off():
            answer = _run(args, clerk, checkpoint)
    except KeyboardInterrupt:
        print(f"\ninterrupted: run the same command again to resume ({args.checkpoint})", file=sys.stderr)
        return 130
    print(json.dumps(answer))
    failed = [entity for entity, summary in answer.items() if "error" in summary]
    for entity in failed:
        print(f"error ({entity}): {answer[entity]['error']}", file=sys.stderr)
    if failed:
        print(f"progress kept in {args.checkpoint}: run the same command again to resume", file=sys.stderr)
        return 1
    checkpoint.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
