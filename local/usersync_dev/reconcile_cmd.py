"""`python -m usersync_dev.reconcile_cmd` (`make reconcile ARGS=...`): run reconciliation from a shell.

The Clerk secret key comes from the environment (CLERK_SECRET_KEY), never from the command line,
so it stays out of shell history and process listings. The table is reached with the usual AWS
environment (credentials, AWS_REGION, AWS_ENDPOINT_URL for a local stack).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from usersync.runtime.aws import dynamodb_client
from usersync.runtime.observability import metrics
from usersync.store.organizations import OrganizationRepository
from usersync.sync.reconcile import (
    DEFAULT_API_URL,
    DEFAULT_MAX_RETRIES,
    MAX_PAGE_SIZE,
    ReconcileError,
    ReconcileOptions,
    reconcile,
)
from usersync.sync.reconcile_orgs import ClerkOrganizationsClient, reconcile_organizations


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reconcile",
        description="Backfill and repair the user table from Clerk's Backend API (GET /v1/users). "
        "The secret key is read from CLERK_SECRET_KEY.",
    )
    parser.add_argument(
        "--table", default=os.environ.get("USERS_TABLE_NAME"), help="user table (default: $USERS_TABLE_NAME)"
    )
    parser.add_argument(
        "--organizations-table",
        default=os.environ.get("ORGANIZATIONS_TABLE_NAME"),
        help="organizations table, reconciled too when given (default: $ORGANIZATIONS_TABLE_NAME)",
    )
    parser.add_argument("--dry-run", action="store_true", help="write nothing; print what would change")
    parser.add_argument(
        "--prune", action="store_true", help="tombstone table users that no longer exist in Clerk"
    )
    parser.add_argument(
        "--clerk-api-url",
        default=os.environ.get("CLERK_API_URL") or DEFAULT_API_URL,
        help=f"Clerk Backend API base URL (default: $CLERK_API_URL or {DEFAULT_API_URL})",
    )
    parser.add_argument("--page-size", type=int, default=MAX_PAGE_SIZE, help="users per page (1-500)")
    parser.add_argument(
        "--max-retries", type=int, default=DEFAULT_MAX_RETRIES, help="retries per request on 429/5xx"
    )
    return parser


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
    clerk = ClerkOrganizationsClient(
        secret_key, args.clerk_api_url, page_size=args.page_size, max_retries=args.max_retries
    )
    options = ReconcileOptions(dry_run=args.dry_run, prune=args.prune)
    try:
        report = reconcile(clerk, dynamodb_client(), args.table, options)
        if args.organizations_table:
            organizations = reconcile_organizations(
                clerk, OrganizationRepository(dynamodb_client(), args.organizations_table), options
            )
            print(json.dumps({"organizations": organizations.counts()}))
            if organizations.pruned_ids:
                verb = "would prune" if args.dry_run else "pruned"
                print(f"{verb} (organizations): {', '.join(organizations.pruned_ids)}", file=sys.stderr)
    except ReconcileError as exc:
        if exc.report is not None:
            print(json.dumps(exc.report.counts()))
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        # EMF printed by a shell process reaches no CloudWatch: drop the buffered metrics.
        metrics.clear_metrics()
    print(json.dumps(report.counts()))
    if report.pruned_ids:
        verb = "would prune" if args.dry_run else "pruned"
        print(f"{verb}: {', '.join(report.pruned_ids)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
