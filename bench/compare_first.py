"""(5) Compare-first: authorizer calls for a few users with unchanged claims.

Each user presents several fresh session tokens (new `iat`, `sid`, `jti`, as Clerk refreshes them
every minute) with the same profile claims. The table starts empty, so the first call per user
must write (the authorizer's conditional UpdateItem; a PutItem would count too); after that an
unchanged user must cost no write, and the per-container cache must keep reads to at most one per
user per cache TTL. DynamoDB is moto's in-process mock; calls are counted
on the client with botocore's `before-call` hook.
"""

from __future__ import annotations

import math
import time
from collections import Counter

from bench._common import Goal, lambda_context, quiet_stdout
from bench.authorizer_warm import AZP, ISSUER, authorizer_app, bearer_event, is_allowed

DEFAULT_TTL_SECONDS = 60.0
WRITES = ("UpdateItem", "PutItem")  # the authorizer writes with a conditional UpdateItem


def _writes(calls: Counter[str] | dict[str, int]) -> int:
    return sum(calls.get(operation, 0) for operation in WRITES)


def run(*, calls: int = 1000, users: int = 10, tokens_per_user: int = 5) -> list[Goal]:
    from usersync_dev.clerk import mint_token, new_user_id, session_claims

    with authorizer_app() as setup:
        now = int(time.time())
        user_ids = [new_user_id() for _ in range(users)]
        events = {
            user_id: [
                bearer_event(
                    mint_token(
                        setup.key,
                        session_claims(
                            user_id,
                            email=f"{user_id}@example.com",
                            first_name="Ada",
                            last_name="Lovelace",
                            issuer=ISSUER,
                            azp=AZP,
                            issued_at=now - 50 + 10 * index,
                            lifetime_seconds=600,
                        ),
                    )
                )
                for index in range(tokens_per_user)
            ]
            for user_id in user_ids
        }
        # The cache TTL the container was built with (read, not assumed, when the app exposes it).
        cache = getattr(getattr(setup.app, "authorizer", None), "_cache", None)
        ttl = float(getattr(cache, "ttl_seconds", DEFAULT_TTL_SECONDS))
        context = lambda_context()
        setup.counter.reset()
        per_user_writes: Counter[str] = Counter()
        allowed = 0
        start = time.perf_counter()
        with quiet_stdout():
            for call in range(calls):
                user_id = user_ids[call % users]
                before = _writes(setup.counter.calls)
                response = setup.app.lambda_handler(
                    events[user_id][(call // users) % tokens_per_user], context
                )
                allowed += is_allowed(response)
                per_user_writes[user_id] += _writes(setup.counter.calls) - before
        elapsed = time.perf_counter() - start
        counts = dict(setup.counter.calls)

    writes = _writes(counts)
    gets = counts.get("GetItem", 0)
    windows = max(1, math.ceil(elapsed / ttl))
    writes_after_first = sum(max(0, n - 1) for n in per_user_writes.values())
    users_written = sum(1 for n in per_user_writes.values() if n)  # the table starts empty: all must
    details = {
        "calls": calls,
        "users": users,
        "tokens_per_user": tokens_per_user,
        "allowed": allowed,
        "dynamodb_calls": counts,
        "cache_ttl_seconds": ttl,
        "elapsed_seconds": elapsed,
    }
    return [
        Goal(
            "compare-first",
            f"writes after the first per user ({calls} calls, {users} users)",
            float(writes_after_first),
            "0",
            writes_after_first == 0 and users_written == users and allowed == calls,
            "calls",
            f"writes total {writes} ({', '.join(f'{op} {counts.get(op, 0)}' for op in WRITES)}; "
            f"first write per user: {users_written}/{users})"
            + ("" if allowed == calls else f"; only {allowed}/{calls} allowed"),
            details,
        ),
        Goal(
            "compare-first",
            f"GetItem ({calls} calls, {users} users)",
            float(gets),
            f"<= {users * windows} (1/user/{ttl:g}s TTL)",
            gets <= users * windows,
            "calls",
            f"{elapsed:.2f} s of calls",
        ),
    ]
