"""docs/openapi.yaml is the front door as deployed: the handlers (functions/photos) answer what it documents, for
every state and every error they have, and its routes are the HTTP API's routes in template.yaml, scope for scope.

The handlers are driven as in test_photos_handlers.py (payload format 2.0 events from events/, moto's S3 and
DynamoDB); each answer's body is validated with jsonschema against the document's schema for its route and status,
and each header the document declares is checked."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from local.template import Stack
from photo_requests import OWNER_B, PHOTOS, get, post
from photo_requests import record as put_record

REPO = Path(__file__).resolve().parents[3]
OPENAPI = REPO / "docs" / "openapi.yaml"
SUBMIT, STATUS = ("post", "/photos"), ("get", "/photos/{id}")


# ------------------------------------------------------------------ the document
@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    return yaml.safe_load(OPENAPI.read_text(encoding="utf-8"))


def _resolve(node: Any, root: dict[str, Any]) -> Any:
    """``node`` with every local $ref replaced by what it points at (the document has no recursive schemas)."""
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = root
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            return _resolve(target, root)
        return {key: _resolve(value, root) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve(item, root) for item in node]
    return node


def _response(openapi: dict[str, Any], route: tuple[str, str], status: int) -> dict[str, Any]:
    method, path = route
    responses = openapi["paths"][path][method]["responses"]
    assert str(status) in responses, f"{method.upper()} {path} answered {status}: not in docs/openapi.yaml"
    return _resolve(responses[str(status)], openapi)


def _validate(instance: Any, schema: dict[str, Any]) -> None:
    jsonschema.validate(instance, schema, cls=jsonschema.Draft4Validator,
                        format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)


def check_answer(openapi: dict[str, Any], route: tuple[str, str], answer: dict[str, Any]) -> tuple[int, Any, dict]:
    """The handler's answer holds to the document: its status is documented for the route, its body validates
    against that status's schema (or it has none when none is documented), with the documented media type, and
    every documented header is there (when required) with a valid value."""
    status = answer["statusCode"]
    documented = _response(openapi, route, status)
    headers = {name.lower(): value for name, value in (answer.get("headers") or {}).items()}
    raw = answer.get("body") or ""
    if "content" in documented:
        ((media_type, content),) = documented["content"].items()
        assert headers.get("content-type", "").split(";")[0] == media_type
        body = json.loads(raw)
        _validate(body, content["schema"])
    else:
        assert raw == "", f"{status} has no body in docs/openapi.yaml, the handler answered {raw!r}"
        body = None
    for name, header in documented.get("headers", {}).items():
        value = headers.get(name.lower())
        if header.get("required"):
            assert value is not None, f"{status} lacks the documented header {name}"
        if value is not None:
            _validate(value, header["schema"])
    return status, body, headers


# ------------------------------------------------------------ the handlers (tests/unit/functions/photo_requests.py)
def _new_photo(submit, load_event) -> dict:
    answer = post(submit, load_event, {"content_type": "image/png"})
    assert answer["statusCode"] == 201, answer
    return json.loads(answer["body"])


# ------------------------------------------------------------------ the document; POST /photos
def test_the_document_is_openapi_3_0_3_and_every_body_is_a_component_schema(openapi):
    import openapi_spec_validator as validator  # requirements-dev.txt
    assert openapi["openapi"] == "3.0.3"
    validator.validate(openapi)
    bodies = [(f"{method.upper()} {path} {status}", content["schema"])
              for path, methods in openapi["paths"].items() for method, operation in methods.items()
              for status, response in operation["responses"].items()
              for content in response.get("content", {}).values()]
    bodies += [(f"responses/{name}", content["schema"]) for name, response in openapi["components"]["responses"].items()
               for content in response.get("content", {}).values()]
    assert bodies
    for where, schema in bodies:
        assert "#/components/schemas/" in json.dumps(schema), f"{where}: the body's schema is not a component schema"


def test_the_request_body_accepts_exactly_the_handlers_types(openapi, submit):
    body = openapi["paths"]["/photos"]["post"]["requestBody"]
    schema = _resolve(body["content"]["application/json"]["schema"], openapi)
    assert schema["properties"]["content_type"]["enum"] == list(submit.ACCEPTED_TYPES)
    assert schema["required"] == ["content_type"] and schema["additionalProperties"] is False
    _validate({"content_type": "image/webp"}, schema)
    for refused in ({}, {"content_type": "image/svg+xml"}, {"content_type": "image/png", "key": "mine.png"}):
        with pytest.raises(jsonschema.ValidationError):
            _validate(refused, schema)


def test_a_new_photo_is_the_documented_201_with_its_location(openapi, submit, load_event):
    answer = post(submit, load_event, {"content_type": "image/jpeg"}, headers={"idempotency-key": "shift-7-photo-1"})
    code, photo, headers = check_answer(openapi, SUBMIT, answer)
    assert code == 201
    assert headers["location"] == photo["result_url"] == f"http://127.0.0.1:4593/photos/{photo['id']}"
    assert photo["max_bytes"] == 1000 and photo["upload"]["fields"]["Content-Type"] == "image/jpeg"
    again = post(submit, load_event, {"content_type": "image/jpeg"}, headers={"idempotency-key": "shift-7-photo-1"})
    assert check_answer(openapi, SUBMIT, again)[1] == photo  # the documented repeat: the same photo


# ------------------------------------------------------------------ GET /photos/{id}: every state, 304
MODEL = {"label": "motorcycle", "confidence": 0.6, "probabilities": '{"bicycle": 0.4, "motorcycle": 0.6}'}
PERSON = {"reviewer": "ana", "decided_at": "2026-12-04T15:05:00Z", "decided_by": "person", "waited_seconds": 299.5}
STATES = {  # case: (the results table's record or None, the state GET answers, who decided)
    "pending": (None, "pending", None),
    "expired": (None, "expired", None),
    "classified by the model": ({**MODEL, "outcome": "classified", "label": "bicycle", "confidence": 0.99,
                                 "classes": "bicycle,motorcycle", "threshold": 0.93}, "classified", "model"),
    "classified by a person": ({**MODEL, **PERSON, "outcome": "reviewed", "reason": "LowConfidenceError",
                                "human_label": "bicycle"}, "classified", "person"),
    "audited by a person": ({**MODEL, **PERSON, "outcome": "classified", "human_label": "motorcycle"}, "classified",
                            "person"),
    "needs review": ({**MODEL, "outcome": "needs_review", "reason": "LowConfidenceError"}, "needs_review", None),
    "failed in the pipeline": ({"outcome": "failed", "reason": "CorruptImageError",
                                "error_detail": "cannot identify image file"}, "failed", "pipeline"),
    "rejected by a person": ({**MODEL, **PERSON, "outcome": "rejected", "reason": "LowConfidenceError",
                              "human_label": "unusable"}, "failed", "person"),
}


@pytest.mark.parametrize("case", STATES)
def test_each_state_is_the_documented_200_with_its_etag(openapi, submit, status, aws, load_event, case):
    record, expected, decided_by = STATES[case]
    photo = _new_photo(submit, load_event)
    if record is not None:
        put_record(aws, photo["upload"]["fields"]["key"], **record)
    if case == "expired":  # never uploaded: the upload URL expired long ago
        aws.update_item(TableName=PHOTOS, Key={"id": {"S": photo["id"]}}, UpdateExpression="SET upload_expires_at = :t",
                        ExpressionAttributeValues={":t": {"S": "2026-01-01T00:00:00Z"}})
    code, state, headers = check_answer(openapi, STATUS, get(status, load_event, photo["id"]))
    assert (code, state["state"], state["id"], state.get("decided_by")) == (200, expected, photo["id"], decided_by)
    assert headers["etag"] and headers["cache-control"]


def test_the_same_state_again_is_the_documented_304(openapi, submit, status, aws, load_event):
    photo = _new_photo(submit, load_event)
    _, _, headers = check_answer(openapi, STATUS, get(status, load_event, photo["id"]))
    code, body, again = check_answer(openapi, STATUS, get(status, load_event, photo["id"],
                                                          headers={"if-none-match": headers["etag"]}))
    assert (code, body, again["etag"]) == (304, None, headers["etag"])
    put_record(aws, photo["upload"]["fields"]["key"], outcome="classified", label="bicycle", confidence=0.99)
    code, state, changed = check_answer(openapi, STATUS, get(status, load_event, photo["id"],
                                                             headers={"if-none-match": headers["etag"]}))
    assert (code, state["state"]) == (200, "classified") and changed["etag"] != headers["etag"]


# ------------------------------------------------------------------ every error the handlers answer
def _reused_key(submit, load_event) -> dict:
    post(submit, load_event, {"content_type": "image/png"}, headers={"idempotency-key": "k-1"})
    return post(submit, load_event, {"content_type": "image/jpeg"}, headers={"idempotency-key": "k-1"})


def _in_progress(submit, load_event, monkeypatch) -> dict:
    def still_answering(request):
        raise submit.IdempotencyAlreadyInProgressError("a request with this key is in progress")

    monkeypatch.setattr(submit, "new_photo_once", still_answering)
    return post(submit, load_event, {"content_type": "image/png"}, headers={"idempotency-key": "k-2"})


def _someone_elses(submit, status, load_event) -> dict:
    photo = _new_photo(submit, load_event)
    return get(status, load_event, photo["id"], owner=OWNER_B)


ERRORS = {
    # name: (route, status, error, how)
    "body not JSON": (SUBMIT, 400, "MalformedRequest", lambda s, g, e, m: post(s, e, "not json")),
    "unknown field": (SUBMIT, 400, "MalformedRequest",
                      lambda s, g, e, m: post(s, e, {"content_type": "image/png", "key": "mine.png"})),
    "bad Idempotency-Key": (SUBMIT, 400, "MalformedRequest",
                            lambda s, g, e, m: post(s, e, {"content_type": "image/png"},
                                                    headers={"idempotency-key": "k" * 256})),
    "POST without identity": (SUBMIT, 401, "Unauthorized",
                              lambda s, g, e, m: post(s, e, {"content_type": "image/png"}, owner=None)),
    "key reused for another type": (SUBMIT, 409, "IdempotencyKeyReused", lambda s, g, e, m: _reused_key(s, e)),
    "key still in progress": (SUBMIT, 409, "RequestInProgress", lambda s, g, e, m: _in_progress(s, e, m)),
    "body over 1024 bytes": (SUBMIT, 413, "PayloadTooLarge",
                             lambda s, g, e, m: post(s, e, {"content_type": "image/png", "pad": "x" * 2000})),
    "request not JSON": (SUBMIT, 415, "UnsupportedMediaType",
                         lambda s, g, e, m: post(s, e, {"content_type": "image/png"},
                                                 headers={"content-type": "text/plain"})),
    "image type not accepted": (SUBMIT, 415, "UnsupportedImageType",
                                lambda s, g, e, m: post(s, e, {"content_type": "image/svg+xml"})),
    "wait over 20 s": (STATUS, 400, "MalformedRequest", lambda s, g, e, m: get(g, e, "a" * 32, query={"wait": "21"})),
    "GET without identity": (STATUS, 401, "Unauthorized", lambda s, g, e, m: get(g, e, "a" * 32, owner=None)),
    "unknown id": (STATUS, 404, "NotFound", lambda s, g, e, m: get(g, e, "a" * 32)),
    "malformed id": (STATUS, 404, "NotFound", lambda s, g, e, m: get(g, e, "A" * 32)),
    "another caller's photo": (STATUS, 404, "NotFound", lambda s, g, e, m: _someone_elses(s, g, e)),
}


@pytest.mark.parametrize("case", ERRORS)
def test_each_handler_error_is_documented_for_its_route_and_status(openapi, submit, status, load_event, monkeypatch,
                                                                  case):
    route, expected_status, expected_error, make = ERRORS[case]
    code, body, _ = check_answer(openapi, route, make(submit, status, load_event, monkeypatch))
    assert (code, body["error"]) == (expected_status, expected_error)
    _validate(body, openapi["components"]["schemas"]["Error"])  # the handler's shape, not API Gateway's


def _error_names(schema: Any, openapi: dict[str, Any]) -> set[str]:
    """The handler error names a response's schema admits: the enums beside each reference to Error."""
    found: set[str] = set()
    if isinstance(schema, dict):
        parts = schema.get("allOf", [])
        if any(part.get("$ref") == "#/components/schemas/Error" for part in parts):
            for part in parts:
                found |= set(part.get("properties", {}).get("error", {}).get("enum", []))
        for key in ("oneOf", "anyOf"):
            for option in schema.get(key, []):
                found |= _error_names(option, openapi)
    return found


