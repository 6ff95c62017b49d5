"""(5) Compare-first: authorizer calls for a few users with unchanged claims.

Each user presents several fresh session tokens (new `iat`, `sid`, `jti`, as Clerk refreshes them
every minute) with the same profile claims. The table starts empty, so the first call per user
must write; after that an unchanged user must cost no write, and the per-container cache must keep
reads to at most one per user per cache TTL. DynamoDB is moto's in-process mock; calls are counted
on the client with botocore's `before-call` hook.
"""

from __future__ import annotations

import math
import time
from collections import Counter

from bench._common import Goal, lambda_context, quiet_stdout
from bench.authorizer_warm import AZP, ISSUER, authorizer_app, bearer_event, is_allowed

DEFAULT_TTL_SECONDS = 60.0


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
        per_user_puts: Counter[str] = Counter()
        allowed = 0
        start = time.perf_counter()
        with quiet_stdout():
            for call in range(calls):
                user_id = user_ids[call % users]
                before = setup.counter.calls["PutItem"]
                response = setup.app.lambda_handler(
                    events[user_id][(call // users) % tokens_per_user], context
                )
                allowed += is_allowed(response)
                per_user_puts[user_id] += setup.counter.calls["PutItem"] - before
        elapsed = time.perf_counter() - start
        counts = dict(setup.counter.calls)

    puts = counts.get("PutItem", 0)
    gets = counts.get("GetItem", 0)
    windows = max(1, math.ceil(elapsed / ttl))
    puts_after_first = sum(max(0, n - 1) for n in per_user_puts.values())
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
            f"PutItem after the first per user ({calls} calls, {users} users)",
            float(puts_after_first),
            "0",
            puts_after_first == 0 and allowed == calls,
            "calls",
            f"PutItem total {puts} (first write per user: {sum(1 for n in per_user_puts.values() if n)})"
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
