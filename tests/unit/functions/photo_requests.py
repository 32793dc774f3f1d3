"""How the front door's handler tests call functions/photos: moto's tables and bucket, the two handlers loaded as
Lambda loads them, and payload format 2.0 requests made from events/ as API Gateway's JWT authorizer passes them.
Their fixtures (aws, submit, status) are in conftest.py."""

from __future__ import annotations

import copy
import json
from typing import Any

BUCKET = "scones-twin-intakebucket-4f24bf0400f5"  # events/ name the twin's resources
PHOTOS, IDEMPOTENCY, RESULTS = "photos-table", "idempotency-table", "results-table"
OWNER_A, OWNER_B = "team-a-client-id-000000000", "team-b-client-id-000000000"


class Context:
    function_name, memory_limit_in_mb, aws_request_id = "photos", 256, "req-1"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:photos"

    def get_remaining_time_in_millis(self) -> int:
        return 25_000


def as_caller(event: dict, owner: str | None) -> dict:
    event = copy.deepcopy(event)
    if owner is None:  # a route deployed without the authorizer: no verified identity
        del event["requestContext"]["authorizer"]
    else:
        event["requestContext"]["authorizer"]["jwt"]["claims"].update(sub=owner, client_id=owner)
    return event


def post(submit, load_event, body: Any, owner: str | None = OWNER_A, headers: dict | None = None) -> dict:
    """POST /photos with ``body`` (JSON-encoded unless a string), without the sample's Idempotency-Key."""
    event = as_caller(load_event("photos_submit.json"), owner)
    event["headers"].pop("idempotency-key")
    event["headers"].update(headers or {})
    event["body"] = body if isinstance(body, str) else json.dumps(body)
    return submit.lambda_handler(event, Context())


def get(status, load_event, photo_id: str, owner: str | None = OWNER_A, headers: dict | None = None,
        query: dict | None = None) -> dict:
    event = as_caller(load_event("photos_status.json"), owner)
    event["pathParameters"]["id"] = photo_id
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/photos/{photo_id}"
    event["queryStringParameters"] = query or {}
    event["headers"].update(headers or {})
    return status.lambda_handler(event, Context())


def record(aws, key: str, **attributes: Any) -> None:
    """The pipeline's record of an upload in the results table (and a person's decision on it)."""
    item = {"bucket": {"S": BUCKET}, "key": {"S": key}, "recorded_at": {"S": "2026-12-04T15:00:01+00:00"},
            "execution_arn": {"S": "arn:aws:states:us-east-1:123456789012:express:classify:exec-1"},
            "uploaded_at": {"S": "2026-12-04T15:00:00Z"}, "sequencer": {"S": "0062E99A88DC407460"}}
    for name, value in attributes.items():
        item[name] = {"N": str(value)} if isinstance(value, (int, float)) else {"S": value}
    aws.put_item(TableName=RESULTS, Item=item)
