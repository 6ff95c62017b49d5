"""One Logger and one Metrics per container, shared by every module of the layer.

Service name, log level and metrics namespace come from the POWERTOOLS_* environment variables
(the namespace falls back to `usersync`, the same default the health check reads).

No Powertools Tracer: `Tracer()` imports and configures the X-Ray SDK at construction, whether
tracing is enabled or not (~400 ms of cold start measured here, more than the rest of a handler),
and it needs `aws-xray-sdk` in the layer. The template's `Tracing: Active` still gives every
invocation an X-Ray trace with its init and invocation segments; add the Tracer to a function
only if you need subsegments per AWS call, and measure its cold start (`make bench`).
"""

import functools
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics

from usersync.settings import DEFAULT_METRICS_NAMESPACE

logger = Logger()
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_METRICS_NAMESPACE)

_R = TypeVar("_R")


@dataclass(frozen=True)
class StandInContext:
    """What a handler gets instead of `None`: Lambda always passes a real context, but tests, local
    invokes and scripts often call `lambda_handler(event, None)`, which Powertools' decorators
    cannot log without."""

    function_name: str = field(default_factory=lambda: os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local"))
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 128
    invoked_function_arn: str = "arn:aws:lambda:local:000000000000:function:local"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def get_remaining_time_in_millis(self) -> int:
        return 900_000  # no deadline known: Lambda's maximum


def accepts_missing_context(handler: Callable[[Any, Any], _R]) -> Callable[[Any, Any], _R]:
    """Outermost decorator of every handler: a missing or non-Lambda context becomes a StandInContext."""

    @functools.wraps(handler)
    def wrapper(event: Any, context: Any) -> _R:
        if not hasattr(context, "aws_request_id"):
            context = StandInContext()
        return handler(event, context)

    return wrapper


# Every handler imports this module: the SnapStart after-restore hook is registered once, at init.
from usersync import snapstart as _snapstart  # noqa: E402, F401
