"""The reconciliation scale bench (bench/reconcile_scale.py) and its stand-ins stay true.

The stand-ins decide what the bench measures, so they are held to DynamoDB's and Clerk's behaviour
here: the table's own conditional writes evaluated as DynamoDB would (through botocore, against the
endpoint), cursor paging and the page-twice count, the 10 s window count. The smoke run (tiny sizes, no
latency, slow tier) checks the bench's plumbing and counts, never a timing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import botocore.session
import pytest
import urllib3
from botocore.exceptions import ClientError

from bench import reconcile_scale
from bench._common import Goal
from bench.scale_standins import SECRET_KEY, LatencyDynamo, LoopbackClerk, condition_holds, user_id_of
from usersync.store.users import CLERK_RECORD_CONDITION, TOMBSTONE_CONDITION

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

VALUES = {":updatedAt": {"N": "200"}, ":authorizer": {"S": "authorizer"}}
NAMES = {"#source": "source"}


def _item(**attributes: Any) -> dict[str, Any]:
    return {
        name: ({"N": str(value)} if isinstance(value, int) else {"S": value})
        for name, value in attributes.items()
    }


@pytest.mark.parametrize(
    ("stored", "lands"),
    [
        ({}, True),  # absent
        (_item(userId="u", updatedAt=100, clerkUpdatedAt=100, source="webhook"), True),  # older
        (_item(userId="u", updatedAt=200, clerkUpdatedAt=200, source="webhook"), False),  # same version
        (_item(userId="u", updatedAt=300, clerkUpdatedAt=300, source="webhook"), False),  # newer
        (_item(userId="u", updatedAt=100, clerkUpdatedAt=100, deletedAt=5), False),  # tombstone
        (_item(userId="u", updatedAt=100, source="webhook"), True),  # before clerkUpdatedAt existed
        (_item(userId="u", updatedAt=300, source="authorizer"), False),  # fresher token row
        (_item(userId="u", updatedAt=200, source="authorizer"), True),  # a tie goes to Clerk
    ],
)
def test_the_stand_in_decides_the_clerk_record_condition_as_dynamodb(
    stored: dict[str, Any], lands: bool
) -> None:
    assert condition_holds(CLERK_RECORD_CONDITION, stored, NAMES, VALUES) is lands


def test_the_earliest_tombstone_condition_and_not() -> None:
    values = {":deletedAt": {"N": "50"}}
    assert condition_holds(TOMBSTONE_CONDITION, _item(userId="u", deletedAt=60), {}, values)
    assert not condition_holds(TOMBSTONE_CONDITION, _item(userId="u", deletedAt=40), {}, values)
    assert condition_holds(
        "NOT attribute_exists(x) AND (a <> :v OR b = :v)", _item(a="y"), {}, {":v": {"S": "z"}}
    )
    with pytest.raises(ValueError, match="cannot parse"):
        condition_holds("a ~ :v", {}, {}, {":v": {"S": "z"}})
    with pytest.raises(ValueError, match="unsupported comparator"):  # not served: fails, never guesses
        condition_holds("a BETWEEN :v AND :w", {}, {}, {":v": {"S": "z"}})


def test_the_dynamodb_stand_in_through_botocore_conditional_put_batch_get_and_unknown_operations() -> None:
    with LatencyDynamo(latency_ms=(0.0, 0.0)) as dynamo:
        dynamo.create_table("t", ["userId"])
        session = botocore.session.get_session()
        client = cast(
            "DynamoDBClient",
            session.create_client(
                "dynamodb",
                endpoint_url=dynamo.url,
                region_name="us-east-1",
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            ),
        )
        item = _item(userId="u1", updatedAt=100, clerkUpdatedAt=100, source="webhook", email="a@example.com")
        client.put_item(TableName="t", Item=item, ConditionExpression="attribute_not_exists(userId)")
        with pytest.raises(ClientError) as failed:
            client.put_item(
                TableName="t",
                Item=item,
                ConditionExpression="attribute_not_exists(userId)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        assert failed.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
        assert failed.value.response["Item"] == item  # type: ignore[typeddict-item]
        got = client.batch_get_item(
            RequestItems={
                "t": {
                    "Keys": [{"userId": {"S": "u1"}}, {"userId": {"S": "u2"}}],
                    "ProjectionExpression": "userId, #s",
                    "ExpressionAttributeNames": {"#s": "source"},
                }
            }
        )
        assert got["Responses"]["t"] == [_item(userId="u1", source="webhook")]
        with pytest.raises(ClientError, match="not served by the bench stand-in"):
            client.delete_item(TableName="t", Key={"userId": {"S": "u1"}})
        assert dynamo.calls == {"PutItem": 2, "BatchGetItem": 1, "DeleteItem": 1}


def _get(clerk: LoopbackClerk, **fields: str) -> Any:
    response = urllib3.request(
        "GET", f"{clerk.url}/v1/users", fields=fields, headers={"Authorization": f"Bearer {SECRET_KEY}"}
    )
    return response.status, json.loads(response.data)


def test_the_clerk_stand_in_pages_by_cursor_counts_a_page_read_twice_and_filters_by_id() -> None:
    with LoopbackClerk(1200, latency=False) as clerk:
        status, first = _get(clerk, limit="500", order_by="+created_at")
        assert status == 200
        assert [u["id"] for u in first[:2]] == [user_id_of(0), user_id_of(1)]
        _, second = _get(clerk, limit="500", order_by="+created_at", starting_after=first[-1]["id"])
        _, last = _get(clerk, limit="500", order_by="+created_at", starting_after=second[-1]["id"])
        assert (second[0]["id"], len(last)) == (user_id_of(500), 200)
        assert clerk.counts.pages_read_twice == 0
        _get(clerk, limit="500", order_by="+created_at", starting_after=first[-1]["id"])
        assert clerk.counts.pages_read_twice == 1
        status, _ = _get(clerk, limit="500", starting_after=first[-1]["id"])  # no order_by: Clerk's 422
        assert status == 422
        response = urllib3.request(
            "GET",
            f"{clerk.url}/v1/users?user_id={user_id_of(3)}&user_id=user_999999999999",
            headers={"Authorization": f"Bearer {SECRET_KEY}"},
        )
        assert [u["id"] for u in json.loads(response.data)] == [user_id_of(3)]
        assert clerk.counts.requests == 6
        assert clerk.counts.max_requests_per_10s == 6


def test_projection_takes_the_rate_cap_floor_when_pages_are_faster_than_the_cap() -> None:
    fast = reconcile_scale.PassRun("x", 100_000, 10.0, 1.0, 50.0, 201, 201, 0, 30, {}, 8, {})
    lines: list[str] = []
    projected = reconcile_scale.project(fast, "fast", lines)
    # 2,001 requests at 200 per 10 s: 100 s, more than 2,001 x (10 s / 201 pages) = 99.6 s.
    assert projected["minutes"] == pytest.approx(2001 / 20 / 60)
    assert any("rate cap floor 2,001 requests" in line for line in lines)


def test_the_bench_prices_and_projects_at_the_reconcile_functions_memory() -> None:
    """GB-s and the CPU-share estimate use LAMBDA_MEMORY_MB: it must be what the template deploys."""
    from usersync_dev.template import load_template

    function = load_template()["Resources"]["ReconcileFunction"]["Properties"]
    assert function["MemorySize"] == reconcile_scale.LAMBDA_MEMORY_MB


@pytest.mark.slow
def test_smoke_run_writes_the_reconcile_scale_object() -> None:
    goals = reconcile_scale.run(large=1500, small=600, latency=False)
    scale = goals[0].details["reconcile_scale"]
    assert scale["users"] == 1500
    assert scale["pages_read_twice"] == 0
    passes = scale["passes"]
    assert passes["backfill_large"]["dynamodb_calls"]["PutItem"] == 1500
    assert "PutItem" not in passes["repair_large"]["dynamodb_calls"]  # compare-first: nothing changed
    assert passes["repair_large"]["dynamodb_calls"]["BatchGetItem"] == 15  # 100 keys a request
    assert passes["backfill_large"]["clerk_list_pages"] == 4  # 3 full pages and the short one
    for key in ("rss_mb_per_100k_users", "projected_backfill_1m_minutes", "projected_repair_1m_minutes"):
        assert isinstance(scale[key], float)
    assert scale["projected_repair_1m_minutes"] >= 2001 / 20 / 60 - 0.05  # never under the rate cap


@pytest.mark.usefixtures("restore_process_state")  # importing bench.__main__ sets the bench's environment
def test_refresh_replaces_only_the_rows_of_the_benchmarks_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bench.__main__ as bench_cli

    output = tmp_path / "results.json"
    row = {"metric": "m", "value": 1.0, "goal": "info", "met": None, "unit": "", "note": "", "details": {}}
    output.write_text(
        json.dumps(
            {
                "generated_at": "2026-01-01T00:00:00+00:00",
                "goals": [{**row, "benchmark": "authorizer warm"}, {**row, "benchmark": "compare-first"}],
            }
        )
    )
    fresh = [Goal("compare-first", "new", 2.0, "info", None)]
    monkeypatch.setitem(bench_cli.FULL, "compare-first", lambda: fresh)
    assert bench_cli.main(["--only", "compare-first", "--refresh", "--output", str(output)]) == 0
    document = json.loads(output.read_text())
    assert [(g["benchmark"], g["metric"]) for g in document["goals"]] == [
        ("authorizer warm", "m"),
        ("compare-first", "new"),
    ]
    assert document["refreshed"] == {
        "benchmarks": ["compare-first"],
        "others_generated_at": "2026-01-01T00:00:00+00:00",
    }
