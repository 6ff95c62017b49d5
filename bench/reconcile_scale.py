"""(8) Reconciliation at scale (issue 22, CONTRACT §12): a measured pass over 100,000 users, projected to
1,000,000, with resident memory per 100,000 users.

Stand-ins (bench/scale_standins.py), both HTTP servers on 127.0.0.1 in this process:
- Clerk: `GET /v1/users` by cursor (`starting_after`), ~300 ms per 500-user page (40 ms + 0.52 ms per
  user), Clerk's user object shape; it counts every page it serves, so a page read twice is seen.
- DynamoDB: a minimal DynamoDB JSON endpoint (PutItem with condition expressions, BatchGetItem, Scan,
  ...) answering each request after 5-8 ms (uniform), requests in flight overlapping. Not moto: moto's
  server spends milliseconds of CPU per conditional write on a shared 2-core machine, so it would set
  the pace of a 100,000-write pass, and its items would sit in the measured process.

The engine is the project's (`usersync.sync.reconcile.run_whole_pass`, users only: the organizations'
pass is independent and pages by offset), run in a fresh process per pass (bench/reconcile_scale_child.py)
with the layer's own DynamoDB client, at the template's default `ReconcileMaxRequestsPer10s` (200).

Passes, in order:
1. listing floor: a bare cursor walk of the small instance (no engine, no DynamoDB): seconds per page
   of Clerk alone, the baseline measured in the same run;
2. backfill of SMALL users into an empty table, then of LARGE users into another (peak memory at two
   sizes: MB per 100,000 users is the difference, scaled; throughput of a first backfill);
3. repair of both with nothing changed (compare-first: reads only, no write).

Projections to 1,000,000 users (2,000 pages of 500, plus the final empty page), printed with their
arithmetic: seconds per page measured at LARGE times 2,001 pages, never below what the rate cap alone
allows (requests / (cap / 10 s)). Lambda gives a function MemorySize/1769 of a vCPU (the reconcile
function has 1,769 MB, one vCPU; at 512 MB it had 0.29 of one): the CPU the pass used here is also
projected at that share (an estimate: this machine's x86 core is not Graviton).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3

from bench._common import BASE_ENV, REPO_ROOT, Goal
from bench.scale_standins import SECRET_KEY, LatencyDynamo, LoopbackClerk

LARGE = 100_000
SMALL = 20_000
PAGE = 500
TARGET_USERS = 1_000_000
MAX_REQUESTS_PER_10S = 200  # template.yaml ReconcileMaxRequestsPer10s default
WRITE_THREADS = 8  # ReconcileOptions' default
LAMBDA_MEMORY_MB = 1769  # template.yaml ReconcileFunction MemorySize (one vCPU)
MB_PER_VCPU = 1769  # Lambda: a function gets one full vCPU at 1,769 MB, proportionally less below
GOALS = {
    "rss_mb_per_100k_users": 20.0,
    "projected_backfill_1m_minutes": 60.0,
    "projected_repair_1m_minutes": 15.0,
}


@dataclass
class PassRun:
    """One pass as measured: the child's figures and the stand-ins' counts."""

    label: str
    users: int
    wall_seconds: float
    cpu_seconds: float
    hwm_mb: float
    clerk_requests: int
    clerk_pages: int
    pages_read_twice: int
    max_requests_per_10s: int
    dynamo_calls: dict[str, int]
    dynamo_in_flight_max: int
    summary: dict[str, Any]

    @property
    def seconds_per_page(self) -> float:
        return self.wall_seconds / self.clerk_pages

    def as_dict(self) -> dict[str, Any]:
        return {
            "users": self.users,
            "wall_seconds": round(self.wall_seconds, 2),
            "cpu_seconds": round(self.cpu_seconds, 2),
            "peak_rss_mb": round(self.hwm_mb, 1),
            "clerk_requests": self.clerk_requests,
            "clerk_list_pages": self.clerk_pages,
            "pages_read_twice": self.pages_read_twice,
            "max_clerk_requests_per_10s": self.max_requests_per_10s,
            "dynamodb_calls": self.dynamo_calls,
            "dynamodb_in_flight_max": self.dynamo_in_flight_max,
            "seconds_per_page": round(self.seconds_per_page, 4),
            "engine": self.summary,
        }


def run_pass(clerk: LoopbackClerk, dynamo: LatencyDynamo, table: str, label: str) -> PassRun:
    """One engine pass in a fresh process against the stand-ins; refuses a pass that did not finish."""
    clerk.reset_counts()
    dynamo.reset_calls()
    with tempfile.TemporaryDirectory(prefix="usersync-scale-") as work:
        result_path = Path(work) / "result.json"
        spec = {
            "clerk_url": clerk.url,
            "secret_key": SECRET_KEY,
            "dynamo_url": dynamo.url,
            "table": table,
            "max_requests_per_10s": MAX_REQUESTS_PER_10S,
            "write_threads": WRITE_THREADS,
            "result": str(result_path),
        }
        env = {**os.environ, **BASE_ENV, "PYTHONPATH": str(REPO_ROOT)}
        done = subprocess.run(
            [sys.executable, "-m", "bench.reconcile_scale_child", json.dumps(spec)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            cwd=REPO_ROOT,
        )
        if done.returncode != 0 or not result_path.is_file():
            raise RuntimeError(f"{label}: the pass process failed:\n{done.stderr[-3000:]}")
        outcome = json.loads(result_path.read_text(encoding="utf-8"))
    if outcome["errors"]:
        raise RuntimeError(f"{label}: the engine reported errors: {outcome['errors']}")
    users = outcome["summary"]["users"]["users"]
    if users["seen"] != clerk.users:
        raise RuntimeError(f"{label}: the pass saw {users['seen']} of {clerk.users} users")
    counts = clerk.counts
    return PassRun(
        label=label,
        users=clerk.users,
        wall_seconds=outcome["wall_seconds"],
        cpu_seconds=outcome["cpu_seconds"],
        hwm_mb=outcome["hwm_kb"] / 1024,
        clerk_requests=counts.requests,
        clerk_pages=sum(counts.list_pages.values()),
        pages_read_twice=counts.pages_read_twice,
        max_requests_per_10s=counts.max_requests_per_10s,
        dynamo_calls=dict(dynamo.calls),
        dynamo_in_flight_max=dynamo.in_flight_max,
        summary=outcome["summary"]["users"],
    )


def listing_floor(clerk: LoopbackClerk) -> tuple[float, int]:
    """Seconds per page of a bare cursor walk (no engine, no DynamoDB): Clerk's latency alone."""
    http = urllib3.PoolManager(retries=False)
    headers = {"Authorization": f"Bearer {SECRET_KEY}"}
    cursor: str | None = None
    pages = 0
    started = time.perf_counter()
    while True:
        fields = {"limit": str(PAGE), "order_by": "+created_at"}
        if cursor:
            fields["starting_after"] = cursor
        page = json.loads(http.request("GET", f"{clerk.url}/v1/users", fields=fields, headers=headers).data)
        pages += 1
        if len(page) < PAGE:
            break
        cursor = page[-1]["id"]
    return (time.perf_counter() - started) / pages, pages


