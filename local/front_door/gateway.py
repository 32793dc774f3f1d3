"""The HTTP API's data plane on the twin: what API Gateway does between a caller and a Lambda proxy integration.

The API itself - routes, integrations, JWT authorizers, the stage's throttling and access-log format - is what
moto's apigatewayv2 holds, created there from template.yaml (local/deploy.py), so ``aws apigatewayv2 get-routes``
shows it and ``update-authorizer`` changes it at once. Per request, as the API Gateway developer guide describes:
match the route (exact path before a path variable, ``$default`` last), answer CORS preflights, throttle (a token
bucket per route, the route's settings or the stage's default), authorize (local.front_door.authorizer), invoke
the function with a payload format 2.0 event and map its answer, and write one access-log line in the stage's
format. Errors are API Gateway's own: 404 ``{"message":"Not Found"}``, 401, 403, 429, 413, 500, 503.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from werkzeug.wrappers import Request, Response

from local.front_door.authorizer import (Forbidden, JwksCache, JwtConfiguration, Unauthorized, authorize,
                                         claims_as_strings)
from local.lambda_runtime import LambdaRuntime

log = logging.getLogger("twin.api")

MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # HTTP API's request payload quota
INTEGRATION_TIMEOUT_S = 30.0  # HTTP API's maximum integration timeout
CONFIG_TTL_S = 1.0  # re-read the API from apigatewayv2 at most this often (updates show within a second)
TEXT_TYPES = re.compile(r"^(text/|application/(json|xml|x-www-form-urlencoded|javascript)|[^;]*\+json)")


@dataclass
class Route:
    key: str  # "POST /photos"
    method: str
    pattern: re.Pattern[str] | None  # None for $default
    literal_segments: int
    function_arn: str
    authorizer: JwtConfiguration | None
    scopes: list[str]


@dataclass
class ApiConfig:
    routes: list[Route]
    throttles: dict[str, tuple[float, int]]  # route key (or "$default-route") -> (rate, burst)
    cors: dict[str, Any] | None
    log_format: str | None


class TokenBucket:
    """API Gateway's throttling: ``burst`` requests at once, refilled at ``rate`` a second."""

    def __init__(self, rate: float, burst: int):
        self.rate, self.burst = rate, burst
        self._tokens, self._at = float(burst), time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


def _route_pattern(path: str) -> tuple[re.Pattern[str], int]:
    parts, literal = [], 0
    for segment in path.strip("/").split("/"):
        greedy = re.fullmatch(r"\{(\w+)\+\}", segment)
        variable = re.fullmatch(r"\{(\w+)\}", segment)
        if greedy:
            parts.append(f"(?P<{greedy.group(1)}>.+)")
        elif variable:
            parts.append(f"(?P<{variable.group(1)}>[^/]+)")
        else:
            parts.append(re.escape(segment))
            literal += 1
    return re.compile("^/" + "/".join(parts) + "$"), literal


def load_api(apigw, api_id: str, stage: str = "$default") -> ApiConfig:
    """The API as apigatewayv2 holds it."""
    found = apigw.get_routes(ApiId=api_id)["Items"]
    authorizers = {}
    for authorizer_id in {r["AuthorizerId"] for r in found if r.get("AuthorizationType") == "JWT"}:
        a = apigw.get_authorizer(ApiId=api_id, AuthorizerId=authorizer_id)
        authorizers[authorizer_id] = JwtConfiguration(a["JwtConfiguration"]["Issuer"],
                                                      tuple(a["JwtConfiguration"].get("Audience", [])))
    integrations = {i["IntegrationId"]: i["IntegrationUri"] for i in apigw.get_integrations(ApiId=api_id)["Items"]}
    routes = []
    for r in found:
        integration = integrations.get(r.get("Target", "").removeprefix("integrations/"))
        if not integration:
            continue
        function_arn = re.sub(r"^arn:[^:]+:apigateway:[^:]+:lambda:path/[^/]+/functions/(.+)/invocations$", r"\1",
                              integration)
        method, _, path = r["RouteKey"].partition(" ")
        pattern, literal = _route_pattern(path) if r["RouteKey"] != "$default" else (None, -1)
        routes.append(Route(r["RouteKey"], method, pattern, literal, function_arn,
                            authorizers.get(r.get("AuthorizerId")) if r.get("AuthorizationType") == "JWT" else None,
                            list(r.get("AuthorizationScopes") or [])))
    # Most specific first: more literal segments, then no greedy variable; $default last.
    routes.sort(key=lambda r: (-r.literal_segments, "+}" in r.key))
    stages = {s["StageName"]: s for s in apigw.get_stages(ApiId=api_id)["Items"]}
    settings = stages.get(stage, {})
    default = settings.get("DefaultRouteSettings", {})
    throttles = {"$default-route": (float(default.get("ThrottlingRateLimit", 10000)),
                                    int(default.get("ThrottlingBurstLimit", 5000)))}
    for key, route_settings in (settings.get("RouteSettings") or {}).items():
        throttles[key] = (float(route_settings.get("ThrottlingRateLimit", throttles["$default-route"][0])),
                          int(route_settings.get("ThrottlingBurstLimit", throttles["$default-route"][1])))
    cors = apigw.get_api(ApiId=api_id).get("CorsConfiguration")
    return ApiConfig(routes, throttles, cors or None, (settings.get("AccessLogSettings") or {}).get("Format"))


