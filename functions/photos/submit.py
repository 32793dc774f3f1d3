"""POST /photos: a new photo id and a presigned POST that fixes the upload's key, type and size.

The server chooses the key (``api/<caller>/<id>.<ext>``): no caller-chosen keys, no collisions, and the caller's
identity is in the key, so GET /photos/{id} answers only the caller who asked for it. S3 itself refuses an
upload that breaks the policy (another key, another type, too large, too late), so such a file never reaches
the pipeline. An ``Idempotency-Key`` header makes a retried request (same caller, same key) answer the same
photo while its upload URL is valid (Powertools' idempotency, records in IDEMPOTENCY_TABLE).
"""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer, IdempotencyConfig, idempotent_function)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError, IdempotencyValidationError)
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from photos import (ACCEPTED_TYPES, AWS_CLIENT_CONFIG, ApiError, base_url, caller_of, env_int, env_str, error_response,
                    photo_key)

logger = Logger()
app = APIGatewayHttpResolver()



@dataclass(frozen=True)
class Settings:
    """The function's environment (template.yaml: SubmitPhotoFunction), read and checked once at cold start."""
    intake_bucket: str
    photos_table: str
    idempotency_table: str
    max_image_bytes: int
    upload_url_expiry_seconds: int

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(intake_bucket=env_str("INTAKE_BUCKET"), photos_table=env_str("PHOTOS_TABLE"),
                   idempotency_table=env_str("IDEMPOTENCY_TABLE"),
                   max_image_bytes=env_int("MAX_IMAGE_BYTES", 1, 5 * 1024**3),
                   upload_url_expiry_seconds=env_int("UPLOAD_URL_EXPIRY_SECONDS", 1, 7 * 24 * 3600))


settings = Settings.from_env()
MAX_BODY_BYTES = 1024  # {"content_type": "image/jpeg"} is 30 bytes
MAX_IDEMPOTENCY_KEY = 255
KEEP_PHOTO_SECONDS = 90 * 24 * 3600  # the photo's id stays readable this long (PhotosTable's TTL)

# SigV4: the policy is signed with the role's temporary credentials, which S3 accepts only so.
s3 = boto3.client("s3", config=AWS_CLIENT_CONFIG.merge(Config(signature_version="s3v4")))
dynamodb = boto3.client("dynamodb", config=AWS_CLIENT_CONFIG)
# A repeat with the same key is the same photo only while its upload URL works; after that it is a new photo.
idempotency = IdempotencyConfig(event_key_jmespath="[owner, idempotency_key]",
                                payload_validation_jmespath="content_type",
                                expires_after_seconds=settings.upload_url_expiry_seconds)
persistence = DynamoDBPersistenceLayer(table_name=settings.idempotency_table, boto3_client=dynamodb)


@app.exception_handler(ApiError)
def _api_error(exc: ApiError) -> Response:
    return error_response(exc)


class PhotoRequest(BaseModel):
    """The body of POST /photos (docs/openapi.yaml): nothing but the photo's media type."""

    model_config = ConfigDict(extra="forbid", strict=True)
    content_type: str = Field(min_length=1, max_length=100)


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in error["loc"]) or "the body"
    if error["type"] == "extra_forbidden":
        return f"unknown field {where!r}; the body is {{\"content_type\": ...}}"
    if error["type"] == "json_invalid":
        return "the request body is not valid JSON"
    if error["type"] == "model_type":
        return "the request body must be a JSON object"
    return f"{where}: {error['msg']} (one of {', '.join(ACCEPTED_TYPES)})"


