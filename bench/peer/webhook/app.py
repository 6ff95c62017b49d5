"""Tutorial peer: a Clerk webhook written the way common guides write it (bench only, never deployed).

svix's `Webhook.verify`, `boto3.resource(...).Table().put_item`, Powertools Logger + Metrics + Tracer,
the signing secret read from Secrets Manager through Powertools Parameters (the deployed mode's ARN).
"""

import base64
import json
import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities import parameters
from svix.webhooks import Webhook, WebhookVerificationError

logger = Logger()
metrics = Metrics()
tracer = Tracer()
table = boto3.resource("dynamodb").Table(os.environ["USERS_TABLE_NAME"])


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], _context: Any) -> dict[str, Any]:
    secret = parameters.get_secret(os.environ["CLERK_WEBHOOK_SECRET_ARN"])
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    try:
        Webhook(str(secret)).verify(body, event.get("headers") or {})  # svix 2.x returns None
    except WebhookVerificationError:
        logger.warning("invalid signature")
        return {"statusCode": 400, "body": json.dumps({"error": "invalid signature"})}
    payload = json.loads(body)
    data = payload["data"]
    if payload["type"] in ("user.created", "user.updated"):
        emails = {e["id"]: e["email_address"] for e in data.get("email_addresses", [])}
        table.put_item(
            Item={
                "userId": data["id"],
                "email": emails.get(data.get("primary_email_address_id"), ""),
                "firstName": data.get("first_name") or "",
                "lastName": data.get("last_name") or "",
                "imageUrl": data.get("image_url") or "",
                "updatedAt": data.get("updated_at") or 0,
            }
        )
    elif payload["type"] == "user.deleted":
        table.delete_item(Key={"userId": data["id"]})
    metrics.add_metric(name="WebhookProcessed", unit=MetricUnit.Count, value=1)
    logger.info("webhook processed", extra={"type": payload["type"]})
    return {"statusCode": 200, "body": json.dumps({"ok": True})}