def test_every_documented_handler_error_is_one_the_handlers_answer(openapi):
    documented = set()
    for route in (SUBMIT, STATUS):
        method, path = route
        for status_code, response in openapi["paths"][path][method]["responses"].items():
            if "$ref" in response:  # a shared response: its schema, references to Error kept
                response = openapi["components"]["responses"][response["$ref"].rsplit("/", 1)[-1]]
            for content in response.get("content", {}).values():
                documented |= {(route, int(status_code), name) for name in _error_names(content["schema"], openapi)}
    exercised = {(route, code, error) for route, code, error, _ in ERRORS.values()}
    assert documented == exercised
    names = openapi["components"]["schemas"]["Error"]["properties"]["error"]["enum"]
    assert {name for _, _, name in documented} == set(names)


# ------------------------------------------------------------------ the HTTP API of template.yaml
@pytest.fixture(scope="module")
def stack() -> Stack:
    return Stack.load(REPO / "template.yaml", name="test", region="us-east-1",
                      parameters={"EndpointName": "my-endpoint"})


def _routes(paths: dict[str, Any]) -> dict[str, dict[str, list[str]]]:
    """``{"POST /photos": {"CognitoAuthorizer": [scopes]}}`` of an OpenAPI paths object."""
    routes = {}
    for path, methods in paths.items():
        for method, operation in methods.items():
            if method in ("get", "put", "post", "delete", "patch", "head", "options", "x-amazon-apigateway-any-method"):
                requirements = operation.get("security") or [{}]
                assert len(requirements) == 1, f"{method} {path}: one authorizer per route"
                routes[f"{method.upper()} {path}"] = {name: sorted(scopes) for name, scopes in requirements[0].items()}
    return routes


