"""Make moto's CloudWatch match dimensions as a set, as CloudWatch does (tests, bench, local stack only).

CloudWatch identifies a metric by its namespace, name and *set* of dimensions: a GetMetricData query
listing `{service, Source}` matches datapoints put as `{Source, service}`. moto 5 compares
`sorted(stored) == sorted(queried)`, but its `Dimension.__lt__` is not an ordering (it compares a value
with a name), so the sort leaves both lists as given and only the put order matches. /health asks
for one MetricStat per (metric, source), as production should pay for; this module fixes the stand-in
instead of doubling production's queries. Idempotent; never imported by the layer.
"""

from __future__ import annotations

from typing import Any


def _dimension_key(dimension: Any) -> tuple[str, str]:
    return (dimension.name or "", dimension.value or "")


def match_dimensions_as_a_set() -> None:
    """Give moto's CloudWatch `Dimension` a total order (name, value), so sorting makes lists comparable."""
    from moto.cloudwatch import models

    dimension = models.Dimension
    if getattr(dimension, "_usersync_set_semantics", False):
        return

    def less_than(self: Any, other: Any) -> bool:
        return _dimension_key(self) < _dimension_key(other)

    dimension.__lt__ = less_than  # type: ignore[method-assign]
    dimension._usersync_set_semantics = True  # type: ignore[attr-defined]