def parse_request(headers: dict[str, str], raw_body: str | None, base64_encoded: bool = False) -> str:
    """The requested content type, or the ApiError that says what is wrong with the request."""
    media_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(415, "UnsupportedMediaType", "send the request body as JSON (Content-Type: application/json)")
    body = raw_body or ""
    if base64_encoded:  # API Gateway encodes a body it does not take for text
        try:
            body = base64.b64decode(body).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "MalformedRequest", "the request body is not UTF-8 JSON") from None
    if len(body.encode()) > MAX_BODY_BYTES:
        raise ApiError(413, "PayloadTooLarge", f"the request body is over {MAX_BODY_BYTES} bytes; "
                       "send {\"content_type\": ...} and upload the photo to the URL this answers with")
    try:
        request = PhotoRequest.model_validate_json(body)
    except ValidationError as exc:
        raise ApiError(400, "MalformedRequest", _first_problem(exc)) from None
    content_type = request.content_type.lower()
    if content_type not in ACCEPTED_TYPES:
        raise ApiError(415, "UnsupportedImageType",
                       f"content_type {request.content_type[:60]!r} is not accepted: one of "
                       + ", ".join(ACCEPTED_TYPES))
    return content_type


def idempotency_key_of(headers: dict[str, str]) -> str | None:
    key = headers.get("idempotency-key")
    if key is None:
        return None
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable() or not key.isascii():
        raise ApiError(400, "MalformedRequest",
                       f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters")
    return key


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def new_photo(request: dict[str, Any]) -> dict[str, Any]:
    """Announce a photo (its item in PHOTOS_TABLE) and sign its upload. JSON-serialisable: idempotency stores it."""
    photo_id = uuid.uuid4().hex
    key = photo_key(request["owner"], photo_id, request["content_type"])
    now = time.time()
    expires = now + settings.upload_url_expiry_seconds
    dynamodb.put_item(TableName=settings.photos_table, ConditionExpression="attribute_not_exists(id)", Item={
        "id": {"S": photo_id}, "owner": {"S": request["owner"]}, "client_id": {"S": request["client_id"]},
        "bucket": {"S": settings.intake_bucket}, "key": {"S": key}, "content_type": {"S": request["content_type"]},
        "created_at": {"S": _iso(now)}, "upload_expires_at": {"S": _iso(expires)},
        "delete_after": {"N": str(int(now + KEEP_PHOTO_SECONDS))}})
    upload = s3.generate_presigned_post(
        Bucket=settings.intake_bucket, Key=key, ExpiresIn=settings.upload_url_expiry_seconds,
        Fields={"Content-Type": request["content_type"]},
        Conditions=[{"Content-Type": request["content_type"]}, ["content-length-range", 1, settings.max_image_bytes]])
    logger.info("photo announced", extra={"photo_id": photo_id, "s3_key": key, "client_id": request["client_id"]})
    return {"id": photo_id, "upload": {"url": upload["url"], "fields": upload["fields"]},
            "expires_at": _iso(expires), "max_bytes": settings.max_image_bytes}


@idempotent_function(data_keyword_argument="request", persistence_store=persistence, config=idempotency)
def new_photo_once(request: dict[str, Any]) -> dict[str, Any]:
    return new_photo(request)


@app.post("/photos")
def submit_photo() -> Response:
    event = app.current_event
    caller = caller_of(event)
    content_type = parse_request(event.headers, event.body, event.is_base64_encoded)
    key = idempotency_key_of(event.headers)
    request = {"owner": caller.owner, "client_id": caller.client_id, "content_type": content_type,
               "idempotency_key": key}
    try:
        photo = new_photo_once(request=request) if key else new_photo(request)
    except IdempotencyValidationError:
        raise ApiError(409, "IdempotencyKeyReused", "this Idempotency-Key was used for a request with another "
                       "content_type; use a new key for a new photo") from None
    except IdempotencyAlreadyInProgressError:
        raise ApiError(409, "RequestInProgress", "a request with this Idempotency-Key is still being answered; "
                       "retry in a moment") from None
    result_url = f"{base_url(event)}/photos/{photo['id']}"
    return Response(status_code=201, content_type=content_types.APPLICATION_JSON,
                    headers={"Location": result_url}, body={**photo, "result_url": result_url})


@app.not_found
def _no_such_route(_: Exception) -> Response:
    return error_response(ApiError(404, "NotFound", "no such route: POST /photos"))


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    idempotency.register_lambda_context(context)
    return app.resolve(event, context)