def pages_for(users: int) -> int:
    """List requests of a cursor pass: full pages, then the short (possibly empty) one that ends it."""
    return users // PAGE + 1


# The durable function (functions/reconcile/app.py): a step starts only with 60 s of the 900 s
# invocation left, so an invocation works at most ~840 s; it then waits 10 s (no compute billed) and a
# new invocation (a cold start, ~1 s: bench `deployed` measures ~0.3 s init) replays the checkpoints.
WORK_SECONDS_PER_INVOCATION = 900 - 60
HANDOFF_SECONDS = 10 + 1


def durable_seconds(work_seconds: float) -> tuple[float, int]:
    """A pass's wall-clock seconds on the durable function and its invocations, from its work seconds."""
    invocations = max(1, math.ceil(work_seconds / WORK_SECONDS_PER_INVOCATION))
    return work_seconds + (invocations - 1) * HANDOFF_SECONDS, invocations


def project(run: PassRun, label: str, lines: list[str]) -> dict[str, float]:
    """1,000,000-user minutes from `run` (measured at run.users), with the arithmetic in `lines`."""
    pages = pages_for(TARGET_USERS)
    measured = pages * run.seconds_per_page
    cap_floor = pages / (MAX_REQUESTS_PER_10S / 10)
    total, invocations = durable_seconds(max(measured, cap_floor))
    minutes = total / 60
    cpu_per_page = run.cpu_seconds / run.clerk_pages
    slowdown = MB_PER_VCPU / LAMBDA_MEMORY_MB
    lambda_seconds = pages * (run.seconds_per_page + cpu_per_page * (slowdown - 1))
    lines += [
        f"  {label}: measured {run.users:,} users in {run.wall_seconds:.1f} s over {run.clerk_pages} pages"
        f" = {run.seconds_per_page:.3f} s/page (CPU {cpu_per_page:.3f} s/page)",
        f"    1M users = {pages:,} pages x {run.seconds_per_page:.3f} s = {measured:.0f} s; rate cap floor"
        f" {pages:,} requests / ({MAX_REQUESTS_PER_10S}/10 s) = {cap_floor:.0f} s;"
        f" max(...) = {max(measured, cap_floor):.0f} s, + {invocations - 1} invocation hand-offs x"
        f" {HANDOFF_SECONDS} s = {total:.0f} s = {minutes:.1f} min",
        f"    at Lambda {LAMBDA_MEMORY_MB} MB ({LAMBDA_MEMORY_MB}/{MB_PER_VCPU} vCPU, estimate): {pages:,} x"
        f" ({run.seconds_per_page:.3f} + {cpu_per_page:.3f} x {slowdown - 1:.2f}) = {lambda_seconds:.0f} s"
        f" = {lambda_seconds / 60:.1f} min",
    ]
    return {
        "minutes": minutes,
        "lambda_minutes": lambda_seconds / 60,
        "cpu_seconds_per_page": cpu_per_page,
    }


