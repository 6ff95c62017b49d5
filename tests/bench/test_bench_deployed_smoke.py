"""`make bench`'s deployed mode works end to end on one process per variant (figures not asserted).

Builds the layer with its Makefile (offline, from `make wheels`), runs the webhook once from the
bytecode layer and once from the source-only copy in fresh python3.13 processes (the template's runtime)
against the bench's moto server, and checks what the bench relies on: each variant really is what it
claims (bytecode read or not), the secret ARN path is exercised (Secrets Manager call on the first
request), and the moto server's per-request call counts are split at the runner's marks.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import deployed

# One worker for the module: its moto server and layer builds are module-scoped.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("bench-deployed")]


@pytest.fixture(scope="module")
def world() -> Iterator[deployed.World]:
    created = deployed.World.create()
    yield created
    created.moto.stop()


@pytest.fixture(scope="module")
def work() -> Iterator[Path]:
    deployed.CACHE.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="smoke-", dir=deployed.CACHE))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_webhook_in_deployed_mode_bytecode_and_source_only(world: deployed.World, work: Path) -> None:
    python = deployed.runtime_python()
    pip_platform, _note = deployed.measurement_platform()
    bytecode = deployed.build_layer(work, python, pip_platform)
    source = deployed.source_only(bytecode, work)

    shipped = deployed.run_process(world, python, "webhook", "bytecode", bytecode, work)
    plain = deployed.run_process(world, python, "webhook", "source", source, work)

    assert shipped.layer_modules > 50
    assert shipped.layer_modules_with_bytecode == shipped.layer_modules
    assert plain.layer_modules == shipped.layer_modules
    assert plain.layer_modules_with_bytecode == 0
    for sample in (shipped, plain):
        assert sample.calls["first"] == Counter(
            {"SecretsManager GetSecretValue": 1, "DynamoDB PutItem": 1}
        ), "the first request reads the secret by ARN and writes once"
        assert sample.calls["later"] == Counter({"DynamoDB PutItem": 1}), "the secret is cached"
        assert sample.total_ms == pytest.approx(sample.init_ms + sample.first_request_ms)
        assert sample.peak_rss_mb > 0
        assert sample.stdout_bytes > 0


def test_me_in_deployed_mode_reads_the_organizations_table_the_template_names(
    world: deployed.World, work: Path
) -> None:
    python = deployed.runtime_python()
    pip_platform, _note = deployed.measurement_platform()
    bytecode = deployed.build_layer(work, python, pip_platform)

    alone = deployed.run_process(world, python, "me", "bytecode", bytecode, work)
    member = deployed.run_process(world, python, "me-member", "bytecode", bytecode, work)

    # run_process refuses answers other than 200 listing the seeded organizations (0, then 2).
    assert alone.calls["first"] == Counter({"DynamoDB GetItem": 1, "DynamoDB Query": 1})
    assert member.calls["first"] == Counter(
        {"DynamoDB GetItem": 1, "DynamoDB Query": 1, "DynamoDB BatchGetItem": 1}
    ), "one BatchGetItem for all of the caller's organizations"
    assert member.calls["later"] == member.calls["first"], "/me caches nothing between requests"


def test_split_calls_cuts_one_process_log_at_the_runner_marks() -> None:
    log = ["DynamoDB GetItem", "DynamoDB PutItem", "mark:first", "DynamoDB GetItem", "mark:later", "x y"]
    assert deployed.split_calls(log) == {
        "first": Counter({"DynamoDB GetItem": 1, "DynamoDB PutItem": 1}),
        "later": Counter({"DynamoDB GetItem": 1}),
    }


def _sample(variant: str, total_ms: float) -> deployed.Sample:
    calls: dict[str, Counter[str]] = {"first": Counter(), "later": Counter()}
    return deployed.Sample("webhook", variant, total_ms - 10, 10, total_ms, 60.0, 5, 5, calls, 100)


def test_goals_are_medians_of_per_round_ratios_against_the_shipped_bytecode() -> None:
    samples = {
        ("webhook", "bytecode"): [_sample("bytecode", ms) for ms in (100, 200, 100)],
        ("webhook", "source"): [_sample("source", ms) for ms in (300, 300, 150)],  # ratios 3, 1.5, 1.5
        ("webhook", "peer"): [_sample("peer", ms) for ms in (500, 500, 500)],  # ratios 5, 2.5, 5
    }
    for variant in deployed.VARIANTS:
        samples[("authorizer", variant)] = [_sample(variant, 100)] * 3
    goals = {g.metric: g for g in deployed._goals(samples, deployed.VARIANTS, 3, "note")}
    source = goals["webhook: init + first request, source-only (plain sam build) / shipped bytecode"]
    peer = goals["webhook: init + first request, the tutorial peer / shipped bytecode"]
    assert (source.value, source.met) == (1.5, False)
    assert (peer.value, peer.met) == (5.0, True)
    assert goals["webhook [bytecode]: init + first request (median)"].value == 100
