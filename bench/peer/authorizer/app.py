"""Tutorial peer: a Lambda authorizer written the way common guides write it (bench only, never deployed).

PyJWT `decode` with the Clerk PEM key, `boto3.resource(...).Table().put_item` of the profile on every
request, Powertools Logger + Metrics + Tracer.
"""

import os
from typing import Any

import boto3
import jwt
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger()
metrics = Metrics()
tracer = Tracer()
table = boto3.resource("dynamodb").Table(os.environ["USERS_TABLE_NAME"])
PUBLIC_KEY = os.environ["CLERK_JWT_KEY"]


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], _context: Any) -> dict[str, Any]:
    header = (event.get("headers") or {}).get("authorization", "")
    token = header.removeprefix("Bearer ").strip()
    try:
        claims = jwt.decode(token, PUBLIC_KEY, algorithms=["RS256"])
    except jwt.PyJWTError:
        metrics.add_metric(name="AuthorizerDenied", unit=MetricUnit.Count, value=1)
        return {"isAuthorized": False}
    table.put_item(
        Item={
            "userId": claims["sub"],
            "email": claims.get("email", ""),
            "firstName": claims.get("firstName", ""),
            "lastName": claims.get("lastName", ""),
        }
    )
    return {"isAuthorized": True, "context": {"userId": claims["sub"]}}
