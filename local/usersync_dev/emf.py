"""Forwarding Embedded Metric Format lines to a CloudWatch API (moto locally), as Lambda's log
pipeline does in AWS.

In AWS, CloudWatch Logs extracts the metrics of every EMF document a function prints. Locally nothing
does, so the local stack and the tests hand the printed lines to `forward_emf_lines`, which publishes
each metric with PutMetricData under exactly the namespace, name, dimensions, unit and timestamp the
document declares — nothing renamed, so /health reads back what the functions really emit.

Hand-written: the EMF specification is small and no maintained library converts EMF into
PutMetricData calls (the aws-embedded-metrics package only writes EMF).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

# PutMetricData accepts at most 1000 datums per call and 150 values per datum.
_MAX_DATUMS_PER_CALL = 1000
_MAX_VALUES_PER_DATUM = 150


def parse_emf_document(line: str) -> dict[str, Any] | None:
    """The EMF document on `line`, or None if the line is anything else (a log record, text)."""
    line = line.strip()
    if not line.startswith("{") or '"_aws"' not in line:
        return None
    try:
        document = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(document, dict):
        return None
    metadata = document.get("_aws")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("CloudWatchMetrics"), list):
        return None
    return document


def _chunks(values: list[float]) -> Iterator[list[float]]:
    for index in range(0, len(values), _MAX_VALUES_PER_DATUM):
        yield values[index : index + _MAX_VALUES_PER_DATUM]


def metric_data(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(namespace, PutMetricData datum) for every metric and dimension set the document declares."""
    metadata = document["_aws"]
    stamp = metadata.get("Timestamp")
    timestamp = datetime.fromtimestamp(int(stamp) / 1000, tz=UTC) if stamp is not None else datetime.now(UTC)
    for directive in metadata["CloudWatchMetrics"]:
        namespace = directive["Namespace"]
        dimension_sets = directive.get("Dimensions") or [[]]
        for metric in directive.get("Metrics", []):
            name = metric["Name"]
            raw = document.get(name)
            if raw is None:
                continue
            values = [float(value) for value in (raw if isinstance(raw, list) else [raw])]
            for dimension_names in dimension_sets:
                # Canonical order (case-insensitive by name), the order /health queries in: CloudWatch
                # treats dimensions as a set, but moto 5 compares the lists in order.
                names = sorted(dimension_names, key=str.casefold)
                dimensions = [{"Name": key, "Value": str(document[key])} for key in names]
                for chunk in _chunks(values):
                    datum: dict[str, Any] = {
                        "MetricName": name,
                        "Dimensions": dimensions,
                        "Timestamp": timestamp,
                        "Values": chunk,
                    }
                    if "Unit" in metric:
                        datum["Unit"] = metric["Unit"]
                    if "StorageResolution" in metric:
                        datum["StorageResolution"] = int(metric["StorageResolution"])
                    yield namespace, datum


def forward_emf_lines(lines: Iterable[str] | str, cloudwatch_client: Any) -> int:
    """Publish every metric in the EMF lines (other lines are skipped); returns the values published.

    `lines` may be one string holding many lines (captured stdout) or an iterable of lines.
    """
    if isinstance(lines, str):
        lines = lines.splitlines()
    by_namespace: dict[str, list[dict[str, Any]]] = {}
    published = 0
    for line in lines:
        document = parse_emf_document(line)
        if document is None:
            continue
        for namespace, datum in metric_data(document):
            by_namespace.setdefault(namespace, []).append(datum)
            published += len(datum["Values"])
    for namespace, data in by_namespace.items():
        for index in range(0, len(data), _MAX_DATUMS_PER_CALL):
            cloudwatch_client.put_metric_data(
                Namespace=namespace, MetricData=data[index : index + _MAX_DATUMS_PER_CALL]
            )
    return published
