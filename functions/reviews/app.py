"""The review page and the review API, on the stack's HTTP API (docs/review.md).

    GET  /review              the page (public: HTML, script and style; sign-in happens in the browser)
    GET  /review/<asset>      review.js, review.css
    GET  /reviews             the photos leased to the signed-in reviewer (JWT, scope reviews.decide)
    POST /reviews/<id>        {"label": ...}: the reviewer's decision

The reviewer is the verified token's user name, never a field of the request; only members of the
reviewers group may list or decide (403 otherwise). API Gateway's JWT authorizer has checked the token's
signature, issuer, expiry, client and scope before this function runs.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from jinja2 import Environment, FileSystemLoader, select_autoescape

from decisions import UNUSABLE, DecisionError, Reviewer
from desk import ReviewDesk
from ground_truth import GroundTruth
from leases import Leases
from previews import Previews
from waiting import visible

ASSETS = Path(__file__).parent / "assets"
STATIC = {"review.js": "text/javascript; charset=utf-8", "review.css": "text/css; charset=utf-8"}
MAX_BODY_BYTES = 1024  # {"label": "motorcycle"} is 23 bytes
PHOTO_ID = re.compile(r"^[0-9a-f]{32}$")  # waiting.image_id
# The page's calls wait for a person: a few quick attempts, never a long hang.
AWS_CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=5)


class ConfigurationError(Exception):
    """An environment variable is missing or out of range; raised at cold start."""


@dataclass(frozen=True)
class Settings:
    """The function's environment (template.yaml, ReviewsFunction), read and checked once at cold start."""
    results_table: str
    leases_table: str
    review_queue_url: str
    intake_bucket: str
    ground_truth_bucket: str
    previews_bucket: str
    auth_url: str  # the user pool's domain: managed login, token and logout endpoints
    client_id: str  # the review page's app client
    scope: str  # what the page asks for: the route's scope
    reviewers_group: str
    labels: tuple[str, ...]  # the template's ClassNames, and "unusable"
    lease_seconds: int
    preview_url_seconds: int
    max_image_bytes: int

    @classmethod
    def from_env(cls, env: dict[str, str] | os._Environ = os.environ) -> "Settings":
        def text(name: str) -> str:
            if not env.get(name):
                raise ConfigurationError(f"{name} is not set")
            return env[name]

        def number(name: str, low: int, high: int) -> int:
            try:
                value = int(text(name))
            except ValueError:
                raise ConfigurationError(f"{name}={env[name]!r} is not a whole number") from None
            if not low <= value <= high:
                raise ConfigurationError(f"{name}={value} is outside [{low}, {high}]")
            return value

        return cls(results_table=text("RESULTS_TABLE"), leases_table=text("LEASES_TABLE"),
                   review_queue_url=text("REVIEW_QUEUE_URL"), intake_bucket=text("INTAKE_BUCKET"),
                   ground_truth_bucket=text("GROUND_TRUTH_BUCKET"), previews_bucket=text("PREVIEWS_BUCKET"),
                   auth_url=text("AUTH_URL").rstrip("/"), client_id=text("REVIEW_CLIENT_ID"),
                   scope=text("REVIEW_SCOPE"), reviewers_group=text("REVIEWERS_GROUP"),
                   labels=(*text("CLASS_NAMES").split(","), UNUSABLE),
                   lease_seconds=number("LEASE_SECONDS", 30, 43_200),
                   preview_url_seconds=number("PREVIEW_URL_SECONDS", 60, 3_600),
                   max_image_bytes=number("MAX_IMAGE_BYTES", 1, 100 * 1024 * 1024))


class ApiError(Exception):
    """An answer other than success: its status, a stable error name and a message for the reviewer."""

    def __init__(self, status: int, error: str, message: str):
        super().__init__(message)
        self.status, self.error, self.message = status, error, message


settings = Settings.from_env()
logger = Logger(service="vehicle-classifier")
_clients = {name: boto3.client(name, config=AWS_CLIENT_CONFIG)
            for name in ("sqs", "dynamodb", "events")}
# Presigned preview URLs: SigV4 on the bucket's regional virtual host (botocore's default host is the global one,
# which a new bucket outside us-east-1 answers with a redirect); an endpoint override (the twin) stays path-style.
_s3 = boto3.client("s3", config=AWS_CLIENT_CONFIG.merge(Config(signature_version="s3v4",
                                                                s3={"addressing_style": "virtual"})))
previews = Previews(_s3, settings.previews_bucket, settings.preview_url_seconds, settings.max_image_bytes)
desk = ReviewDesk(
    Leases(_clients["sqs"], _clients["dynamodb"], settings.review_queue_url, settings.leases_table,
           settings.lease_seconds),
    Reviewer(_clients["dynamodb"], _clients["events"], settings.results_table,
             GroundTruth(_s3, settings.ground_truth_bucket)),
    previews, settings.intake_bucket)
_pages = Environment(loader=FileSystemLoader(ASSETS), autoescape=select_autoescape(["html"]))
PAGE_POLICY = "; ".join([
    "default-src 'none'", "script-src 'self'", "style-src 'self'",
    f"img-src {previews.origin()}", f"connect-src 'self' {settings.auth_url}",
    "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'"])
