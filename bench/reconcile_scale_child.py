"""One reconciliation pass in a fresh process, for bench/reconcile_scale.py: `python -m
bench.reconcile_scale_child SPEC_JSON`.

A process of its own so that its peak resident memory (VmHWM) is the pass's and nothing else's: the
stand-ins (and the 100,000 items of the DynamoDB one) live in the parent. The DynamoDB client is the
layer's own (`usersync.runtime.aws.dynamodb_client`: the deployed timeouts, retries and connection
pool), pointed at the stand-in by botocore's `AWS_ENDPOINT_URL_DYNAMODB`; logs go where Lambda's go
(stdout, here /dev/null), at the template's LOG_LEVEL, so their cost is in the figures.

Writes one JSON object to SPEC["result"]: wall and CPU seconds of the pass, VmHWM before and after,
and the engine's summary.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any


def _status_kb(field: str) -> int:
    """A /proc/self/status figure in kB (VmHWM: peak resident set; VmRSS: now). Linux only."""
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return usage.ru_utime + usage.ru_stime


def run_engine(spec: dict[str, Any]) -> dict[str, Any]:
    """The pass, through the engine's public entry point (usersync.sync.reconcile.run_whole_pass)."""
    from usersync.runtime.aws import dynamodb_client
    from usersync.sync.reconcile import ReconcileOptions, run_whole_pass

    client = dynamodb_client()
    options = ReconcileOptions(write_threads=int(spec["write_threads"]))
    hwm_before, cpu_before = _status_kb("VmHWM"), _cpu_seconds()
    started = time.perf_counter()
    result = run_whole_pass(
        spec["clerk_url"],
        spec["secret_key"],
        client,
        spec["table"],
        None,
        options=options,
        max_requests_per_10s=int(spec["max_requests_per_10s"]),
    )
    wall = time.perf_counter() - started
    return {
        "wall_seconds": wall,
        "cpu_seconds": _cpu_seconds() - cpu_before,
        "hwm_kb_before": hwm_before,
        "hwm_kb": _status_kb("VmHWM"),
        "rss_kb_after": _status_kb("VmRSS"),
        "summary": result.summary(),
        "errors": result.errors,
    }


def main() -> None:
    spec = json.loads(sys.argv[1])
    os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = spec["dynamo_url"]
    sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # the engine's logs and EMF: written, as on Lambda, and not read
    outcome = run_engine(spec)
    Path(spec["result"]).write_text(json.dumps(outcome), encoding="utf-8")


if __name__ == "__main__":
    from bench._common import offline_env

    offline_env()
    main()
