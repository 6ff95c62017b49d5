"""One Logger and one Metrics per container, shared by every module of the layer.

Service name, log level and metrics namespace come from the POWERTOOLS_* environment variables
(the namespace falls back to `usersync`, the same default the health check reads).

No Powertools Tracer: `Tracer()` imports and configures the X-Ray SDK at construction, whether
tracing is enabled or not (~400 ms of cold start measured here, more than the rest of a handler),
and it needs `aws-xray-sdk` in the layer. The template's `Tracing: Active` still gives every
invocation an X-Ray trace with its init and invocation segments; add the Tracer to a function
only if you need subsegments per AWS call, and measure its cold start (`make bench`).
"""

import os

from aws_lambda_powertools import Logger, Metrics

from usersync.runtime.settings import DEFAULT_METRICS_NAMESPACE

logger = Logger()
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_METRICS_NAMESPACE)

# Every handler imports this module: the SnapStart after-restore hook is registered once, at init.
from usersync.runtime import snapstart as _snapstart  # noqa: E402, F401