HARDENING = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}

app = APIGatewayHttpResolver()


def _error(status: int, error: str, message: str) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, headers=dict(HARDENING),
                    body=json.dumps({"error": error, "message": message}))


@app.exception_handler(ApiError)
def _api_error(exc: ApiError) -> Response:
    return _error(exc.status, exc.error, exc.message)


@app.exception_handler(DecisionError)
def _refused(exc: DecisionError) -> Response:
    names = {400: "BadRequest", 409: "Conflict", 503: "TryAgain"}
    return _error(exc.status, names.get(exc.status, "Refused"), str(exc))


@app.exception_handler(ClientError)
@app.exception_handler(BotoCoreError)
def _aws_failed(exc: Exception) -> Response:
    # The reviewer learns that something behind the API failed, never which endpoint or what it said.
    logger.exception("an AWS call failed", extra={"error": visible(str(exc))})
    return _error(502, "BadGateway", "a service the review API depends on failed; try again in a moment")


@app.not_found
def _no_such_route(_: Exception) -> Response:
    return _error(404, "NotFound", "no such page or photo")


@app.get("/review")
def page() -> Response:
    html = _pages.get_template("review.html").render(auth_url=settings.auth_url, client_id=settings.client_id,
                                                      scope=settings.scope, unusable=UNUSABLE)
    return Response(status_code=200, content_type="text/html; charset=utf-8", body=html,
                    headers={**HARDENING, "Content-Security-Policy": PAGE_POLICY})


@app.get("/review/<asset>")
def asset(asset: str) -> Response:
    if asset not in STATIC:
        raise ApiError(404, "NotFound", "no such page or photo")
    return Response(status_code=200, content_type=STATIC[asset], body=(ASSETS / asset).read_text(),
                    headers={**HARDENING, "Cache-Control": "no-cache"})


@app.get("/reviews")
def waiting() -> Response:
    reviewer = _reviewer()
    now = time.time()
    items = desk.list_for(reviewer)
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, headers=dict(HARDENING),
                    body=json.dumps({"reviewer": visible(reviewer), "items": [i.as_json(now) for i in items],
                                     "waiting": desk.waiting()}))


@app.post("/reviews/<image_id>")
def decide(image_id: str) -> Response:
    reviewer = _reviewer()
    if not PHOTO_ID.match(image_id):
        raise ApiError(404, "NotFound", "no such page or photo")
    label = _label(app.current_event)
    decision = desk.decide(reviewer, image_id, label)
    logger.info("decided", extra={"reviewer": visible(reviewer), "key": visible(decision.image.key),
                                  "label": label, "model_label": decision.image.label, "outcome": decision.outcome})
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, headers=dict(HARDENING),
                    body=json.dumps({"id": image_id, "key": visible(decision.image.key), "outcome": decision.outcome,
                                     "human_label": decision.human_label, "reviewer": visible(reviewer),
                                     "agrees": decision.agrees, "decided_at": decision.decided_at}))


def _reviewer() -> str:
    """The signed-in reviewer's user name, from the claims API Gateway verified; 403 outside the group."""
    authorizer = app.current_event.request_context.authorizer
    claims = (authorizer.jwt_claim if authorizer else None) or {}
    name = str(claims.get("username") or claims.get("sub") or "")
    if not name:  # only a route deployed without the authorizer gets here
        raise ApiError(401, "Unauthorized", "the request carries no verified identity: sign in")
    if settings.reviewers_group not in groups(claims.get("cognito:groups")):
        raise ApiError(403, "Forbidden", f"{visible(name)} is signed in but not a reviewer: an operations lead "
                                         f"adds reviewers to the {settings.reviewers_group} group")
    return name


def groups(claim: Any) -> list[str]:
    """The cognito:groups claim: API Gateway passes a list claim as the string "[a b]" (payload 2.0). Group names
    hold no spaces but may hold other punctuation, so only whitespace separates them."""
    if isinstance(claim, list):
        return [str(g) for g in claim]
    text = str(claim or "").strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    return text.split()


def _label(event) -> str:
    if len(event.body or "") > MAX_BODY_BYTES * 4 // 3 + 4:  # checked before decoding (base64 is 4/3 larger)
        raise ApiError(400, "BadRequest", f"the body is over {MAX_BODY_BYTES} bytes; send {{\"label\": ...}}")
    try:
        body = event.decoded_body or ""
    except (UnicodeDecodeError, ValueError):  # base64 of bytes that are not UTF-8
        raise ApiError(400, "BadRequest", 'the body is not UTF-8 JSON; send {"label": ...}') from None
    if len(body.encode()) > MAX_BODY_BYTES:
        raise ApiError(400, "BadRequest", f"the body is over {MAX_BODY_BYTES} bytes; send {{\"label\": ...}}")
    try:
        parsed = json.loads(body)
    except ValueError:
        raise ApiError(400, "BadRequest", 'the body is not JSON; send {"label": ...}') from None
    if not isinstance(parsed, dict):
        raise ApiError(400, "BadRequest", 'the body must be a JSON object: {"label": ...}')
    label = parsed.get("label")
    if label not in settings.labels:
        raise ApiError(400, "BadRequest", f"label must be one of {', '.join(settings.labels)}")
    return label


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