def run(*, large: int = LARGE, small: int = SMALL, latency: bool = True) -> list[Goal]:
    """The scale bench: passes at `small` and `large` users, projections, and the reconcile_scale object.

    `latency=False` (the smoke test) answers at once: the figures then mean nothing, the counts do.
    """
    if not small < large:
        raise ValueError("small must be smaller than large")
    runs: dict[str, PassRun] = {}
    load_before = os.getloadavg()[0]
    with LatencyDynamo(latency_ms=(5.0, 8.0) if latency else (0.0, 0.0)) as dynamo:
        with LoopbackClerk(small, latency=latency) as clerk:
            floor_per_page, floor_pages = listing_floor(clerk)
            dynamo.create_table("scale-small", ["userId"])
            runs["backfill_small"] = run_pass(clerk, dynamo, "scale-small", "backfill small")
            runs["repair_small"] = run_pass(clerk, dynamo, "scale-small", "repair small")
        dynamo.tables.pop("scale-small")
        with LoopbackClerk(large, latency=latency) as clerk:
            dynamo.create_table("scale-large", ["userId"])
            runs["backfill_large"] = run_pass(clerk, dynamo, "scale-large", "backfill large")
            runs["repair_large"] = run_pass(clerk, dynamo, "scale-large", "repair large")
        dynamo.tables.pop("scale-large")
    goals = goals_from(runs, floor_per_page, floor_pages, large, small)
    # Absolute seconds on a shared machine: the load says how much of them is other people's work.
    goals[0].details["reconcile_scale"]["load_average_1m"] = [
        round(load_before, 2),
        round(os.getloadavg()[0], 2),
    ]
    return goals


