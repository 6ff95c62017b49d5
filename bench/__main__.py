"""`python -m bench` (`make bench`): every benchmark, a table of goals, bench/results.json (+ .md).

Exit status is 0 even when a goal is missed (the table says so); `--strict` makes a missed goal or
a benchmark that could not run exit 1.
"""

from __future__ import annotations

from bench._common import offline_env

offline_env()  # before anything below imports boto3 or Powertools

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from bench import (  # noqa: E402
    authorizer_warm,
    codec,
    cold_start,
    compare_first,
    deployed,
    org_events,
    reconcile_scale,
    sync_cost,
    webhook_path,
)
from bench._common import REPO_ROOT, Goal, fmt  # noqa: E402

RESULTS_JSON = REPO_ROOT / "bench" / "results.json"
RESULTS_MD = REPO_ROOT / "bench" / "results.md"
TOP_LEVEL_OBJECTS = {"reconcile_scale"}

FULL: dict[str, Callable[[], list[Goal]]] = {
    "authorizer": authorizer_warm.run,
    "webhook": webhook_path.run,
    "cold-start": cold_start.run,
    "sync-cost": sync_cost.run,
    "compare-first": compare_first.run,
    "org-events": org_events.run,
    "codec": codec.run,
    "deployed": deployed.run,
    "reconcile-scale": reconcile_scale.run,
}
QUICK: dict[str, Callable[[], list[Goal]]] = {
    "authorizer": lambda: authorizer_warm.run(rounds=3, calls=50),
    "webhook": lambda: webhook_path.run(rounds=3, calls=50),
    "cold-start": lambda: cold_start.run(rounds=3, contrasts=False),
    "sync-cost": lambda: sync_cost.run(events=100, rounds=1),
    "compare-first": lambda: compare_first.run(calls=100),
    "org-events": lambda: org_events.run(organizations=20),
    "codec": lambda: codec.run(rounds=1, calls=200, import_rounds=1),
    "deployed": lambda: deployed.run(rounds=1),
    "reconcile-scale": lambda: reconcile_scale.run(large=1500, small=500),
}


def _status(goal: Goal) -> str:
    if goal.goal == "info":
        return "info"
    return {True: "yes", False: "NO", None: "n/a"}[goal.met]


def _rows(goals: list[Goal]) -> list[list[str]]:
    return [[g.benchmark, g.metric, fmt(g.value, g.unit), g.goal, _status(g), g.note] for g in goals]


HEADER = ["benchmark", "metric", "value", "goal", "met", "note"]


def render_text(goals: list[Goal]) -> str:
    rows = [HEADER, *_rows(goals)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER) - 1)]
    lines = []
    for index, row in enumerate(rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)] + [row[-1]]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths) + "  ----")
    return "\n".join(lines)


def render_markdown(goals: list[Goal]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in _rows(goals)]
    return "\n".join(lines)


def _refreshed(
    previous: dict[str, Any], fresh: list[Goal], names: list[str]
) -> tuple[list[Goal], dict[str, Any]]:
    """The previous results' rows with the rows of the benchmarks just run replaced in place (new ones
    appended), and the previous top-level objects plus a note of what was refreshed when."""
    ran = {goal.benchmark for goal in fresh}
    merged: list[Goal] = []
    placed: set[str] = set()
    for row in previous.get("goals", []):
        benchmark = row["benchmark"]
        if benchmark not in ran:
            merged.append(Goal(**row))
        elif benchmark not in placed:
            merged.extend(goal for goal in fresh if goal.benchmark == benchmark)
            placed.add(benchmark)
    merged.extend(goal for goal in fresh if goal.benchmark not in placed)
    kept = {key: previous[key] for key in TOP_LEVEL_OBJECTS if key in previous}
    earlier = previous.get("refreshed", {}).get("benchmarks", [])
    kept["refreshed"] = {
        "benchmarks": [*earlier, *(name for name in names if name not in earlier)],
        "others_generated_at": previous.get("refreshed", {}).get("others_generated_at")
        or previous.get("generated_at"),
    }
    return merged, kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", nargs="+", choices=sorted(FULL), help="run only these benchmarks")
    parser.add_argument(
        "--quick", action="store_true", help="tiny iterations (a smoke run, figures meaningless)"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal is not met")
    parser.add_argument("--output", type=Path, default=RESULTS_JSON, help="results JSON path")
    parser.add_argument(
        "--refresh",
        action="store_true",
        help="with --only: replace only these benchmarks' rows in the existing results, keep the others",
    )
    args = parser.parse_args(argv)
    if args.refresh and not args.only:
        parser.error("--refresh needs --only")
    warnings.filterwarnings("ignore", message="No application metrics to publish")

    suite = QUICK if args.quick else FULL
    started = time.perf_counter()
    goals: list[Goal] = []
    for name in args.only or list(suite):
        print(f"running {name} ...", file=sys.stderr, flush=True)
        begun = time.perf_counter()
        try:
            goals.extend(suite[name]())
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others' figures
            traceback.print_exc()
            goals.append(
                Goal(name, "benchmark could not run", None, "runs", False, "", f"{type(exc).__name__}: {exc}")
            )
        print(f"  {name}: {time.perf_counter() - begun:.1f} s", file=sys.stderr, flush=True)
    duration = time.perf_counter() - started
    kept: dict[str, Any] = {}
    if args.refresh and args.output.is_file():
        goals, kept = _refreshed(json.loads(args.output.read_text()), goals, args.only)

    document: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "quick": args.quick,
        "duration_seconds": round(duration, 1),
        "all_goals_met": all(goal.met for goal in goals if goal.goal != "info"),
        "goals": [goal.as_dict() for goal in goals],
        **kept,
    }
    # Objects a benchmark publishes at the top level (e.g. `reconcile_scale`, CONTRACT §12's figures).
    for goal in goals:
        for key in TOP_LEVEL_OBJECTS & set(goal.details):
            document[key] = goal.details[key]
    args.output.write_text(json.dumps(document, indent=2, default=str) + "\n")
    if args.output == RESULTS_JSON:
        RESULTS_MD.write_text(render_markdown(goals) + "\n")
    print(render_text(goals))
    met = sum(1 for goal in goals if goal.goal != "info" and goal.met)
    total = sum(1 for goal in goals if goal.goal != "info")
    print(f"\n{met}/{total} goals met in {duration:.0f} s; figures in {args.output}")
    return 1 if args.strict and not document["all_goals_met"] else 0


if __name__ == "__main__":
    sys.exit(main())
