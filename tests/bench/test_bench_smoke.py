"""The benchmarks run (tiny iterations) and return well-formed results, so `make bench` does not rot.

Only structure is asserted, never a timing or whether a timed goal is met: timings belong to
`make bench`. Each benchmark changes process state (environment, AWS clients), which is restored.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

# The bench sets environment variables and clients for its own stacks: restored after each test.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("restore_process_state")]


def assert_well_formed(goals: list[Any], benchmark: str) -> list[dict[str, Any]]:
    rows = [goal.as_dict() for goal in goals]
    assert rows, "a benchmark returns at least one goal row"
    for row in rows:
        assert set(row) >= {"benchmark", "metric", "value", "goal", "met", "unit", "note", "details"}
        assert row["benchmark"] == benchmark
        assert isinstance(row["metric"], str)
        assert row["metric"]
        if row["goal"] == "info":
            assert row["met"] is None
        else:
            assert isinstance(row["met"], bool), row
        assert row["value"] is None or (isinstance(row["value"], float | int) and math.isfinite(row["value"]))
        json.dumps(row)  # results.json must be able to hold it
    return rows


def test_authorizer_warm_path() -> None:
    from bench import authorizer_warm

    rows = assert_well_formed(authorizer_warm.run(rounds=1, calls=3), "authorizer warm")
    timed = rows[0]["details"]["median_us_per_call"]
    assert set(timed) == {"floor", "handler", "peer_verify_token", "peer_authenticate_request"}
    assert any(row["metric"].startswith("DynamoDB calls") for row in rows)


def test_webhook_in_process_path() -> None:
    from bench import webhook_path

    rows = assert_well_formed(webhook_path.run(rounds=1, calls=3), "webhook in-process")
    assert set(rows[0]["details"]["median_us_per_call"]) == {
        "floor",
        "in_process",
        "handler",
        "handler_botocore",
    }
    assert rows[0]["details"]["stage_us_per_call"]


def test_cold_start() -> None:
    from bench import cold_start

    rows = assert_well_formed(cold_start.run(rounds=1, handlers=("webhook",), contrasts=False), "cold start")
    (timed,) = [row for row in rows if row["metric"].startswith("import webhook")]
    assert timed["value"] is not None
    assert set(timed["details"]["forbidden_imports"]) == {"svix", "jwt"}
    assert "app" in timed["details"]["importtime_cumulative_ms"]


def test_sync_cost() -> None:
    from bench import sync_cost

    rows = assert_well_formed(sync_cost.run(events=8, rounds=1), "sync cost")
    runs = rows[0]["details"]["runs"]
    assert set(runs) == {"ours", "naive"}
    assert all(set(run) == {"seconds", "calls", "events"} for run in runs["ours"] + runs["naive"])


def test_codec() -> None:
    from bench import codec

    rows = assert_well_formed(codec.run(rounds=1, calls=5, import_rounds=1), "codec")
    assert [row["unit"] for row in rows] == ["x", "x", "ms"]
    assert set(rows[0]["details"]) == {
        "decode (hand-written)",
        "decode (TypeDeserializer)",
        "encode (hand-written)",
        "encode (TypeSerializer)",
    }


def test_compare_first() -> None:
    from bench import compare_first

    rows = assert_well_formed(compare_first.run(calls=6, users=2, tokens_per_user=2), "compare-first")
    assert rows[0]["details"]["calls"] == 6
    assert isinstance(rows[0]["details"]["dynamodb_calls"], dict)
    # The count follows the authorizer's real write (a conditional UpdateItem), once per new user.
    assert rows[0]["details"]["dynamodb_calls"].get("UpdateItem") == 2


def test_main_writes_results_and_prints_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bench.__main__ import main

    output = tmp_path / "results.json"
    assert main(["--quick", "--only", "compare-first", "--output", str(output)]) == 0
    document = json.loads(output.read_text())
    assert {"generated_at", "python", "duration_seconds", "all_goals_met", "goals"} <= set(document)
    assert [goal["benchmark"] for goal in document["goals"]] == ["compare-first", "compare-first"]
    printed = capsys.readouterr().out
    assert "benchmark" in printed
    assert "compare-first" in printed
    assert "goals met" in printed