def goals_from(
    runs: dict[str, PassRun], floor_per_page: float, floor_pages: int, large: int, small: int
) -> list[Goal]:
    backfill, repair = runs["backfill_large"], runs["repair_large"]
    for name, measured in runs.items():
        writes = measured.dynamo_calls.get("PutItem", 0)
        expected = measured.users if name.startswith("backfill") else 0
        if writes != expected:
            raise RuntimeError(f"{name}: {writes} PutItem, expected {expected}")
    lines = ["reconcile at scale (loopback Clerk ~300 ms/page, DynamoDB stand-in 5-8 ms/request):"]
    lines.append(f"  listing floor (bare cursor walk, {floor_pages} pages): {floor_per_page:.3f} s/page")
    growth = {
        kind: (runs[f"{kind}_large"].hwm_mb - runs[f"{kind}_small"].hwm_mb) / (large - small) * 100_000
        for kind in ("backfill", "repair")
    }
    rss_per_100k = max(growth.values())
    for kind, value in growth.items():
        lines.append(
            f"  peak RSS {kind}: {runs[f'{kind}_small'].hwm_mb:.1f} MB at {small:,}, "
            f"{runs[f'{kind}_large'].hwm_mb:.1f} MB at {large:,}: "
            f"({runs[f'{kind}_large'].hwm_mb:.1f} - {runs[f'{kind}_small'].hwm_mb:.1f}) / {large - small:,}"
            f" x 100,000 = {value:.2f} MB per 100k users"
        )
    projected_backfill = project(backfill, "backfill", lines)
    projected_repair = project(repair, "repair (nothing changed)", lines)
    print("\n".join(lines), flush=True)
    pages_twice = sum(r.pages_read_twice for r in runs.values())
    scale = {
        "users": backfill.users,
        "pages_read_twice": pages_twice,
        "rss_mb_per_100k_users": round(rss_per_100k, 2),
        "projected_backfill_1m_minutes": round(projected_backfill["minutes"], 1),
        "projected_repair_1m_minutes": round(projected_repair["minutes"], 1),
        "goals": {k: f"<= {v:g}" for k, v in GOALS.items()} | {"pages_read_twice": "0"},
        "lambda_estimate_minutes": {
            "backfill": round(projected_backfill["lambda_minutes"], 1),
            "repair": round(projected_repair["lambda_minutes"], 1),
        },
        "listing_floor_seconds_per_page": round(floor_per_page, 4),
        "max_requests_per_10s": MAX_REQUESTS_PER_10S,
        "write_threads": WRITE_THREADS,
        "arithmetic": lines,
        "passes": {name: measured.as_dict() for name, measured in runs.items()},
        "stand_ins": "loopback Clerk 40 ms + 0.52 ms/user per request; DynamoDB JSON endpoint 5-8 ms/request"
        " (bench/scale_standins.py)",
    }
    print("scale table (docs/scale.md):\n" + scale_table(scale), flush=True)
    note = f"{backfill.users:,} users; loopback Clerk ~300 ms/page, DynamoDB stand-in 5-8 ms/request"
    details = {"reconcile_scale": scale}
    ratio_backfill = backfill.seconds_per_page / floor_per_page
    ratio_repair = repair.seconds_per_page / floor_per_page
    return [
        Goal(
            "reconcile scale",
            "pages read twice in the passes",
            pages_twice,
            "== 0",
            pages_twice == 0,
            "count",
            f"{sum(r.clerk_pages for r in runs.values())} pages served",
            details,
        ),
        Goal(
            "reconcile scale",
            "peak RSS growth per 100k users",
            rss_per_100k,
            "<= 20 MB",
            rss_per_100k <= GOALS["rss_mb_per_100k_users"],
            "MB",
            f"VmHWM at {small:,} and {large:,} users",
        ),
        Goal(
            "reconcile scale",
            "projected 1M-user backfill",
            projected_backfill["minutes"],
            "<= 60 min",
            projected_backfill["minutes"] <= GOALS["projected_backfill_1m_minutes"],
            "min",
            f"{note}; Lambda {LAMBDA_MEMORY_MB} MB estimate {projected_backfill['lambda_minutes']:.1f} min",
        ),
        Goal(
            "reconcile scale",
            "projected 1M-user repair, nothing changed",
            projected_repair["minutes"],
            "<= 15 min",
            projected_repair["minutes"] <= GOALS["projected_repair_1m_minutes"],
            "min",
            f"{note}; Lambda {LAMBDA_MEMORY_MB} MB estimate {projected_repair['lambda_minutes']:.1f} min",
        ),
        Goal(
            "reconcile scale",
            "backfill s/page / bare listing s/page",
            ratio_backfill,
            "info",
            None,
            "x",
            f"{backfill.seconds_per_page:.3f} s vs {floor_per_page:.3f} s per 500-user page",
        ),
        Goal(
            "reconcile scale",
            "repair s/page / bare listing s/page",
            ratio_repair,
            "info",
            None,
            "x",
            f"{repair.seconds_per_page:.3f} s vs {floor_per_page:.3f} s per 500-user page",
        ),
        Goal(
            "reconcile scale",
            "max Clerk requests in any 10 s window",
            max(r.max_requests_per_10s for r in runs.values()),
            f"<= {MAX_REQUESTS_PER_10S}",
            max(r.max_requests_per_10s for r in runs.values()) <= MAX_REQUESTS_PER_10S,
            "count",
            "ReconcileMaxRequestsPer10s default",
        ),
    ]