def test_the_documented_routes_are_the_http_apis_routes_with_the_same_scopes(openapi, stack):
    body = stack.properties("PhotoApi")["Body"]  # the front door (the review page's ReviewApi: docs/review.md)
    assert _routes(openapi["paths"]) == _routes(body["paths"])
    assert set(openapi["components"]["securitySchemes"]) == set(body["components"]["securitySchemes"])
    flows = openapi["components"]["securitySchemes"]["CognitoAuthorizer"]["flows"]
    server = stack.properties("ApiResourceServer")
    scopes = {f"{server['Identifier']}/{s['ScopeName']}" for s in server["Scopes"]}
    assert set(flows["clientCredentials"]["scopes"]) == scopes
    assert set(flows["authorizationCode"]["scopes"]) == set(stack.properties("DriverAppClient")["AllowedOAuthScopes"])
    for required in _routes(openapi["paths"]).values():
        assert set(required["CognitoAuthorizer"]) <= scopes


def test_the_servers_and_token_urls_have_the_shape_of_the_stack_outputs(openapi, stack):
    def pattern(url: str) -> str:
        return "^" + re.sub(r"\\\{\w+\\\}", "[^./]+", re.escape(url)) + "$"

    api_url = stack.resolve(stack.outputs["ApiUrl"]["Value"])
    assert re.match(pattern(openapi["servers"][0]["url"]), api_url), api_url
    # The user pool domain's prefix is vehicle-classifier-<the stack id's UUID>; the document shows a zero UUID.
    domain = stack.properties("UserPoolDomain")["Domain"]
    token_url = stack.resolve(stack.outputs["TokenUrl"]["Value"]).replace(stack.ref("UserPoolDomain"), domain)
    flows = openapi["components"]["securitySchemes"]["CognitoAuthorizer"]["flows"]
    for url in (flows["clientCredentials"]["tokenUrl"], flows["authorizationCode"]["tokenUrl"]):
        shape = re.escape(url.replace("00000000-0000-0000-0000-000000000000", "UUID").replace("us-east-1", "REGION"))
        shape = shape.replace("UUID", "[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}").replace("REGION", "[a-z0-9-]+")
        assert re.match(f"^{shape}$", token_url), (url, token_url)
    code_flow = flows["authorizationCode"]
    assert code_flow["authorizationUrl"] == code_flow["tokenUrl"].replace("/oauth2/token", "/oauth2/authorize")


def test_api_gateways_own_answers_on_the_twin_are_the_documented_ones(openapi):
    """Every status and message local/front_door/gateway.py answers in API Gateway's name is a documented
    GatewayError, and every documented one is emulated."""
    source = (REPO / "local" / "front_door" / "gateway.py").read_text(encoding="utf-8")
    emulated = {(int(code), message) for code, message in re.findall(r'_json_error\((\d{3}), "([^"]+)"', source)}
    documented = set()
    for methods in openapi["paths"].values():
        for operation in methods.values():
            for status_code, response in operation["responses"].items():
                response = _resolve(response, openapi)
                for content in response.get("content", {}).values():
                    examples = [content.get("example")] + [e["value"] for e in content.get("examples", {}).values()]
                    for example in examples:
                        if isinstance(example, dict) and set(example) == {"message"}:
                            _validate(example, content["schema"])
                            _validate(example, openapi["components"]["schemas"]["GatewayError"])
                            documented.add((int(status_code), example["message"]))
    assert emulated and emulated == documented
