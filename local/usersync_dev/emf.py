"""Reading the Embedded Metric Format lines functions print, and forwarding them to a CloudWatch API
(moto locally), as Lambda's log pipeline does in AWS. The one EMF parser: tests read the metrics a
handler emitted with `emf_metrics` too.

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
from dataclasses import dataclass
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


@dataclass(frozen=True)
class EmfMetric:
    """One metric of an EMF document under one of the dimension sets it declares."""

    namespace: str
    name: str
    dimensions: dict[str, str]  # in the order the document declares them
    values: tuple[float, ...]
    timestamp: datetime
    unit: str | None = None
    storage_resolution: int | None = None


def document_metrics(document: dict[str, Any]) -> Iterator[EmfMetric]:
    """Every metric and dimension set an EMF document declares (metrics without a value skipped)."""
    metadata = document["_aws"]
    stamp = metadata.get("Timestamp")
    timestamp = datetime.fromtimestamp(int(stamp) / 1000, tz=UTC) if stamp is not None else datetime.now(UTC)
    for directive in metadata["CloudWatchMetrics"]:
        dimension_sets = directive.get("Dimensions") or [[]]
        for metric in directive.get("Metrics", []):
            raw = document.get(metric["Name"])
            if raw is None:
                continue
            values = tuple(float(value) for value in (raw if isinstance(raw, list) else [raw]))
            resolution = metric.get("StorageResolution")
            for dimension_names in dimension_sets:
                yield EmfMetric(
                    namespace=directive["Namespace"],
                    name=metric["Name"],
                    dimensions={key: str(document[key]) for key in dimension_names},
                    values=values,
                    timestamp=timestamp,
                    unit=metric.get("Unit"),
                    storage_resolution=int(resolution) if resolution is not None else None,
                )


def emf_metrics(lines: Iterable[str] | str) -> Iterator[EmfMetric]:
    """Every metric in the EMF documents among `lines` (other lines are skipped).

    `lines` may be one string holding many lines (captured stdout) or an iterable of lines.
    """
    for line in lines.splitlines() if isinstance(lines, str) else lines:
        document = parse_emf_document(line)
        if document is not None:
            yield from document_metrics(document)


def metric_data(metric: EmfMetric) -> Iterator[dict[str, Any]]:
    """PutMetricData datums for one metric (at most 150 values each)."""
    # Canonical order (case-insensitive by name), the order /health queries in: CloudWatch treats
    # dimensions as a set, but moto 5 compares the lists in order.
    names = sorted(metric.dimensions, key=str.casefold)
    dimensions = [{"Name": key, "Value": metric.dimensions[key]} for key in names]
    for index in range(0, len(metric.values), _MAX_VALUES_PER_DATUM):
        datum: dict[str, Any] = {
            "MetricName": metric.name,
            "Dimensions": dimensions,
            "Timestamp": metric.timestamp,
            "Values": list(metric.values[index : index + _MAX_VALUES_PER_DATUM]),
        }
        if metric.unit is not None:
            datum["Unit"] = metric.unit
        if metric.storage_resolution is not None:
            datum["StorageResolution"] = metric.storage_resolution
        yield datum


def forward_emf_lines(lines: Iterable[str] | str, cloudwatch_client: Any) -> int:
    """Publish every metric in the EMF lines (other lines are skipped); returns the values published."""
    by_namespace: dict[str, list[dict[str, Any]]] = {}
    published = 0
    for metric in emf_metrics(lines):
        for datum in metric_data(metric):
            by_namespace.setdefault(metric.namespace, []).append(datum)
            published += len(datum["Values"])
    for namespace, data in by_namespace.items():
        for index in range(0, len(data), _MAX_DATUMS_PER_CALL):
            cloudwatch_client.put_metric_data(
                Namespace=namespace, MetricData=data[index : index + _MAX_DATUMS_PER_CALL]
            )
    return published
