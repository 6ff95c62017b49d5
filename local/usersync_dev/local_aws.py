"""The stand-in AWS that dev tools, tests and the bench run against: one account and region, and the
Lambda context object.

Lambda always passes handlers a real context, so handlers never invent one; whatever invokes them
outside Lambda (the local stack, `usersync-dev invoke`, tests, bench) passes a `LocalLambdaContext`.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
LAMBDA_MAX_TIMEOUT_SECONDS = 900


def _function_name_from_env() -> str:
    return os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local")


@dataclass
class LocalLambdaContext:
    """The parts of Lambda's context object that Powertools and the handlers read."""

    function_name: str = field(default_factory=_function_name_from_env)
    memory_limit_in_mb: int = 128
    timeout_seconds: float = LAMBDA_MAX_TIMEOUT_SECONDS  # no function timeout given: Lambda's maximum
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    _started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return time.strftime("%Y/%m/%d/[$LATEST]") + "local"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self._started)) * 1000))
