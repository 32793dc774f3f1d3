"""GET /photos/{id}: the caller's own photo - ``pending`` until the pipeline's record exists, then its outcome.

Read from the same record the pipeline writes (RESULTS_TABLE), so the API never tells a different story than
the table. Another caller's id, or an unknown one, is a 404 (not a 403: ids are not to be probed). ``ETag`` and
``If-None-Match`` make polling cheap (304); ``?wait=SECONDS`` (at most 20) holds the request until the answer
differs from the ``If-None-Match`` given (or, without one, until the photo is no longer pending).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.utilities.typing import LambdaContext
from boto3.dynamodb.types import TypeDeserializer

from photos import AWS_CLIENT_CONFIG, PHOTO_ID, ApiError, caller_of, env_str, error_response

logger = Logger()
app = APIGatewayHttpResolver()



@dataclass(frozen=True)
class Settings:
    """The function's environment (template.yaml: PhotoStatusFunction), read and checked once at cold start."""
    photos_table: str
    results_table: str

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(photos_table=env_str("PHOTOS_TABLE"), results_table=env_str("RESULTS_TABLE"))


settings = Settings.from_env()
MAX_WAIT_SECONDS = 20
POLL_SECONDS = 0.5
# After the upload URL expired, an upload has had the pipeline's whole time budget (240 s) to be recorded.
EXPIRED_AFTER_SECONDS = 300

dynamodb = boto3.client("dynamodb", config=AWS_CLIENT_CONFIG)
_deserialize = TypeDeserializer().deserialize


@app.exception_handler(ApiError)
def _api_error(exc: ApiError) -> Response:
    return error_response(exc)


def _plain(raw: dict[str, Any]) -> dict[str, Any]:
    item = {k: _deserialize(v) for k, v in raw.items()}
    return {k: float(v) if isinstance(v, Decimal) else v for k, v in item.items()}


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def describe(photo: dict[str, Any], record: dict[str, Any] | None, now: float) -> dict[str, Any]:
    """The photo's state for its owner. ``label`` is the label the driver is routed by: a person's when one
    decided, else the model's (``model_label``, ``confidence``)."""
    answer: dict[str, Any] = {"id": photo["id"], "submitted_at": photo["created_at"]}
    if record is None:
        expired = now > _epoch(photo["upload_expires_at"]) + EXPIRED_AFTER_SECONDS
        return {**answer, "state": "expired" if expired else "pending", "upload_expires_at": photo["upload_expires_at"]}
    outcome = record.get("outcome")
    answer["recorded_at"] = record.get("recorded_at")
    if "label" in record:
        answer.update(model_label=record["label"], confidence=record.get("confidence"))
    human = record.get("human_label")
    if human:
        answer.update(decided_by="person", reviewer=record.get("reviewer"), decided_at=record.get("decided_at"))
    elif outcome in ("classified", "failed"):
        answer["decided_by"] = "model" if outcome == "classified" else "pipeline"
    if outcome == "failed":
        answer.update(state="failed", reason=record.get("reason"))
    elif human == "unusable":
        answer.update(state="failed", reason="RejectedByReviewer")
    elif human:
        answer.update(state="classified", label=human)
    elif outcome == "needs_review":
        answer.update(state="needs_review", reason=record.get("reason"))
    else:
        answer.update(state="classified", label=record.get("label"))
    return {k: v for k, v in answer.items() if v is not None}


def read_photo(photo_id: str, owner: str) -> dict[str, Any]:
    raw = dynamodb.get_item(TableName=settings.photos_table, Key={"id": {"S": photo_id}},
                            ConsistentRead=True).get("Item")
    photo = _plain(raw) if raw else None
    if photo is None or photo.get("owner") != owner:
        raise ApiError(404, "NotFound", f"no photo {photo_id} of yours")
    return photo


def read_state(photo: dict[str, Any]) -> dict[str, Any]:
    raw = dynamodb.get_item(TableName=settings.results_table, ConsistentRead=True,
                            Key={"bucket": {"S": photo["bucket"]}, "key": {"S": photo["key"]}}).get("Item")
    return describe(photo, _plain(raw) if raw else None, time.time())


def etag_of(state: dict[str, Any]) -> str:
    return '"' + hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:32] + '"'


def matches(if_none_match: str | None, etag: str) -> bool:
    """HTTP's If-None-Match: ``*``, or a list of entity tags compared weakly (W/ ignored)."""
    if not if_none_match:
        return False
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return "*" in tags or etag in tags


def wait_seconds_of(query: dict[str, str] | None) -> float:
    raw = (query or {}).get("wait")
    if raw is None:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= MAX_WAIT_SECONDS:
        raise ApiError(400, "MalformedRequest", f"wait must be a number of seconds from 0 to {MAX_WAIT_SECONDS}")
    return value


@app.get("/photos/<photo_id>")
def photo_status(photo_id: str) -> Response:
    event = app.current_event
    caller = caller_of(event)
    if not PHOTO_ID.match(photo_id):
        raise ApiError(404, "NotFound", "no such photo: ids are 32 lower-case hexadecimal characters")
    wait = wait_seconds_of(event.query_string_parameters)
    known = event.headers.get("if-none-match")
    deadline = time.monotonic() + min(wait, max(0.0, app.lambda_context.get_remaining_time_in_millis() / 1000 - 3))
    photo = read_photo(photo_id, caller.owner)  # who may read it and where it is: fixed, read once
    while True:
        state = read_state(photo)
        etag = etag_of(state)
        changed = not matches(known, etag) if known else state["state"] != "pending"
        if changed or time.monotonic() + POLL_SECONDS > deadline:
            break
        time.sleep(POLL_SECONDS)
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    if matches(known, etag):
        return Response(status_code=304, headers=headers, body="")
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, headers=headers, body=state)


@app.not_found
def _no_such_route(_: Exception) -> Response:
    # A path API Gateway routed here that is no photo id Powertools can match (e.g. one with a backslash).
    return error_response(ApiError(404, "NotFound", "no such photo: ids are 32 lower-case hexadecimal characters"))


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