def _json_error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps({"message": message}), status, headers=headers or {}, content_type="application/json")


@dataclass
class Gateway:
    """A WSGI app serving one HTTP API's ``$default`` stage."""

    apigw: Any
    api_id: str
    runtime: LambdaRuntime
    jwks: JwksCache
    account_id: str
    on_access_log: Callable[[str], None] = log.info
    _config: ApiConfig | None = None
    _config_at: float = 0.0
    _buckets: dict[tuple[str, float, int], TokenBucket] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def config(self) -> ApiConfig:
        with self._lock:
            if self._config is None or time.monotonic() - self._config_at > CONFIG_TTL_S:
                self._config, self._config_at = load_api(self.apigw, self.api_id), time.monotonic()
            return self._config

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        started = time.time()
        context = {"requestId": base64.b32encode(uuid.uuid4().bytes[:10]).decode().rstrip("=")[:16],
                   "requestTime": datetime.now(timezone.utc).strftime("%d/%b/%Y:%H:%M:%S +0000"),
                   "identity.sourceIp": request.remote_addr or "", "httpMethod": request.method,
                   "path": request.path, "protocol": request.environ.get("SERVER_PROTOCOL", "HTTP/1.1")}
        response = self._answer(request, context)
        context.update(status=str(response.status_code), responseLatency=str(int((time.time() - started) * 1000)),
                       responseLength=str(response.calculate_content_length() or 0))
        self._access_log(context)
        return response(environ, start_response)

    def _answer(self, request: Request, context: dict[str, str]) -> Response:
        config = self.config()
        origin = request.headers.get("Origin")
        cors = config.cors if origin and config.cors and self._origin_allowed(config.cors, origin) else None
        if request.method == "OPTIONS" and config.cors and request.headers.get("Access-Control-Request-Method"):
            # API Gateway answers a CORS preflight itself, before routes and authorizers.
            return self._preflight(config.cors, cors, origin)
        response = self._routed(request, config, context)
        if cors:
            response.headers["Access-Control-Allow-Origin"] = origin
            if cors.get("ExposeHeaders"):
                response.headers["Access-Control-Expose-Headers"] = ",".join(cors["ExposeHeaders"])
        return response

    def _routed(self, request: Request, config: ApiConfig, context: dict[str, str]) -> Response:
        route, parameters = self._match(config, request.method, request.path)
        if route is None:
            context["routeKey"] = "-"
            return _json_error(404, "Not Found")
        context["routeKey"] = route.key
        rate, burst = config.throttles.get(route.key, config.throttles["$default-route"])
        with self._lock:
            bucket = self._buckets.setdefault((route.key, rate, burst), TokenBucket(rate, burst))
        if not bucket.take():
            return _json_error(429, "Too Many Requests")
        authorizer: dict[str, Any] | None = None
        if route.authorizer:
            try:
                claims, scopes = authorize(request.headers.get("Authorization"), route.authorizer, route.scopes,
                                           self.jwks)
            except Unauthorized as exc:
                context["authorizer.error"] = str(exc)
                challenge = ('Bearer' if str(exc) == "no token"
                             else f'Bearer error="invalid_token" error_description="{exc}"')
                return _json_error(401, "Unauthorized", {"www-authenticate": challenge})
            except Forbidden as exc:
                context["authorizer.error"] = str(exc)
                return _json_error(403, "Forbidden", {"www-authenticate": 'Bearer error="insufficient_scope"'})
            authorizer = {"jwt": {"claims": claims_as_strings(claims), "scopes": scopes}}
            context.update({f"authorizer.claims.{k}": v for k, v in authorizer["jwt"]["claims"].items()})
        body = request.get_data(cache=True)
        if len(body) > MAX_PAYLOAD_BYTES:
            return _json_error(413, "Request Entity Too Large")
        return self._integrate(request, route, parameters, authorizer, body, context)

    @staticmethod
    def _match(config: ApiConfig, method: str, path: str) -> tuple[Route | None, dict[str, str]]:
        fallback = None
        for route in config.routes:
            if route.pattern is None:
                fallback = route
                continue
            if route.method not in (method, "ANY"):
                continue
            match = route.pattern.match(path)
            if match:
                return route, match.groupdict()
        return fallback, {}

    def _integrate(self, request: Request, route: Route, parameters: dict[str, str], authorizer: dict[str, Any] | None,
                   body: bytes, context: dict[str, str]) -> Response:
        pool = self.runtime.find(route.function_arn)
        if pool is None:
            context["integrationErrorMessage"] = f"no function {route.function_arn}"
            return _json_error(500, "Internal Server Error")
        event = self.event(request, route, parameters, authorizer, body, context)
        invocation = pool.invoke(event)
        if invocation.function_error:
            context["integrationErrorMessage"] = str(invocation.payload.get("errorType", "Unhandled"))[:200]
            if invocation.duration_ms > INTEGRATION_TIMEOUT_S * 1000:  # past API Gateway's own wait
                return _json_error(503, "Service Unavailable")
            return _json_error(500, "Internal Server Error")
        return self.response(invocation.payload)

    def event(self, request: Request, route: Route, parameters: dict[str, str], authorizer: dict[str, Any] | None,
              body: bytes, context: dict[str, str]) -> dict[str, Any]:
        """The payload format 2.0 event API Gateway sends a Lambda proxy integration."""
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            name = name.lower()
            if name == "cookie":
                continue
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        headers.setdefault("x-forwarded-proto", request.scheme)
        headers.setdefault("x-forwarded-for", request.remote_addr or "")
        query = {k: ",".join(request.args.getlist(k)) for k in request.args}
        text = not body or TEXT_TYPES.match(request.mimetype or "") is not None
        if text and body:
            try:  # a text body that is not UTF-8 travels base64-encoded, as any binary one
                body.decode()
            except UnicodeDecodeError:
                text = False
        now = time.time()
        event: dict[str, Any] = {
            "version": "2.0", "routeKey": route.key, "rawPath": request.path,
            "rawQueryString": request.query_string.decode(), "headers": headers,
            "requestContext": {
                "accountId": self.account_id, "apiId": self.api_id, "domainName": request.host,
                "domainPrefix": request.host.split(".")[0], "requestId": context["requestId"], "routeKey": route.key,
                "stage": "$default", "time": context["requestTime"], "timeEpoch": int(now * 1000),
                "http": {"method": request.method, "path": request.path, "protocol": context["protocol"],
                         "sourceIp": request.remote_addr or "", "userAgent": request.headers.get("User-Agent", "")},
            },
            "isBase64Encoded": not text,
        }
        cookies = [c.strip() for c in request.headers.get("Cookie", "").split(";") if c.strip()]
        if cookies:
            event["cookies"] = cookies
        if query:
            event["queryStringParameters"] = query
        if parameters:
            event["pathParameters"] = parameters
        if authorizer:
            event["requestContext"]["authorizer"] = authorizer
        if body:
            event["body"] = body.decode() if text else base64.b64encode(body).decode()
        return event

    @staticmethod
    def response(payload: Any) -> Response:
        """A payload format 2.0 answer: a dict with statusCode as given; anything else is a 200 JSON body."""
        if not isinstance(payload, dict) or "statusCode" not in payload:
            return Response(json.dumps(payload), 200, content_type="application/json")
        body = payload.get("body") or ""
        data = base64.b64decode(body) if payload.get("isBase64Encoded") else body.encode()
        response = Response(data, int(payload["statusCode"]))
        response.headers.pop("Content-Type", None)
        for name, value in (payload.get("headers") or {}).items():
            response.headers[name] = str(value)
        for name, values in (payload.get("multiValueHeaders") or {}).items():
            for value in values:
                response.headers.add(name, str(value))
        for cookie in payload.get("cookies") or []:
            response.headers.add("Set-Cookie", cookie)
        return response

    @staticmethod
    def _origin_allowed(cors: dict[str, Any], origin: str) -> bool:
        allowed = cors.get("AllowOrigins") or []
        return "*" in allowed or origin in allowed

    @staticmethod
    def _preflight(config: dict[str, Any], cors: dict[str, Any] | None, origin: str | None) -> Response:
        response = Response(b"", 204)
        if cors and origin:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Methods"] = ",".join(config.get("AllowMethods") or [])
            response.headers["Access-Control-Allow-Headers"] = ",".join(config.get("AllowHeaders") or [])
            if config.get("MaxAge"):
                response.headers["Access-Control-Max-Age"] = str(config["MaxAge"])
        return response

    def _access_log(self, context: dict[str, str]) -> None:
        config = self._config
        if not config or not config.log_format:
            return
        line = re.sub(r"\$context\.([\w.]+)", lambda m: context.get(m.group(1), "-").replace('"', '\\"'),
                      config.log_format)
        self.on_access_log(line)