# ---------------------------------------------------------------- docs/scale.md's table

# Prices (us-east-1, checked 2026-12; see docs/scale.md): Lambda arm64 per GB-s and per request,
# DynamoDB on-demand per million write and read request units, durable function operations per million.
LAMBDA_ARM64_PER_GB_S = 0.0000133334
LAMBDA_PER_REQUEST = 0.20 / 1_000_000
DYNAMODB_PER_WRU = 0.625 / 1_000_000
DYNAMODB_PER_RRU = 0.125 / 1_000_000
DURABLE_PER_OPERATION = 8.00 / 1_000_000
SIZES = (100_000, 1_000_000, 10_000_000)


def pass_figures(users: int, seconds_per_page: float, *, backfill: bool) -> dict[str, float]:
    """One pass over `users` from a measured seconds-per-page: duration, requests, units and cost."""
    pages = pages_for(users)
    seconds, invocations = durable_seconds(max(pages * seconds_per_page, pages / (MAX_REQUESTS_PER_10S / 10)))
    reads = math.ceil(users / 100)  # BatchGetItem requests, 100 keys each
    rru = users * 0.5  # eventually consistent, items < 4 KB: 0.5 RRU per item returned
    writes = users if backfill else 0  # one conditional PutItem per new user, < 1 KB: 1 WRU
    gb_seconds = (seconds - (invocations - 1) * 10) * LAMBDA_MEMORY_MB / 1024  # waits are not billed
    # A checkpointed step per page, the pass's start and finish steps, and per hand-off a step and a wait.
    operations = pages + 2 + 2 * (invocations - 1)
    cost = (
        gb_seconds * LAMBDA_ARM64_PER_GB_S
        + invocations * LAMBDA_PER_REQUEST
        + writes * DYNAMODB_PER_WRU
        + rru * DYNAMODB_PER_RRU
        + operations * DURABLE_PER_OPERATION
    )
    return {
        "minutes": seconds / 60,
        "clerk_requests": pages,
        "batch_get_requests": reads,
        "rru": rru,
        "put_requests": writes,
        "gb_seconds": gb_seconds,
        "invocations": invocations,
        "durable_operations": operations,
        "cost_usd": cost,
    }


def scale_table(scale: dict[str, Any]) -> str:
    """The markdown table of docs/scale.md, from a results.json `reconcile_scale` object."""
    per_page = {
        "backfill": scale["passes"]["backfill_large"]["seconds_per_page"],
        "repair (nothing changed)": scale["passes"]["repair_large"]["seconds_per_page"],
    }
    rows = [
        "| users | pass | duration | Clerk requests | DynamoDB reads (requests / RRU)"
        " | DynamoDB writes (PutItem = WRU) | Lambda GB-s (invocations) | durable operations"
        " | cost per pass |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for users in SIZES:
        for label, seconds in per_page.items():
            f = pass_figures(users, seconds, backfill=label == "backfill")
            duration = f"{f['minutes']:.0f} min" if f["minutes"] < 120 else f"{f['minutes'] / 60:.1f} h"
            rows.append(
                f"| {users:,} | {label} | {duration} | {f['clerk_requests']:,}"
                f" | {f['batch_get_requests']:,} / {f['rru']:,.0f} | {f['put_requests']:,}"
                f" | {f['gb_seconds']:,.0f} ({f['invocations']}) | {f['durable_operations']:,}"
                f" | ${f['cost_usd']:.2f} |"
            )
    return "\n".join(rows)


if __name__ == "__main__":  # a quick look: python -m bench.reconcile_scale [large small]
    from bench._common import offline_env

    offline_env()
    if sys.argv[1:] == ["--table"]:  # docs/scale.md's table from bench/results.json
        document = json.loads((REPO_ROOT / "bench" / "results.json").read_text(encoding="utf-8"))
        print(scale_table(document["reconcile_scale"]))
        sys.exit(0)
    sizes = [int(a) for a in sys.argv[1:3]] or [LARGE, SMALL]
    for goal in run(large=sizes[0], small=sizes[1]):
        print(goal.metric, goal.value, goal.met, goal.note)
