"""What both photo routes share: who the caller is, where a photo lives, the JSON error answer, settings.

The two handlers (submit.py for POST /photos, status.py for GET /photos/{id}) are separate functions with their
own least-privilege roles; this module is packaged with each.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from botocore.config import Config

# The image types the pipeline reads (functions/serialize recognises them by their bytes), by media type.
ACCEPTED_TYPES = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif",
                  "image/heic": ".heic", "image/heif": ".heif", "image/avif": ".avif"}
UPLOAD_PREFIX = "api/"
PHOTO_ID = re.compile(r"^[0-9a-f]{32}$")
# Both routes answer a caller who waits: a few quick attempts, never a long hang on one call.
AWS_CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=3)


class ConfigurationError(Exception):
    """An environment variable is missing or out of range; raised at cold start."""


class ApiError(Exception):
    """An answer other than success: its HTTP status, a stable error name and a message for the caller."""

    def __init__(self, status: int, error: str, message: str):
        super().__init__(message)
        self.status, self.error, self.message = status, error, message


def error_response(exc: ApiError) -> Response:
    return Response(status_code=exc.status, content_type=content_types.APPLICATION_JSON,
                    body={"error": exc.error, "message": exc.message})


@dataclass(frozen=True)
class Caller:
    """The verified identity API Gateway's JWT authorizer passed on: ``owner`` is the token's subject (a user's
    sub, or for the client-credentials grant the app client's id), ``client_id`` the app client it came through."""

    owner: str
    client_id: str


def caller_of(event: APIGatewayProxyEventV2) -> Caller:
    claims = ((event.request_context.authorizer.jwt_claim if event.request_context.authorizer else None) or {})
    owner, client_id = claims.get("sub"), claims.get("client_id") or claims.get("aud")
    if not owner or not client_id:
        # Only a route deployed without the authorizer gets here: a configuration fault, not the caller's.
        raise ApiError(401, "Unauthorized", "the request carries no verified identity")
    return Caller(owner=str(owner), client_id=str(client_id))


def photo_key(owner: str, photo_id: str, content_type: str) -> str:
    """The intake key of an API photo: chosen by the server, under the caller's own prefix, never colliding."""
    return f"{UPLOAD_PREFIX}{owner}/{photo_id}{ACCEPTED_TYPES[content_type]}"


def env_str(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise ConfigurationError(f"{name} is not set")
    return value


def env_int(name: str, low: int, high: int) -> int:
    raw = env_str(name)
    try:
        value = int(float(raw))
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a number") from None
    if not low <= value <= high:
        raise ConfigurationError(f"{name}={raw!r} is outside [{low}, {high}]")
    return value


def base_url(event: APIGatewayProxyEventV2) -> str:
    """The API's own address as the caller reached it (API Gateway sets X-Forwarded-Proto)."""
    scheme = event.headers.get("x-forwarded-proto", "https")
    return f"{scheme}://{event.request_context.domain_name}"

