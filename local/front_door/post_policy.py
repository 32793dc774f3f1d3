"""S3's checks of a browser-based (presigned) POST upload, in front of moto, which stores any POST it gets.

As the Amazon S3 API reference describes POST Object and its policy: the policy's SigV4 signature must verify
with the signer's secret; the policy must not have expired; every form field (but ``policy``, ``x-amz-signature``,
``file`` and ``x-ignore-*``) must be allowed by a condition, and every condition must hold (``eq`` /
``starts-with`` on fields, ``content-length-range`` on the file's size); and the signer must be allowed
``s3:PutObject`` on the key, as for any signed request. Refusals are S3's XML errors: 403 ``AccessDenied`` ("Invalid
according to Policy: ..."), 403 ``SignatureDoesNotMatch``, 400 ``EntityTooLarge`` / ``EntityTooSmall``.
A refused upload never reaches moto, so it starts no execution and leaves no record.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import json
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any
from xml.sax.saxutils import escape

from werkzeug.formparser import parse_form_data
from werkzeug.wrappers import Response

EXEMPT_FIELDS = {"policy", "x-amz-signature", "file"}


class PolicyRefusal(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _s3_error(exc: PolicyRefusal) -> Response:
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{exc.code}</Code>'
            f"<Message>{escape(exc.message)}</Message></Error>")
    return Response(body, exc.status, content_type="application/xml")


def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def check_policy(fields: dict[str, str], bucket: str, size: int, secret_of: Callable[[str], str | None],
                 permits: Callable[[str, str, str, str, str], str | None], now: datetime | None = None) -> None:
    """PolicyRefusal unless S3 would accept this POST of ``size`` bytes to ``bucket``."""
    lowered = {k.lower(): v for k, v in fields.items()}
    policy_b64 = lowered.get("policy")
    if not policy_b64:
        # No policy, no signature: an anonymous write, which this private bucket does not allow.
        raise PolicyRefusal(403, "AccessDenied", "Access Denied")
    credential = lowered.get("x-amz-credential", "")
    parts = credential.split("/")
    if lowered.get("x-amz-algorithm") != "AWS4-HMAC-SHA256" or len(parts) != 5:
        raise PolicyRefusal(400, "InvalidArgument", "POST requires a valid x-amz-algorithm and x-amz-credential")
    access_key, date, region, service, _ = parts
    secret = secret_of(access_key)
    if secret is None:
        raise PolicyRefusal(403, "InvalidAccessKeyId",
                            "The AWS Access Key Id you provided does not exist in our records.")
    expected = hmac.new(_signing_key(secret, date, region, service), policy_b64.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, lowered.get("x-amz-signature", "")):
        raise PolicyRefusal(403, "SignatureDoesNotMatch",
                            "The request signature we calculated does not match the signature you provided.")
    try:
        policy = json.loads(base64.b64decode(policy_b64, validate=True))
        expiration = datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00"))
        conditions = policy["conditions"]
    except (binascii.Error, ValueError, KeyError, TypeError, AttributeError):
        raise PolicyRefusal(400, "InvalidPolicyDocument", "Invalid Policy: Invalid JSON.") from None
    if (now or datetime.now(timezone.utc)) >= expiration:
        raise PolicyRefusal(403, "AccessDenied", "Invalid according to Policy: Policy expired.")
    values = {**lowered, "bucket": bucket}
    covered = {"bucket"}
    for condition in conditions:
        if isinstance(condition, dict):
            ((name, expected_value),) = condition.items()
            op, name = "eq", name.lower()
        elif isinstance(condition, list) and len(condition) == 3 and condition[0] == "content-length-range":
            low, high = int(condition[1]), int(condition[2])
            if size > high:
                raise PolicyRefusal(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size")
            if size < low:
                raise PolicyRefusal(400, "EntityTooSmall",
                                    "Your proposed upload is smaller than the minimum allowed size")
            continue
        elif isinstance(condition, list) and len(condition) == 3:
            op, name, expected_value = condition[0].lower(), str(condition[1]).lstrip("$").lower(), condition[2]
        else:
            raise PolicyRefusal(400, "InvalidPolicyDocument", "Invalid Policy: Invalid Condition.")
        covered.add(name)
        actual = values.get(name)
        holds = actual is not None and (actual == expected_value if op == "eq" else
                                        op == "starts-with" and actual.startswith(str(expected_value)))
        if not holds:
            raise PolicyRefusal(403, "AccessDenied",
                                "Invalid according to Policy: Policy Condition failed: "
                                f'["{op}", "${name}", "{expected_value}"]')
    extra = sorted(k for k in lowered if k not in covered and k not in EXEMPT_FIELDS and not k.startswith("x-ignore-"))
    if extra:
        raise PolicyRefusal(403, "AccessDenied", f"Invalid according to Policy: Extra input fields: {extra[0]}")
    refused = permits(access_key, lowered.get("x-amz-security-token", ""), region, "s3:PutObject",
                      f"arn:aws:s3:::{bucket}/{values.get('key', '')}")
    if refused:
        raise PolicyRefusal(403, "AccessDenied", "Access Denied")


class PostPolicyEnforcer:
    """WSGI middleware for moto's server: POST uploads to a bucket are checked before moto sees them."""

    def __init__(self, app: Any, secret_of: Callable[[str], str | None],
                 permits: Callable[[str, str, str, str, str], str | None]):
        self._app, self._secret_of, self._permits = app, secret_of, permits

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        bucket = self._post_upload_bucket(environ)
        if bucket is None:
            return self._app(environ, start_response)
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        probe = {**environ, "wsgi.input": io.BytesIO(body)}
        _, form, files = parse_form_data(probe)
        upload = files.get("file")
        names = [name.lower() for name, _ in form.items(multi=True)]
        size = len(upload.read()) if upload else 0
        try:
            if upload is None:
                raise PolicyRefusal(400, "InvalidArgument", "POST requires exactly one file upload per request.")
            if len(names) != len(set(names)):  # one value per field, whatever its case: no second "KEY"
                raise PolicyRefusal(400, "InvalidArgument", "POST requires each form field once.")
            check_policy(dict(form.items()), bucket, size, self._secret_of, self._permits)
        except PolicyRefusal as refusal:
            return _s3_error(refusal)(environ, start_response)
        environ["wsgi.input"] = io.BytesIO(body)
        return self._app(environ, start_response)

    @staticmethod
    def _post_upload_bucket(environ: dict[str, Any]) -> str | None:
        """The bucket of a browser-based upload (POST of a form to the bucket's root, path-style), else None."""
        if environ.get("REQUEST_METHOD") != "POST" or \
                not environ.get("CONTENT_TYPE", "").lower().startswith("multipart/form-data"):
            return None
        segments = [s for s in environ.get("PATH_INFO", "").split("/") if s]
        if len(segments) == 1:
            return segments[0]
        host = environ.get("HTTP_HOST", "").split(":")[0]
        # Virtual-hosted style (bucket.s3.amazonaws.com); "?" stands for a host naming no bucket, which S3 refuses.
        return (host.split(".s3", 1)[0] if ".s3" in host else "?") if not segments else None
